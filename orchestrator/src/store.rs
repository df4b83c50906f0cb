//! The store: the only module that touches sled.
//!
//! Layout (one sled tree each):
//! - `playbooks`: `name \0 version(u32 BE)` -> [`StoredPlaybook`] (JSON)
//! - `runs`: run id (16 bytes, time-ordered) -> the run's head (JSON; see [`records`])
//! - `run_records`: run id + tag + step + index -> the run's input, units, step outputs and
//!   undo entries, one record each (JSON; see [`records`])
//! - `active`: run id -> empty, for every run still running (what a restart resumes)
//! - `history`: run id + seq (u64 BE) -> [`HistoryEvent`] (JSON)
//! - `run_keys`: idempotency key -> run id
//! - `run_playbooks`: `playbook \0 run id` -> empty, the runs of each playbook ([`listing`])
//! - `settings`: `containment` -> [`Containment`] (JSON), the kill switch; `format` -> the
//!   store's format version (absent: 1; see [`listing`]); `token_base` -> added to every
//!   fencing token (u64 BE, set by a salvage; see [`check`]); `playbook_default \0 name` ->
//!   the version a start naming none gets (u32 JSON; absent: the latest; see [`playbooks`])
//! - `schedules`: schedule name -> [`StoredSchedule`] (JSON): its source as last applied
//! - `schedule_state`: schedule name -> [`ScheduleState`] (JSON): cursor, pause, queued fire
//! - `schedule_ledger`: `name \0 scheduled_ms (i64, sign-flipped BE) manual (u8)` ->
//!   [`LedgerEntry`] (JSON): one entry per occurrence (or manual trigger), in time order
//! - `alerts`: alert id (UUID v7, 16 bytes, time-ordered) -> [`StoredAlert`] (JSON): every
//!   alert received, normalized (without `raw`, a parse of the payload), and its fate; and
//!   `alert id 'k'` (17 bytes, right after the last alert of the pack) -> the payloads of one
//!   write, packed and compressed ([`payload`]; older stores: `'p'` and `'z'`, one payload
//!   each), which an alert finds by `StoredAlert::payload_id` and `payload_index`
//! - `rules`: rule name -> [`StoredRule`] (JSON): its source as last applied, and whether
//!   it is disabled
//! - `alert_dedup`: `rule \0 dedup key` -> [`DedupEntry`] (JSON): the run alerts with this
//!   key are coalesced into until `expires_ms`
//! - `rule_budget`: rule name -> [`BudgetState`] (JSON): runs started in the current period
//! - `alert_sources`: `c NAME` -> [`PollerState`] (JSON): a poller's cursor and health;
//!   `r NAME \0 ITEM_ID` -> [`Seen`] (JSON): an item it ingested, at which modification time
//!   and revision ([`pollers`])
//! - `audit`: seq (u64 BE) -> [`AuditRecord`] (JSON): the audit log, a chain of MACs whose
//!   head is `settings/audit_head` ([`audit`])
//!
//! An alert payload is one transaction: its alerts with their fates, the runs they started,
//! the dedup entries and the budget counts ([`Store::put_alerts`]); a poller's page adds the
//! records of its items and the poller's cursor to it.
//!
//! A schedule's fire is one transaction: the started runs (with their idempotency keys), the
//! plan's ledger entries and the schedule's new cursor ([`Store::put_runs_scheduled`]).
//!
//! A change a request made and its audit record are one transaction: every write the engine
//! makes appends the entry the door staged ([`Store::audit_next`]).
//!
//! **Durability.** Writes land in sled's page cache; nothing is acknowledged until a flush
//! covers it. Every write returns a [`Seq`]; [`Seq::durable`] waits until a flush that
//! started after that write has finished. One background task runs the flushes back to back,
//! so concurrent writers share one flush (group commit). Under [`Durability::PowerLoss`] (the
//! default) each flush ends with an `fdatasync` ([`disk`]), so an acknowledged write survives
//! the machine's crash, not just the process's. A failed `fdatasync` is not retried (the
//! kernel may have dropped the pages it could not write): the store stops acknowledging, and
//! every waiter is answered with the failure.
//!
//! **Checksums.** Every value but `settings/format` and the empty values of the index trees
//! is sealed with a CRC-32 of its bytes ([`seal`]) and checked on every read: a damaged record
//! is [`Error::Corrupt`] with its tree and key, and the rest of the store keeps serving.
//!
//! **The data dir** is created when missing, private (0700, files 0600; see [`disk`]) and
//! locked while open (`LOCK`, with the holder's pid): a second orchestrator on it is refused
//! with the pid ([`Error::Locked`]).

