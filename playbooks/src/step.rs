//! Reading one step from YAML into a draft: every field checked on its own, positions kept
//! for the checks that need the whole playbook (needs, cycles, template references).
//!
//! A step is one of four kinds, decided by which of `action`, `sleep`, `until` and `approval`
//! it has; the fields around an action (approval, undo, grant, waves) are read in `controls`.

mod fields;
pub(crate) use fields::{check_duration, read_duration};
use fields::{read_for_each, read_labels, read_retry, read_timeout, read_when};

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use marked_yaml::Node;
use serde_json::Value;

use crate::actions::{self, ActionSpec};
use crate::controls;
use crate::diagnostic::{Pos, Sink};
use crate::duration;
use crate::limits;
use crate::model::{Approval, Backoff, ForEach, Grant, RetryPolicy, StepKind, Undo, Waves};
use crate::template::{self, Field, Leaf, Use};
use crate::timestamp;
use crate::yaml::{self, Fields};

const FIELDS: [&str; 18] = [
    "id",
    "action",
    "sleep",
    "until",
    "approval",
    "with",
    "needs",
    "when",
    "for_each",
    "concurrency",
    "retry",
    "timeout",
    "schedule_to_start",
    "labels",
    "undo",
    "grant",
    "waves",
    "on_failure",
];
const RETRY_FIELDS: [&str; 4] = ["attempts", "backoff", "initial", "max"];
/// The fields that decide a step's kind.
const KIND_FIELDS: [&str; 4] = ["action", "sleep", "until", "approval"];
/// The fields only a step with an `action` may have.
const ACTION_FIELDS: [&str; 11] = [
    "with",
    "for_each",
    "concurrency",
    "retry",
    "timeout",
    "schedule_to_start",
    "labels",
    "undo",
    "grant",
    "waves",
    "on_failure",
];

/// One `needs` entry, unresolved.
#[derive(Debug, Clone)]
pub(crate) struct NeedRef {
    pub id: String,
    pub pos: Pos,
    pub path: String,
}

/// A step as read, before the playbook-wide checks and the topological order.
#[derive(Debug, Clone)]
pub(crate) struct Draft {
    pub path: String,
    pub id: Option<String>,
    pub id_pos: Pos,
    pub kind: StepKind,
    pub action: String,
    pub with: Value,
    pub needs: Vec<NeedRef>,
    pub when: Option<String>,
    pub for_each: Option<ForEach>,
    pub retry: RetryPolicy,
    pub timeout_ms: u64,
    pub schedule_to_start_ms: Option<u64>,
    pub continue_on_failure: bool,
    pub labels: BTreeMap<String, String>,
    pub approval: Option<Approval>,
    pub undo: Option<Undo>,
    pub grant: Option<Grant>,
    pub waves: Option<Waves>,
    /// Every template in the step, to check once all step ids are known.
    pub uses: Vec<Use>,
}

/// The kind of a step, before its value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Action,
    Sleep,
    Until,
    Approval,
}

impl Shape {
    fn of(field: &str) -> Shape {
        match field {
            "sleep" => Shape::Sleep,
            "until" => Shape::Until,
            "approval" => Shape::Approval,
            _ => Shape::Action,
        }
    }

    fn field(self) -> &'static str {
        match self {
            Shape::Action => "action",
            Shape::Sleep => "sleep",
            Shape::Until => "until",
            Shape::Approval => "approval",
        }
    }

    /// The step, in messages.
    fn noun(self) -> &'static str {
        match self {
            Shape::Action => "an action step",
            Shape::Sleep => "a sleep step",
            Shape::Until => "an until step",
            Shape::Approval => "an approval step",
        }
    }
}

/// Reads `steps[index]`; problems go to `sink`, the draft keeps what could be read.
pub(crate) fn read(node: &Node, index: usize, sink: &mut Sink) -> Draft {
    let path = yaml::index("steps", index);
    let mut draft = Draft {
        path: path.clone(),
        id: None,
        id_pos: yaml::pos(node),
        kind: StepKind::Action,
        action: String::new(),
        with: Value::Object(serde_json::Map::new()),
        needs: Vec::new(),
        when: None,
        for_each: None,
        retry: RetryPolicy::NONE,
        timeout_ms: limits::TIMEOUT_MS_DEFAULT,
        schedule_to_start_ms: None,
        continue_on_failure: false,
        labels: BTreeMap::new(),
        approval: None,
        undo: None,
        grant: None,
        waves: None,
        uses: Vec::new(),
    };
    let Some(fields) = Fields::new(node, &path, &FIELDS, sink) else {
        return draft;
    };
    if let Some(id) = fields.require("id", sink) {
        draft.id_pos = yaml::pos(id);
        draft.id = read_id(id, &fields.path_of("id"), sink);
    }
    match read_shape(&fields, sink) {
        Shape::Action => read_action_step(&fields, &mut draft, sink),
        shape => {
            refuse_action_fields(&fields, shape, sink);
            read_other_step(&fields, shape, &mut draft, sink);
        }
    }
    draft.needs = read_needs(&fields, sink);
    draft.when = read_when(&fields, &mut draft.uses, sink);
    draft
}

