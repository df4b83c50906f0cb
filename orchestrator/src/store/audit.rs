//! The audit log: who did what, through which door, and how it ended, as a tamper-evident
//! chain in the `audit` tree, written in the same transaction as the change it records.
//!
//! **A record** is an [`AuditEntry`] with its place in the chain: `seq` (1, 2, 3… with no
//! gap), `prev` (the MAC of the record before it, 64 zeros for the first) and `mac`, the hex
//! HMAC-SHA256 under the audit key of its canonical bytes ([`record_mac`]). It is stored under
//! its `seq` (8 bytes, big-endian), as JSON, sealed like every value ([`seal`](super::seal)).
//! Serialized, an [`AuditRecord`] is one flat JSON object: an export is one per line.
//!
//! **The key** is 32 random bytes in a file (`audit.key` in the data dir unless
//! `--audit-key` names another), made 0600 when missing; one open to other users is refused
//! ([`KeyFault::Shared`]), and so is a missing key when the store holds a chain already. The
//! key is what makes a forged record detectable: someone who can write the data dir but not
//! read the key cannot compute the MAC of a record they edit or add. Kept outside the data
//! dir, it also survives an attacker who can read the data dir. It is never logged.
//!
//! **Writing.** The request door stages an entry ([`Store::audit_next`]); the next
//! change-writing transaction of the store (a run, playbook, rule, schedule, alert or kill
//! switch write; not pruning or other housekeeping) appends it, chained, in the same sled
//! transaction ([`Store::audited`]): the change and its record are durable together or not
//! at all. An entry no write took ([`Store::audit_unwritten`]) and a refusal are appended on
//! their own ([`Store::audit_append`]). The chain's head (last `seq` and MAC) is kept in
//! memory behind a lock held from computing the record to updating the head after the
//! commit, so records are numbered in commit order; sled may run a transaction's closure more
//! than once, so everything is computed before it.
//!
//! **The head** is also stored, in `settings/audit_head`, in the same transaction as its
//! record, with its own MAC (`tag`): a tail cut off the chain while the orchestrator is down
//! no longer matches the stored head, and a stored head moved back cannot be made without the
//! key. What this cannot see is a whole data dir rolled back to an older copy (records and
//! head together): only a copy exported elsewhere (a SIEM) shows that. When the stored head
//! and the chain disagree at open, the chain goes on after the higher of the two, so that the
//! gap stays visible to [`Store::audit_verify`] after later writes.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use hmac::{Hmac, Mac};
use sled::transaction::{TransactionalTree, UnabortableTransactionError};

use super::*;
pub use key::KeyFault;
pub(super) use key::refuse_shared;
use key::{Key, load_key};

/// The audit key's file name in the data dir, unless `--audit-key` names another file.
pub const AUDIT_KEY_FILE: &str = "audit.key";

/// The `prev` of the first record.
const ZERO_MAC: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The key of the stored head in the `settings` tree.
pub(super) const HEAD_KEY: &[u8] = b"audit_head";

/// Bytes kept of `principal`, `source`, `target` (and of `method`, `action`, `digest`).
const FIELD_MAX: usize = 256;
/// Bytes kept of `outcome`.
const OUTCOME_MAX: usize = 1024;

type HmacSha256 = Hmac<sha2::Sha256>;

/// What one request did, as the door saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at_ms: i64,
    /// Who: the identity the door authenticated.
    pub principal: String,
    /// How they proved it: `certificate`, `token`, `oidc`, `service` or `none`.
    pub method: String,
    /// The peer's address, or `internal`.
    pub source: String,
    /// What, e.g. `run.start`.
    pub action: String,
    /// On what: a run id, `playbook@version`… (may be empty).
    pub target: String,
    /// Hex SHA-256 of the request, computed by the caller.
    pub digest: String,
    /// `ok`, or the refusal's text.
    pub outcome: String,
}

