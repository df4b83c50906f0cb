//! The gate of tests that change the host: they create accounts, install packages into the
//! host's dpkg, change nftables inside network namespaces and mount a small tmpfs, which needs
//! root. They run only
//! when `RIPOSTE_HOST_TESTS=1`, so that a developer's `cargo test --workspace` leaves the
//! machine as it was; CI sets it, and then a host test that cannot run fails instead of
//! passing unseen.

use std::io::Write;
use std::sync::Once;

/// The environment variable that turns host tests on.
pub const ENABLE: &str = "RIPOSTE_HOST_TESTS";

/// Whether a test that changes the host may run. Each host test starts with
/// `if !host::enabled() { return; }`.
///
/// Off (the variable unset or not `1`): the first call in a test process writes one line to
/// stderr naming what is skipped and how to turn it on. On as a user other than root: panics,
/// since these tests cannot do what they are for.
pub fn enabled() -> bool {
    let on = std::env::var(ENABLE).is_ok_and(|v| v == "1");
    if !on {
        static TOLD: Once = Once::new();
        TOLD.call_once(|| {
            // Written to the stream itself: the test harness captures only the print macros,
            // and this line is for the person running the tests.
            let _ = writeln!(
                std::io::stderr(),
                "skipping the tests that change this host (accounts, dpkg, nftables in network \
                 namespaces, a tmpfs): set {ENABLE}=1, as root, to run them"
            );
        });
        return false;
    }
    assert!(
        is_root(),
        "{ENABLE}=1 but this is not root: the host tests need root (accounts, dpkg, network \
         namespaces, mounts)"
    );
    true
}

/// Whether this process runs as root, read from `/proc/self/status` (no `unsafe`, no libc).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            .is_some_and(|effective| effective == "0")
    })
}
