//! The store: the only module that touches sled.
//!
//! Layout (one sled tree each):
//! - `playbooks`: `name \0 version(u32 BE)` -> [`StoredPlaybook`] (JSON)
//! - `runs`: run id (16 bytes, time-ordered) -> [`RunState`] (JSON)
//! - `active`: run id -> empty, for every run still running (what a restart resumes)
//! - `history`: run id + seq (u64 BE) -> [`HistoryEvent`] (JSON)
//! - `run_keys`: idempotency key -> run id
//! - `settings`: `containment` -> [`Containment`] (JSON), the kill switch
//! - `schedules`: schedule name -> [`StoredSchedule`] (JSON): its source as last applied
//! - `schedule_state`: schedule name -> [`ScheduleState`] (JSON): cursor, pause, queued fire
//! - `schedule_ledger`: `name \0 scheduled_ms (i64, sign-flipped BE) manual (u8)` ->
//!   [`LedgerEntry`] (JSON): one entry per occurrence (or manual trigger), in time order
//! - `alerts`: alert id (UUID v7, 16 bytes, time-ordered) -> [`StoredAlert`] (JSON): every
//!   alert received, normalized (without `raw`, a parse of the payload), and its fate; and
//!   `alert id 'p'` (17 bytes, right after its alert) -> the payload bytes exactly as
//!   received, once per payload, under the id of its first alert (`StoredAlert::payload_id`)
//! - `rules`: rule name -> [`StoredRule`] (JSON): its source as last applied
//! - `alert_dedup`: `rule \0 dedup key` -> [`DedupEntry`] (JSON): the run alerts with this
//!   key are coalesced into until `expires_ms`
//! - `rule_budget`: rule name -> [`BudgetState`] (JSON): runs started in the current period
//!
//! An alert payload is one transaction: its alerts with their fates, the runs they started,
//! the dedup entries and the budget counts ([`Store::put_alerts`]).
//!
//! A schedule's fire is one transaction: the started runs (with their idempotency keys), the
//! plan's ledger entries and the schedule's new cursor ([`Store::put_runs_scheduled`]).
//!
//! **Durability.** Writes land in sled's page cache; nothing is acknowledged until a flush
//! covers it. Every write returns a [`Seq`]; [`Store::durable`] waits until a flush that
//! started after that write has finished. One background task runs the flushes back to back,
//! so concurrent writers share one flush (group commit). sled 0.34 flushes with
//! `sync_file_range`: the data survives a crash of the process, not necessarily of the machine.

#![expect(
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "this is the store door: the only module that uses sled"
)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use tokio::sync::{Notify, watch};

use riposte_scheduler::state::{HistoryEvent, RunId, RunState};

/// Position of a write in the commit order; durable once a flush covers it.
pub type Seq = u64;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    #[error("store: corrupt record in {tree}: {source}")]
    Corrupt {
        tree: &'static str,
        source: serde_json::Error,
    },
    #[error("store: flusher stopped")]
    FlusherStopped,
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

/// A schedule as applied: its YAML source (parsed again when loaded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSchedule {
    pub name: String,
    pub source: String,
    pub applied_at_ms: i64,
}

/// A fire held by `overlap: queue_one` until the schedule's active run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedFire {
    pub scheduled_ms: i64,
    pub manual: bool,
    pub caught_up: bool,
}

/// What changes while a schedule runs: the instant through which its occurrences are decided,
/// whether it is paused (set from the source on apply, then by pause/resume) and its queued fire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleState {
    pub cursor_ms: i64,
    pub paused: bool,
    /// Who paused or resumed last, when and why (empty when only the source decided).
    pub paused_by: String,
    pub paused_at_ms: i64,
    pub paused_reason: String,
    pub queued: Option<QueuedFire>,
}

/// The fate of a ledger entry (the planner's fates, plus a start the engine refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerFate {
    Fired,
    SkippedOverlap,
    /// Held until the active run ends; `run_id` is set once it starts.
    Queued,
    /// Late by more than the grace; `caught_up` when started anyway.
    Missed,
    OutsideWindow,
    Paused,
    /// The run could not start (playbook gone, parameters no longer valid, a limit): `error`.
    StartFailed,
}

