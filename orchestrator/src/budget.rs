//! A budget of places shared by keys, each key holding at most its share: the ingestion queue
//! (a place per alert payload being ingested, a key per feed) and the HTTP alert
//! listener's connections (a place per connection, a key per peer address) are two.
//!
//! A place is held by a [`Places`] value and given back when it is dropped, so that no path
//! (an answer, an error, a closed connection, a cancelled task) can keep one.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// At most `max` places in all, of which one key holds at most `share_max`.
pub struct Budget<K> {
    max: usize,
    share_max: usize,
    held: Mutex<Held<K>>,
    /// Wakes the waiters of [`Budget::take`] when places are given back.
    freed: Notify,
}

struct Held<K> {
    all: usize,
    /// Only the keys that hold places: the map is as small as what is held.
    by_key: HashMap<K, usize>,
}

/// Why a place was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Over {
    /// Every place is held.
    All { max: usize },
    /// The key holds its whole share.
    Share { share_max: usize, max: usize },
}

/// Places held by `key`, given back when dropped.
pub struct Places<K: Hash + Eq> {
    budget: Arc<Budget<K>>,
    key: K,
    count: usize,
}

impl<K: Hash + Eq + Clone> Budget<K> {
    /// `max` places, a key holding at most `share_max` of them (at least one, at most `max`).
    pub fn new(max: usize, share_max: usize) -> Budget<K> {
        assert!(max >= 1, "a budget has at least one place");
        Budget {
            max,
            share_max: share_max.clamp(1, max),
            held: Mutex::new(Held {
                all: 0,
                by_key: HashMap::new(),
            }),
            freed: Notify::new(),
        }
    }

    /// One place for `key`, now, or why not.
    pub fn try_take(self: &Arc<Self>, key: K) -> Result<Places<K>, Over> {
        let count = self.take_up_to(&key, 1)?;
        Ok(self.places(key, count))
    }

    /// At least one place for `key` and at most `wanted`, as many as are free for it, waiting
    /// until one is.
    pub async fn take(self: &Arc<Self>, key: K, wanted: usize) -> Places<K> {
        loop {
            // Registered before looking, so that a place given back in between wakes it.
            let freed = self.freed.notified();
            let mut freed = std::pin::pin!(freed);
            freed.as_mut().enable();
            if let Ok(count) = self.take_up_to(&key, wanted.max(1)) {
                return self.places(key, count);
            }
            freed.await;
        }
    }

    fn places(self: &Arc<Self>, key: K, count: usize) -> Places<K> {
        Places {
            budget: self.clone(),
            key,
            count,
        }
    }

    /// Takes between one and `wanted` places for `key`.
    fn take_up_to(&self, key: &K, wanted: usize) -> Result<usize, Over> {
        let mut held = self.lock();
        let own = held.by_key.get(key).copied().unwrap_or(0);
        let free = self.max - held.all;
        let room = self.share_max - own;
        let count = wanted.min(free).min(room);
        if count == 0 {
            return Err(match free {
                0 => Over::All { max: self.max },
                _ => Over::Share {
                    share_max: self.share_max,
                    max: self.max,
                },
            });
        }
        held.all += count;
        *held.by_key.entry(key.clone()).or_default() += count;
        Ok(count)
    }
}

impl<K: Hash + Eq> Budget<K> {
    fn give_back(&self, key: &K, count: usize) {
        {
            let mut held = self.lock();
            held.all -= count;
            let own = held
                .by_key
                .get_mut(key)
                .expect("places given back were taken");
            *own -= count;
            if *own == 0 {
                held.by_key.remove(key);
            }
        }
        self.freed.notify_waiters();
    }

    fn lock(&self) -> MutexGuard<'_, Held<K>> {
        // The counts are changed whole under the lock: a panic elsewhere leaves them right.
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<K: Hash + Eq> Drop for Places<K> {
    fn drop(&mut self) {
        self.budget.give_back(&self.key, self.count);
    }
}

/// The address a peer's connections are counted under: its IPv4 address (a v4-mapped one
/// too), or its IPv6 /64, which one host usually has whole.
pub fn peer_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    use std::net::IpAddr;
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((v6.to_bits() & !u128::from(u64::MAX)).into()),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_holds_at_most_its_share_and_places_come_back_on_drop() {
        let budget = Arc::new(Budget::new(4, 2));
        let a1 = budget.try_take("a").expect("a place");
        let _a2 = budget.try_take("a").expect("a place");
        assert_eq!(
            budget.try_take("a").err(),
            Some(Over::Share {
                share_max: 2,
                max: 4
            })
        );
        let _b1 = budget.try_take("b").expect("another key has room");
        let _b2 = budget.try_take("b").expect("another key has room");
        assert_eq!(budget.try_take("c").err(), Some(Over::All { max: 4 }));
        drop(a1);
        assert!(
            budget.try_take("c").is_ok(),
            "a dropped place is free again"
        );
    }

    #[test]
    fn a_share_is_at_least_one_and_at_most_all() {
        assert_eq!(Budget::<u8>::new(1, 0).share_max, 1);
        assert_eq!(Budget::<u8>::new(3, 10).share_max, 3);
    }

    #[tokio::test]
    async fn take_waits_for_a_place_and_takes_what_is_free_up_to_the_wanted() {
        let budget = Arc::new(Budget::new(4, 3));
        let many = budget.take("a", 10).await;
        assert_eq!(many.count, 3, "at most the share");
        let other = budget.take("b", 5).await;
        assert_eq!(other.count, 1, "what is free");
        let waiting = tokio::spawn({
            let budget = budget.clone();
            async move { budget.take("b", 5).await.count }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "nothing is free");
        drop(many);
        assert_eq!(
            waiting.await.expect("taken"),
            2,
            "b's share, less what it holds"
        );
    }
}
