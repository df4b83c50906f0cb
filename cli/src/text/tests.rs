//! Tests of the CLI's text forms: what an operator reads for each answer.

use super::*;

#[test]
fn diagnostics_read_like_compiler_messages() {
    let located = Diagnostic {
        message: "unknown step `blok`".into(),
        path: "steps[2].needs[0]".into(),
        line: 14,
        column: 13,
    };
    assert_eq!(
        diagnostic("ip-block.yaml", &located),
        "ip-block.yaml:14:13: steps[2].needs[0]: unknown step `blok`"
    );
    let unplaced = Diagnostic {
        message: "empty document".into(),
        ..Diagnostic::default()
    };
    assert_eq!(diagnostic("-", &unplaced), "-: empty document");
}

#[test]
fn refusal_lines_join_the_file_name() {
    assert_eq!(
        refused("a.yaml", "3:5: name: missing"),
        "a.yaml:3:5: name: missing"
    );
    assert_eq!(
        refused("a.yaml", "version 2 exists"),
        "a.yaml: version 2 exists"
    );
}

#[test]
fn event_line_shows_time_step_kind_and_detail() {
    let leased = RunEvent {
        at_ms: 1_700_000_000_250,
        kind: "task.failed".into(),
        step_id: "block".into(),
        attempt: 2,
        worker_id: "w-7".into(),
        message: "timeout after 30s".into(),
        ..RunEvent::default()
    };
    assert_eq!(
        event(&leased),
        "22:13:20.250  block             task.failed           attempt=2 worker=w-7 timeout after 30s"
    );
    let finished = RunEvent {
        at_ms: 1_700_000_000_250,
        kind: "run.finished".into(),
        run_status: RunStatus::Cancelled as i32,
        ..RunEvent::default()
    };
    assert_eq!(
        event(&finished),
        "22:13:20.250  -                 run.finished          status=cancelled"
    );
}

#[test]
fn run_shows_header_and_steps() {
    let run = Run {
        run_id: "r-1".into(),
        playbook: "ip-block".into(),
        version: 3,
        status: RunStatus::Running as i32,
        params_json: r#"{"ip":"203.0.113.7"}"#.into(),
        requested_by: "alice".into(),
        created_at_ms: 1_700_000_000_000,
        steps: vec![Step {
            id: "guard".into(),
            action: "policy.check_ip".into(),
            status: StepStatus::Succeeded as i32,
            attempts: 1,
            items_total: 1,
            items_succeeded: 1,
            started_at_ms: 1_700_000_000_100,
            finished_at_ms: 1_700_000_000_400,
            output_json: r#"{"ip": "203.0.113.7", "allowed": true, "note": "this output is long enough to be cut in the table"}"#.into(),
            ..Step::default()
        }],
        ..Run::default()
    };
    let expected = [
        "run:          r-1",
        "playbook:     ip-block@3",
        "status:       running",
        r#"params:       {"ip":"203.0.113.7"}"#,
        "requested by: alice",
        "created:      2023-11-14T22:13:20.000Z",
        "finished:     -",
        "duration:     5.0s",
        "",
        "STEP   ACTION           STATUS     ATTEMPTS  ITEMS OK/FAILED/TOTAL  DURATION  ERROR  OUTPUT",
        r#"guard  policy.check_ip  succeeded  1         1/0/1                  300ms     -      {"allowed":true,"ip":"203.0.113.7","note":"this output is lo…"#,
    ];
    assert_eq!(run_lines(&run), expected);
    assert_eq!(summary(&run, 1_700_000_005_000), "run r-1 running in 5.0s");
}

fn run_lines(run: &Run) -> Vec<String> {
    self::run(run, 1_700_000_005_000)
}

const NOW: i64 = 1_700_000_000_000;

fn halted_rollout() -> Run {
    Run {
        run_id: "r-2".into(),
        playbook: "patch".into(),
        version: 1,
        status: RunStatus::Halted as i32,
        phase: "compensating".into(),
        params_json: "{}".into(),
        requested_by: "alice".into(),
        concurrency_key: "fleet-a".into(),
        deadline_ms: NOW + 2 * 3_600_000,
        error: "error budget spent".into(),
        created_at_ms: NOW - 60_000,
        steps: vec![
            Step {
                id: "hosts".into(),
                action: "os.patch".into(),
                status: StepStatus::Sleeping as i32,
                attempts: 1,
                items_total: 10,
                items_succeeded: 2,
                items_failed: 1,
                items_pending: 7,
                due_at_ms: NOW + 23 * 60_000,
                started_at_ms: NOW - 50_000,
                ..Step::default()
            },
            Step {
                id: "gate".into(),
                action: "core.noop".into(),
                status: StepStatus::AwaitingApproval as i32,
                ..Step::default()
            },
        ],
        ..Run::default()
    }
}