/// An entry in its place in the chain, as stored and exported (one flat JSON object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    #[serde(flatten)]
    pub entry: AuditEntry,
    /// The MAC of record `seq - 1` (64 zeros for the first).
    pub prev: String,
    /// Hex HMAC-SHA256 of this record's canonical bytes under the audit key.
    pub mac: String,
}

/// Whether a request was carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOutcome {
    Ok,
    Refused,
}

/// What an audit listing keeps; empty or `None` fields keep everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Exactly this principal.
    pub principal: String,
    /// Exactly this action, or those starting with what is before a final `*` (`run.*`).
    pub action: String,
    pub outcome: Option<AuditOutcome>,
    /// Records at or after this instant.
    pub since_ms: Option<i64>,
    /// Records at or before this instant.
    pub until_ms: Option<i64>,
}

impl AuditFilter {
    fn keeps(&self, entry: &AuditEntry) -> bool {
        let action = match self.action.strip_suffix('*') {
            Some(prefix) => entry.action.starts_with(prefix),
            None => self.action.is_empty() || entry.action == self.action,
        };
        let outcome = match self.outcome {
            None => true,
            Some(AuditOutcome::Ok) => entry.outcome == "ok",
            Some(AuditOutcome::Refused) => entry.outcome != "ok",
        };
        (self.principal.is_empty() || entry.principal == self.principal)
            && action
            && outcome
            && self.since_ms.is_none_or(|since| entry.at_ms >= since)
            && self.until_ms.is_none_or(|until| entry.at_ms <= until)
    }
}

/// Records newest first, and the `seq` to continue before when there may be more.
#[derive(Debug)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    pub next: Option<u64>,
}

/// What a walk of the whole chain found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditVerdict {
    /// Every record is in its place and carries its MAC; the head is the one written last.
    Intact { records: u64, head_mac: String },
    /// The first record that is not what was written (edited, deleted, moved, forged,
    /// damaged), or the first one missing from the tail.
    Broken { seq: u64, why: String },
}

