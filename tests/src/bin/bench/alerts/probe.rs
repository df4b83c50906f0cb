//! The time to stored of a syslog line, measured while a phase's connections keep the
//! listener busy. Syslog answers nothing per line, but the TCP listener closes a connection
//! that its sender half-closed only once every line it read from it is durable. So, at a
//! steady period, a probe of its own opens a connection, writes one line, half-closes and
//! waits for the close; the time from its write to the close is that line's time to stored.
//! It includes the accept, which waits while the listener is busy, not the connect, which the
//! kernel answers. Probes are sent open loop: one that waits does not hold the next back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::{PHASE_TIMEOUT, Samples};

/// Probes being sent until [`Probes::stop`].
pub struct Probes {
    stopped: Arc<AtomicBool>,
    sender: JoinHandle<Result<Vec<JoinHandle<Result<Duration>>>>>,
}

impl Probes {
    /// Starts sending a probe to `addr` every `period`, the `n`th with the line `line(n)` (no
    /// newline).
    pub fn start(addr: SocketAddr, period: Duration, line: fn(usize) -> String) -> Probes {
        let stopped = Arc::new(AtomicBool::new(false));
        let stop = stopped.clone();
        let sender = tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let mut probes = Vec::new();
            for n in 0.. {
                tokio::time::sleep_until(start + period * n as u32).await;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                probes.push(tokio::spawn(probe(addr, line(n))));
            }
            Ok(probes)
        });
        Probes { stopped, sender }
    }

    /// Stops sending probes and waits for those sent; fails if any failed.
    pub async fn stop(self) -> Result<Samples> {
        self.stopped.store(true, Ordering::Relaxed);
        let probes = self.sender.await??;
        let mut samples = Vec::with_capacity(probes.len());
        for probe in probes {
            samples.push(
                tokio::time::timeout(PHASE_TIMEOUT, probe)
                    .await
                    .context("a probe timed out")???,
            );
        }
        Ok(Samples::new(samples))
    }
}

/// One probe: connect, then time from writing `line` to the listener's close.
async fn probe(addr: SocketAddr, line: String) -> Result<Duration> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let written = Instant::now();
    stream.write_all(format!("{line}\n").as_bytes()).await?;
    stream.shutdown().await?;
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).await?;
    Ok(written.elapsed())
}
