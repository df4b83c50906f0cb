//! Reading what surrounds a step's action: the `approval` that gates it, the `undo` that
//! compensates it, the `grant` that bounds it in time, and the `waves` that roll a `for_each`
//! out. Each reader reports every problem of its mapping and returns the value only when all
//! of it is valid.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

use marked_yaml::Node;

use crate::diagnostic::Sink;
use crate::limits;
use crate::model::{
    Amount, Approval, ApprovalOutcome, Grant, HealthGate, OutsideWindow, Undo, Waves,
};
use crate::step;
use crate::template::{Field, Use};
use crate::yaml::{self, Fields};

const APPROVAL_FIELDS: [&str; 4] = ["approvers", "min", "timeout", "on_timeout"];
const UNDO_FIELDS: [&str; 2] = ["action", "with"];
const GRANT_FIELDS: [&str; 2] = ["ttl", "subject"];
const WAVES_FIELDS: [&str; 6] = [
    "canary",
    "batch",
    "error_budget",
    "health",
    "window",
    "outside_window",
];
const HEALTH_FIELDS: [&str; 2] = ["action", "with"];
const OUTCOMES: [&str; 2] = ["approve", "reject"];

/// `approval: { approvers: [group, ...], min: 1, timeout: 15m, on_timeout: reject }`.
pub(crate) fn read_approval(node: &Node, path: &str, sink: &mut Sink) -> Option<Approval> {
    let fields = Fields::new(node, path, &APPROVAL_FIELDS, sink)?;
    let approvers = fields
        .require("approvers", sink)
        .and_then(|node| read_approvers(node, &fields.path_of("approvers"), sink));
    let min = match fields.get("min") {
        Some(node) => {
            let max = i64::from(limits::APPROVERS_MAX);
            yaml::expect_int(node, &fields.path_of("min"), 1..=max, sink)
                .and_then(|min| u32::try_from(min).ok())
        }
        None => Some(1),
    };
    let timeout_ms = fields.require("timeout", sink).and_then(|node| {
        let allowed = 1..=limits::APPROVAL_TIMEOUT_MS_MAX;
        step::read_duration(node, &fields.path_of("timeout"), allowed, sink)
    });
    let on_timeout = match fields.get("on_timeout") {
        Some(node) => read_outcome(node, &fields.path_of("on_timeout"), sink),
        None => Some(ApprovalOutcome::Reject),
    };
    Some(Approval {
        approvers: approvers?,
        min: min?,
        timeout_ms: timeout_ms?,
        on_timeout: on_timeout?,
    })
}

/// A non-empty list of distinct group names: `[a-z0-9][a-z0-9_-]*`, at most
/// [`limits::NAME_BYTES_MAX`] bytes each.
fn read_approvers(node: &Node, path: &str, sink: &mut Sink) -> Option<Vec<String>> {
    let list = yaml::expect_sequence(node, path, sink)?;
    if list.is_empty() {
        sink.push(
            yaml::pos(node),
            path,
            "an approval needs at least one group",
        );
        return None;
    }
    if list.len() > limits::APPROVER_GROUPS_MAX {
        let message = format!(
            "{} groups, more than the {} allowed",
            list.len(),
            limits::APPROVER_GROUPS_MAX
        );
        sink.push(yaml::pos(node), path, message);
        return None;
    }
    let mut groups = Vec::new();
    let mut seen = BTreeSet::new();
    let mut valid = true;
    for (i, item) in list.iter().enumerate() {
        let item_path = yaml::index(path, i);
        let Some(name) = yaml::expect_string(item, &item_path, sink) else {
            valid = false;
            continue;
        };
        if !is_group_name(name) {
            let message = format!(
                "invalid group name `{}`: use lowercase letters, digits, `_` and `-`, starting \
                 with a letter or digit, at most {} bytes",
                yaml::shorten(name),
                limits::NAME_BYTES_MAX
            );
            sink.push(yaml::pos(item), &item_path, message);
            valid = false;
        } else if !seen.insert(name) {
            let message = format!("`{name}` is listed twice");
            sink.push(yaml::pos(item), &item_path, message);
            valid = false;
        }
        groups.push(name.to_string());
    }
    valid.then_some(groups)
}

