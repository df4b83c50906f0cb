//! Alert ingestion over the recorded fixtures and hostile inputs: each fixture parses to
//! its expected normalized alert, each hostile input to a specific error, nothing panics.

use expect_test::{Expect, expect};
use riposte_ingest::framing::{FrameDecoder, Framing};
use riposte_ingest::{self as ingest, Alert, Format, GenericMapping, Source};
use serde_json::{Value, json};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/ingest/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The alert without `raw`, as pretty JSON, for snapshots.
fn normalized(alert: &Alert) -> String {
    let mut v = serde_json::to_value(alert).unwrap();
    v.as_object_mut().unwrap().remove("raw");
    serde_json::to_string_pretty(&v).unwrap()
}

fn check_one(format: &Format, bytes: &[u8], expect: Expect) {
    let alerts = ingest::parse(format, bytes).unwrap();
    assert_eq!(alerts.len(), 1);
    expect.assert_eq(&normalized(&alerts[0]));
}

fn error(format: &Format, bytes: &[u8]) -> String {
    ingest::parse(format, bytes).unwrap_err().to_string()
}

#[test]
fn azure_monitor_log_alert() {
    check_one(
        &Format::AzureMonitor,
        &fixture("azure-monitor-common-log-alert.json"),
        expect![[r#"
            {
              "dedup_hint": "/subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e/providers/Microsoft.AlertsManagement/alerts/eeeeeeee-4444-5555-6666-ffffffffffff/Fired",
              "description": "More than 20 failed SSH logins from one source IP in 10 minutes",
              "entities": {
                "accounts": [],
                "hosts": [
                  {
                    "azure_id": null,
                    "fqdn": null,
                    "name": "vm-web-01",
                    "role": null
                  }
                ],
                "ips": [
                  {
                    "address": "203.0.113.45",
                    "role": "attacker"
                  }
                ]
              },
              "id": "/subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e/providers/Microsoft.AlertsManagement/alerts/eeeeeeee-4444-5555-6666-ffffffffffff",
              "severity": "high",
              "source": "azure_monitor",
              "status": "fired",
              "time_ms": 1736935503626,
              "title": "ssh-bruteforce-linux"
            }"#]],
    );
}

#[test]
fn sentinel_incident() {
    check_one(
        &Format::Sentinel,
        &fixture("sentinel-incident-trigger.json"),
        expect![[r#"
            {
              "dedup_hint": "/subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e/resourcegroups/rg-soc/providers/microsoft.operationalinsights/workspaces/law-soc/providers/microsoft.securityinsights/incidents/73e01a99-5cd7-4139-a149-9f2736ff2ab5/New",
              "description": "More than 20 failed SSH logins from one source IP in 10 minutes",
              "entities": {
                "accounts": [
                  {
                    "aad_id": "22223333-cccc-4444-dddd-5555eeee6666",
                    "domain": null,
                    "name": "alice",
                    "role": null,
                    "sid": null,
                    "upn": "alice@contoso.com"
                  }
                ],
                "hosts": [
                  {
                    "azure_id": "/subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/vm-web-01",
                    "fqdn": null,
                    "name": "vm-web-01",
                    "role": null
                  }
                ],
                "ips": [
                  {
                    "address": "203.0.113.45",
                    "role": null
                  }
                ]
              },
              "id": "/subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e/resourceGroups/rg-soc/providers/Microsoft.OperationalInsights/workspaces/law-soc/providers/Microsoft.SecurityInsights/Incidents/73e01a99-5cd7-4139-a149-9f2736ff2ab5",
              "severity": "high",
              "source": "sentinel",
              "status": "new",
              "time_ms": 1736934903000,
              "title": "SSH brute force against vm-web-01"
            }"#]],
    );
}

#[test]
fn defender_alert_single_and_listed() {
    let body = fixture("defender-alert.json");
    check_one(
        &Format::Defender,
        &body,
        expect![[r#"
        {
          "dedup_hint": "2518765996949954086_2325cf9e-42a2-4f4f-a1a1-b8dac2a6b2b9/Active",
          "description": "Analysis of authentication logs shows a successful login after repeated failed attempts from 203.0.113.50.",
          "entities": {
            "accounts": [
              {
                "aad_id": null,
                "domain": "VM-WEB-02",
                "name": "azureuser",
                "role": null,
                "sid": null,
                "upn": null
              }
            ],
            "hosts": [
              {
                "azure_id": "/subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/vm-web-02",
                "fqdn": "vm-web-02.internal.example.com",
                "name": "vm-web-02",
                "role": "victim"
              }
            ],
            "ips": [
              {
                "address": "203.0.113.50",
                "role": null
              }
            ]
          },
          "id": "/subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e/resourceGroups/rg-web/providers/Microsoft.Security/locations/westeurope/alerts/2518765996949954086_2325cf9e-42a2-4f4f-a1a1-b8dac2a6b2b9",
          "severity": "high",
          "source": "defender",
          "status": "active",
          "time_ms": 1736934600000,
          "title": "Successful SSH brute force attack"
        }"#]],
    );
    let one: Value = serde_json::from_slice(&body).unwrap();
    let listed = serde_json::to_vec(&json!({ "value": [one.clone(), one] })).unwrap();
    let alerts = ingest::parse(&Format::Defender, &listed).unwrap();
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0].raw, alerts[1].raw);
    assert_eq!(
        alerts[0].entities.ips[0].address.to_string(),
        "203.0.113.50"
    );
}

#[test]
fn defender_flat_pascal_case() {
    let body = br#"{"SystemAlertId": "x1", "AlertDisplayName": "Flat", "Severity": "low",
        "Status": "Dismissed", "StartTimeUtc": "2025-01-15T10:00:00Z",
        "Entities": [{"Type": "IP", "Address": "198.51.100.9"}]}"#;
    let alert = &ingest::parse(&Format::Defender, body).unwrap()[0];
    assert_eq!(alert.id, "x1");
    assert_eq!(alert.dedup_hint.as_deref(), Some("x1/Dismissed"));
    assert_eq!(alert.severity, Some(ingest::Severity::Low));
    assert!(!alert.status.unwrap().is_open());
    assert_eq!(alert.time_ms, Some(1_736_935_200_000));
    assert_eq!(alert.entities.ips.len(), 1);
}

fn mapping() -> GenericMapping {
    GenericMapping::from_json(
        r#"{
            "alerts": "detections",
            "id": "/detection id",
            "title": "rule.name",
            "severity": "rule.level",
            "severity_map": {"P1": "critical"},
            "time": "when",
            "ips": [{"path": "net.src", "role": "attacker"}, {"path": "net.dst", "role": "victim"}],
            "accounts": [{"path": "users"}],
            "hosts": [{"path": "device.name", "role": "victim"}]
        }"#,
    )
    .unwrap()
}

#[test]
fn generic_mapping() {
    let body = br#"{"detections": [
        {"detection id": 7, "rule": {"name": "Port scan", "level": "p1"}, "when": 1736935200000,
         "net": {"src": "203.0.113.60", "dst": ["198.51.100.1", "not-an-ip"]},
         "users": ["CONTOSO\\bob", "carol@contoso.com"], "device": {"name": "fw02.example.com"}},
        {"detection id": "8", "rule": {"name": "Second", "level": 9}, "when": "2025-01-15T10:00:00Z"}
    ]}"#;
    let alerts = ingest::parse(&Format::Generic(Box::new(mapping())), body).unwrap();
    assert_eq!(alerts.len(), 2);
    expect![[r#"
        {
          "dedup_hint": "7",
          "description": null,
          "entities": {
            "accounts": [
              {
                "aad_id": null,
                "domain": "CONTOSO",
                "name": "bob",
                "role": null,
                "sid": null,
                "upn": null
              },
              {
                "aad_id": null,
                "domain": null,
                "name": "carol@contoso.com",
                "role": null,
                "sid": null,
                "upn": "carol@contoso.com"
              }
            ],
            "hosts": [
              {
                "azure_id": null,
                "fqdn": "fw02.example.com",
                "name": "fw02",
                "role": "victim"
              }
            ],
            "ips": [
              {
                "address": "203.0.113.60",
                "role": "attacker"
              },
              {
                "address": "198.51.100.1",
                "role": "victim"
              }
            ]
          },
          "id": "7",
          "severity": "critical",
          "source": "generic",
          "status": null,
          "time_ms": 1736935200000,
          "title": "Port scan"
        }"#]]
    .assert_eq(&normalized(&alerts[0]));
    assert_eq!(alerts[1].id, "8");
    assert_eq!(alerts[1].severity, Some(ingest::Severity::Critical));
    assert_eq!(alerts[1].time_ms, Some(1_736_935_200_000));
}

/// The CEF corpus: `# case: ID` comments name the next line's case in the expected file.
fn cef_cases() -> Vec<(String, Vec<u8>)> {
    corpus("cef-samples.txt")
}

/// The messages of a corpus file, each named by the `# case: ID` comment before it.
fn corpus(name: &str) -> Vec<(String, Vec<u8>)> {
    let text = String::from_utf8(fixture(name)).unwrap();
    let mut cases = Vec::new();
    let mut id = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# case: ") {
            id = Some(rest.split_whitespace().next().unwrap().to_string());
        } else if !line.is_empty() && !line.starts_with('#') {
            cases.push((id.take().expect("a case id"), line.as_bytes().to_vec()));
        }
    }
    cases
}

