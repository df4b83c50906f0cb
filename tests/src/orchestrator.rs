//! `riposte-orchestrator` as a child process: on port 0 in its own temporary folder, with its
//! logs captured, and the faults the tests inject (kill -9, SIGSTOP/SIGCONT, restart on the
//! same data).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::Signal;
use riposte_proto::v1::worker_client::WorkerClient;
use serde_json::Value;
use tempfile::TempDir;
use tonic::transport::Channel;

use tonic_health::pb::health_check_response::ServingStatus;

use crate::access::{self, Operator};
use crate::api::{channel, health_on};
use crate::binaries::binaries;
use crate::cli::CliOutput;
use crate::process::{Process, Stdout};
use crate::wait::wait_for;

/// How long an orchestrator may take to serve after a start.
const SERVING_TIMEOUT: Duration = Duration::from_secs(20);
/// The line the orchestrator prints once bound, before the address.
const LISTENING: &str = "riposte-orchestrator listening on ";
/// Each alert listener: its flag, and what precedes its bound address on the same line.
const ALERT_LISTENERS: [(&str, &str); 5] = [
    ("--alerts-listen", " alerts on "),
    ("--syslog-udp", " syslog-udp on "),
    ("--syslog-tcp", " syslog-tcp on "),
    ("--syslog-tls", " syslog-tls on "),
    ("--admin-listen", " admin on "),
];

/// Options for [`Orchestrator`]; `Orchestrator::builder().lease_timeout("1s").start()`.
#[derive(Debug, Clone, Default)]
pub struct OrchestratorBuilder {
    args: Vec<String>,
    /// The CLI's TLS folder (the CA, an operator certificate), when it serves TLS.
    tls_dir: Option<PathBuf>,
    log: Option<String>,
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    alert_secrets: Vec<(String, String)>,
    access: crate::access::Access,
}

impl OrchestratorBuilder {
    /// `--lease-timeout`, e.g. `"1s"`.
    pub fn lease_timeout(mut self, duration: &str) -> Self {
        self.args
            .extend(["--lease-timeout".into(), duration.into()]);
        self
    }

    /// `--poll-wait-max`, e.g. `"2s"`.
    pub fn poll_wait_max(mut self, duration: &str) -> Self {
        self.args
            .extend(["--poll-wait-max".into(), duration.into()]);
        self
    }

    /// An approver group of the policy: `token:MEMBER` for each member may approve for it
    /// (role `approver`) and start runs (role `responder`); call again for more groups.
    pub fn approver_group(mut self, group: &str, members: &[&str]) -> Self {
        self.access.group(group, &["approver"], members);
        for member in members {
            self.access.principal(member, &["responder"]);
        }
        self
    }

    /// A principal `token:NAME` of the policy holding `roles`.
    pub fn principal(mut self, name: &str, roles: &[&str]) -> Self {
        self.access.principal(name, roles);
        self
    }

    /// YAML appended to the policy as it is, e.g. `approvals: []` (no approval required
    /// above the playbooks) or `roles: {...}`.
    pub fn policy(mut self, yaml: &str) -> Self {
        self.access.extra(yaml);
        self
    }

    /// `--dev`: in-process workers and the example playbooks.
    pub fn dev(mut self) -> Self {
        self.args.push("--dev".into());
        self
    }

    /// Serves TLS with a server certificate from `pki`, which also issues the client
    /// certificates it accepts; the harness's clients and CLI use an operator certificate
    /// (`e2e`). Without it (and without `--dev`), it serves plaintext on loopback and lets
    /// workers in without certificates (`--insecure-anonymous-workers`).
    pub fn tls(self, pki: &crate::pki::Pki) -> Self {
        self.tls_for(pki, &[])
    }

    /// The same, with a server certificate also naming `names` (the address it listens on
    /// when that is not loopback).
    pub fn tls_for(mut self, pki: &crate::pki::Pki, names: &[&str]) -> Self {
        let (cert, key) = pki.server_for("server", names);
        let path = |p: &std::path::Path| p.display().to_string();
        self.args.extend([
            "--tls-cert".into(),
            path(&cert),
            "--tls-key".into(),
            path(&key),
            "--client-ca".into(),
            path(&pki.ca()),
        ]);
        self.tls_dir = Some(pki.operator_dir("e2e"));
        self
    }

