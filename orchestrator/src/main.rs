//! `riposte-orchestrator`: the coordinator service binary. Thin: set a private umask, parse the
//! configuration, open the store, bind the listeners, print the bound addresses, serve until
//! SIGTERM or Ctrl-C (then at most `--shutdown-grace` more; a second signal exits at once).

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use riposte_orchestrator::config::{Command, StoreCommand};
use riposte_orchestrator::{Config, Listeners, run};
use tokio::sync::watch;

/// mimalloc: it gives freed memory back to the system as a storm passes, where glibc's
/// per-thread arenas keep it, and allocates faster.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // No transparent huge pages: memory given back after a burst and touched again by the
    // next is faulted in 4 KiB at a time, not zeroed 2 MiB at a time (14% of the CPU in a
    // profile of a syslog burst that followed a quiet second), and the resident set stays
    // smaller. Where the kernel cannot, huge pages stay as they were: nothing depends on it.
    let _ = nix::sys::prctl::set_thp_disable(true);
    // Everything the orchestrator creates (the data dir, sled's files, snapshots and blobs
    // included) is its user's alone: it holds alert payloads and run inputs.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let config = Config::parse();
    let settings = config.telemetry.resolve();
    let telemetry = match riposte_telemetry::init(settings, "riposte-orchestrator", &config.log) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let served = serve(config, &telemetry).await;
    telemetry.shutdown(TELEMETRY_GRACE).await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Every error here carries its cause in its own text.
            let hint = match damaged(&e) {
                true => "; `riposte-orchestrator store check` lists every damaged record",
                false => "",
            };
            eprintln!("error: {e}{hint}");
            ExitCode::FAILURE
        }
    }
}

/// At exit, how long the spans and metrics not yet exported may take.
const TELEMETRY_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

async fn serve(config: Config, telemetry: &riposte_telemetry::Telemetry) -> anyhow::Result<()> {
    match &config.command {
        Some(Command::Store(StoreCommand::Check)) => return check(&config),
        Some(Command::Store(StoreCommand::Salvage { to })) => return salvage(&config, to),
        None => {}
    }
    // Open and check the store, bind every listener; only then the banner: a failure before
    // it is one line on stderr and a non-zero exit.
    let mut config = config.read_secrets_file()?;
    let credentials = match config.dev {
        true => {
            let now = riposte_orchestrator::clock::Clock::system().now();
            Some(riposte_orchestrator::dev::credentials(&mut config, now)?)
        }
        false => None,
    };
    // The admin listener answers (not ready) while the store opens and runs resume.
    let admin = telemetry.admin();
    let mut admin_at = String::new();
    if let Some(at) = telemetry.settings().admin_listen {
        let listener = riposte_telemetry::admin::bind(at).await?;
        admin_at = format!(" admin on {}", listener.local_addr()?);
        tokio::spawn(admin.clone().serve(listener, std::future::pending()));
    }
    let node = riposte_orchestrator::open(&config, telemetry).await?;
    admin.set_probe(Arc::new(riposte_orchestrator::telemetry::Probe(
        node.clone(),
    )));
    if telemetry.settings().metrics_push {
        tokio::spawn(refresh_gauges(node.clone()));
    }
    let listeners = Listeners::bind(&config).await?;
    let addr = listeners.grpc.local_addr()?;
    println!("{}{admin_at}", listeners.banner()?);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut workers = Vec::new();
    if let Some(credentials) = &credentials {
        // The in-process workers dial loopback, which the dev server certificate names.
        let loopback = std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port());
        let url = listeners
            .grpc_url()?
            .replace(&addr.to_string(), &loopback.to_string());
        let tls = url
            .starts_with("https")
            .then(|| riposte_tls::client::Files {
                ca: credentials.ca.clone(),
                cert: Some(credentials.worker.clone()),
            });
        for n in 1..=config.dev_workers {
            let mut worker = riposte_worker::Config::new(url.clone());
            worker.tls = tls.clone();
            worker.name = format!("dev-worker-{n}");
            let mut stop = stop_rx.clone();
            workers.push(tokio::spawn(riposte_worker::run(worker, async move {
                let _ = stop.wait_for(|s| *s).await;
            })));
        }
        print_dev_banner(&config, credentials, &listeners.grpc_url()?);
    }
    let grace = config.shutdown_grace;
    let mut stop = stop_rx.clone();
    let mut server = tokio::spawn(run(config, node.clone(), listeners, async move {
        let _ = stop.wait_for(|s| *s).await;
    }));
    let mut signals = Signals::new()?;
    tokio::select! {
        // The server ended by itself: it failed.
        ended = &mut server => return Ok(ended??),
        () = signals.next() => {}
    }
    tracing::info!(grace = ?grace, "shutting down");
    let _ = stop_tx.send(true);
    let drained = async {
        for worker in workers {
            let _ = worker.await;
        }
        (&mut server).await
    };
    tokio::select! {
        ended = tokio::time::timeout(grace, drained) => match ended {
            Ok(ended) => ended??,
            Err(_) => {
                tracing::warn!("shutdown grace passed with requests in flight; exiting");
                node.flush().await?;
            }
        },
        () = signals.next() => {
            tracing::warn!("second signal: exiting now");
            node.flush().await?;
        }
    }
    Ok(())
}

