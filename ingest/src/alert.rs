//! The one normalized alert model every source is read into, with its bounds.
//!
//! Severity mapping (each vendor's scale onto ours, by rank):
//!
//! | Ours          | Azure Monitor | CEF number | CEF name    | Sentinel / Defender | Syslog PRI severity |
//! |---------------|---------------|------------|-------------|---------------------|---------------------|
//! | Critical      | Sev0          | 9–10       | Very-High   | –                   | 0–2 (emerg–crit)    |
//! | High          | Sev1          | 7–8        | High        | High                | 3 (err)             |
//! | Medium        | Sev2          | 4–6        | Medium      | Medium              | 4 (warning)         |
//! | Low           | Sev3          | 0–3        | Low         | Low                 | 5 (notice)          |
//! | Informational | Sev4          | –          | –           | Informational       | 6–7 (info, debug)   |
//!
//! Azure names Sev3 "Informational" and Sev4 "Verbose"; we map by rank so the five levels
//! stay five. A missing or unrecognized severity (CEF `Unknown`, a budget alert's null) is
//! `None`, never a guess.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::Error;

/// Longest alert id, in bytes (ARM ids run to a few hundred).
pub const ID_BYTES_MAX: usize = 1024;
/// Longest title, in bytes.
pub const TITLE_BYTES_MAX: usize = 1024;
/// Longest description, in bytes.
pub const DESCRIPTION_BYTES_MAX: usize = 64 * 1024;
/// Longest entity field (account name, domain, host name, ARM id, ...), in bytes.
pub const ENTITY_FIELD_BYTES_MAX: usize = 1024;
/// Most entities (IPs, accounts and hosts together) in one alert.
pub const ENTITIES_MAX: usize = 256;

/// Where an alert came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    AzureMonitor,
    Sentinel,
    Defender,
    Cef,
    Syslog,
    Generic,
}

/// Our severity scale, ordered: `Informational < Low < ... < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Azure Monitor `Sev0`..`Sev4` (case-insensitive).
    pub fn from_azure_monitor(text: &str) -> Option<Self> {
        let t = text.trim();
        if !t.get(..3)?.eq_ignore_ascii_case("sev") {
            return None;
        }
        match t.get(3..)? {
            "0" => Some(Self::Critical),
            "1" => Some(Self::High),
            "2" => Some(Self::Medium),
            "3" => Some(Self::Low),
            "4" => Some(Self::Informational),
            _ => None,
        }
    }

    /// A severity name (case-insensitive): `informational`/`info`, `low`, `medium`, `high`,
    /// `critical`/`very-high`.
    pub fn from_name(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "informational" | "info" => Some(Self::Informational),
            "low" => Some(Self::Low),
            "medium" => Some(Self::Medium),
            "high" => Some(Self::High),
            "critical" | "very-high" | "veryhigh" | "very high" => Some(Self::Critical),
            _ => None,
        }
    }

    /// A CEF header severity: an integer 0–10, a CEF name (`Low`, `Medium`, `High`,
    /// `Very-High`; `Unknown` is `None`) or a word vendors write instead (`Critical`,
    /// `Major`, `Warning`, `Minor`, ...).
    pub fn from_cef(text: &str) -> Option<Self> {
        match text.trim().parse::<u8>() {
            Ok(0..=3) => Some(Self::Low),
            Ok(4..=6) => Some(Self::Medium),
            Ok(7..=8) => Some(Self::High),
            Ok(9..=10) => Some(Self::Critical),
            Ok(_) => None,
            Err(_) => match text.trim().to_ascii_lowercase().as_str() {
                "minor" | "notice" => Some(Self::Low),
                "warning" | "warn" | "moderate" => Some(Self::Medium),
                "major" | "error" | "important" | "severe" => Some(Self::High),
                "emergency" | "fatal" => Some(Self::Critical),
                _ => Self::from_name(text).filter(|s| *s != Self::Informational),
            },
        }
    }

    /// A syslog PRI severity (0 emergency .. 7 debug).
    pub fn from_syslog(severity: u8) -> Self {
        match severity {
            0..=2 => Self::Critical,
            3 => Self::High,
            4 => Self::Medium,
            5 => Self::Low,
            _ => Self::Informational,
        }
    }
}

/// The vendor's alert state where it has one (matched case-insensitively; an unknown value is
/// `Unknown`, the original stays in `raw`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Azure Monitor `Fired`.
    Fired,
    /// Azure Monitor, Defender `Resolved`.
    Resolved,
    /// Sentinel `New`.
    New,
    /// Sentinel, Defender `Active`.
    Active,
    /// Defender `InProgress`.
    InProgress,
    /// Sentinel `Closed`.
    Closed,
    /// Defender `Dismissed`.
    Dismissed,
    Unknown,
}

