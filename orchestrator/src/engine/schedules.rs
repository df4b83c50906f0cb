//! Cron schedules in the engine: each schedule has one entry in the engine's timer index at
//! its next occurrence; when it is due, the pure planner ([`schedule::plan_with_grace`])
//! decides every occurrence from the stored cursor to now, and the fires start their runs
//! through the ordinary start path. The runs, their idempotency keys, the ledger entries and
//! the new cursor are written in one store transaction, so a fire and its ledger entry exist
//! together or not at all.
//!
//! What the planner needs to know about a schedule's runs ([`Activity`]) comes from the
//! active runs it started (their idempotency key is `schedule:<name>:...`); a queued fire
//! (`overlap: queue_one`) is part of the stored state and starts when the last of them ends.

use std::collections::{BTreeMap, HashMap};

use riposte_playbooks::Diagnostic;

use super::{Error, Prepared, Runs, StartRequest, Timer, check_len, limits};
use crate::clock::Clock;
use crate::pending::Pending;
use crate::store::{
    LedgerEntry, LedgerFate, LedgerPage, QueuedFire, ScheduleState, ScheduleWrite, Seq, Store,
    StoredSchedule,
};
use riposte_playbooks::schedule::{self, Activity, Fate, Fire, Plan, Schedule};
use riposte_scheduler::state::RunId;

/// Wait before planning a schedule again after its fire could not be stored.
const RETRY_AFTER_STORE_ERROR_MS: i64 = 1_000;

/// A schedule as the engine holds it.
struct Loaded {
    schedule: Schedule,
    stored: StoredSchedule,
    state: ScheduleState,
}

/// The cron schedules: definitions, their state and the runs they started (everything here is
/// rebuilt from the store on open).
pub struct Schedules {
    store: Store,
    clock: Clock,
    defs: BTreeMap<String, Loaded>,
    /// Active runs started by a schedule -> its name.
    started: HashMap<RunId, String>,
    /// The instant each schedule's timer is armed at (one per schedule in the index).
    armed: HashMap<String, i64>,
    /// Ledger entries held per schedule (counted once, then kept in step).
    ledger_len: HashMap<String, usize>,
}

/// What applying a schedule's source did.
pub enum ApplyOutcome {
    /// The source is invalid: every problem, nothing changed.
    Invalid(Vec<Diagnostic>),
    /// The schedule as applied, and whether it was already stored as it is.
    Applied(Pending<(Box<ScheduleView>, bool)>),
}

/// A schedule for `schedules list`.
pub struct ScheduleView {
    pub schedule: Schedule,
    pub stored: StoredSchedule,
    pub state: ScheduleState,
    pub next_fire_ms: Option<i64>,
    pub last: Option<LedgerEntry>,
}

impl Schedules {
    /// Loads every stored schedule, finds the active runs they started, and arms each
    /// schedule at once: the first tick plans the time the orchestrator was down (catch-up).
    pub(super) fn open(runs: &mut Runs) -> Result<Schedules, Error> {
        let mut schedules = Schedules {
            store: runs.store.clone(),
            clock: runs.clock.clone(),
            defs: BTreeMap::new(),
            started: HashMap::new(),
            armed: HashMap::new(),
            ledger_len: HashMap::new(),
        };
        for (stored, state) in runs.store.schedules()? {
            match schedule::parse(&stored.source) {
                Ok(schedule) => {
                    let name = stored.name.clone();
                    let loaded = Loaded {
                        schedule,
                        stored,
                        state,
                    };
                    schedules.defs.insert(name, loaded);
                }
                Err(d) => tracing::error!(
                    schedule = %stored.name,
                    error = %d.first().map(|d| d.to_string()).unwrap_or_default(),
                    "schedule.unloadable"
                ),
            }
        }
        let started: Vec<(RunId, String)> = runs
            .scheduler
            .runs()
            .filter_map(|(run, _)| {
                schedule_of_key(&run.idempotency_key).map(|name| (run.id, name.to_string()))
            })
            .collect();
        schedules.started.extend(started);
        let now = runs.clock.now_ms();
        let names: Vec<String> = schedules.defs.keys().cloned().collect();
        for name in names {
            schedules.arm(runs, &name, now);
        }
        Ok(schedules)
    }

