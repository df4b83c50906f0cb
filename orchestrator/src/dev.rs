//! The embedded default (`--dev`): its own certificates, worker policy and operator policy
//! under the data dir (made on the first start, used again after), and the example playbooks
//! applied at start. The operator certificate beside the CLI (`DATA/tls`) is `admin`; a second
//! one, `approver` (`DATA/tls/approver`), is in every approver group of the built-in
//! playbooks, so that a run `admin` starts can be approved by someone else.
//! The in-process workers are started by the binary, which knows the bound address.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use riposte_tls::issue::{Ca, Validity, write_file};
use riposte_tls::{Identity, Role};

use crate::door::Node;
use crate::{Config, Error, apply_one};

/// The folder under the data dir holding `--dev`'s certificates; the CLI looks for
/// `./riposte-data/tls` by itself.
pub const TLS_DIR: &str = "tls";
/// The identity of the in-process workers.
pub const WORKER_IDENTITY: &str = "dev-worker";
/// The identity of the operator certificate made for the CLI.
pub const OPERATOR_IDENTITY: &str = "admin";
/// The identity of the second operator certificate, an approver (`DATA/tls/approver`).
pub const APPROVER_IDENTITY: &str = "approver";
/// How long the certificates `--dev` makes are valid.
const DAYS: u64 = 3650;

/// What `--dev` made: the folder, the CA, the in-process workers' certificate and key.
pub struct Credentials {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub worker: (PathBuf, PathBuf),
}

/// Makes (on the first start) or reuses the CA, the server, worker and operator certificates
/// and a worker policy letting the dev worker offer everything, under `DATA/tls`; points
/// `config` at them where it names none of its own. A new server certificate is made at every
/// start, for the address listened on.
pub fn credentials(config: &mut Config, now: SystemTime) -> Result<Credentials, Error> {
    let dir = config.data_dir.join(TLS_DIR);
    private_dir(&config.data_dir)?;
    private_dir(&dir)?;
    let validity = Validity::days(now, DAYS);
    let (ca_cert, ca_key) = (dir.join("ca.pem"), dir.join("ca.key"));
    let ca = match ca_cert.exists() && ca_key.exists() {
        true => Ca::load(&ca_cert, &ca_key)?,
        false => {
            let ca = Ca::create("Riposte dev CA", validity)?;
            ca.issued().write(&dir, "ca")?;
            ca
        }
    };
    let mut names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    let ip = config.listen.ip();
    if !ip.is_loopback() && !ip.is_unspecified() {
        names.push(ip.to_string());
    }
    ca.server(&names, validity)?.write(&dir, "server")?;
    let worker = Identity::new(Role::Worker, WORKER_IDENTITY).expect("a valid name");
    let worker = ca.client(&worker, validity)?.write(&dir, "worker")?;
    if !dir.join("operator.pem").exists() {
        let operator = Identity::new(Role::Operator, OPERATOR_IDENTITY).expect("a valid name");
        ca.client(&operator, validity)?.write(&dir, "operator")?;
    }
    let approver_dir = dir.join(APPROVER_IDENTITY);
    if !approver_dir.join("operator.pem").exists() {
        private_dir(&approver_dir)?;
        let approver = Identity::new(Role::Operator, APPROVER_IDENTITY).expect("a valid name");
        ca.client(&approver, validity)?
            .write(&approver_dir, "operator")?;
        let ca_pem = std::fs::read_to_string(&ca_cert).map_err(|source| Error::Io {
            path: ca_cert.display().to_string(),
            source,
        })?;
        write_file(&approver_dir.join("ca.pem"), &ca_pem, 0o600)?;
    }
    let operators = config.data_dir.join("policy.yaml");
    if !operators.exists() {
        write_file(&operators, DEV_POLICY, 0o600)?;
    }
    config.policy.get_or_insert(operators);
    let policy = config.data_dir.join("worker-policy.yaml");
    if !policy.exists() {
        write_file(&policy, DEV_WORKER_POLICY, 0o600)?;
    }
    if config.tls_cert.is_none() {
        config.tls_cert = Some(dir.join("server.pem"));
        config.tls_key = Some(dir.join("server.key"));
        config.client_ca = Some(ca_cert.clone());
    }
    config.worker_policy.get_or_insert(policy);
    Ok(Credentials {
        dir,
        ca: ca_cert,
        worker,
    })
}

/// The worker policy `--dev` writes: its own workers may offer everything.
const DEV_WORKER_POLICY: &str = "\
# Which worker identities (the name in their client certificate) may offer which actions and
# labels. --dev's in-process workers are `dev-worker`. See docs/security.md.
workers:
  - identity: dev-worker
    actions: ['*']
    labels: {'*': '*'}
";

/// The operator policy `--dev` writes: its `admin` certificate may do everything, and both
/// operator certificates are in the approver groups the examples and built-ins name.
const DEV_POLICY: &str = "\
# Who may do what (see docs/security.md). --dev's CLI presents `cert:admin` (riposte-data/tls);
# `cert:approver` (riposte-data/tls/approver) approves what admin starts: nobody approves their
# own run.
principals:
  'cert:admin': [admin]
groups:
  soc-leads:
    roles: [approver]
    members: ['cert:admin', 'cert:approver']
  access-approvers:
    roles: [approver]
    members: ['cert:admin', 'cert:approver']
  change-approvers:
    roles: [approver]
    members: ['cert:admin', 'cert:approver']
";

/// Creates `dir` (and its parents) readable by this user alone.
fn private_dir(dir: &Path) -> Result<(), Error> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|source| Error::Io {
        path: dir.display().to_string(),
        source,
    })
}

/// The example playbooks shipped in `playbooks/examples/`.
pub const EXAMPLES: &[(&str, &str)] = &[
    (
        "hello.yaml",
        include_str!("../../playbooks/examples/hello.yaml"),
    ),
    (
        "diamond.yaml",
        include_str!("../../playbooks/examples/diamond.yaml"),
    ),
    (
        "noop-chain.yaml",
        include_str!("../../playbooks/examples/noop-chain.yaml"),
    ),
    (
        "retry.yaml",
        include_str!("../../playbooks/examples/retry.yaml"),
    ),
];

pub(crate) async fn apply_examples(shared: &Arc<Node>) -> Result<(), Error> {
    for (name, source) in EXAMPLES {
        apply_one(shared, name, source).await?;
    }
    Ok(())
}
