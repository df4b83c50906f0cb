//! The clock: the only module that reads time or mints time-based ids.
//!
//! Wall-clock milliseconds stamp history and decide durable timers (they must survive a
//! restart); the monotonic clock alone decides lease expiry.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use riposte_scheduler::state::RunId;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The monotonic now.
pub fn monotonic() -> Instant {
    Instant::now()
}

/// A new run id: UUID v7, ordered by creation time.
pub fn new_run_id() -> RunId {
    RunId(Uuid::now_v7())
}

/// A new alert id: UUID v7, ordered by receipt time.
pub fn new_alert_id() -> Uuid {
    Uuid::now_v7()
}