/// Which kind the step is. A step has one of `action`, `sleep`, `until` and `approval`, except
/// that an `approval` may gate an `action`; a field that conflicts with the kind is reported
/// and not read. A step with none of them is an action step missing its `action`.
fn read_shape(fields: &Fields<'_>, sink: &mut Sink) -> Shape {
    let present: Vec<&marked_yaml::types::MarkedScalarNode> = fields
        .map
        .keys()
        .filter(|key| KIND_FIELDS.contains(&key.as_str()))
        .collect();
    let Some(first) = present.first() else {
        let message = "missing required field `action` (or `sleep`, `until`, `approval`)";
        sink.push(fields.pos(), &fields.path_of("action"), message);
        return Shape::Action;
    };
    let shape = match fields.get("action") {
        Some(_) => Shape::Action,
        None => Shape::of(first.as_str()),
    };
    for key in present {
        let other = Shape::of(key.as_str());
        if other == shape || (shape == Shape::Action && other == Shape::Approval) {
            continue;
        }
        let mut message = format!(
            "`{}` cannot be combined with `{}`: a step runs an action, sleeps, waits until a \
             time, or waits for an approval",
            other.field(),
            shape.field()
        );
        if Shape::Approval == other || Shape::Approval == shape {
            message.push_str(" (an `approval` may gate an `action`, nothing else)");
        }
        sink.push(
            yaml::scalar_pos(key),
            &fields.path_of(key.as_str()),
            message,
        );
    }
    shape
}

/// Reports the fields of an action step found on a step of another kind.
fn refuse_action_fields(fields: &Fields<'_>, shape: Shape, sink: &mut Sink) {
    let kind = shape.noun();
    for key in fields
        .map
        .keys()
        .filter(|key| ACTION_FIELDS.contains(&key.as_str()))
    {
        let field = key.as_str();
        let message = match (field, shape) {
            ("timeout", Shape::Approval) => format!(
                "`timeout` applies only to steps with an `action`; {kind} has \
                 `approval.timeout`"
            ),
            ("timeout", _) => format!(
                "`timeout` applies only to steps with an `action`; {kind} ends at its own time"
            ),
            _ => format!("`{field}` applies only to steps with an `action`, not to {kind}"),
        };
        sink.push(yaml::scalar_pos(key), &fields.path_of(field), message);
    }
}

fn read_action_step(fields: &Fields<'_>, draft: &mut Draft, sink: &mut Sink) {
    let uses = &mut draft.uses;
    let action = fields
        .get("action")
        .and_then(|node| read_action(node, &fields.path_of("action"), sink));
    draft.action = action.map(|a| a.name.to_string()).unwrap_or_default();
    draft.with = read_with(fields, action, Field::With, uses, sink);
    draft.for_each = read_for_each(fields, uses, sink);
    draft.retry = read_retry(fields, sink).unwrap_or(RetryPolicy::NONE);
    draft.timeout_ms = read_timeout(fields, sink);
    draft.schedule_to_start_ms = fields.get("schedule_to_start").and_then(|node| {
        let path = fields.path_of("schedule_to_start");
        read_duration(node, &path, 1_000..=limits::SCHEDULE_TO_START_MS_MAX, sink)
    });
    draft.labels = read_labels(fields, uses, sink);
    draft.approval = fields
        .get("approval")
        .and_then(|node| controls::read_approval(node, &fields.path_of("approval"), sink));
    draft.undo = fields
        .get("undo")
        .and_then(|node| controls::read_undo(node, &fields.path_of("undo"), uses, sink));
    draft.grant = controls::read_grant(fields, uses, sink);
    draft.waves = controls::read_waves(fields, uses, sink);
    draft.continue_on_failure = read_on_failure(fields, draft, sink);
}