#![expect(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "this is the store door: the only module that uses sled"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use tokio::sync::{Notify, watch};

use riposte_scheduler::Part;
use riposte_scheduler::state::{HistoryEvent, RunId, RunState};

/// Free space needed before a failed store is opened again (when no reserve is set).
const REOPEN_FREE_MIN: u64 = 1024 * 1024;

/// Prefix of the idempotency key a dry run claims: never a real run's key.
pub const DRY_RUN_CLAIM_PREFIX: &str = "dry-run:";

/// sled's page cache unless told otherwise (sled's own default is 1 GiB).
pub const CACHE_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;

/// How the store is opened.
#[derive(Debug, Clone)]
pub struct Options {
    pub durability: Durability,
    /// New work is refused while the data dir's filesystem has less free than this (0: never).
    pub reserve_bytes: u64,
    /// The audit key's file (`None`: `audit.key` in the data dir); made when missing.
    pub audit_key: Option<PathBuf>,
    /// sled's page cache, in bytes: what bounds the store's memory.
    pub cache_bytes: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            durability: Durability::PowerLoss,
            reserve_bytes: 0,
            audit_key: None,
            cache_bytes: CACHE_BYTES_DEFAULT,
        }
    }
}

/// A playbook version as applied.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredPlaybook {
    pub name: String,
    pub version: u32,
    pub source: String,
    pub applied_at_ms: i64,
}

/// The containment kill switch as last set: paused or not, by whom, when and why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Containment {
    pub paused: bool,
    pub by: String,
    pub at_ms: i64,
    pub reason: String,
}

/// The key of the fencing tokens' base in the `settings` tree (8 bytes, big-endian).
const TOKEN_BASE_KEY: &[u8] = b"token_base";

/// The key of the kill switch in the `settings` tree.
const CONTAINMENT_KEY: &[u8] = b"containment";

/// One run to write: its state, the records of it that changed besides its head (`Part::All`
/// for a new run), and its new history entries.
pub struct RunWrite<'a> {
    pub state: &'a RunState,
    pub parts: Vec<Part>,
    pub history: Vec<&'a HistoryEvent>,
}

/// What `put_runs` should do with an idempotency key.
#[derive(Clone, Copy)]
pub enum RunKey<'a> {
    None,
    /// Claim this key for the run (a new run with a key).
    Claim(&'a str, RunId),
}

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    playbooks: sled::Tree,
    runs: sled::Tree,
    /// A run's records besides its head ([`records`]).
    run_records: sled::Tree,
    active: sled::Tree,
    history: sled::Tree,
    run_keys: sled::Tree,
    /// `playbook \0 run id` -> empty: the runs of each playbook, for listing.
    run_playbooks: sled::Tree,
    settings: sled::Tree,
    schedules: sled::Tree,
    schedule_state: sled::Tree,
    schedule_ledger: sled::Tree,
    alerts: sled::Tree,
    rules: sled::Tree,
    alert_dedup: sled::Tree,
    rule_budget: sled::Tree,
    /// The pollers' cursors and the items they ingested ([`pollers`]).
    alert_sources: sled::Tree,
    audit: sled::Tree,
    /// The audit key, the chain's head and the staged entry ([`audit`]).
    chain: Arc<audit::Chain>,
    commit: Arc<GroupCommit>,
    /// Added to every fencing token (`settings/token_base`, set by a salvage).
    token_base: u64,
    /// Dropped with the last handle: the flusher then flushes what is left and lets go of the
    /// database, so it can be opened again in the same process.
    _open: Arc<Open>,
}