fn is_group_name(name: &str) -> bool {
    name.len() <= limits::NAME_BYTES_MAX
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn read_outcome(node: &Node, path: &str, sink: &mut Sink) -> Option<ApprovalOutcome> {
    match yaml::expect_string(node, path, sink)? {
        "approve" => Some(ApprovalOutcome::Approve),
        "reject" => Some(ApprovalOutcome::Reject),
        other => {
            let message = yaml::unknown_message("outcome", other, &OUTCOMES);
            sink.push(yaml::pos(node), path, message);
            None
        }
    }
}

/// `undo: { action: <catalog name>, with: { ... } }`; its templates also see the step's own
/// `steps.<id>` (checked with the playbook).
pub(crate) fn read_undo(
    node: &Node,
    path: &str,
    uses: &mut Vec<Use>,
    sink: &mut Sink,
) -> Option<Undo> {
    let fields = Fields::new(node, path, &UNDO_FIELDS, sink)?;
    let action = fields
        .require("action", sink)
        .and_then(|node| step::read_action(node, &fields.path_of("action"), sink));
    let with = step::read_with(&fields, action, Field::Undo, uses, sink);
    Some(Undo {
        action: action?.name.to_string(),
        with,
    })
}

/// `grant: { ttl: <duration or template>, subject: <template> }` in the step `parent`, which
/// needs an `undo` (the revoke).
pub(crate) fn read_grant(
    parent: &Fields<'_>,
    uses: &mut Vec<Use>,
    sink: &mut Sink,
) -> Option<Grant> {
    let node = parent.get("grant")?;
    let path = parent.path_of("grant");
    let needs_undo = parent.get("undo").is_none();
    if needs_undo {
        let message = "a grant needs an `undo`: the action that revokes it at the TTL";
        sink.push(parent.key_pos("grant"), &path, message);
    }
    let fields = Fields::new(node, &path, &GRANT_FIELDS, sink)?;
    let ttl = fields.require("ttl", sink).and_then(|node| {
        let expected = "a duration like `1h`";
        step::read_text(
            node,
            &fields.path_of("ttl"),
            Field::Grant,
            expected,
            uses,
            sink,
            |text| step::check_duration(text, 1..=limits::GRANT_TTL_MS_MAX).map(drop),
        )
    });
    let subject = match fields.get("subject") {
        Some(node) => {
            let path = fields.path_of("subject");
            let subject = yaml::expect_string(node, &path, sink);
            if let Some(text) = subject {
                uses.extend(Use::leaf(text, Field::Grant, yaml::pos(node), &path));
            }
            Some(subject?.to_string())
        }
        None => Some(String::new()),
    };
    if needs_undo {
        return None;
    }
    Some(Grant {
        ttl: ttl?,
        subject: subject?,
    })
}

/// `waves: { canary: 1, batch: 25%, error_budget: 2, health: { action, with } }` in the step
/// `parent`, which needs `for_each`.
pub(crate) fn read_waves(
    parent: &Fields<'_>,
    uses: &mut Vec<Use>,
    sink: &mut Sink,
) -> Option<Waves> {
    let node = parent.get("waves")?;
    let path = parent.path_of("waves");
    let needs_for_each = parent.get("for_each").is_none();
    if needs_for_each {
        let message = "`waves` applies only to steps with `for_each`";
        sink.push(parent.key_pos("waves"), &path, message);
    }
    let fields = Fields::new(node, &path, &WAVES_FIELDS, sink)?;
    let items_max = u32::try_from(limits::FOR_EACH_ITEMS_MAX).unwrap_or(u32::MAX);
    let canary = match fields.get("canary") {
        Some(node) => {
            let path = fields.path_of("canary");
            yaml::expect_int(node, &path, 0..=i64::from(items_max), sink)
                .and_then(|n| u32::try_from(n).ok())
        }
        None => Some(1),
    };
    let batch = match fields.get("batch") {
        Some(node) => read_amount(node, &fields.path_of("batch"), 1..=items_max, 1..=100, sink),
        None => Some(Amount::Percent(100)),
    };
    let error_budget = match fields.get("error_budget") {
        Some(node) => {
            let path = fields.path_of("error_budget");
            read_amount(node, &path, 0..=items_max, 0..=100, sink)
        }
        None => Some(Amount::Count(0)),
    };
    let health = match fields.get("health") {
        Some(node) => read_health(node, &fields.path_of("health"), uses, sink).map(Some),
        None => Some(None),
    };
    let window = match fields.get("window") {
        Some(node) => {
            let expected = "maintenance windows like `sat,sun 22:00-04:00 Europe/Berlin`";
            let path = fields.path_of("window");
            step::read_text(node, &path, Field::Health, expected, uses, sink, |text| {
                crate::schedule::Windows::parse(text)
                    .map(drop)
                    .map_err(|e| e.to_string())
            })
            .map(Some)
        }
        None => Some(None),
    };
    let outside_window = match fields.get("outside_window").map(|n| (n, n.as_scalar())) {
        None => Some(OutsideWindow::Wait),
        Some((_, Some(s))) if s.as_str() == "wait" => Some(OutsideWindow::Wait),
        Some((_, Some(s))) if s.as_str() == "fail" => Some(OutsideWindow::Fail),
        Some((node, _)) => {
            let message = format!("expected `wait` or `fail`, found {}", yaml::describe(node));
            sink.push(yaml::pos(node), &fields.path_of("outside_window"), message);
            None
        }
    };
    if needs_for_each {
        return None;
    }
    Some(Waves {
        canary: canary?,
        batch: batch?,
        error_budget: error_budget?,
        health: health?,
        window: window?,
        outside_window: outside_window?,
    })
}

/// A count (`5`) within `counts`, or a percentage of the items (`25%`) within `percents`.
fn read_amount(
    node: &Node,
    path: &str,
    counts: RangeInclusive<u32>,
    percents: RangeInclusive<u32>,
    sink: &mut Sink,
) -> Option<Amount> {
    let text = node
        .as_scalar()
        .filter(|s| !yaml::is_null(s))
        .map(|s| s.as_str().trim());
    let (number, percent) = match text {
        Some(text) => match text.strip_suffix('%') {
            Some(number) => (number.trim_end().parse::<i64>().ok(), true),
            None => (text.parse::<i64>().ok(), false),
        },
        None => (None, false),
    };
    let Some(number) = number else {
        let message = format!(
            "expected a count like `5` or a percentage like `25%`, found {}",
            yaml::describe(node)
        );
        sink.push(yaml::pos(node), path, message);
        return None;
    };
    let (allowed, unit) = if percent {
        (percents, "%")
    } else {
        (counts, "")
    };
    let problem = if number < i64::from(*allowed.start()) {
        Some(format!("must be at least {}{unit}", allowed.start()))
    } else if number > i64::from(*allowed.end()) {
        Some(format!("must be at most {}{unit}", allowed.end()))
    } else {
        None
    };
    if let Some(problem) = problem {
        sink.push(
            yaml::pos(node),
            path,
            format!("{problem}, found {number}{unit}"),
        );
        return None;
    }
    let number = u32::try_from(number).ok()?;
    Some(if percent {
        Amount::Percent(number)
    } else {
        Amount::Count(number)
    })
}

/// `health: { action: <catalog name>, with: { ... } }`; its templates see `wave`.
fn read_health(
    node: &Node,
    path: &str,
    uses: &mut Vec<Use>,
    sink: &mut Sink,
) -> Option<HealthGate> {
    let fields = Fields::new(node, path, &HEALTH_FIELDS, sink)?;
    let action = fields
        .require("action", sink)
        .and_then(|node| step::read_action(node, &fields.path_of("action"), sink));
    let with = step::read_with(&fields, action, Field::Health, uses, sink);
    Some(HealthGate {
        action: action?.name.to_string(),
        with,
    })
}