/// The expected subset of `actual`: every key of `expected` (but framing ones) equal.
fn assert_subset(case: &str, part: &str, expected: &Value, actual: &Value) {
    for (key, want) in expected.as_object().unwrap() {
        if key == "octet_count" || key == "trailer" {
            continue;
        }
        assert_eq!(&actual[key], want, "{case}: {part}.{key}");
    }
}

/// One wire line through the right door: the octet-counted case through the TCP decoder.
fn message_of(line: &[u8]) -> (Vec<u8>, Option<usize>) {
    if !line[0].is_ascii_digit() {
        return (line.to_vec(), None);
    }
    let mut decoder = FrameDecoder::new(ingest::syslog::SYSLOG_MESSAGE_BYTES_MAX);
    let frames = decoder.push(line);
    assert_eq!(frames.len(), 1);
    let frame = frames.into_iter().next().unwrap().unwrap();
    assert_eq!(frame.framing, Framing::OctetCounted);
    let len = frame.message.len();
    (frame.message, Some(len))
}

#[test]
fn cef_samples_match_expected() {
    let expected: Value = serde_json::from_slice(&fixture("cef-samples.expected.json")).unwrap();
    let cases = cef_cases();
    assert_eq!(cases.len(), 5);
    for (id, line) in cases {
        let want = &expected["cases"][&id];
        assert!(want.is_object(), "{id} has an expected parse");
        let (message, octets) = message_of(&line);
        if let Some(count) = want["syslog"]["octet_count"].as_u64() {
            assert_eq!(octets, Some(count as usize), "{id}: octet count");
        }
        let alert = &ingest::parse(&Format::Syslog, &message).unwrap()[0];
        assert_eq!(alert.source, Source::Cef, "{id}");
        assert_eq!(&alert.raw.value()["cef"], &want["cef"], "{id}: cef");
        assert_subset(&id, "syslog", &want["syslog"], &alert.raw.value()["syslog"]);
        assert_eq!(alert.title, want["cef"]["name"].as_str().unwrap());
    }
}

