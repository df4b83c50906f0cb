//! The group commit: every write gets a [`Seq`], and one flusher task runs sled's flushes
//! back to back (ending each with an `fdatasync` under [`Durability::PowerLoss`]), so that
//! concurrent writers share a flush. A `Seq` knows its store: waiting on it
//! ([`Seq::durable`]) ends when a flush covers it, at once when a flush fails (the flusher
//! tries again), and for good once the store stopped acknowledging.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::{Notify, watch};

#[cfg(doc)]
use super::Durability;
use super::{Error, disk};

/// A write's place in the commit order of the store that made it; durable once a flush of that
/// store covers it ([`Seq::durable`]). A `Seq` of a store since closed (reopened after a disk
/// failure) never becomes durable: waiting on it fails.
#[derive(Clone)]
pub struct Seq {
    n: u64,
    commit: Arc<GroupCommit>,
}

impl std::fmt::Debug for Seq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Seq({})", self.n)
    }
}

impl Seq {
    pub(super) fn new(n: u64, commit: Arc<GroupCommit>) -> Seq {
        Seq { n, commit }
    }

    /// Waits until every write of its store up to this one is flushed; a flush that fails
    /// meanwhile ends the wait at once with its reason (the flusher keeps trying).
    pub async fn durable(&self) -> Result<(), Error> {
        let commit = &self.commit;
        let mut rx = commit.flushed.subscribe();
        let errors_before = rx.borrow().flush_errors;
        commit.wake.notify_one();
        let seq = self.n;
        let flushed = rx
            .wait_for(|f| f.seq >= seq || f.failed.is_some() || f.flush_errors > errors_before)
            .await
            .map_err(|_| Error::FlusherStopped)?;
        if flushed.seq >= seq {
            return Ok(());
        }
        match (&flushed.failed, &flushed.flush_error) {
            (Some(why), _) => Err(Error::SyncFailed(why.clone())),
            (None, Some(why)) => Err(Error::FlushFailed(why.clone())),
            (None, None) => Err(Error::FlushFailed("unknown".into())),
        }
    }
}

pub(super) struct GroupCommit {
    pub(super) written: AtomicU64,
    pub(super) wake: Notify,
    pub(super) flushed: watch::Sender<Flushed>,
    /// A flush is under way; `round_done` wakes who waits for its end.
    pub(super) flushing: AtomicBool,
    pub(super) round_done: Notify,
    /// Every handle is gone.
    pub(super) closed: AtomicBool,
    pub(super) dir: PathBuf,
    /// The keys of the records found damaged since the store was opened.
    pub(super) damaged: std::sync::Mutex<std::collections::BTreeSet<String>>,
    pub(super) reserve_bytes: u64,
}

/// How far the flusher got: every write up to `seq` is durable, unless it `failed` for good.
/// `flush_errors` counts failed flushes (each is retried); `flush_error` is the last one's
/// reason while the flushes keep failing.
#[derive(Debug, Clone, Default)]
pub(super) struct Flushed {
    pub(super) seq: u64,
    pub(super) failed: Option<Arc<str>>,
    pub(super) flush_errors: u64,
    pub(super) flush_error: Option<Arc<str>>,
}

/// Closes the group commit when dropped.
pub(super) struct Open(pub(super) Arc<GroupCommit>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::SeqCst);
        self.0.wake.notify_one();
    }
}

/// What the flusher owns: the database, the syncer, and the data dir's lock, released when
/// the flusher ends (after the last store handle is gone).
pub(super) struct Flushing {
    pub(super) db: sled::Db,
    pub(super) syncer: Option<disk::Syncer>,
    pub(super) commit: Arc<GroupCommit>,
    pub(super) _lock: disk::DirLock,
}

pub(super) async fn flusher(flushing: Flushing) {
    let Flushing {
        db,
        mut syncer,
        commit,
        _lock,
    } = flushing;
    let mut flushed: u64 = 0;
    let mut failing = false;
    // Times each group commit for the metrics (monotonic, never a decision).
    let clock = crate::clock::Clock::system();
    let metrics = crate::telemetry::metrics::metrics();
    loop {
        let target = commit.written.load(Ordering::SeqCst);
        if target <= flushed {
            if commit.closed.load(Ordering::SeqCst) {
                return;
            }
            commit.wake.notified().await;
            continue;
        }
        let started = clock.monotonic();
        let _round = Round::begin(&commit);
        let db = db.clone();
        // The flush and its sync in one hand-off to a blocking thread, not two: on a busy
        // machine each hand-off waits for a core, and every write waits for the round.
        let round = tokio::task::spawn_blocking(move || {
            let flushed = db.flush().map(|_| ());
            let synced = match (&flushed, syncer.as_mut()) {
                (Ok(()), Some(s)) => s.sync(),
                _ => Ok(()),
            };
            (flushed, synced, syncer)
        });
        let (result, synced) = match round.await {
            Ok((result, synced, returned)) => {
                syncer = returned;
                (result, synced)
            }
            Err(_) => return fail(&commit, "the flush or its sync panicked".into()),
        };
        if let Err(e) = result {
            if !failing {
                tracing::error!(error = %e, "store.flush_failed");
                failing = true;
            }
            commit.flushed.send_modify(|f| {
                f.flush_errors += 1;
                f.flush_error = Some(e.to_string().into());
            });
            if commit.closed.load(Ordering::SeqCst) {
                return fail(&commit, format!("the store was closed unflushed: {e}"));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        }
        if failing {
            tracing::info!("store.flush_recovered");
            failing = false;
        }
        if let Err(e) = synced {
            return fail(&commit, format!("fdatasync failed: {e}"));
        }
        metrics
            .store_flush
            .record(started.elapsed().as_secs_f64(), &[]);
        metrics.store_writes.record(target - flushed, &[]);
        flushed = target;
        commit.flushed.send_modify(|f| {
            f.seq = flushed;
            f.flush_error = None;
        });
    }
}

/// A flush under way, from its start to the end of its sync (however it ends).
struct Round<'a>(&'a GroupCommit);

impl Round<'_> {
    fn begin(commit: &GroupCommit) -> Round<'_> {
        commit.flushing.store(true, Ordering::SeqCst);
        Round(commit)
    }
}

impl Drop for Round<'_> {
    fn drop(&mut self) {
        self.0.flushing.store(false, Ordering::SeqCst);
        self.0.round_done.notify_waiters();
    }
}

impl GroupCommit {
    /// Waits until no flush is under way: a writer that gathers what arrives during a flush
    /// writes it then, so that it goes into the next flush whole.
    pub(super) async fn between_flushes(&self) {
        loop {
            let done = self.round_done.notified();
            if !self.flushing.load(Ordering::SeqCst) {
                return;
            }
            done.await;
        }
    }
}

/// The flusher stops: every waiter, now and later, is answered with `why`.
fn fail(commit: &GroupCommit, why: String) {
    tracing::error!(error = %why, "store.stopped_acknowledging");
    commit.flushed.send_modify(|f| f.failed = Some(why.into()));
}