    /// Stores (or replaces) a schedule from its YAML source.
    pub fn apply(&mut self, runs: &mut Runs, source: &str) -> Result<ApplyOutcome, Error> {
        let schedule = match schedule::parse(source) {
            Ok(schedule) => schedule,
            Err(diagnostics) => return Ok(ApplyOutcome::Invalid(diagnostics)),
        };
        check_startable(runs, &schedule)?;
        let name = schedule.name.clone();
        if let Some(existing) = self.defs.get(&name)
            && existing.stored.source == source
        {
            let view = self.view(&name)?;
            return Ok(ApplyOutcome::Applied(Pending::unchanged(
                &self.store,
                (Box::new(view), true),
            )));
        }
        if !self.defs.contains_key(&name) && self.defs.len() >= limits::SCHEDULES_MAX {
            return Err(Error::ResourceExhausted(format!(
                "{} schedules exist, the most allowed",
                limits::SCHEDULES_MAX
            )));
        }
        let now = self.clock.now_ms();
        let state = applied_state(self.defs.get(&name).map(|l| &l.state), schedule.paused, now);
        let stored = StoredSchedule {
            name: name.clone(),
            source: source.to_string(),
            applied_at_ms: now,
        };
        let seq = self.store.put_schedule(&stored, &state)?;
        let loaded = Loaded {
            schedule,
            stored,
            state,
        };
        self.defs.insert(name.clone(), loaded);
        self.rearm(runs, &name);
        tracing::info!(schedule = %name, "schedule.applied");
        let view = Box::new(self.view(&name)?);
        Ok(ApplyOutcome::Applied(Pending::new((view, false), seq)))
    }

    /// Every schedule, ordered by name.
    pub fn list(&self) -> Result<Vec<ScheduleView>, Error> {
        let names: Vec<&String> = self.defs.keys().collect();
        names.into_iter().map(|name| self.view(name)).collect()
    }

    /// One schedule as listed.
    pub fn view(&self, name: &str) -> Result<ScheduleView, Error> {
        let loaded = self.loaded(name)?;
        let next_fire_ms = self
            .armed
            .get(name)
            .copied()
            .or_else(|| schedule::next_due(&loaded.schedule, loaded.state.cursor_ms));
        Ok(ScheduleView {
            schedule: loaded.schedule.clone(),
            stored: loaded.stored.clone(),
            state: loaded.state.clone(),
            next_fire_ms,
            last: self.store.ledger(name, 1)?.into_iter().next(),
        })
    }

    /// A page of a schedule's ledger, newest first, strictly before `before`.
    pub fn history(
        &self,
        name: &str,
        before: Option<(i64, bool)>,
        limit: usize,
    ) -> Result<LedgerPage, Error> {
        if !self.defs.contains_key(name) && self.store.ledger_len(name)? == 0 {
            self.loaded(name)?;
        }
        let limit = match limit {
            0 => limits::HISTORY_DEFAULT,
            n => n.min(limits::LIST_MAX),
        };
        Ok(self.store.ledger_page(name, before, limit)?)
    }

    /// Fires one run now (manual), through the overlap policy.
    pub fn trigger(
        &mut self,
        runs: &mut Runs,
        name: &str,
        who: &str,
    ) -> Result<Pending<LedgerEntry>, Error> {
        check_len("who", who)?;
        let now = self.clock.now_ms();
        let loaded = self.loaded(name)?;
        let (schedule, mut state) = (loaded.schedule.clone(), loaded.state.clone());
        let activity = self.activity(name, &state);
        let plan = schedule::trigger_now(&schedule, now, state.cursor_ms, activity);
        if let Some(queued) = plan.queued {
            state.queued = Some(queued_fire(queued));
        }
        let entries = ledger_entries(&plan, now, who);
        let starts = plan.starts.clone();
        let (entries, seq) = self.apply_fires(runs, name, &schedule, state, entries, &starts)?;
        let entry = entries
            .into_iter()
            .find(|e| e.manual && e.scheduled_ms == now)
            .expect("a trigger records its manual entry");
        Ok(Pending::new(entry, seq))
    }