impl Store {
    /// Opens (or creates) the database in `dir`, locked for this process, and starts the
    /// flusher task.
    pub fn open(dir: &Path, options: Options) -> Result<Store, Error> {
        let key_path = options
            .audit_key
            .unwrap_or_else(|| dir.join(AUDIT_KEY_FILE));
        audit::refuse_shared(&key_path)?;
        let lock = disk::DirLock::acquire(dir)?;
        let db = disk::open_db(dir, options.cache_bytes)?;
        let syncer = match options.durability {
            Durability::PowerLoss => {
                Some(disk::Syncer::open(dir).map_err(|source| Error::DataDir {
                    dir: dir.to_path_buf(),
                    source,
                })?)
            }
            Durability::ProcessCrash => None,
        };
        let commit = Arc::new(GroupCommit {
            written: AtomicU64::new(0),
            wake: Notify::new(),
            flushed: watch::channel(Flushed::default()).0,
            flushing: AtomicBool::new(false),
            round_done: Notify::new(),
            closed: AtomicBool::new(false),
            damaged: std::sync::Mutex::default(),
            dir: dir.to_path_buf(),
            reserve_bytes: options.reserve_bytes,
        });
        let settings = db.open_tree("settings")?;
        let token_base = match settings.get(TOKEN_BASE_KEY)? {
            // Sealed from format 3 on; a salvage of an older build wrote it bare.
            Some(v) => seal::open(&v)
                .unwrap_or(&v)
                .try_into()
                .map(u64::from_be_bytes)
                .unwrap_or(0),
            None => 0,
        };
        let audit = db.open_tree("audit")?;
        let chain = Arc::new(audit::Chain::open(key_path, &audit, &settings)?);
        let store = Store {
            playbooks: db.open_tree("playbooks")?,
            runs: db.open_tree("runs")?,
            run_records: db.open_tree("run_records")?,
            active: db.open_tree("active")?,
            history: db.open_tree("history")?,
            run_keys: db.open_tree("run_keys")?,
            run_playbooks: db.open_tree("run_playbooks")?,
            settings,
            schedules: db.open_tree("schedules")?,
            schedule_state: db.open_tree("schedule_state")?,
            schedule_ledger: db.open_tree("schedule_ledger")?,
            alerts: db.open_tree("alerts")?,
            rules: db.open_tree("rules")?,
            alert_dedup: db.open_tree("alert_dedup")?,
            rule_budget: db.open_tree("rule_budget")?,
            alert_sources: db.open_tree("alert_sources")?,
            audit,
            chain,
            token_base,
            db,
            commit: commit.clone(),
            _open: Arc::new(Open(commit)),
        };
        store.migrate(dir)?;
        let flushing = Flushing {
            db: store.db.clone(),
            syncer,
            commit: store.commit.clone(),
            _lock: lock,
        };
        tokio::spawn(flusher(flushing));
        Ok(store)
    }

    fn written(&self) -> Seq {
        let n = self.commit.written.fetch_add(1, Ordering::SeqCst) + 1;
        self.commit.wake.notify_one();
        self.seq(n)
    }

    fn seq(&self, n: u64) -> Seq {
        Seq::new(n, self.commit.clone())
    }

    /// Waits until no flush is under way (at once when none is): see
    /// [`crate::door::alerts::Combiner`].
    pub async fn between_flushes(&self) {
        self.commit.between_flushes().await;
    }

    /// The newest write so far; waiting on it makes everything written until now durable.
    pub fn last_write(&self) -> Seq {
        self.seq(self.commit.written.load(Ordering::SeqCst))
    }