/// A record's key in the `audit` tree.
fn record_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// A record's key as an operator reads it: its seq (else hex).
pub(super) fn key_shown(key: &[u8]) -> String {
    match key.try_into().map(u64::from_be_bytes) {
        Ok(seq) => seq.to_string(),
        Err(_) => key.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// A stored record; a damaged one is named by its seq.
fn decode_record(key: &[u8], value: &[u8]) -> Result<AuditRecord, Error> {
    decode("audit", key, value).map_err(|e| match e {
        Error::Corrupt { tree, source, .. } => Error::Corrupt {
            tree,
            key: key_shown(key),
            source,
        },
        e => e,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).ok())
        .collect()
}

/// One field of the canonical bytes: its length (u64 BE), then its bytes.
fn field(mac: &mut HmacSha256, bytes: &[u8]) {
    mac.update(&(bytes.len() as u64).to_be_bytes());
    mac.update(bytes);
}

/// The MAC of a record over its canonical bytes: `riposte-audit-record-v1\0`, `seq` (u64 BE),
/// `prev`, `at_ms` (i64 BE), then `principal`, `method`, `source`, `action`, `target`,
/// `digest`, `outcome`, each string as its length (u64 BE) and its UTF-8 bytes.
fn record_mac(key: &Key, seq: u64, prev: &str, entry: &AuditEntry) -> HmacSha256 {
    let mut mac = key.mac();
    mac.update(b"riposte-audit-record-v1\0");
    mac.update(&seq.to_be_bytes());
    field(&mut mac, prev.as_bytes());
    mac.update(&entry.at_ms.to_be_bytes());
    for text in [
        &entry.principal,
        &entry.method,
        &entry.source,
        &entry.action,
        &entry.target,
        &entry.digest,
        &entry.outcome,
    ] {
        field(&mut mac, text.as_bytes());
    }
    mac
}

/// The MAC of the stored head: `riposte-audit-head-v1\0`, `seq` (u64 BE), then the last
/// record's MAC as a field.
fn head_mac(key: &Key, seq: u64, last: &str) -> HmacSha256 {
    let mut mac = key.mac();
    mac.update(b"riposte-audit-head-v1\0");
    mac.update(&seq.to_be_bytes());
    field(&mut mac, last.as_bytes());
    mac
}

/// Whether `mac` (hex) is what `expected` computes, compared in constant time.
fn matches(expected: HmacSha256, mac: &str) -> bool {
    unhex(mac).is_some_and(|bytes| expected.verify_slice(&bytes).is_ok())
}

/// The chain's head as stored in `settings/audit_head`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredHead {
    pub(super) seq: u64,
    pub(super) mac: String,
    /// [`head_mac`] of `seq` and `mac`.
    pub(super) tag: String,
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn bounded(text: &mut String, max: usize) {
    if text.len() > max {
        let mut at = max;
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
    }
}

fn bound(mut entry: AuditEntry) -> AuditEntry {
    for text in [
        &mut entry.principal,
        &mut entry.method,
        &mut entry.source,
        &mut entry.action,
        &mut entry.target,
        &mut entry.digest,
    ] {
        bounded(text, FIELD_MAX);
    }
    bounded(&mut entry.outcome, OUTCOME_MAX);
    entry
}

/// The key and the head, under one lock.
struct Head {
    key: Key,
    seq: u64,
    mac: String,
}

/// The audit log's state, shared by every handle of a store.
pub(super) struct Chain {
    head: Mutex<Head>,
    /// The entry the next change-writing transaction appends.
    staged: Mutex<Option<AuditEntry>>,
    key_path: PathBuf,
}

/// A staged entry made into its record, ready for a transaction: written by
/// [`Prepared::insert`] with the new stored head.
pub(super) struct Prepared {
    key: [u8; 8],
    value: Vec<u8>,
    head: Vec<u8>,
    seq: u64,
    mac: String,
}

impl Prepared {
    /// Inserts the record into the `audit` tree and the new head into `settings`.
    pub(super) fn insert(
        &self,
        audit: &TransactionalTree,
        settings: &TransactionalTree,
    ) -> Result<(), UnabortableTransactionError> {
        audit.insert(&self.key, self.value.as_slice())?;
        settings.insert(HEAD_KEY, self.head.as_slice())?;
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Head {
    fn prepare(&self, entry: AuditEntry) -> Prepared {
        let seq = self.seq.saturating_add(1);
        let prev = self.mac.clone();
        let entry = bound(entry);
        let mac = hex(&record_mac(&self.key, seq, &prev, &entry)
            .finalize()
            .into_bytes());
        let record = AuditRecord {
            seq,
            entry,
            prev,
            mac: mac.clone(),
        };
        let head = StoredHead {
            seq,
            tag: hex(&head_mac(&self.key, seq, &mac).finalize().into_bytes()),
            mac: mac.clone(),
        };
        Prepared {
            key: record_key(seq),
            value: json(&record),
            head: json(&head),
            seq,
            mac,
        }
    }

    /// The head from the stored head and the last record: the higher of the two, so that
    /// records lost from the tail stay a gap in the chain.
    fn read(key: Key, audit: &sled::Tree, settings: &sled::Tree) -> Result<Head, Error> {
        let mut last = None;
        for kv in audit.iter().rev() {
            let (k, v) = kv?;
            if let Ok(seq) = k.as_ref().try_into().map(u64::from_be_bytes) {
                let mac = decode_record(&k, &v).map_or(String::new(), |r| r.mac);
                last = Some((seq, mac));
                break;
            }
        }
        let stored = settings.get(HEAD_KEY)?;
        let verified = stored
            .as_ref()
            .and_then(|v| decode::<StoredHead>("settings", HEAD_KEY, v).ok())
            .filter(|h| matches(head_mac(&key, h.seq, &h.mac), &h.tag));
        let (seq, mac) = match (verified, last) {
            (Some(head), Some((seq, mac))) if seq > head.seq => {
                tracing::error!(seq, head = head.seq, "store.audit_chain_beyond_head");
                (seq, mac)
            }
            (Some(head), last) => {
                let (last, _) = last.unwrap_or_default();
                if last < head.seq {
                    tracing::error!(last, head = head.seq, "store.audit_tail_missing");
                }
                (head.seq, head.mac)
            }
            (None, Some((seq, mac))) => {
                // The head was removed or forged: the next record leaves `seq + 1` out.
                tracing::error!(seq, "store.audit_head_unverified");
                (seq.saturating_add(1), mac)
            }
            (None, None) if stored.is_some() => {
                tracing::error!("store.audit_head_unverified");
                (1, ZERO_MAC.to_string())
            }
            (None, None) => (0, ZERO_MAC.to_string()),
        };
        Ok(Head { key, seq, mac })
    }
}

impl Chain {
    /// Reads the key (made when missing on a store without a chain) and the head.
    pub(super) fn open(
        key_path: PathBuf,
        audit: &sled::Tree,
        settings: &sled::Tree,
    ) -> Result<Chain, Error> {
        let exists = !audit.is_empty() || settings.contains_key(HEAD_KEY)?;
        let key = load_key(&key_path, exists)?;
        Ok(Chain {
            head: Mutex::new(Head::read(key, audit, settings)?),
            staged: Mutex::default(),
            key_path,
        })
    }
}

impl Store {
    /// Stages `entry`: the next change-writing transaction of this store (runs, playbooks,
    /// rules, schedules, alerts, the kill switch) appends it to the audit log, in the same
    /// transaction. Pruning and other housekeeping leave it staged.
    ///
    /// The contract: at most one entry is staged at a time. The caller stages it under the
    /// engine's lock, before the request's change, and before letting go of the lock takes
    /// back an entry no write consumed ([`Store::audit_unwritten`]), to append it with its
    /// outcome ([`Store::audit_append`]).
    pub fn audit_next(&self, entry: AuditEntry) {
        let mut staged = lock(&self.chain.staged);
        debug_assert!(staged.is_none(), "one audit entry staged at a time");
        *staged = Some(entry);
    }

    /// The staged entry, when no transaction has appended it (the request wrote nothing, or
    /// its write failed).
    pub fn audit_unwritten(&self) -> Option<AuditEntry> {
        lock(&self.chain.staged).take()
    }

    /// Appends `entry` on its own (a refusal, which changes nothing); durable once the
    /// returned `Seq` is.
    pub fn audit_append(&self, entry: AuditEntry) -> Result<Seq, Error> {
        let mut head = lock(&self.chain.head);
        let prepared = head.prepare(entry);
        (&self.audit, &self.settings)
            .transaction(|(audit, settings)| {
                prepared.insert(audit, settings)?;
                Ok::<(), ConflictableTransactionError<()>>(())
            })
            .map_err(aborted)?;
        head.seq = prepared.seq;
        head.mac = prepared.mac;
        Ok(self.written())
    }

    /// Runs a write with the staged entry made into its record, if one is staged: `write`
    /// puts it into its transaction ([`Prepared::insert`]). The head's lock is held
    /// throughout, and the head moves only when the write succeeded; a failed write leaves
    /// the entry staged. Without a staged entry, `write` gets `None` and no lock is taken.
    pub(super) fn audited<R>(
        &self,
        write: impl FnOnce(Option<&Prepared>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let staged = lock(&self.chain.staged).take();
        let Some(entry) = staged else {
            return write(None);
        };
        let mut head = lock(&self.chain.head);
        let prepared = head.prepare(entry.clone());
        match write(Some(&prepared)) {
            Ok(written) => {
                head.seq = prepared.seq;
                head.mac = prepared.mac;
                Ok(written)
            }
            Err(e) => {
                *lock(&self.chain.staged) = Some(entry);
                Err(e)
            }
        }
    }

    /// Writes `rows` into one tree: a plain insert or batch, or, with an entry staged, one
    /// transaction with its record.
    pub(super) fn put_rows(&self, tree: &sled::Tree, rows: Rows) -> Result<Seq, Error> {
        let changes = rows.into_iter().map(|(k, v)| (k, Some(v))).collect();
        self.change_rows(tree, changes)
    }

    /// Removes the rows of `keys` from one tree, with the staged entry's record when there is
    /// one, in one transaction.
    pub(super) fn remove_rows(&self, tree: &sled::Tree, keys: Vec<Vec<u8>>) -> Result<Seq, Error> {
        self.change_rows(tree, keys.into_iter().map(|k| (k, None)).collect())
    }

    /// Inserts (`Some`) or removes (`None`) rows of one tree.
    fn change_rows(
        &self,
        tree: &sled::Tree,
        rows: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<Seq, Error> {
        self.audited(|staged| {
            match staged {
                None => {
                    let mut batch = sled::Batch::default();
                    for (key, value) in rows {
                        match value {
                            Some(value) => batch.insert(key, value),
                            None => batch.remove(key),
                        }
                    }
                    tree.apply_batch(batch)?;
                }
                Some(prepared) => {
                    // The stored head goes into `settings`: the written tree itself when it
                    // is that one (a tree appears once in a transaction).
                    let mut trees = vec![tree, &self.audit];
                    let settings = match tree.name() == self.settings.name() {
                        true => 0,
                        false => {
                            trees.push(&self.settings);
                            2
                        }
                    };
                    trees
                        .as_slice()
                        .transaction(|views| {
                            for (key, value) in &rows {
                                match value {
                                    Some(value) => {
                                        views[0].insert(key.as_slice(), value.as_slice())?;
                                    }
                                    None => {
                                        views[0].remove(key.as_slice())?;
                                    }
                                }
                            }
                            prepared.insert(&views[1], &views[settings])?;
                            Ok::<(), ConflictableTransactionError<()>>(())
                        })
                        .map_err(aborted)?;
                }
            }
            Ok(self.written())
        })
    }

    /// Up to `limit` records that `filter` keeps, newest first, strictly before `before`;
    /// at most [`PAGE_SCAN_MAX`](super::listing::PAGE_SCAN_MAX) records are read, so a rare
    /// match may answer a short page with a cursor to go on. A damaged record is left out
    /// (and reported); [`Store::audit_verify`] names it.
    pub fn audit_page(
        &self,
        filter: &AuditFilter,
        before: Option<u64>,
        limit: usize,
    ) -> Result<AuditPage, Error> {
        let end = record_key(before.unwrap_or(u64::MAX));
        let mut records = Vec::new();
        let mut last = None;
        for (scanned, kv) in self.audit.range(..end).rev().enumerate() {
            let (key, value) = kv?;
            if records.len() == limit || scanned == listing::PAGE_SCAN_MAX {
                return Ok(AuditPage {
                    records,
                    next: last,
                });
            }
            last = key.as_ref().try_into().ok().map(u64::from_be_bytes);
            match decode_record(&key, &value) {
                Ok(record) if filter.keeps(&record.entry) => records.push(record),
                Ok(_) => {}
                Err(e) if e.damaged_record().is_some() => self.found_damage(&e),
                Err(e) => return Err(e),
            }
        }
        Ok(AuditPage {
            records,
            next: None,
        })
    }

    /// Reads the head again (after a salvage copied a chain in).
    pub(super) fn reread_audit_head(&self) -> Result<(), Error> {
        let mut head = lock(&self.chain.head);
        *head = Head::read(head.key.clone(), &self.audit, &self.settings)?;
        Ok(())
    }
}

/// A transaction's error (they never abort).
pub(super) fn aborted(error: TransactionError<()>) -> Error {
    match error {
        TransactionError::Storage(e) => Error::Sled(e),
        TransactionError::Abort(()) => unreachable!("the transaction never aborts"),
    }
}

mod key;
#[cfg(test)]
mod tests;
mod verify;