    /// Pauses (`paused`) or resumes a schedule; doing it twice changes nothing.
    pub fn pause(
        &mut self,
        name: &str,
        paused: bool,
        who: String,
        reason: String,
    ) -> Result<Pending<ScheduleView>, Error> {
        check_len("reason", &reason)?;
        let loaded = self.loaded(name)?;
        if loaded.state.paused == paused {
            let view = self.view(name)?;
            return Ok(Pending::unchanged(&self.store, view));
        }
        let mut state = loaded.state.clone();
        state.paused = paused;
        state.paused_by = who;
        state.paused_at_ms = self.clock.now_ms();
        state.paused_reason = reason;
        let seq = self.store.put_schedule_state(name, &state)?;
        if let Some(loaded) = self.defs.get_mut(name) {
            loaded.state = state;
        }
        tracing::info!(schedule = %name, paused, "schedule.paused_changed");
        Ok(Pending::new(self.view(name)?, seq))
    }

    /// Deletes a schedule: it fires no more; runs it started go on, and its ledger stays
    /// readable (`history`) within the same bound as before.
    pub fn delete(&mut self, runs: &mut Runs, name: &str) -> Result<Pending<String>, Error> {
        self.loaded(name)?;
        let seq = self.store.delete_schedule(name)?;
        self.defs.remove(name);
        self.disarm(runs, name);
        tracing::info!(schedule = %name, "schedule.deleted");
        Ok(Pending::new(name.to_string(), seq))
    }

    /// A schedule that starts `playbook` at `version`, naming it or (`default`) following the
    /// default version.
    pub(super) fn using(&self, playbook: &str, version: u32, default: u32) -> Option<&str> {
        self.defs
            .iter()
            .find(|(_, d)| {
                d.schedule.playbook == playbook && d.schedule.version.unwrap_or(default) == version
            })
            .map(|(name, _)| name.as_str())
    }

    /// A schedule's timer is due: plan from the cursor to now, apply, re-arm.
    pub(super) fn due(&mut self, runs: &mut Runs, name: &str, due_ms: i64) {
        if self.armed.get(name) != Some(&due_ms) {
            return; // superseded by a later arm of the same schedule
        }
        self.armed.remove(name);
        match self.plan(runs, name, self.clock.now_ms()) {
            Ok(_) => self.rearm(runs, name),
            Err(e) => {
                tracing::error!(schedule = %name, error = %e, "schedule.fire_failed");
                self.arm(runs, name, self.clock.now_ms() + RETRY_AFTER_STORE_ERROR_MS);
            }
        }
    }

    /// A run ended: if its schedule holds a queued fire and nothing else of it runs, plan it
    /// now (the plan starts the queued fire first).
    pub(super) fn run_ended(&mut self, runs: &mut Runs, run: RunId) {
        let Some(name) = self.started.remove(&run) else {
            return;
        };
        let queued = self
            .defs
            .get(&name)
            .is_some_and(|l| l.state.queued.is_some());
        if queued && !self.running(&name) {
            self.arm(runs, &name, self.clock.now_ms());
        }
    }

    /// Starts a held fire if its turn came, then decides every occurrence up to `now`.
    fn plan(&mut self, runs: &mut Runs, name: &str, now: i64) -> Result<Seq, Error> {
        let loaded = self.loaded(name)?;
        let (schedule, mut state) = (loaded.schedule.clone(), loaded.state.clone());
        let mut starts = Vec::new();
        let mut entries = Vec::new();
        if let Some(queued) = state.queued.filter(|_| !self.running(name)) {
            state.queued = None;
            let fire = Fire {
                scheduled_ms: queued.scheduled_ms,
                manual: queued.manual,
                caught_up: queued.caught_up,
            };
            starts.push(fire);
            entries.push(queued_entry(&fire, now));
        }
        let mut activity = self.activity(name, &state);
        activity.running |= !starts.is_empty();
        let effective = with_paused(&schedule, state.paused);
        let grace_ms = runs.settings.schedule_grace.as_millis() as i64;
        let plan = schedule::plan_with_grace(&effective, state.cursor_ms, now, activity, grace_ms);
        if let Some(queued) = plan.queued {
            state.queued = Some(queued_fire(queued));
        }
        state.cursor_ms = plan.cursor_ms;
        entries.extend(ledger_entries(&plan, now, ""));
        starts.extend(plan.starts.iter().copied());
        if entries.is_empty() && starts.is_empty() && state == self.loaded(name)?.state {
            return Ok(self.store.last_write());
        }
        let (_, seq) = self.apply_fires(runs, name, &schedule, state, entries, &starts)?;
        Ok(seq)
    }

