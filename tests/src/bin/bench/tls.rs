//! TLS on against TLS off: the per-step and throughput workloads on a plaintext orchestrator
//! with anonymous workers, then on one serving TLS whose workers present client certificates
//! (checked against a worker policy), alternated [`ROUNDS`] times in the same session, since
//! one round's per-step median moves with the disk's fdatasync more than TLS moves it. Target:
//! TLS costs at most 15 % more per step and 15 % fewer steps per second (medians of the
//! rounds). `riposte-bench tls` measures these only.

use super::*;
use riposte_tests::pki::Pki;
use riposte_tls::Role;

/// TLS may cost this much, per step and in steps per second.
const TLS_OVERHEAD_MAX: f64 = 1.15;
/// Off, on, off, on...
const ROUNDS: usize = 3;

/// Lets the bench's worker identity offer everything.
const POLICY: &str = "workers: [{identity: bench, actions: ['*'], labels: {'*': '*'}}]\n";

pub(super) struct Comparison {
    plain: Vec<Workload>,
    secured: Vec<Workload>,
}

/// Both workloads, alternated, plaintext first.
pub(super) async fn measure() -> Result<Comparison> {
    let pki = Pki::new();
    let (mut plain, mut secured) = (Vec::new(), Vec::new());
    for round in 1..=ROUNDS {
        progress(&format!("round {round} of {ROUNDS}, TLS off"));
        plain.push(run_workload(&[], false, None, &[]).await?);
        progress(&format!(
            "round {round} of {ROUNDS}, TLS on (client certificates)"
        ));
        secured.push(run_workload(&[], false, Some(&pki), &[]).await?);
    }
    Ok(Comparison { plain, secured })
}

/// The orchestrator's flags and the workers' for TLS with `pki`.
pub(super) fn flags(pki: &Pki) -> (Vec<String>, Vec<String>) {
    let policy = pki.dir().join("worker-policy.yaml");
    std::fs::write(&policy, POLICY).expect("the policy written");
    let orchestrator = vec!["--worker-policy".into(), policy.display().to_string()];
    let worker = pki.worker_args(&pki.client(Role::Worker, "bench"));
    (orchestrator, worker)
}

impl Comparison {
    pub(super) fn print(&self) {
        let (figure, rounds) = (median_of, each_round);
        let step: Figure = |w| ms(w.latency.median());
        let rate: Figure = |w| w.throughput.steps_per_second();
        let (plain, secured) = (&self.plain, &self.secured);
        let step_ratio = figure(secured, step) / figure(plain, step);
        let rate_ratio = figure(secured, rate) / figure(plain, rate);
        println!();
        println!(
            "TLS on against TLS off ({ROUNDS} alternated rounds, medians; workers present client certificates)"
        );
        println!(
            "  per-step overhead           off {:>7.3} ms   on {:>7.3} ms   x{step_ratio:.2}   target <= x{TLS_OVERHEAD_MAX}   {}",
            figure(plain, step),
            figure(secured, step),
            verdict(step_ratio <= TLS_OVERHEAD_MAX)
        );
        println!(
            "    rounds (ms)               off {}   on {}",
            rounds(plain, step),
            rounds(secured, step)
        );
        println!(
            "  throughput                  off {:>7.0} /s   on {:>7.0} /s   x{rate_ratio:.2}   target >= x{:.2}   {}",
            figure(plain, rate),
            figure(secured, rate),
            1.0 / TLS_OVERHEAD_MAX,
            verdict(rate_ratio >= 1.0 / TLS_OVERHEAD_MAX)
        );
        let others: [(&str, Figure); 3] = [
            ("GetRun, warm connection (ms)   ", |w| {
                ms(w.probes.get_run.median())
            }),
            ("first call, new connection (ms)", |w| {
                ms(w.probes.first_call.median())
            }),
            ("orchestrator CPU per step (us) ", |w| {
                w.throughput.cpu_per_step().as_secs_f64() * 1e6
            }),
        ];
        for (what, f) in others {
            println!(
                "  {what}  off {:>7.3}   on {:>7.3}",
                figure(plain, f),
                figure(secured, f)
            );
        }
    }
}
