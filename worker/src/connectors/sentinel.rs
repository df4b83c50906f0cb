//! The `sentinel.*` actions: write back to a Microsoft Sentinel incident what a run did, so
//! that the analyst working the queue sees it there; and list a workspace's incidents modified
//! within a window, a page at a time (what a Sentinel alert poller runs, see
//! `azure::listing`).
//!
//! Inputs are parsed into typed requests here, before any call: the incident is the ARM id of a
//! Sentinel incident (`incident.arm_id` of a Sentinel alert), values of closed sets are matched
//! case-insensitively and sent in Sentinel's spelling, every text is bounded.
//!
//! Output of `comment`: `{"incident", "comment_id", "changes", "dry_run"}`; of
//! `update_incident`: `{"incident", "changed", "labels_added", "labels_removed", "previous",
//! "changes", "dry_run"}`, where `labels_added` is what an undo removes (labels the incident
//! already had are not in it) and `previous` the status, severity, classification, owner and
//! labels before the change.

use serde_json::Value;

use super::{Context, Failure, Fields, Input, Shared, azure};

/// Longest comment Sentinel keeps, in characters.
pub(crate) const MESSAGE_CHARS_MAX: usize = 30_000;
/// Longest label, classification comment or owner accepted.
const TEXT_BYTES_MAX: usize = 256;
/// Most labels added or removed by one update.
const LABELS_MAX: usize = 50;

/// The `sentinel.*` actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Comment,
    UpdateIncident,
    ListIncidents,
}

impl Action {
    /// All `sentinel.*` actions.
    pub(crate) const ALL: &[Action] = &[
        Action::Comment,
        Action::UpdateIncident,
        Action::ListIncidents,
    ];

    /// The wire name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Action::Comment => "sentinel.comment",
            Action::UpdateIncident => "sentinel.update_incident",
            Action::ListIncidents => "sentinel.list_incidents",
        }
    }
}

/// Where the `sentinel.*` actions take effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// The Microsoft Sentinel incidents API of Azure Resource Manager.
    Azure,
}

/// `sentinel.comment`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Comment {
    pub(crate) incident: String,
    pub(crate) message: String,
}

/// `sentinel.update_incident`: each `Some` (and each label) is a change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Update {
    pub(crate) incident: String,
    pub(crate) status: Option<&'static str>,
    pub(crate) severity: Option<&'static str>,
    pub(crate) classification: Option<&'static str>,
    pub(crate) classification_reason: Option<&'static str>,
    pub(crate) classification_comment: Option<String>,
    /// A user principal name or an object id.
    pub(crate) owner: Option<String>,
    pub(crate) labels_add: Vec<String>,
    pub(crate) labels_remove: Vec<String>,
}

const STATUSES: &[&str] = &["New", "Active", "Closed"];
const SEVERITIES: &[&str] = &["High", "Medium", "Low", "Informational"];
const CLASSIFICATIONS: &[&str] = &[
    "Undetermined",
    "TruePositive",
    "BenignPositive",
    "FalsePositive",
];
const REASONS: &[&str] = &[
    "SuspiciousActivity",
    "SuspiciousButExpected",
    "IncorrectAlertLogic",
    "InaccurateData",
];

/// Runs one `sentinel.*` action.
pub(crate) async fn execute(
    shared: &Shared,
    Backend::Azure: Backend,
    action: Action,
    input: Input,
    cx: &Context,
) -> Result<Value, Failure> {
    match action {
        Action::Comment => {
            let mut fields = Fields::new(input, &["incident", "message"])?;
            let comment = Comment {
                incident: fields.required_string("incident")?.trim().to_owned(),
                message: message(&mut fields)?,
            };
            azure::incidents::comment(&shared.azure, &comment, cx).await
        }
        Action::UpdateIncident => {
            let update = parse_update(input)?;
            azure::incidents::update(&shared.azure, &update, cx).await
        }
        Action::ListIncidents => {
            let known = [
                "workspace",
                "modified_from",
                "modified_to",
                "page_size",
                "next_link",
            ];
            let mut fields = Fields::new(input, &known)?;
            let workspace = fields.required_string("workspace")?;
            let workspace = azure::ArmId::parse(workspace.trim(), azure::id::Kind::Workspace)
                .map_err(|e| Failure::invalid_input(format!("`workspace`: {e}")))?;
            let window = azure::listing::window(&mut fields)?;
            azure::listing::sentinel_incidents(&shared.azure, &workspace, &window, cx).await
        }
    }
}

/// The input of `update_incident`, checked (see [`check`]).
fn parse_update(input: Input) -> Result<Update, Failure> {
    let known = [
        "incident",
        "status",
        "severity",
        "classification",
        "classification_reason",
        "classification_comment",
        "owner",
        "labels_add",
        "labels_remove",
    ];
    let mut fields = Fields::new(input, &known)?;
    let update = Update {
        incident: fields.required_string("incident")?.trim().to_owned(),
        status: one_of(&mut fields, "status", STATUSES)?,
        severity: one_of(&mut fields, "severity", SEVERITIES)?,
        classification: one_of(&mut fields, "classification", CLASSIFICATIONS)?,
        classification_reason: one_of(&mut fields, "classification_reason", REASONS)?,
        classification_comment: text(&mut fields, "classification_comment")?,
        owner: text(&mut fields, "owner")?,
        labels_add: labels(&mut fields, "labels_add")?,
        labels_remove: labels(&mut fields, "labels_remove")?,
    };
    check(&update)?;
    Ok(update)
}

