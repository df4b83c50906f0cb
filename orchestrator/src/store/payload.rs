//! Alert payloads as the store keeps them: the payloads of one write packed together and
//! compressed with LZ4, sealed ([`seal`]), in one row right after the last alert of the pack.
//!
//! Why packs: a storm's payloads are near copies of each other (one kind of alert, a few
//! fields changed), which LZ4 finds only when they are compressed together; and every row,
//! and every byte of it, is copied again each time sled splits or rewrites the node holding
//! it. One row per pack instead of one per payload, a fraction of the bytes in a storm.
//!
//! Keys in `alerts`, each the id of an alert and one more byte:
//! - `k`: a pack (written since store format 5): LZ4 (length prefixed, u32 LE) of
//!   `count (u32 LE) | count lengths (u32 LE) | the payloads`, under the id of the pack's last
//!   alert. An alert finds its payload by `payload_id` (the pack's key) and `payload_index`.
//!   At most [`PACK_BYTES_MAX`] bytes and [`PACK_PAYLOADS_MAX`] payloads a pack, so that
//!   reading one payload never unpacks more.
//! - `p`: one payload as received: one larger than a pack holds (a polled item may be), and
//!   every payload of a store written before compression.
//! - `z`: one payload compressed on its own (store format 4), read as before.
//!
//! A payload's row sorts after every alert it came with, so the pruning of the oldest alerts
//! ([`Store::prune_alerts`](super::Store::prune_alerts)) removes it with the last of them.

use std::ops::Range;

use riposte_ingest::PAYLOAD_BYTES_MAX;

use super::alerts::{ALERT_KEY_BYTES, StoredAlert};
use super::{Error, opened, seal};
use seal::Damage;

/// The key's last byte: the payload as received.
const AS_RECEIVED: u8 = b'p';
/// The key's last byte: one payload compressed (store format 4).
const COMPRESSED: u8 = b'z';
/// The key's last byte: a pack of payloads.
const PACK: u8 = b'k';
/// The most bytes (as received) the payloads of one pack add up to; a larger payload is
/// stored alone, as received.
pub const PACK_BYTES_MAX: usize = 64 * 1024;
/// The most payloads one pack holds.
pub const PACK_PAYLOADS_MAX: usize = 256;
/// A pack's header: its count, then one length per payload.
const LENGTH_BYTES: usize = 4;

/// A row of payloads ready to be written: a pack, or one payload alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadRow {
    key: [u8; ALERT_KEY_BYTES + 1],
    sealed: Vec<u8>,
}

impl PayloadRow {
    pub(super) fn key(&self) -> &[u8] {
        &self.key
    }

    pub(super) fn sealed(&self) -> &[u8] {
        &self.sealed
    }
}

/// Packs `payloads` (each with the alerts it came with, a range of `alerts`, in order) into
/// rows, and points each alert at its payload (`payload_id`, `payload_index`).
pub fn pack(
    alerts: &mut [StoredAlert],
    payloads: &[(Range<usize>, impl AsRef<[u8]>)],
) -> Vec<PayloadRow> {
    let mut rows = Vec::new();
    let mut packing: Vec<(Range<usize>, &[u8])> = Vec::new();
    let mut bytes = 0;
    for (range, payload) in payloads {
        let payload = payload.as_ref();
        if range.is_empty() {
            continue;
        }
        let full = bytes + payload.len() > PACK_BYTES_MAX || packing.len() == PACK_PAYLOADS_MAX;
        if full && !packing.is_empty() {
            rows.push(close(alerts, std::mem::take(&mut packing)));
            bytes = 0;
        }
        if payload.len() > PACK_BYTES_MAX {
            let id = alerts[range.end - 1].id;
            for alert in &mut alerts[range.clone()] {
                alert.payload_id = Some(id);
                alert.payload_index = None;
            }
            rows.push(PayloadRow {
                key: key(id, AS_RECEIVED),
                sealed: seal::seal(payload),
            });
            continue;
        }
        bytes += payload.len();
        packing.push((range.clone(), payload));
    }
    if !packing.is_empty() {
        rows.push(close(alerts, packing));
    }
    rows
}

/// One pack of `payloads`, under the id of its last alert.
fn close(alerts: &mut [StoredAlert], payloads: Vec<(Range<usize>, &[u8])>) -> PayloadRow {
    let last = payloads.last().map_or(0, |(range, _)| range.end - 1);
    let id = alerts[last].id;
    let sealed = SCRATCH.with_borrow_mut(
        |Scratch {
             content,
             compressed,
         }| {
            content.clear();
            content.extend_from_slice(&(payloads.len() as u32).to_le_bytes());
            for (_, payload) in &payloads {
                content.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            }
            for (_, payload) in &payloads {
                content.extend_from_slice(payload);
            }
            let max = lz4_flex::block::get_maximum_output_size(content.len());
            compressed.resize(LENGTH_BYTES + max, 0);
            compressed[..LENGTH_BYTES].copy_from_slice(&(content.len() as u32).to_le_bytes());
            let size = lz4_flex::compress_into(content, &mut compressed[LENGTH_BYTES..])
                .expect("the output holds the most LZ4 writes");
            seal::seal(&compressed[..LENGTH_BYTES + size])
        },
    );
    for (index, (range, _)) in payloads.into_iter().enumerate() {
        for alert in &mut alerts[range] {
            alert.payload_id = Some(id);
            alert.payload_index = Some(index as u32);
        }
    }
    PayloadRow {
        key: key(id, PACK),
        sealed,
    }
}

