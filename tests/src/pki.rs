//! A certificate authority for a test: made in a temporary folder, it issues the server
//! certificate an orchestrator serves TLS with and the client certificates of workers and
//! operators (valid, expired, or from another CA), as files the binaries read.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use riposte_tls::client::Files;
use riposte_tls::issue::{Ca, Validity};
use riposte_tls::{Identity, Role};
use tempfile::TempDir;

/// A test's CA and the files it issued.
pub struct Pki {
    dir: TempDir,
    ca: Ca,
}

impl Pki {
    /// A new CA; its certificate is `ca.pem` in its folder.
    pub fn new() -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("riposte-pki-")
            .tempdir()
            .expect("a temporary folder");
        let ca = Ca::create("Riposte test CA", valid()).expect("a CA");
        ca.issued().write(dir.path(), "ca").expect("the CA written");
        Pki { dir, ca }
    }

    /// The CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A server certificate for loopback (`localhost`, 127.0.0.1, ::1) under `stem`.
    pub fn server(&self, stem: &str) -> (PathBuf, PathBuf) {
        self.server_for(stem, &[])
    }

    /// The same, also for `names` (a veth address workers in a namespace dial).
    pub fn server_for(&self, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let mut all = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
        all.extend(names.iter().map(|n| n.to_string()));
        let issued = self.ca.server(&all, valid()).expect("a server certificate");
        issued.write(self.dir.path(), stem).expect("written")
    }

    /// A client certificate naming `role` `name`, valid now.
    pub fn client(&self, role: Role, name: &str) -> (PathBuf, PathBuf) {
        self.client_valid(role, name, valid())
    }

    /// A worker certificate naming `name`, expired an hour ago.
    pub fn expired_worker(&self, name: &str) -> (PathBuf, PathBuf) {
        let now = now();
        let expired = Validity {
            not_before: now - Duration::from_secs(86_400),
            not_after: now - Duration::from_secs(3600),
        };
        self.client_valid(Role::Worker, name, expired)
    }

    fn client_valid(&self, role: Role, name: &str, validity: Validity) -> (PathBuf, PathBuf) {
        let identity = Identity::new(role, name).expect("a valid identity name");
        let issued = self
            .ca
            .client(&identity, validity)
            .expect("a client certificate");
        let stem = format!("{}-{name}-{}", role.as_str(), stamp(&validity));
        issued.write(self.dir.path(), &stem).expect("written")
    }

    /// The files a client presenting `cert` uses.
    pub fn client_files(&self, cert: (PathBuf, PathBuf)) -> Files {
        Files {
            ca: self.ca(),
            cert: Some(cert),
        }
    }

    /// A folder as the CLI reads it (`ca.pem`, `operator.pem`, `operator.key`) for operator
    /// `name`.
    pub fn operator_dir(&self, name: &str) -> PathBuf {
        let dir = self.dir.path().join(format!("cli-{name}"));
        std::fs::create_dir_all(&dir).expect("a folder");
        let identity = Identity::new(Role::Operator, name).expect("a valid name");
        let issued = self.ca.client(&identity, valid()).expect("a certificate");
        issued.write(&dir, "operator").expect("written");
        std::fs::copy(self.ca(), dir.join("ca.pem")).expect("the CA copied");
        dir
    }

    /// Worker flags for `cert`: `--tls-ca`, `--tls-cert`, `--tls-key`.
    pub fn worker_args(&self, cert: &(PathBuf, PathBuf)) -> Vec<String> {
        let path = |p: &Path| p.display().to_string();
        vec![
            "--tls-ca".into(),
            path(&self.ca()),
            "--tls-cert".into(),
            path(&cert.0),
            "--tls-key".into(),
            path(&cert.1),
        ]
    }

    /// Where it keeps its files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for Pki {
    fn default() -> Pki {
        Pki::new()
    }
}

fn now() -> SystemTime {
    SystemTime::now()
}

fn valid() -> Validity {
    Validity::days(now(), 30)
}

/// Distinct file names for certificates of the same identity with different validity.
fn stamp(validity: &Validity) -> u64 {
    validity
        .not_after
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
