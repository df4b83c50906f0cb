//! Telemetry off, on and with its collector down: the per-step and throughput workloads on an
//! orchestrator and workers exporting nothing, exporting every span (sampling 100 %) and
//! their metrics to a live OTLP receiver, and exporting to a port nothing listens on,
//! alternated [`ROUNDS`] times in the same session. Targets: on costs at most 20 % more
//! orchestrator CPU per step than off; with the collector down, a step takes no longer than
//! with it up (within the noise of a round, 10 %): what a step costs to trace is the on/off
//! figure, what a dead collector adds to it is the down/on one. `riposte-bench telemetry`
//! measures these only.

use super::*;

/// Exporting may cost this much orchestrator CPU per step.
const ON_CPU_MAX: f64 = 1.20;
/// A collector that is down may not make a step slower than with it up, beyond this (the
/// rounds' noise).
const DOWN_STEP_MAX: f64 = 1.10;
/// Off, on, down, off, on, down...
const ROUNDS: usize = 3;

pub(super) struct Comparison {
    off: Vec<Workload>,
    on: Vec<Workload>,
    down: Vec<Workload>,
    /// Spans the receiver got during the rounds with exporting on.
    received: usize,
}

/// The three configurations, alternated.
pub(super) async fn measure() -> Result<Comparison> {
    let (endpoint, received) = receiver();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let down = format!("http://{closed}");
    let (mut off, mut on, mut down_rounds) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        progress(&format!("round {round} of {ROUNDS}, telemetry off"));
        off.push(run_workload(&[], false, None, &[]).await?);
        progress(&format!(
            "round {round} of {ROUNDS}, exporting to a live receiver"
        ));
        let flags = ["--otlp-endpoint", endpoint.as_str()];
        on.push(run_workload(&flags, false, None, &flags).await?);
        progress(&format!(
            "round {round} of {ROUNDS}, exporting to a collector that is down"
        ));
        let flags = ["--otlp-endpoint", down.as_str()];
        down_rounds.push(run_workload(&flags, false, None, &flags).await?);
    }
    let received = received();
    Ok(Comparison {
        off,
        on,
        down: down_rounds,
        received,
    })
}

/// A live OTLP receiver on a runtime of its own (so that it does not share the load
/// generator's thread): its endpoint, and how many spans it has received.
fn receiver() -> (String, impl Fn() -> usize) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for the receiver");
        runtime.block_on(async move {
            let collector = std::sync::Arc::new(riposte_tests::otlp::Collector::start().await);
            let _ = tx.send(collector.clone());
            std::future::pending::<()>().await;
        });
    });
    let collector = rx.recv().expect("the receiver started");
    (collector.endpoint(), move || collector.spans().len())
}

impl Comparison {
    pub(super) fn print(&self) {
        let (figure, rounds) = (median_of, each_round);
        let step: Figure = |w| ms(w.latency.median());
        let rate: Figure = |w| w.throughput.steps_per_second();
        let cpu: Figure = |w| w.throughput.cpu_per_step().as_secs_f64() * 1e6;
        let workers_cpu: Figure = |w| w.throughput.workers_cpu_per_step().as_secs_f64() * 1e6;
        let (off, on, down) = (&self.off, &self.on, &self.down);
        let cpu_ratio = figure(on, cpu) / figure(off, cpu);
        let on_ratio = figure(on, step) / figure(off, step);
        let down_ratio = figure(down, step) / figure(on, step);
        println!();
        println!(
            "Telemetry off, on (every span and metric to a live OTLP receiver) and with the collector down ({ROUNDS} alternated rounds, medians)"
        );
        println!("  {:<32} {:>10} {:>10} {:>10}", "", "off", "on", "down");
        let rows: [(&str, Figure); 4] = [
            ("per-step overhead (ms)", step),
            ("throughput (steps/s)", rate),
            ("orchestrator CPU per step (us)", cpu),
            ("workers' CPU per step (us)", workers_cpu),
        ];
        for (what, f) in rows {
            println!(
                "  {what:<32} {:>10.3} {:>10.3} {:>10.3}",
                figure(off, f),
                figure(on, f),
                figure(down, f)
            );
            println!(
                "    rounds                         off {}   on {}   down {}",
                rounds(off, f),
                rounds(on, f),
                rounds(down, f)
            );
        }
        println!(
            "  on: orchestrator CPU per step x{cpu_ratio:.2}   target <= x{ON_CPU_MAX}   {}",
            verdict(cpu_ratio <= ON_CPU_MAX)
        );
        println!("  on: per-step overhead x{on_ratio:.2} of off");
        println!(
            "  down: per-step overhead x{down_ratio:.2} of on   target <= x{DOWN_STEP_MAX}   {}",
            verdict(down_ratio <= DOWN_STEP_MAX)
        );
        println!("  spans received by the receiver: {}", self.received);
    }
}
