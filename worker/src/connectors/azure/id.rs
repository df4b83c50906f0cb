//! Strictly checked ARM resource ids.
//!
//! An id is accepted only in the exact segment structure of its kind, with the right provider
//! namespace and resource type (compared case-insensitively, as ARM does), a GUID
//! subscription, and names made of the characters Azure allows. Because every character is
//! checked, an accepted id can be appended to a base URL as it is: it can never add a query, a
//! fragment or another path.

use std::fmt;

use reqwest::Url;

/// Longest resource group name Azure allows.
const RESOURCE_GROUP_BYTES_MAX: usize = 90;
/// Longest resource name accepted (NSG, IP group and VM names are at most 80).
const NAME_BYTES_MAX: usize = 80;
/// Longest location name accepted.
const LOCATION_BYTES_MAX: usize = 40;

/// The kinds of resources the Azure backends address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `Microsoft.Network/networkSecurityGroups`.
    Nsg,
    /// `Microsoft.Network/ipGroups`.
    IpGroup,
    /// `Microsoft.Security/locations/{location}/jitNetworkAccessPolicies`.
    JitPolicy,
    /// `Microsoft.Compute/virtualMachines`.
    Vm,
    /// A Microsoft Sentinel incident:
    /// `Microsoft.OperationalInsights/workspaces/{workspace}/providers/Microsoft.SecurityInsights/incidents`.
    Incident,
    /// A Log Analytics workspace (`Microsoft.OperationalInsights/workspaces`), Sentinel's home.
    Workspace,
}

/// One expected segment after `providers`.
#[derive(Clone, Copy)]
enum Segment {
    /// This word, case-insensitively.
    Literal(&'static str),
    /// A location name.
    Location,
    /// The name of a parent resource (a workspace).
    Parent,
    /// The resource's name.
    Name,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Nsg => "network security group",
            Kind::IpGroup => "IP group",
            Kind::JitPolicy => "JIT network access policy",
            Kind::Vm => "virtual machine",
            Kind::Incident => "Microsoft Sentinel incident",
            Kind::Workspace => "Log Analytics workspace",
        }
    }

    fn provider_segments(self) -> &'static [Segment] {
        use Segment::{Literal, Location, Name};
        match self {
            Kind::Nsg => &[
                Literal("Microsoft.Network"),
                Literal("networkSecurityGroups"),
                Name,
            ],
            Kind::IpGroup => &[Literal("Microsoft.Network"), Literal("ipGroups"), Name],
            Kind::JitPolicy => &[
                Literal("Microsoft.Security"),
                Literal("locations"),
                Location,
                Literal("jitNetworkAccessPolicies"),
                Name,
            ],
            Kind::Vm => &[
                Literal("Microsoft.Compute"),
                Literal("virtualMachines"),
                Name,
            ],
            Kind::Incident => &[
                Literal("Microsoft.OperationalInsights"),
                Literal("workspaces"),
                Segment::Parent,
                Literal("providers"),
                Literal("Microsoft.SecurityInsights"),
                Literal("incidents"),
                Name,
            ],
            Kind::Workspace => &[
                Literal("Microsoft.OperationalInsights"),
                Literal("workspaces"),
                Name,
            ],
        }
    }

    /// The template operators see in messages.
    fn template(self) -> String {
        let tail: Vec<&str> = self
            .provider_segments()
            .iter()
            .map(|segment| match segment {
                Segment::Literal(word) => *word,
                Segment::Location => "{location}",
                Segment::Parent => "{workspace}",
                Segment::Name => "{name}",
            })
            .collect();
        format!(
            "/subscriptions/{{subscription}}/resourceGroups/{{group}}/providers/{}",
            tail.join("/")
        )
    }
}

/// Why a text is not an ARM id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not the ARM id of a {noun}: {reason} (expected {template})")]
pub struct IdError {
    text: String,
    noun: &'static str,
    reason: String,
    template: String,
}

/// A checked ARM id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArmId {
    text: String,
    kind: Kind,
    subscription: String,
    resource_group: String,
    location: Option<String>,
    name: String,
}

