//! The orchestrator's configuration: command-line flags (each also an environment variable).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Riposte coordinator: schedules playbook runs on workers and keeps all state in an embedded
/// sled database.
#[derive(Debug, Clone, Parser)]
#[command(name = "riposte-orchestrator", version, about)]
pub struct Config {
    /// Address the gRPC API listens on (port 0 picks a free port; the bound address is
    /// printed on stdout).
    #[arg(long, env = "RIPOSTE_LISTEN", default_value = "127.0.0.1:7470")]
    pub listen: SocketAddr,

    /// Folder of the sled database; created if missing.
    #[arg(long, env = "RIPOSTE_DATA_DIR", default_value = "./riposte-data")]
    pub data_dir: PathBuf,

    /// Embedded default: also start in-process workers and apply the example playbooks.
    #[arg(long)]
    pub dev: bool,

    /// Number of in-process workers started by --dev.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub dev_workers: u32,

    /// A lease lasts this long without a heartbeat; a task whose lease expires is dispatched
    /// again (after a restart, every lease gets this long as grace).
    #[arg(long, env = "RIPOSTE_LEASE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub lease_timeout: Duration,

    /// Longest time a worker's long-poll is held open.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub poll_wait_max: Duration,

    /// Apply every `*.yaml` playbook in this folder at start (invalid ones are reported and
    /// skipped).
    #[arg(long, env = "RIPOSTE_PLAYBOOKS")]
    pub playbooks: Option<PathBuf>,

    /// An approver group and its members, `GROUP=alice,bob`; repeat for more groups. Approval
    /// steps name the groups that may decide.
    #[arg(long = "approver-group", value_name = "GROUP=MEMBERS", value_parser = parse_group)]
    pub approver_groups: Vec<(String, Vec<String>)>,

    /// Log filter (tracing env-filter syntax), e.g. `info` or `riposte_orchestrator=debug`.
    #[arg(long, env = "RIPOSTE_LOG", default_value = "info")]
    pub log: String,
}

/// Parses `10s`, `500ms`, `2m` and the like; zero and over an hour are refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| format!("`{text}`: {e}"))?;
    if d.is_zero() || d > Duration::from_secs(3600) {
        return Err(format!("`{text}` must be more than 0 and at most 1h"));
    }
    Ok(d)
}

/// `soc-leads=alice,bob` -> ("soc-leads", ["alice", "bob"]).
fn parse_group(text: &str) -> Result<(String, Vec<String>), String> {
    let (group, members) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected GROUP=MEMBER,MEMBER"))?;
    let members: Vec<String> = members
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(String::from)
        .collect();
    if group.trim().is_empty() || members.is_empty() {
        return Err(format!(
            "`{text}`: a group needs a name and at least one member"
        ));
    }
    Ok((group.trim().to_string(), members))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = Config::try_parse_from(["riposte-orchestrator"]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:7470");
        assert_eq!(c.lease_timeout, Duration::from_secs(10));
        let c = Config::try_parse_from([
            "riposte-orchestrator",
            "--listen",
            "127.0.0.1:0",
            "--lease-timeout",
            "1500ms",
            "--dev",
        ])
        .unwrap();
        assert!(c.dev);
        assert_eq!(c.lease_timeout, Duration::from_millis(1500));
    }

    #[test]
    fn approver_groups_parse() {
        let c = Config::try_parse_from([
            "x",
            "--approver-group",
            "soc-leads=alice, bob",
            "--approver-group",
            "on-call=carol",
        ])
        .unwrap();
        assert_eq!(
            c.approver_groups[0],
            ("soc-leads".into(), vec!["alice".into(), "bob".into()])
        );
        assert_eq!(c.approver_groups.len(), 2);
        assert!(Config::try_parse_from(["x", "--approver-group", "nobody"]).is_err());
        assert!(Config::try_parse_from(["x", "--approver-group", "g="]).is_err());
    }

    #[test]
    fn bad_durations_are_refused() {
        assert!(Config::try_parse_from(["x", "--lease-timeout", "0s"]).is_err());
        assert!(Config::try_parse_from(["x", "--lease-timeout", "10 parsecs"]).is_err());
        assert!(Config::try_parse_from(["x", "--lease-timeout", "2h"]).is_err());
    }
}