    /// The CLI's TLS folder for an orchestrator given its TLS flags by [`Self::args`].
    pub fn tls_dir(mut self, dir: &std::path::Path) -> Self {
        self.tls_dir = Some(dir.to_path_buf());
        self
    }

    /// More command-line arguments, e.g. `["--protected-accounts", "breakglass"]`.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// `--listen ADDR` (default `127.0.0.1:0`), e.g. a veth address that workers in a
    /// network namespace can reach.
    pub fn listen(mut self, addr: &str) -> Self {
        self.listen = Some(addr.into());
        self
    }

    /// `--data-dir DIR` (default `data` in the orchestrator's temporary folder), e.g. a folder
    /// on a small filesystem.
    pub fn data_dir(mut self, dir: &std::path::Path) -> Self {
        self.data_dir = Some(dir.to_path_buf());
        self
    }

    /// The shared secret of each alert source, `(SOURCE, TOKEN)`, written (mode 0600) to a
    /// file in the orchestrator's temporary folder and given with `--alert-secrets-file`.
    pub fn alert_secrets(mut self, secrets: &[(&str, &str)]) -> Self {
        self.alert_secrets
            .extend(secrets.iter().map(|(s, t)| (s.to_string(), t.to_string())));
        self
    }

    /// `--log FILTER` (default `info`).
    pub fn log(mut self, filter: &str) -> Self {
        self.log = Some(filter.into());
        self
    }

    /// Spawns the orchestrator and waits for its address line.
    pub fn start(self) -> Orchestrator {
        let dir = tempfile::Builder::new()
            .prefix("riposte-orchestrator-")
            .tempdir()
            .expect("a temporary folder");
        let mut args = self.args;
        args.extend(["--log".into(), self.log.unwrap_or_else(|| "info".into())]);
        let dev = args.iter().any(|a| a == "--dev");
        if self.tls_dir.is_none() && !dev {
            args.push("--insecure-anonymous-workers".into());
        }
        if !self.alert_secrets.is_empty() {
            let file = write_alert_secrets(dir.path(), &self.alert_secrets);
            args.extend(["--alert-secrets-file".into(), file.display().to_string()]);
        }
        if !dev {
            let (policy, tokens, _) = self.access.write(dir.path());
            args.extend(["--policy".into(), policy.display().to_string()]);
            args.extend(["--api-tokens".into(), tokens.display().to_string()]);
        }
        let listen = self.listen.unwrap_or_else(|| "127.0.0.1:0".into());
        let loopback = listen
            .parse::<SocketAddr>()
            .is_ok_and(|at| at.ip().is_loopback());
        if self.tls_dir.is_none() && !dev && !loopback {
            // A veth address that workers in a network namespace reach.
            args.push("--insecure-plaintext".into());
        }
        let data_dir = self.data_dir.unwrap_or_else(|| dir.path().join("data"));
        // `--dev` makes the CLI's folder under its data dir.
        let tls_dir = match dev {
            true => Some(data_dir.join("tls")),
            false => self.tls_dir,
        };
        let process = spawn(&dir, &data_dir, &listen, &args);
        let addr = parse_addr(&process);
        let alert_addrs = parse_alert_addrs(&process);
        for ((flag, _), bound) in ALERT_LISTENERS.iter().zip(alert_addrs) {
            // A restart listens for alerts where this one does.
            if let (Some(bound), Some(at)) = (bound, args.iter().position(|a| a == flag)) {
                args[at + 1] = bound.to_string();
            }
        }
        Orchestrator {
            process,
            dir,
            data_dir,
            args,
            addr,
            alert_addrs,
            tls_dir,
            dev,
        }
    }
}

