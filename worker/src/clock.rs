//! The worker's clock: the only reader of time in the worker.
//!
//! The monotonic clock is tokio's, so it is injected by the runtime: production runs on real
//! time, and a test that pauses tokio's time (`#[tokio::test(start_paused = true)]`, or
//! `tokio::time::pause`) moves every deadline, backoff, token refresh and lease of the worker by
//! advancing it. The wall clock is read only where a third party needs an absolute time (a JIT
//! request's `endTimeUtc`, an nftables element's expiry shown to operators).

use std::time::SystemTime;

use tokio::time::Instant;

/// The monotonic now (tokio's: paused and advanced in tests).
pub fn monotonic() -> Instant {
    #[expect(clippy::disallowed_methods, reason = "this is the clock")]
    Instant::now()
}

/// The wall-clock now, for absolute times sent to others.
pub fn wall() -> SystemTime {
    #[expect(clippy::disallowed_methods, reason = "this is the clock")]
    SystemTime::now()
}
