//! `--dev`'s answer to a task that no connected worker offers: it ends at once instead of
//! waiting, because the embedded default's in-process workers have no response backends. A
//! dry run's task succeeds with its plan (the action and the exact input a worker would get);
//! a real one fails, not retried, naming the worker setting that offers the action, so the
//! run's undos run and its concurrency key is free again at once. Outside `--dev` such a task
//! waits for a worker, up to its `schedule_to_start`.

use riposte_scheduler::TaskSpec;
use serde_json::{Value, json};

use super::Runs;

/// The lease holder named in the history of a task the orchestrator answered itself.
pub const ANSWERED_BY: &str = "riposte (no worker offers it)";

impl Runs {
    /// Answers every queued task that no registered worker offers (and the kill switch does
    /// not hold), when the settings say so and some worker is registered (so that nothing is
    /// answered before `--dev`'s own workers are there).
    pub(super) fn end_unoffered(&mut self) {
        if !self.settings.end_unoffered || !self.dispatch.has_workers() {
            return;
        }
        for task in self.dispatch.take_unoffered() {
            let outcome = answer(&task);
            let leased = match self.lease(task, ANSWERED_BY) {
                Ok(Some(leased)) => leased,
                Ok(None) => continue,
                Err(error) => {
                    tracing::error!(%error, "engine.unoffered_lease_failed");
                    continue;
                }
            };
            let (task_id, token) = (leased.peek().task_id.clone(), leased.peek().token);
            if let Err(error) = self.report(ANSWERED_BY, &task_id, token, outcome) {
                tracing::error!(%error, "engine.unoffered_result_failed");
            }
        }
    }
}

/// A dry run's plan, or a real task's failure with what to configure.
fn answer(task: &TaskSpec) -> Result<Value, (String, bool)> {
    let setting = setting(&task.action);
    if task.dry_run {
        return Ok(json!({
            "dry_run": true,
            "backend": null,
            "plan": format!("{} with this input, on a worker that offers it", task.action),
            "action": task.action,
            "input": task.input,
            "changes": [],
            "note": format!("no connected worker offers {}; {setting}", task.action),
        }));
    }
    let message = format!(
        "no connected worker offers {}: {setting} (docs/connectors.md); nothing was changed",
        task.action
    );
    Err((message, false))
}

/// The worker setting that makes a worker offer `action`, naming the backends the worker has.
fn setting(action: &str) -> String {
    use riposte_worker::connectors::{access, defender, firewall, identity, patch, sentinel};
    let family = action.split_once('.').map_or(action, |(family, _)| family);
    let (flag, backends) = match family {
        "firewall" => ("--firewall-backend", names::<firewall::Backend>()),
        "identity" => ("--identity-backend", names::<identity::Backend>()),
        "access" => ("--access-backend", names::<access::Backend>()),
        "patch" => ("--patch-backend", names::<patch::Backend>()),
        "sentinel" => ("--sentinel-backend", names::<sentinel::Backend>()),
        "defender" => ("--defender-backend", names::<defender::Backend>()),
        _ => return "start a worker that offers it".into(),
    };
    format!("start a worker with {flag} {backends}")
}

/// A backend enum's names as the worker's flag takes them: `nftables, azure-nsg or azure-ip-group`.
fn names<B: clap::ValueEnum>() -> String {
    let names: Vec<String> = B::value_variants()
        .iter()
        .filter_map(|b| b.to_possible_value())
        .map(|v| v.get_name().to_string())
        .collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.concat(),
    }
}

#[cfg(test)]
mod tests {
    use super::setting;

    #[test]
    fn each_family_names_its_flag_and_the_backends_the_worker_has() {
        let expected = [
            (
                "firewall.block_ip",
                "--firewall-backend nftables, azure-nsg or azure-ip-group",
            ),
            (
                "identity.disable_account",
                "--identity-backend linux or graph",
            ),
            ("access.grant_jit", "--access-backend nftables or azure-jit"),
            ("patch.install", "--patch-backend apt, dnf or azure"),
            ("sentinel.comment", "--sentinel-backend azure"),
            ("defender.list_alerts", "--defender-backend azure"),
        ];
        for (action, wanted) in expected {
            assert_eq!(setting(action), format!("start a worker with {wanted}"));
        }
        assert_eq!(setting("http.request"), "start a worker that offers it");
    }
}
