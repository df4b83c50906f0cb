//! `riposte-orchestrator store check`: every record of every tree read back as what it should
//! be, offline (the data dir's lock keeps a running orchestrator out), and the ones that do
//! not named with their tree and key, and the audit chain walked ([`Store::audit_verify`]).
//! `store salvage` copies every record that reads back into a new data dir, whose fencing
//! tokens start above the old one's, and whose audit key becomes the old one's (so that the
//! audit chain copied with it still verifies).

use serde::de::DeserializeOwned;

use super::audit::{AuditRecord, AuditVerdict, HEAD_KEY, StoredHead};
use super::seal::{self, Damage};
use super::{
    BudgetState, Containment, DedupEntry, Error, LedgerEntry, PollerState, ScheduleState, Seen,
    Store, StoredAlert, StoredPlaybook, StoredRule, StoredSchedule, TOKEN_BASE_KEY, key_text,
};
use riposte_scheduler::state::{HistoryEvent, RunId, RunState};

/// Why a record does not read back.
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    #[error("{0}")]
    Damage(#[from] Damage),
    #[error("expected a 16-byte run id, found {0} bytes")]
    NotRunId(usize),
    #[error("expected a format number")]
    NotFormat,
    #[error("not a run record's key")]
    NotRecordKey,
    /// The run's head reads back but a record it counts does not.
    #[error("{0}")]
    Incomplete(Error),
    #[error("expected an audit record's seq (8 bytes), found {0} bytes")]
    NotSeq(usize),
    /// The audit chain is broken at this record ([`Store::audit_verify`]).
    #[error("the audit chain is broken: {0}")]
    AuditChain(String),
}

/// What a check found.
#[derive(Debug, Default)]
pub struct Checked {
    /// Records read.
    pub records: u64,
    /// `tree/key` and why, for each record that does not read back.
    pub damaged: Vec<(String, Unreadable)>,
}

impl Checked {
    fn note(&mut self, tree: &str, key: &[u8], result: Result<(), Unreadable>) {
        self.records += 1;
        if let Err(why) = result {
            let key = match tree {
                "audit" => super::audit::key_shown(key),
                _ => key_text(key),
            };
            self.damaged.push((format!("{tree}/{key}"), why));
        }
    }
}

/// A sealed JSON record of type `T`.
fn json<T: DeserializeOwned>(value: &[u8]) -> Result<(), Unreadable> {
    let payload = seal::open(value)?;
    serde_json::from_slice::<T>(payload)
        .map(|_| ())
        .map_err(|e| Damage::from(e).into())
}

/// A sealed run id.
fn sealed_run_id(value: &[u8]) -> Result<(), Unreadable> {
    run_id(seal::open(value)?)
}

/// A run id (16 bytes).
fn run_id(bytes: &[u8]) -> Result<(), Unreadable> {
    match bytes.len() == 16 && RunId::from_bytes(bytes).is_some() {
        true => Ok(()),
        false => Err(Unreadable::NotRunId(bytes.len())),
    }
}

/// What a salvage copied, and what it left behind (`tree/key` and why).
#[derive(Debug, Default)]
pub struct Salvaged {
    pub copied: u64,
    pub left: Vec<(String, Unreadable)>,
}

/// Whether a record (key, value) of a tree reads back as what it should be.
pub(super) type Check = fn(&[u8], &[u8]) -> Result<(), Unreadable>;

impl Store {
    /// Reads back every record.
    pub fn check(&self) -> Result<Checked, Error> {
        let mut checked = Checked::default();
        for (name, tree, check) in self.trees() {
            for entry in tree.iter() {
                let (key, value) = entry?;
                checked.note(name, &key, check(&key, &value));
            }
        }
        for (id, error) in self.incomplete_runs()? {
            checked
                .damaged
                .push((format!("runs/{id}"), Unreadable::Incomplete(error)));
        }
        if let AuditVerdict::Broken { seq, why } = self.audit_verify()? {
            let at = format!("audit/{seq}");
            checked.damaged.push((at, Unreadable::AuditChain(why)));
        }
        Ok(checked)
    }