#[test]
fn run_shows_phase_key_deadline_pending_items_and_until() {
    let expected = [
        "run:             r-2",
        "playbook:        patch@1",
        "status:          halted",
        "phase:           compensating",
        "params:          {}",
        "requested by:    alice",
        "concurrency key: fleet-a",
        "deadline:        2023-11-15T00:13:20.000Z (in 2h00m)",
        "error:           error budget spent",
        "created:         2023-11-14T22:12:20.000Z",
        "finished:        -",
        "duration:        1m00s",
        "",
        "STEP   ACTION     STATUS                                            ATTEMPTS  \
         ITEMS OK/FAILED/TOTAL  DURATION  ERROR  OUTPUT",
        "hosts  os.patch   sleeping until 2023-11-14T22:36:20.000Z (in 23m)  1         \
         2/1/10 (7 pending)     50.0s     -      -",
        "gate   core.noop  awaiting_approval                                 0         \
         0/0/0                  -         -      -",
    ];
    assert_eq!(run(&halted_rollout(), NOW), expected);
}

#[test]
fn one_line_outcomes_carry_status_and_phase() {
    let mut halted = halted_rollout();
    assert_eq!(status(&halted), "halted (compensating)");
    assert_eq!(
        repaired(&halted),
        "run r-2 halted (compensating): error budget spent"
    );
    assert_eq!(
        cancelled(&halted),
        "run r-2 halted (compensating) (cancel requested)"
    );
    assert_eq!(
        decided(&halted, "gate", false),
        "rejected step gate of run r-2: step awaiting_approval, run halted (compensating)"
    );
    halted.status = RunStatus::Cancelled as i32;
    halted.phase.clear();
    assert_eq!(cancelled(&halted), "run r-2 cancelled");
    assert_eq!(
        decided(&halted, "nope", true),
        "approved step nope of run r-2: run cancelled"
    );
}

#[test]
fn halted_line_names_the_way_out() {
    assert_eq!(
        halted("r-2", "error budget spent; failed: 3"),
        "run halted: error budget spent; failed: 3; resume with `riposte runs resume r-2` \
         or cancel"
    );
    assert_eq!(
        halted("r-2", ""),
        "run halted; resume with `riposte runs resume r-2` or cancel"
    );
}

#[test]
fn started_line_says_queued_and_deadline() {
    let mut run = halted_rollout();
    run.status = RunStatus::Queued as i32;
    assert_eq!(
        started(&run, false, NOW),
        "started run r-2 (queued: another run holds concurrency key `fleet-a`; deadline in \
         2h00m)"
    );
    run.status = RunStatus::Running as i32;
    run.deadline_ms = 0;
    assert_eq!(started(&run, true, NOW), "existing run r-2");
}

#[test]
fn unfinished_run_says_what_it_waits_for() {
    let mut run = halted_rollout();
    assert_eq!(
        unfinished(&run),
        [
            "the run is halted; resume it with `riposte runs resume r-2` or cancel it with \
             `riposte runs cancel r-2`",
            "step gate waits for a decision (`riposte approvals list`)",
        ]
    );
    run.status = RunStatus::Running as i32;
    run.phase = "holding_grants".into();
    run.steps.clear();
    assert_eq!(
        unfinished(&run),
        [
            "the run is still running; follow its history with `riposte runs watch r-2`",
            "its steps are done; it holds grants until they expire or are revoked \
             (`riposte grants list`)",
        ]
    );
}

#[test]
fn a_step_no_worker_serves_says_so_in_list_show_and_what_next() {
    let run = Run {
        run_id: "r-3".into(),
        playbook: "ip-block".into(),
        status: RunStatus::Running as i32,
        steps: vec![Step {
            id: "block".into(),
            action: "firewall.block_ip".into(),
            status: StepStatus::Running as i32,
            items_total: 1,
            waiting: "queued (no worker offers firewall.block_ip)".into(),
            ..Step::default()
        }],
        ..Run::default()
    };
    assert_eq!(
        status(&run),
        "running, step block queued (no worker offers firewall.block_ip)"
    );
    assert_eq!(
        step_status(&run.steps[0], NOW),
        "running, queued (no worker offers firewall.block_ip)"
    );
    assert_eq!(
        unfinished(&run)[1],
        "step block is queued (no worker offers firewall.block_ip): start a worker that does \
         (`riposte workers list`)"
    );
}

