//! Fuzz target: arbitrary bytes through the TCP framing decoder (cut at a point taken from
//! the input), then every frame, and the whole input as one datagram, through the syslog
//! and CEF parsers. Any panic is a bug; errors are expected.
#![no_main]

use libfuzzer_sys::fuzz_target;
use riposte_ingest::{self as ingest, Format, framing::FrameDecoder};

fuzz_target!(|data: &[u8]| {
    let _ = ingest::parse(&Format::Syslog, data);
    let _ = ingest::parse(&Format::Cef, data);
    let cut = data
        .first()
        .map_or(0, |b| usize::from(*b) % (data.len() + 1));
    let mut decoder = FrameDecoder::new(512);
    let mut frames = decoder.push(&data[..cut]);
    frames.extend(decoder.push(&data[cut..]));
    frames.extend(decoder.finish());
    for frame in frames.into_iter().flatten() {
        let _ = ingest::parse(&Format::Syslog, &frame.message);
    }
});
