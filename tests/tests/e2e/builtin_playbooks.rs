//! The four built-in playbooks end to end, as an operator runs them: loaded by a plain start of
//! the orchestrator, run on real workers with real backends (nftables in a network namespace,
//! this host's accounts and apt). Each runs as a dry run that reports what it would change and
//! changes nothing; `ip-block` also runs for real and is revoked early with `grants revoke`.
//!
//! The edge worker runs in the `target` namespace with the nftables firewall and JIT backends;
//! the host worker runs in the root namespace with the Linux account and apt backends. Both
//! may call the health endpoint, which listens on the root side of the target's uplink.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use riposte_proto::v1::{Run, RunStatus, StartRunRequest, StepStatus};
use riposte_tests::api::{self, Operator};
use riposte_tests::apt_repo::{AptRepo, installed_version, unique_package};
use riposte_tests::host;
use riposte_tests::netns::{ATTACKER_IP, Listener, TARGET_FOR_ATTACKER, Topology};
use riposte_tests::{Orchestrator, Worker, response, wait_until};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a dry run may take (the patch dry run simulates apt on one host).
const RUN_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a connect that should work (or fail) may take to do so.
const REACH_TIMEOUT: Duration = Duration::from_secs(10);
/// The port the edge worker guards for just-in-time access.
const JIT_PORT: u16 = 2222;

/// An orchestrator with the built-ins, the edge and host workers, a health endpoint, an apt
/// repository with version 1.0 installed and a throwaway account.
struct Fleet {
    // Dropped first: the workers, then the orchestrator, then what they act on.
    edge: Worker,
    host: Worker,
    orchestrator: Orchestrator,
    client: Operator,
    health: SocketAddr,
    listener: Listener,
    account: Account,
    repo: AptRepo,
    topo: Topology,
}

impl Fleet {
    async fn start() -> Fleet {
        let topo = Topology::new();
        let listener = topo.target.listen_tcp("0.0.0.0:0".parse().unwrap());
        let orchestrator = Orchestrator::builder()
            .listen(&topo.orchestrator_listen())
            .approver_group("soc-leads", &["alice"])
            .approver_group("access-approvers", &["bob"])
            .principal("carol", &["responder"])
            .principal("alice", &["respond-admin"])
            .start();
        let health = serve_health(&topo).await;
        let allow = health.ip().to_string();
        let jit_port = JIT_PORT.to_string();
        let edge = Worker::builder(&orchestrator.url())
            .name("edge")
            .netns(topo.target.name())
            .labels(&[("host", "edge")])
            .args(&[
                "--firewall-backend",
                "nftables",
                "--access-backend",
                "nftables",
            ])
            .args(&["--jit-ports", &jit_port, "--http-allow-hosts", &allow])
            .start();
        let mut repo = AptRepo::build(
            &unique_package("ripbuiltin"),
            &["1.0", "2.0"],
            "riposte-test",
            "riposte-security",
        );
        repo.install("1.0");
        let state = repo.state_dir("host");
        repo.update_lists(&state);
        let apt_args = repo.worker_args(&state);
        let apt_args: Vec<&str> = apt_args.iter().map(String::as_str).collect();
        let host = Worker::builder(&orchestrator.url())
            .name("host")
            .labels(&[("host", "h1")])
            .args(&["--identity-backend", "linux", "--http-allow-hosts", &allow])
            .args(&apt_args)
            .start();
        let mut client = orchestrator.client();
        edge.id(&mut client).await;
        host.id(&mut client).await;
        Fleet {
            edge,
            host,
            orchestrator,
            client,
            health,
            listener,
            account: Account::create(),
            repo,
            topo,
        }
    }

