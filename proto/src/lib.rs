//! The Riposte wire API, generated from `proto/riposte.proto`.
//!
//! This crate is a leaf: domain crates convert to and from these types at their edges and never
//! derive prost themselves.

#![allow(clippy::all, missing_docs)]

/// Version 1 of the API (`riposte.v1`).
pub mod v1 {
    tonic::include_proto!("riposte.v1");
}

pub use v1::*;

/// The `source` values `IngestAlert` accepts (`riposte alerts send --source`), spelled as
/// rules see them (`alert.source`). The HTTP alert listener serves the JSON ones at
/// `POST /alerts/{source}`.
pub const ALERT_SOURCES: &[&str] = &[
    "azure_monitor",
    "sentinel",
    "defender",
    "cef",
    "syslog",
    "generic",
];

/// Old spellings of alert sources, still accepted (with a warning) where a source is named:
/// (old, the one spelling).
pub const ALERT_SOURCES_RENAMED: &[(&str, &str)] = &[("azure-monitor", "azure_monitor")];

/// An alert source name in its one spelling, and whether `name` was an old spelling of it;
/// `None` for an unknown source.
pub fn alert_source(name: &str) -> Option<(&'static str, bool)> {
    if let Some(known) = ALERT_SOURCES.iter().find(|s| **s == name) {
        return Some((known, false));
    }
    ALERT_SOURCES_RENAMED
        .iter()
        .find(|(old, _)| *old == name)
        .map(|(_, new)| (*new, true))
}
