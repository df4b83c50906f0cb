//! The benchmark's table: every figure beside its floor and its target, a missed target marked
//! MISSED.

use super::*;

pub(super) struct Report {
    pub(super) rtt: Samples,
    pub(super) flush: Samples,
    pub(super) flush_unsynced: Samples,
    pub(super) floor: Floor,
    pub(super) latency: Samples,
    pub(super) inside: Samples,
    pub(super) probes: Probes,
    pub(super) throughput: Throughput,
    pub(super) throughput_unserved: Option<Throughput>,
    /// The same workload under `--durability process-crash`.
    pub(super) unsynced: Workload,
    pub(super) restart: Restart,
}

pub(super) fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

impl Report {
    pub(super) fn print(&self) {
        let floor = self.floor.per_step();
        let ratio = |d: Duration| format!("{:.1}x", d.as_secs_f64() / floor.as_secs_f64());
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        println!();
        println!(
            "Riposte benchmark ({cpus} CPUs, {} build)",
            if cfg!(debug_assertions) {
                "DEBUG"
            } else {
                "release"
            }
        );
        println!();
        println!("floor, measured now on this machine");
        println!(
            "  gRPC unary round trip, loopback (tonic health, {FLOOR_CALLS} sequential)  median {:.3} ms  p99 {:.3} ms",
            ms(self.rtt.median()),
            ms(self.rtt.p99())
        );
        println!(
            "  sled insert ({FLOOR_VALUE_BYTES} B) + flush + fdatasync ({FLOOR_CALLS} sequential) median {:.3} ms  p99 {:.3} ms",
            ms(self.flush.median()),
            ms(self.flush.p99())
        );
        println!(
            "  sled insert ({FLOOR_VALUE_BYTES} B) + flush ({FLOOR_CALLS} sequential)          median {:.3} ms  p99 {:.3} ms",
            ms(self.flush_unsynced.median()),
            ms(self.flush_unsynced.p99())
        );
        println!(
            "  floor per step = gRPC round trip + sled insert&flush&fdatasync (medians) = {:.3} ms",
            ms(floor)
        );
        println!(
            "  without fdatasync (--durability process-crash)                   = {:.3} ms",
            ms(self.floor.per_step_unsynced())
        );
        println!();
        println!(
            "{:<44} {:>14} {:>9}  {:<26} verdict",
            "riposte", "value", "vs floor", "target"
        );
        let per_step_max = floor.mul_f64(PER_STEP_FLOOR_RATIO_MAX);
        let median = self.latency.median();
        self.row(
            "per-step overhead, 1 run in flight, median",
            &format!("{:.3} ms", ms(median)),
            &ratio(median),
            &format!(
                "<= {PER_STEP_FLOOR_RATIO_MAX}x floor ({:.3} ms)",
                ms(per_step_max)
            ),
            Some(median <= per_step_max),
        );
        let p99 = self.latency.p99();
        self.row(
            "per-step overhead, 1 run in flight, p99",
            &format!("{:.3} ms", ms(p99)),
            &ratio(p99),
            "-",
            None,
        );
        let t = &self.throughput;
        let per_step = Duration::from_secs_f64(1.0 / t.steps_per_second());
        self.row(
            &format!("throughput, {THROUGHPUT_RUNS} runs x {NOOP_CHAIN_STEPS} steps"),
            &format!("{:.0} steps/s", t.steps_per_second()),
            &ratio(per_step),
            &format!(">= {STEPS_PER_SECOND_MIN:.0} steps/s"),
            Some(t.steps_per_second() >= STEPS_PER_SECOND_MIN),
        );
        if let Some(loaded) = &self.throughput_unserved {
            let share = loaded.steps_per_second() / t.steps_per_second();
            self.row(
                &format!("  beside {UNSERVED_RUNS} tasks no worker serves"),
                &format!("{:.0} steps/s", loaded.steps_per_second()),
                &format!("{:.0}%", share * 100.0),
                ">= 90% of the figure above",
                Some(share >= 0.9),
            );
        }
        let unsynced_floor = self.floor.per_step_unsynced();
        let vs_unsynced =
            |d: Duration| format!("{:.1}x", d.as_secs_f64() / unsynced_floor.as_secs_f64());
        let u = &self.unsynced;
        let median = u.latency.median();
        self.row(
            "  no fdatasync: per-step overhead, median",
            &format!("{:.3} ms", ms(median)),
            &vs_unsynced(median),
            "-",
            None,
        );
        let per_step = Duration::from_secs_f64(1.0 / u.throughput.steps_per_second());
        self.row(
            "  no fdatasync: throughput",
            &format!("{:.0} steps/s", u.throughput.steps_per_second()),
            &vs_unsynced(per_step),
            "-",
            None,
        );
        self.row(
            "orchestrator CPU per step (throughput run)",
            &format!("{:.3} ms", ms(t.cpu_per_step())),
            &ratio(t.cpu_per_step()),
            "-",
            None,
        );
        let workers_per_step = t.workers_cpu / t.steps as u32;
        self.row(
            "workers' CPU per step (throughput run)",
            &format!("{:.3} ms", ms(workers_per_step)),
            &ratio(workers_per_step),
            "-",
            None,
        );
        let r = &self.restart;
        let open = |d: Duration| format!("{:.1}x", d.as_secs_f64() / r.sled_open.as_secs_f64());
        self.row(
            &format!("restart to first ListRuns, {} parked", r.parked),
            &format!("{:.1} ms", ms(r.to_list_runs)),
            &open(r.to_list_runs),
            &format!("< {} ms", RESTART_MAX.as_millis()),
            Some(r.to_list_runs < RESTART_MAX),
        );
        self.row(
            &format!("restart to health SERVING, {} parked", r.parked),
            &format!("{:.1} ms", ms(r.to_health)),
            &open(r.to_health),
            &format!("< {} ms", RESTART_MAX.as_millis()),
            Some(r.to_health < RESTART_MAX),
        );
        println!();
        println!("where the time goes");
        let bare = self.rtt.median();
        let probes = [
            (
                format!("GetRun of a finished run ({ORCHESTRATOR_CALLS} sequential)"),
                &self.probes.get_run,
            ),
            (
                format!("WatchRun of a finished run, call to first event ({PROBE_CALLS})"),
                &self.probes.first_event,
            ),
            (
                format!("first call on a new connection, ListWorkers ({PROBE_CALLS})"),
                &self.probes.first_call,
            ),
        ];
        for (what, samples) in probes {
            println!(
                "  {what:<62} median {:>7.3} ms  p99 {:>7.3} ms  = {:.1}x the bare round trip",
                ms(samples.median()),
                ms(samples.p99()),
                samples.median().as_secs_f64() / bare.as_secs_f64()
            );
        }
        println!(
            "  per step as the orchestrator records it ((finished_at - created_at) / {NOOP_CHAIN_STEPS}, ms resolution): median {:.3} ms ({}), p99 {:.3} ms",
            ms(self.inside.median()),
            ratio(self.inside.median()),
            ms(self.inside.p99())
        );
        println!();
        println!("notes");
        println!(
            "  throughput: {:.2} s from the first StartRun to the last recorded finish, {} steps; orchestrator {:.2} CPU-s, workers {:.2} CPU-s ({WORKERS} workers, --concurrency {WORKER_CONCURRENCY}, {START_OUTSTANDING_MAX} StartRun outstanding)",
            t.elapsed.as_secs_f64(),
            t.steps,
            t.orchestrator_cpu.as_secs_f64(),
            t.workers_cpu.as_secs_f64()
        );
        println!(
            "  restart: address line after {:.1} ms; {} of {} parked runs listed as running after the restart; restart ratios are to the restart floor, sled open of the same folder in-process = {:.1} ms",
            ms(r.to_address_line),
            r.recovered,
            r.parked,
            ms(r.sled_open)
        );
        println!(
            "  disk: {:.1} KiB per parked run ({} bytes for {} runs, sled folder)",
            r.disk_bytes as f64 / 1024.0 / r.parked as f64,
            r.disk_bytes,
            r.parked
        );
        println!(
            "  latency: {LATENCY_RUNS} sequential runs after {WARMUP_RUNS} warm-up runs, each StartRun -> run.finished on WatchRun, / {NOOP_CHAIN_STEPS}"
        );
    }

    fn row(&self, figure: &str, value: &str, vs_floor: &str, target: &str, met: Option<bool>) {
        let verdict = met.map_or("", verdict);
        println!("{figure:<44} {value:>14} {vs_floor:>9}  {target:<26} {verdict}");
    }
}

/// One figure of a workload, in milliseconds, microseconds or per second.
pub(super) type Figure = fn(&Workload) -> f64;

/// The median of `f` over rounds of a workload.
pub(super) fn median_of(workloads: &[Workload], f: Figure) -> f64 {
    let mut values: Vec<f64> = workloads.iter().map(f).collect();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Each round's `f`, as `1.234, 1.345, ...`.
pub(super) fn each_round(workloads: &[Workload], f: Figure) -> String {
    let each: Vec<String> = workloads.iter().map(|w| format!("{:.3}", f(w))).collect();
    each.join(", ")
}
