//! The worker policy: which actions and labels each worker identity may offer. A file of
//! entries, the first whose `identity` matches the certificate's name decides:
//!
//! ```yaml
//! workers:
//!   - identity: fw-edge-1          # a name, or a prefix ending in `*`, or `*`
//!     actions: [firewall.*, core.*] # an action, a family `NAME.*`, or `*`
//!     labels: {site: "*", zone: dmz} # each label it may carry, and its value (or `*`)
//! ```
//!
//! Default deny: an identity no entry matches may offer nothing, and a label an entry does not
//! list may not be carried. Pure: the file is read by the caller.

use std::collections::BTreeMap;

use riposte_playbooks::platform::{action_matches, name_matches};
use serde::Deserialize;

/// A parsed policy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerPolicy {
    #[serde(default)]
    workers: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    identity: String,
    #[serde(default)]
    actions: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Why a policy file does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidPolicy(String);

/// Why a registration offers more than its identity may.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("no entry of the worker policy names identity `{0}`")]
    Unknown(String),
    #[error("identity `{identity}` may not offer `{action}` (the worker policy allows {allowed})")]
    Action {
        identity: String,
        action: String,
        allowed: String,
    },
    #[error(
        "identity `{identity}` may not carry label `{key}={value}` (the worker policy allows {allowed})"
    )]
    Label {
        identity: String,
        key: String,
        value: String,
        allowed: String,
    },
}

impl WorkerPolicy {
    /// Parses a policy file's text.
    pub fn parse(text: &str) -> Result<WorkerPolicy, InvalidPolicy> {
        let policy: WorkerPolicy =
            marked_yaml::from_yaml(0, text).map_err(|e| InvalidPolicy(e.to_string()))?;
        for entry in &policy.workers {
            if entry.identity.is_empty() {
                return Err(InvalidPolicy("an entry has an empty `identity`".into()));
            }
        }
        Ok(policy)
    }

    /// Whether `identity` may offer every one of `actions` with every one of `labels`; the
    /// first thing it may not offer, otherwise.
    pub fn check<'a>(
        &self,
        identity: &str,
        actions: impl IntoIterator<Item = &'a String>,
        labels: &BTreeMap<String, String>,
    ) -> Result<(), Refusal> {
        let entry = self
            .workers
            .iter()
            .find(|e| name_matches(&e.identity, identity))
            .ok_or_else(|| Refusal::Unknown(identity.to_string()))?;
        let mut actions: Vec<&String> = actions.into_iter().collect();
        actions.sort();
        for action in actions {
            if !entry.actions.iter().any(|a| action_matches(a, action)) {
                return Err(Refusal::Action {
                    identity: identity.to_string(),
                    action: action.clone(),
                    allowed: listed(entry.actions.iter().cloned()),
                });
            }
        }
        for (key, value) in labels {
            let allowed = entry
                .labels
                .iter()
                .any(|(k, v)| name_matches(k, key) && name_matches(v, value));
            if !allowed {
                return Err(Refusal::Label {
                    identity: identity.to_string(),
                    key: key.clone(),
                    value: value.clone(),
                    allowed: listed(entry.labels.iter().map(|(k, v)| format!("{k}={v}"))),
                });
            }
        }
        Ok(())
    }
}

fn listed(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.map(|i| format!("`{i}`")).collect();
    match items.is_empty() {
        true => "nothing".into(),
        false => items.join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "
workers:
  - identity: fw-edge-1
    actions: [firewall.*, core.noop]
    labels: {zone: dmz, site: '*'}
  - identity: patch-*
    actions: [patch.*]
";

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn check(identity: &str, actions: &[&str], with: &[(&str, &str)]) -> Result<(), String> {
        let actions: Vec<String> = actions.iter().map(|a| a.to_string()).collect();
        let policy = WorkerPolicy::parse(POLICY).unwrap();
        policy
            .check(identity, &actions, &labels(with))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn an_identity_offers_only_what_its_entry_allows() {
        let fw = ["firewall.block_ip", "firewall.unblock_ip", "core.noop"];
        assert_eq!(
            check("fw-edge-1", &fw, &[("zone", "dmz"), ("site", "a")]),
            Ok(())
        );
        assert_eq!(check("patch-7", &["patch.install"], &[]), Ok(()));
        assert_eq!(
            check("fw-edge-1", &["core.exec"], &[]).unwrap_err(),
            "identity `fw-edge-1` may not offer `core.exec` (the worker policy allows \
             `firewall.*`, `core.noop`)"
        );
        assert_eq!(
            check("fw-edge-1", &[], &[("zone", "lan")]).unwrap_err(),
            "identity `fw-edge-1` may not carry label `zone=lan` (the worker policy allows \
             `site=*`, `zone=dmz`)"
        );
        assert_eq!(
            check("patch-7", &["patch.install"], &[("host", "a")]).unwrap_err(),
            "identity `patch-7` may not carry label `host=a` (the worker policy allows nothing)"
        );
        assert_eq!(
            check("mallory", &["core.noop"], &[]).unwrap_err(),
            "no entry of the worker policy names identity `mallory`"
        );
        assert!(check("fw-edge-1", &["firewallx.block_ip"], &[]).is_err());
        assert!(check("fw-edge-10", &["core.noop"], &[]).is_err());
    }

    #[test]
    fn a_bad_file_is_refused_and_stars_allow_all() {
        assert!(WorkerPolicy::parse("workers: [{identity: a, action: [x]}]").is_err());
        assert!(WorkerPolicy::parse("workers: [{identity: ''}]").is_err());
        assert_eq!(WorkerPolicy::parse("").unwrap(), WorkerPolicy::default());
        let all = "workers: [{identity: '*', actions: ['*'], labels: {'*': '*'}}]";
        let all = WorkerPolicy::parse(all).unwrap();
        let actions = ["firewall.block_ip".to_string()];
        assert_eq!(all.check("x", &actions, &labels(&[("a", "b")])), Ok(()));
    }
}
