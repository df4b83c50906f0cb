//! In-process locks that serialize the writers of one Azure resource (an NSG, an IP group):
//! their updates are read-modify-write, and two at once would lose one or clash on a priority.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

/// One async lock per resource id (ids compare case-insensitively). Only the resources named
/// in the worker's settings are locked, so the map stays small.
#[derive(Debug, Default)]
pub(crate) struct Locks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Locks {
    /// Waits until this task is the only writer of `id`; the guard releases it.
    pub(crate) async fn lock(&self, id: &str) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.entry(id.to_ascii_lowercase()).or_default().clone()
        };
        lock.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_writer_per_id() {
        let locks = Locks::default();
        let held = locks.lock("/A").await;
        let same = tokio::time::timeout(Duration::from_millis(50), locks.lock("/a")).await;
        assert!(same.is_err(), "the same id (any case) waits");
        let other = tokio::time::timeout(Duration::from_millis(50), locks.lock("/b")).await;
        assert!(other.is_ok(), "another id does not");
        drop(held);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), locks.lock("/a"))
                .await
                .is_ok()
        );
    }
}
