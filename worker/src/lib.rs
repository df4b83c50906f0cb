//! Riposte worker: a stateless executor of playbook actions.
//!
//! A worker registers with the orchestrator, long-polls for tasks on `concurrency` slots, runs
//! each task's action through a connector, heartbeats the leases it holds and reports every
//! result with the lease's fencing token. It keeps no durable state: killing it at any moment
//! loses nothing, because its leases expire on the orchestrator and the tasks run elsewhere.
//!
//! The shape is `Config` -> [`run`] -> [`Error`], so the orchestrator's development mode and the
//! tests can start workers in-process:
//!
//! ```no_run
//! # async fn example() -> Result<(), riposte_worker::Error> {
//! let config = riposte_worker::Config::new("http://127.0.0.1:7470").with_concurrency(2);
//! riposte_worker::run(config, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
//!
//! Module map: `config` (flags and environment), `runtime` (slots, heartbeat, drain), `client`
//! (the only door to the orchestrator; all proto conversions), `leases` (leases held, abandon
//! signals), `task` (one task: input, action, timeout, output cap), `connectors` (the actions),
//! `redact` (the one door upstream text passes before it leaves the worker), `backoff` (retry
//! delays).

mod backoff;
mod client;
mod clock;
mod config;
pub mod connectors;
mod exec;
mod leases;
mod redact;
mod runtime;
mod sources;
mod task;
mod telemetry;

pub use config::{AllowedHost, CONCURRENCY_MAX, Config};
pub use connectors::Backends;
pub use runtime::run;
pub use task::OUTPUT_BYTES_MAX;

/// Why the worker could not be configured or started.
///
/// An unreachable orchestrator is not an error: the worker retries for as long as it runs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line is invalid, or `--help` / `--version` was asked for. Its `exit()` prints
    /// the message and exits with the conventional code (2 for a usage error, 0 for help).
    #[error(transparent)]
    Args(#[from] clap::Error),
    /// An environment variable holds a value that does not parse.
    #[error("invalid {var}: {message}")]
    Env {
        /// The variable's name, e.g. `RIPOSTE_LABELS`.
        var: &'static str,
        /// What is wrong with its value.
        message: String,
    },
    /// A `key=value` label list does not parse.
    #[error("invalid label {entry:?}: {reason}")]
    Label {
        /// The offending entry.
        entry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A `host[:port]` allowlist entry does not parse.
    #[error("invalid allowed host {entry:?}: {reason}")]
    AllowedHost {
        /// The offending entry.
        entry: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A TLS certificate or key file cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] riposte_tls::pem::Error),
    /// A configuration value is out of its bounds (for a `Config` built in code).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The orchestrator URL is not a valid gRPC endpoint.
    #[error("invalid orchestrator url {url:?}: {reason}")]
    OrchestratorUrl {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// A configured backend cannot be set up on this host (e.g. nft is missing or fails).
    #[error("cannot set up a backend: {0}")]
    Backend(String),
    /// The HTTP client for `http.request` could not be built.
    #[error("cannot build the http client: {0}")]
    HttpClient(#[source] reqwest::Error),
}
