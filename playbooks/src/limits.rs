//! Every limit of the playbook language, in one place, named with its unit last.
//!
//! Validation refuses a playbook that exceeds one of these, and the renderer refuses a run
//! that would: a hostile or mistaken playbook gets a diagnostic, never an unbounded cost.

/// Size of a playbook's YAML source.
pub const SOURCE_BYTES_MAX: usize = 256 * 1024;
/// Nesting depth of the YAML document (mappings and lists inside each other).
pub const YAML_DEPTH_MAX: usize = 32;
/// Diagnostics returned by one `compile`; the rest are counted in a last one.
pub const DIAGNOSTICS_MAX: usize = 100;
/// Length of a playbook name, a step id, a param name and a label key.
pub const NAME_BYTES_MAX: usize = 64;
/// Steps in one playbook.
pub const STEPS_MAX: usize = 256;
/// Entries in one step's `needs`.
pub const NEEDS_MAX: usize = 64;
/// Declared params of one playbook.
pub const PARAMS_MAX: usize = 64;
/// Values of one `enum` param.
pub const ENUM_VALUES_MAX: usize = 64;
/// Items of one `list` param value.
pub const PARAM_LIST_ITEMS_MAX: usize = 1000;
/// Labels on one step.
pub const LABELS_MAX: usize = 16;
/// Items one `for_each` may expand to.
pub const FOR_EACH_ITEMS_MAX: usize = 100_000;
/// Items of one `for_each` running at the same time.
pub const FOR_EACH_CONCURRENCY_MAX: u32 = 100;
/// Items of one `for_each` running at the same time when `concurrency` is not given.
pub const FOR_EACH_CONCURRENCY_DEFAULT: u32 = 10;
/// Attempts of one task, the first included.
pub const RETRY_ATTEMPTS_MAX: u32 = 20;
/// Delay between two attempts (`retry.initial` and `retry.max`).
pub const RETRY_DELAY_MS_MAX: u64 = 60 * 60 * 1000;
/// Delay before the first retry when `retry.initial` is not given.
pub const RETRY_INITIAL_MS_DEFAULT: u64 = 1000;
/// Longest delay of an exponential backoff when `retry.max` is not given.
pub const RETRY_MAX_MS_DEFAULT: u64 = 60 * 1000;
/// A step's `timeout`.
pub const TIMEOUT_MS_MAX: u64 = 24 * 60 * 60 * 1000;
/// A step's timeout when `timeout` is not given.
pub const TIMEOUT_MS_DEFAULT: u64 = 5 * 60 * 1000;
/// Longest `schedule_to_start` of a step.
pub const SCHEDULE_TO_START_MS_MAX: u64 = 24 * 60 * 60 * 1000;
/// A run's `timeout` (the playbook-level deadline).
pub const RUN_TIMEOUT_MS_MAX: u64 = 30 * 24 * 60 * 60 * 1000;
/// Runs holding the same concurrency key at a time (`concurrency.limit`).
pub const RUN_CONCURRENCY_MAX: u32 = 1000;
/// A `sleep` step's duration.
pub const SLEEP_MS_MAX: u64 = 30 * 24 * 60 * 60 * 1000;
/// A grant's `ttl`.
pub const GRANT_TTL_MS_MAX: u64 = 30 * 24 * 60 * 60 * 1000;
/// An approval's `timeout`.
pub const APPROVAL_TIMEOUT_MS_MAX: u64 = 7 * 24 * 60 * 60 * 1000;
/// Distinct approvals one approval may require (`approval.min`).
pub const APPROVERS_MAX: u32 = 10;
/// Groups in one `approval.approvers`.
pub const APPROVER_GROUPS_MAX: usize = 16;
/// Size of one rendered step input (its JSON text), and of one rendered template.
pub const RENDERED_BYTES_MAX: usize = 64 * 1024;
/// Fuel (about one unit per template instruction or 64 bytes allocated) one evaluation of
/// one template or expression may spend.
pub const RENDER_FUEL_MAX: u64 = 50_000;
/// Recursion depth of template evaluation (macros, nested loops).
pub const RENDER_RECURSION_MAX: usize = 100;
/// Nesting depth of a value passed to or produced by a template.
pub const VALUE_DEPTH_MAX: usize = 64;
