//! The Riposte orchestrator: the coordinator service.
//!
//! [`run`] serves the worker and operator gRPC APIs on a listener until `shutdown` resolves.
//! Inside: [`store`] (sled, the only door to disk), [`scheduler`] (the pure state machine),
//! [`schedule`] (cron schedules: definitions, occurrences and the pure fate planner),
//! [`dispatch`] (queue, workers, leases), [`engine`] (glue: one event, one transaction, one
//! flush), the gRPC edge and [`convert`]ers to the wire types.

mod alert_http;
mod alert_syslog;
pub mod auth;
mod budget;
pub mod builtin;
pub mod clock;
pub mod config;
mod convert;
pub mod dev;
pub mod dispatch;
pub mod door;
pub mod engine;
mod grpc;
pub mod pending;
pub mod pollers;
mod refusals;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod worker_policy;

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use riposte_proto::v1::operator_server::OperatorServer;
use riposte_proto::v1::worker_server::WorkerServer;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Notify;

pub use config::Config;

/// Largest gRPC message accepted (a playbook source, a task output).
pub const MESSAGE_BYTES_MAX: usize = 2 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Engine(#[from] engine::Error),
    #[error(transparent)]
    SecretsFile(#[from] config::SecretsFileError),
    /// A request made at start (a playbook to apply) was refused.
    #[error(transparent)]
    Request(#[from] door::Error),
    #[error("serving gRPC: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error(transparent)]
    Tls(#[from] tls::Error),
    #[error(transparent)]
    Certificates(#[from] riposte_tls::issue::Error),
    #[error("the OIDC configuration: {0}")]
    Oidc(#[from] auth::oidc::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Every socket the orchestrator serves, bound before [`run`] so that the bound addresses
/// (port 0 picks one) can be printed first.
pub struct Listeners {
    pub grpc: TcpListener,
    /// TLS of the listeners that have it.
    pub transport: tls::Transport,
    /// The HTTP alert listener (`--alerts-listen`).
    pub alerts: Option<TcpListener>,
    pub syslog_udp: Option<UdpSocket>,
    pub syslog_tcp: Option<TcpListener>,
    pub syslog_tls: Option<TcpListener>,
}

impl Listeners {
    /// Loads the certificates and binds every address `config` asks for; an address that
    /// cannot be bound is an error naming the flag, plaintext where it is not allowed an error
    /// saying how to serve TLS.
    pub async fn bind(config: &Config) -> Result<Listeners, Error> {
        let transport = tls::Transport::from_config(config)?;
        Ok(Listeners {
            grpc: bound(TcpListener::bind(config.listen), "--listen", config.listen).await?,
            transport,
            alerts: bind_if(config.alerts_listen, "--alerts-listen", TcpListener::bind).await?,
            syslog_udp: bind_if(config.syslog_udp, "--syslog-udp", UdpSocket::bind).await?,
            syslog_tcp: bind_if(config.syslog_tcp, "--syslog-tcp", TcpListener::bind).await?,
            syslog_tls: bind_if(config.syslog_tls, "--syslog-tls", TcpListener::bind).await?,
        })
    }

    /// The first line of stdout: `riposte-orchestrator listening on URL` (`https://` with TLS),
    /// then `alerts on ADDR`, `syslog-udp on ADDR`, `syslog-tcp on ADDR` for each listener that
    /// is on.
    pub fn banner(&self) -> std::io::Result<String> {
        let mut line = format!("riposte-orchestrator listening on {}", self.grpc_url()?);
        if let Some(l) = &self.alerts {
            line.push_str(&format!(" alerts on {}", l.local_addr()?));
        }
        if let Some(s) = &self.syslog_udp {
            line.push_str(&format!(" syslog-udp on {}", s.local_addr()?));
        }
        if let Some(l) = &self.syslog_tcp {
            line.push_str(&format!(" syslog-tcp on {}", l.local_addr()?));
        }
        if let Some(l) = &self.syslog_tls {
            line.push_str(&format!(" syslog-tls on {}", l.local_addr()?));
        }
        Ok(line)
    }
}

impl Listeners {
    /// The URL of the gRPC API: `https://ADDR` with TLS, else `http://ADDR`.
    pub fn grpc_url(&self) -> std::io::Result<String> {
        let scheme = match self.transport.grpc {
            Some(_) => "https",
            None => "http",
        };
        Ok(format!("{scheme}://{}", self.grpc.local_addr()?))
    }
}

/// Binds `at` with `bind` when the flag was given.
async fn bind_if<S, F>(
    at: Option<std::net::SocketAddr>,
    flag: &str,
    bind: impl FnOnce(std::net::SocketAddr) -> F,
) -> Result<Option<S>, Error>
where
    F: Future<Output = std::io::Result<S>>,
{
    match at {
        Some(at) => bound(bind(at), flag, at).await.map(Some),
        None => Ok(None),
    }
}

/// A bind's socket, or an error naming the flag and the address.
async fn bound<S>(
    bind: impl Future<Output = std::io::Result<S>>,
    flag: &str,
    at: std::net::SocketAddr,
) -> Result<S, Error> {
    bind.await.map_err(|source| Error::Io {
        path: format!("{flag} {at}"),
        source,
    })
}

/// Everything before serving: opens the store in `config.data_dir` (locked for this process),
/// resumes the runs that were running, and applies the playbooks of `config.playbooks` (then
/// the examples with `--dev`, then the built-in playbooks the store lacks). Any failure is an
/// error whose text is the one-line cause. The runs' spans go to `telemetry`'s exporter.
pub async fn open(
    config: &Config,
    telemetry: &riposte_telemetry::Telemetry,
) -> Result<Arc<door::Node>, Error> {
    let options = store::Options {
        durability: config.durability,
        reserve_bytes: config.min_free_space.as_u64(),
        cache_bytes: config.store_cache.as_u64(),
        audit_key: config.audit_key.clone(),
    };
    let store = store::Store::open(&config.data_dir, options.clone())?;
    let policy = tls::operator_policy(config)?;
    let settings = engine::Settings {
        lease: config.lease_timeout,
        poll_wait_max: config.poll_wait_max,
        platform: engine::Platform::of(&policy),
        guard: config.guard_policy(config.listen.ip()),
        schedule_grace: config.schedule_grace,
        schedule_to_start: Some(config.schedule_to_start),
        spans: telemetry.recorder(),
        metrics: telemetry.metrics(),
        end_unoffered: config.dev,
        pollers: config.pollers()?,
    };
    let clock = clock::Clock::system();
    let engine = engine::Engine::open(
        store,
        settings.clone(),
        clock.clone(),
        Arc::new(Notify::new()),
    )?;
    tracing::info!(runs.active = engine.runs.active_runs(), "engine.resumed");
    let dir = config.data_dir.clone();
    let reopen: door::Reopen = Box::new(move |wake| {
        let store = store::Store::open(&dir, options.clone())?;
        Ok(engine::Engine::open(
            store,
            settings.clone(),
            clock.clone(),
            wake,
        )?)
    });
    let access = door::workers::WorkerAccess::new(
        tls::worker_policy(config)?,
        config.insecure_anonymous_workers,
    );
    let node = door::Node::new(
        engine,
        config.alerts_in_flight,
        config.alerts_in_flight_per_feed,
    )
    .with_reopen(reopen)
    .with_worker_access(access)
    .with_operator_policy(policy);
    let shared = Arc::new(node);
    if let Some(dir) = &config.playbooks {
        apply_folder(&shared, dir).await?;
    }
    if config.dev {
        dev::apply_examples(&shared).await?;
    }
    if !config.no_builtin_playbooks {
        builtin::apply(&shared).await?;
    }
    Ok(shared)
}

/// Serves gRPC (and the alert listeners that are on) for `shared` until `shutdown` resolves,
/// then flushes the store.
pub async fn run(
    config: Config,
    shared: Arc<door::Node>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let Listeners {
        grpc: listener,
        transport,
        alerts,
        syslog_udp,
        syslog_tcp,
        syslog_tls,
    } = listeners;
    let timers = tokio::spawn(timer_loop(shared.clone()));
    let reloads = transport.all();
    let authenticator = Arc::new(auth::Authenticator::new(
        tls::api_tokens(&config)?,
        oidc_verifier(&config)?,
        shared.clock().clone(),
    ));
    let reloading = tokio::spawn(tls::reload(
        config.clone(),
        shared.clone(),
        reloads,
        authenticator.clone(),
    ));
    let mut alert_listeners = Vec::new();
    if let Some(l) = alerts {
        let secrets = alert_http::Secrets::new(config.alert_secrets.clone());
        let limits = alert_http::Limits {
            connections_max: config.alerts_connections_max as usize,
            peer_connections_max: config.alerts_peer_connections_max as usize,
            header_timeout: config.alerts_header_timeout,
        };
        alert_listeners.push(tokio::spawn(alert_http::serve(
            l,
            shared.clone(),
            secrets,
            limits,
            transport.alerts.clone(),
        )));
    }
    let senders = alert_syslog::Senders::new(config.syslog_allow.0.clone());
    if let Some(socket) = syslog_udp {
        alert_listeners.push(tokio::spawn(alert_syslog::serve_udp(
            socket,
            shared.clone(),
            senders.clone(),
        )));
    }
    if let Some(l) = syslog_tcp {
        alert_listeners.push(tokio::spawn(alert_syslog::serve_tcp(
            l,
            shared.clone(),
            senders.clone(),
            None,
        )));
    }
    if let Some(l) = syslog_tls {
        alert_listeners.push(tokio::spawn(alert_syslog::serve_tcp(
            l,
            shared.clone(),
            senders,
            transport.syslog.clone(),
        )));
    }

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<OperatorServer<grpc::OperatorApi>>()
        .await;
    health.set_serving::<WorkerServer<grpc::WorkerApi>>().await;
    let store_health = tokio::spawn(report_store_health(shared.clone(), health.clone()));
    let pruning = tokio::spawn(prune_runs(
        shared.clone(),
        config.retention,
        config.retention_runs_max as usize,
    ));
    let router = tonic::transport::Server::builder()
        .layer(tower::util::MapResponseLayer::new(
            oversized_is_resource_exhausted,
        ))
        .add_service(health_service)
        .add_service(
            WorkerServer::new(grpc::WorkerApi(shared.clone()))
                .max_decoding_message_size(MESSAGE_BYTES_MAX),
        )
        .add_service(
            OperatorServer::new(grpc::OperatorApi(shared.clone(), authenticator))
                .max_decoding_message_size(MESSAGE_BYTES_MAX),
        );
    let result = match transport.grpc {
        Some(tls) => {
            let incoming = tls::incoming(listener, tls, shared.clock().clone());
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        None => {
            // Replies are small; without TCP_NODELAY a trailer waits on delayed ACKs (40 ms).
            let incoming =
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
            router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
    };
    timers.abort();
    reloading.abort();
    store_health.abort();
    pruning.abort();
    for listener in alert_listeners {
        listener.abort();
    }
    shared.flush().await?;
    result?;
    Ok(())
}

/// A request over [`MESSAGE_BYTES_MAX`] is refused by the gRPC codec with OUT_OF_RANGE; it is a
/// limit, so answer RESOURCE_EXHAUSTED like every other limit.
fn oversized_is_resource_exhausted<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    let out_of_range = headers.get("grpc-status").is_some_and(|s| s == "11");
    let too_large = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .is_some_and(|m| m.contains("too%20large") || m.contains("too large"));
    if out_of_range && too_large {
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    response
}

/// The health service the store's condition is reported under: `SERVING` while it takes new
/// work and acknowledges writes, `NOT_SERVING` while the disk is below its reserve or flushes
/// fail (reads keep working either way).
pub const STORE_HEALTH_SERVICE: &str = "riposte.store";

/// Checks the store's condition every second and reports changes to the health service and
/// the log; reopens a store that failed once the disk has room again (ending the process if
/// it cannot).
async fn report_store_health(node: Arc<door::Node>, health: tonic_health::server::HealthReporter) {
    // The last condition reported: `Some(None)` ready, `Some(Some(reason))` not.
    let mut last: Option<Option<String>> = None;
    loop {
        if node.needs_reopen()
            && let Err(e) = node.reopen().await
        {
            tracing::error!(error = %e, "store.reopen_failed");
            eprintln!("error: the store failed and could not be opened again: {e}");
            std::process::exit(1);
        }
        let now = node.condition().err().map(|e| e.to_string());
        if last.as_ref() != Some(&now) {
            let status = match &now {
                None => {
                    tracing::info!("store.ready");
                    tonic_health::ServingStatus::Serving
                }
                Some(why) => {
                    tracing::warn!(reason = %why, "store.not_ready");
                    tonic_health::ServingStatus::NotServing
                }
            };
            health
                .set_service_status(STORE_HEALTH_SERVICE, status)
                .await;
            last = Some(now);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// How often finished runs past their retention are removed.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Removes finished runs past `retention` (or beyond `keep_max` runs) a minute after the start,
/// then every [`PRUNE_EVERY`].
async fn prune_runs(node: Arc<door::Node>, retention: Duration, keep_max: usize) {
    tokio::time::sleep(Duration::from_secs(60)).await;
    loop {
        match node.prune_runs(retention, keep_max).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "runs.pruned"),
            Err(e) => tracing::warn!(error = %e, "runs.prune_failed"),
        }
        tokio::time::sleep(PRUNE_EVERY).await;
    }
}

/// Fires expired leases and due timers, sleeping until the next one or until woken.
async fn timer_loop(shared: Arc<door::Node>) {
    loop {
        let next = shared.tick();
        let sleep = match next {
            Some(at) => tokio::time::sleep_until(at.into()),
            None => tokio::time::sleep(Duration::from_secs(1)),
        };
        tokio::select! {
            _ = sleep => {}
            _ = shared.timers_changed() => {}
        }
    }
}

async fn apply_folder(shared: &Arc<door::Node>, dir: &Path) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    paths.sort();
    for path in paths {
        let source = std::fs::read_to_string(&path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        apply_one(shared, &path.display().to_string(), &source).await?;
    }
    Ok(())
}

/// The OIDC verifier `config` asks for, if any.
fn oidc_verifier(config: &Config) -> Result<Option<auth::oidc::Verifier>, Error> {
    let (Some(issuer), Some(audience), Some(jwks_url)) = (
        &config.oidc_issuer,
        &config.oidc_audience,
        &config.oidc_jwks_url,
    ) else {
        return Ok(None);
    };
    let oidc = auth::oidc::OidcConfig {
        issuer: issuer.clone(),
        audience: audience.clone(),
        jwks_url: jwks_url.clone(),
        tenant: config.oidc_tenant.clone(),
        leeway: auth::oidc::OidcConfig::LEEWAY_DEFAULT,
    };
    let verifier = auth::oidc::Verifier::new(oidc, config.oidc_ca.as_deref())?;
    Ok(Some(verifier))
}

/// Applies one playbook at start; an invalid or conflicting one is logged and skipped.
async fn apply_one(shared: &Arc<door::Node>, origin: &str, source: &str) -> Result<(), Error> {
    let apply = door::playbooks::ApplyPlaybook {
        source: source.to_string(),
    };
    match shared.handle(door::Caller::Internal, apply).await {
        Ok(applied) => {
            let playbook = &applied.playbook;
            tracing::info!(playbook = %playbook.name, version = playbook.version, unchanged = applied.unchanged, origin, "playbook.loaded");
        }
        Err(e @ (door::Error::Engine(engine::Error::Store(_)) | door::Error::NotDurable(_))) => {
            return Err(e.into());
        }
        Err(e) => tracing::warn!(origin, error = %e, "playbook.skipped"),
    }
    Ok(())
}