/// Each sender quirk of `cef-quirks.txt` as a UDP datagram and as a TCP frame (newline
/// framing and octet counting) gives the alert `cef-quirks.expected.json` describes: CEF with
/// its name, severity and attacker address, or, when the CEF cannot be read, a plain syslog
/// alert saying why.
#[test]
fn cef_as_senders_write_it_is_read_as_rsyslog_reads_it() {
    let expected: Value = serde_json::from_slice(&fixture("cef-quirks.expected.json")).unwrap();
    let cases = corpus("cef-quirks.txt");
    assert_eq!(cases.len(), expected["cases"].as_object().unwrap().len());
    for (id, line) in cases {
        let want = &expected["cases"][&id];
        let mut tcp = FrameDecoder::new(ingest::syslog::SYSLOG_MESSAGE_BYTES_MAX);
        let mut stream = line.clone();
        stream.push(b'\n');
        stream.extend(format!("{} ", line.len()).as_bytes());
        stream.extend(&line);
        let frames: Vec<Vec<u8>> = tcp
            .push(&stream)
            .into_iter()
            .map(|f| f.unwrap().message)
            .collect();
        assert_eq!(frames, [line.clone(), line.clone()], "{id}: tcp framing");
        let alert = &ingest::parse(&Format::Syslog, &line).unwrap()[0];
        let raw = alert.raw.value();
        let actual = json!({
            "source": alert.source,
            "title": alert.title,
            "severity": alert.severity,
            "attacker": alert.entities.ips.iter().find(|ip| ip.role == Some(ingest::Role::Attacker)).map(|ip| ip.address.to_string()),
            "pri": raw["syslog"]["pri"],
            "pri_assumed": raw["syslog"]["pri_assumed"],
            "hostname": raw["syslog"]["hostname"],
            "vendor": raw["cef"]["deviceVendor"],
            "product": raw["cef"]["deviceProduct"],
            "note": alert.note,
        });
        for (key, value) in want.as_object().unwrap() {
            if key == "extensions" {
                for (ext, value) in value.as_object().unwrap() {
                    assert_eq!(
                        &raw["cef"]["extensions"][ext], value,
                        "{id}: extension {ext}"
                    );
                }
                continue;
            }
            assert_eq!(&actual[key], value, "{id}: {key} in {actual:#}");
        }
        if want.get("pri_assumed").is_none() {
            assert_eq!(actual["pri_assumed"], Value::Null, "{id}: a PRI was sent");
        }
    }
}