/// One ledger entry, keyed by (schedule, `scheduled_ms`, `manual`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub scheduled_ms: i64,
    pub manual: bool,
    pub fate: LedgerFate,
    #[serde(default)]
    pub caught_up: bool,
    /// A summary of missed occurrences: every one from `scheduled_ms` through this instant.
    #[serde(default)]
    pub through_ms: Option<i64>,
    /// The run it started, if any.
    #[serde(default)]
    pub run_id: Option<RunId>,
    #[serde(default)]
    pub error: String,
    /// Who triggered a manual entry.
    #[serde(default)]
    pub by: String,
    pub recorded_ms: i64,
}

/// The schedule part of a fire's transaction.
pub struct ScheduleWrite<'a> {
    pub name: &'a str,
    pub state: &'a ScheduleState,
    pub entries: &'a [LedgerEntry],
}

/// What became of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertFate {
    /// No rule matched it.
    MatchedNothing,
    /// Its rule started `run_id`.
    Started,
    /// Its rule's dedup key was held within the window: coalesced into `run_id`.
    Deduplicated,
    /// Its rule had started its budget of runs this period.
    SuppressedByBudget,
    /// Its rule matched but the run could not start (`detail` says why).
    StartRefused,
}

/// A rule as applied: its YAML source (parsed again when loaded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRule {
    pub name: String,
    pub source: String,
    pub applied_at_ms: i64,
}

/// The run a rule's dedup key points to, until `expires_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupEntry {
    pub run_id: RunId,
    pub expires_ms: i64,
}

/// Runs a rule started in the budget period beginning at `period_start_ms`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetState {
    pub period_start_ms: i64,
    pub runs: u32,
}

/// The alert part of an ingest's transaction.
#[derive(Default)]
pub struct AlertWrite<'a> {
    pub alerts: &'a [StoredAlert],
    /// The payload the alerts came in, under its id (`StoredAlert::payload_id`).
    pub payload: Option<(uuid::Uuid, &'a [u8])>,
    /// (rule, dedup key, entry)
    pub dedup: Vec<(&'a str, &'a str, DedupEntry)>,
    /// (rule, state)
    pub budgets: Vec<(&'a str, BudgetState)>,
}

/// An alert as received: the normalized alert, the payload it came in, when, from which
/// listener, and its fate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredAlert {
    pub id: uuid::Uuid,
    /// The endpoint or source name it arrived on (`azure-monitor`, `generic/<name>`...).
    pub source: String,
    pub received_ms: i64,
    /// Normalized; stored without `raw` (rules saw it; the payload is kept instead).
    pub alert: riposte_ingest::Alert,
    /// The payload as received (lossy UTF-8), at most the core's payload limit: stored once
    /// per payload in `alert_payloads`, filled in by [`Store::alert`] only.
    #[serde(default, skip_serializing)]
    pub payload: String,
    /// The id the payload is stored under (the payload's first alert).
    #[serde(default)]
    pub payload_id: Option<uuid::Uuid>,
    pub fate: AlertFate,
    /// The run it started or was coalesced into.
    #[serde(default)]
    pub run_id: Option<RunId>,
    /// The rule that decided ("" when none matched).
    #[serde(default)]
    pub rule: String,
    /// Why its run could not start, or what it was coalesced with.
    #[serde(default)]
    pub detail: String,
}

/// The key of the kill switch in the `settings` tree.
const CONTAINMENT_KEY: &[u8] = b"containment";

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
    active: sled::Tree,
    history: sled::Tree,
    run_keys: sled::Tree,
    settings: sled::Tree,
    schedules: sled::Tree,
    schedule_state: sled::Tree,
    schedule_ledger: sled::Tree,
    alerts: sled::Tree,
    rules: sled::Tree,
    alert_dedup: sled::Tree,
    rule_budget: sled::Tree,
    commit: Arc<GroupCommit>,
    /// Dropped with the last handle: the flusher then flushes what is left and lets go of the
    /// database, so it can be opened again in the same process.
    _open: Arc<Open>,
}