impl Status {
    /// Reads a vendor status name.
    pub fn from_vendor(text: &str) -> Self {
        match text.trim().to_ascii_lowercase().as_str() {
            "fired" => Self::Fired,
            "resolved" => Self::Resolved,
            "new" => Self::New,
            "active" => Self::Active,
            "inprogress" | "in progress" | "in_progress" => Self::InProgress,
            "closed" => Self::Closed,
            "dismissed" => Self::Dismissed,
            _ => Self::Unknown,
        }
    }

    /// Whether the alert is still open (not resolved, closed or dismissed).
    pub fn is_open(self) -> bool {
        !matches!(self, Self::Resolved | Self::Closed | Self::Dismissed)
    }
}

/// An entity's part in the alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The source: attacker, client, remote side.
    Attacker,
    /// The destination: the target, our side.
    Victim,
    Unknown,
}

impl Role {
    /// Guesses a role from a field or dimension name (`SourceIP`, `src`, `ClientIP`,
    /// `TargetHost`, `dst`...); `None` if the name says nothing.
    pub fn from_hint(name: &str) -> Option<Self> {
        let n = name.to_ascii_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| n.contains(w));
        if has(&["src", "source", "client", "attacker", "remote", "caller"]) {
            Some(Self::Attacker)
        } else if has(&["dst", "dest", "target", "victim", "server"]) {
            Some(Self::Victim)
        } else {
            None
        }
    }
}

/// An IP address entity (only values `std` parses as an IP).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ip {
    pub address: IpAddr,
    pub role: Option<Role>,
}

/// An account entity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    pub upn: Option<String>,
    pub domain: Option<String>,
    pub sid: Option<String>,
    /// The Entra (Azure AD) object id.
    pub aad_id: Option<String>,
    pub role: Option<Role>,
}

impl Account {
    /// An account from one text: `DOMAIN\\user` gives a domain, `user@domain` a UPN.
    pub fn from_text(text: &str, role: Option<Role>) -> Self {
        let text = text.trim();
        if let Some((domain, name)) = text.split_once('\\') {
            return Self {
                name: name.to_string(),
                domain: Some(domain.to_string()).filter(|d| !d.is_empty()),
                role,
                ..Self::default()
            };
        }
        Self {
            name: text.to_string(),
            upn: text.contains('@').then(|| text.to_string()),
            role,
            ..Self::default()
        }
    }
}

/// A host entity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub name: String,
    pub fqdn: Option<String>,
    /// The ARM resource id of the machine.
    pub azure_id: Option<String>,
    pub role: Option<Role>,
}

/// The entities of one alert, deduplicated, at most [`ENTITIES_MAX`] together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entities {
    pub ips: Vec<Ip>,
    pub accounts: Vec<Account>,
    pub hosts: Vec<Host>,
}

impl Entities {
    /// Number of entities of all kinds.
    pub fn len(&self) -> usize {
        self.ips.len() + self.accounts.len() + self.hosts.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn room(&self) -> Result<(), Error> {
        if self.len() >= ENTITIES_MAX {
            return Err(Error::TooManyEntities {
                count: self.len() + 1,
                max: ENTITIES_MAX,
            });
        }
        Ok(())
    }

    /// Adds `text` as an IP if `std` parses it (trimmed); anything else is ignored.
    /// Returns whether it was an IP. A repeat with an agreeing role only fills a missing role.
    pub fn add_ip(&mut self, text: &str, role: Option<Role>) -> Result<bool, Error> {
        let Ok(address) = text.trim().parse::<IpAddr>() else {
            return Ok(false);
        };
        let same = |i: &Ip| i.address == address && roles_agree(i.role, role);
        if let Some(seen) = self.ips.iter_mut().find(|i| same(i)) {
            seen.role = seen.role.or(role);
            return Ok(true);
        }
        self.room()?;
        self.ips.push(Ip { address, role });
        Ok(true)
    }

    /// Adds an account (fields bounded); a repeat (same name and domain ignoring case, roles agreeing)
    /// fills the missing fields of the first.
    pub fn add_account(&mut self, account: Account) -> Result<(), Error> {
        check_account(&account)?;
        let same = |a: &Account| {
            a.name.eq_ignore_ascii_case(&account.name)
                && eq_opt(a.domain.as_deref(), account.domain.as_deref())
                && roles_agree(a.role, account.role)
        };
        if let Some(seen) = self.accounts.iter_mut().find(|a| same(a)) {
            fill(&mut seen.upn, account.upn);
            fill(&mut seen.domain, account.domain);
            fill(&mut seen.sid, account.sid);
            fill(&mut seen.aad_id, account.aad_id);
            fill(&mut seen.role, account.role);
            return Ok(());
        }
        self.room()?;
        self.accounts.push(account);
        Ok(())
    }

    /// Adds a host (fields bounded); a repeat (same name ignoring case, roles agreeing) fills the missing
    /// fields of the first.
    pub fn add_host(&mut self, host: Host) -> Result<(), Error> {
        check_host(&host)?;
        if let Some(seen) = self
            .hosts
            .iter_mut()
            .find(|h| h.name.eq_ignore_ascii_case(&host.name) && roles_agree(h.role, host.role))
        {
            fill(&mut seen.fqdn, host.fqdn);
            fill(&mut seen.azure_id, host.azure_id);
            fill(&mut seen.role, host.role);
            return Ok(());
        }
        self.room()?;
        self.hosts.push(host);
        Ok(())
    }
}

/// Two roles of one entity agree unless both are known and differ (a `root` that is both
/// the source and the target user is two entities).
fn roles_agree(a: Option<Role>, b: Option<Role>) -> bool {
    a.is_none() || b.is_none() || a == b
}

fn eq_opt(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        _ => true,
    }
}

