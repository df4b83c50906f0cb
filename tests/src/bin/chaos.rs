//! `riposte-chaos`: the fault suite at full scale (1,000 runs and 50 faults per scenario, or
//! `--small` for CI's scale), printed as a table: for each fault, the runs acknowledged, lost,
//! duplicated, stuck and damaged on purpose, and the time to recover. The exit code is 1 if any
//! run was lost, duplicated or stuck. The disk-full scenario mounts a tmpfs: it runs only with
//! `RIPOSTE_HOST_TESTS=1`, as root.

use std::process::ExitCode;

use riposte_tests::chaos::{self, Outcome, Scale};
use riposte_tests::host;

fn main() -> ExitCode {
    let small = std::env::args().any(|a| a == "--small");
    let scale = if small { Scale::SMALL } else { Scale::FULL };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // Each row is printed as its scenario ends: a full run takes a while.
    println!("{}", Outcome::header());
    let outcomes = runtime.block_on(async {
        eprintln!(
            "riposte-chaos: {} runs and {} faults per scenario",
            scale.runs, scale.faults
        );
        let mut outcomes = Vec::new();
        let mut done = |outcome: Outcome| {
            println!("{}", outcome.row());
            outcomes.push(outcome);
        };
        done(chaos::coordinator_kills(scale).await);
        done(chaos::worker_kills(scale).await);
        done(chaos::frozen_worker(scale).await);
        match host::enabled() {
            true => done(chaos::disk_full(scale).await),
            false => eprintln!(
                "riposte-chaos: disk full skipped: it mounts a filesystem (RIPOSTE_HOST_TESTS=1, as root)"
            ),
        }
        done(chaos::damaged_records(scale).await);
        done(chaos::locked_data_dir(scale).await);
        outcomes
    });
    if outcomes.iter().all(Outcome::clean) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
