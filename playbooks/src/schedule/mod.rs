//! Cron schedules that start playbook runs: the pure core.
//!
//! - [`spec`]: a schedule's YAML definition, validated with every problem at once.
//! - `expr`: cron expressions (5 or 6 fields, classic day-of-week numbering).
//! - [`occur`]: occurrences in an IANA time zone as UTC instants, with the daylight-saving
//!   rules (a skipped wall time fires once at the end of the gap, a repeated one once at its
//!   first instant).
//! - `window`: weekly maintenance windows.
//! - [`plan`]: the decision of each occurrence's fate (fired, skipped by overlap, queued,
//!   missed and caught up or not, outside a window, paused) and of the runs to start.
//!
//! No IO, no async, no clock: every instant comes in as an argument, in UTC epoch
//! milliseconds. Persisting the ledger and starting runs belong to the caller.

mod expr;
pub mod occur;
pub mod plan;
pub mod spec;
mod window;
pub(crate) mod yaml;

#[cfg(test)]
mod tests;

pub use expr::{CRON_BYTES_MAX, CronError, CronExpr};
pub use plan::{
    Activity, Entry, Fate, Fire, GRACE_MS, LATEST_SCAN_MAX, MISSED_LISTED_MAX, Plan, fire_key,
    next_due, plan, plan_with_grace, trigger_now,
};
pub use spec::{CatchUp, Overlap, Schedule, parse};
pub use window::{Window, Windows};

/// Every limit of a schedule definition, named with its unit last.
pub mod limits {
    /// Size of a schedule's YAML source.
    pub const SOURCE_BYTES_MAX: usize = 64 * 1024;
    /// Nesting depth of the YAML document.
    pub const YAML_DEPTH_MAX: usize = 16;
    /// Diagnostics returned by one parse; the rest are counted in a last one.
    pub const DIAGNOSTICS_MAX: usize = 100;
    /// Length of a schedule name and of the playbook name it starts.
    pub const NAME_BYTES_MAX: usize = 64;
    /// Size of `params` as JSON text.
    pub const PARAMS_BYTES_MAX: usize = 16 * 1024;
    /// Largest `catch_up_max`: runs one plan may start to catch up.
    pub const CATCH_UP_MAX_BOUND: u32 = 100;
    /// `catch_up_max` when `catch_up: all` does not give one.
    pub const CATCH_UP_MAX_DEFAULT: u32 = 10;
    /// Maintenance windows of one schedule.
    pub const WINDOWS_MAX: usize = 16;
}