fn fill<T>(slot: &mut Option<T>, value: Option<T>) {
    if slot.is_none() {
        *slot = value;
    }
}

fn check_field(field: &'static str, value: Option<&str>) -> Result<(), Error> {
    match value {
        Some(v) if v.len() > ENTITY_FIELD_BYTES_MAX => Err(Error::TooLong {
            field,
            bytes: v.len(),
            max: ENTITY_FIELD_BYTES_MAX,
        }),
        _ => Ok(()),
    }
}

fn check_account(a: &Account) -> Result<(), Error> {
    check_field("account name", Some(&a.name))?;
    check_field("account upn", a.upn.as_deref())?;
    check_field("account domain", a.domain.as_deref())?;
    check_field("account sid", a.sid.as_deref())?;
    check_field("account aad id", a.aad_id.as_deref())
}

fn check_host(h: &Host) -> Result<(), Error> {
    check_field("host name", Some(&h.name))?;
    check_field("host fqdn", h.fqdn.as_deref())?;
    check_field("host azure id", h.azure_id.as_deref())
}

/// One normalized alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The vendor's id (ARM id, system alert id...); for CEF/syslog without one, a content
    /// hash `sha256:<32 hex>` of the message.
    pub id: String,
    pub source: Source,
    /// When the sender says it happened (epoch ms); never the time of receipt.
    pub time_ms: Option<i64>,
    pub severity: Option<Severity>,
    pub title: String,
    pub description: Option<String>,
    pub status: Option<Status>,
    pub entities: Entities,
    /// The vendor's natural identity for deduplication (e.g. Azure Monitor
    /// `alertId/monitorCondition`); `None` if the vendor has none.
    pub dedup_hint: Option<String>,
    /// The payload as received (JSON), or the parsed syslog/CEF fields.
    pub raw: Raw,
    /// What the parser could not read, when it kept the alert anyway: a syslog message whose
    /// CEF could not be read says why (`not read as CEF: ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// For an alert a poller pulled: which revision of the vendor's object this is (1 the
    /// first time it is seen, then one more for each change the poller finds). `None` for a
    /// pushed alert. Rules read it to act on new incidents only, or on updates too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u32>,
}

/// The vendor's own record of an alert, which rules read as `alert.raw` and a started run's
/// trigger carries: the payload as received (JSON), a part of it, or the parsed syslog/CEF
/// fields. A payload read for a few fields only ([`crate::json::load_kept`]) stays text until
/// something asks for its value: the alerts of a storm that start no run never build it.
/// Serialized as the JSON it holds.
#[derive(Debug, Clone, Default)]
pub struct Raw(Held);

#[derive(Debug, Clone)]
enum Held {
    Value(serde_json::Value),
    /// Read whole as JSON, within the nesting limit, before it was kept.
    Text(Box<str>),
}

impl Default for Held {
    fn default() -> Self {
        Held::Value(serde_json::Value::Null)
    }
}

impl Raw {
    /// `text`, which the caller read whole as JSON within the nesting limit.
    pub(crate) fn text(text: &str) -> Raw {
        Raw(Held::Text(text.into()))
    }

