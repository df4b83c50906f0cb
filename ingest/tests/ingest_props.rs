//! Properties of the ingest core: TCP framing does not depend on how the stream is
//! chunked, and CEF extension escaping round-trips.

use proptest::prelude::*;
use riposte_ingest::cef;
use riposte_ingest::framing::{Frame, FrameDecoder, FrameError};

/// A frame on the wire: octet-counted (any bytes) or a line (starts with `<`, no LF/NUL/CR).
#[derive(Debug, Clone)]
enum Wire {
    Counted(Vec<u8>),
    Line(Vec<u8>),
}

fn wire() -> impl Strategy<Value = Wire> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 1..80).prop_map(Wire::Counted),
        proptest::collection::vec(
            any::<u8>().prop_filter("no trailer", |b| !matches!(b, b'\n' | b'\r' | 0)),
            0..80
        )
        .prop_map(|mut body| {
            body.insert(0, b'<');
            Wire::Line(body)
        }),
    ]
}

fn encode(frames: &[Wire]) -> Vec<u8> {
    let mut stream = Vec::new();
    for frame in frames {
        match frame {
            Wire::Counted(m) => {
                stream.extend_from_slice(format!("{} ", m.len()).as_bytes());
                stream.extend_from_slice(m);
            }
            Wire::Line(m) => {
                stream.extend_from_slice(m);
                stream.push(b'\n');
            }
        }
    }
    stream
}

fn decode(stream: &[u8], cuts: &[usize], max: usize) -> Vec<Result<Frame, FrameError>> {
    let mut decoder = FrameDecoder::new(max);
    let mut out = Vec::new();
    let mut at = 0;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    points.sort_unstable();
    for point in points.into_iter().chain([stream.len()]) {
        out.extend(decoder.push(&stream[at..point]));
        at = point;
    }
    out.extend(decoder.finish());
    out
}

proptest! {
    #[test]
    fn framing_ignores_chunking(
        frames in proptest::collection::vec(wire(), 0..12),
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
        max in 1usize..100,
    ) {
        let stream = encode(&frames);
        let whole = decode(&stream, &[], max);
        let chunked = decode(&stream, &cuts, max);
        prop_assert_eq!(&whole, &chunked);
        if max >= 81 {
            let messages: Vec<Vec<u8>> = whole.into_iter().map(|f| f.unwrap().message).collect();
            let want: Vec<Vec<u8>> = frames
                .iter()
                .map(|f| match f { Wire::Counted(m) | Wire::Line(m) => m.clone() })
                .collect();
            prop_assert_eq!(messages, want);
        }
    }

    #[test]
    fn cef_extension_escaping_round_trips(value in any::<String>(), last in "[a-z0-9 ]{0,8}[a-z0-9]") {
        let ext = format!("first={} second={}", cef::escape_value(&value), cef::escape_value(&last));
        let pairs = cef::parse_extension(&ext).unwrap();
        prop_assert_eq!(pairs.len(), 2);
        prop_assert_eq!(&pairs["first"], &value);
        prop_assert_eq!(&pairs["second"], &last);
    }

    #[test]
    fn cef_header_escaping_round_trips(name in any::<String>(), vendor in any::<String>()) {
        let line = format!("CEF:0|{}|P|1|sig|{}|5|k=v", cef::escape_header(&vendor), cef::escape_header(&name));
        let parsed = cef::parse(&line).unwrap();
        prop_assert_eq!(parsed.device_vendor, vendor);
        prop_assert_eq!(parsed.name, name);
        prop_assert_eq!(&parsed.extensions["k"], "v");
    }
}
