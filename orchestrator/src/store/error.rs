//! The store's errors: what a caller of the store can be refused with, each a variant it can
//! match on, with a lowercase message an operator reads.

use std::path::PathBuf;
use std::sync::Arc;

use riposte_scheduler::state::RunId;

use super::{audit, seal};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    #[error("store damaged: record `{key}` in `{tree}` does not read back ({source})")]
    Corrupt {
        tree: &'static str,
        key: String,
        source: seal::Damage,
    },
    /// A run's head counts a record that is not in the store.
    #[error("store damaged: run {run} lacks its record of {what}")]
    Missing { run: RunId, what: String },
    /// Records that do not read back were found (and left out of listings).
    #[error(
        "store damaged: {0} records do not read back (their keys are in the log); the other \
         records are served"
    )]
    Damaged(usize),
    #[error("store: flusher stopped")]
    FlusherStopped,
    /// The data dir cannot be created, or its lock file written.
    #[error("data dir {} is not usable: {source}", .dir.display())]
    DataDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// Another process holds the data dir.
    #[error("data dir {} is locked by {}; stop it or choose another --data-dir", .dir.display(), holder(*.pid))]
    Locked { dir: PathBuf, pid: Option<u32> },
    /// sled refuses to open what is in the data dir.
    #[error("the store in {} cannot be opened (damaged, or written by another program): {source}", .dir.display())]
    Unopenable { dir: PathBuf, source: sled::Error },
    /// The store stopped acknowledging: an fdatasync failed, or it was closed (to be reopened)
    /// before the write was flushed.
    #[error("store: writes are no longer acknowledged: {0}")]
    SyncFailed(Arc<str>),
    /// A flush failed while the change waited for it; the flusher tries again, so the change
    /// may still become durable (a retry with the same idempotency key finds it).
    #[error("store: the flush failed ({0}); the change is not durable yet, retry")]
    FlushFailed(Arc<str>),
    /// A write several requests shared failed: each of them is told this (the request that
    /// made the write gets the error itself).
    #[error("store: the write this was part of failed ({0}); nothing of it was stored, retry")]
    SharedWriteFailed(Arc<str>),
    /// The data dir was written by a newer Riposte.
    #[error(
        "the store in {} has format {found}, newer than the {known} this orchestrator reads; \
         run a newer riposte-orchestrator",
        .dir.display()
    )]
    NewerFormat {
        dir: PathBuf,
        found: u32,
        known: u32,
    },
    /// The data dir's filesystem is below the free-space reserve: new work is refused.
    #[error(
        "the data dir's filesystem has {} free, below the {} reserve (--min-free-space); \
         new runs are refused until space is freed",
        size(*.free),
        size(*.reserve)
    )]
    LowSpace { free: u64, reserve: u64 },
    /// The audit key cannot be read or made, or is open to other users ([`audit`]).
    #[error("audit key {} is not usable: {source}", .path.display())]
    AuditKey {
        path: PathBuf,
        source: audit::KeyFault,
    },
}

impl Error {
    /// A record that does not read back, or is missing: its tree and key, to report it.
    pub fn damaged_record(&self) -> Option<String> {
        match self {
            Error::Corrupt { tree, key, .. } => Some(format!("{tree}/{key}")),
            Error::Missing { run, .. } => Some(format!("runs/{run}")),
            _ => None,
        }
    }
}

fn size(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().iec().to_string()
}

fn holder(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("pid {pid} (another orchestrator)"),
        None => "another process".to_string(),
    }
}
