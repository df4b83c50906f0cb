//! The engine's state as the metrics' gauges show it ([`crate::telemetry::metrics::Gauges`]):
//! read under the lock when a scrape or a push asks, never kept up to date by the hot path.

use super::*;
use crate::telemetry::metrics::Gauges;

impl Runs {
    /// The gauges now.
    pub fn gauges(&self) -> Gauges {
        let now_ms = self.clock.now_ms();
        let now = self.clock.monotonic();
        let mut gauges = Gauges {
            queue: self
                .dispatch
                .queue_ages(now)
                .into_iter()
                .map(|(action, n, age)| (action, n, age.as_secs_f64()))
                .collect(),
            runs_active: self.scheduler.len() as u64,
            ..Gauges::default()
        };
        let mut oldest_approval: Option<i64> = None;
        for (state, _) in self.scheduler.runs() {
            for entry in &state.undo {
                let Some(grant) = &entry.grant else { continue };
                if entry.unit.status.is_terminal() {
                    continue;
                }
                gauges.grants_open += 1;
                if grant.expires_ms < now_ms {
                    gauges.grants_overdue += 1;
                }
            }
            for step in &state.steps {
                if step.status == riposte_scheduler::state::StepStatus::AwaitingApproval {
                    gauges.approvals_pending += 1;
                    let since = step.started_at_ms.unwrap_or(now_ms);
                    oldest_approval = Some(oldest_approval.map_or(since, |o| o.min(since)));
                }
            }
        }
        gauges.approvals_oldest =
            oldest_approval.map_or(0.0, |since| (now_ms - since).max(0) as f64 / 1000.0);
        let mut workers: BTreeMap<String, u64> = BTreeMap::new();
        for worker in self.dispatch.workers() {
            *workers.entry(worker.name.clone()).or_default() += 1;
        }
        gauges.workers = workers.into_iter().collect();
        gauges
    }
}
