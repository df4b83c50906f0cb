//! Durations measured many times, and how the benchmark reads them: median, p99, slowest.

use std::time::Duration;

/// Durations, sorted.
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn new(mut samples: Vec<Duration>) -> Samples {
        samples.sort();
        Samples(samples)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn median(&self) -> Duration {
        self.0[self.0.len() / 2]
    }

    pub fn p99(&self) -> Duration {
        let index = (self.0.len() * 99).div_ceil(100).saturating_sub(1);
        self.0[index]
    }

    pub fn max(&self) -> Duration {
        self.0[self.0.len() - 1]
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
