//! `riposte-worker` as a child process: named uniquely so that tests can tell workers apart in
//! the orchestrator's answers, with its logs captured and the faults the tests inject.

use std::process::ExitStatus;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nix::sys::signal::Signal;
use riposte_proto::v1::ListWorkersRequest;
use tempfile::TempDir;

use crate::azure::AzureServer;
use crate::binaries::binaries;
use crate::process::{Process, Stdout};
use crate::wait::wait_for;

/// How long a worker may take to register.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(20);

/// Options for [`Worker`].
#[derive(Debug, Clone)]
pub struct WorkerBuilder {
    orchestrator_url: String,
    labels: Vec<(String, String)>,
    concurrency: u32,
    name: Option<String>,
    log: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    netns: Option<String>,
}

impl WorkerBuilder {
    /// Every Azure flag pointing at `azure` (a local Azure), with `secret` in
    /// `AZURE_CLIENT_SECRET`, never in a flag.
    pub fn azure(self, azure: &AzureServer, secret: &str) -> Self {
        let flags = azure.worker_args();
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        self.args(&flags).env("AZURE_CLIENT_SECRET", secret)
    }

    /// Labels, `key=value`.
    pub fn labels(mut self, labels: &[(&str, &str)]) -> Self {
        self.labels
            .extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }

    /// Tasks run at once.
    pub fn concurrency(mut self, concurrency: u32) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// The name shown to operators (default: `w` and a number unique in this test process).
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The `RUST_LOG` filter (default `info`).
    pub fn log(mut self, filter: &str) -> Self {
        self.log = filter.into();
        self
    }

    /// More command-line arguments, e.g. `["--firewall-backend", "nftables"]`.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// An environment variable for the worker process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs the worker inside the network namespace `name` (`ip netns exec`), as a process on
    /// that host would run; the orchestrator must then listen on an address reachable from it.
    pub fn netns(mut self, name: &str) -> Self {
        self.netns = Some(name.into());
        self
    }

    /// Spawns the worker; it registers by itself (see [`Worker::id`]).
    pub fn start(self) -> Worker {
        static NEXT: AtomicUsize = AtomicUsize::new(1);
        let name = self
            .name
            .unwrap_or_else(|| format!("w{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        let dir = tempfile::Builder::new()
            .prefix(&format!("riposte-worker-{name}-"))
            .tempdir()
            .expect("a temporary folder");
        let mut args = vec![
            "--orchestrator".to_string(),
            self.orchestrator_url,
            "--concurrency".into(),
            self.concurrency.to_string(),
            "--name".into(),
            name.clone(),
        ];
        if !self.labels.is_empty() {
            let labels: Vec<String> = self
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            args.extend(["--labels".into(), labels.join(",")]);
        }
        // An nftables backend changes the firewall of the namespace it runs in: never this
        // host's own in a test.
        assert!(
            self.netns.is_some() || !self.args.iter().any(|a| a == "nftables"),
            "a worker with an nftables backend must run in a test network namespace (netns)"
        );
        args.extend(self.args);
        let worker = binaries().worker.clone();
        let (program, args) = match &self.netns {
            None => (worker, args),
            Some(netns) => {
                let mut wrapped = vec!["netns".into(), "exec".into(), netns.clone()];
                wrapped.push(worker.display().to_string());
                wrapped.extend(args);
                (std::path::PathBuf::from("ip"), wrapped)
            }
        };
        let mut env: Vec<(&str, &str)> = vec![("RUST_LOG", self.log.as_str())];
        env.extend(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let process = Process::spawn(
            format!("worker {name}"),
            &program,
            &args,
            &env,
            Stdout::Log(dir.path().join("worker.stdout.log")),
            &dir.path().join("worker.log"),
        );
        Worker {
            process,
            name,
            _dir: dir,
        }
    }
}

/// A running `riposte-worker`; killed when dropped, its logs printed if a test fails.
pub struct Worker {
    // Dropped first: the process is killed and its logs printed before the folder goes.
    process: Process,
    name: String,
    _dir: TempDir,
}

impl Worker {
    /// Options; the worker talks to `orchestrator_url` (`http://ADDR`).
    pub fn builder(orchestrator_url: &str) -> WorkerBuilder {
        WorkerBuilder {
            orchestrator_url: orchestrator_url.into(),
            labels: Vec::new(),
            concurrency: 4,
            name: None,
            log: "info".into(),
            args: Vec::new(),
            env: Vec::new(),
            netns: None,
        }
    }

    /// A worker with these labels and concurrency.
    pub fn start(orchestrator_url: &str, labels: &[(&str, &str)], concurrency: u32) -> Worker {
        Worker::builder(orchestrator_url)
            .labels(labels)
            .concurrency(concurrency)
            .start()
    }

    /// Its name, unique among the workers of this test process.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The worker id it registered with, once the orchestrator lists it.
    pub async fn id(&self, client: &mut crate::access::Operator) -> String {
        let name = self.name.clone();
        wait_for(
            &format!("worker {name} is registered"),
            REGISTER_TIMEOUT,
            async || {
                let workers = match client.list_workers(ListWorkersRequest {}).await {
                    Ok(reply) => reply.into_inner().workers,
                    Err(status) => return Err(format!("ListWorkers: {status}")),
                };
                let names: Vec<&str> = workers.iter().map(|w| w.name.as_str()).collect();
                match workers.iter().find(|w| w.name == name) {
                    Some(worker) => Ok(worker.worker_id.clone()),
                    None => Err(format!("registered: {names:?}")),
                }
            },
        )
        .await
    }

    /// Waits until the orchestrator has heard from worker `id` after `since` (with one slot
    /// busy, its only calls are heartbeats: then it holds the lease it was granted before).
    pub async fn wait_heard_since(
        client: &mut crate::access::Operator,
        id: &str,
        since: tokio::time::Instant,
        timeout: Duration,
    ) {
        crate::wait_until("the worker heartbeats its lease", timeout, async || {
            let workers = match client.list_workers(ListWorkersRequest {}).await {
                Ok(reply) => reply.into_inner().workers,
                Err(_) => return false,
            };
            let since_ms = since.elapsed().as_millis() as u64;
            workers
                .iter()
                .any(|w| w.worker_id == id && w.last_seen_ms_ago + 20 < since_ms)
        })
        .await
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// `kill -9`, then reap.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// Freezes the process.
    pub fn sigstop(&self) {
        self.process.signal(Signal::SIGSTOP);
    }

    /// Thaws the process.
    pub fn sigcont(&self) {
        self.process.signal(Signal::SIGCONT);
    }

    /// SIGTERM (a graceful drain), then waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.process.terminate()
    }

    /// The last lines of the logs.
    pub fn log_tail(&self) -> String {
        self.process.log_tail()
    }

    /// Every line of the logs (stderr and stdout).
    pub fn logs(&self) -> String {
        self.process.logs()
    }
}
