//! What both binaries' instruments share: the meter they come from and the buckets of every
//! duration histogram.

use opentelemetry::metrics::{Histogram, Meter};

/// Bucket bounds of duration histograms, in seconds: 1 ms to 1 h.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    3600.0,
];

/// The meter of every Riposte instrument (the global provider's: no-op until [`crate::init`]
/// set one up).
pub fn meter() -> Meter {
    opentelemetry::global::meter("riposte")
}

/// A duration histogram in seconds.
pub fn seconds(meter: &Meter, name: &'static str, description: &'static str) -> Histogram<f64> {
    meter
        .f64_histogram(name)
        .with_unit("s")
        .with_description(description)
        .with_boundaries(SECONDS_BUCKETS.to_vec())
        .build()
}