    /// Starts the fires and writes them with the ledger entries and the state in one
    /// transaction. A start the engine refuses is recorded as `start_failed`.
    fn apply_fires(
        &mut self,
        runs: &mut Runs,
        name: &str,
        schedule: &Schedule,
        state: ScheduleState,
        mut entries: Vec<LedgerEntry>,
        starts: &[Fire],
    ) -> Result<(Vec<LedgerEntry>, Seq), Error> {
        let mut transitions = Vec::new();
        let mut claims: Vec<(String, RunId)> = Vec::new();
        for fire in starts {
            let at = entries
                .iter()
                .position(|e| e.scheduled_ms == fire.scheduled_ms && e.manual == fire.manual)
                .expect("every fire has its ledger entry");
            match runs.prepare_start(start_request(name, schedule, fire)) {
                Ok(Prepared::New {
                    id,
                    claim,
                    transition,
                }) => {
                    entries[at].run_id = Some(id);
                    transitions.push(transition);
                    claims.extend(claim.map(|c| (c, id)));
                    self.started.insert(id, name.to_string());
                }
                Ok(Prepared::Existing(run)) => entries[at].run_id = Some(run.id),
                Err(Error::Store(e)) => return Err(Error::Store(e)),
                Err(e) => {
                    tracing::warn!(schedule = %name, error = %e, "schedule.start_failed");
                    entries[at].fate = LedgerFate::StartFailed;
                    entries[at].error = e.to_string();
                }
            }
        }
        let claim_refs: Vec<(&str, RunId)> =
            claims.iter().map(|(k, id)| (k.as_str(), *id)).collect();
        let write = ScheduleWrite {
            name,
            state: &state,
            entries: &entries,
        };
        let seq = runs.commit_with(transitions, |store, writes| {
            store.put_runs_scheduled(writes, &claim_refs, Some(&write))
        })?;
        runs.observer.schedule_fires(name, &entries);
        if let Some(loaded) = self.defs.get_mut(name) {
            loaded.state = state;
        }
        self.keep_ledger_bounded(name, entries.len())?;
        Ok((entries, seq))
    }

    /// Drops the oldest ledger entries beyond [`limits::LEDGER_ENTRIES_KEPT`].
    fn keep_ledger_bounded(&mut self, name: &str, added: usize) -> Result<(), Error> {
        let len = match self.ledger_len.get(name) {
            Some(len) => len + added,
            None => self.store.ledger_len(name)?,
        };
        let removed = if len > limits::LEDGER_ENTRIES_KEPT {
            self.store.prune_ledger(name, limits::LEDGER_ENTRIES_KEPT)?
        } else {
            0
        };
        self.ledger_len
            .insert(name.to_string(), len - removed.min(len));
        Ok(())
    }

    fn loaded(&self, name: &str) -> Result<&Loaded, Error> {
        self.defs
            .get(name)
            .ok_or_else(|| Error::NotFound(format!("schedule `{name}` not found")))
    }

    fn running(&self, name: &str) -> bool {
        self.started.values().any(|n| n == name)
    }

    fn activity(&self, name: &str, state: &ScheduleState) -> Activity {
        Activity {
            running: self.running(name),
            queued: state.queued.is_some(),
        }
    }

    /// Arms the schedule at its next occurrence after the cursor.
    fn rearm(&mut self, runs: &mut Runs, name: &str) {
        let Some(loaded) = self.defs.get(name) else {
            return;
        };
        match schedule::next_due(&loaded.schedule, loaded.state.cursor_ms) {
            Some(at) => self.arm(runs, name, at),
            None => self.disarm(runs, name),
        }
    }

    /// Keeps exactly one timer per schedule in the index.
    fn arm(&mut self, runs: &mut Runs, name: &str, at_ms: i64) {
        self.disarm(runs, name);
        self.armed.insert(name.to_string(), at_ms);
        runs.arm(at_ms, Timer::Schedule(name.to_string()));
    }

