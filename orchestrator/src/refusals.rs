//! Refusals of the listeners (the alert listeners, and the gRPC listener's connections),
//! counted and logged: one [`Tally`] per kind (a connection
//! over a cap, headers not received in time, a full ingestion queue...), each logging at most
//! one line per [`LOG_EVERY`] with the count since its last line and the count since the
//! start. A flood is then a few lines, not one per refused request. The orchestrator exports
//! no metrics: these lines are where the counts are.

use std::fmt::Display;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::clock::Clock;

/// A kind of refusal is logged at most this often.
pub const LOG_EVERY: Duration = Duration::from_secs(5);

/// The refusals of one kind.
pub struct Tally {
    /// The `kind` field of its lines, e.g. `peer_connections_max`.
    kind: &'static str,
    /// A refusal of the gRPC listener, not of an alert listener.
    grpc: bool,
    clock: Clock,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    since_logged: u64,
    total: u64,
    logged_at: Option<Instant>,
}

impl Tally {
    pub fn new(kind: &'static str, clock: Clock) -> Tally {
        Tally {
            kind,
            grpc: false,
            clock,
            counts: Mutex::new(Counts::default()),
        }
    }

    /// The same for the gRPC listener: its lines are `grpc.refused`.
    pub fn grpc(kind: &'static str, clock: Clock) -> Tally {
        Tally {
            grpc: true,
            ..Tally::new(kind, clock)
        }
    }

    /// Counts one refusal of `from` (a peer address, an alert source) and why; logs
    /// `alerts.refused` (`grpc.refused`) unless this kind was logged less than [`LOG_EVERY`]
    /// ago.
    pub fn note(&self, from: &dyn Display, reason: &dyn Display) {
        let listener = match self.grpc {
            true => "grpc",
            false => "alerts",
        };
        let labels = [
            opentelemetry::KeyValue::new("listener", listener),
            opentelemetry::KeyValue::new("reason", self.kind),
        ];
        crate::telemetry::metrics::metrics()
            .refusals
            .add(1, &labels);
        let now = self.clock.monotonic();
        let (refused, total) = {
            let mut counts = self
                .counts
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            counts.since_logged += 1;
            counts.total += 1;
            if counts
                .logged_at
                .is_some_and(|at| now.duration_since(at) < LOG_EVERY)
            {
                return;
            }
            counts.logged_at = Some(now);
            (std::mem::take(&mut counts.since_logged), counts.total)
        };
        match self.grpc {
            true => tracing::warn!(
                kind = self.kind,
                from = %from,
                reason = %reason,
                refused,
                total,
                "grpc.refused"
            ),
            false => tracing::warn!(
                kind = self.kind,
                from = %from,
                reason = %reason,
                refused,
                total,
                "alerts.refused"
            ),
        }
    }
}