/// `on_failure: fail` (the default) or `continue`, which only a step of one task without a
/// grant or waves may have (a failed grant or wave has its own consequences).
fn read_on_failure(fields: &Fields<'_>, draft: &Draft, sink: &mut Sink) -> bool {
    let Some(node) = fields.get("on_failure") else {
        return false;
    };
    let path = fields.path_of("on_failure");
    let continues = match node.as_scalar().map(|s| s.as_str()) {
        Some("fail") => false,
        Some("continue") => true,
        _ => {
            let found = yaml::describe(node);
            sink.push(
                yaml::pos(node),
                &path,
                format!("expected fail or continue, found {found}"),
            );
            return false;
        }
    };
    let other = [
        ("for_each", draft.for_each.is_some()),
        ("grant", draft.grant.is_some()),
        ("waves", draft.waves.is_some()),
    ];
    if let Some((field, _)) = other.iter().find(|(_, set)| continues && *set) {
        let message =
            format!("`on_failure: continue` is for a step of one task; this step has `{field}`");
        sink.push(yaml::pos(node), &path, message);
        return false;
    }
    continues
}

/// A sleep, until or approval step: its own field only (the others were refused).
fn read_other_step(fields: &Fields<'_>, shape: Shape, draft: &mut Draft, sink: &mut Sink) {
    let field = shape.field();
    let Some(node) = fields.get(field) else {
        return;
    };
    let path = fields.path_of(field);
    let uses = &mut draft.uses;
    match shape {
        Shape::Sleep => {
            let expected = "a duration like `15m`";
            let duration = read_text(node, &path, Field::Sleep, expected, uses, sink, |text| {
                check_duration(text, 1..=limits::SLEEP_MS_MAX).map(drop)
            });
            draft.kind = StepKind::Sleep {
                duration: duration.unwrap_or_default(),
            };
        }
        Shape::Until => {
            let expected = "a time like `2026-12-01T02:00:00Z`";
            let at = read_text(node, &path, Field::Until, expected, uses, sink, |text| {
                timestamp::parse_ms(text)
                    .map(drop)
                    .map_err(|e| e.to_string())
            });
            draft.kind = StepKind::Until {
                at: at.unwrap_or_default(),
            };
        }
        Shape::Approval => {
            draft.approval = controls::read_approval(node, &path, sink);
            draft.kind = StepKind::Approval;
        }
        Shape::Action => {}
    }
}

/// A string that is either a template (registered in `uses`, checked when the playbook is
/// whole, evaluated at run time) or a literal checked now by `literal`.
pub(crate) fn read_text(
    node: &Node,
    path: &str,
    field: Field,
    expected: &str,
    uses: &mut Vec<Use>,
    sink: &mut Sink,
    literal: impl FnOnce(&str) -> Result<(), String>,
) -> Option<String> {
    let Some(text) = node
        .as_scalar()
        .filter(|s| !yaml::is_null(s))
        .map(|s| s.as_str())
    else {
        let message = format!(
            "expected {expected} or a template, found {}",
            yaml::describe(node)
        );
        sink.push(yaml::pos(node), path, message);
        return None;
    };
    match Use::leaf(text, field, yaml::pos(node), path) {
        Some(used) => uses.push(used),
        None => {
            if let Err(message) = literal(text) {
                sink.push(yaml::pos(node), path, message);
                return None;
            }
        }
    }
    Some(text.to_string())
}

/// A step id: `[a-z0-9_][a-z0-9_-]*`, at most [`limits::NAME_BYTES_MAX`] bytes.
fn read_id(node: &Node, path: &str, sink: &mut Sink) -> Option<String> {
    let id = yaml::expect_string(node, path, sink)?;
    let valid = id.len() <= limits::NAME_BYTES_MAX
        && id.bytes().next().is_some_and(|b| b != b'-')
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !valid {
        let message = format!(
            "invalid step id `{}`: use lowercase letters, digits, `_` and `-`, not starting \
             with `-`, at most {} bytes",
            yaml::shorten(id),
            limits::NAME_BYTES_MAX
        );
        sink.push(yaml::pos(node), path, message);
        return None;
    }
    Some(id.to_string())
}

/// An action name from the catalog.
pub(crate) fn read_action(node: &Node, path: &str, sink: &mut Sink) -> Option<&'static ActionSpec> {
    let name = yaml::expect_string(node, path, sink)?;
    let action = actions::find(name);
    if action.is_none() {
        let known: Vec<&str> = actions::CATALOG.iter().map(|a| a.name).collect();
        sink.push(
            yaml::pos(node),
            path,
            yaml::unknown_message("action", name, &known),
        );
    }
    action
}

