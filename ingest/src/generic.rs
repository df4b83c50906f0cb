//! Generic JSON alerts with a configurable field mapping ([`GenericMapping`]).
//!
//! A mapping names, by path, where each part of the alert is. A path is a JSON pointer
//! (`/data/alert id`, RFC 6901 `~0`/`~1` escapes) or dotted (`data.alertId`); object keys
//! match case-insensitively (exact first). On an array, a numeric segment picks an element
//! and any other segment applies to every element, so `events.src_ip` reads the `src_ip` of
//! each event (entity fields take them all, scalar fields the first).
//!
//! A payload is one alert, or (with `alerts`, or a top-level array) one per element, at most
//! [`ALERTS_PER_PAYLOAD_MAX`]. Severity: the mapping's `severity_map` (keys compared
//! lowercase), else a name, `Sev0`..`Sev4` or a CEF number 0–10. Time: RFC 3339 or epoch ms.
//! The dedup hint is the `dedup` field, else the id.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::alert::{self, Account, Alert, Entities, Host, Role, Severity, Source, Status};
use super::json::{self, get};
use super::{ALERTS_PER_PAYLOAD_MAX, Error, time};

/// Longest path text, in bytes.
pub const PATH_BYTES_MAX: usize = 256;
/// Most segments in one path.
pub const PATH_SEGMENTS_MAX: usize = 16;
/// Most entity fields of one kind in a mapping.
pub const ENTITY_FIELDS_MAX: usize = 32;
/// Most values one path may fan out to.
const FAN_OUT_MAX: usize = 1024;

/// Why a mapping was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("invalid mapping: {0}")]
    Json(String),
    #[error("invalid path {path:?}: {reason}")]
    Path { path: String, reason: &'static str },
    #[error("{count} {kind} fields exceed {max}")]
    TooManyFields {
        kind: &'static str,
        count: usize,
        max: usize,
    },
}

/// A validated path into a JSON payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FieldPath {
    text: String,
    segments: Vec<String>,
}

impl FieldPath {
    /// Parses a JSON pointer (leading `/`) or a dotted path.
    pub fn parse(text: &str) -> Result<Self, MappingError> {
        let bad = |reason| MappingError::Path {
            path: alert::truncate(text, 64),
            reason,
        };
        if text.is_empty() || text.len() > PATH_BYTES_MAX {
            return Err(bad("must be 1 to 256 bytes"));
        }
        let segments: Vec<String> = match text.strip_prefix('/') {
            Some(pointer) => pointer
                .split('/')
                .map(|s| s.replace("~1", "/").replace("~0", "~"))
                .collect(),
            None => text.split('.').map(str::to_string).collect(),
        };
        if segments.iter().any(String::is_empty) {
            return Err(bad("has an empty segment"));
        }
        if segments.len() > PATH_SEGMENTS_MAX {
            return Err(bad("has more than 16 segments"));
        }
        Ok(Self {
            text: text.to_string(),
            segments,
        })
    }

    /// Every value the path reaches in `value` (several when it crosses arrays).
    pub fn resolve<'a>(&self, value: &'a Value) -> Vec<&'a Value> {
        let mut current = vec![value];
        for segment in &self.segments {
            let mut next = Vec::new();
            for v in current {
                step(v, segment, &mut next);
            }
            next.truncate(FAN_OUT_MAX);
            current = next;
        }
        current
    }

    fn first<'a>(&self, value: &'a Value) -> Option<&'a Value> {
        self.resolve(value).into_iter().next()
    }
}

fn step<'a>(value: &'a Value, segment: &str, out: &mut Vec<&'a Value>) {
    match value {
        Value::Object(_) => out.extend(get(value, segment)),
        Value::Array(items) => match segment.parse::<usize>() {
            Ok(i) => out.extend(items.get(i)),
            Err(_) => items
                .iter()
                .take(FAN_OUT_MAX)
                .for_each(|item| out.extend(get(item, segment))),
        },
        _ => {}
    }
}

impl TryFrom<String> for FieldPath {
    type Error = MappingError;
    fn try_from(text: String) -> Result<Self, MappingError> {
        Self::parse(&text)
    }
}

impl From<FieldPath> for String {
    fn from(path: FieldPath) -> Self {
        path.text
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A path to entity values and the role they play.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityField {
    pub path: FieldPath,
    #[serde(default)]
    pub role: Option<Role>,
}

/// Where the parts of an alert are in a generic JSON payload. Unknown keys are refused
/// (this is our configuration, not a vendor's payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenericMapping {
    /// The array of alerts, when a payload carries several.
    #[serde(default)]
    pub alerts: Option<FieldPath>,
    pub id: FieldPath,
    pub title: FieldPath,
    #[serde(default)]
    pub description: Option<FieldPath>,
    #[serde(default)]
    pub severity: Option<FieldPath>,
    /// Vendor severity values (compared lowercase) → ours.
    #[serde(default)]
    pub severity_map: BTreeMap<String, Severity>,
    #[serde(default)]
    pub time: Option<FieldPath>,
    #[serde(default)]
    pub status: Option<FieldPath>,
    #[serde(default)]
    pub dedup: Option<FieldPath>,
    #[serde(default)]
    pub ips: Vec<EntityField>,
    #[serde(default)]
    pub accounts: Vec<EntityField>,
    #[serde(default)]
    pub hosts: Vec<EntityField>,
}

impl GenericMapping {
    /// Parses and validates a mapping from its JSON form, e.g.
    /// `{"id": "alert.id", "title": "/alert/name", "ips": [{"path": "alert.src", "role": "attacker"}]}`.
    pub fn from_json(text: &str) -> Result<Self, MappingError> {
        let mut mapping: Self =
            serde_json::from_str(text).map_err(|e| MappingError::Json(e.to_string()))?;
        mapping.validate()?;
        mapping.severity_map = std::mem::take(&mut mapping.severity_map)
            .into_iter()
            .map(|(k, v)| (k.to_lowercase(), v))
            .collect();
        Ok(mapping)
    }

