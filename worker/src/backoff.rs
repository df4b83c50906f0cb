//! Exponential backoff with jitter for calls to an orchestrator that is away.
//!
//! Delays start at 100 ms and double up to 5 s; each delay is drawn at random from its upper
//! half, so that workers cut off together do not come back in lockstep.

use std::time::Duration;

/// First delay after a failure.
const DELAY_INITIAL: Duration = Duration::from_millis(100);
/// Longest delay between two attempts.
const DELAY_MAX: Duration = Duration::from_secs(5);

/// The delay schedule of one retrying loop.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    ceiling: Duration,
}

impl Backoff {
    /// A schedule whose first delay is about 100 ms.
    pub(crate) fn new() -> Backoff {
        Backoff {
            ceiling: DELAY_INITIAL,
        }
    }

    /// Starts over after a success.
    pub(crate) fn reset(&mut self) {
        self.ceiling = DELAY_INITIAL;
    }

    /// The delay before the next attempt: between half the current ceiling and the ceiling,
    /// after which the ceiling doubles (up to 5 s).
    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling;
        self.ceiling = (ceiling * 2).min(DELAY_MAX);
        let half = ceiling / 2;
        half + half.mul_f64(random_fraction())
    }
}

/// A uniformly distributed number in [0, 1) from the operating system's random source.
fn random_fraction() -> f64 {
    // The low 53 bits of a version 4 UUID are all random (its fixed bits sit higher up).
    let bits = uuid::Uuid::new_v4().as_u128() as u64 & ((1u64 << 53) - 1);
    bits as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_ceiling_with_jitter() {
        let mut backoff = Backoff::new();
        let ceilings_ms = [100, 200, 400, 800, 1600, 3200, 5000, 5000];
        for ceiling_ms in ceilings_ms {
            let delay = backoff.next_delay();
            let ceiling = Duration::from_millis(ceiling_ms);
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "{delay:?} outside {ceiling:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= DELAY_INITIAL);
    }

    #[test]
    fn random_fraction_is_in_range() {
        for _ in 0..1000 {
            let x = random_fraction();
            assert!((0.0..1.0).contains(&x), "{x}");
        }
    }
}
