//! Big runs: one `for_each` run over 1,000, 10,000 and 100,000 items (`core.echo`, about
//! 330 bytes of output each, 100 at a time) on a fresh orchestrator each; the bytes written
//! to the disk that holds its data dir per item (sectors written, from the block device's
//! `stat`, with the fdatasync on: the whole machine's writes, so run it on a quiet one), the
//! orchestrator's CPU per item, and items per second. Target: bytes written per item flat within 20 %
//! from 1,000 to 100,000 items. `riposte-bench fan-out` measures these only.

use super::*;

pub(super) const FAN_OUT: &str = r#"name: fan-out
version: 1
params:
  count: { type: int }
steps:
  - id: each
    action: core.echo
    for_each: "{{ range(params.count) }}"
    concurrency: 100
    with:
      item: "{{ item }}"
      pad: "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
"#;

pub(super) const FAN_OUT_ITEMS: [u32; 3] = [1_000, 10_000, 100_000];

/// Bytes written per item may grow this much from the smallest run to the largest.
pub(super) const FAN_OUT_FLAT_MAX: f64 = 1.2;

/// How long the largest run may take before the bench gives up.
const FAN_OUT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

pub(super) struct FanOut {
    pub(super) items: u32,
    pub(super) written_bytes: u64,
    pub(super) orchestrator_cpu: Duration,
    pub(super) elapsed: Duration,
    pub(super) rss_bytes: u64,
}

/// Bytes written so far to the block device that holds `path`, from its `stat` (sectors of
/// 512 bytes, field 7). A process's own `write_bytes` counts pages each time they are dirtied
/// again after a sync, which is not what reaches the disk.
fn written_bytes(path: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path)?.dev();
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let stat = std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/stat"))
        .with_context(|| format!("{} is on no block device", path.display()))?;
    let sectors: u64 = stat
        .split_whitespace()
        .nth(6)
        .context("no sectors-written field")?
        .parse()?;
    Ok(sectors * 512)
}

/// Writes back everything dirty, so that a figure holds what its run wrote, all of it.
fn sync_all() {
    nix::unistd::sync();
}

/// One run of each size in `sizes` (item counts as text), or of [`FAN_OUT_ITEMS`].
pub(super) async fn measure(sizes: &[String]) -> Result<Vec<FanOut>> {
    let sizes: Vec<u32> = match sizes.is_empty() {
        true => FAN_OUT_ITEMS.to_vec(),
        false => sizes.iter().map(|a| a.parse()).collect::<Result<_, _>>()?,
    };
    let mut runs = Vec::new();
    for items in sizes {
        progress(&format!("one for_each run of {items} items"));
        runs.push(fan_out(items).await?);
    }
    Ok(runs)
}

async fn fan_out(items: u32) -> Result<FanOut> {
    let orchestrator = Orchestrator::builder().log("warn").start();
    let _workers = start_workers(&orchestrator, &[]).await;
    let mut client = orchestrator.client();
    api::apply_playbook(&mut client, FAN_OUT).await;
    // Warm up, and leave the playbook's own writes out of the figure.
    let warm = api::start_run(&mut client, "fan-out", serde_json::json!({"count": 10})).await;
    api::wait_finished(&mut client, &warm.run_id, PHASE_TIMEOUT).await;
    let pid = orchestrator.pid();
    let data = orchestrator.data_dir();
    sync_all();
    let written_before = written_bytes(&data)?;
    let cpu_before = cpu_time(pid)?;
    let started = Instant::now();
    let run = api::start_run(&mut client, "fan-out", serde_json::json!({"count": items})).await;
    // One GetRun a second: reading a big run costs the orchestrator something too.
    let deadline = started + FAN_OUT_TIMEOUT;
    let done = loop {
        let run = client
            .get_run(riposte_proto::v1::GetRunRequest {
                run_id: run.run_id.clone(),
            })
            .await?
            .into_inner();
        if run.status() != RunStatus::Running {
            break run;
        }
        if Instant::now() > deadline {
            bail!("the {items}-item run still runs after {FAN_OUT_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let elapsed = Duration::from_millis((done.finished_at_ms - done.created_at_ms).max(1) as u64);
    let rss = parked::rss_bytes(pid)?;
    let cpu = cpu_time(pid)? - cpu_before;
    sync_all();
    let written = written_bytes(&data)? - written_before;
    if done.status() != RunStatus::Succeeded {
        bail!(
            "the {items}-item run ended {:?}: {}",
            done.status(),
            done.error
        );
    }
    Ok(FanOut {
        items,
        written_bytes: written,
        orchestrator_cpu: cpu,
        elapsed,
        rss_bytes: rss,
    })
}

pub(super) fn print(runs: &[FanOut]) {
    println!();
    println!("One for_each run per size (core.echo, ~330 B output per item, 100 at a time)");
    println!(
        "  {:>8}  {:>14}  {:>12}  {:>10}  {:>10}  {:>12}",
        "items", "written/item", "vs smallest", "CPU/item", "items/s", "RSS after"
    );
    let first = runs
        .first()
        .map(|r| r.written_bytes as f64 / f64::from(r.items));
    let mut flat = true;
    for run in runs {
        let per_item = run.written_bytes as f64 / f64::from(run.items);
        let ratio = first.map_or(1.0, |f| per_item / f);
        flat &= ratio <= FAN_OUT_FLAT_MAX;
        println!(
            "  {:>8}  {:>12.0} B  {:>11.2}x  {:>7.3} ms  {:>10.0}  {:>8.1} MiB",
            run.items,
            per_item,
            ratio,
            ms(run.orchestrator_cpu) / f64::from(run.items),
            f64::from(run.items) / run.elapsed.as_secs_f64(),
            run.rss_bytes as f64 / (1024.0 * 1024.0),
        );
    }
    println!(
        "  bytes written per item flat within {:.0} %: {}",
        (FAN_OUT_FLAT_MAX - 1.0) * 100.0,
        verdict(flat)
    );
}
