//! Fuzz target: arbitrary bytes through every JSON source (Azure Monitor, Sentinel,
//! Defender, generic with a mapping that reaches into arrays). Any panic is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use riposte_ingest::{self as ingest, Format, GenericMapping};

fuzz_target!(|data: &[u8]| {
    let mapping = GenericMapping::from_json(
        r#"{"id": "id", "title": "/title", "severity": "sev", "time": "t",
            "ips": [{"path": "e.ip", "role": "attacker"}], "accounts": [{"path": "e.user"}],
            "hosts": [{"path": "e.host"}]}"#,
    )
    .expect("the mapping is valid");
    for format in [
        Format::AzureMonitor,
        Format::Sentinel,
        Format::Defender,
        Format::Generic(Box::new(mapping)),
    ] {
        let _ = ingest::parse(&format, data);
    }
});