/// The `with` of `fields`: a mapping whose templates are registered as `field`, and whose keys
/// are checked against the inputs of `action` (when known).
pub(crate) fn read_with(
    fields: &Fields<'_>,
    action: Option<&ActionSpec>,
    field: Field,
    uses: &mut Vec<Use>,
    sink: &mut Sink,
) -> Value {
    let path = fields.path_of("with");
    let map = match fields.get("with") {
        Some(node) => {
            let Some(map) = yaml::expect_mapping(node, &path, sink) else {
                return Value::Object(serde_json::Map::new());
            };
            collect_uses(node, &path, field, uses);
            Some((node, map))
        }
        None => None,
    };
    if let Some(action) = action {
        let at = map.map_or(fields.pos(), |(node, _)| yaml::pos(node));
        check_inputs(action, map.map(|(_, m)| m), at, &path, sink);
    }
    map.map_or(Value::Object(serde_json::Map::new()), |(node, _)| {
        yaml::to_json(node)
    })
}

/// Unknown inputs (unless the action takes any) and missing required ones.
fn check_inputs(
    action: &ActionSpec,
    with: Option<&marked_yaml::types::MarkedMappingNode>,
    at: Pos,
    path: &str,
    sink: &mut Sink,
) {
    let known: Vec<&str> = action.inputs.iter().map(|i| i.name).collect();
    if let (Some(with), false) = (with, action.open_inputs) {
        for key in with.keys().filter(|k| !known.contains(&k.as_str())) {
            let mut message = format!(
                "unknown input `{}` for action `{}`",
                key.as_str(),
                action.name
            );
            if let Some(close) = yaml::suggest(key.as_str(), known.iter().copied()) {
                message.push_str(&format!(" (did you mean `{close}`?)"));
            }
            sink.push(
                yaml::scalar_pos(key),
                &yaml::join(path, key.as_str()),
                message,
            );
        }
    }
    for input in action.inputs.iter().filter(|i| i.required) {
        if with.and_then(|w| w.get_node(input.name)).is_none() {
            let message = format!(
                "missing required input `{}` for action `{}`",
                input.name, action.name
            );
            sink.push(at, &yaml::join(path, input.name), message);
        }
    }
}

/// Registers every string leaf of a template tree (`with`, `labels`, an undo's or a health
/// gate's `with`) that holds a template.
fn collect_uses(node: &Node, path: &str, field: Field, uses: &mut Vec<Use>) {
    match node {
        Node::Scalar(_) => {
            if let Value::String(text) = yaml::to_json(node) {
                uses.extend(Use::leaf(&text, field, yaml::pos(node), path));
            }
        }
        Node::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                collect_uses(item, &yaml::index(path, i), field, uses);
            }
        }
        Node::Mapping(map) => {
            for (key, value) in map.iter() {
                collect_uses(value, &yaml::join(path, key.as_str()), field, uses);
            }
        }
    }
}

fn read_needs(fields: &Fields<'_>, sink: &mut Sink) -> Vec<NeedRef> {
    let Some(node) = fields.get("needs") else {
        return Vec::new();
    };
    let path = fields.path_of("needs");
    let Some(list) = yaml::expect_sequence(node, &path, sink) else {
        return Vec::new();
    };
    if list.len() > limits::NEEDS_MAX {
        let message = format!(
            "{} needs, more than the {} allowed",
            list.len(),
            limits::NEEDS_MAX
        );
        sink.push(yaml::pos(node), &path, message);
    }
    let mut needs = Vec::new();
    for (i, item) in list.iter().enumerate() {
        let item_path = yaml::index(&path, i);
        if let Some(id) = yaml::expect_string(item, &item_path, sink) {
            needs.push(NeedRef {
                id: id.to_string(),
                pos: yaml::pos(item),
                path: item_path,
            });
        }
    }
    needs
}

/// An expression given as a scalar, with or without `{{ }}`.
fn read_expression(node: &Node, path: &str, sink: &mut Sink) -> Option<String> {
    let text = yaml::expect_string(node, path, sink)?;
    match template::expression_source(text) {
        Ok("") => {
            sink.push(
                yaml::pos(node),
                path,
                "expected an expression, found nothing",
            );
            None
        }
        Ok(expression) => Some(expression.to_string()),
        Err(message) => {
            sink.push(yaml::pos(node), path, message);
            None
        }
    }
}

fn expression_use(source: &str, field: Field, node: &Node, path: &str) -> Use {
    Use {
        source: source.to_string(),
        expression: true,
        field,
        pos: yaml::pos(node),
        path: path.to_string(),
    }
}
