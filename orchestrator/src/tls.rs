//! Transport security of the orchestrator's listeners: which listeners speak TLS (and refusing
//! plaintext where it is not allowed), the TLS accept loop that feeds the gRPC server, and the
//! reload of certificates and of the worker policy when their files change or on SIGHUP.
//!
//! A handshake runs in its own task, bounded in time ([`HANDSHAKE_TIMEOUT`]) and in number
//! ([`HANDSHAKES_MAX`] at once), so a peer that opens a connection and sends nothing holds up
//! neither the accept loop nor anyone else; one peer address has at most
//! [`PEER_HANDSHAKES_MAX`] of them. At most [`GRPC_CONNECTIONS_MAX`] connections are open at
//! once, [`PEER_CONNECTIONS_MAX`] of one peer (each holds its place until it closes). A connection over either bound is closed
//! at once; an accept that fails (out of file descriptors) is tried again after a pause. Each
//! refusal is counted and logged, throttled (`grpc.refused`).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use riposte_tls::server::{Files, Reloadable};
use riposte_tls::tokio_rustls::server::TlsStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::Config;
use crate::budget::{Budget, Over, Places, peer_key};
use crate::clock::Clock;
use crate::door::Node;
use crate::refusals::Tally;
use crate::worker_policy::WorkerPolicy;

/// Longest a TLS handshake may take once the connection is accepted.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most handshakes in progress at once; a connection beyond them is closed at once.
pub const HANDSHAKES_MAX: usize = 256;
/// Of those, the most one peer address (an IPv6 peer: its /64) may have in progress, so that a
/// peer sending nothing cannot keep everyone else from connecting.
pub const PEER_HANDSHAKES_MAX: usize = 16;
/// Most gRPC connections open at once (each worker holds two, each CLI command one).
pub const GRPC_CONNECTIONS_MAX: usize = 4096;
/// Of those, the most one peer address may hold.
pub const PEER_CONNECTIONS_MAX: usize = 1024;
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
    #[error("cannot read the {what} {path}: {source}")]
    PolicyRead {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("the {what} {path}: {why}")]
    Policy {
        what: &'static str,
        path: String,
        why: String,
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
    let policy = read(
        "worker policy",
        config.worker_policy.as_deref(),
        WorkerPolicy::parse,
    )?;
    Ok(policy.unwrap_or_default())
}

/// Reads the operator policy file of `config` (none: no operator may do anything).
pub fn operator_policy(config: &Config) -> Result<crate::auth::Policy, Error> {
    let policy = read(
        "operator policy",
        config.policy.as_deref(),
        crate::auth::Policy::parse,
    )?;
    Ok(policy.unwrap_or_default())
}

/// Reads the API tokens file of `config` (none: no token is valid).
pub fn api_tokens(config: &Config) -> Result<crate::auth::Tokens, Error> {
    let tokens = read(
        "API tokens file",
        config.api_tokens.as_deref(),
        crate::auth::Tokens::parse,
    )?;
    Ok(tokens.unwrap_or_default())
}

/// Reads and parses the `what` file at `path`, when there is one.
fn read<T, E: std::fmt::Display>(
    what: &'static str,
    path: Option<&std::path::Path>,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<Option<T>, Error> {
    let Some(path) = path else { return Ok(None) };
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| Error::PolicyRead {
        what,
        path: shown.clone(),
        source,
    })?;
    parse(&text).map(Some).map_err(|why| Error::Policy {
        what,
        path: shown,
        why: why.to_string(),
    })
}

/// A connection that holds its place under [`GRPC_CONNECTIONS_MAX`] until it is dropped.
pub struct Counted<S> {
    inner: S,
    _place: Places<std::net::IpAddr>,
}

/// The gRPC listener's refusals, a [`Tally`] per kind.
struct Refused {
    connections_max: Tally,
    handshakes_max: Tally,
    handshake_failed: Tally,
    accept_failed: Tally,
}

