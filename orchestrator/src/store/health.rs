//! The store's condition, for health checks and admission: room on the disk (the free-space
//! reserve), flushes that fail, and records found damaged while serving.

use super::{Error, REOPEN_FREE_MIN, Store, disk};

impl Store {
    /// Refuses new work while the data dir's filesystem is below the free-space reserve.
    pub fn check_room(&self) -> Result<(), Error> {
        let reserve = self.commit.reserve_bytes;
        if reserve == 0 {
            return Ok(());
        }
        match disk::free_bytes(&self.commit.dir) {
            Ok(free) if free < reserve => Err(Error::LowSpace { free, reserve }),
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "store.free_space_unknown");
                Ok(())
            }
        }
    }

    /// Whether flushes fail while the disk has room: sled refuses every operation after an IO
    /// error, so only opening the store again recovers it.
    pub fn needs_reopen(&self) -> bool {
        let flushed = self.commit.flushed.borrow().clone();
        let failing = flushed.flush_error.is_some() || flushed.failed.is_some();
        let room = disk::free_bytes(&self.commit.dir)
            .is_ok_and(|free| free >= self.commit.reserve_bytes.max(REOPEN_FREE_MIN));
        failing && room
    }

    /// Whether the store takes new work and acknowledges writes; the reason when it does not.
    pub fn condition(&self) -> Result<(), Error> {
        let flushed = self.commit.flushed.borrow().clone();
        if let Some(why) = flushed.failed {
            return Err(Error::SyncFailed(why));
        }
        if let Some(why) = flushed.flush_error {
            return Err(Error::FlushFailed(why));
        }
        match self.damaged().len() {
            0 => self.check_room(),
            n => Err(Error::Damaged(n)),
        }
    }

    fn damaged(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<String>> {
        self.commit
            .damaged
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records an IO error sled gave while serving, a read's included: sled refuses every
    /// operation after one, so the store reports itself failed from then on (health
    /// NOT_SERVING) and is opened again once the disk has room, even when no write follows to
    /// fail a flush.
    pub fn found_failure(&self, error: &Error) {
        let Error::Sled(sled::Error::Io(e)) = error else {
            return;
        };
        let why: std::sync::Arc<str> = e.to_string().into();
        let first = self.commit.flushed.send_if_modified(|f| {
            let first = f.failed.is_none();
            f.failed.get_or_insert(why);
            first
        });
        if first {
            tracing::error!(error = %e, "store.failed");
        }
    }

    /// Records a damaged record met while serving: logged once with its key, counted for
    /// health.
    pub(super) fn found_damage(&self, error: &Error) {
        if let Some(record) = error.damaged_record()
            && self.damaged().insert(record)
        {
            tracing::error!(%error, "store.damaged_record");
        }
    }
}

impl super::Error {
    /// A failure of the disk under the store (sled's IO error, a failed flush or fdatasync)
    /// rather than of a record: the store is opened again once it can be; retry.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Sled(sled::Error::Io(_))
                | Error::FlushFailed(_)
                | Error::SyncFailed(_)
                | Error::FlusherStopped
        )
    }
}
