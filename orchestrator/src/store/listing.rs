//! Runs listed a page at a time, and finished runs pruned.
//!
//! A page is read newest first from the narrowest source its filter allows: the
//! `run_playbooks` index (`playbook \0 run id`) for a playbook, the `active` index for an
//! unfinished status, else the `runs` tree. It reads at most [`PAGE_SCAN_MAX`] records: a filter that matches
//! rarely answers a short page with a cursor to go on, instead of scanning every run. Nothing
//! here takes the engine's lock: every committed change is in the store already.
//!
//! Pruning removes finished runs (state, history, playbook index entry, idempotency key) older
//! than the retention, and the oldest finished runs beyond a count; running runs stay.
//!
//! The store's format version is in `settings/format`; an older data dir is brought up to date
//! on open, a newer one is refused. Format 1 had no `run_playbooks` index; formats 1 and 2
//! kept a run as one record (its whole state), which format 3 splits into a head and records
//! ([`records`](super::records)) and whose values all carry a checksum
//! ([`seal`](super::seal)). Format 4 may hold alert payloads compressed, and format 5 packs
//! the payloads of one write together ([`payload`](super::payload)): an older data dir needs
//! nothing done (its payloads read as before), and an older build refuses a newer data dir
//! rather than show its payloads empty.

use riposte_scheduler::state::{RunId, RunState, RunStatus};

use super::{Error, Store, decode};

/// Records one page reads at most before it answers.
pub const PAGE_SCAN_MAX: usize = 10_000;

/// The format this build writes (and reads: it migrates the older ones).
const FORMAT: u32 = 5;
const FORMAT_KEY: &[u8] = b"format";

/// What a listing keeps.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Empty for every playbook.
    pub playbook: String,
    pub status: Option<RunStatus>,
}

impl RunFilter {
    fn keeps(&self, run: &RunState) -> bool {
        (self.playbook.is_empty() || run.playbook == self.playbook)
            && self.status.is_none_or(|s| s == run.status)
    }
}

/// Runs newest first, and the run to continue before when there may be more.
#[derive(Debug)]
pub struct RunPage {
    pub runs: Vec<RunState>,
    pub next: Option<RunId>,
}

/// The `run_playbooks` key of a run.
pub(super) fn playbook_key(playbook: &str, id: RunId) -> Vec<u8> {
    let mut key = playbook.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&id.to_bytes());
    key
}

impl Store {
    /// Up to `limit` runs that `filter` keeps, newest first, strictly older than `before`.
    pub fn runs_page(
        &self,
        filter: &RunFilter,
        before: Option<RunId>,
        limit: usize,
    ) -> Result<RunPage, Error> {
        let end = before.map(|id| id.to_bytes().to_vec());
        let ids: Box<dyn Iterator<Item = sled::Result<sled::IVec>>> = match filter.status {
            _ if !filter.playbook.is_empty() => {
                let mut prefix = filter.playbook.as_bytes().to_vec();
                prefix.push(0);
                Box::new(range_before(&self.run_playbooks, &prefix, end.as_deref()))
            }
            Some(status) if !status.is_terminal() => {
                Box::new(range_before(&self.active, &[], end.as_deref()))
            }
            _ => Box::new(range_before(&self.runs, &[], end.as_deref())),
        };
        let mut runs = Vec::new();
        for (scanned, key) in ids.enumerate() {
            let key = key?;
            let Some(id) = key
                .len()
                .checked_sub(16)
                .and_then(|at| RunId::from_bytes(&key[at..]))
            else {
                continue;
            };
            // An index entry may outlive its run for a moment while it is pruned; a damaged
            // run is left out (and reported) instead of failing the whole page.
            match self.run(id) {
                Ok(Some(run)) if filter.keeps(&run) => runs.push(run),
                Ok(_) => {}
                Err(e) if e.damaged_record().is_some() => self.found_damage(&e),
                Err(e) => return Err(e),
            }
            if runs.len() >= limit || scanned + 1 >= PAGE_SCAN_MAX {
                return Ok(RunPage {
                    runs,
                    next: Some(id),
                });
            }
        }
        Ok(RunPage { runs, next: None })
    }

    /// Removes finished runs that finished before `finished_before_ms`, and the oldest finished
    /// runs while more than `keep_max` runs are stored; answers how many.
    pub fn prune_runs(&self, finished_before_ms: i64, keep_max: usize) -> Result<usize, Error> {
        let mut stored = self.runs.len();
        let mut removed = 0;
        for entry in self.runs.iter() {
            let (key, value) = entry?;
            let Ok(run) = decode::<RunState>("runs", &key, &value) else {
                continue; // damaged: counted and logged where it is read
            };
            if !run.status.is_terminal() {
                continue;
            }
            let old = run.finished_at_ms.is_some_and(|at| at < finished_before_ms);
            if !old && stored <= keep_max {
                break;
            }
            // The run first: what is left if this stops half-way is invisible.
            self.runs.remove(&key)?;
            self.run_playbooks
                .remove(playbook_key(&run.playbook, run.id))?;
            if !run.idempotency_key.is_empty() {
                let claim = match run.dry_run {
                    true => format!("{}{}", super::DRY_RUN_CLAIM_PREFIX, run.idempotency_key),
                    false => run.idempotency_key.clone(),
                };
                if self.run_by_key(&claim)? == Some(run.id) {
                    self.run_keys.remove(claim.as_bytes())?;
                }
            }
            for tree in [&self.history, &self.run_records] {
                let mut batch = sled::Batch::default();
                for k in tree.scan_prefix(run.id.to_bytes()).keys() {
                    batch.remove(k?);
                }
                tree.apply_batch(batch)?;
            }
            stored -= 1;
            removed += 1;
        }
        Ok(removed)
    }