    /// The record as a value, parsed now if it was kept as text.
    pub fn into_value(self) -> serde_json::Value {
        match self.0 {
            Held::Value(value) => value,
            Held::Text(text) => parsed(&text),
        }
    }

    /// The record as a value, parsed (again) if it was kept as text.
    pub fn value(&self) -> std::borrow::Cow<'_, serde_json::Value> {
        match &self.0 {
            Held::Value(value) => std::borrow::Cow::Borrowed(value),
            Held::Text(text) => std::borrow::Cow::Owned(parsed(text)),
        }
    }
}

/// Kept text as a value. It was read whole, with the same reader and limits, before it was
/// kept, so this does not fail; were it to, the record would read as null, not take the
/// process down.
fn parsed(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

impl From<serde_json::Value> for Raw {
    fn from(value: serde_json::Value) -> Self {
        Raw(Held::Value(value))
    }
}

impl PartialEq for Raw {
    fn eq(&self, other: &Self) -> bool {
        self.value() == other.value()
    }
}

impl Serialize for Raw {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(deserializer).map(Raw::from)
    }
}

/// Checks the bounds of an alert's own text fields.
pub(crate) fn check_alert(alert: &Alert) -> Result<(), Error> {
    limit("id", &alert.id, ID_BYTES_MAX)?;
    limit("title", &alert.title, TITLE_BYTES_MAX)?;
    let description = alert.description.as_deref().unwrap_or("");
    limit("description", description, DESCRIPTION_BYTES_MAX)?;
    let hint = alert.dedup_hint.as_deref().unwrap_or("");
    limit("dedup hint", hint, 2 * ID_BYTES_MAX)
}

fn limit(field: &'static str, text: &str, max: usize) -> Result<(), Error> {
    if text.len() > max {
        return Err(Error::TooLong {
            field,
            bytes: text.len(),
            max,
        });
    }
    Ok(())
}

/// Cuts `text` to at most `max` bytes on a character boundary (for derived titles).
pub fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// The natural identity of a vendor alert for deduplication: `identity/state` when the vendor
/// reports a state (`Fired`, `Resolved`, `New`...), so a resolution is not taken for a repeat.
pub(crate) fn dedup_hint(identity: String, state: Option<&str>) -> Option<String> {
    Some(match state {
        Some(state) => format!("{identity}/{state}"),
        None => identity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities() {
        assert_eq!(
            Severity::from_azure_monitor("Sev0"),
            Some(Severity::Critical)
        );
        assert_eq!(
            Severity::from_azure_monitor("sev4"),
            Some(Severity::Informational)
        );
        assert_eq!(Severity::from_azure_monitor("Sev5"), None);
        assert_eq!(Severity::from_azure_monitor("S"), None);
        assert_eq!(Severity::from_cef("0"), Some(Severity::Low));
        assert_eq!(Severity::from_cef("10"), Some(Severity::Critical));
        assert_eq!(Severity::from_cef("11"), None);
        assert_eq!(Severity::from_cef("Very-High"), Some(Severity::Critical));
        assert_eq!(Severity::from_cef("Unknown"), None);
        assert_eq!(Severity::from_cef("Critical"), Some(Severity::Critical));
        assert_eq!(Severity::from_cef("MAJOR"), Some(Severity::High));
        assert_eq!(Severity::from_cef("Warning"), Some(Severity::Medium));
        assert_eq!(Severity::from_cef("minor"), Some(Severity::Low));
        assert_eq!(Severity::from_syslog(3), Severity::High);
        assert!(Severity::Critical > Severity::High);
    }

    #[test]
    fn ips_are_strict_and_deduplicated() {
        let mut e = Entities::default();
        assert!(e.add_ip("203.0.113.1", None).unwrap());
        assert!(e.add_ip(" 203.0.113.1 ", Some(Role::Attacker)).unwrap());
        assert!(!e.add_ip("203.0.113.256", None).unwrap());
        assert!(!e.add_ip("vm-web-01", None).unwrap());
        assert!(e.add_ip("2001:db8::1", None).unwrap());
        assert_eq!(e.ips.len(), 2);
        assert_eq!(e.ips[0].role, Some(Role::Attacker));
    }

    #[test]
    fn entity_count_is_bounded() {
        let mut e = Entities::default();
        for i in 0..ENTITIES_MAX {
            e.add_ip(&format!("10.0.{}.{}", i / 256, i % 256), None)
                .unwrap();
        }
        let err = e.add_ip("10.9.9.9", None).unwrap_err();
        assert_eq!(err.to_string(), "257 entities exceed 256");
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
