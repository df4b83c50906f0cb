//! TLS on against TLS off: the per-step and throughput workloads on a plaintext orchestrator
//! with anonymous workers, then on one serving TLS whose workers present client certificates
//! (checked against a worker policy), in the same session. Target: TLS costs at most 15 % more
//! per step and 15 % fewer steps per second. `riposte-bench tls` measures these only.

use super::*;
use riposte_tests::pki::Pki;
use riposte_tls::Role;

/// TLS may cost this much, per step and in steps per second.
const TLS_OVERHEAD_MAX: f64 = 1.15;

/// Lets the bench's worker identity offer everything.
const POLICY: &str = "workers: [{identity: bench, actions: ['*'], labels: {'*': '*'}}]\n";

pub(super) struct Comparison {
    plain: Workload,
    secured: Workload,
}

/// Both workloads, plaintext first.
pub(super) async fn measure() -> Result<Comparison> {
    progress("TLS off: per-step overhead and throughput");
    let plain = run_workload(&[], false, None).await?;
    progress("TLS on (workers with client certificates): per-step overhead and throughput");
    let pki = Pki::new();
    let secured = run_workload(&[], false, Some(&pki)).await?;
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
        let (plain, secured) = (&self.plain, &self.secured);
        let step = |w: &Workload| w.latency.median();
        let rate = |w: &Workload| w.throughput.steps_per_second();
        let step_ratio = step(secured).as_secs_f64() / step(plain).as_secs_f64();
        let rate_ratio = rate(plain) / rate(secured);
        println!();
        println!("TLS on against TLS off (same session; workers present client certificates)");
        println!(
            "  per-step overhead (median)  off {:>7.3} ms   on {:>7.3} ms   x{step_ratio:.2}   target <= x{TLS_OVERHEAD_MAX}   {}",
            ms(step(plain)),
            ms(step(secured)),
            verdict(step_ratio <= TLS_OVERHEAD_MAX)
        );
        println!(
            "  throughput                  off {:>7.0} /s   on {:>7.0} /s   x{:.2}   target >= x{:.2}   {}",
            rate(plain),
            rate(secured),
            1.0 / rate_ratio,
            1.0 / TLS_OVERHEAD_MAX,
            verdict(rate_ratio <= TLS_OVERHEAD_MAX)
        );
        println!(
            "  orchestrator CPU per step   off {:>7.1} us   on {:>7.1} us",
            plain.throughput.cpu_per_step().as_secs_f64() * 1e6,
            secured.throughput.cpu_per_step().as_secs_f64() * 1e6,
        );
    }
}