#[test]
fn cef_ssh_bruteforce_alert() {
    let line = b"<38>1 2025-01-15T10:00:00Z vm-web-01.example.com contoso-auth 2211 - - CEF:0|Contoso|LinuxAuth|1.0|sshd:failed|SSH authentication failure|7|rt=1736935200000 src=203.0.113.48 spt=40222 dst=198.51.100.20 dpt=22 suser=root duser=root act=failed cnt=25 shost=attacker.example.net dhost=vm-web-01 msg=25 failed attempts in 60s";
    check_one(
        &Format::Syslog,
        line,
        expect![[r#"
        {
          "dedup_hint": null,
          "description": "25 failed attempts in 60s",
          "entities": {
            "accounts": [
              {
                "aad_id": null,
                "domain": null,
                "name": "root",
                "role": "attacker",
                "sid": null,
                "upn": null
              },
              {
                "aad_id": null,
                "domain": null,
                "name": "root",
                "role": "victim",
                "sid": null,
                "upn": null
              }
            ],
            "hosts": [
              {
                "azure_id": null,
                "fqdn": "attacker.example.net",
                "name": "attacker",
                "role": "attacker"
              },
              {
                "azure_id": null,
                "fqdn": null,
                "name": "vm-web-01",
                "role": "victim"
              }
            ],
            "ips": [
              {
                "address": "203.0.113.48",
                "role": "attacker"
              },
              {
                "address": "198.51.100.20",
                "role": "victim"
              }
            ]
          },
          "id": "sha256:ddf0f1460e72a5238e4803fb6b4e8611",
          "severity": "high",
          "source": "cef",
          "status": null,
          "time_ms": 1736935200000,
          "title": "SSH authentication failure"
        }"#]],
    );
}

#[test]
fn octet_counted_stream_fixture_in_any_chunks() {
    let expected: Value = serde_json::from_slice(&fixture("cef-samples.expected.json")).unwrap();
    let frames = expected["streams"]["cef-tcp-octet-counted-stream.txt"]["frames"]
        .as_array()
        .unwrap();
    let stream = fixture("cef-tcp-octet-counted-stream.txt");
    for chunk in [1, 2, 7, 100, stream.len()] {
        let mut decoder = FrameDecoder::new(1024);
        let mut got = Vec::new();
        for piece in stream.chunks(chunk) {
            got.extend(decoder.push(piece));
        }
        assert!(decoder.finish().is_none());
        assert_eq!(got.len(), frames.len(), "chunk {chunk}");
        for (frame, want) in got.into_iter().zip(frames) {
            let frame = frame.unwrap();
            assert_eq!(
                frame.message.len() as u64,
                want["octet_count"].as_u64().unwrap()
            );
            let alert = &ingest::parse(&Format::Syslog, &frame.message).unwrap()[0];
            assert_eq!(&alert.raw.value()["cef"], &want["cef"]);
            assert_subset(
                "stream",
                "syslog",
                &want["syslog"],
                &alert.raw.value()["syslog"],
            );
        }
    }
}

const JSON_FORMATS: [Format; 3] = [Format::AzureMonitor, Format::Sentinel, Format::Defender];

#[test]
fn truncated_json_is_located() {
    let body = fixture("sentinel-incident-trigger.json");
    for format in JSON_FORMATS {
        let e = error(&format, &body[..100]);
        assert!(e.starts_with("invalid json at line 5 column "), "{e}");
        assert!(e.ends_with(": EOF while parsing a string"), "{e}");
    }
    assert_eq!(
        error(&Format::AzureMonitor, b"{\"data\": tru"),
        "invalid json at line 1 column 12: EOF while parsing a value"
    );
}

#[test]
fn wrong_types_are_named() {
    let cases: [(Format, &str, &str); 9] = [
        (
            Format::AzureMonitor,
            r#"{"data": []}"#,
            "data must be an object",
        ),
        (
            Format::AzureMonitor,
            r#"{"data": {}}"#,
            "missing data.essentials",
        ),
        (
            Format::AzureMonitor,
            r#"{"data": {"essentials": {"alertId": {}}}}"#,
            "essentials.alertId must be a string",
        ),
        (
            Format::AzureMonitor,
            r#"{"data": {"essentials": {"alertId": "a", "alertTargetIDs": "x"}}}"#,
            "essentials.alertTargetIDs must be an array",
        ),
        (
            Format::AzureMonitor,
            r#"{"schemaId": "other", "data": {}}"#,
            "unexpected schemaId \"other\" (want azureMonitorCommonAlertSchema)",
        ),
        (
            Format::Sentinel,
            r#"{"object": {"id": "i", "properties": {"title": ["x"]}}}"#,
            "object.properties.title must be a string",
        ),
        (
            Format::Sentinel,
            r#"{"object": {"id": "i", "properties": {"title": "t", "relatedEntities": {}}}}"#,
            "object.properties.relatedEntities must be an array",
        ),
        (Format::Defender, r#"[1]"#, "alert must be an object"),
        (
            Format::Defender,
            r#"{"properties": {"alertDisplayName": "t"}}"#,
            "missing properties.systemAlertId",
        ),
    ];
    for (format, body, want) in cases {
        assert_eq!(error(&format, body.as_bytes()), want, "{body}");
    }
}

#[test]
fn drifting_types_are_read() {
    let body = br#"{"data": {"essentials": {"alertId": 42, "severity": "sev2", "monitorCondition": "Resolved",
        "alertContext": null}, "alertContext": {"condition": {"allOf": [{"dimensions": [
        {"name": "ClientIP", "value": "2001:db8::7"}, {"name": "UserName", "value": "CONTOSO\\dave"},
        {"name": "n", "value": 5}]}]}}}}"#;
    let alert = &ingest::parse(&Format::AzureMonitor, body).unwrap()[0];
    assert_eq!(alert.id, "42");
    assert_eq!(alert.dedup_hint.as_deref(), Some("42/Resolved"));
    assert_eq!(alert.severity, Some(ingest::Severity::Medium));
    assert_eq!(alert.title, "Azure Monitor alert");
    assert_eq!(alert.entities.ips[0].role, Some(ingest::Role::Attacker));
    assert_eq!(
        alert.entities.accounts[0].domain.as_deref(),
        Some("CONTOSO")
    );
}

