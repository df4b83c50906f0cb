//! The store: the only module that touches sled.
//!
//! Layout (one sled tree each):
//! - `playbooks`: `name \0 version(u32 BE)` -> [`StoredPlaybook`] (JSON)
//! - `runs`: run id (16 bytes, time-ordered) -> [`RunState`] (JSON)
//! - `active`: run id -> empty, for every run still running (what a restart resumes)
//! - `history`: run id + seq (u64 BE) -> [`HistoryEvent`] (JSON)
//! - `run_keys`: idempotency key -> run id
//! - `settings`: `containment` -> [`Containment`] (JSON), the kill switch
//!
//! **Durability.** Writes land in sled's page cache; nothing is acknowledged until a flush
//! covers it. Every write returns a [`Seq`]; [`Store::durable`] waits until a flush that
//! started after that write has finished. One background task runs the flushes back to back,
//! so concurrent writers share one flush (group commit). sled 0.34 flushes with
//! `sync_file_range`: the data survives a crash of the process, not necessarily of the machine.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use tokio::sync::{Notify, watch};

use crate::scheduler::state::{HistoryEvent, RunId, RunState};

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
    commit: Arc<GroupCommit>,
}

struct GroupCommit {
    written: AtomicU64,
    wake: Notify,
    flushed: watch::Sender<Seq>,
}

impl Store {
    /// Opens (or creates) the database in `dir` and starts the flusher task.
    pub fn open(dir: &Path) -> Result<Store, Error> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        let store = Store {
            playbooks: db.open_tree("playbooks")?,
            runs: db.open_tree("runs")?,
            active: db.open_tree("active")?,
            history: db.open_tree("history")?,
            run_keys: db.open_tree("run_keys")?,
            settings: db.open_tree("settings")?,
            db,
            commit: Arc::new(GroupCommit {
                written: AtomicU64::new(0),
                wake: Notify::new(),
                flushed: watch::channel(0).0,
            }),
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
        let result: Result<(), TransactionError<()>> =
            (&self.runs, &self.active, &self.history, &self.run_keys).transaction(
                |(runs, active, history, keys)| {
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
                    if let RunKey::Claim(k, id) = key {
                        keys.insert(k.as_bytes(), &id.to_bytes())?;
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

fn decode<T: for<'de> Deserialize<'de>>(tree: &'static str, bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|source| Error::Corrupt { tree, source })
}