fn open_grant() -> GrantInfo {
    GrantInfo {
        run_id: "r-1".into(),
        playbook: "ip-block".into(),
        step_id: "block".into(),
        item: 0,
        subject: "203.0.113.7".into(),
        revoke_action: "firewall.unblock_ip".into(),
        revoke_input_json: r#"{"ip":"203.0.113.7"}"#.into(),
        opened_at_ms: NOW - 5 * 60_000,
        expires_at_ms: NOW + 23 * 60_000 + 10_000,
        status: "open".into(),
        requested_by: "alice".into(),
        ..GrantInfo::default()
    }
}

#[test]
fn grants_table_shows_relative_times_and_the_revoke() {
    let failed = GrantInfo {
        item: 1,
        subject: String::new(),
        status: "failed".into(),
        error: "nft: busy".into(),
        expires_at_ms: 0,
        ..open_grant()
    };
    let expected = [
        "RUN  PLAYBOOK  STEP   ITEM  SUBJECT      STATUS             OPENED  EXPIRES  \
         REVOKE",
        "r-1  ip-block  block  0     203.0.113.7  open               5m ago  in 23m   \
         firewall.unblock_ip",
        "r-1  ip-block  block  1     -            failed: nft: busy  5m ago  never    \
         firewall.unblock_ip",
    ];
    assert_eq!(grants(&[open_grant(), failed], NOW), expected);
}

#[test]
fn revoked_grant_line() {
    let revoking = GrantInfo {
        status: "revoking".into(),
        ..open_grant()
    };
    assert_eq!(
        grant(&revoking),
        "grant run r-1 step block item 0 (subject 203.0.113.7): revoking"
    );
}

fn pending_approval() -> PendingApproval {
    PendingApproval {
        run_id: "r-1".into(),
        playbook: "ip-block".into(),
        step_id: "block".into(),
        action: "firewall.block_ip".into(),
        input_json: r#"{"ip":"203.0.113.7","ttl":"1h"}"#.into(),
        digest: "ab".repeat(32),
        approvers: vec!["secops".into(), "netops".into()],
        min: 2,
        decisions: vec![
            Decision {
                who: "carol".into(),
                approve: true,
                comment: "looks right".into(),
                at_ms: NOW - 3 * 60_000,
                digest: "ab".repeat(32),
            },
            Decision {
                who: "dave".into(),
                approve: true,
                comment: String::new(),
                at_ms: NOW - 10 * 60_000,
                digest: "cd".repeat(32),
            },
        ],
        requested_by: "alice".into(),
        expires_at_ms: NOW + 23 * 60_000,
        on_timeout: "reject".into(),
    }
}

#[test]
fn approval_block_shows_what_is_approved() {
    let digest = "ab".repeat(32);
    let other = "cd".repeat(32);
    let expected = vec![
        "run:          r-1".to_string(),
        "playbook:     ip-block".into(),
        "step:         block".into(),
        "action:       firewall.block_ip".into(),
        "requested by: alice".into(),
        "approvers:    secops, netops (2 approvals needed)".into(),
        "decision:     carol approved 3m ago: looks right".into(),
        format!("decision:     dave approved 10m ago (for other inputs, digest {other})"),
        "expires:      2023-11-14T22:36:20.000Z (in 23m), then reject".into(),
        format!("digest:       {digest}"),
        "input:".into(),
        "  {".into(),
        r#"    "ip": "203.0.113.7","#.into(),
        r#"    "ttl": "1h""#.into(),
        "  }".into(),
        String::new(),
        "decide with `riposte approve RUN_ID STEP` (approve) or `riposte approve RUN_ID STEP \
         --reject`"
            .into(),
    ];
    assert_eq!(approvals(&[pending_approval()], NOW), expected);
}

#[test]
fn approval_step_without_decisions_or_deadline() {
    let gate = PendingApproval {
        action: String::new(),
        input_json: "{}".into(),
        min: 1,
        decisions: Vec::new(),
        expires_at_ms: 0,
        ..pending_approval()
    };
    let lines = approvals(&[gate], NOW);
    assert!(lines.contains(&"action:       - (approval step: the run's parameters)".into()));
    assert!(lines.contains(&"approvers:    secops, netops (1 approval needed)".into()));
    assert!(lines.contains(&"decisions:    none yet".into()));
    assert!(lines.contains(&"expires:      never".into()));
    assert_eq!(approvals(&[], NOW), ["no step is waiting for a decision"]);
}

#[test]
fn deciding_line_binds_the_digest_to_the_compact_input() {
    let pending = PendingApproval {
        input_json: "{\n  \"ip\": \"203.0.113.7\"\n}".into(),
        ..pending_approval()
    };
    assert_eq!(
        deciding(true, &pending),
        format!("approving {}: {{\"ip\":\"203.0.113.7\"}}", "ab".repeat(32))
    );
    assert!(deciding(false, &pending).starts_with("rejecting abab"));
}
