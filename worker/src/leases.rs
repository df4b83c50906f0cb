//! The leases this worker holds right now: what each heartbeat sends, and how an abandon from
//! the orchestrator reaches the running action.
//!
//! A lease is held from the moment its task arrives until its result is reported (or dropped).
//! Holding is tied to a guard, so a lease can never stay in the table, and be heartbeated
//! forever, after the code running its task is gone.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use tokio::sync::oneshot;

/// A lease is named by its task and its fencing token.
type Key = (String, u64);

/// The table of held leases.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    held: Mutex<HashMap<Key, oneshot::Sender<()>>>,
}

impl Leases {
    /// Holds the lease until the returned guard is dropped.
    pub(crate) fn hold(&self, task_id: &str, lease_token: u64) -> Held<'_> {
        let (abandon, abandoned) = oneshot::channel();
        let key = (task_id.to_owned(), lease_token);
        self.lock().insert(key.clone(), abandon);
        Held {
            leases: self,
            key,
            abandoned: Some(abandoned),
        }
    }

    /// Every lease held, as `(task id, lease token)`.
    pub(crate) fn snapshot(&self) -> Vec<(String, u64)> {
        self.lock().keys().cloned().collect()
    }

    /// Signals the holder of this lease to stop; false when it is not held (any more).
    pub(crate) fn abandon(&self, task_id: &str, lease_token: u64) -> bool {
        let Some(abandon) = self.lock().remove(&(task_id.to_owned(), lease_token)) else {
            return false;
        };
        // The holder may be finishing at this very moment; then nobody needs the signal.
        let _ = abandon.send(());
        true
    }

    /// How many leases are held.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, oneshot::Sender<()>>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One held lease; dropping it releases the lease.
#[derive(Debug)]
pub(crate) struct Held<'a> {
    leases: &'a Leases,
    key: Key,
    /// `None` once the abandon signal has been received.
    abandoned: Option<oneshot::Receiver<()>>,
}

impl Held<'_> {
    /// Resolves when the orchestrator asked to abandon this lease (at once if it already did).
    pub(crate) async fn abandoned(&mut self) {
        if let Some(abandoned) = &mut self.abandoned {
            // A closed channel means the lease left the table, which only an abandon does.
            let _ = abandoned.await;
            self.abandoned = None;
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.leases.lock().remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn held_leases_are_listed_until_released() {
        let leases = Leases::default();
        let first = leases.hold("t1", 1);
        let second = leases.hold("t2", 5);
        let mut held = leases.snapshot();
        held.sort();
        assert_eq!(held, [("t1".to_owned(), 1), ("t2".to_owned(), 5)]);
        drop(first);
        assert_eq!(leases.snapshot(), [("t2".to_owned(), 5)]);
        drop(second);
        assert_eq!(leases.len(), 0);
    }

    #[tokio::test]
    async fn abandon_signals_the_holder_once() {
        let leases = Leases::default();
        let mut held = leases.hold("t1", 3);
        assert!(!leases.abandon("t1", 2), "another token is not this lease");
        let pending = tokio::time::timeout(Duration::from_millis(10), held.abandoned()).await;
        assert!(pending.is_err(), "not abandoned yet");
        assert!(leases.abandon("t1", 3));
        held.abandoned().await;
        held.abandoned().await;
        assert_eq!(leases.len(), 0);
        assert!(!leases.abandon("t1", 3));
    }
}
