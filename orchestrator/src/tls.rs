//! Transport security of the orchestrator's listeners: which listeners speak TLS (and refusing
//! plaintext where it is not allowed), the TLS accept loop that feeds the gRPC server, and the
//! reload of certificates and of the worker policy when their files change or on SIGHUP.
//!
//! A handshake runs in its own task, bounded in time ([`HANDSHAKE_TIMEOUT`]) and in number
//! ([`HANDSHAKES_MAX`] at once), so a peer that opens a connection and sends nothing holds up
//! neither the accept loop nor anyone else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use riposte_tls::server::{Files, Reloadable};
use riposte_tls::tokio_rustls::server::TlsStream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::Config;
use crate::door::Node;
use crate::worker_policy::WorkerPolicy;

/// Longest a TLS handshake may take once the connection is accepted.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes in progress at once; a connection beyond them is closed at once.
pub const HANDSHAKES_MAX: usize = 256;
/// How often the certificate and policy files are looked at for a change.
const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// Why the listeners cannot be set up as asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tls(#[from] riposte_tls::server::Error),
    #[error(
        "refusing to serve gRPC without TLS on {0}, which is not a loopback address: give \
         --tls-cert and --tls-key (see docs/security.md), or --insecure-plaintext to accept \
         that anyone who reaches the port can read and drive everything"
    )]
    Plaintext(SocketAddr),
    #[error(
        "refusing to serve the HTTP alert listener without TLS on {0}, which is not a loopback \
         address (its tokens would cross the network in clear): give --tls-cert and --tls-key, \
         or --insecure-plaintext"
    )]
    PlaintextAlerts(SocketAddr),
    #[error("cannot read the worker policy {path}: {source}")]
    PolicyRead {
        path: String,
        source: std::io::Error,
    },
    #[error("the worker policy {path}: {source}")]
    Policy {
        path: String,
        source: crate::worker_policy::InvalidPolicy,
    },
}

/// The TLS side of each TCP listener that has one.
pub struct Transport {
    pub grpc: Option<Arc<Reloadable>>,
    /// The HTTP alert listener's (no client certificates: sources prove themselves by their
    /// token).
    pub alerts: Option<Arc<Reloadable>>,
    /// The syslog-over-TLS listener's.
    pub syslog: Option<Arc<Reloadable>>,
}

impl Transport {
    /// The TLS configuration `config` asks for; refuses plaintext on a non-loopback address
    /// without `--insecure-plaintext`, and warns at every start whatever is insecure.
    pub fn from_config(config: &Config) -> Result<Transport, Error> {
        let grpc = match files(config) {
            Some(files) => Some(Reloadable::load(files, &[b"h2"])?),
            None if config.listen.ip().is_loopback() || config.insecure_plaintext => None,
            None => return Err(Error::Plaintext(config.listen)),
        };
        if grpc.is_none() {
            tracing::warn!(
                listen = %config.listen,
                "gRPC is served without TLS: whoever reaches the port can read and send \
                 everything; give --tls-cert and --tls-key"
            );
        }
        if config.insecure_anonymous_workers {
            tracing::warn!(
                "--insecure-anonymous-workers: workers without a client certificate may \
                 register and take any task"
            );
        }
        let alerts = match (config.alerts_listen, files(config)) {
            (None, _) => None,
            (Some(_), Some(files)) => Some(Reloadable::load(anonymous(files), &[b"http/1.1"])?),
            (Some(at), None) if at.ip().is_loopback() || config.insecure_plaintext => {
                tracing::warn!(listen = %at, "the HTTP alert listener is served without TLS");
                None
            }
            (Some(at), None) => return Err(Error::PlaintextAlerts(at)),
        };
        let syslog = match (config.syslog_tls, files(config)) {
            (Some(_), Some(files)) => Some(Reloadable::load(anonymous(files), &[])?),
            _ => None,
        };
        Ok(Transport {
            grpc,
            alerts,
            syslog,
        })
    }

