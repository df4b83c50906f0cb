//! A run as small records: what a transition writes is what it changed, not the run.
//!
//! - `runs`: run id -> the run's **head**: a [`RunState`] without its input, units, step
//!   outputs and undo entries, with the number of units of each step (`unit_count`) and of undo
//!   entries (`undo_count`). Its size grows with the playbook's steps, never with items; it is
//!   written with every change of the run.
//! - `run_records`: `run id (16) | tag (1) | step (u16 BE) | index (u32 BE)` -> JSON, tags:
//!   [`INPUT`] (params and trigger, written once), [`UNIT`] (one per step unit), [`OUTPUT`]
//!   (a step's output), [`UNDO`] (one per undo entry). Written when the transition's
//!   [`Part`]s name them; one prefix scan reads a run back.
//!
//! A head's counts say which records belong to the run: a unit record beyond its step's count
//! (left by a step that was reset) is not read. A record the counts need that is missing or
//! does not read back makes the run damaged ([`Error::Corrupt`]).

use riposte_scheduler::Part;
use riposte_scheduler::state::{
    ApprovalState, Phase, RunId, RunState, RunStatus, StepState, StepStatus, UndoEntry, Unit,
    WaveState,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::check::Unreadable;
use super::seal::Damage;
use super::{Error, Store, decode, json};

pub(super) const INPUT: u8 = 0;
pub(super) const UNIT: u8 = 1;
pub(super) const OUTPUT: u8 = 2;
pub(super) const UNDO: u8 = 3;

impl Store {
    /// A run, read back from its head and records.
    pub fn run(&self, id: RunId) -> Result<Option<RunState>, Error> {
        match self.runs.get(id.to_bytes())? {
            Some(head) => self.assemble(id, &head).map(Some),
            None => Ok(None),
        }
    }

    pub(super) fn assemble(&self, id: RunId, head: &[u8]) -> Result<RunState, Error> {
        assemble(id, head, self.run_records.scan_prefix(id.to_bytes()))
    }

    /// Every run still running (to resume after a restart).
    pub fn active_runs(&self) -> Result<Vec<RunState>, Error> {
        let mut runs = Vec::new();
        for key in self.active.iter().keys() {
            let key = key?;
            if let (Some(head), Some(id)) = (self.runs.get(&key)?, RunId::from_bytes(&key)) {
                runs.push(self.assemble(id, &head)?);
            }
        }
        Ok(runs)
    }
}

/// A record's key.
pub(super) fn key(run: RunId, tag: u8, step: usize, index: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(23);
    key.extend_from_slice(&run.to_bytes());
    key.push(tag);
    key.extend_from_slice(&(step as u16).to_be_bytes());
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// What one run's write puts in the store: its head, and its records (`None`: remove).
pub(super) struct Encoded {
    pub head: Vec<u8>,
    pub records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Encodes the head of `run` and the records `parts` name.
pub(super) fn encode(run: &RunState, parts: &[Part]) -> Encoded {
    let mut records = Vec::new();
    let id = run.id;
    let put_units = |records: &mut Vec<_>, step: usize| {
        for (item, unit) in run.steps[step].units.iter().enumerate() {
            let item = item as u32;
            records.push((key(id, UNIT, step, item), Some(json(unit))));
        }
    };
    let output = |step: usize| {
        let value = run.steps[step].output.as_ref().map(json);
        (key(id, OUTPUT, step, 0), value)
    };
    let undo = |n: u32| {
        let value = run.undo.get(n as usize).map(json);
        (key(id, UNDO, 0, n), value)
    };
    for part in parts {
        match *part {
            Part::All => {
                let input = Input {
                    params: &run.params,
                    trigger: &run.trigger,
                };
                records.push((key(id, INPUT, 0, 0), Some(json(&input))));
                for step in 0..run.steps.len() {
                    put_units(&mut records, step);
                    if run.steps[step].output.is_some() {
                        records.push(output(step));
                    }
                }
                records.extend((0..run.undo.len() as u32).map(undo));
            }
            Part::Unit { step, item } => {
                if let Some(unit) = run.steps.get(step).and_then(|s| s.units.get(item as usize)) {
                    records.push((key(id, UNIT, step, item), Some(json(unit))));
                }
            }
            Part::Units { step } if step < run.steps.len() => put_units(&mut records, step),
            Part::Output { step } if step < run.steps.len() => records.push(output(step)),
            Part::Undo(n) => records.push(undo(n)),
            Part::Units { .. } | Part::Output { .. } => {}
        }
    }
    Encoded {
        head: json(&Head::of(run)),
        records,
    }
}

/// A run from its head and its records (read by one prefix scan of `run_records`, in key
/// order).
pub(super) fn assemble(
    id: RunId,
    head: &[u8],
    records: impl Iterator<Item = Result<(sled::IVec, sled::IVec), sled::Error>>,
) -> Result<RunState, Error> {
    let head_key = id.to_bytes();
    let mut run: RunState = decode("runs", &head_key, head)?;
    let counts: Counts = decode("runs", &head_key, head)?;
    let missing = |what: String| Error::Missing { run: id, what };
    if counts.steps.len() != run.steps.len() {
        return Err(missing("its step counts".into()));
    }
    let mut input = false;
    for kv in records {
        let (key, value) = kv?;
        let Some((tag, step, index)) = split(&key) else {
            continue;
        };
        match tag {
            INPUT => {
                let read: InputOwned = decode("run_records", &key, &value)?;
                run.params = read.params;
                run.trigger = read.trigger;
                input = true;
            }
            UNIT => {
                let Some(state) = run.steps.get_mut(step) else {
                    continue;
                };
                if index >= counts.steps[step].unit_count {
                    continue; // left by a step that was reset
                }
                if index as usize != state.units.len() {
                    return Err(missing(format!("step {step} item {}", state.units.len())));
                }
                state
                    .units
                    .push(decode::<Unit>("run_records", &key, &value)?);
            }
            OUTPUT => {
                if let Some(state) = run.steps.get_mut(step) {
                    state.output = Some(decode::<Value>("run_records", &key, &value)?);
                }
            }
            UNDO if index < counts.undo_count => {
                if index as usize != run.undo.len() {
                    return Err(missing(format!("undo entry {}", run.undo.len())));
                }
                run.undo
                    .push(decode::<UndoEntry>("run_records", &key, &value)?);
            }
            _ => {}
        }
    }
    if !input {
        return Err(missing("its params and trigger".into()));
    }
    for (step, (state, count)) in run.steps.iter().zip(&counts.steps).enumerate() {
        if state.units.len() != count.unit_count as usize {
            return Err(missing(format!("step {step} item {}", state.units.len())));
        }
    }
    if run.undo.len() != counts.undo_count as usize {
        return Err(missing(format!("undo entry {}", run.undo.len())));
    }
    Ok(run)
}

/// Whether a record of `run_records` (its payload, once opened) reads back as what its tag
/// says.
pub(super) fn check(key: &[u8], payload: &[u8]) -> Result<(), Unreadable> {
    fn json<T: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<(), Unreadable> {
        serde_json::from_slice::<T>(payload)
            .map(|_| ())
            .map_err(|e| Damage::from(e).into())
    }
    match split(key).filter(|_| key.len() == 23) {
        Some((INPUT, ..)) => json::<InputOwned>(payload),
        Some((UNIT, ..)) => json::<Unit>(payload),
        Some((OUTPUT, ..)) => json::<Value>(payload),
        Some((UNDO, ..)) => json::<UndoEntry>(payload),
        _ => Err(Unreadable::NotRecordKey),
    }
}

/// A record's key as an operator reads it: `run id/unit/step/item`, `run id/input`,
/// `run id/output/step`, `run id/undo/n`.
pub(super) fn describe(key: &[u8]) -> Option<String> {
    let run = RunId::from_bytes(key.get(..16)?)?;
    match split(key).filter(|_| key.len() == 23)? {
        (INPUT, ..) => Some(format!("{run}/input")),
        (UNIT, step, item) => Some(format!("{run}/unit/{step}/{item}")),
        (OUTPUT, step, _) => Some(format!("{run}/output/{step}")),
        (UNDO, _, n) => Some(format!("{run}/undo/{n}")),
        _ => None,
    }
}

/// A record key's tag, step and index (after the 16 bytes of the run id).
fn split(key: &[u8]) -> Option<(u8, usize, u32)> {
    let rest = key.get(16..)?;
    let (&tag, rest) = rest.split_first()?;
    let step = u16::from_be_bytes(rest.get(..2)?.try_into().ok()?) as usize;
    let index = u32::from_be_bytes(rest.get(2..6)?.try_into().ok()?);
    Some((tag, step, index))
}

#[derive(Serialize)]
struct Input<'a> {
    params: &'a Value,
    trigger: &'a Value,
}

#[derive(Deserialize)]
struct InputOwned {
    params: Value,
    #[serde(default)]
    trigger: Value,
}

/// The head as written: it reads back as a [`RunState`] (the records fill in the rest) and as
/// [`Counts`].
#[derive(Serialize)]
struct Head<'a> {
    id: RunId,
    playbook: &'a str,
    version: u32,
    requested_by: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    idempotency_key: &'a str,
    status: RunStatus,
    created_at_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_at_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    steps: Vec<StepHead<'a>>,
    history_seq: u64,
    phase: &'a Phase,
    #[serde(skip_serializing_if = "is_zero")]
    undo_count: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    concurrency_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deadline_ms: Option<i64>,
    #[serde(skip_serializing_if = "is_false")]
    dry_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    trace: Option<&'a str>,
}

#[derive(Serialize)]
struct StepHead<'a> {
    status: StepStatus,
    #[serde(skip_serializing_if = "is_zero")]
    unit_count: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    finished_at_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    due_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    approval: Option<&'a ApprovalState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    waves: Option<&'a WaveState>,
}