    /// A fencing token: strictly increasing for the life of the data, across crashes and a
    /// salvage into a new data dir (whose tokens start above the old one's: `token_base`).
    pub fn next_token(&self) -> Result<u64, Error> {
        Ok(self.db.generate_id()? + 1 + self.token_base)
    }

    /// The kill switch as last set (not paused when never set).
    pub fn containment(&self) -> Result<Containment, Error> {
        self.settings
            .get(CONTAINMENT_KEY)?
            .map_or(Ok(Containment::default()), |v| {
                decode("settings", CONTAINMENT_KEY, &v)
            })
    }

    /// Sets the kill switch; acknowledge only once the returned `Seq` is durable.
    pub fn put_containment(&self, containment: &Containment) -> Result<Seq, Error> {
        let row = (CONTAINMENT_KEY.to_vec(), json(containment));
        self.put_rows(&self.settings, vec![row])
    }

    /// Writes runs (each one's head and changed records) and their new history entries in one
    /// transaction, keeping the `active` index and the idempotency key in step.
    pub fn put_runs(&self, writes: &[RunWrite<'_>], key: RunKey<'_>) -> Result<Seq, Error> {
        let claims: Vec<(&str, RunId)> = match key {
            RunKey::None => Vec::new(),
            RunKey::Claim(k, id) => vec![(k, id)],
        };
        self.put_runs_scheduled(writes, &claims, None)
    }

    /// [`Store::put_runs`] for several new runs at once (each claiming its key), together with
    /// a schedule's ledger entries and state: a fire and its ledger entry commit or neither.
    pub fn put_runs_scheduled(
        &self,
        writes: &[RunWrite<'_>],
        claims: &[(&str, RunId)],
        schedule: Option<&ScheduleWrite<'_>>,
    ) -> Result<Seq, Error> {
        self.put_all(writes, claims, schedule, None)
    }

    fn put_all(
        &self,
        writes: &[RunWrite<'_>],
        claims: &[(&str, RunId)],
        schedule: Option<&ScheduleWrite<'_>>,
        alerts: Option<&AlertWrite<'_>>,
    ) -> Result<Seq, Error> {
        let encoded: Vec<EncodedRun> = writes
            .iter()
            .map(|write| {
                let run = write.state;
                EncodedRun {
                    id: run.id.to_bytes(),
                    run: records::encode(run, &write.parts),
                    running: !run.status.is_terminal(),
                    index: write
                        .history
                        .iter()
                        .any(|e| e.seq == 1)
                        .then(|| listing::playbook_key(&run.playbook, run.id)),
                    events: write
                        .history
                        .iter()
                        .map(|e| (history_key(run.id, e.seq), json(e)))
                        .collect(),
                }
            })
            .collect();
        let (state, entries) = encode_schedule(schedule);
        let alert_rows = encode_alerts(alerts);
        self.audited(|staged| {
            self.put_encoded(&encoded, claims, &state, &entries, &alert_rows, staged)
        })
    }

    fn put_encoded(
        &self,
        encoded: &[EncodedRun],
        claims: &[(&str, RunId)],
        state: &Option<(Vec<u8>, Vec<u8>)>,
        entries: &Rows,
        alert_rows: &AlertRows,
        staged: Option<&audit::Prepared>,
    ) -> Result<Seq, Error> {
        (
            &self.runs,
            &self.run_records,
            &self.active,
            &self.history,
            &self.run_keys,
            &self.schedule_state,
            &self.schedule_ledger,
            &self.alerts,
            &self.alert_dedup,
            &self.rule_budget,
            &self.run_playbooks,
            &self.audit,
            &self.settings,
            &self.alert_sources,
        )
            .transaction(
                |(
                    runs,
                    records,
                    active,
                    history,
                    keys,
                    sched_state,
                    ledger,
                    al,
                    dd,
                    bu,
                    by_playbook,
                    audit,
                    settings,
                    sources,
                )| {
                    for run in encoded {
                        for (key, value) in &run.run.records {
                            match value {
                                Some(value) => records.insert(key.as_slice(), value.as_slice())?,
                                None => records.remove(key.as_slice())?,
                            };
                        }
                        runs.insert(&run.id, run.run.head.as_slice())?;
                        if let Some(key) = &run.index {
                            by_playbook.insert(key.as_slice(), &[])?;
                        }
                        if run.running {
                            active.insert(&run.id, &[])?;
                        } else {
                            active.remove(&run.id)?;
                        }
                        for (k, v) in &run.events {
                            history.insert(k.as_slice(), v.as_slice())?;
                        }
                    }
                    for (k, id) in claims {
                        keys.insert(k.as_bytes(), seal::seal(&id.to_bytes()))?;
                    }
                    if let Some((name, value)) = state {
                        sched_state.insert(name.as_slice(), value.as_slice())?;
                    }
                    for (k, v) in entries {
                        ledger.insert(k.as_slice(), v.as_slice())?;
                    }
                    for (k, v) in &alert_rows.alerts {
                        al.insert(k.as_slice(), v.as_slice())?;
                    }
                    for (k, v) in &alert_rows.payloads {
                        al.insert(k.as_slice(), v.as_slice())?;
                    }
                    for (k, v) in &alert_rows.sources {
                        sources.insert(k.as_slice(), v.as_slice())?;
                    }
                    for (k, v) in &alert_rows.dedup {
                        dd.insert(k.as_slice(), v.as_slice())?;
                    }
                    for (k, v) in &alert_rows.budgets {
                        bu.insert(k.as_slice(), v.as_slice())?;
                    }
                    if let Some(staged) = staged {
                        staged.insert(audit, settings)?;
                    }
                    Ok::<(), ConflictableTransactionError<()>>(())
                },
            )
            .map_err(audit::aborted)?;
        Ok(self.written())
    }

    /// Stores the alerts of one payload with the runs they started, their dedup entries and
    /// budget counts, in one transaction. Alerts that change nothing else (coalesced, matched
    /// nothing: most of a storm) are one batch on the alerts tree, which is as atomic and
    /// much cheaper.
    pub fn put_alerts(
        &self,
        writes: &[RunWrite<'_>],
        alerts: &AlertWrite<'_>,
    ) -> Result<Seq, Error> {
        if !writes.is_empty()
            || !alerts.dedup.is_empty()
            || !alerts.budgets.is_empty()
            || alerts.poll.is_some()
        {
            return self.put_all(writes, &[], None, Some(alerts));
        }
        let mut rows = encode_alerts(Some(alerts));
        rows.alerts.append(&mut rows.payloads);
        self.put_rows(&self.alerts, rows.alerts)
    }

    /// The run that claimed an idempotency key.
    pub fn run_by_key(&self, key: &str) -> Result<Option<RunId>, Error> {
        let Some(value) = self.run_keys.get(key.as_bytes())? else {
            return Ok(None);
        };
        let id = opened("run_keys", key.as_bytes(), &value)?;
        Ok(RunId::from_bytes(id))
    }

    /// A run's history from `after_seq` (exclusive), in order.
    pub fn history(&self, id: RunId, after_seq: u64) -> Result<Vec<HistoryEvent>, Error> {
        let start = history_key(id, after_seq + 1);
        let end = history_key(id, u64::MAX);
        self.history
            .range(start..=end)
            .map(|kv| {
                let (key, value) = kv?;
                decode("history", &key, &value)
            })
            .collect()
    }
}

fn history_key(id: RunId, seq: u64) -> Vec<u8> {
    let mut key = id.to_bytes().to_vec();
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// A run as [`Store::put_all`] writes it.
struct EncodedRun {
    id: [u8; 16],
    run: records::Encoded,
    running: bool,
    /// `playbook \0 id`, for a run's first write.
    index: Option<Vec<u8>>,
    events: Rows,
}

#[derive(Default)]
struct AlertRows {
    alerts: Rows,
    /// Each payload under its key ([`payload`]).
    payloads: Rows,
    dedup: Rows,
    budgets: Rows,
    /// `alert_sources`: a poller's page.
    sources: Rows,
}

fn encode_alerts(write: Option<&AlertWrite<'_>>) -> AlertRows {
    let Some(write) = write else {
        return AlertRows::default();
    };
    AlertRows {
        payloads: write
            .payloads
            .iter()
            .map(|row| (row.key().to_vec(), row.sealed().to_vec()))
            .collect(),
        sources: write.poll.as_ref().map(pollers::encode).unwrap_or_default(),
        alerts: write
            .alerts
            .iter()
            .map(|a| (a.id.as_bytes().to_vec(), json(a)))
            .collect(),
        dedup: write
            .dedup
            .iter()
            .map(|(rule, key, entry)| (dedup_key(rule, key), json(entry)))
            .collect(),
        budgets: write
            .budgets
            .iter()
            .map(|(rule, state)| (rule.as_bytes().to_vec(), json(state)))
            .collect(),
    }
}

/// A record as stored: its JSON, sealed ([`seal`]).
fn json<T: Serialize>(value: &T) -> Vec<u8> {
    seal::seal_json(value)
}

type EncodedSchedule = (Option<(Vec<u8>, Vec<u8>)>, Vec<(Vec<u8>, Vec<u8>)>);

fn encode_schedule(schedule: Option<&ScheduleWrite<'_>>) -> EncodedSchedule {
    let Some(write) = schedule else {
        return (None, Vec::new());
    };
    let state = json(write.state);
    let entries = write
        .entries
        .iter()
        .map(|e| (ledger_key(write.name, e.scheduled_ms, e.manual), json(e)))
        .collect();
    (Some((write.name.as_bytes().to_vec(), state)), entries)
}

fn decode<T: for<'de> Deserialize<'de>>(
    tree: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, Error> {
    let payload = opened(tree, key, bytes)?;
    serde_json::from_slice(payload).map_err(|source| Error::Corrupt {
        tree,
        key: key_text(key),
        source: source.into(),
    })
}

/// The payload of a stored value, once its checksum matches.
fn opened<'a>(tree: &'static str, key: &[u8], bytes: &'a [u8]) -> Result<&'a [u8], Error> {
    seal::open(bytes).map_err(|source| Error::Corrupt {
        tree,
        key: key_text(key),
        source,
    })
}

/// A record's key as an operator reads it: a run or alert id, a name, else hex.
fn key_text(key: &[u8]) -> String {
    if let Some(id) = RunId::from_bytes(key).filter(|_| key.len() == 16) {
        return id.to_string();
    }
    if let Some(record) = records::describe(key) {
        return record;
    }
    match std::str::from_utf8(key) {
        Ok(text) if !text.chars().any(|c| c.is_control() && c != '\0') => text.replace('\0', "/"),
        _ => key.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

mod alerts;
mod audit;
mod check;
mod commit;
pub mod disk;
mod error;
mod health;
mod listing;
mod payload;
mod playbooks;
mod pollers;
mod records;
mod schedules;
mod seal;
#[cfg(test)]
mod tests;
use alerts::dedup_key;
pub use alerts::{
    AlertFate, AlertPage, AlertWrite, BudgetState, DedupEntry, DedupExpiry, Disabled, StoredAlert,
    StoredRule,
};
pub use audit::{
    AUDIT_KEY_FILE, AuditEntry, AuditFilter, AuditOutcome, AuditPage, AuditRecord, AuditVerdict,
    KeyFault,
};
pub use check::{Checked, Salvaged};
pub use commit::Seq;
use commit::{Flushed, Flushing, GroupCommit, Open, flusher};
pub use disk::Durability;
pub use error::Error;
pub use listing::{RunFilter, RunPage};
pub use payload::{PayloadRow, pack};
pub use pollers::{PollWrite, PollerState, Seen};
use schedules::ledger_key;
pub use schedules::{
    LedgerEntry, LedgerFate, LedgerPage, QueuedFire, ScheduleState, ScheduleWrite, StoredSchedule,
};
