//! Tests of the nftables backend against real nftables, each in a network namespace of its own
//! (they need root, `ip` and `nft`, and run only with `RIPOSTE_HOST_TESTS=1`), and of its
//! flags.

#![expect(
    clippy::disallowed_methods,
    reason = "the tests set up network namespaces with `ip`, as an administrator would"
)]

use std::collections::HashMap;
use std::net::IpAddr;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use riposte_test_support::host;

use crate::connectors::firewall::parse_target;

use super::*;
use crate::connectors::access::Protocol;

/// The task timeout the tests give every action.
const TASK_TIMEOUT: Duration = Duration::from_secs(30);

/// A network namespace deleted on drop, with settings that run nft inside it.
struct Netns {
    name: String,
}

impl Netns {
    fn new() -> Netns {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("rpw-{}-{n}", std::process::id());
        sh("ip", &["netns", "add", &name]);
        Netns { name }
    }

    fn settings(&self, jit_ports: &[u16]) -> Settings {
        let command = ["ip", "netns", "exec", &self.name, "nft"];
        Settings {
            table: "riposte".to_owned(),
            jit_ports: jit_ports.to_vec(),
            command: command.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// `nft ARGS` in the namespace: (exit code, stdout + stderr).
    fn nft(&self, args: &[&str]) -> (i32, String) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, "nft"])
            .args(args)
            .output()
            .expect("ip netns exec runs (the tests need root, iproute2 and nftables)");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.code().unwrap_or(-1), text)
    }

    /// The keys in `set` of the managed table.
    fn keys(&self, set: &str) -> Vec<String> {
        let (code, text) = self.nft(&["-j", "list", "set", "inet", "riposte", set]);
        assert_eq!(code, 0, "{text}");
        parse::set_elements(&text)
            .unwrap()
            .into_iter()
            .map(|e| e.key)
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn sh(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{program} {args:?}: {e} (the tests need root and iproute2)"));
    assert!(status.success(), "{program} {args:?}: {status}");
}

fn cx(dry_run: bool) -> Context {
    Context {
        dry_run,
        ..Context::test(TASK_TIMEOUT)
    }
}

fn block_of(ip: &str, secs: u64) -> Block {
    Block {
        target: parse_target(ip).unwrap(),
        ttl: Duration::from_secs(secs),
        reason: String::new(),
    }
}

fn unblock_of(ip: &str) -> Unblock {
    Unblock {
        target: parse_target(ip).unwrap(),
    }
}

fn grant_of(source: &str, port: u16, secs: u64) -> Grant {
    Grant {
        source: source.parse::<IpAddr>().unwrap(),
        port,
        protocol: Protocol::Tcp,
        ttl: Duration::from_secs(secs),
        vm: None,
        justification: String::new(),
    }
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn block_refresh_list_and_unblock() {
    if !host::enabled() {
        return;
    }
    let ns = Netns::new();
    let settings = ns.settings(&[]);
    let out = block(&settings, &block_of("203.0.113.7", 60), &cx(false))
        .await
        .unwrap();
    assert_eq!(out["already_blocked"], false, "{out}");
    assert_eq!(out["ip"], "203.0.113.7");
    let changes = strings(&out["changes"]);
    assert_eq!(changes[0], "nft add table inet riposte", "{changes:#?}");
    assert_eq!(
        changes.last().unwrap(),
        "nft add element inet riposte block4 { 203.0.113.7 timeout 60s comment \"run/step/0\" }"
    );
    assert_eq!(ns.keys("block4"), ["203.0.113.7"]);

    let again = block(&settings, &block_of("203.0.113.7", 120), &cx(false))
        .await
        .unwrap();
    assert_eq!(again["already_blocked"], true, "{again}");
    assert_eq!(strings(&again["changes"]).len(), 3, "add, delete, add");
    let listed = list_blocked(&settings, &cx(false)).await.unwrap();
    let blocked = listed["blocked"].as_array().unwrap();
    assert_eq!(blocked.len(), 1, "{listed}");
    assert_eq!(blocked[0]["timeout_secs"], 120, "refreshed: {listed}");
    assert_eq!(blocked[0]["comment"], "run/step/0");

    block(&settings, &block_of("2001:db8::/32", 60), &cx(false))
        .await
        .unwrap();
    assert_eq!(ns.keys("block6"), ["2001:db8::/32"]);

    let out = unblock(&settings, &unblock_of("203.0.113.7"), &cx(false))
        .await
        .unwrap();
    assert_eq!(out["was_blocked"], true, "{out}");
    assert!(ns.keys("block4").is_empty());
    let out = unblock(&settings, &unblock_of("203.0.113.7"), &cx(false))
        .await
        .unwrap();
    assert_eq!(out["was_blocked"], false, "{out}");
    assert_eq!(out["changes"], json!([]));
}

#[tokio::test]
async fn setup_twice_keeps_one_copy_of_each_rule() {
    if !host::enabled() {
        return;
    }
    let ns = Netns::new();
    let settings = ns.settings(&[2222]);
    for ip in ["198.51.100.1", "198.51.100.2"] {
        block(&settings, &block_of(ip, 60), &cx(false))
            .await
            .unwrap();
    }
    let (code, text) = ns.nft(&["-j", "list", "chain", "inet", "riposte", "input"]);
    assert_eq!(code, 0, "{text}");
    let rules = parse::chain_rules(&text).unwrap();
    assert_eq!(rules.len(), script::rules().len(), "{text}");
    assert_eq!(ns.keys("block4").len(), 2, "elements survive the setup");
    assert_eq!(ns.keys("jit_ports"), ["2222"]);
}

#[tokio::test]
async fn a_dry_run_changes_nothing() {
    if !host::enabled() {
        return;
    }
    let ns = Netns::new();
    let settings = ns.settings(&[2222]);
    let out = block(&settings, &block_of("192.0.2.9", 60), &cx(true))
        .await
        .unwrap();
    assert_eq!(out["dry_run"], true);
    let changes = strings(&out["changes"]);
    let setup = script::setup("riposte", &[2222]);
    assert_eq!(changes.len(), setup.len() + 1, "the setup it would create");
    let (code, text) = ns.nft(&["list", "tables"]);
    assert_eq!((code, text.trim()), (0, ""), "no table was created");
    let grant = grant_jit(&settings, &grant_of("192.0.2.9", 2222, 60), &cx(true))
        .await
        .unwrap();
    assert_eq!(grant["dry_run"], true);
    assert_eq!(ns.nft(&["list", "tables"]).1.trim(), "");

    block(&settings, &block_of("192.0.2.9", 60), &cx(false))
        .await
        .unwrap();
    let out = unblock(&settings, &unblock_of("192.0.2.9"), &cx(true))
        .await
        .unwrap();
    assert_eq!(out["was_blocked"], true, "{out}");
    assert_eq!(
        strings(&out["changes"]),
        ["nft delete element inet riposte block4 { 192.0.2.9 }"]
    );
    let refresh = block(&settings, &block_of("192.0.2.9", 600), &cx(true))
        .await
        .unwrap();
    assert_eq!(strings(&refresh["changes"]).len(), 3, "{refresh}");
    assert_eq!(ns.keys("block4"), ["192.0.2.9"], "still blocked");
    let listed = list_blocked(&settings, &cx(false)).await.unwrap();
    assert_eq!(listed["blocked"][0]["timeout_secs"], 60, "not refreshed");
}

#[tokio::test]
async fn grants_and_revokes() {
    if !host::enabled() {
        return;
    }
    let ns = Netns::new();
    let settings = ns.settings(&[2222]);
    let out = grant_jit(&settings, &grant_of("198.51.100.2", 2222, 60), &cx(false))
        .await
        .unwrap();
    assert_eq!(out["already_open"], false, "{out}");
    assert!(out["expires_at"].as_str().unwrap().ends_with('Z'), "{out}");
    assert_eq!(ns.keys("jit_tcp4"), ["198.51.100.2 . 2222"]);
    let revoke = Revoke {
        source: "198.51.100.2".parse().unwrap(),
        port: 2222,
        protocol: Protocol::Tcp,
        vm: None,
    };
    let out = revoke_jit(&settings, &revoke, &cx(false)).await.unwrap();
    assert_eq!(out["was_open"], true, "{out}");
    assert!(ns.keys("jit_tcp4").is_empty());
    let out = revoke_jit(&settings, &revoke, &cx(false)).await.unwrap();
    assert_eq!(out["was_open"], false, "{out}");

    let refused = grant_jit(&settings, &grant_of("198.51.100.2", 22, 60), &cx(false))
        .await
        .unwrap_err();
    assert_eq!(
        refused.message,
        "port 22 is not guarded by this worker's --jit-ports (2222)"
    );
    let off = ns.settings(&[]);
    let refused = grant_jit(&off, &grant_of("198.51.100.2", 22, 60), &cx(false))
        .await
        .unwrap_err();
    assert!(
        refused.message.contains("--jit-ports is empty"),
        "{refused}"
    );
}

#[tokio::test]
async fn catch_alls_are_refused_before_nft_runs() {
    let settings = Settings {
        command: vec!["riposte-no-such-nft".to_owned()],
        ..Settings::default()
    };
    for wide in ["0.0.0.0/0", "::/0", "10.0.0.0/7"] {
        let err = block(&settings, &block_of(wide, 60), &cx(false))
            .await
            .unwrap_err();
        assert!(err.message.contains("refusing to block"), "{err}");
        assert!(!err.retryable);
    }
}

#[tokio::test]
async fn a_missing_nft_and_a_failing_nft_say_so() {
    let settings = Settings {
        command: vec!["riposte-no-such-nft".to_owned()],
        ..Settings::default()
    };
    let err = list_blocked(&settings, &cx(false)).await.unwrap_err();
    assert!(err.message.starts_with("nft is not installed"), "{err}");

    if !host::enabled() {
        return;
    }
    let ns = Netns::new();
    let (code, text) =
        ns.nft(&["add table inet riposte; add set inet riposte block4 { type ipv4_addr; }"]);
    assert_eq!(code, 0, "{text}");
    let err = block(&ns.settings(&[]), &block_of("192.0.2.1", 60), &cx(false))
        .await
        .unwrap_err();
    assert!(
        err.message.starts_with("`nft -f -` failed (exit code 1): "),
        "{err}"
    );
    assert!(err.message.contains("File exists"), "{err}");
}

fn config(args: &[&str], env: &[(&str, &str)]) -> Result<crate::Config, crate::Error> {
    let argv = std::iter::once("riposte-worker").chain(args.iter().copied());
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    crate::Config::from_args(argv, &env)
}

#[test]
fn flags_and_environment() {
    let default = config(&[], &[]).unwrap().nftables;
    assert_eq!(default, Settings::default());
    let flags = config(&["--nft-table", "soar", "--jit-ports", "8443,22"], &[]).unwrap();
    assert_eq!(flags.nftables.table, "soar");
    assert_eq!(flags.nftables.jit_ports, [22, 8443]);
    let env = [
        ("RIPOSTE_NFT_TABLE", "fromenv"),
        ("RIPOSTE_NFT_JIT_PORTS", "2222"),
    ];
    let from_env = config(&[], &env).unwrap().nftables;
    assert_eq!(
        (from_env.table.as_str(), from_env.jit_ports),
        ("fromenv", vec![2222])
    );
    let flag_wins = config(&["--nft-table", "flag"], &env).unwrap().nftables;
    assert_eq!(flag_wins.table, "flag");
    assert!(config(&["--nft-table", "a;b"], &[]).is_err());
    assert!(config(&["--jit-ports", "0"], &[]).is_err());
    let bad_env = config(&[], &[("RIPOSTE_NFT_TABLE", "x y")]).unwrap_err();
    assert!(
        bad_env.to_string().contains("RIPOSTE_NFT_TABLE"),
        "{bad_env}"
    );
}