fn message(fields: &mut Fields) -> Result<String, Failure> {
    let message = fields.required_string("message")?;
    let chars = message.chars().count();
    if message.trim().is_empty() || chars > MESSAGE_CHARS_MAX {
        return Err(Failure::invalid_input(format!(
            "`message` must have 1 to {MESSAGE_CHARS_MAX} characters, not {chars}"
        )));
    }
    Ok(message)
}

/// A value of a closed set, matched case-insensitively, in Sentinel's spelling.
fn one_of(
    fields: &mut Fields,
    key: &str,
    values: &'static [&'static str],
) -> Result<Option<&'static str>, Failure> {
    let Some(text) = fields.string(key)? else {
        return Ok(None);
    };
    let found = values
        .iter()
        .find(|v| v.eq_ignore_ascii_case(text.trim()))
        .copied();
    found.map(Some).ok_or_else(|| {
        Failure::invalid_input(format!(
            "`{key}` {text:?} is not one of {}",
            values.join(", ")
        ))
    })
}

fn text(fields: &mut Fields, key: &str) -> Result<Option<String>, Failure> {
    let Some(text) = fields.string(key)? else {
        return Ok(None);
    };
    let text = text.trim();
    if text.is_empty() || text.len() > TEXT_BYTES_MAX || text.chars().any(char::is_control) {
        return Err(Failure::invalid_input(format!(
            "`{key}` must be 1 to {TEXT_BYTES_MAX} bytes without control characters"
        )));
    }
    Ok(Some(text.to_owned()))
}

/// Labels, trimmed, each once.
fn labels(fields: &mut Fields, key: &str) -> Result<Vec<String>, Failure> {
    let label = |text: &str| {
        let label = text.trim();
        if label.is_empty() || label.len() > TEXT_BYTES_MAX || label.chars().any(char::is_control) {
            return Err(Failure::invalid_input(format!(
                "`{key}`: {label:?} is not a label (1 to {TEXT_BYTES_MAX} bytes)"
            )));
        }
        Ok(label.to_owned())
    };
    let mut labels = fields.strings(key, LABELS_MAX, label)?;
    let mut seen = std::collections::BTreeSet::new();
    labels.retain(|l| seen.insert(l.clone()));
    Ok(labels)
}

/// Refuses an update that changes nothing, or closes without a classification (Sentinel
/// refuses that too, later).
fn check(update: &Update) -> Result<(), Failure> {
    let changes = update.status.is_some()
        || update.severity.is_some()
        || update.classification.is_some()
        || update.classification_reason.is_some()
        || update.classification_comment.is_some()
        || update.owner.is_some()
        || !update.labels_add.is_empty()
        || !update.labels_remove.is_empty();
    if !changes {
        return Err(Failure::invalid_input(
            "nothing to change: give status, severity, classification, owner or labels",
        ));
    }
    if update.status == Some("Closed") && update.classification.is_none() {
        return Err(Failure::invalid_input(
            "closing an incident needs a `classification`",
        ));
    }
    if let Some(label) = update
        .labels_add
        .iter()
        .find(|l| update.labels_remove.contains(l))
    {
        return Err(Failure::invalid_input(format!(
            "label {label:?} is both added and removed"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn update(input: Value) -> Result<Update, Failure> {
        let Value::Object(map) = input else {
            unreachable!("an object literal")
        };
        parse_update(map)
    }

    #[test]
    fn closed_sets_are_matched_case_insensitively_and_sent_as_sentinel_spells_them() {
        let ok =
            update(json!({"incident": "i", "status": "closed", "classification": "truepositive"}))
                .unwrap();
        assert_eq!(
            (ok.status, ok.classification),
            (Some("Closed"), Some("TruePositive"))
        );
        let error = update(json!({"incident": "i", "status": "done"})).unwrap_err();
        assert_eq!(
            error.message,
            "invalid input: `status` \"done\" is not one of New, Active, Closed"
        );
    }

    #[test]
    fn an_update_must_change_something_and_a_close_needs_a_classification() {
        let nothing = update(json!({"incident": "i"})).unwrap_err();
        assert!(nothing.message.contains("nothing to change"), "{nothing:?}");
        let close = update(json!({"incident": "i", "status": "Closed"})).unwrap_err();
        assert_eq!(
            close.message,
            "invalid input: closing an incident needs a `classification`"
        );
        let both = update(json!({"incident": "i", "labels_add": ["x"], "labels_remove": ["x"]}))
            .unwrap_err();
        assert_eq!(
            both.message,
            "invalid input: label \"x\" is both added and removed"
        );
    }
}
