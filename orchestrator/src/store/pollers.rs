//! The pollers' records, tree `alert_sources`: each poller's state (its cursor and its
//! health) under `c NAME`, and each item it ingested under `r NAME \0 ITEM_ID` with the
//! modification time it was ingested at and its revision.
//!
//! A page's alerts, the items' records and the poller's new cursor are written by one
//! transaction (`AlertWrite::poll`, [`Store::put_alerts`]): after a crash the poller asks
//! again from the stored cursor, and every item it gets again is recognised by its record
//! (same modification time: already ingested; later: a new revision).

use super::*;

/// A poller's cursor and health, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollerState {
    /// Every change up to this time (epoch ms) is ingested; the next window starts here.
    /// `None` until the first window ends.
    pub cursor_ms: Option<i64>,
    /// When the last window ended well.
    pub last_success_ms: Option<i64>,
    /// The last failure's message and time; cleared by the next success.
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
    /// Failures since the last success.
    pub errors: u32,
    /// Items ingested as new alerts (first revisions), and as later revisions.
    pub alerts: u64,
    pub revisions: u64,
}

/// What the store remembers of one ingested item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// Its modification time as the vendor wrote it, and in epoch ms.
    pub modified: String,
    pub modified_ms: i64,
    /// 1 for the first time it was ingested, one more for each later change.
    pub revision: u32,
}

/// The poller part of a page's transaction.
pub struct PollWrite<'a> {
    pub poller: &'a str,
    pub state: &'a PollerState,
    /// (item id, what is now remembered of it)
    pub seen: Vec<(&'a str, Seen)>,
}

pub(super) fn state_key(poller: &str) -> Vec<u8> {
    let mut key = b"c".to_vec();
    key.extend_from_slice(poller.as_bytes());
    key
}

fn seen_prefix(poller: &str) -> Vec<u8> {
    let mut key = b"r".to_vec();
    key.extend_from_slice(poller.as_bytes());
    key.push(0);
    key
}

pub(super) fn seen_key(poller: &str, item: &str) -> Vec<u8> {
    let mut key = seen_prefix(poller);
    key.extend_from_slice(item.as_bytes());
    key
}

/// The rows a page writes.
pub(super) fn encode(write: &PollWrite<'_>) -> Rows {
    let mut rows = vec![(state_key(write.poller), json(write.state))];
    for (item, seen) in &write.seen {
        rows.push((seen_key(write.poller, item), json(seen)));
    }
    rows
}

impl Store {
    /// A poller's state (the default before its first poll).
    pub fn poller_state(&self, poller: &str) -> Result<PollerState, Error> {
        let key = state_key(poller);
        self.alert_sources
            .get(&key)?
            .map_or(Ok(PollerState::default()), |v| {
                decode("alert_sources", &key, &v)
            })
    }

    /// Writes a poller's state alone (a failure, a window without items).
    pub fn put_poller_state(&self, poller: &str, state: &PollerState) -> Result<Seq, Error> {
        self.put_rows(&self.alert_sources, vec![(state_key(poller), json(state))])
    }

    /// What is remembered of an item a poller ingested.
    pub fn poller_seen(&self, poller: &str, item: &str) -> Result<Option<Seen>, Error> {
        let key = seen_key(poller, item);
        self.alert_sources
            .get(&key)?
            .map(|v| decode("alert_sources", &key, &v))
            .transpose()
    }

    /// Forgets the items of `poller` last modified before `before_ms`: no window from the
    /// cursor on can list them again unless they change (then they count from revision 1
    /// again). Answers how many were forgotten.
    pub fn forget_seen(&self, poller: &str, before_ms: i64) -> Result<usize, Error> {
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        for kv in self.alert_sources.scan_prefix(seen_prefix(poller)) {
            let (key, value) = kv?;
            let seen: Seen = decode("alert_sources", &key, &value)?;
            if seen.modified_ms < before_ms {
                batch.remove(key);
                removed += 1;
            }
        }
        if removed > 0 {
            self.alert_sources.apply_batch(batch)?;
            self.written();
        }
        Ok(removed)
    }
}
