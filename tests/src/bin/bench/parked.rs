//! Parked runs: 10,000 and then 100,000 runs on a durable one-hour sleep (each on a fresh
//! orchestrator); the orchestrator's RSS and the sled folder's size per parked run, and
//! restart to the first ListRuns answer with all of them.

use super::*;

pub(super) const SLEEPER: &str = "name: sleeper
version: 1
steps:
  - id: nap
    sleep: 1h
  - id: after
    needs: [nap]
    action: core.noop
";

pub(super) const TIMER_PARKED_RUNS: [usize; 2] = [10_000, 100_000];

/// Parked before the baseline is measured.
const WARMUP_PARKED: usize = 100;

pub(super) const PARKED_RSS_BYTES_MAX: f64 = 4096.0;

pub(super) const PARKED_DISK_BYTES_MAX: f64 = 8192.0;

pub(super) const PARKED_RESTART_MAX: Duration = Duration::from_secs(2);

pub(super) struct Parked {
    pub(super) runs: usize,
    pub(super) rss_bytes: u64,
    pub(super) disk_bytes: u64,
    pub(super) restart: Duration,
    pub(super) rss_after_restart_bytes: u64,
}

/// Resident memory of a process, from `/proc/PID/status`.
pub(super) fn rss_bytes(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .context("no VmRSS value")?
        .parse()?;
    Ok(kib * 1024)
}

pub(super) async fn parked_on_timers(count: usize) -> Result<Parked> {
    let mut orchestrator = Orchestrator::builder().log("warn").start();
    let mut client = orchestrator.client();
    api::apply_playbook(&mut client, SLEEPER).await;
    // Warm the process (allocator, caches) with a few runs before the baseline; they count
    // towards `count` (the orchestrator runs at most 100,000 runs at once).
    start_runs(&client, "sleeper", WARMUP_PARKED).await?;
    let before_rss = rss_bytes(orchestrator.pid())?;
    let before_disk = folder_bytes(&orchestrator.data_dir())?;
    let count = count - WARMUP_PARKED;
    start_runs(&client, "sleeper", count).await?;
    let after_rss = rss_bytes(orchestrator.pid())?;
    let after_disk = folder_bytes(&orchestrator.data_dir())?;

    orchestrator.kill9();
    let started = Instant::now();
    orchestrator.restart();
    let mut client = orchestrator.client();
    let first = ListRunsRequest {
        limit: 1,
        ..Default::default()
    };
    retry_until_ok(async || client.list_runs(first.clone()).await.map(|_| ())).await?;
    let restart = started.elapsed();
    let rss_after_restart_bytes = rss_bytes(orchestrator.pid())?;
    orchestrator.kill9();
    Ok(Parked {
        runs: count,
        rss_bytes: after_rss.saturating_sub(before_rss),
        disk_bytes: after_disk.saturating_sub(before_disk),
        restart,
        rss_after_restart_bytes,
    })
}

impl Parked {
    pub(super) fn print(&self) {
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        let rss = self.rss_bytes as f64 / self.runs as f64;
        let disk = self.disk_bytes as f64 / self.runs as f64;
        println!();
        println!(
            "{} runs parked on a durable 1-hour sleep (measured over the last {})",
            self.runs + WARMUP_PARKED,
            self.runs
        );
        println!(
            "  orchestrator RSS per parked run   {:>8.0} B   target <= {PARKED_RSS_BYTES_MAX:.0} B   {}",
            rss,
            verdict(rss <= PARKED_RSS_BYTES_MAX)
        );
        println!(
            "  disk per parked run (sled folder) {:>8.0} B   target <= {PARKED_DISK_BYTES_MAX:.0} B   {}",
            disk,
            verdict(disk <= PARKED_DISK_BYTES_MAX)
        );
        println!(
            "  restart to first ListRuns         {:>8.1} ms  target < {} ms   {}",
            ms(self.restart),
            PARKED_RESTART_MAX.as_millis(),
            verdict(self.restart < PARKED_RESTART_MAX)
        );
        println!(
            "  orchestrator RSS after the restart, all parked: {:.1} MiB",
            self.rss_after_restart_bytes as f64 / 1024.0 / 1024.0
        );
    }
}
