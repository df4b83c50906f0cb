//! `firewall.*` on real nftables (as root): the worker runs in a `target` network namespace
//! with a TCP listener; `attacker` and `other` connect to it over their own links. A block drops
//! the attacker only, and ends by itself at the kernel timeout; an unblock ends it early;
//! re-blocking is idempotent; bad input changes nothing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use riposte_proto::v1::{RunStatus, Step};
use riposte_tests::api::{self, Operator};
use riposte_tests::host;
use riposte_tests::netns::{
    ATTACKER_IP, Listener, TARGET_FOR_ATTACKER, TARGET_FOR_OTHER, Topology,
};
use riposte_tests::{Orchestrator, Worker, wait_until};
use serde_json::{Value, json};

const PLAYBOOKS: [&str; 3] = [
    r#"
name: block
version: 1
params:
  ip: { type: string, required: true }
  ttl: { type: string, default: 1h }
steps:
  - id: block
    action: firewall.block_ip
    with: { ip: "{{ params.ip }}", ttl: "{{ params.ttl }}", reason: "e2e test" }
"#,
    r#"
name: unblock
version: 1
params:
  ip: { type: string, required: true }
steps:
  - id: unblock
    action: firewall.unblock_ip
    with: { ip: "{{ params.ip }}" }
"#,
    r#"
name: list
version: 1
steps:
  - id: list
    action: firewall.list_blocked
"#,
];

/// How long a run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a connect that should work may keep failing (link and listener coming up).
const REACH_TIMEOUT: Duration = Duration::from_secs(5);
/// The short block of the expiry test.
const SHORT_TTL: Duration = Duration::from_secs(4);
/// Slack of the kernel's timeout against our clock.
const TIMER_SLACK: Duration = Duration::from_millis(300);

/// The topology, a listener in `target`, an orchestrator, a worker in `target` with the
/// nftables firewall backend, and a client with the playbooks applied.
struct Setup {
    // Dropped first: the worker, then the orchestrator, then the namespaces.
    worker: Worker,
    _orchestrator: Orchestrator,
    client: Operator,
    listener: Listener,
    topo: Topology,
}

impl Setup {
    async fn start() -> Setup {
        Setup::start_with(&[]).await
    }

    /// With more orchestrator arguments (a guard policy).
    async fn start_with(orchestrator_args: &[&str]) -> Setup {
        let topo = Topology::new();
        let listener = topo.target.listen_tcp("0.0.0.0:0".parse().unwrap());
        // The connector is under test, not the platform's approval rules: the playbooks
        // here call it bare.
        let orchestrator = Orchestrator::builder()
            .listen(&topo.orchestrator_listen())
            .policy("approvals: []")
            .args(orchestrator_args)
            .start();
        let worker = Worker::builder(&orchestrator.url())
            .netns(topo.target.name())
            .args(&["--firewall-backend", "nftables"])
            .start();
        let mut client = orchestrator.client();
        worker.id(&mut client).await;
        for playbook in PLAYBOOKS {
            api::apply_playbook(&mut client, playbook).await;
        }
        Setup {
            worker,
            _orchestrator: orchestrator,
            client,
            listener,
            topo,
        }
    }

    fn via_attacker_link(&self) -> SocketAddr {
        SocketAddr::from((TARGET_FOR_ATTACKER, self.listener.port()))
    }

    fn via_other_link(&self) -> SocketAddr {
        SocketAddr::from((TARGET_FOR_OTHER, self.listener.port()))
    }

    async fn attacker_connects(&self) -> bool {
        self.topo.attacker.connects(self.via_attacker_link()).await
    }

    async fn other_connects(&self) -> bool {
        self.topo.other.connects(self.via_other_link()).await
    }

    /// Runs `playbook` with `params` to its end and returns its one step.
    async fn run(&mut self, playbook: &str, params: Value) -> (RunStatus, Step) {
        let run = api::start_run(&mut self.client, playbook, params).await;
        let run = api::wait_finished(&mut self.client, &run.run_id, RUN_TIMEOUT).await;
        let step = run.steps.first().cloned().expect("one step");
        (run.status(), step)
    }

