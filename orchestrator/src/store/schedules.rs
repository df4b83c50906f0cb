//! Schedules in the store: sources (`schedules`), state (`schedule_state`: cursor, pause, queued
//! fire) and the ledger of every occurrence's fate (`schedule_ledger`).

use super::*;

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

pub(super) fn ledger_prefix(name: &str) -> Vec<u8> {
    let mut key = name.as_bytes().to_vec();
    key.push(0);
    key
}

/// The `scheduled_ms` and `manual` of a ledger key (its last nine bytes).
fn ledger_position(key: &[u8]) -> Option<(i64, bool)> {
    let tail = key.len().checked_sub(9).map(|at| &key[at..])?;
    let ms = u64::from_be_bytes(tail[..8].try_into().ok()?) ^ (1 << 63);
    Some((ms as i64, tail[8] == 1))
}

/// A page of a schedule's ledger, and where the next one starts when there may be more.
#[derive(Debug)]
pub struct LedgerPage {
    pub entries: Vec<LedgerEntry>,
    pub next: Option<(i64, bool)>,
}

/// Ordered by time: the sign bit flipped makes big-endian bytes sort like the signed value.
pub(super) fn ledger_key(name: &str, scheduled_ms: i64, manual: bool) -> Vec<u8> {
    let mut key = ledger_prefix(name);
    key.extend_from_slice(&((scheduled_ms as u64) ^ (1 << 63)).to_be_bytes());
    key.push(u8::from(manual));
    key
}

impl Store {
    /// Stores a schedule's source and state together (an apply).
    pub fn put_schedule(
        &self,
        schedule: &StoredSchedule,
        state: &ScheduleState,
    ) -> Result<Seq, Error> {
        let rows = Some((json(schedule), json(state)));
        self.write_schedule(&schedule.name, rows)
    }

    /// Removes a schedule's source and state together; its ledger stays, readable by name,
    /// bounded as before.
    pub fn delete_schedule(&self, name: &str) -> Result<Seq, Error> {
        self.write_schedule(name, None)
    }

    /// Writes (`Some((source, state))`) or removes a schedule's two rows in one transaction,
    /// with the staged audit record.
    fn write_schedule(&self, name: &str, rows: Option<(Vec<u8>, Vec<u8>)>) -> Result<Seq, Error> {
        let name = name.as_bytes();
        self.audited(|staged| {
            (
                &self.schedules,
                &self.schedule_state,
                &self.audit,
                &self.settings,
            )
                .transaction(|(schedules, states, audit, settings)| {
                    match &rows {
                        Some((source, state)) => {
                            schedules.insert(name, source.as_slice())?;
                            states.insert(name, state.as_slice())?;
                        }
                        None => {
                            schedules.remove(name)?;
                            states.remove(name)?;
                        }
                    }
                    if let Some(staged) = staged {
                        staged.insert(audit, settings)?;
                    }
                    Ok::<(), ConflictableTransactionError<()>>(())
                })
                .map_err(super::audit::aborted)?;
            Ok(self.written())
        })
    }

    /// Stores a schedule's state alone (pause, resume).
    pub fn put_schedule_state(&self, name: &str, state: &ScheduleState) -> Result<Seq, Error> {
        let row = (name.as_bytes().to_vec(), json(state));
        self.put_rows(&self.schedule_state, vec![row])
    }

    /// Every schedule with its state, ordered by name.
    pub fn schedules(&self) -> Result<Vec<(StoredSchedule, ScheduleState)>, Error> {
        let mut out = Vec::new();
        for kv in self.schedules.iter() {
            let (name, value) = kv?;
            let schedule: StoredSchedule = decode("schedules", &name, &value)?;
            let state = match self.schedule_state.get(&name)? {
                Some(v) => decode("schedule_state", &name, &v)?,
                None => ScheduleState::default(),
            };
            out.push((schedule, state));
        }
        Ok(out)
    }

    /// A schedule's ledger, newest first, at most `limit` entries.
    pub fn ledger(&self, name: &str, limit: usize) -> Result<Vec<LedgerEntry>, Error> {
        Ok(self.ledger_page(name, None, limit)?.entries)
    }

    /// Up to `limit` ledger entries of a schedule newest first, strictly before the entry
    /// `before` (its `scheduled_ms` and `manual`), and where the next page starts when there
    /// may be more. A damaged entry is left out (and reported) instead of failing the page.
    pub fn ledger_page(
        &self,
        name: &str,
        before: Option<(i64, bool)>,
        limit: usize,
    ) -> Result<LedgerPage, Error> {
        let start = ledger_prefix(name);
        let end = match before {
            Some((scheduled_ms, manual)) => ledger_key(name, scheduled_ms, manual),
            None => {
                let mut end = ledger_prefix(name);
                end.extend_from_slice(&[0xff; 10]);
                end
            }
        };
        let mut entries = Vec::new();
        let mut last = None;
        for kv in self.schedule_ledger.range(start..end).rev() {
            let (key, value) = kv?;
            if entries.len() == limit {
                return Ok(LedgerPage {
                    entries,
                    next: last,
                });
            }
            last = ledger_position(&key);
            match decode::<LedgerEntry>("schedule_ledger", &key, &value) {
                Ok(entry) => entries.push(entry),
                Err(e) if e.damaged_record().is_some() => self.found_damage(&e),
                Err(e) => return Err(e),
            }
        }
        Ok(LedgerPage {
            entries,
            next: None,
        })
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
}
