//! The floor of this machine, measured in the same run as Riposte's figures: a bare tonic
//! unary round trip on loopback (an in-process server with only the health service) and one
//! sled insert followed by a flush, then an `fdatasync` of sled's log as the orchestrator's
//! default durability does (and without, for `--durability process-crash`); and opening a sled
//! folder, the floor of a restart.

use super::*;

#[derive(Clone, Copy)]
pub(super) struct Floor {
    pub(super) rtt: Duration,
    /// Insert, flush and fdatasync.
    pub(super) flush: Duration,
    /// Insert and flush, no fdatasync.
    pub(super) flush_unsynced: Duration,
}

impl Floor {
    /// The floor of a step under the default durability (power loss).
    pub(super) fn per_step(&self) -> Duration {
        self.rtt + self.flush
    }

    /// The floor of a step under `--durability process-crash`.
    pub(super) fn per_step_unsynced(&self) -> Duration {
        self.rtt + self.flush_unsynced
    }
}

/// Sequential health checks against an in-process tonic server on its own thread.
pub(super) async fn grpc_round_trips() -> Result<Samples> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = std::thread::spawn(move || -> Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let incoming = TcpListenerStream::new(listener).map(|stream| {
                let stream = stream?;
                stream.set_nodelay(true)?;
                Ok::<_, std::io::Error>(stream)
            });
            let (_reporter, service) = tonic_health::server::health_reporter();
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await?;
            Ok(())
        })
    });
    let mut client = HealthClient::new(api::channel(&format!("http://{addr}")));
    let mut samples = Vec::with_capacity(FLOOR_CALLS);
    for i in 0..FLOOR_WARMUP + FLOOR_CALLS {
        let started = Instant::now();
        let reply = client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await?;
        let elapsed = started.elapsed();
        if reply.into_inner().status() != ServingStatus::Serving {
            bail!("the floor server is not serving");
        }
        if i >= FLOOR_WARMUP {
            samples.push(elapsed);
        }
    }
    // The server's graceful shutdown waits for the client's connection to close, and the
    // connection closes only while this runtime runs: drop the client, then wait off-thread.
    drop(client);
    let _ = stop.send(());
    tokio::task::spawn_blocking(move || server.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the floor server panicked"))??;
    Ok(Samples::new(samples))
}

/// Inserts of a run-sized value, each followed by a flush (and with `fdatasync`, an
/// `fdatasync` of sled's log), in a fresh sled folder configured as the orchestrator
/// configures its store.
pub(super) fn sled_insert_flush(fdatasync: bool) -> Result<Samples> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("floor");
    let db = sled::Config::new()
        .path(&path)
        .mode(sled::Mode::HighThroughput)
        .open()?;
    let log = std::fs::File::open(path.join("db"))?;
    let value = vec![b'x'; FLOOR_VALUE_BYTES];
    let mut samples = Vec::with_capacity(FLOOR_CALLS);
    for i in 0..(FLOOR_WARMUP + FLOOR_CALLS) as u64 {
        let started = Instant::now();
        db.insert(i.to_be_bytes(), value.as_slice())?;
        db.flush()?;
        if fdatasync {
            log.sync_data()?;
        }
        if i as usize >= FLOOR_WARMUP {
            samples.push(started.elapsed());
        }
    }
    Ok(Samples::new(samples))
}

/// How long opening an existing sled folder takes, in-process: the floor of a restart.
pub(super) fn sled_open(path: &Path) -> Result<Duration> {
    let started = Instant::now();
    let db = sled::Config::new()
        .path(path)
        .mode(sled::Mode::HighThroughput)
        .open()?;
    let elapsed = started.elapsed();
    drop(db);
    Ok(elapsed)
}