/// A running `riposte-orchestrator`; killed when dropped, its logs printed if a test fails.
pub struct Orchestrator {
    // Dropped first: the process is killed and its logs printed before the folder goes.
    process: Process,
    dir: TempDir,
    data_dir: PathBuf,
    args: Vec<String>,
    addr: SocketAddr,
    /// Where each of [`ALERT_LISTENERS`] listens, when it was started.
    alert_addrs: [Option<SocketAddr>; 5],
    /// The CLI's TLS folder, when it serves TLS.
    tls_dir: Option<PathBuf>,
    /// Started with `--dev` (its own policy: the TLS folder's certificate is the admin).
    dev: bool,
}

impl Orchestrator {
    /// Options.
    pub fn builder() -> OrchestratorBuilder {
        OrchestratorBuilder::default()
    }

    /// An orchestrator with the default options.
    pub fn start() -> Orchestrator {
        Orchestrator::builder().start()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of the HTTP alert listener; panics when it was not started with
    /// `--alerts-listen`.
    pub fn alerts_addr(&self) -> SocketAddr {
        self.alert_addrs[0].expect("the orchestrator was started with --alerts-listen")
    }

    /// `https://ADDR` (with TLS) or `http://ADDR` of the HTTP alert listener; panics when it
    /// was not started with `--alerts-listen`.
    pub fn alerts_url(&self) -> String {
        let addr = self.alerts_addr();
        match self.tls_dir {
            Some(_) => format!("https://{addr}"),
            None => format!("http://{addr}"),
        }
    }

    /// `http://ADDR` of the admin listener (`/metrics`, `/healthz`, `/readyz`); the
    /// orchestrator must have been started with `--admin-listen`.
    pub fn admin_url(&self) -> String {
        let addr = self.alert_addrs[4].expect("the orchestrator was started with --admin-listen");
        format!("http://{addr}")
    }

    /// Where the syslog-over-TLS listener listens; the orchestrator must have been started
    /// with `--syslog-tls`.
    pub fn syslog_tls_addr(&self) -> SocketAddr {
        self.alert_addrs[3].expect("the orchestrator was started with --syslog-tls")
    }

    /// Where the UDP syslog listener listens; the orchestrator must have been started with
    /// `--syslog-udp`.
    pub fn syslog_udp_addr(&self) -> SocketAddr {
        self.alert_addrs[1].expect("the orchestrator was started with --syslog-udp")
    }

    /// Where the TCP syslog listener listens; the orchestrator must have been started with
    /// `--syslog-tcp`.
    pub fn syslog_tcp_addr(&self) -> SocketAddr {
        self.alert_addrs[2].expect("the orchestrator was started with --syslog-tcp")
    }

    /// `https://ADDR` (with TLS) or `http://ADDR`, for workers and the CLI.
    pub fn url(&self) -> String {
        match self.tls_dir {
            Some(_) => format!("https://{}", self.addr),
            None => format!("http://{}", self.addr),
        }
    }

    /// The CLI's TLS folder (`ca.pem`, `operator.pem`, `operator.key`) when it serves TLS.
    pub fn tls_dir(&self) -> Option<PathBuf> {
        self.tls_dir.clone()
    }

    /// A lazily connected channel to the gRPC API (over TLS, as operator `e2e`, when it
    /// serves TLS).
    pub fn channel(&self) -> Channel {
        match &self.tls_dir {
            Some(dir) => {
                let files = riposte_tls::client::Files {
                    ca: dir.join("ca.pem"),
                    cert: Some((dir.join("operator.pem"), dir.join("operator.key"))),
                };
                crate::api::tls_channel(&self.url(), &files)
            }
            None => channel(&self.url()),
        }
    }

    /// The sled folder.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone()
    }

    /// The process id of the current process.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// A client of the operator API, as an admin (the TLS folder's certificate `cert:e2e`,
    /// or without TLS the token of `token:e2e`); it reconnects by itself after a restart.
    pub fn client(&self) -> Operator {
        let token = self.tls_dir.is_none().then(|| access::token_of("e2e"));
        access::operator(self.channel(), token.as_deref())
    }

    /// A client of the operator API presenting the token of `token:NAME`.
    pub fn client_as(&self, name: &str) -> Operator {
        access::operator(self.channel(), Some(&access::token_of(name)))
    }

