//! The `riposte-worker` binary: logging, configuration from the process's arguments and
//! environment, and a worker that drains on SIGTERM or Ctrl-C.
//!
//! Exit codes: 0 after a clean shutdown, 2 for a usage or configuration error, 1 when the
//! worker could not start.

use std::collections::HashMap;
use std::process::ExitCode;

use riposte_worker::{Config, Error};

#[tokio::main]
async fn main() -> ExitCode {
    let env: HashMap<String, String> = std::env::vars_os()
        .filter_map(|(key, value)| Some((key.into_string().ok()?, value.into_string().ok()?)))
        .collect();
    let config = match Config::from_args(std::env::args_os(), &env) {
        Ok(config) => config,
        Err(Error::Args(error)) => error.exit(),
        Err(error) => {
            eprintln!("riposte-worker: {error}");
            return ExitCode::from(2);
        }
    };
    // Logs to stderr, filtered by `RUST_LOG` (default `info`).
    let log = env.get("RUST_LOG").map_or("info", String::as_str);
    let settings = config.telemetry.resolve();
    let telemetry = match riposte_telemetry::init(settings, "riposte-worker", log) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("riposte-worker: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(at) = telemetry.settings().admin_listen {
        match riposte_telemetry::admin::bind(at).await {
            Ok(listener) => {
                let admin = telemetry.admin();
                admin.set_probe(std::sync::Arc::new(Started));
                tokio::spawn(admin.serve(listener, std::future::pending()));
            }
            Err(error) => {
                eprintln!("riposte-worker: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    let ran = riposte_worker::run(config, shutdown_signal()).await;
    telemetry.shutdown(std::time::Duration::from_secs(2)).await;
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "worker failed to start");
            ExitCode::FAILURE
        }
    }
}

/// A worker is ready as soon as it runs: it holds no state, and retries its orchestrator.
struct Started;

impl riposte_telemetry::admin::Probe for Started {
    fn ready(&self) -> Result<(), riposte_telemetry::admin::NotReady> {
        Ok(())
    }
}

/// Resolves on the first SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for sigterm");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("ctrl-c received"),
        () = terminate => tracing::info!("sigterm received"),
    }
}