#[test]
fn huge_payloads_and_fields_are_refused() {
    let huge = vec![b' '; ingest::PAYLOAD_BYTES_MAX + 1];
    for format in JSON_FORMATS {
        assert_eq!(
            error(&format, &huge),
            "payload of 262145 bytes exceeds 262144"
        );
    }
    let title = "t".repeat(2000);
    let body = json!({"object": {"id": "i", "properties": {"title": title}}}).to_string();
    assert_eq!(
        error(&Format::Sentinel, body.as_bytes()),
        "object.properties.title of 2000 bytes exceeds 1024"
    );
    let entities: Vec<Value> = (0..300)
        .map(|i| json!({"kind": "Ip", "properties": {"address": format!("10.0.{}.{}", i / 256, i % 256)}}))
        .collect();
    let body =
        json!({"object": {"id": "i", "properties": {"title": "t", "relatedEntities": entities}}});
    assert_eq!(
        error(&Format::Sentinel, body.to_string().as_bytes()),
        "257 entities exceed 256"
    );
    let many: Vec<Value> = (0..101)
        .map(|i| json!({"systemAlertId": i, "alertDisplayName": "t"}))
        .collect();
    assert_eq!(
        error(&Format::Defender, json!(many).to_string().as_bytes()),
        "101 alerts in one payload exceed 100"
    );
}