    /// A client of the operator API presenting nothing but what the channel's TLS presents.
    pub fn client_anonymous(&self) -> Operator {
        access::operator(self.channel(), None)
    }

    /// A client of the worker API, to play a worker by hand.
    pub fn worker_client(&self) -> WorkerClient<Channel> {
        WorkerClient::new(self.channel())
    }

    /// Runs the `riposte` CLI against this orchestrator, as an admin (the TLS folder's
    /// certificate, or without TLS `token:e2e`'s token file).
    pub async fn cli(&self, args: &[&str]) -> CliOutput {
        let token = match self.tls_dir.is_none() && !self.dev {
            true => Some(self.token_file("e2e")),
            false => None,
        };
        crate::cli::cli_with(&self.url(), self.tls_dir.as_deref(), token.as_deref(), args).await
    }

    /// Runs the `riposte` CLI as `token:NAME` (`RIPOSTE_TOKEN_FILE`).
    pub async fn cli_as(&self, name: &str, args: &[&str]) -> CliOutput {
        let token = self.token_file(name);
        crate::cli::cli_with(&self.url(), self.tls_dir.as_deref(), Some(&token), args).await
    }

    /// The operator policy file it was started with (`--policy`), to replace by rename.
    pub fn policy_file(&self) -> PathBuf {
        self.dir.path().join("policy.yaml")
    }

    /// The file holding the token of `token:NAME` (written for any name asked).
    pub fn token_file(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.token"));
        if !path.exists() {
            write_private(&path, &access::token_of(name));
        }
        path
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

    /// SIGTERM, then waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.process.terminate()
    }

    /// Starts a new process on the same data folder and the same address (so that workers
    /// find it again), after killing the current one (`kill -9`) if it still runs.
    pub fn restart(&mut self) {
        self.process.kill9();
        let process = spawn(
            &self.dir,
            &self.data_dir,
            &self.addr.to_string(),
            &self.args,
        );
        let addr = parse_addr(&process);
        assert_eq!(
            addr, self.addr,
            "the restarted orchestrator must listen where it did"
        );
        assert_eq!(
            parse_alert_addrs(&process),
            self.alert_addrs,
            "the restarted orchestrator must listen for alerts where it did"
        );
        self.process = process;
    }

    /// Like [`Orchestrator::restart`], without the flag `flag` it was started with (a flag
    /// without a value, e.g. `--no-builtin-playbooks`).
    pub fn restart_without(&mut self, flag: &str) {
        assert!(
            self.args.iter().any(|a| a == flag),
            "the orchestrator was not started with {flag}"
        );
        self.args.retain(|a| a != flag);
        self.restart();
    }