    fn disarm(&mut self, runs: &mut Runs, name: &str) {
        if let Some(old) = self.armed.remove(name) {
            runs.disarm(old, Timer::Schedule(name.to_string()));
        }
    }
}

/// A schedule is refused when its playbook is missing or refuses its parameters.
fn check_startable(runs: &mut Runs, schedule: &Schedule) -> Result<(), Error> {
    let playbook = runs
        .playbook(&schedule.playbook, schedule.version.unwrap_or(0))
        .map_err(|e| match e {
            Error::NotFound(m) => Error::FailedPrecondition(format!("{m}; apply it first")),
            e => e,
        })?;
    playbook
        .coerce_params(&schedule.params)
        .map_err(|problems| {
            Error::FailedPrecondition(format!(
                "schedule {}: invalid parameters for {}@{}: {}",
                schedule.name,
                playbook.name,
                playbook.version,
                problems.join("; ")
            ))
        })
        .map(|_| ())
}

/// The state after an apply: a new schedule decides from now on; a replaced one keeps its
/// cursor and queued fire; both take `paused` from the source.
fn applied_state(previous: Option<&ScheduleState>, paused: bool, now_ms: i64) -> ScheduleState {
    let mut state = previous.cloned().unwrap_or(ScheduleState {
        cursor_ms: now_ms,
        ..ScheduleState::default()
    });
    if previous.is_none_or(|p| p.paused != paused) {
        state.paused = paused;
        state.paused_by = String::new();
        state.paused_at_ms = now_ms;
        state.paused_reason = String::new();
    }
    state
}

/// The schedule a run belongs to, from its idempotency key `schedule:<name>:...`.
fn schedule_of_key(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("schedule:")?;
    rest.split_once(':').map(|(name, _)| name)
}

fn with_paused(schedule: &Schedule, paused: bool) -> Schedule {
    Schedule {
        paused,
        ..schedule.clone()
    }
}

fn start_request(name: &str, schedule: &Schedule, fire: &Fire) -> StartRequest {
    StartRequest {
        playbook: schedule.playbook.clone(),
        version: schedule.version.unwrap_or(0),
        params: schedule.params.clone(),
        idempotency_key: schedule::fire_key(name, fire),
        requested_by: crate::auth::Principal::schedule(name).id,
        dry_run: false,
        trigger: serde_json::Value::Null,
        trace: None,
    }
}

fn queued_fire(fire: Fire) -> QueuedFire {
    QueuedFire {
        scheduled_ms: fire.scheduled_ms,
        manual: fire.manual,
        caught_up: fire.caught_up,
    }
}

/// The entry of a queued fire when it starts: still `queued`, now with its run.
fn queued_entry(fire: &Fire, now_ms: i64) -> LedgerEntry {
    LedgerEntry {
        scheduled_ms: fire.scheduled_ms,
        manual: fire.manual,
        fate: LedgerFate::Queued,
        caught_up: fire.caught_up,
        through_ms: None,
        run_id: None,
        error: String::new(),
        by: String::new(),
        recorded_ms: now_ms,
    }
}

/// The plan's entries as ledger entries (run ids are filled in when the runs start).
fn ledger_entries(plan: &Plan, now_ms: i64, by: &str) -> Vec<LedgerEntry> {
    plan.entries
        .iter()
        .map(|e| {
            let (fate, caught_up) = ledger_fate(e.fate);
            LedgerEntry {
                scheduled_ms: e.scheduled_ms,
                manual: e.manual,
                fate,
                caught_up,
                through_ms: e.through_ms,
                run_id: None,
                error: String::new(),
                by: if e.manual {
                    by.to_string()
                } else {
                    String::new()
                },
                recorded_ms: now_ms,
            }
        })
        .collect()
}