#[test]
fn deep_nesting_hits_the_recursion_limit() {
    let depth = 10_000;
    let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    for format in [
        Format::AzureMonitor,
        Format::Sentinel,
        Format::Defender,
        Format::Generic(Box::new(mapping())),
    ] {
        assert_eq!(
            error(&format, body.as_bytes()),
            "invalid json at line 1 column 128: recursion limit exceeded"
        );
    }
}

#[test]
fn non_utf8_is_refused() {
    assert_eq!(
        error(&Format::Sentinel, b"{\"object\": \"\xff\"}"),
        "payload is not utf-8 (invalid byte at offset 12)"
    );
    assert_eq!(
        error(&Format::Syslog, b"<13>Jan 15 10:00:00 h CEF:0|\xc3|"),
        "payload is not utf-8 (invalid byte at offset 28)"
    );
    assert_eq!(
        error(&Format::Cef, b"CEF:0|\xfe"),
        "payload is not utf-8 (invalid byte at offset 6)"
    );
}

#[test]
fn cef_with_every_escape() {
    let line =
        br"CEF:1|V\|x|P\\y|1|s|N \\ \| n|Unknown|a=\= b=\\ c=\n d=\r e=p|q f=\x g=C:\\ h=end\\";
    let alert = &ingest::parse(&Format::Cef, line).unwrap()[0];
    let cef = &alert.raw.value()["cef"];
    assert_eq!(cef["deviceVendor"], "V|x");
    assert_eq!(cef["deviceProduct"], "P\\y");
    assert_eq!(cef["name"], "N \\ | n");
    let ext = &cef["extensions"];
    let want = json!({"a": "=", "b": "\\", "c": "\n", "d": "\r", "e": "p|q", "f": "\\x", "g": "C:\\", "h": "end\\"});
    assert_eq!(ext, &want);
    assert_eq!(alert.severity, None);
    assert!(
        alert.id.starts_with("sha256:") && alert.id.len() == 39,
        "{}",
        alert.id
    );
    assert_eq!(alert.dedup_hint, None);
}