    /// Runs `playbook`, expects success and returns the step's output.
    async fn output(&mut self, playbook: &str, params: Value) -> Value {
        let (status, step) = self.run(playbook, params).await;
        assert_eq!(
            status,
            RunStatus::Succeeded,
            "{step:?}\n{}",
            self.worker.log_tail()
        );
        api::json(&step.output_json)
    }

    /// The keys of a set in the managed table.
    fn keys(&self, set: &str) -> Vec<Value> {
        let listing = self
            .topo
            .target
            .nft_json(&["list", "set", "inet", "riposte", set]);
        let set = listing["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .find_map(|o| o.get("set"))
            .expect("a set in the listing");
        set.get("elem")
            .and_then(Value::as_array)
            .map(|elems| elems.iter().map(|e| e["elem"]["val"].clone()).collect())
            .unwrap_or_default()
    }

    /// The expressions of the rules of the managed chain.
    fn rules(&self) -> Vec<Value> {
        let listing = self
            .topo
            .target
            .nft_json(&["list", "chain", "inet", "riposte", "input"]);
        listing["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| o.get("rule").map(|r| r["expr"].clone()))
            .collect()
    }
}

async fn wait_reachable(setup: &Setup) {
    wait_until(
        "the attacker reaches the listener",
        REACH_TIMEOUT,
        async || setup.attacker_connects().await,
    )
    .await;
    wait_until(
        "the other client reaches the listener",
        REACH_TIMEOUT,
        async || setup.other_connects().await,
    )
    .await;
}

#[tokio::test]
async fn a_block_drops_the_attacker_only_and_ends_at_its_ttl() {
    if !host::enabled() {
        return;
    }
    let mut setup = Setup::start().await;
    wait_reachable(&setup).await;

    let started = Instant::now();
    let ttl = format!("{}s", SHORT_TTL.as_secs());
    let params = json!({"ip": ATTACKER_IP.to_string(), "ttl": ttl});
    let out = setup.output("block", params).await;
    assert_eq!(out["already_blocked"], false, "{out}");
    assert_eq!(out["ip"], ATTACKER_IP.to_string());
    assert_eq!(out["dry_run"], false);
    assert!(out["expires_at"].as_str().unwrap().ends_with('Z'), "{out}");
    let changes = out["changes"].as_array().unwrap();
    assert!(
        changes
            .last()
            .unwrap()
            .as_str()
            .unwrap()
            .starts_with(&format!(
                "nft add element inet riposte block4 {{ {ATTACKER_IP} timeout 4s comment \""
            )),
        "{out}"
    );

    let blocked = setup.topo.attacker.connect(setup.via_attacker_link()).await;
    assert!(blocked.is_err(), "the attacker is dropped");
    assert!(setup.other_connects().await, "the other client is not");

    wait_until("the block expires", SHORT_TTL + REACH_TIMEOUT, async || {
        setup.attacker_connects().await
    })
    .await;
    assert!(
        started.elapsed() + TIMER_SLACK >= SHORT_TTL,
        "the block ended by its kernel timeout, after {:?}",
        started.elapsed()
    );
    assert!(setup.keys("block4").is_empty(), "the element expired");
}

#[tokio::test]
async fn an_unblock_ends_a_block_early_and_is_idempotent() {
    if !host::enabled() {
        return;
    }
    let mut setup = Setup::start().await;
    wait_reachable(&setup).await;
    let ip = ATTACKER_IP.to_string();
    setup.output("block", json!({"ip": ip})).await;
    assert!(!setup.attacker_connects().await, "blocked for an hour");

    let out = setup.output("unblock", json!({"ip": ip})).await;
    assert_eq!(out["was_blocked"], true, "{out}");
    assert_eq!(
        out["changes"],
        json!([format!("nft delete element inet riposte block4 {{ {ip} }}")])
    );
    assert!(setup.attacker_connects().await, "unblocked");

    let out = setup.output("unblock", json!({"ip": ip})).await;
    assert_eq!(out["was_blocked"], false, "{out}");
    assert_eq!(out["changes"], json!([]));
}

#[tokio::test]
async fn reblocking_is_idempotent_listed_and_never_duplicates_rules() {
    if !host::enabled() {
        return;
    }
    // The platform guard refuses IPv6 blocks wider than /64 unless told otherwise.
    let mut setup = Setup::start_with(&["--block-prefix-min-v6", "48"]).await;
    // The worker applied the setup when it started; each block applies it again.
    let rules_at_start = setup.rules();
    assert!(!rules_at_start.is_empty());
    let ip = ATTACKER_IP.to_string();
    let first = setup.output("block", json!({"ip": ip, "ttl": "1h"})).await;
    assert_eq!(first["already_blocked"], false, "{first}");
    let again = setup.output("block", json!({"ip": ip, "ttl": "2h"})).await;
    assert_eq!(again["already_blocked"], true, "{again}");
    assert_eq!(setup.keys("block4"), [json!(ip)], "one element");

    let rules = setup.rules();
    assert_eq!(rules, rules_at_start, "the same rules, once each");
    for (i, rule) in rules.iter().enumerate() {
        assert!(!rules[..i].contains(rule), "duplicate rule {rule}");
    }

    setup
        .output("block", json!({"ip": "2001:db8::/48", "ttl": "1h"}))
        .await;
    let listed = setup.output("list", json!({})).await;
    let blocked = listed["blocked"].as_array().unwrap();
    let ips: Vec<&str> = blocked.iter().map(|b| b["ip"].as_str().unwrap()).collect();
    assert_eq!(ips, [ip.as_str(), "2001:db8::/48"], "{listed}");
    assert_eq!(
        blocked[0]["timeout_secs"], 7200,
        "refreshed by the re-block"
    );
    let comment = blocked[0]["comment"].as_str().unwrap();
    assert!(comment.contains("/block/"), "the task's key: {comment}");
}

/// Bad input is refused by the first layer that sees it: the platform guard on the
/// orchestrator (what no policy can allow), then the worker's own parsing (what a relaxed
/// policy lets through: host bits, a zero TTL, a catch-all).
#[tokio::test]
async fn bad_input_fails_with_a_reason_and_adds_nothing() {
    if !host::enabled() {
        return;
    }
    let mut setup = Setup::start().await;
    let guarded = [
        (
            json!({"ip": "203.0.113.300"}),
            "refused by guard: `203.0.113.300` is not an IP address or CIDR",
        ),
        (json!({"ip": "0.0.0.0/0"}), "refused by guard: 0.0.0.0/0"),
        (
            json!({"ip": "10.0.0.1/8"}),
            "refused by guard: 10.0.0.1/8 is in protected range 10.0.0.0/8",
        ),
    ];
    for (params, expected) in guarded {
        let (status, step) = setup.run("block", params.clone()).await;
        assert_eq!(status, RunStatus::Failed, "{params}: {step:?}");
        assert!(
            step.error.contains(expected),
            "{params}: {:?} should say {expected:?}",
            step.error
        );
        assert_eq!(
            step.attempts, 0,
            "{params}: the guard refuses before dispatch"
        );
    }
    assert!(setup.keys("block4").is_empty(), "nothing was added");
    drop(setup);

    let relaxed = ["--protected-ranges", "", "--block-prefix-min-v4", "1"];
    let mut setup = Setup::start_with(&relaxed).await;
    let cases = [
        (
            json!({"ip": "10.0.0.1/8"}),
            r#"`ip` "10.0.0.1/8" has host bits set (did you mean 10.0.0.0/8?)"#,
        ),
        (
            json!({"ip": "198.51.100.9", "ttl": "0s"}),
            "`ttl` must be at least 1s",
        ),
        (
            json!({"ip": "32.0.0.0/7"}),
            "refusing to block 32.0.0.0/7: this worker never blocks a prefix shorter than /8",
        ),
    ];
    for (params, expected) in cases {
        let (status, step) = setup.run("block", params.clone()).await;
        assert_eq!(status, RunStatus::Failed, "{params}: {step:?}");
        assert!(
            step.error.contains(expected),
            "{params}: {:?} should say {expected:?}",
            step.error
        );
    }
    assert!(setup.keys("block4").is_empty(), "nothing was added");
}