fn ledger_fate(fate: Fate) -> (LedgerFate, bool) {
    match fate {
        Fate::Fired => (LedgerFate::Fired, false),
        Fate::SkippedOverlap => (LedgerFate::SkippedOverlap, false),
        Fate::Queued => (LedgerFate::Queued, false),
        Fate::Missed { caught_up } => (LedgerFate::Missed, caught_up),
        Fate::OutsideWindow => (LedgerFate::OutsideWindow, false),
        Fate::Paused => (LedgerFate::Paused, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY_2S: &str = "name: beat\ncron: \"*/2 * * * * *\"\nplaybook: echo\n";

    #[test]
    fn a_run_belongs_to_the_schedule_named_in_its_key() {
        assert_eq!(schedule_of_key("schedule:beat:1000"), Some("beat"));
        assert_eq!(schedule_of_key("schedule:beat:manual:1000"), Some("beat"));
        assert_eq!(schedule_of_key("schedule:beat"), None);
        assert_eq!(schedule_of_key("operator-key"), None);
    }

    #[test]
    fn a_new_schedule_decides_from_now_and_a_replaced_one_keeps_its_cursor() {
        let fresh = applied_state(None, false, 5_000);
        assert_eq!(
            (fresh.cursor_ms, fresh.paused, fresh.queued),
            (5_000, false, None)
        );
        let mut running = fresh.clone();
        running.cursor_ms = 9_000;
        running.paused = true;
        running.paused_by = "alice".into();
        let queued = QueuedFire {
            scheduled_ms: 8_000,
            manual: false,
            caught_up: false,
        };
        running.queued = Some(queued);
        let same = applied_state(Some(&running), true, 10_000);
        assert_eq!(
            same, running,
            "the pause of an operator survives an apply that agrees"
        );
        let resumed = applied_state(Some(&running), false, 10_000);
        assert_eq!(resumed.cursor_ms, 9_000);
        assert!(!resumed.paused);
        assert_eq!(resumed.paused_by, "");
        assert_eq!(resumed.queued, Some(queued));
    }

    #[test]
    fn plan_entries_become_ledger_entries_with_their_fates() {
        let schedule = schedule::parse(EVERY_2S).expect("valid");
        // Down from 0 to 10 s with a 1 s grace: 2, 4, 6, 8 missed, 10 due.
        let plan = schedule::plan_with_grace(&schedule, 0, 10_000, Activity::default(), 1_000);
        let entries = ledger_entries(&plan, 10_000, "");
        let fates: Vec<(i64, LedgerFate, bool)> = entries
            .iter()
            .map(|e| (e.scheduled_ms, e.fate, e.caught_up))
            .collect();
        assert_eq!(
            fates,
            vec![
                (2_000, LedgerFate::Missed, false),
                (4_000, LedgerFate::Missed, false),
                (6_000, LedgerFate::Missed, false),
                (8_000, LedgerFate::Missed, false),
                (10_000, LedgerFate::Fired, false),
            ]
        );
        assert!(
            entries
                .iter()
                .all(|e| e.run_id.is_none() && e.recorded_ms == 10_000)
        );
        let start = start_request("beat", &schedule, &plan.starts[0]);
        assert_eq!(start.idempotency_key, "schedule:beat:10000");
        assert_eq!(start.requested_by, "service:schedule/beat");
        assert_eq!(start.playbook, "echo");
    }

    #[test]
    fn the_paused_state_overrides_the_source() {
        let schedule = schedule::parse(EVERY_2S).expect("valid");
        let paused = with_paused(&schedule, true);
        let plan = schedule::plan_with_grace(&paused, 0, 4_000, Activity::default(), 1_000);
        assert!(plan.starts.is_empty());
        let entries = ledger_entries(&plan, 4_000, "");
        assert!(
            entries.iter().all(|e| e.fate == LedgerFate::Paused),
            "{entries:?}"
        );
        assert_eq!(
            ledger_fate(Fate::Missed { caught_up: true }),
            (LedgerFate::Missed, true)
        );
    }

    #[test]
    fn a_manual_entry_names_who_triggered_it() {
        let schedule = schedule::parse(EVERY_2S).expect("valid");
        let running = Activity {
            running: true,
            queued: false,
        };
        let plan = schedule::trigger_now(&schedule, 7_000, 6_000, running);
        let entries = ledger_entries(&plan, 7_000, "alice");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].by, "alice");
        assert!(entries[0].manual);
        assert_eq!(
            entries[0].fate,
            LedgerFate::SkippedOverlap,
            "overlap: skip by default"
        );
    }
}