#[test]
fn malformed_cef_is_refused_and_over_syslog_kept_as_plain_syslog_with_the_reason() {
    let cases: [(&[u8], &str); 3] = [
        (b"CEF:0|a|b|c|d", "invalid cef: header has 5 of 7 fields"),
        (
            b"CEF:x|a|b|c|d|e|5|",
            "invalid cef: unsupported version \"x\"",
        ),
        (
            b"CEF:|a|b|c|d|e|5|",
            "invalid cef: unsupported version \"\"",
        ),
    ];
    for (line, want) in cases {
        assert_eq!(error(&Format::Cef, line), want);
    }
    let alerts = ingest::parse(&Format::Syslog, b"<13>Jan 15 10:00:00 h CEF:0|only").unwrap();
    assert_eq!(alerts[0].source, Source::Syslog);
    assert_eq!(alerts[0].title, "CEF:0|only");
    assert_eq!(
        alerts[0].note.as_deref(),
        Some("not read as CEF: invalid cef: header has 2 of 7 fields")
    );
}

#[test]
fn syslog_over_the_limit() {
    let max = ingest::syslog::SYSLOG_MESSAGE_BYTES_MAX;
    let mut line = b"<13>Jan 15 10:00:00 h ".to_vec();
    line.resize(max + 1, b'x');
    assert_eq!(
        error(&Format::Syslog, &line),
        format!("payload of {} bytes exceeds {max}", max + 1)
    );
    let mut decoder = FrameDecoder::new(max);
    line.push(b'\n');
    line.extend_from_slice(b"<13>next\n");
    let out: Vec<_> = line.chunks(4096).flat_map(|c| decoder.push(c)).collect();
    assert_eq!(out.len(), 2);
    assert_eq!(
        out[0].as_ref().unwrap_err().to_string(),
        format!("line exceeds {max} bytes without a trailer")
    );
    assert_eq!(out[1].as_ref().unwrap().message, b"<13>next");
}

#[test]
fn octet_frames_split_across_chunks_and_bogus_counts() {
    let mut decoder = FrameDecoder::new(64);
    let mut out = Vec::new();
    for piece in [
        &b"1"[..],
        b"0",
        b" <13>",
        b"hello",
        b"!",
        b"9x <13>a\n",
        b"9 <1>b",
    ] {
        out.extend(decoder.push(piece));
    }
    let shown: Vec<String> = out
        .into_iter()
        .map(|r| match r {
            Ok(f) => String::from_utf8(f.message).unwrap(),
            Err(e) => e.to_string(),
        })
        .collect();
    assert_eq!(shown, ["<13>hello!", "bogus octet count \"9x\""]);
    assert_eq!(
        decoder.finish().map(|r| r.unwrap_err().to_string()),
        Some("stream ended inside an octet-counted frame (6 of 9 bytes)".into())
    );
}

#[test]
fn graph_security_alert_as_a_poller_pulls_it() {
    let path = format!(
        "{}/../test-support/fixtures/azure/graph-security-alert.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let body = std::fs::read(&path).unwrap();
    check_one(
        &Format::GraphAlert,
        &body,
        expect![[r#"
            {
              "dedup_hint": "da637578995287051192_756343937/new",
              "description": "Analysis of authentication logs shows a successful login after repeated failed attempts from 203.0.113.50.",
              "entities": {
                "accounts": [
                  {
                    "aad_id": null,
                    "domain": "VM-WEB-02",
                    "name": "azureuser",
                    "role": "victim",
                    "sid": null,
                    "upn": null
                  }
                ],
                "hosts": [
                  {
                    "azure_id": null,
                    "fqdn": "vm-web-02.internal.example.com",
                    "name": "vm-web-02",
                    "role": null
                  }
                ],
                "ips": [
                  {
                    "address": "203.0.113.50",
                    "role": "attacker"
                  }
                ]
              },
              "id": "da637578995287051192_756343937",
              "severity": "high",
              "source": "defender",
              "status": "new",
              "time_ms": 1768470600000,
              "title": "Successful SSH brute force attack"
            }"#]],
    );
    let one: Value = serde_json::from_slice(&body).unwrap();
    let page = serde_json::to_vec(&json!({ "value": [one.clone(), one] })).unwrap();
    assert_eq!(ingest::parse(&Format::GraphAlert, &page).unwrap().len(), 2);
    assert_eq!(
        error(&Format::GraphAlert, br#"{"id": "x"}"#),
        "missing title"
    );
}