/// Keeps the gauges that OTLP pushes current.
async fn refresh_gauges(node: Arc<riposte_orchestrator::door::Node>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(10));
    loop {
        tick.tick().await;
        riposte_orchestrator::telemetry::refresh(&node);
    }
}

/// Whether the start failed on a record that does not read back.
fn damaged(error: &anyhow::Error) -> bool {
    use riposte_orchestrator::{Error, engine};
    let store = match error.downcast_ref::<Error>() {
        Some(Error::Store(e) | Error::Engine(engine::Error::Store(e))) => e,
        _ => return false,
    };
    store.damaged_record().is_some()
}

/// How `store check` and `store salvage` open a data dir: no free-space reserve, the
/// configured audit key (a salvage gives the new data dir the old one's key).
fn offline(config: &Config) -> riposte_orchestrator::store::Options {
    riposte_orchestrator::store::Options {
        audit_key: config.audit_key.clone(),
        ..Default::default()
    }
}

/// `store check`: one line per damaged record, then the count; an error when any.
fn check(config: &Config) -> anyhow::Result<()> {
    let store = riposte_orchestrator::store::Store::open(&config.data_dir, offline(config))?;
    let checked = store.check()?;
    for (record, why) in &checked.damaged {
        println!("damaged: {record}: {why}");
    }
    println!(
        "checked {} records in {}: {} damaged",
        checked.records,
        config.data_dir.display(),
        checked.damaged.len()
    );
    match checked.damaged.len() {
        0 => Ok(()),
        n => anyhow::bail!("{n} damaged records in {}", config.data_dir.display()),
    }
}

/// `store salvage`: what was left behind, one line each, then the count copied.
fn salvage(config: &Config, to: &std::path::Path) -> anyhow::Result<()> {
    use riposte_orchestrator::store::Store;
    let occupied = std::fs::read_dir(to).is_ok_and(|mut entries| entries.next().is_some());
    if occupied {
        anyhow::bail!("{} is not empty: salvage into a new folder", to.display());
    }
    let from = Store::open(&config.data_dir, offline(config))?;
    let into = Store::open(to, offline(config))?;
    let salvaged = from.salvage(&into)?;
    for (record, why) in &salvaged.left {
        println!("left behind: {record}: {why}");
    }
    println!(
        "copied {} records from {} into {}; {} left behind",
        salvaged.copied,
        config.data_dir.display(),
        to.display(),
        salvaged.left.len()
    );
    Ok(())
}

fn print_dev_banner(
    config: &Config,
    credentials: &riposte_orchestrator::dev::Credentials,
    url: &str,
) {
    // The CLI finds ./riposte-data/tls and https://127.0.0.1:7470 by itself; elsewhere it is
    // told where.
    let default_dir = std::path::Path::new("./riposte-data").join("tls");
    let mut cli = String::new();
    if credentials.dir != default_dir {
        cli.push_str(&format!("RIPOSTE_TLS_DIR={} ", credentials.dir.display()));
    }
    cli.push_str("cargo run --bin riposte --");
    if url != "https://127.0.0.1:7470" {
        cli.push_str(&format!(" --addr {url}"));
    }
    println!(
        "dev mode: data in {}, {} in-process workers, example and built-in playbooks applied.\n\
         TLS: a dev CA, a server certificate, a worker certificate (identity `{}`) and an \
         operator certificate for the CLI are in {}; the worker policy is {}.\n\
         Try, in another terminal:\n  \
         {cli} playbook list\n  \
         {cli} run hello -p name=operator --wait\n  \
         {cli} run diamond --wait\n  \
         {cli} run hello -p name=plan --dry-run --wait\n  \
         {cli} containment status",
        config.data_dir.display(),
        config.dev_workers,
        riposte_orchestrator::dev::WORKER_IDENTITY,
        credentials.dir.display(),
        config
            .worker_policy
            .as_deref()
            .unwrap_or(std::path::Path::new("-"))
            .display(),
    );
}

/// SIGTERM and Ctrl-C, as they arrive.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?,
        })
    }

    /// The next SIGTERM or Ctrl-C.
    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = self.term.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