    /// Brings a data dir of an older format to [`FORMAT`]; refuses a newer one.
    pub(super) fn migrate(&self, dir: &std::path::Path) -> Result<(), Error> {
        let found = match self.settings.get(FORMAT_KEY)? {
            None => 1,
            Some(v) => std::str::from_utf8(&v)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(u32::MAX),
        };
        if found > FORMAT {
            return Err(Error::NewerFormat {
                dir: dir.to_path_buf(),
                found,
                known: FORMAT,
            });
        }
        if found < 3 {
            self.seal_all()?;
        }
        if found < 2 {
            // Format 1 had no playbook index.
            for entry in self.runs.iter() {
                let (key, value) = entry?;
                let run: RunState = decode("runs", &key, &value)?;
                self.run_playbooks
                    .insert(playbook_key(&run.playbook, run.id), &[])?;
            }
        }
        if found < 3 {
            self.split_runs()?;
        }
        if found < FORMAT {
            tracing::info!(from = found, to = FORMAT, "store.migrated");
        }
        if found != FORMAT {
            self.settings
                .insert(FORMAT_KEY, FORMAT.to_string().as_bytes())?;
            self.db.flush()?;
        }
        Ok(())
    }
}

impl Store {
    /// Format 2 to 3, first: every value gets its checksum ([`seal`](super::seal)); a value
    /// sealed already (an interrupted migration) is left alone.
    fn seal_all(&self) -> Result<(), Error> {
        let trees = [
            &self.playbooks,
            &self.runs,
            &self.history,
            &self.run_keys,
            &self.settings,
            &self.schedules,
            &self.schedule_state,
            &self.schedule_ledger,
            &self.alerts,
            &self.rules,
            &self.alert_dedup,
            &self.rule_budget,
        ];
        for tree in trees {
            let mut batch = sled::Batch::default();
            let mut pending = 0;
            for entry in tree.iter() {
                let (key, value) = entry?;
                if key.as_ref() == FORMAT_KEY || super::seal::is_sealed(&value) {
                    continue;
                }
                batch.insert(key, super::seal::seal(&value));
                pending += 1;
                if pending == 1024 {
                    tree.apply_batch(std::mem::take(&mut batch))?;
                    pending = 0;
                }
            }
            tree.apply_batch(batch)?;
        }
        Ok(())
    }

    /// Format 2 to 3: each run's whole state becomes its head and records, one run per
    /// transaction; a run already split (it has its input record) is left alone, so an
    /// interrupted migration resumes where it stopped.
    fn split_runs(&self) -> Result<(), Error> {
        use sled::Transactional;
        for entry in self.runs.iter() {
            let (key, value) = entry?;
            let Some(id) = RunId::from_bytes(&key) else {
                continue;
            };
            let input = super::records::key(id, super::records::INPUT, 0, 0);
            if self.run_records.contains_key(&input)? {
                continue;
            }
            let Ok(run) = decode::<RunState>("runs", &key, &value) else {
                continue; // damaged: reported where it is read, and by `store check`
            };
            let encoded = super::records::encode(&run, &[riposte_scheduler::Part::All]);
            (&self.runs, &self.run_records)
                .transaction(|(runs, records)| {
                    for (k, v) in &encoded.records {
                        if let Some(v) = v {
                            records.insert(k.as_slice(), v.as_slice())?;
                        }
                    }
                    runs.insert(&key, encoded.head.as_slice())?;
                    Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
                })
                .map_err(|e| match e {
                    sled::transaction::TransactionError::Storage(e) => Error::Sled(e),
                    sled::transaction::TransactionError::Abort(()) => {
                        unreachable!("the transaction never aborts")
                    }
                })?;
        }
        Ok(())
    }
}

/// The keys of `tree` under `prefix`, newest (largest) first, before `prefix + end` when given.
fn range_before<'a>(
    tree: &'a sled::Tree,
    prefix: &[u8],
    end: Option<&[u8]>,
) -> impl Iterator<Item = sled::Result<sled::IVec>> + 'a {
    let start = prefix.to_vec();
    let stop = match end {
        Some(end) => [prefix, end].concat(),
        None => {
            let mut stop = prefix.to_vec();
            stop.push(0xff);
            stop.extend_from_slice(&[0xff; 16]);
            stop
        }
    };
    tree.range(start..stop).rev().map(|kv| kv.map(|(k, _)| k))
}