struct GroupCommit {
    written: AtomicU64,
    wake: Notify,
    flushed: watch::Sender<Seq>,
    /// Every handle is gone.
    closed: AtomicBool,
}

/// Closes the group commit when dropped.
struct Open(Arc<GroupCommit>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::SeqCst);
        self.0.wake.notify_one();
    }
}

impl Store {
    /// Opens (or creates) the database in `dir` and starts the flusher task.
    pub fn open(dir: &Path) -> Result<Store, Error> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        let commit = Arc::new(GroupCommit {
            written: AtomicU64::new(0),
            wake: Notify::new(),
            flushed: watch::channel(0).0,
            closed: AtomicBool::new(false),
        });
        let store = Store {
            playbooks: db.open_tree("playbooks")?,
            runs: db.open_tree("runs")?,
            active: db.open_tree("active")?,
            history: db.open_tree("history")?,
            run_keys: db.open_tree("run_keys")?,
            settings: db.open_tree("settings")?,
            schedules: db.open_tree("schedules")?,
            schedule_state: db.open_tree("schedule_state")?,
            schedule_ledger: db.open_tree("schedule_ledger")?,
            alerts: db.open_tree("alerts")?,
            rules: db.open_tree("rules")?,
            alert_dedup: db.open_tree("alert_dedup")?,
            rule_budget: db.open_tree("rule_budget")?,
            db,
            commit: commit.clone(),
            _open: Arc::new(Open(commit)),
        };
        tokio::spawn(flusher(store.db.clone(), store.commit.clone()));
        Ok(store)
    }

    fn written(&self) -> Seq {
        let seq = self.commit.written.fetch_add(1, Ordering::SeqCst) + 1;
        self.commit.wake.notify_one();
        seq
    }

    /// The newest write so far; waiting on it makes everything written until now durable.
    pub fn last_write(&self) -> Seq {
        self.commit.written.load(Ordering::SeqCst)
    }

    /// Waits until every write up to `seq` is flushed.
    pub async fn durable(&self, seq: Seq) -> Result<(), Error> {
        let mut rx = self.commit.flushed.subscribe();
        self.commit.wake.notify_one();
        rx.wait_for(|flushed| *flushed >= seq)
            .await
            .map_err(|_| Error::FlusherStopped)?;
        Ok(())
    }

    /// A fencing token: strictly increasing for the life of the database, across crashes.
    pub fn next_token(&self) -> Result<u64, Error> {
        Ok(self.db.generate_id()? + 1)
    }

    /// The kill switch as last set (not paused when never set).
    pub fn containment(&self) -> Result<Containment, Error> {
        self.settings
            .get(CONTAINMENT_KEY)?
            .map_or(Ok(Containment::default()), |v| decode("settings", &v))
    }

    /// Sets the kill switch; acknowledge only once the returned `Seq` is durable.
    pub fn put_containment(&self, containment: &Containment) -> Result<Seq, Error> {
        let value = serde_json::to_vec(containment).expect("containment serializes");
        self.settings.insert(CONTAINMENT_KEY, value)?;
        Ok(self.written())
    }

    pub fn put_playbook(&self, playbook: &StoredPlaybook) -> Result<Seq, Error> {
        let value = serde_json::to_vec(playbook).expect("playbook serializes");
        self.playbooks
            .insert(playbook_key(&playbook.name, playbook.version), value)?;
        Ok(self.written())
    }

    /// A given version, or the latest when `version` is 0.
    pub fn playbook(&self, name: &str, version: u32) -> Result<Option<StoredPlaybook>, Error> {
        let raw = if version == 0 {
            let mut prefix = name.as_bytes().to_vec();
            prefix.push(0);
            self.playbooks
                .scan_prefix(prefix)
                .next_back()
                .transpose()?
                .map(|(_, v)| v)
        } else {
            self.playbooks.get(playbook_key(name, version))?
        };
        raw.map(|v| decode("playbooks", &v)).transpose()
    }

    /// Every version of every playbook, ordered by name then version.
    pub fn playbooks(&self) -> Result<Vec<StoredPlaybook>, Error> {
        self.playbooks
            .iter()
            .map(|kv| decode("playbooks", &kv?.1))
            .collect()
    }

    /// Writes runs' states and their new history entries in one transaction, keeping the
    /// `active` index and the idempotency key in step.
    pub fn put_runs(
        &self,
        writes: &[(&RunState, Vec<&HistoryEvent>)],
        key: RunKey<'_>,
    ) -> Result<Seq, Error> {
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
        writes: &[(&RunState, Vec<&HistoryEvent>)],
        claims: &[(&str, RunId)],
        schedule: Option<&ScheduleWrite<'_>>,
    ) -> Result<Seq, Error> {
        self.put_all(writes, claims, schedule, None)
    }

    fn put_all(
        &self,
        writes: &[(&RunState, Vec<&HistoryEvent>)],
        claims: &[(&str, RunId)],
        schedule: Option<&ScheduleWrite<'_>>,
        alerts: Option<&AlertWrite<'_>>,
    ) -> Result<Seq, Error> {
        struct Encoded {
            id: [u8; 16],
            value: Vec<u8>,
            running: bool,
            events: Vec<(Vec<u8>, Vec<u8>)>,
        }
        let encoded: Vec<Encoded> = writes
            .iter()
            .map(|(run, history)| Encoded {
                id: run.id.to_bytes(),
                value: serde_json::to_vec(run).expect("run state serializes"),
                running: !run.status.is_terminal(),
                events: history
                    .iter()
                    .map(|e| {
                        (
                            history_key(run.id, e.seq),
                            serde_json::to_vec(e).expect("event serializes"),
                        )
                    })
                    .collect(),
            })
            .collect();
        let (state, entries) = encode_schedule(schedule);
        let alert_rows = encode_alerts(alerts);
        let result: Result<(), TransactionError<()>> = (
            &self.runs,
            &self.active,
            &self.history,
            &self.run_keys,
            &self.schedule_state,
            &self.schedule_ledger,
            &self.alerts,
            &self.alert_dedup,
            &self.rule_budget,
        )
            .transaction(
                |(runs, active, history, keys, sched_state, ledger, al, dd, bu)| {
                    for run in &encoded {
                        runs.insert(&run.id, run.value.as_slice())?;
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
                        keys.insert(k.as_bytes(), &id.to_bytes())?;
                    }
                    if let Some((name, value)) = &state {
                        sched_state.insert(name.as_slice(), value.as_slice())?;
                    }
                    for (k, v) in &entries {
                        ledger.insert(k.as_slice(), v.as_slice())?;
                    }
                    for (k, v) in &alert_rows.alerts {
                        al.insert(k.as_slice(), v.as_slice())?;
                    }
                    if let Some((id, payload)) = alert_rows.payload {
                        al.insert(payload_key(id).as_slice(), payload)?;
                    }
                    for (k, v) in &alert_rows.dedup {
                        dd.insert(k.as_slice(), v.as_slice())?;
                    }
                    for (k, v) in &alert_rows.budgets {
                        bu.insert(k.as_slice(), v.as_slice())?;
                    }
                    Ok::<(), ConflictableTransactionError<()>>(())
                },
            );
        match result {
            Ok(()) => Ok(self.written()),
            Err(TransactionError::Storage(e)) => Err(Error::Sled(e)),
            Err(TransactionError::Abort(())) => unreachable!("the transaction never aborts"),
        }
    }

    /// Stores a schedule's source and state together (an apply).
    pub fn put_schedule(
        &self,
        schedule: &StoredSchedule,
        state: &ScheduleState,
    ) -> Result<Seq, Error> {
        let source = serde_json::to_vec(schedule).expect("schedule serializes");
        let state = serde_json::to_vec(state).expect("schedule state serializes");
        let name = schedule.name.as_bytes();
        let result: Result<(), TransactionError<()>> = (&self.schedules, &self.schedule_state)
            .transaction(|(schedules, states)| {
                schedules.insert(name, source.as_slice())?;
                states.insert(name, state.as_slice())?;
                Ok::<(), ConflictableTransactionError<()>>(())
            });
        match result {
            Ok(()) => Ok(self.written()),
            Err(TransactionError::Storage(e)) => Err(Error::Sled(e)),
            Err(TransactionError::Abort(())) => unreachable!("the transaction never aborts"),
        }
    }

    /// Stores a schedule's state alone (pause, resume).
    pub fn put_schedule_state(&self, name: &str, state: &ScheduleState) -> Result<Seq, Error> {
        let value = serde_json::to_vec(state).expect("schedule state serializes");
        self.schedule_state.insert(name.as_bytes(), value)?;
        Ok(self.written())
    }

    /// Every schedule with its state, ordered by name.
    pub fn schedules(&self) -> Result<Vec<(StoredSchedule, ScheduleState)>, Error> {
        let mut out = Vec::new();
        for kv in self.schedules.iter() {
            let (name, value) = kv?;
            let schedule: StoredSchedule = decode("schedules", &value)?;
            let state = match self.schedule_state.get(&name)? {
                Some(v) => decode("schedule_state", &v)?,
                None => ScheduleState::default(),
            };
            out.push((schedule, state));
        }
        Ok(out)
    }

    /// A schedule's ledger, newest first, at most `limit` entries.
    pub fn ledger(&self, name: &str, limit: usize) -> Result<Vec<LedgerEntry>, Error> {
        self.schedule_ledger
            .scan_prefix(ledger_prefix(name))
            .rev()
            .take(limit)
            .map(|kv| decode("schedule_ledger", &kv?.1))
            .collect()
    }

    /// How many entries a schedule's ledger holds.
    pub fn ledger_len(&self, name: &str) -> Result<usize, Error> {
        let mut len = 0;
        for key in self.schedule_ledger.scan_prefix(ledger_prefix(name)).keys() {
            key?;
            len += 1;
        }
        Ok(len)
    }

    /// Removes a schedule's oldest ledger entries so that at most `keep` remain; answers how
    /// many were removed.
    pub fn prune_ledger(&self, name: &str, keep: usize) -> Result<usize, Error> {
        let len = self.ledger_len(name)?;
        let excess = len.saturating_sub(keep);
        let mut batch = sled::Batch::default();
        for key in self
            .schedule_ledger
            .scan_prefix(ledger_prefix(name))
            .keys()
            .take(excess)
        {
            batch.remove(key?);
        }
        if excess > 0 {
            self.schedule_ledger.apply_batch(batch)?;
            self.written();
        }
        Ok(excess)
    }

    /// Stores the alerts of one payload with the runs they started, their dedup entries and
    /// budget counts, in one transaction. Alerts that change nothing else (coalesced, matched
    /// nothing: most of a storm) are one batch on the alerts tree, which is as atomic and
    /// much cheaper.
    pub fn put_alerts(
        &self,
        writes: &[(&RunState, Vec<&HistoryEvent>)],
        alerts: &AlertWrite<'_>,
    ) -> Result<Seq, Error> {
        if !writes.is_empty() || !alerts.dedup.is_empty() || !alerts.budgets.is_empty() {
            return self.put_all(writes, &[], None, Some(alerts));
        }
        let rows = encode_alerts(Some(alerts));
        let mut batch = sled::Batch::default();
        for (k, v) in rows.alerts {
            batch.insert(k, v);
        }
        if let Some((id, payload)) = rows.payload {
            batch.insert(payload_key(id).as_slice(), payload);
        }
        self.alerts.apply_batch(batch)?;
        Ok(self.written())
    }

    /// A rule's dedup entry for `key`, expired or not.
    pub fn dedup_entry(&self, rule: &str, key: &str) -> Result<Option<DedupEntry>, Error> {
        self.alert_dedup
            .get(dedup_key(rule, key))?
            .map(|v| decode("alert_dedup", &v))
            .transpose()
    }

    /// A rule's budget count (zero when it never started a run).
    pub fn budget(&self, rule: &str) -> Result<BudgetState, Error> {
        self.rule_budget
            .get(rule.as_bytes())?
            .map_or(Ok(BudgetState::default()), |v| decode("rule_budget", &v))
    }

    /// Removes the dedup entries expired at `now_ms`; answers how many.
    pub fn prune_dedup(&self, now_ms: i64) -> Result<usize, Error> {
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        for kv in self.alert_dedup.iter() {
            let (key, value) = kv?;
            let entry: DedupEntry = decode("alert_dedup", &value)?;
            if entry.expires_ms <= now_ms {
                batch.remove(key);
                removed += 1;
            }
        }
        if removed > 0 {
            self.alert_dedup.apply_batch(batch)?;
            self.written();
        }
        Ok(removed)
    }

    /// Stores (or replaces) a rule's source.
    pub fn put_rule(&self, rule: &StoredRule) -> Result<Seq, Error> {
        let value = serde_json::to_vec(rule).expect("rule serializes");
        self.rules.insert(rule.name.as_bytes(), value)?;
        Ok(self.written())
    }

    /// Every rule, ordered by name.
    pub fn rules(&self) -> Result<Vec<StoredRule>, Error> {
        self.rules
            .iter()
            .map(|kv| decode("rules", &kv?.1))
            .collect()
    }

    /// One alert by id, with its payload.
    pub fn alert(&self, id: uuid::Uuid) -> Result<Option<StoredAlert>, Error> {
        let Some(value) = self.alerts.get(id.as_bytes())? else {
            return Ok(None);
        };
        let mut alert: StoredAlert = decode("alerts", &value)?;
        if let Some(payload_id) = alert.payload_id
            && let Some(payload) = self.alerts.get(payload_key(payload_id))?
        {
            alert.payload = String::from_utf8_lossy(&payload).into_owned();
        }
        Ok(Some(alert))
    }

    /// Alerts newest first, at most `limit`.
    pub fn alerts(&self, limit: usize) -> Result<Vec<StoredAlert>, Error> {
        self.alerts
            .iter()
            .rev()
            .filter(|kv| {
                kv.as_ref()
                    .map_or(true, |(k, _)| k.len() == ALERT_KEY_BYTES)
            })
            .take(limit)
            .map(|kv| decode("alerts", &kv?.1))
            .collect()
    }

    /// How many alerts are stored (counts them all).
    pub fn alerts_len(&self) -> Result<usize, Error> {
        let mut len = 0;
        for key in self.alerts.iter().keys() {
            if key?.len() == ALERT_KEY_BYTES {
                len += 1;
            }
        }
        Ok(len)
    }

    /// Removes the `count` oldest alerts and their payloads; answers how many were removed.
    pub fn prune_alerts(&self, count: usize) -> Result<usize, Error> {
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        for key in self.alerts.iter().keys() {
            let key = key?;
            if key.len() == ALERT_KEY_BYTES {
                if removed == count {
                    break;
                }
                removed += 1;
            }
            batch.remove(key);
        }
        if removed > 0 {
            self.alerts.apply_batch(batch)?;
            self.written();
        }
        Ok(removed)
    }

    pub fn run(&self, id: RunId) -> Result<Option<RunState>, Error> {
        self.runs
            .get(id.to_bytes())?
            .map(|v| decode("runs", &v))
            .transpose()
    }

    /// The run that claimed an idempotency key.
    pub fn run_by_key(&self, key: &str) -> Result<Option<RunId>, Error> {
        Ok(self
            .run_keys
            .get(key.as_bytes())?
            .and_then(|v| RunId::from_bytes(&v)))
    }

    /// Runs newest first.
    pub fn runs_newest_first(&self) -> impl Iterator<Item = Result<RunState, Error>> + '_ {
        self.runs.iter().rev().map(|kv| decode("runs", &kv?.1))
    }

    /// Every run still running (to resume after a restart).
    pub fn active_runs(&self) -> Result<Vec<RunState>, Error> {
        let mut runs = Vec::new();
        for key in self.active.iter().keys() {
            if let Some(value) = self.runs.get(key?)? {
                runs.push(decode("runs", &value)?);
            }
        }
        Ok(runs)
    }

    /// A run's history from `after_seq` (exclusive), in order.
    pub fn history(&self, id: RunId, after_seq: u64) -> Result<Vec<HistoryEvent>, Error> {
        let start = history_key(id, after_seq + 1);
        let end = history_key(id, u64::MAX);
        self.history
            .range(start..=end)
            .map(|kv| decode("history", &kv?.1))
            .collect()
    }
}

