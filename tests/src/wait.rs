//! Waiting on conditions instead of sleeping: poll every 20 ms until the condition holds, and
//! fail with what was asked and what was last seen when it does not hold in time.

use std::time::Duration;

use tokio::time::Instant;

/// Pause between two checks of a condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `check` until it answers `Ok(value)`, and returns the value. `Err(text)` means "not
/// yet" and describes what was seen; the last one is in the panic message on timeout. A check
/// that itself outlives the deadline counts as "not yet".
pub async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut last = String::from("the check never answered");
    let mut checks = 0u32;
    loop {
        checks += 1;
        match tokio::time::timeout_at(deadline, check()).await {
            Ok(Ok(value)) => return value,
            Ok(Err(seen)) => last = seen,
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {:?} ({checks} checks) waiting until {what}; last seen: {last}",
                started.elapsed()
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Polls `check` until it is true; panics naming `what` after `timeout`.
pub async fn wait_until(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    wait_for(what, timeout, async || {
        if check().await {
            Ok(())
        } else {
            Err("false".into())
        }
    })
    .await
}
