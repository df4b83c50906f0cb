//! Alert pollers: what the orchestrator pulls alerts from, read from the `--pollers` file.
//! Pure: the file is read by the caller.
//!
//! ```yaml
//! pollers:
//!   - name: sentinel-soc                 # shown by `riposte alerts sources`
//!     kind: sentinel_incidents           # or defender_alerts (Microsoft Graph alerts_v2)
//!     workspace: /subscriptions/.../providers/Microsoft.OperationalInsights/workspaces/law-soc
//!     every: 1m                          # how often to look (default 1m)
//!     settle: 1m                         # only changes at least this old (default 1m)
//!     look_back: 1d                      # how far the first poll looks back (default 1d)
//!     page_size: 50                      # items per page (default 50)
//!     timeout: 1m                        # one page's fetch (default 1m)
//!     labels: {site: azure}              # which workers may poll it (default any)
//! ```
//!
//! A poller runs on a worker that offers its kind's action (`sentinel.list_incidents`,
//! `defender.list_alerts`) and carries its labels: the orchestrator holds no cloud
//! credential.

use std::collections::BTreeMap;
use std::time::Duration;

use riposte_ingest::Format;
use serde::Deserialize;

/// Most pollers in one file.
pub const POLLERS_MAX: usize = 64;
/// Largest page a poller may ask for.
pub const PAGE_SIZE_MAX: u32 = 100;

/// What a poller pulls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Microsoft Sentinel incidents of one workspace, by `lastModifiedTimeUtc`.
    SentinelIncidents,
    /// Microsoft Graph security alerts (`/security/alerts_v2`), by `lastUpdateDateTime`.
    DefenderAlerts,
}

impl Kind {
    /// Its name in the file.
    pub fn name(self) -> &'static str {
        match self {
            Kind::SentinelIncidents => "sentinel_incidents",
            Kind::DefenderAlerts => "defender_alerts",
        }
    }

    /// The worker action that fetches one page.
    pub fn action(self) -> &'static str {
        match self {
            Kind::SentinelIncidents => "sentinel.list_incidents",
            Kind::DefenderAlerts => "defender.list_alerts",
        }
    }

    /// How the orchestrator reads one item of a page.
    pub fn format(self) -> Format {
        match self {
            Kind::SentinelIncidents => Format::Sentinel,
            Kind::DefenderAlerts => Format::GraphAlert,
        }
    }

    /// The source name its alerts are stored under.
    pub fn source(self) -> &'static str {
        match self {
            Kind::SentinelIncidents => "sentinel",
            Kind::DefenderAlerts => "defender",
        }
    }

    /// Whether a page comes ordered by modification time (then the cursor moves with each
    /// page, not only at the end of a window).
    pub fn ordered(self) -> bool {
        matches!(self, Kind::SentinelIncidents)
    }

    /// Where an item (as the format reads it) says when it was last modified.
    pub fn modified_at(self, raw: &serde_json::Value) -> Option<&str> {
        let field = match self {
            Kind::SentinelIncidents => raw.pointer("/object/properties/lastModifiedTimeUtc"),
            Kind::DefenderAlerts => raw.get("lastUpdateDateTime"),
        };
        field?.as_str()
    }
}

/// One poller.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Poller {
    pub name: String,
    pub kind: Kind,
    /// The Log Analytics workspace (ARM id) of a Sentinel poller.
    #[serde(default)]
    pub workspace: Option<String>,
    #[serde(default = "minute", deserialize_with = "duration")]
    pub every: Duration,
    #[serde(default = "minute", deserialize_with = "duration")]
    pub settle: Duration,
    #[serde(default = "day", deserialize_with = "duration")]
    pub look_back: Duration,
    #[serde(default = "page_size")]
    pub page_size: u32,
    #[serde(default = "minute", deserialize_with = "duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A duration as humans write it (`30s`, `5m`, `1d`).
fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(serde::de::Error::custom)
}

fn minute() -> Duration {
    Duration::from_secs(60)
}

fn day() -> Duration {
    Duration::from_secs(24 * 3600)
}

fn page_size() -> u32 {
    50
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    pollers: Vec<Poller>,
}

/// Why a pollers file does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct InvalidPollers(String);

/// Parses a pollers file: every poller named once, a Sentinel poller with its workspace,
/// durations and page sizes within bounds.
pub fn parse(text: &str) -> Result<Vec<Poller>, InvalidPollers> {
    let file: File = marked_yaml::from_yaml(0, text).map_err(|e| InvalidPollers(e.to_string()))?;
    let bad = |why: String| Err(InvalidPollers(why));
    if file.pollers.len() > POLLERS_MAX {
        return bad(format!(
            "{} pollers exceed {POLLERS_MAX}",
            file.pollers.len()
        ));
    }
    let mut names = std::collections::BTreeSet::new();
    for p in &file.pollers {
        let name_ok = !p.name.is_empty()
            && p.name.len() <= 64
            && p.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return bad(format!(
                "poller name `{}` must be 1 to 64 letters, digits, `-` or `_`",
                p.name
            ));
        }
        if !names.insert(p.name.as_str()) {
            return bad(format!("poller `{}` is named twice", p.name));
        }
        match (p.kind, &p.workspace) {
            (Kind::SentinelIncidents, None) => {
                return bad(format!(
                    "poller `{}`: a sentinel_incidents poller needs `workspace` (the ARM id of \
                     its Log Analytics workspace)",
                    p.name
                ));
            }
            (Kind::DefenderAlerts, Some(_)) => {
                return bad(format!(
                    "poller `{}`: a defender_alerts poller takes no `workspace`",
                    p.name
                ));
            }
            _ => {}
        }
        if p.every < Duration::from_secs(1) || p.timeout < Duration::from_secs(1) {
            return bad(format!(
                "poller `{}`: `every` and `timeout` must be at least 1s",
                p.name
            ));
        }
        if !(1..=PAGE_SIZE_MAX).contains(&p.page_size) {
            return bad(format!(
                "poller `{}`: `page_size` must be 1 to {PAGE_SIZE_MAX}",
                p.name
            ));
        }
    }
    Ok(file.pollers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_reads_with_its_defaults_and_its_mistakes_are_named() {
        let pollers = parse(
            "pollers:\n  - name: soc\n    kind: sentinel_incidents\n    workspace: /subscriptions/x\n    every: 30s\n  - name: xdr\n    kind: defender_alerts\n",
        )
        .unwrap();
        assert_eq!(pollers[0].every, Duration::from_secs(30));
        assert_eq!(pollers[1].settle, Duration::from_secs(60));
        assert_eq!(pollers[1].page_size, 50);
        assert_eq!(pollers[1].kind.action(), "defender.list_alerts");
        let cases = [
            (
                "pollers:\n  - name: soc\n    kind: sentinel_incidents\n",
                "poller `soc`: a sentinel_incidents poller needs `workspace`",
            ),
            (
                "pollers:\n  - name: a\n    kind: defender_alerts\n  - name: a\n    kind: defender_alerts\n",
                "poller `a` is named twice",
            ),
            (
                "pollers:\n  - name: a b\n    kind: defender_alerts\n",
                "poller name `a b` must be",
            ),
            (
                "pollers:\n  - name: a\n    kind: defender_alerts\n    page_size: 500\n",
                "`page_size` must be 1 to 100",
            ),
            (
                "pollers:\n  - name: a\n    kind: splunk\n",
                "unknown variant",
            ),
        ];
        for (text, want) in cases {
            let got = parse(text).unwrap_err().to_string();
            assert!(got.contains(want), "{got}");
        }
    }
}