impl ArmId {
    /// Parses `text` as an id of `kind`.
    pub fn parse(text: &str, kind: Kind) -> Result<ArmId, IdError> {
        let text = text.trim();
        let error = |reason: String| IdError {
            text: text.to_owned(),
            noun: kind.noun(),
            reason,
            template: kind.template(),
        };
        if text.contains(|c: char| "?#%\\".contains(c) || c.is_whitespace() || c.is_control()) {
            return Err(error("it contains a character that an id never has".into()));
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(error("it must start with /subscriptions/".into()));
        };
        let segments: Vec<&str> = rest.split('/').collect();
        let tail = kind.provider_segments();
        let expected = 5 + tail.len();
        if segments.len() != expected {
            return Err(error(format!(
                "it has {} segments, expected {expected}",
                segments.len()
            )));
        }
        if let Some(i) = segments.iter().position(|s| s.is_empty()) {
            return Err(error(format!("segment {} is empty", i + 1)));
        }
        literal(&segments, 0, "subscriptions").map_err(&error)?;
        let subscription = segments[1];
        if !is_guid(subscription) {
            return Err(error(format!(
                "the subscription {subscription:?} is not a GUID"
            )));
        }
        literal(&segments, 2, "resourceGroups").map_err(&error)?;
        let resource_group = segments[3];
        check_resource_group(resource_group).map_err(&error)?;
        literal(&segments, 4, "providers").map_err(&error)?;
        let mut location = None;
        let mut name = "";
        for (offset, segment) in tail.iter().enumerate() {
            let i = 5 + offset;
            match segment {
                Segment::Literal(word) => literal(&segments, i, word).map_err(&error)?,
                Segment::Location => {
                    check_location(segments[i]).map_err(&error)?;
                    location = Some(segments[i].to_owned());
                }
                Segment::Parent => check_name(segments[i]).map_err(&error)?,
                Segment::Name => {
                    check_name(segments[i]).map_err(&error)?;
                    name = segments[i];
                }
            }
        }
        Ok(ArmId {
            text: text.to_owned(),
            kind,
            subscription: subscription.to_owned(),
            resource_group: resource_group.to_owned(),
            location,
            name: name.to_owned(),
        })
    }

    /// The id as given (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The resource's own name (the last segment).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The subscription id.
    pub fn subscription(&self) -> &str {
        &self.subscription
    }

    /// The kind it was checked as.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The location segment of a JIT policy id.
    pub fn location(&self) -> Option<&str> {
        self.location.as_deref()
    }

    /// True when `other` names the same resource (ARM ids compare case-insensitively).
    pub fn same_as(&self, other: &str) -> bool {
        self.text.eq_ignore_ascii_case(other.trim())
    }

    /// `base` followed by the id, then `suffix` (a fixed path like `/initiate`), with
    /// `api-version`.
    pub(crate) fn url(&self, base: &Url, suffix: &str, api_version: &str) -> Url {
        let base = base.as_str().trim_end_matches('/');
        let mut url = Url::parse(&format!("{base}{}{suffix}", self.text))
            .expect("a checked id appended to a base URL is a URL");
        url.query_pairs_mut()
            .append_pair("api-version", api_version);
        url
    }
}

impl fmt::Display for ArmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn literal(segments: &[&str], i: usize, word: &str) -> Result<(), String> {
    if segments[i].eq_ignore_ascii_case(word) {
        Ok(())
    } else if i == 5 {
        Err(format!(
            "the provider must be {word}, not {:?}",
            segments[i]
        ))
    } else {
        Err(format!(
            "segment {} must be {word}, not {:?}",
            i + 1,
            segments[i]
        ))
    }
}

fn check_resource_group(group: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.()".contains(c);
    if group.len() > RESOURCE_GROUP_BYTES_MAX || !group.chars().all(allowed) || group.ends_with('.')
    {
        return Err(format!(
            "the resource group {group:?} is not a valid name (letters, digits, - _ . ( ), \
             at most {RESOURCE_GROUP_BYTES_MAX}, not ending in .)"
        ));
    }
    Ok(())
}