    /// Runs `playbook` as a dry run to its end; it must succeed.
    async fn dry_run(&mut self, playbook: &str, params: Value) -> Run {
        let request = StartRunRequest {
            playbook: playbook.into(),
            params_json: params.to_string(),
            dry_run: true,
            ..Default::default()
        };
        let run = api::start_run_with(&mut self.client, request)
            .await
            .run
            .expect("StartRun answers the run");
        let run = response::wait_ended(&mut self.client, &run.run_id, RUN_TIMEOUT).await;
        assert_eq!(
            run.status(),
            RunStatus::Succeeded,
            "{}\n{}\n{}",
            api::describe(&run),
            self.edge.log_tail(),
            self.host.log_tail()
        );
        assert!(run.dry_run, "the run is marked as a dry run");
        run
    }

    fn via_attacker(&self, port: u16) -> SocketAddr {
        SocketAddr::from((TARGET_FOR_ATTACKER, port))
    }

    async fn attacker_reaches(&self, port: u16) -> bool {
        self.topo.attacker.connects(self.via_attacker(port)).await
    }

    /// The elements of a set of the edge's managed table.
    fn elements(&self, set: &str) -> Vec<Value> {
        let listing = self
            .topo
            .target
            .nft_json(&["list", "set", "inet", "riposte", set]);
        listing["nftables"]
            .as_array()
            .expect("an nft listing")
            .iter()
            .find_map(|o| o.get("set"))
            .and_then(|set| set.get("elem"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }
}

/// The output of step `id` (of its one unit).
fn output(run: &Run, id: &str) -> Value {
    api::json(&api::step(run, id).output_json)
}

/// Asserts a dry-run output: marked, and with at least one planned change.
fn planned(out: &Value, what: &str) {
    assert_eq!(out["dry_run"], json!(true), "{what}: {out}");
    let changes = out["changes"].as_array().map_or(0, Vec::len);
    assert!(changes > 0, "{what} plans its changes: {out}");
}

#[tokio::test]
async fn every_builtin_playbook_is_loaded_and_runs_as_a_dry_run_changing_nothing() {
    if !host::enabled() {
        return;
    }
    let mut fleet = Fleet::start().await;
    let listed = fleet.orchestrator.cli(&["playbook", "list"]).await;
    for name in [
        "ip-block",
        "account-disable",
        "jit-access-grant",
        "patch-deployment",
    ] {
        assert!(
            listed.stdout.contains(name),
            "{name} is built in: {listed:?}"
        );
    }

    // ip-block, at low confidence: the approval is recorded, not waited for.
    let attacker = ATTACKER_IP.to_string();
    let params = json!({"ip": attacker, "duration": "1h", "confidence": "low", "reason": "plan"});
    let run = fleet.dry_run("ip-block", params).await;
    assert_eq!(api::step(&run, "block").status(), StepStatus::Skipped);
    planned(&output(&run, "block_approved"), "block_ip");
    assert!(
        fleet.elements("block4").is_empty(),
        "a dry run blocks nothing"
    );
    assert!(fleet.attacker_reaches(fleet.listener.port()).await);

    // account-disable: the approval, the disable and the revoke, planned.
    let account = fleet.account.name.clone();
    let before = fleet.account.shadow();
    let params = json!({"account": account, "reason": "plan"});
    let run = fleet.dry_run("account-disable", params).await;
    planned(&output(&run, "disable"), "disable_account");
    assert_eq!(
        fleet.account.shadow(),
        before,
        "a dry run changes no account"
    );

    // jit-access-grant to the attacker's address on the guarded port.
    let params = json!({
        "source_ip": attacker, "port": JIT_PORT, "host": "edge", "duration": "30m",
        "justification": "plan",
    });
    let run = fleet.dry_run("jit-access-grant", params).await;
    planned(&output(&run, "grant"), "grant_jit");
    assert!(
        fleet.elements("jit_tcp4").is_empty(),
        "a dry run opens nothing"
    );

    // patch-deployment on h1: the install is planned, version 1.0 stays.
    let health_url = format!("http://{}/healthz", fleet.health);
    let params = json!({"hosts": ["h1"], "health_url": health_url, "scope": "security"});
    let run = fleet.dry_run("patch-deployment", params).await;
    let install = output(&run, "install");
    let planned_text = install.to_string();
    assert!(
        planned_text.contains(fleet.repo.package()),
        "the install plans the package: {install}"
    );
    assert_eq!(
        installed_version(fleet.repo.package()).as_deref(),
        Some("1.0"),
        "a dry run installs nothing"
    );
}

#[tokio::test]
async fn ip_block_blocks_for_real_and_grants_revoke_unblocks_early() {
    if !host::enabled() {
        return;
    }
    let mut fleet = Fleet::start().await;
    let port = fleet.listener.port();
    assert!(fleet.attacker_reaches(port).await, "reachable before");
    let attacker = ATTACKER_IP.to_string();
    let params = json!({"ip": attacker, "duration": "1h", "reason": "e2e"});
    let run = response::start_run_as(&mut fleet.client, "ip-block", params, "carol").await;
    let run_id = run.run_id.clone();
    let held = response::wait_step(
        &mut fleet.client,
        &run_id,
        "block",
        StepStatus::Succeeded,
        RUN_TIMEOUT,
    )
    .await;
    let block = output(&held, "block");
    assert_eq!(block["already_blocked"], json!(false), "{block}");
    assert_eq!(fleet.elements("block4").len(), 1);
    wait_until("the attacker is dropped", REACH_TIMEOUT, async || {
        !fleet.attacker_reaches(port).await
    })
    .await;
    let grants = response::grants_of(&mut fleet.client, &run_id).await;
    assert_eq!(grants.len(), 1, "the block is an open grant: {grants:?}");

    response::revoke_grant(&mut fleet.client, &run_id, "block", "alice")
        .await
        .expect("the grant is revoked");
    let run = response::wait_ended(&mut fleet.client, &run_id, RUN_TIMEOUT).await;
    assert_eq!(
        run.status(),
        RunStatus::Succeeded,
        "{}",
        api::describe(&run)
    );
    assert!(fleet.elements("block4").is_empty(), "the undo removed it");
    wait_until("the attacker connects again", REACH_TIMEOUT, async || {
        fleet.attacker_reaches(port).await
    })
    .await;

    // The guard refuses a protected range before anything is dispatched.
    let params = json!({"ip": "10.1.2.3", "duration": "1h"});
    let run = response::start_run_as(&mut fleet.client, "ip-block", params, "carol").await;
    let run = response::wait_ended(&mut fleet.client, &run.run_id, RUN_TIMEOUT).await;
    assert_eq!(run.status(), RunStatus::Failed);
    let error = &api::step(&run, "block").error;
    assert!(
        error.contains("refused by guard: 10.1.2.3 is in protected range 10.0.0.0/8"),
        "{error}"
    );
}

/// Answers `200 ok` to every request, on the root side of the target's uplink (so both the
/// edge worker and the host worker reach it).
async fn serve_health(topo: &Topology) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(topo.orchestrator_listen())
        .await
        .expect("bind the health endpoint");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let reply = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
                let _ = stream.write_all(reply).await;
            });
        }
    });
    addr
}

/// A throwaway local account without a home; removed when dropped.
struct Account {
    name: String,
}

impl Account {
    fn create() -> Account {
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("rip{}b{n}", std::process::id());
        let status = Command::new("useradd")
            .args(["-M", "-s", "/usr/sbin/nologin", &name])
            .status()
            .expect("useradd runs");
        assert!(status.success(), "useradd {name}: {status}");
        Account { name }
    }

    /// The whole shadow entry.
    fn shadow(&self) -> String {
        let out = Command::new("getent")
            .args(["shadow", &self.name])
            .output()
            .expect("getent runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        let removed = Command::new("userdel")
            .args(["-f", &self.name])
            .stderr(Stdio::null())
            .status();
        if !removed.is_ok_and(|s| s.success()) {
            eprintln!("cleanup: userdel {} failed", self.name);
        }
    }
}