/// The buffers a pack is built and compressed in, kept by each thread that packs: a pack is
/// up to 64 KiB twice over, which the allocator would otherwise take fresh from the system
/// (and zero) for nearly every write of a storm, and give back after.
#[derive(Default)]
struct Scratch {
    content: Vec<u8>,
    compressed: Vec<u8>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

fn key(id: uuid::Uuid, form: u8) -> [u8; ALERT_KEY_BYTES + 1] {
    let mut key = [form; ALERT_KEY_BYTES + 1];
    key[..ALERT_KEY_BYTES].copy_from_slice(id.as_bytes());
    key
}

/// Whether a key of `alerts` is a payload row's.
pub(super) fn is_payload_key(key: &[u8]) -> bool {
    key.len() == ALERT_KEY_BYTES + 1
        && matches!(key.last(), Some(&(AS_RECEIVED | COMPRESSED | PACK)))
}

/// The payload of `alert` as received (lossy UTF-8), if it has one stored.
pub(super) fn read(alerts: &sled::Tree, alert: &StoredAlert) -> Result<Option<String>, Error> {
    let Some(id) = alert.payload_id else {
        return Ok(None);
    };
    let forms: &[u8] = match alert.payload_index {
        Some(_) => &[PACK],
        None => &[COMPRESSED, AS_RECEIVED],
    };
    for &form in forms {
        let key = key(id, form);
        let Some(value) = alerts.get(key)? else {
            continue;
        };
        let bytes = opened("alerts", &key, &value)?;
        let payload =
            payload_in(form, bytes, alert.payload_index).map_err(|source| Error::Corrupt {
                tree: "alerts",
                key: super::key_text(&key),
                source,
            })?;
        return Ok(Some(String::from_utf8_lossy(&payload).into_owned()));
    }
    Ok(None)
}

/// The payload a row holds, from its opened bytes: the one at `index` of a pack, else the
/// row's one payload (of `form`).
fn payload_in(form: u8, bytes: &[u8], index: Option<u32>) -> Result<Vec<u8>, Damage> {
    match index {
        Some(index) => unpacked(&decompressed(bytes, pack_bytes_max())?)?
            .get(index as usize)
            .map(|p| p.to_vec())
            .ok_or_else(|| Damage::Payload(format!("no payload {index} in the pack"))),
        None if form == COMPRESSED => decompressed(bytes, PAYLOAD_BYTES_MAX),
        None => Ok(bytes.to_vec()),
    }
}

/// Whether a payload row's sealed value reads back (for the store check).
pub(super) fn check(key: &[u8], value: &[u8]) -> Result<(), Damage> {
    let bytes = seal::open(value)?;
    match key.last() {
        Some(&PACK) => unpacked(&decompressed(bytes, pack_bytes_max())?).map(|_| ()),
        Some(&COMPRESSED) => decompressed(bytes, PAYLOAD_BYTES_MAX).map(|_| ()),
        _ => Ok(()),
    }
}

/// The most bytes a pack's content takes: its payloads and its header.
fn pack_bytes_max() -> usize {
    PACK_BYTES_MAX + LENGTH_BYTES * (PACK_PAYLOADS_MAX + 1)
}

/// An LZ4 block with its length prefixed, of at most `max` bytes once decompressed.
fn decompressed(bytes: &[u8], max: usize) -> Result<Vec<u8>, Damage> {
    let size = bytes
        .get(..LENGTH_BYTES)
        .map(|n| u32::from_le_bytes(n.try_into().expect("four bytes")) as usize)
        .ok_or(Damage::Payload("no length".into()))?;
    if size > max {
        return Err(Damage::Payload(format!("a length of {size} bytes")));
    }
    lz4_flex::decompress_size_prepended(bytes).map_err(|e| Damage::Payload(e.to_string()))
}

/// The payloads of a pack's content, in order.
fn unpacked(content: &[u8]) -> Result<Vec<&[u8]>, Damage> {
    let damaged = |why: &str| Damage::Payload(format!("not a pack of payloads: {why}"));
    let mut words = content.chunks_exact(LENGTH_BYTES);
    let mut word = || {
        words
            .next()
            .map(|w| u32::from_le_bytes(w.try_into().expect("four bytes")) as usize)
    };
    let count = word().ok_or_else(|| damaged("no count"))?;
    if count > PACK_PAYLOADS_MAX {
        return Err(damaged(&format!("{count} payloads")));
    }
    let lengths: Vec<usize> = (0..count)
        .map(|_| word().ok_or_else(|| damaged("lengths cut short")))
        .collect::<Result<_, _>>()?;
    let mut rest = content
        .get(LENGTH_BYTES * (count + 1)..)
        .ok_or_else(|| damaged("lengths cut short"))?;
    let mut payloads = Vec::with_capacity(count);
    for length in lengths {
        if length > rest.len() {
            return Err(damaged("a payload cut short"));
        }
        let (payload, after) = rest.split_at(length);
        payloads.push(payload);
        rest = after;
    }
    match rest.is_empty() {
        true => Ok(payloads),
        false => Err(damaged(&format!(
            "{} bytes after the last payload",
            rest.len()
        ))),
    }
}

#[cfg(test)]
mod tests;
