//! `riposte-orchestrator`: the coordinator service binary. Thin: parse the configuration, bind
//! the listeners, print the bound addresses, serve until SIGTERM or Ctrl-C.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use riposte_orchestrator::{Config, Listeners, run};
use tokio::sync::watch;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.log))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let config = config.read_secrets_file()?;
    let listeners = Listeners::bind(&config).await?;
    let addr = listeners.grpc.local_addr()?;
    println!("{}", listeners.banner()?);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut workers = Vec::new();
    if config.dev {
        let url = format!("http://{addr}");
        for n in 1..=config.dev_workers {
            let mut worker = riposte_worker::Config::new(url.clone());
            worker.name = format!("dev-worker-{n}");
            let mut stop = stop_rx.clone();
            workers.push(tokio::spawn(riposte_worker::run(worker, async move {
                let _ = stop.wait_for(|s| *s).await;
            })));
        }
        print_dev_banner(&config, addr);
    }
    let mut stop = stop_rx.clone();
    let server = tokio::spawn(run(config, listeners, async move {
        let _ = stop.wait_for(|s| *s).await;
    }));
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    for worker in workers {
        let _ = worker.await;
    }
    server.await??;
    Ok(())
}

fn print_dev_banner(config: &Config, addr: std::net::SocketAddr) {
    println!(
        "dev mode: data in {}, {} in-process workers, example and built-in playbooks applied.\n\
         Try, in another terminal:\n  \
         cargo run --bin riposte -- --addr http://{addr} playbook list\n  \
         cargo run --bin riposte -- --addr http://{addr} run hello -p name=operator --wait\n  \
         cargo run --bin riposte -- --addr http://{addr} run diamond --wait\n  \
         cargo run --bin riposte -- --addr http://{addr} run hello -p name=plan --dry-run --wait\n  \
         cargo run --bin riposte -- --addr http://{addr} containment status",
        config.data_dir.display(),
        config.dev_workers
    );
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