    /// Waits until the health service answers SERVING.
    pub async fn wait_serving(&self) {
        let channel = self.channel();
        wait_for(
            "the orchestrator is serving",
            SERVING_TIMEOUT,
            async || match health_on(channel.clone(), "").await {
                Ok(ServingStatus::Serving) => Ok(()),
                other => Err(format!("{other:?}")),
            },
        )
        .await
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

/// `SOURCE=TOKEN` lines in `alert-secrets` in `dir`, readable by this user only.
fn write_alert_secrets(dir: &std::path::Path, secrets: &[(String, String)]) -> PathBuf {
    let path = dir.join("alert-secrets");
    let lines: String = secrets
        .iter()
        .map(|(source, token)| format!("{source}={token}\n"))
        .collect();
    write_private(&path, &lines);
    path
}

/// Creates the file `path` with `text`, readable and writable by this user only (mode 0600),
/// as a secret belongs.
pub fn write_private(path: &std::path::Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

fn spawn(dir: &TempDir, data_dir: &std::path::Path, listen: &str, args: &[String]) -> Process {
    let mut argv: Vec<String> = vec![
        "--listen".into(),
        listen.into(),
        "--data-dir".into(),
        data_dir.display().to_string(),
    ];
    argv.extend(args.iter().cloned());
    Process::spawn(
        "orchestrator",
        &binaries().orchestrator,
        &argv,
        &[],
        Stdout::FirstLineThenLog(dir.path().join("orchestrator.stdout.log")),
        &dir.path().join("orchestrator.log"),
    )
}

/// The gRPC address: the first word after [`LISTENING`].
fn parse_addr(process: &Process) -> SocketAddr {
    let line = process.first_line();
    let rest = line
        .strip_prefix(LISTENING)
        .unwrap_or_else(|| panic!("unexpected first line from the orchestrator: {line:?}"));
    let url = rest.split_whitespace().next().unwrap_or("");
    let addr = url.split_once("://").map_or(url, |(_, addr)| addr);
    addr.parse()
        .unwrap_or_else(|e| panic!("bad address in {line:?}: {e}"))
}

/// Each of [`ALERT_LISTENERS`]' address: the word after its marker, when the line has one.
fn parse_alert_addrs(process: &Process) -> [Option<SocketAddr>; 5] {
    let line = process.first_line();
    ALERT_LISTENERS.map(|(_, marker)| {
        let (_, rest) = line.split_once(marker)?;
        let addr = rest.split_whitespace().next().unwrap_or("");
        Some(
            addr.parse()
                .unwrap_or_else(|e| panic!("bad alert listener address in {line:?}: {e}")),
        )
    })
}

/// Starts the orchestrator on `data` with `args` for a start that must fail: waits at most
/// `within` for it to exit (panicking when it does not) and answers its status and output.
pub async fn start_failing(
    data: &std::path::Path,
    args: &[&str],
    within: Duration,
) -> std::process::Output {
    let child = tokio::process::Command::new(&binaries().orchestrator)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(within, child)
        .await
        .unwrap_or_else(|_| panic!("the orchestrator still runs after {within:?}"))
        .expect("the orchestrator starts")
}

/// `riposte-orchestrator store check` on `data` (no orchestrator running on it): its exit
/// status and what it printed.
pub async fn store_check(data: &std::path::Path) -> (ExitStatus, String) {
    let output = tokio::process::Command::new(&binaries().orchestrator)
        .args(["store", "check", "--data-dir"])
        .arg(data)
        .output()
        .await
        .expect("store check runs");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// Flips one byte in the middle of the stored head of run `id` (the orchestrator on `data`
/// stopped), as a failing disk would: the record still parses, its checksum no longer matches.
pub fn damage_run(data: &std::path::Path, id: &str) {
    #[expect(
        clippy::disallowed_methods,
        reason = "tests damage the store as a failing disk would"
    )]
    let db = sled::open(data).expect("the store opens");
    let runs = db.open_tree("runs").expect("the runs tree");
    let key = uuid::Uuid::parse_str(id).expect("a run id");
    let mut value = runs
        .get(key.as_bytes())
        .expect("read")
        .expect("the run is stored")
        .to_vec();
    let middle = value.len() / 2;
    value[middle] ^= 0x01;
    runs.insert(key.as_bytes(), value).expect("written");
    db.flush().expect("flushed");
}

/// Rewrites audit record `seq` of the store on `data` (the orchestrator stopped) as someone who
/// knows the record format but not the audit key would: `edit` changes its JSON, and the value
/// is sealed again with a valid checksum, so only the chain's MACs can tell.
pub fn forge_audit_record(data: &std::path::Path, seq: u64, edit: impl FnOnce(&mut Value)) {
    #[expect(
        clippy::disallowed_methods,
        reason = "tests tamper with the store as an intruder with the files would"
    )]
    let db = sled::open(data).expect("the store opens");
    let audit = db.open_tree("audit").expect("the audit tree");
    let value = audit
        .get(seq.to_be_bytes())
        .expect("read")
        .expect("the record is stored");
    let mut record: Value = serde_json::from_slice(&value[5..]).expect("a JSON record");
    edit(&mut record);
    let payload = serde_json::to_vec(&record).expect("JSON");
    let mut sealed = vec![0xFF];
    sealed.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    sealed.extend_from_slice(&payload);
    audit.insert(seq.to_be_bytes(), sealed).expect("written");
    db.flush().expect("flushed");
}