impl<'a> Head<'a> {
    /// Every field of the run is named here, so that a new one cannot be forgotten: it goes
    /// to the head, or to a record.
    fn of(run: &'a RunState) -> Head<'a> {
        let RunState {
            id,
            playbook,
            version,
            params: _,  // INPUT
            trigger: _, // INPUT
            requested_by,
            idempotency_key,
            status,
            created_at_ms,
            finished_at_ms,
            error,
            steps,
            history_seq,
            phase,
            undo, // UNDO
            concurrency_key,
            deadline_ms,
            dry_run,
            trace,
        } = run;
        Head {
            id: *id,
            playbook,
            version: *version,
            requested_by,
            idempotency_key,
            status: *status,
            created_at_ms: *created_at_ms,
            finished_at_ms: *finished_at_ms,
            error: error.as_deref(),
            steps: steps.iter().map(StepHead::of).collect(),
            history_seq: *history_seq,
            phase,
            undo_count: undo.len() as u32,
            concurrency_key: concurrency_key.as_deref(),
            deadline_ms: *deadline_ms,
            dry_run: *dry_run,
            trace: trace.as_deref(),
        }
    }
}

impl<'a> StepHead<'a> {
    fn of(step: &'a StepState) -> StepHead<'a> {
        let StepState {
            status,
            units,     // UNIT
            output: _, // OUTPUT
            error,
            started_at_ms,
            finished_at_ms,
            due_ms,
            approval,
            waves,
        } = step;
        StepHead {
            status: *status,
            unit_count: units.len() as u32,
            error: error.as_deref(),
            started_at_ms: *started_at_ms,
            finished_at_ms: *finished_at_ms,
            due_ms: *due_ms,
            approval: approval.as_deref(),
            waves: waves.as_deref(),
        }
    }
}

/// The counts of a head.
#[derive(Deserialize)]
struct Counts {
    #[serde(default)]
    undo_count: u32,
    steps: Vec<StepCount>,
}

#[derive(Deserialize)]
struct StepCount {
    #[serde(default)]
    unit_count: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}
