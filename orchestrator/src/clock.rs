//! The clock: the only reader of time and minter of time-based ids, injected into the engine
//! as a value. [`Clock::system`] in production; [`Clock::manual`] in tests, where time moves
//! only when the test says so and ids follow from it, so a transcript is the same every run.
//!
//! Wall-clock milliseconds stamp history and decide durable timers (they must survive a
//! restart); the monotonic clock alone decides lease expiry.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use uuid::Uuid;

use riposte_scheduler::state::RunId;

/// Where time comes from. Cheap to clone: clones share one time.
#[derive(Clone, Debug)]
pub struct Clock(Source);

#[derive(Clone, Debug)]
enum Source {
    System,
    Manual(Arc<Manual>),
}

/// A time that moves only by [`Clock::advance`].
#[derive(Debug)]
struct Manual {
    /// The wall clock, Unix epoch milliseconds.
    wall_ms: AtomicI64,
    /// The monotonic clock: `origin` plus this many milliseconds.
    elapsed_ms: AtomicU64,
    origin: Instant,
    /// Ids minted so far: the random part of a manual id.
    ids: AtomicU64,
}

impl Clock {
    /// The system's clocks and random ids.
    pub fn system() -> Clock {
        Clock(Source::System)
    }

    /// A clock that starts at `wall_ms` (Unix epoch milliseconds) and moves only when
    /// [`advance`](Clock::advance)d; its ids are UUID v7 with a counter for the random part.
    pub fn manual(wall_ms: i64) -> Clock {
        #[expect(
            clippy::disallowed_methods,
            reason = "the manual clock's monotonic origin; it never reads time again"
        )]
        let origin = Instant::now();
        Clock(Source::Manual(Arc::new(Manual {
            wall_ms: AtomicI64::new(wall_ms),
            elapsed_ms: AtomicU64::new(0),
            origin,
            ids: AtomicU64::new(0),
        })))
    }

    /// Moves a manual clock's wall and monotonic time forward by `by`.
    ///
    /// # Panics
    /// On the system clock: only a test moves time.
    pub fn advance(&self, by: Duration) {
        let Source::Manual(manual) = &self.0 else {
            panic!("the system clock cannot be advanced");
        };
        let ms = u64::try_from(by.as_millis()).expect("an advance fits u64 milliseconds");
        manual.wall_ms.fetch_add(ms as i64, Ordering::SeqCst);
        manual.elapsed_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// The wall-clock now (certificate validity).
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.now_ms().max(0) as u64)
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match &self.0 {
            Source::System => {
                #[expect(clippy::disallowed_methods, reason = "this is the clock")]
                let now = SystemTime::now();
                now.duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64)
            }
            Source::Manual(manual) => manual.wall_ms.load(Ordering::SeqCst),
        }
    }

    /// The monotonic now.
    pub fn monotonic(&self) -> Instant {
        match &self.0 {
            #[expect(clippy::disallowed_methods, reason = "this is the clock")]
            Source::System => Instant::now(),
            Source::Manual(manual) => {
                manual.origin + Duration::from_millis(manual.elapsed_ms.load(Ordering::SeqCst))
            }
        }
    }

    /// A new run id: UUID v7, ordered by creation time.
    pub fn new_run_id(&self) -> RunId {
        RunId(self.new_id())
    }

    /// A new alert id: UUID v7, ordered by receipt time.
    pub fn new_alert_id(&self) -> Uuid {
        self.new_id()
    }

    fn new_id(&self) -> Uuid {
        match &self.0 {
            #[expect(clippy::disallowed_methods, reason = "this is the clock")]
            Source::System => Uuid::now_v7(),
            Source::Manual(manual) => {
                let n = manual.ids.fetch_add(1, Ordering::SeqCst) + 1;
                let mut counter = [0u8; 10];
                counter[2..].copy_from_slice(&n.to_be_bytes());
                let ms = u64::try_from(self.now_ms()).unwrap_or(0);
                uuid::Builder::from_unix_timestamp_millis(ms, &counter).into_uuid()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced_and_mints_ordered_ids() {
        let clock = Clock::manual(1_000);
        let (wall, mono) = (clock.now_ms(), clock.monotonic());
        let first = clock.new_run_id();
        assert_eq!(clock.now_ms(), wall);
        assert_eq!(clock.monotonic(), mono);
        clock.advance(Duration::from_millis(1_500));
        assert_eq!(clock.now_ms(), 2_500);
        assert_eq!(clock.monotonic() - mono, Duration::from_millis(1_500));
        let second = clock.clone().new_run_id();
        assert!(first.0 < second.0, "{first} < {second}");
        assert_eq!(second.0.get_version_num(), 7);
    }
}
