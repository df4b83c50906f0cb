//! Alert ingestion, the pure core: vendor payloads in, normalized [`Alert`]s out.
//!
//! No IO, no async, no clock: listeners (HTTP, syslog) hand bytes to [`parse`] and get
//! alerts or a specific [`Error`]. Reading is lenient (keys matched case-insensitively where
//! vendors vary, unknown fields ignored, strings and numbers accepted for each other), acting
//! is strict (an IP is an IP entity only if `std` parses it; every size is bounded and an
//! over-limit input is an error, never a panic).
//!
//! What one payload yields:
//! - Azure Monitor (common alert schema): one alert.
//! - Sentinel incident trigger: one alert for the incident (its member alerts stay in
//!   `raw`; the incident is what a playbook acts on and what Sentinel is updated with).
//! - Defender for Cloud: one alert for an alert object, one per element for a list
//!   (`{"value": [...]}` or a bare array), at most [`ALERTS_PER_PAYLOAD_MAX`].
//! - Microsoft Graph security alert (pulled): one alert per object, one per element of a page.
//! - Generic JSON: one alert per object, or per element of the configured array.
//! - CEF: one alert per CEF line. Syslog: one alert per message (CEF in the MSG is detected).
//!
//! TCP byte streams are cut into messages by [`framing::FrameDecoder`] first; a UDP datagram
//! is one message.

pub mod alert;
pub mod azure_monitor;
pub mod cef;
pub mod defender;
pub mod framing;
pub mod generic;
pub mod graph;
pub mod sentinel;
pub mod syslog;

mod json;
mod time;

pub use alert::{Account, Alert, Entities, Host, Ip, Raw, Role, Severity, Source, Status};
pub use generic::{GenericMapping, MappingError};
pub use time::rfc3339_ms;

/// Largest JSON payload accepted, in bytes (Azure Monitor caps common-schema alerts at 256 KB).
pub const PAYLOAD_BYTES_MAX: usize = 256 * 1024;
/// Most alerts one payload may yield (Defender lists, generic arrays).
pub const ALERTS_PER_PAYLOAD_MAX: usize = 100;

/// Why a payload was refused. Messages are lowercase and name the offending part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("payload of {bytes} bytes exceeds {max}")]
    PayloadTooLarge { bytes: usize, max: usize },
    #[error("invalid json at line {line} column {column}: {message}")]
    Json {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("payload is not utf-8 (invalid byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("missing {0}")]
    Missing(&'static str),
    #[error("{field} must be {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    #[error("{field} of {bytes} bytes exceeds {max}")]
    TooLong {
        field: &'static str,
        bytes: usize,
        max: usize,
    },
    #[error("{count} entities exceed {max}")]
    TooManyEntities { count: usize, max: usize },
    #[error("{count} alerts in one payload exceed {max}")]
    TooManyAlerts { count: usize, max: usize },
    #[error("unexpected schemaId {0:?} (want azureMonitorCommonAlertSchema)")]
    Schema(String),
    #[error("invalid cef: {0}")]
    Cef(String),
    #[error("invalid syslog: {0}")]
    Syslog(String),
}

/// Which parser to run on a payload; [`Format::Generic`] carries its field mapping.
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    AzureMonitor,
    Sentinel,
    Defender,
    /// A Microsoft Graph security alert (`alerts_v2`) or a page of them.
    GraphAlert,
    /// A bare CEF line (`CEF:0|...`), e.g. posted over HTTP.
    Cef,
    /// One syslog message (a UDP datagram or one frame from [`framing::FrameDecoder`]).
    Syslog,
    /// Boxed: a mapping is much larger than the other variants.
    Generic(Box<GenericMapping>),
}

/// Parses one payload of `format` into its alerts (see the module docs for how many).
/// Never panics; every refusal is a specific [`Error`].
pub fn parse(format: &Format, bytes: &[u8]) -> Result<Vec<Alert>, Error> {
    match format {
        Format::AzureMonitor => azure_monitor::parse(bytes).map(|a| vec![a]),
        Format::Sentinel => sentinel::parse(bytes).map(|a| vec![a]),
        Format::Defender => defender::parse(bytes),
        Format::GraphAlert => graph::parse(bytes),
        Format::Cef => cef::parse_alert(bytes).map(|a| vec![a]),
        Format::Syslog => syslog::parse_alert(bytes).map(|a| vec![a]),
        Format::Generic(mapping) => generic::parse(mapping, bytes),
    }
}