fn check_location(location: &str) -> Result<(), String> {
    let valid =
        location.len() <= LOCATION_BYTES_MAX && location.chars().all(|c| c.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(format!("the location {location:?} is not a location name"))
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let valid = name.len() <= NAME_BYTES_MAX
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "the name {name:?} is not a valid resource name (letters, digits, - _ ., \
             at most {NAME_BYTES_MAX})"
        ))
    }
}

/// True for a GUID in its 8-4-4-4-12 hexadecimal form.
pub(crate) fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    let lengths = [8, 4, 4, 4, 12];
    groups.len() == lengths.len()
        && groups
            .iter()
            .zip(lengths)
            .all(|(group, len)| group.len() == len && group.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e";

    fn vm(name: &str) -> String {
        format!(
            "/subscriptions/{SUB}/resourceGroups/rg-web/providers/Microsoft.Compute/virtualMachines/{name}"
        )
    }

    #[test]
    fn accepts_each_kind() {
        let id = ArmId::parse(&vm("vm-web-01"), Kind::Vm).unwrap();
        assert_eq!(id.name(), "vm-web-01");
        assert_eq!(id.subscription(), SUB);
        let nsg = format!(
            "/subscriptions/{SUB}/resourceGroups/rg-web/providers/Microsoft.Network/networkSecurityGroups/nsg-web"
        );
        assert_eq!(ArmId::parse(&nsg, Kind::Nsg).unwrap().name(), "nsg-web");
        let ipg = format!(
            "/subscriptions/{SUB}/resourcegroups/rg-net/providers/microsoft.network/ipGroups/ipg-1"
        );
        assert_eq!(ArmId::parse(&ipg, Kind::IpGroup).unwrap().name(), "ipg-1");
        let jit = format!(
            "/subscriptions/{SUB}/resourceGroups/rg-web/providers/Microsoft.Security/locations/westeurope/jitNetworkAccessPolicies/default"
        );
        let jit = ArmId::parse(&jit, Kind::JitPolicy).unwrap();
        assert_eq!(jit.location(), Some("westeurope"));
        assert_eq!(jit.name(), "default");
    }

    #[test]
    fn refuses_wrong_forms_with_a_specific_reason() {
        let cases = [
            ("vm-web-01".to_owned(), "must start with /subscriptions/"),
            (vm("vm/extra"), "has 9 segments, expected 8"),
            (vm("vm?x=1"), "character that an id never has"),
            (vm("vm web"), "character that an id never has"),
            (vm("vm%2F"), "character that an id never has"),
            (vm("-vm"), "is not a valid resource name"),
            (
                vm("x").replace(SUB, "not-a-guid"),
                "subscription \"not-a-guid\" is not a GUID",
            ),
            (
                vm("x").replace("Microsoft.Compute", "Microsoft.Network"),
                "the provider must be Microsoft.Compute, not \"Microsoft.Network\"",
            ),
            (
                vm("x").replace("virtualMachines", "disks"),
                "segment 7 must be virtualMachines, not \"disks\"",
            ),
            (
                vm("x").replace("resourceGroups", "groups"),
                "segment 3 must be resourceGroups",
            ),
            (vm("x").replace("/rg-web/", "//"), "segment 4 is empty"),
        ];
        for (text, reason) in cases {
            let error = ArmId::parse(&text, Kind::Vm).unwrap_err().to_string();
            assert!(error.contains(reason), "{text}: {error}");
            assert!(error.contains("virtual machine"), "{error}");
        }
    }

    #[test]
    fn a_url_is_the_base_and_the_id() {
        let id = ArmId::parse(&vm("vm1"), Kind::Vm).unwrap();
        let base = Url::parse("http://127.0.0.1:8080").unwrap();
        let url = id.url(&base, "/installPatches", "2024-07-01");
        assert_eq!(
            url.as_str(),
            format!(
                "http://127.0.0.1:8080{}/installPatches?api-version=2024-07-01",
                vm("vm1")
            )
        );
    }

    #[test]
    fn guids() {
        assert!(is_guid(SUB));
        assert!(!is_guid("aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4"));
        assert!(!is_guid("gaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e"));
    }
}
