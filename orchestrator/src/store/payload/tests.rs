//! Packs: near copies shrink, packs stay bounded, an oversize payload is kept alone, and a
//! damaged pack (or a damaged payload of format 4) is reported rather than misread.

use super::*;
use crate::store::tests::stored_alert;

const AZURE_MONITOR: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../ingest/tests/fixtures/ingest/azure-monitor-common-log-alert.json"
));

/// Each alert's payload read back from `rows`, as [`read`] finds and opens it.
fn payloads_of(alerts: &[StoredAlert], rows: &[PayloadRow]) -> Vec<Vec<u8>> {
    alerts
        .iter()
        .map(|alert| {
            let id = alert.payload_id.expect("every alert points at its payload");
            let form = if alert.payload_index.is_some() {
                PACK
            } else {
                AS_RECEIVED
            };
            let row = rows
                .iter()
                .find(|row| row.key() == key(id, form))
                .expect("a row under the alert's payload id");
            check(row.key(), row.sealed()).expect("reads back");
            let bytes = seal::open(row.sealed()).expect("opens");
            payload_in(form, bytes, alert.payload_index).expect("holds the alert's payload")
        })
        .collect()
}

#[test]
fn a_storm_of_near_copies_packs_into_a_fraction_of_its_size() {
    // 16 of the 3.7 KB fixture fit in one pack.
    let sent: Vec<String> = (0..16)
        .map(|n| AZURE_MONITOR.replace("203.0.113.45", &format!("198.51.100.{n}")))
        .collect();
    let mut alerts: Vec<StoredAlert> = (0..16).map(|_| stored_alert()).collect();
    let payloads: Vec<(Range<usize>, &[u8])> = sent
        .iter()
        .enumerate()
        .map(|(n, p)| (n..n + 1, p.as_bytes()))
        .collect();
    let rows = pack(&mut alerts, &payloads);
    assert_eq!(rows.len(), 1, "one pack");
    assert_eq!(rows[0].key()[..ALERT_KEY_BYTES], *alerts[15].id.as_bytes());
    assert_eq!(
        rows[0].key()[ALERT_KEY_BYTES],
        PACK,
        "keyed after its last alert"
    );
    let received: usize = sent.iter().map(String::len).sum();
    let stored = rows[0].sealed().len();
    assert!(
        stored * 20 < received,
        "{received} bytes stored in {stored}"
    );
    let back = payloads_of(&alerts, &rows);
    assert!(back.iter().zip(&sent).all(|(b, s)| b == s.as_bytes()));
}

#[test]
fn packs_are_bounded_and_a_payload_larger_than_a_pack_is_kept_alone_as_received() {
    let half = vec![b'a'; PACK_BYTES_MAX / 2];
    let large = vec![b'b'; PACK_BYTES_MAX + 1];
    let mut alerts: Vec<StoredAlert> = (0..6).map(|_| stored_alert()).collect();
    let payloads: Vec<(Range<usize>, &[u8])> = vec![
        (0..2, &half), // one payload, two alerts
        (2..3, &half),
        (3..4, &half), // over the pack's bytes: a second pack
        (4..5, &large),
        (5..6, b"line"),
    ];
    let rows = pack(&mut alerts, &payloads);
    let forms: Vec<u8> = rows.iter().map(|r| r.key()[ALERT_KEY_BYTES]).collect();
    assert_eq!(forms, [PACK, PACK, AS_RECEIVED, PACK]);
    assert_eq!(alerts[0].payload_id, alerts[2].payload_id, "the first pack");
    assert_eq!(
        alerts[0].payload_index, alerts[1].payload_index,
        "one payload"
    );
    assert_eq!(alerts[4].payload_index, None, "alone");
    let back = payloads_of(&alerts, &rows);
    let expected: Vec<&[u8]> = vec![&half, &half, &half, &half, &large, b"line"];
    assert!(back.iter().zip(expected).all(|(b, e)| b == e));

    let small: Vec<StoredAlert> = (0..PACK_PAYLOADS_MAX + 1).map(|_| stored_alert()).collect();
    let mut small = small;
    let payloads: Vec<(Range<usize>, &[u8])> = (0..small.len())
        .map(|n| (n..n + 1, b"x".as_slice()))
        .collect();
    let rows = pack(&mut small, &payloads);
    assert_eq!(rows.len(), 2, "{PACK_PAYLOADS_MAX} payloads a pack at most");
}

#[test]
fn a_damaged_pack_is_reported_not_misread() {
    let mut alerts = [stored_alert(), stored_alert()];
    let rows = pack(
        &mut alerts,
        &[(0..1, AZURE_MONITOR.as_bytes()), (1..2, b"second")],
    );
    let block = seal::open(rows[0].sealed()).expect("opens").to_vec();
    let damaged = |bytes: &[u8]| {
        let sealed = seal::seal(bytes);
        matches!(check(rows[0].key(), &sealed), Err(Damage::Payload(_)))
    };
    assert!(
        matches!(payload_in(PACK, &block, Some(2)), Err(Damage::Payload(_))),
        "an index past the pack's end"
    );
    assert!(damaged(&block[..block.len() - 8]), "cut short");
    assert!(
        damaged(&[0xff, 0xff, 0xff, 0x7f, 0]),
        "a length over the bound"
    );
    assert!(damaged(b"k"), "no length");
    let content = |words: &[u32], tail: &[u8]| {
        let mut c: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        c.extend_from_slice(tail);
        lz4_flex::compress_prepend_size(&c)
    };
    assert!(damaged(&content(&[1, 10], b"short")), "a payload cut short");
    assert!(damaged(&content(&[1, 2], b"abc")), "bytes after the last");
    assert!(damaged(&content(&[9999], b"")), "too many payloads");
    assert!(damaged(&content(&[2, 1], b"a")), "lengths cut short");
    assert!(!damaged(&content(&[2, 1, 2], b"abc")), "a well-formed pack");

    // A payload compressed alone (store format 4) still reads and is still checked.
    let alone = lz4_flex::compress_prepend_size(AZURE_MONITOR.as_bytes());
    assert!(check(&key(uuid::Uuid::nil(), COMPRESSED), &seal::seal(&alone)).is_ok());
    let cut = seal::seal(&alone[..alone.len() - 8]);
    assert!(check(&key(uuid::Uuid::nil(), COMPRESSED), &cut).is_err());
}
