//! Alert pollers on this worker: while it offers a list action (`sentinel.list_incidents`,
//! `defender.list_alerts`), one loop claims a due poller from the orchestrator, fetches the
//! window it was given page by page through the action, and hands each page over before it
//! fetches the next. The orchestrator commits a page's alerts with the poller's cursor; this
//! loop keeps nothing: killed mid-page, the next claim (here or on another worker) starts
//! again from the stored cursor.

use std::time::Duration;

use riposte_proto::v1::report_page_request::Outcome as PageOutcome;
use riposte_proto::v1::{PollClaim, PollFailure, PolledPage};
use serde_json::Value;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::backoff::Backoff;
use crate::client::{CallError, Client, log_refusal};
use crate::connectors::{Connectors, Context, Failure, Input};

/// The actions a poller may ask for.
pub(crate) const LIST_ACTIONS: &[&str] = &["sentinel.list_incidents", "defender.list_alerts"];

/// Claims and runs polls until the worker stops (the caller aborts it).
pub(crate) async fn poll_loop(client: &Client, connectors: &Connectors) {
    let mut backoff = Backoff::new();
    loop {
        let wait = match client.claim_poll().await {
            Ok(Ok(claim)) => {
                backoff.reset();
                let span = info_span!("poll", poller = %claim.poller, action = %claim.action);
                run_poll(client, connectors, &claim).instrument(span).await;
                continue;
            }
            Ok(Err(wait)) => {
                backoff.reset();
                wait.max(Duration::from_millis(100))
            }
            Err(error) => {
                match &error {
                    CallError::Refused(_) => log_refusal("poller claim", &error),
                    _ => debug!(%error, "poller claim failed"),
                }
                backoff.next_delay()
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// Fetches a claimed window page by page, each handed over before the next is fetched.
async fn run_poll(client: &Client, connectors: &Connectors, claim: &PollClaim) {
    let mut input = match serde_json::from_str::<Value>(&claim.input_json) {
        Ok(Value::Object(input)) => input,
        _ => Input::new(),
    };
    let timeout = Duration::from_millis(claim.timeout_ms.max(1000));
    for page in 0.. {
        let fetched = fetch(connectors, claim, &input, timeout).await;
        let (outcome, next) = match fetched {
            Ok((items, next)) => {
                let more = next.is_some();
                (PageOutcome::Items(PolledPage { items, more }), next)
            }
            Err(failure) => {
                let message = connectors.redactor().redact(&failure.message);
                warn!(error = %message, "poll failed");
                let retry_after_ms = failure.retry_after.map_or(0, |d| d.as_millis() as u64);
                let failure = PollFailure {
                    message,
                    retry_after_ms,
                };
                (PageOutcome::Failure(failure), None)
            }
        };
        match client.report_page(claim, page, outcome).await {
            Ok(answer) => {
                info!(
                    page,
                    ingested = answer.ingested,
                    already_seen = answer.already_seen,
                    unreadable = answer.unreadable,
                    "poll page handed over"
                );
                if !answer.go_on {
                    return;
                }
            }
            Err(error) => {
                // The claim lapses; the next one starts again from the stored cursor.
                warn!(page, %error, "poll page not taken; the poll ends here");
                return;
            }
        }
        let Some(next) = next else { return };
        input.insert("next_link".into(), Value::String(next));
    }
}

/// One page through the poller's action: each item as JSON bytes, and the next page's link.
async fn fetch(
    connectors: &Connectors,
    claim: &PollClaim,
    input: &Input,
    timeout: Duration,
) -> Result<(Vec<Vec<u8>>, Option<String>), Failure> {
    let action = connectors
        .find(&claim.action)
        .filter(|a| LIST_ACTIONS.contains(&a.name()))
        .ok_or_else(|| {
            Failure::permanent(format!(
                "this worker does not offer {:?} as a poller's action",
                claim.action
            ))
        })?;
    let cx = Context {
        attempt: 1,
        timeout,
        dry_run: false,
        key: format!("poll/{}/{}", claim.poller, claim.token),
    };
    let output =
        match tokio::time::timeout(timeout, connectors.execute(action, input.clone(), &cx)).await {
            Ok(output) => output?,
            Err(_) => {
                let timeout = humantime::format_duration(timeout);
                return Err(Failure::retryable(format!("timed out after {timeout}")));
            }
        };
    let items = output["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| serde_json::to_vec(item).expect("a JSON value serializes"))
                .collect()
        })
        .unwrap_or_default();
    let next = output["next_link"].as_str().map(str::to_owned);
    Ok((items, next))
}
