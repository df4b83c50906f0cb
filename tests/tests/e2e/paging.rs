//! The alerts list and a schedule's history page with a cursor, as runs do: over gRPC each
//! page is newest first and each entry comes once, a token from elsewhere is refused with its
//! reason; the CLI pages by itself (`--limit`, `--all`).

use riposte_proto::v1::{ApplyScheduleRequest, GetScheduleHistoryRequest, ListAlertsRequest};
use riposte_tests::Orchestrator;
use riposte_tests::alerts::{AZURE_FIXTURE, send_azure_monitor};
use riposte_tests::api::Operator;
use tonic::Code;

/// Alerts sent, and pages of two.
const SENT: usize = 5;

async fn alert_pages(client: &mut Operator, limit: u32) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_alerts(ListAlertsRequest { limit, page_token })
            .await
            .expect("ListAlerts")
            .into_inner();
        pages.push(page.alerts.into_iter().map(|a| a.id).collect());
        page_token = page.next_page_token;
        if page_token.is_empty() {
            return pages;
        }
    }
}

#[tokio::test]
async fn alerts_page_newest_first_each_once_and_the_cli_pages_by_itself() {
    let orchestrator = Orchestrator::start();
    let mut sent = Vec::new();
    for _ in 0..SENT {
        let out = send_azure_monitor(&orchestrator, AZURE_FIXTURE).await;
        assert_eq!(out.code(), 0, "{out}");
        let id = out.json()[0]["id"].as_str().expect("an id").to_string();
        sent.push(id);
    }
    sent.reverse();

    let mut client = orchestrator.client();
    let pages = alert_pages(&mut client, 2).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    assert_eq!(pages.concat(), sent, "newest first, each once");

    let refused = client
        .list_alerts(ListAlertsRequest {
            limit: 2,
            page_token: "not-a-token".into(),
        })
        .await
        .expect_err("a foreign token");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        refused.message(),
        "page_token `not-a-token` is not one a ListAlerts answer gave"
    );

    let ids = |out: riposte_tests::CliOutput| -> Vec<String> {
        assert_eq!(out.code(), 0, "{out}");
        out.json()
            .as_array()
            .expect("a list")
            .iter()
            .map(|a| a["id"].as_str().expect("an id").to_string())
            .collect()
    };
    let three = ids(orchestrator
        .cli(&["--output", "json", "alerts", "list", "--limit", "3"])
        .await);
    assert_eq!(three, sent[..3]);
    let all = ids(orchestrator
        .cli(&["--output", "json", "alerts", "list", "--all"])
        .await);
    assert_eq!(all, sent);
}

const BEAT: &str = "name: beat\ncron: \"0 0 1 1 *\"\nplaybook: hello\n";

const HELLO: &str = r#"
name: hello
version: 1
steps:
  - id: greet
    action: core.echo
    with: { message: hi }
"#;

#[tokio::test]
async fn a_schedule_history_pages_newest_first_and_the_cli_pages_by_itself() {
    let orchestrator = Orchestrator::start();
    let mut client = orchestrator.client();
    riposte_tests::api::apply_playbook(&mut client, HELLO).await;
    client
        .apply_schedule(ApplyScheduleRequest {
            source: BEAT.into(),
        })
        .await
        .expect("ApplySchedule");
    let mut triggered = Vec::new();
    for _ in 0..SENT {
        let out = orchestrator
            .cli(&["--output", "json", "schedules", "trigger", "beat"])
            .await;
        assert_eq!(out.code(), 0, "{out}");
        triggered.push(out.json()["scheduled_ms"].as_i64().expect("scheduled_ms"));
    }
    triggered.reverse();

    let mut pages = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .get_schedule_history(GetScheduleHistoryRequest {
                name: "beat".into(),
                limit: 2,
                page_token,
            })
            .await
            .expect("GetScheduleHistory")
            .into_inner();
        pages.push(
            page.entries
                .iter()
                .map(|e| e.scheduled_ms)
                .collect::<Vec<_>>(),
        );
        page_token = page.next_page_token;
        if page_token.is_empty() {
            break;
        }
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    assert_eq!(pages.concat(), triggered, "newest first, each once");

    let refused = client
        .get_schedule_history(GetScheduleHistoryRequest {
            name: "beat".into(),
            limit: 2,
            page_token: "yesterday".into(),
        })
        .await
        .expect_err("a foreign token");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        refused.message(),
        "page_token `yesterday` is not one a GetScheduleHistory answer gave"
    );

    let listed = |out: riposte_tests::CliOutput| -> Vec<i64> {
        assert_eq!(out.code(), 0, "{out}");
        out.json()
            .as_array()
            .expect("a list")
            .iter()
            .map(|e| e["scheduled_ms"].as_i64().expect("scheduled_ms"))
            .collect()
    };
    let history = ["--output", "json", "schedules", "history", "beat"];
    let three = listed(
        orchestrator
            .cli(&[&history[..], &["--limit", "3"]].concat())
            .await,
    );
    assert_eq!(three, triggered[..3]);
    let all = listed(orchestrator.cli(&[&history[..], &["--all"]].concat()).await);
    assert_eq!(all, triggered);
}
