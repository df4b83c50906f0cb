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

/// The `source` values `IngestAlert` accepts (`riposte alerts send --source`). The HTTP alert
/// listener serves the JSON ones at `POST /alerts/{source}`.
pub const ALERT_SOURCES: &[&str] = &[
    "azure-monitor",
    "sentinel",
    "defender",
    "cef",
    "syslog",
    "generic",
];