/// Accepts connections on `listener` and answers each one whose handshake completes, until the
/// receiver is dropped.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<Reloadable>,
    clock: Clock,
) -> ReceiverStream<std::io::Result<Counted<TlsStream<TcpStream>>>> {
    let (tx, rx) = mpsc::channel(HANDSHAKES_MAX);
    let refused = Arc::new(Refused {
        connections_max: Tally::grpc("connections_max", clock.clone()),
        handshakes_max: Tally::grpc("handshakes_max", clock.clone()),
        handshake_failed: Tally::grpc("tls_handshake_failed", clock.clone()),
        accept_failed: Tally::grpc("accept_failed", clock),
    });
    tokio::spawn(async move {
        let handshakes = Arc::new(Budget::new(HANDSHAKES_MAX, PEER_HANDSHAKES_MAX));
        let connections = Arc::new(Budget::new(GRPC_CONNECTIONS_MAX, PEER_CONNECTIONS_MAX));
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => return,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: let some close.
                    refused.accept_failed.note(&"-", &e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let key = peer_key(peer.ip());
            let place = match connections.try_take(key) {
                Ok(place) => place,
                Err(over) => {
                    refused
                        .connections_max
                        .note(&peer, &why(&over, "connections open"));
                    continue;
                }
            };
            let handshake = match handshakes.try_take(key) {
                Ok(handshake) => handshake,
                Err(over) => {
                    let why = why(&over, "TLS handshakes in progress");
                    refused.handshakes_max.note(&peer, &why);
                    continue;
                }
            };
            // Replies are small; without TCP_NODELAY a trailer waits on delayed ACKs.
            let _ = stream.set_nodelay(true);
            let acceptor = tls.acceptor();
            let (tx, refused) = (tx.clone(), refused.clone());
            tokio::spawn(async move {
                let _handshake = handshake;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(inner)) => {
                        let counted = Counted {
                            inner,
                            _place: place,
                        };
                        let _ = tx.send(Ok(counted)).await;
                    }
                    Ok(Err(e)) => refused.handshake_failed.note(&peer, &e),
                    Err(_) => {
                        let why = format!("no TLS handshake within {HANDSHAKE_TIMEOUT:?}");
                        refused.handshake_failed.note(&peer, &why);
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}

/// Why a bound refused a connection: `what` is the thing counted.
fn why(over: &Over, what: &str) -> String {
    match over {
        Over::All { max } => format!("{max} {what}, the most allowed"),
        Over::Share { share_max, .. } => {
            format!("the peer has {share_max} {what}, the most one peer may")
        }
    }
}

impl<S: Connected> Connected for Counted<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> S::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Reloads every TLS configuration, the worker and operator policies and the API tokens when
/// their files change, and all of them on SIGHUP; a reload that fails keeps what was loaded
/// and says why.
pub async fn reload(
    config: Config,
    node: Arc<Node>,
    tls: Vec<Arc<Reloadable>>,
    authenticator: Arc<crate::auth::Authenticator>,
) {
    #[cfg(unix)]
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut policy_stamp = stamp(config.worker_policy.as_deref());
    let mut operators_stamp = stamp(config.policy.as_deref());
    let mut tokens_stamp = stamp(config.api_tokens.as_deref());
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
        let changed = |path: Option<&std::path::Path>, last: &mut Option<_>| {
            let now = stamp(path);
            let changed = forced || now != *last;
            *last = now;
            changed
        };
        if changed(config.worker_policy.as_deref(), &mut policy_stamp) {
            let read = worker_policy(&config).map(|policy| node.set_worker_policy(policy));
            reloaded(&node, "worker policy", "worker_policy", read).await;
        }
        if changed(config.policy.as_deref(), &mut operators_stamp) {
            let read = operator_policy(&config).map(|policy| node.set_operator_policy(policy));
            reloaded(&node, "operator policy", "operator_policy", read).await;
        }
        if changed(config.api_tokens.as_deref(), &mut tokens_stamp) {
            let read = api_tokens(&config).map(|tokens| authenticator.set_tokens(tokens));
            reloaded(&node, "API tokens", "api_tokens", read).await;
        }
    }
}

/// Logs and audits how reading the `what` file again went (`event`: the log's prefix); a
/// failure kept what was in force.
async fn reloaded(node: &Node, what: &str, event: &str, read: Result<(), Error>) {
    let outcome = match read {
        Ok(()) => {
            tracing::info!(file = what, "{event}.reloaded");
            "ok".to_string()
        }
        Err(e) => {
            tracing::error!(error = %e, "{event}.reload_failed");
            e.to_string()
        }
    };
    node.audit_internal("policy.reload", what, &outcome).await;
}

/// What tells a version of the policy file: its modification time and length.
fn stamp(path: Option<&std::path::Path>) -> Option<(std::time::SystemTime, u64)> {
    let meta = std::fs::metadata(path?).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}
