//! `access.*` on real nftables (as root): a worker in the `target` network namespace guards one
//! port (`--jit-ports`) from its start. A grant opens the port to one source only; it closes by
//! itself at the kernel timeout, or earlier on a revoke. A port the worker does not guard stays
//! reachable, which shows that the links themselves work.

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

const PLAYBOOKS: [&str; 2] = [
    r#"
name: grant
version: 1
params:
  ip: { type: string, required: true }
  port: { type: int, required: true }
  ttl: { type: string, default: 1h }
steps:
  - id: grant
    action: access.grant_jit
    with: { source_ip: "{{ params.ip }}", port: "{{ params.port }}", ttl: "{{ params.ttl }}" }
"#,
    r#"
name: revoke
version: 1
params:
  ip: { type: string, required: true }
  port: { type: int, required: true }
steps:
  - id: revoke
    action: access.revoke_jit
    with: { source_ip: "{{ params.ip }}", port: "{{ params.port }}" }
"#,
];

/// How long a run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a connect that should work may keep failing (links coming up).
const REACH_TIMEOUT: Duration = Duration::from_secs(5);
/// The short grant of the expiry test.
const SHORT_TTL: Duration = Duration::from_secs(4);
/// Slack of the kernel's timeout against our clock.
const TIMER_SLACK: Duration = Duration::from_millis(300);

/// The topology, a guarded and an unguarded listener in `target`, an orchestrator, a worker
/// in `target` guarding the first listener's port, and a client with the playbooks applied.
struct Setup {
    // Dropped first: the worker, then the orchestrator, then the namespaces.
    worker: Worker,
    _orchestrator: Orchestrator,
    client: Operator,
    guarded: Listener,
    open: Listener,
    topo: Topology,
}

impl Setup {
    async fn start() -> Setup {
        let topo = Topology::new();
        let any = "0.0.0.0:0".parse().unwrap();
        let guarded = topo.target.listen_tcp(any);
        let open = topo.target.listen_tcp(any);
        // The connector is under test, not the platform's approval rules: the playbooks
        // here call it bare.
        let orchestrator = Orchestrator::builder()
            .listen(&topo.orchestrator_listen())
            .policy("approvals: []")
            .start();
        let port = guarded.port().to_string();
        let worker = Worker::builder(&orchestrator.url())
            .netns(topo.target.name())
            .args(&["--access-backend", "nftables", "--jit-ports", &port])
            .start();
        let mut client = orchestrator.client();
        worker.id(&mut client).await;
        for playbook in PLAYBOOKS {
            api::apply_playbook(&mut client, playbook).await;
        }
        let setup = Setup {
            worker,
            _orchestrator: orchestrator,
            client,
            guarded,
            open,
            topo,
        };
        setup.wait_links().await;
        setup
    }

    /// Waits until both clients reach the unguarded port.
    async fn wait_links(&self) {
        let port = self.open.port();
        wait_until(
            "the attacker reaches the open port",
            REACH_TIMEOUT,
            async || {
                let addr = SocketAddr::from((TARGET_FOR_ATTACKER, port));
                self.topo.attacker.connects(addr).await
            },
        )
        .await;
        wait_until(
            "the other client reaches the open port",
            REACH_TIMEOUT,
            async || {
                let addr = SocketAddr::from((TARGET_FOR_OTHER, port));
                self.topo.other.connects(addr).await
            },
        )
        .await;
    }

    async fn attacker_connects(&self) -> bool {
        let addr = SocketAddr::from((TARGET_FOR_ATTACKER, self.guarded.port()));
        self.topo.attacker.connects(addr).await
    }

    async fn other_connects(&self) -> bool {
        let addr = SocketAddr::from((TARGET_FOR_OTHER, self.guarded.port()));
        self.topo.other.connects(addr).await
    }

    fn params(&self, extra: Value) -> Value {
        let mut params = json!({"ip": ATTACKER_IP.to_string(), "port": self.guarded.port()});
        params
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        params
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
}

#[tokio::test]
async fn a_grant_opens_the_port_to_one_source_until_its_ttl() {
    if !host::enabled() {
        return;
    }
    let mut setup = Setup::start().await;
    assert!(!setup.attacker_connects().await, "guarded from the start");
    assert!(!setup.other_connects().await, "guarded from the start");

    let started = Instant::now();
    let ttl = format!("{}s", SHORT_TTL.as_secs());
    let out = setup
        .output("grant", setup.params(json!({"ttl": ttl})))
        .await;
    assert_eq!(out["already_open"], false, "{out}");
    assert_eq!(out["source_ip"], ATTACKER_IP.to_string());
    assert_eq!(out["port"], setup.guarded.port());
    assert_eq!(out["protocol"], "tcp");
    assert!(out["expires_at"].as_str().unwrap().ends_with('Z'), "{out}");
    assert!(setup.attacker_connects().await, "granted");
    assert!(
        !setup.other_connects().await,
        "the grant is for the attacker only"
    );

    wait_until(
        "the grant expires in the kernel",
        SHORT_TTL + REACH_TIMEOUT,
        async || !setup.attacker_connects().await,
    )
    .await;
    assert!(
        started.elapsed() + TIMER_SLACK >= SHORT_TTL,
        "closed by its timeout, after {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_revoke_closes_the_port_early() {
    if !host::enabled() {
        return;
    }
    let mut setup = Setup::start().await;
    let out = setup.output("grant", setup.params(json!({}))).await;
    assert_eq!(out["already_open"], false, "{out}");
    assert!(setup.attacker_connects().await, "granted for an hour");

    let out = setup.output("revoke", setup.params(json!({}))).await;
    assert_eq!(out["was_open"], true, "{out}");
    assert!(!setup.attacker_connects().await, "revoked");
    let out = setup.output("revoke", setup.params(json!({}))).await;
    assert_eq!(out["was_open"], false, "{out}");
}

#[tokio::test]
async fn a_grant_for_a_port_the_worker_does_not_guard_is_refused() {
    if !host::enabled() {
        return;
    }
    let mut setup = Setup::start().await;
    let open = setup.open.port();
    let (status, step) = setup
        .run("grant", setup.params(json!({"port": open})))
        .await;
    assert_eq!(status, RunStatus::Failed, "{step:?}");
    let expected = format!(
        "port {open} is not guarded by this worker's --jit-ports ({})",
        setup.guarded.port()
    );
    assert!(step.error.contains(&expected), "{:?}", step.error);
}