async fn flusher(db: sled::Db, commit: Arc<GroupCommit>) {
    let mut flushed: Seq = 0;
    loop {
        let target = commit.written.load(Ordering::SeqCst);
        if target <= flushed {
            if commit.closed.load(Ordering::SeqCst) {
                return;
            }
            commit.wake.notified().await;
            continue;
        }
        let db = db.clone();
        match tokio::task::spawn_blocking(move || db.flush()).await {
            Ok(Ok(_)) => {
                flushed = target;
                commit.flushed.send_replace(flushed);
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "store.flush_failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(_) => return,
        }
    }
}

fn playbook_key(name: &str, version: u32) -> Vec<u8> {
    let mut key = name.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

fn history_key(id: RunId, seq: u64) -> Vec<u8> {
    let mut key = id.to_bytes().to_vec();
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn ledger_prefix(name: &str) -> Vec<u8> {
    let mut key = name.as_bytes().to_vec();
    key.push(0);
    key
}

/// Ordered by time: the sign bit flipped makes big-endian bytes sort like the signed value.
fn ledger_key(name: &str, scheduled_ms: i64, manual: bool) -> Vec<u8> {
    let mut key = ledger_prefix(name);
    key.extend_from_slice(&((scheduled_ms as u64) ^ (1 << 63)).to_be_bytes());
    key.push(u8::from(manual));
    key
}

fn dedup_key(rule: &str, key: &str) -> Vec<u8> {
    let mut k = rule.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// An alert's key: its id.
const ALERT_KEY_BYTES: usize = 16;

/// Where a payload is stored: its first alert's id and `p`, right after that alert.
fn payload_key(id: uuid::Uuid) -> [u8; ALERT_KEY_BYTES + 1] {
    let mut key = [b'p'; ALERT_KEY_BYTES + 1];
    key[..ALERT_KEY_BYTES].copy_from_slice(id.as_bytes());
    key
}

#[derive(Default)]
struct AlertRows<'a> {
    alerts: Rows,
    payload: Option<(uuid::Uuid, &'a [u8])>,
    dedup: Rows,
    budgets: Rows,
}

fn encode_alerts<'a>(write: Option<&AlertWrite<'a>>) -> AlertRows<'a> {
    let Some(write) = write else {
        return AlertRows::default();
    };
    AlertRows {
        payload: write.payload,
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

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("a stored record serializes")
}

type EncodedSchedule = (Option<(Vec<u8>, Vec<u8>)>, Vec<(Vec<u8>, Vec<u8>)>);

fn encode_schedule(schedule: Option<&ScheduleWrite<'_>>) -> EncodedSchedule {
    let Some(write) = schedule else {
        return (None, Vec::new());
    };
    let state = serde_json::to_vec(write.state).expect("schedule state serializes");
    let entries = write
        .entries
        .iter()
        .map(|e| {
            (
                ledger_key(write.name, e.scheduled_ms, e.manual),
                serde_json::to_vec(e).expect("ledger entry serializes"),
            )
        })
        .collect();
    (Some((write.name.as_bytes().to_vec(), state)), entries)
}

fn decode<T: for<'de> Deserialize<'de>>(tree: &'static str, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|source| Error::Corrupt { tree, source })
}

#[cfg(test)]
mod tests;
