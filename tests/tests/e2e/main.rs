//! The end-to-end tests: the real binaries (orchestrator, workers, CLI) started as processes
//! on port 0 in temporary folders, driven only through the public gRPC and HTTP APIs and the
//! CLI. One test binary, one module per feature, so that the harness and the binaries are
//! built and linked once.
//!
//! Tests that change the host (accounts, dpkg, nftables in network namespaces) run only with
//! `RIPOSTE_HOST_TESTS=1`, as root ([`riposte_tests::host`]).

#![allow(
    clippy::disallowed_methods,
    reason = "tests act as users and operators do: they start processes, read clocks, send HTTP"
)]

mod alert_listener;
mod alerts;
mod audit;
mod authorization;
mod azure_response;
mod bad_input;
mod builtin_playbooks;
mod chaos;
mod crash_recovery;
mod dag;
mod dev_mode;
mod disk_full;
mod dnf_patch;
mod frozen_worker;
mod lifecycle;
mod linux_account;
mod linux_firewall;
mod linux_jit;
mod linux_patch;
mod microsoft_security;
mod oidc;
mod paging;
mod platform_policy;
mod playbook_tests;
mod pollers;
mod response_approvals;
mod response_bad_input;
mod response_concurrency;
mod response_durable_sleep;
mod response_grants;
mod response_safety_rails;
mod response_undo;
mod response_waves;
mod retry;
mod run_repairs;
mod runs_list;
mod schedules;
mod secrets;
mod stale_lease;
mod startup_shutdown;
mod store_format;
mod syslog;
mod telemetry;
mod transport_security;
mod worker_crash;
