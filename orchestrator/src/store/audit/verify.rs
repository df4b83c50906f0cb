//! The walk of the whole audit chain ([`Store::audit_verify`]): the first record that is not
//! as written, or the first one missing from the tail.

use super::{
    AuditVerdict, HEAD_KEY, StoredHead, ZERO_MAC, decode_record, head_mac, lock, matches,
    record_mac,
};
use crate::store::{Error, Store, decode};

impl Store {
    /// Walks the whole chain in order and names the first record that is not as written: a
    /// MAC that does not match its content (edited, or forged without the key), a `seq`
    /// missing (deleted) or out of its place (moved), a `prev` that is not the MAC of the
    /// record before (one before it replaced), a damaged seal, a record that does not parse.
    ///
    /// The tail is checked against the head this process wrote last (a tail cut while it
    /// runs) and against the stored head (a tail cut while it was down, unless the head was
    /// rolled back with it from an older copy: only an exported copy shows that).
    pub fn audit_verify(&self) -> Result<AuditVerdict, Error> {
        let (key, head, stored) = {
            let head = lock(&self.chain.head);
            let stored = self.settings.get(HEAD_KEY)?;
            (head.key.clone(), (head.seq, head.mac.clone()), stored)
        };
        let broken = |seq, why: String| Ok(AuditVerdict::Broken { seq, why });
        let mut expected: u64 = 1;
        let mut prev = ZERO_MAC.to_string();
        // The MACs at the seqs the heads name, met on the way.
        let stored = stored.map(|v| decode::<StoredHead>("settings", HEAD_KEY, &v));
        let stored_seq = stored.as_ref().and_then(|h| h.as_ref().ok()).map(|h| h.seq);
        let (mut at_head, mut at_stored) = (None, None);
        for kv in self.audit.iter() {
            let (k, v) = kv?;
            let Ok(seq) = k.as_ref().try_into().map(u64::from_be_bytes) else {
                return broken(expected, format!("a key of {} bytes is not a seq", k.len()));
            };
            if seq != expected {
                let why = format!("missing (deleted): the next record stored is {seq}");
                return broken(expected, why);
            }
            let record = match decode_record(&k, &v) {
                Ok(record) => record,
                Err(Error::Corrupt { source, .. }) => {
                    return broken(seq, format!("it does not read back: {source}"));
                }
                Err(e) => return Err(e),
            };
            if record.seq != seq {
                let why = format!("it holds record {}: moved from its place", record.seq);
                return broken(seq, why);
            }
            let mac = record_mac(&key, seq, &record.prev, &record.entry);
            if !matches(mac, &record.mac) {
                let why = "its MAC does not match its content: edited, or written without the key";
                return broken(seq, why.into());
            }
            if record.prev != prev {
                let why = format!("its prev is not the MAC of record {}", seq - 1);
                return broken(seq, why);
            }
            if seq == head.0 {
                at_head = Some(record.mac.clone());
            }
            if Some(seq) == stored_seq {
                at_stored = Some(record.mac.clone());
            }
            prev = record.mac;
            expected += 1;
        }
        let last = expected - 1;
        let cut = |to: u64, whose: &str| {
            let why = format!("missing: the tail was cut ({whose} is at record {to})");
            broken(last + 1, why)
        };
        // The head kept in memory: a tail cut while this process runs (or, after a restart,
        // the stored head it was read from: see `Head::read`).
        if head.0 > last {
            return cut(head.0, "the chain's head");
        }
        if head.0 > 0 && at_head.as_ref() != Some(&head.1) {
            return broken(head.0, "it is not the record the chain's head names".into());
        }
        // The stored head: a tail cut while the orchestrator was down.
        match stored {
            None if last > 0 => broken(last + 1, "the chain's stored head is missing".into()),
            None => Ok(AuditVerdict::Intact {
                records: 0,
                head_mac: prev,
            }),
            Some(Err(e)) => broken(last + 1, format!("the stored head does not read: {e}")),
            Some(Ok(h)) if !matches(head_mac(&key, h.seq, &h.mac), &h.tag) => broken(
                last + 1,
                "the stored head was not written with the key".into(),
            ),
            Some(Ok(h)) if h.seq > last => cut(h.seq, "the stored head"),
            Some(Ok(h)) if at_stored.as_ref() != Some(&h.mac) => {
                broken(h.seq, "it is not the record the stored head names".into())
            }
            Some(Ok(_)) => Ok(AuditVerdict::Intact {
                records: last,
                head_mac: prev,
            }),
        }
    }
}