    /// Every TLS configuration, to reload them.
    pub fn all(&self) -> Vec<Arc<Reloadable>> {
        [&self.grpc, &self.alerts, &self.syslog]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }
}

/// The same files without a client CA: the listener asks for no client certificate.
fn anonymous(files: Files) -> Files {
    Files {
        client_ca: None,
        ..files
    }
}

/// The certificate files of `config`, if TLS is on.
fn files(config: &Config) -> Option<Files> {
    Some(Files {
        cert: config.tls_cert.clone()?,
        key: config.tls_key.clone()?,
        client_ca: config.client_ca.clone(),
    })
}

/// Reads the worker policy file of `config` (none: nobody with a certificate may register).
pub fn worker_policy(config: &Config) -> Result<WorkerPolicy, Error> {
    let Some(path) = &config.worker_policy else {
        return Ok(WorkerPolicy::default());
    };
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| Error::PolicyRead {
        path: shown.clone(),
        source,
    })?;
    WorkerPolicy::parse(&text).map_err(|source| Error::Policy {
        path: shown,
        source,
    })
}

/// Accepts connections on `listener` and answers each one whose handshake completes, until the
/// receiver is dropped.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<Reloadable>,
) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (tx, rx) = mpsc::channel(HANDSHAKES_MAX);
    tokio::spawn(async move {
        let handshakes = Arc::new(Semaphore::new(HANDSHAKES_MAX));
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => return,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: let some close.
                    tracing::warn!(error = %e, "grpc.accept_failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = handshakes.clone().try_acquire_owned() else {
                tracing::debug!(%peer, "tls.handshakes_full");
                continue;
            };
            // Replies are small; without TCP_NODELAY a trailer waits on delayed ACKs.
            let _ = stream.set_nodelay(true);
            let acceptor = tls.acceptor();
            let tx = tx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => tracing::info!(%peer, error = %e, "tls.handshake_failed"),
                    Err(_) => tracing::info!(%peer, "tls.handshake_timed_out"),
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Reloads every TLS configuration and the worker policy when their files change, and all of
/// them on SIGHUP; a reload that fails keeps what was loaded and says why.
pub async fn reload(config: Config, node: Arc<Node>, tls: Vec<Arc<Reloadable>>) {
    #[cfg(unix)]
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut policy_stamp = stamp(config.worker_policy.as_deref());
    loop {
        #[cfg(unix)]
        let forced = match hangups.as_mut() {
            Some(signal) => tokio::select! {
                _ = signal.recv() => true,
                () = tokio::time::sleep(RELOAD_EVERY) => false,
            },
            None => {
                tokio::time::sleep(RELOAD_EVERY).await;
                false
            }
        };
        #[cfg(not(unix))]
        let forced = {
            tokio::time::sleep(RELOAD_EVERY).await;
            false
        };
        for reloadable in &tls {
            let reloaded = match forced {
                true => reloadable.reload().map(|()| true),
                false => reloadable.reload_if_changed(),
            };
            let cert = reloadable.files().cert.display().to_string();
            match reloaded {
                Ok(true) => tracing::info!(%cert, "tls.reloaded"),
                Ok(false) => {}
                Err(e) => tracing::error!(%cert, error = %e, "tls.reload_failed"),
            }
        }
        let now = stamp(config.worker_policy.as_deref());
        if forced || now != policy_stamp {
            policy_stamp = now;
            match worker_policy(&config) {
                Ok(policy) => {
                    node.set_worker_policy(policy);
                    tracing::info!("worker_policy.reloaded");
                }
                Err(e) => tracing::error!(error = %e, "worker_policy.reload_failed"),
            }
        }
    }
}

/// What tells a version of the policy file: its modification time and length.
fn stamp(path: Option<&std::path::Path>) -> Option<(std::time::SystemTime, u64)> {
    let meta = std::fs::metadata(path?).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
