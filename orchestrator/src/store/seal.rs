//! Every value the store writes carries a checksum, verified on every read.
//!
//! A sealed value is `0xFF | CRC-32 of the payload (u32 LE) | payload`. `0xFF` never starts a
//! JSON text, a UUID v7 of this century or a small big-endian number, so a value written before
//! checksums (store format 2 and older) is told apart from a sealed one, and the migration
//! that seals them can be interrupted and resumed. A byte changed after the write, anywhere in
//! the payload, no longer matches: the record is reported as damaged with its key instead of
//! being read as a different, valid record (an IP that is not the one that was blocked).
//!
//! Not sealed: `settings/format` (read before the format is known) and the values of the
//! index trees, which are empty (their keys are the data).

/// The first byte of a sealed value.
const MARK: u8 = 0xFF;
const HEADER: usize = 5;

/// Why a value does not open.
#[derive(Debug, thiserror::Error)]
pub enum Damage {
    #[error("checksum mismatch: the record changed after it was written")]
    Checksum,
    #[error("no checksum: not a record this store wrote")]
    Unsealed,
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("the stored payload does not read back: {0}")]
    Payload(String),
}

/// `payload` with its checksum.
pub(super) fn seal(payload: &[u8]) -> Vec<u8> {
    let mut sealed = header(payload.len());
    sealed.extend_from_slice(payload);
    checksummed(sealed)
}

/// `value`'s JSON with its checksum, written in place (no second copy of the record).
pub(super) fn seal_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut sealed = header(256);
    serde_json::to_writer(&mut sealed, value).expect("a stored record serializes");
    checksummed(sealed)
}

/// A sealed value's header, its checksum still blank, with room for `payload_bytes` after it.
fn header(payload_bytes: usize) -> Vec<u8> {
    let mut sealed = Vec::with_capacity(HEADER + payload_bytes);
    sealed.push(MARK);
    sealed.extend_from_slice(&[0; HEADER - 1]);
    sealed
}

/// `sealed` with the checksum of the payload after its header filled in.
fn checksummed(mut sealed: Vec<u8>) -> Vec<u8> {
    let sum = crc32fast::hash(&sealed[HEADER..]);
    sealed[1..HEADER].copy_from_slice(&sum.to_le_bytes());
    sealed
}

/// The payload of a sealed value, once its checksum matches.
pub(super) fn open(value: &[u8]) -> Result<&[u8], Damage> {
    if value.len() < HEADER || value[0] != MARK {
        return Err(Damage::Unsealed);
    }
    let stored = u32::from_le_bytes(value[1..HEADER].try_into().expect("four bytes"));
    let payload = &value[HEADER..];
    match crc32fast::hash(payload) == stored {
        true => Ok(payload),
        false => Err(Damage::Checksum),
    }
}

/// Whether a value is sealed already (the migration leaves those alone).
pub(super) fn is_sealed(value: &[u8]) -> bool {
    value.first() == Some(&MARK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_and_any_flipped_bit_is_caught() {
        let payload = br#"{"ip":"203.0.113.7"}"#;
        let sealed = seal(payload);
        assert_eq!(open(&sealed).expect("opens"), payload);
        for byte in 0..sealed.len() {
            for bit in 0..8 {
                let mut damaged = sealed.clone();
                damaged[byte] ^= 1 << bit;
                assert!(open(&damaged).is_err(), "byte {byte} bit {bit}");
            }
        }
        assert!(matches!(open(payload), Err(Damage::Unsealed)));
        assert!(matches!(open(&[]), Err(Damage::Unsealed)));
    }

    #[test]
    fn a_record_sealed_in_place_is_its_json_sealed() {
        let record = serde_json::json!({"ip": "203.0.113.7", "n": [1, 2]});
        let json = serde_json::to_vec(&record).expect("JSON");
        assert_eq!(seal_json(&record), seal(&json));
    }
}