    fn validate(&self) -> Result<(), MappingError> {
        for (kind, fields) in [
            ("ip", &self.ips),
            ("account", &self.accounts),
            ("host", &self.hosts),
        ] {
            if fields.len() > ENTITY_FIELDS_MAX {
                return Err(MappingError::TooManyFields {
                    kind,
                    count: fields.len(),
                    max: ENTITY_FIELDS_MAX,
                });
            }
        }
        Ok(())
    }

    fn severity_of(&self, text: &str) -> Option<Severity> {
        self.severity_map
            .get(&text.trim().to_lowercase())
            .copied()
            .or_else(|| Severity::from_name(text))
            .or_else(|| Severity::from_azure_monitor(text))
            .or_else(|| {
                text.trim()
                    .parse::<u8>()
                    .ok()
                    .and_then(|_| Severity::from_cef(text))
            })
    }
}

/// Parses a generic JSON payload with `mapping`.
pub fn parse(mapping: &GenericMapping, bytes: &[u8]) -> Result<Vec<Alert>, Error> {
    let raw = json::load(bytes)?;
    let items: Vec<Value> = match (&mapping.alerts, &raw) {
        (Some(path), _) => match path.first(&raw) {
            Some(Value::Array(items)) => items.clone(),
            Some(_) => {
                return Err(Error::WrongType {
                    field: "mapped alerts",
                    expected: "an array",
                });
            }
            None => return Err(Error::Missing("mapped alerts")),
        },
        (None, Value::Array(items)) => items.clone(),
        (None, _) => vec![raw],
    };
    if items.len() > ALERTS_PER_PAYLOAD_MAX {
        return Err(Error::TooManyAlerts {
            count: items.len(),
            max: ALERTS_PER_PAYLOAD_MAX,
        });
    }
    items
        .into_iter()
        .map(|item| parse_one(mapping, item))
        .collect()
}

fn parse_one(mapping: &GenericMapping, raw: Value) -> Result<Alert, Error> {
    let at = |path: &Option<FieldPath>| path.as_ref().and_then(|p| p.first(&raw));
    let id = json::required(mapping.id.first(&raw), "mapped id", alert::ID_BYTES_MAX)?;
    let title = json::required(
        mapping.title.first(&raw),
        "mapped title",
        alert::TITLE_BYTES_MAX,
    )?;
    let description = json::optional(
        at(&mapping.description),
        "mapped description",
        alert::DESCRIPTION_BYTES_MAX,
    )?;
    let severity = json::scalar(at(&mapping.severity), "mapped severity")?
        .and_then(|s| mapping.severity_of(&s));
    let status = json::scalar(at(&mapping.status), "mapped status")?;
    let dedup = json::optional(at(&mapping.dedup), "mapped dedup", alert::ID_BYTES_MAX)?;
    let time_ms = at(&mapping.time).and_then(time::any_ms);
    let entities = entities(mapping, &raw)?;
    let alert = Alert {
        dedup_hint: Some(dedup.unwrap_or_else(|| id.clone())),
        id,
        source: Source::Generic,
        time_ms,
        severity,
        title,
        description,
        status: status.as_deref().map(Status::from_vendor),
        entities,
        raw: raw.into(),
        note: None,
        revision: None,
    };
    alert::check_alert(&alert)?;
    Ok(alert)
}

fn entities(mapping: &GenericMapping, raw: &Value) -> Result<Entities, Error> {
    let mut entities = Entities::default();
    let values = |field: &EntityField| -> Vec<String> {
        field
            .path
            .resolve(raw)
            .into_iter()
            .flat_map(|v| match v {
                Value::Array(items) => items.iter().filter_map(|i| json::text(Some(i))).collect(),
                other => json::text(Some(other)).into_iter().collect::<Vec<_>>(),
            })
            .collect()
    };
    for field in &mapping.ips {
        for v in values(field) {
            entities.add_ip(&v, field.role)?;
        }
    }
    for field in &mapping.accounts {
        for v in values(field) {
            entities.add_account(Account::from_text(&v, field.role))?;
        }
    }
    for field in &mapping.hosts {
        for v in values(field) {
            let name = v.trim();
            entities.add_host(Host {
                name: name.split('.').next().unwrap_or(name).to_string(),
                fqdn: name.contains('.').then(|| name.to_string()),
                azure_id: None,
                role: field.role,
            })?;
        }
    }
    Ok(entities)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths() {
        let v = json!({"a": {"B": [{"c": 1}, {"c": 2}], "x/y": 3}});
        let p = |s| FieldPath::parse(s).unwrap();
        assert_eq!(p("a.b.c").resolve(&v), vec![&json!(1), &json!(2)]);
        assert_eq!(p("a.B.1.c").resolve(&v), vec![&json!(2)]);
        assert_eq!(p("/a/x~1y").resolve(&v), vec![&json!(3)]);
        assert!(p("a.nothing").resolve(&v).is_empty());
        for bad in ["", "a..b", "/a//b", "."] {
            assert!(FieldPath::parse(bad).is_err(), "{bad}");
        }
        let long = vec!["a"; 17].join(".");
        assert!(FieldPath::parse(&long).is_err());
    }

    #[test]
    fn mapping_is_validated() {
        let err = GenericMapping::from_json(r#"{"id": "a", "title": "b", "colour": "x"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid mapping: unknown field `colour`"),
            "{err}"
        );
        let err = GenericMapping::from_json(r#"{"id": "a..b", "title": "b"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("has an empty segment"), "{err}");
    }
}