    /// Copies every record that reads back into `into` (a new, empty store), and sets its
    /// fencing tokens to start above this store's.
    pub fn salvage(&self, into: &Store) -> Result<Salvaged, Error> {
        let mut salvaged = Salvaged::default();
        into.adopt_audit_key(self)?;
        for ((name, tree, check), (_, to, _)) in self.trees().into_iter().zip(into.trees()) {
            for entry in tree.iter() {
                let (key, value) = entry?;
                match check(&key, &value) {
                    Ok(()) => {
                        to.insert(&key, value)?;
                        salvaged.copied += 1;
                    }
                    Err(why) => salvaged
                        .left
                        .push((format!("{name}/{}", key_text(&key)), why)),
                }
            }
        }
        // A run whose records did not all come across is left behind whole.
        for (id, error) in into.incomplete_runs()? {
            into.runs.remove(id.to_bytes())?;
            into.active.remove(id.to_bytes())?;
            salvaged
                .left
                .push((format!("runs/{id}"), Unreadable::Incomplete(error)));
        }
        let base = self.next_token()?;
        into.settings
            .insert(TOKEN_BASE_KEY, seal::seal(&base.to_be_bytes()))?;
        into.db.flush()?;
        into.reread_audit_head()?;
        Ok(salvaged)
    }

    /// Runs whose head reads back but whose records do not all (missing or damaged).
    fn incomplete_runs(&self) -> Result<Vec<(RunId, Error)>, Error> {
        let mut incomplete = Vec::new();
        for entry in self.runs.iter() {
            let (key, head) = entry?;
            let Some(id) = RunId::from_bytes(&key) else {
                continue;
            };
            if super::decode::<RunState>("runs", &key, &head).is_err() {
                continue; // reported as a damaged record of `runs`
            }
            match self.assemble(id, &head) {
                Err(e @ Error::Missing { .. }) => incomplete.push((id, e)),
                // A record that does not read back is reported as one of `run_records`.
                Ok(_) | Err(Error::Corrupt { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(incomplete)
    }

    /// Every tree, with what its records must read back as.
    pub(super) fn trees(&self) -> [(&'static str, &sled::Tree, Check); 17] {
        [
            ("playbooks", &self.playbooks, |_, v| {
                json::<StoredPlaybook>(v)
            }),
            ("runs", &self.runs, |k, v| {
                run_id(k)?;
                json::<RunState>(v)
            }),
            ("run_records", &self.run_records, |k, v| {
                super::records::check(k, seal::open(v)?)
            }),
            ("active", &self.active, |k, _| run_id(k)),
            ("history", &self.history, |_, v| json::<HistoryEvent>(v)),
            ("run_keys", &self.run_keys, |_, v| sealed_run_id(v)),
            ("run_playbooks", &self.run_playbooks, |k, _| {
                run_id(&k[k.len().saturating_sub(16)..])
            }),
            ("settings", &self.settings, |k, v| match k {
                b"token_base" if seal::open(v)?.len() == 8 => Ok(()),
                HEAD_KEY => json::<StoredHead>(v),
                b"format" => std::str::from_utf8(v)
                    .ok()
                    .and_then(|v| v.parse::<u32>().ok())
                    .map(|_| ())
                    .ok_or(Unreadable::NotFormat),
                k if k.starts_with(super::playbooks::DEFAULT_PREFIX) => json::<u32>(v),
                _ => json::<Containment>(v),
            }),
            ("schedules", &self.schedules, |_, v| {
                json::<StoredSchedule>(v)
            }),
            ("schedule_state", &self.schedule_state, |_, v| {
                json::<ScheduleState>(v)
            }),
            ("schedule_ledger", &self.schedule_ledger, |_, v| {
                json::<LedgerEntry>(v)
            }),
            ("alerts", &self.alerts, |k, v| {
                // A payload: any bytes, sealed, maybe compressed.
                match super::payload::is_payload_key(k) {
                    true => super::payload::check(k, v).map_err(Into::into),
                    false => json::<StoredAlert>(v),
                }
            }),
            ("rules", &self.rules, |_, v| json::<StoredRule>(v)),
            ("alert_dedup", &self.alert_dedup, |_, v| {
                json::<DedupEntry>(v)
            }),
            ("rule_budget", &self.rule_budget, |_, v| {
                json::<BudgetState>(v)
            }),
            ("alert_sources", &self.alert_sources, |k, v| {
                match k.first() {
                    Some(b'c') => json::<PollerState>(v),
                    _ => json::<Seen>(v),
                }
            }),
            ("audit", &self.audit, |k, v| match k.len() {
                8 => json::<AuditRecord>(v),
                n => Err(Unreadable::NotSeq(n)),
            }),
        ]
    }
}
