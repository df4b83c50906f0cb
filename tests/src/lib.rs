//! The end-to-end harness of Riposte: start the real binaries (orchestrator, workers, CLI) as
//! processes on port 0 in temporary folders, drive them only through the public gRPC API and
//! the CLI, inject faults (`kill -9`, SIGSTOP/SIGCONT, restarts) and wait on conditions.
//!
//! The binaries are built once per test process by [`binaries::binaries`], with the profile of
//! the test itself. Every child is killed when its handle is dropped; when a test fails, the
//! last lines of each child's logs are printed.
//!
//! ```no_run
//! # async fn example() {
//! use riposte_tests::{Orchestrator, Worker, api};
//! let orchestrator = Orchestrator::builder().lease_timeout("1s").start();
//! let _worker = Worker::start(&orchestrator.url(), &[], 2);
//! let mut client = orchestrator.client();
//! api::apply_playbook(&mut client, "name: x\nversion: 1\nsteps:\n  - { id: a, action: core.noop }\n").await;
//! let run = api::start_run(&mut client, "x", serde_json::json!({})).await;
//! api::wait_finished(&mut client, &run.run_id, std::time::Duration::from_secs(10)).await;
//! # }
//! ```

#![allow(
    clippy::disallowed_methods,
    reason = "tests act as users and operators do: they start processes, read clocks, send HTTP"
)]

pub mod access;
pub mod alerts;
pub mod api;
pub mod apt_repo;
pub use riposte_test_support::{azure, host};
pub mod binaries;
pub mod chaos;
pub mod cli;
pub mod disk;
pub mod dnf_repo;
pub mod health;
pub mod netns;
pub mod oidc;
pub mod orchestrator;
pub mod otlp;
pub mod pki;
mod process;
pub mod response;
pub mod wait;
pub mod worker;

pub use cli::{CliOutput, cli};
pub use orchestrator::{Orchestrator, OrchestratorBuilder};
pub use wait::{wait_for, wait_until};
pub use worker::{Worker, WorkerBuilder};
