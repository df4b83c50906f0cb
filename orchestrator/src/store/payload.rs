//! Alert payloads as the store keeps them: compressed with LZ4 when that makes them smaller,
//! as received otherwise, and sealed ([`seal`]); made where a payload is decided, outside the
//! engine's lock, so that the write under the lock only copies them. Every byte a payload
//! does not take is a byte sled does not copy again each time it splits or rewrites the node
//! holding it.
//!
//! A payload is stored once, under the id of its first alert and one more byte, right after
//! that alert in `alerts`: `p` for the bytes as received, `z` for their LZ4 block, prefixed
//! with their length (u32 LE). Which one a payload got is in its key; a store written before
//! compression holds `p` payloads only, read as they always were.

use riposte_ingest::PAYLOAD_BYTES_MAX;

use super::alerts::ALERT_KEY_BYTES;
use super::{Error, opened, seal};
use seal::Damage;

/// The key's last byte: the payload as received.
const AS_RECEIVED: u8 = b'p';
/// The key's last byte: the payload compressed.
const COMPRESSED: u8 = b'z';
/// A payload is compressed only when that saves at least this many bytes (a short syslog line
/// is kept as it came: there is little to gain, and nothing to decompress when it is read).
const SAVING_MIN: usize = 64;

/// A payload, compressed or not, sealed, ready to be written under its first alert's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPayload {
    compressed: bool,
    sealed: Vec<u8>,
}

impl StoredPayload {
    /// `payload` as the store keeps it: one larger than [`PAYLOAD_BYTES_MAX`] (a polled item
    /// may be) as received, so that reading one back never allocates more than that.
    pub fn new(payload: &[u8]) -> StoredPayload {
        let compressible = (2 * SAVING_MIN..=PAYLOAD_BYTES_MAX).contains(&payload.len());
        let compressed = compressible.then(|| lz4_flex::compress_prepend_size(payload));
        match compressed.filter(|c| c.len() + SAVING_MIN <= payload.len()) {
            Some(c) => StoredPayload {
                compressed: true,
                sealed: seal::seal(&c),
            },
            None => StoredPayload {
                compressed: false,
                sealed: seal::seal(payload),
            },
        }
    }

    /// Its key, under the id of the first alert of the payload.
    pub(super) fn key(&self, id: uuid::Uuid) -> [u8; ALERT_KEY_BYTES + 1] {
        key(
            id,
            if self.compressed {
                COMPRESSED
            } else {
                AS_RECEIVED
            },
        )
    }

    /// The value written.
    pub(super) fn sealed(&self) -> &[u8] {
        &self.sealed
    }
}

fn key(id: uuid::Uuid, form: u8) -> [u8; ALERT_KEY_BYTES + 1] {
    let mut key = [form; ALERT_KEY_BYTES + 1];
    key[..ALERT_KEY_BYTES].copy_from_slice(id.as_bytes());
    key
}

/// Whether a key of `alerts` is a payload's.
pub(super) fn is_payload_key(key: &[u8]) -> bool {
    key.len() == ALERT_KEY_BYTES + 1 && matches!(key.last(), Some(&(AS_RECEIVED | COMPRESSED)))
}

/// The payload stored under `id` as received (lossy UTF-8), if any.
pub(super) fn read(alerts: &sled::Tree, id: uuid::Uuid) -> Result<Option<String>, Error> {
    for form in [COMPRESSED, AS_RECEIVED] {
        let key = key(id, form);
        if let Some(value) = alerts.get(key)? {
            let bytes = opened("alerts", &key, &value)?;
            let bytes = unpacked(form, bytes).map_err(|source| Error::Corrupt {
                tree: "alerts",
                key: super::key_text(&key),
                source,
            })?;
            return Ok(Some(String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    Ok(None)
}

/// Whether a payload's sealed value reads back (for the store check).
pub(super) fn check(key: &[u8], value: &[u8]) -> Result<(), Damage> {
    let bytes = seal::open(value)?;
    unpacked(*key.last().unwrap_or(&AS_RECEIVED), bytes).map(|_| ())
}

/// The payload's bytes, from its stored form; a compressed one at most [`PAYLOAD_BYTES_MAX`].
fn unpacked(form: u8, bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, Damage> {
    if form != COMPRESSED {
        return Ok(bytes.into());
    }
    let size = bytes
        .get(..4)
        .map(|n| u32::from_le_bytes(n.try_into().expect("four bytes")) as usize)
        .ok_or(Damage::Compressed("no length".into()))?;
    if size > PAYLOAD_BYTES_MAX {
        return Err(Damage::Compressed(format!("a length of {size} bytes")));
    }
    lz4_flex::decompress_size_prepended(bytes)
        .map(Into::into)
        .map_err(|e| Damage::Compressed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AZURE_MONITOR: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../ingest/tests/fixtures/ingest/azure-monitor-common-log-alert.json"
    ));

    #[test]
    fn a_payload_is_compressed_only_when_that_saves_room() {
        let stored = StoredPayload::new(AZURE_MONITOR);
        assert!(stored.compressed, "a JSON alert compresses");
        assert!(
            stored.sealed.len() < AZURE_MONITOR.len() * 2 / 3,
            "{} bytes",
            stored.sealed.len()
        );
        let form = *stored.key(uuid::Uuid::nil()).last().expect("a key");
        let back = unpacked(form, seal::open(&stored.sealed).expect("opens")).expect("unpacks");
        assert_eq!(back.as_ref(), AZURE_MONITOR);

        let line = b"<134>Feb 10 12:00:00 fw CEF:0|V|P|1|100|Blocked|5|src=192.0.2.1";
        let stored = StoredPayload::new(line);
        assert!(!stored.compressed, "a short line is kept as it came");
        assert_eq!(seal::open(&stored.sealed).expect("opens"), line.as_slice());
    }

    #[test]
    fn a_damaged_block_is_reported_not_misread() {
        let stored = StoredPayload::new(AZURE_MONITOR);
        let block = seal::open(&stored.sealed).expect("opens");
        let cut = &block[..block.len() - 8];
        assert!(matches!(
            unpacked(COMPRESSED, cut),
            Err(Damage::Compressed(_))
        ));
        let huge = [0xff, 0xff, 0xff, 0x7f, 0];
        assert!(matches!(
            unpacked(COMPRESSED, &huge),
            Err(Damage::Compressed(_))
        ));
        assert!(matches!(
            unpacked(COMPRESSED, b"z"),
            Err(Damage::Compressed(_))
        ));
    }
}
