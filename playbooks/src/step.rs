//! Reading one step from YAML into a draft: every field checked on its own, positions kept
//! for the checks that need the whole playbook (needs, cycles, template references).

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use marked_yaml::Node;
use serde_json::Value;

use crate::actions::{self, ActionSpec};
use crate::diagnostic::{Pos, Sink};
use crate::duration;
use crate::limits;
use crate::model::{Backoff, ForEach, RetryPolicy};
use crate::template::{self, Field, Leaf, Use};
use crate::yaml::{self, Fields};

const FIELDS: [&str; 10] = [
    "id",
    "action",
    "with",
    "needs",
    "when",
    "for_each",
    "concurrency",
    "retry",
    "timeout",
    "labels",
];
const RETRY_FIELDS: [&str; 4] = ["attempts", "backoff", "initial", "max"];

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
    pub action: String,
    pub with: Value,
    pub needs: Vec<NeedRef>,
    pub when: Option<String>,
    pub for_each: Option<ForEach>,
    pub retry: RetryPolicy,
    pub timeout_ms: u64,
    pub labels: BTreeMap<String, String>,
    /// Every template in the step, to check once all step ids are known.
    pub uses: Vec<Use>,
}

/// Reads `steps[index]`; problems go to `sink`, the draft keeps what could be read.
pub(crate) fn read(node: &Node, index: usize, sink: &mut Sink) -> Draft {
    let path = yaml::index("steps", index);
    let mut draft = Draft {
        path: path.clone(),
        id: None,
        id_pos: yaml::pos(node),
        action: String::new(),
        with: Value::Object(serde_json::Map::new()),
        needs: Vec::new(),
        when: None,
        for_each: None,
        retry: RetryPolicy::NONE,
        timeout_ms: limits::TIMEOUT_MS_DEFAULT,
        labels: BTreeMap::new(),
        uses: Vec::new(),
    };
    let Some(fields) = Fields::new(node, &path, &FIELDS, sink) else {
        return draft;
    };
    if let Some(id) = fields.require("id", sink) {
        draft.id_pos = yaml::pos(id);
        draft.id = read_id(id, &fields.path_of("id"), sink);
    }
    let action = read_action(&fields, sink);
    draft.action = action.map(|a| a.name.to_string()).unwrap_or_default();
    draft.with = read_with(&fields, action, &mut draft.uses, sink);
    draft.needs = read_needs(&fields, sink);
    draft.when = read_when(&fields, &mut draft.uses, sink);
    draft.for_each = read_for_each(&fields, &mut draft.uses, sink);
    draft.retry = read_retry(&fields, sink).unwrap_or(RetryPolicy::NONE);
    draft.timeout_ms = read_timeout(&fields, sink);
    draft.labels = read_labels(&fields, &mut draft.uses, sink);
    draft
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

fn read_action(fields: &Fields<'_>, sink: &mut Sink) -> Option<&'static ActionSpec> {
    let node = fields.require("action", sink)?;
    let path = fields.path_of("action");
    let name = yaml::expect_string(node, &path, sink)?;
    let action = actions::find(name);
    if action.is_none() {
        let known: Vec<&str> = actions::CATALOG.iter().map(|a| a.name).collect();
        sink.push(
            yaml::pos(node),
            &path,
            yaml::unknown_message("action", name, &known),
        );
    }
    action
}

fn read_with(
    fields: &Fields<'_>,
    action: Option<&ActionSpec>,
    uses: &mut Vec<Use>,
    sink: &mut Sink,
) -> Value {
    let path = fields.path_of("with");
    let map = match fields.get("with") {
        Some(node) => {
            let Some(map) = yaml::expect_mapping(node, &path, sink) else {
                return Value::Object(serde_json::Map::new());
            };
            collect_uses(node, &path, Field::With, uses);
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

/// Registers every string leaf of a `with` or `labels` tree that holds a template.
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

fn read_when(fields: &Fields<'_>, uses: &mut Vec<Use>, sink: &mut Sink) -> Option<String> {
    let node = fields.get("when")?;
    let path = fields.path_of("when");
    let expression = read_expression(node, &path, sink)?;
    uses.push(expression_use(&expression, Field::When, node, &path));
    Some(expression)
}

fn read_for_each(fields: &Fields<'_>, uses: &mut Vec<Use>, sink: &mut Sink) -> Option<ForEach> {
    let concurrency = read_concurrency(fields, sink);
    let node = fields.get("for_each")?;
    let path = fields.path_of("for_each");
    let items = match node {
        Node::Sequence(list) => read_literal_items(node, list, &path, uses, sink)?,
        Node::Scalar(_) => {
            let expression = read_expression(node, &path, sink)?;
            uses.push(expression_use(&expression, Field::ForEach, node, &path));
            expression
        }
        Node::Mapping(_) => {
            let message = format!(
                "expected an expression or a list, found {}",
                yaml::describe(node)
            );
            sink.push(yaml::pos(node), &path, message);
            return None;
        }
    };
    Some(ForEach {
        items,
        concurrency: concurrency.unwrap_or(limits::FOR_EACH_CONCURRENCY_DEFAULT),
    })
}

fn read_concurrency(fields: &Fields<'_>, sink: &mut Sink) -> Option<u32> {
    let node = fields.get("concurrency")?;
    let path = fields.path_of("concurrency");
    if fields.get("for_each").is_none() {
        sink.push(
            yaml::pos(node),
            &path,
            "`concurrency` applies only to steps with `for_each`",
        );
        return None;
    }
    let max = i64::from(limits::FOR_EACH_CONCURRENCY_MAX);
    let value = yaml::expect_int(node, &path, 1..=max, sink)?;
    u32::try_from(value).ok()
}

/// A literal list becomes expression source; a string item that is exactly one `{{ expr }}`
/// is that expression, other items are data.
fn read_literal_items(
    node: &Node,
    list: &marked_yaml::types::MarkedSequenceNode,
    path: &str,
    uses: &mut Vec<Use>,
    sink: &mut Sink,
) -> Option<String> {
    if list.len() > limits::FOR_EACH_ITEMS_MAX {
        let message = format!(
            "{} items, more than the {} allowed",
            list.len(),
            limits::FOR_EACH_ITEMS_MAX
        );
        sink.push(yaml::pos(node), path, message);
        return None;
    }
    let before = uses.len();
    collect_uses(node, path, Field::ForEach, uses);
    let mut valid = true;
    for used in uses.iter().skip(before).filter(|u| !u.expression) {
        let message = "an item of a literal list is data: a template item must be exactly one \
                       `{{ expression }}`";
        sink.push(used.pos, &used.path, message);
        valid = false;
    }
    valid.then(|| template::literal_source(&yaml::to_json(node)))
}

fn read_retry(fields: &Fields<'_>, sink: &mut Sink) -> Option<RetryPolicy> {
    let node = fields.get("retry")?;
    let path = fields.path_of("retry");
    let retry = Fields::new(node, &path, &RETRY_FIELDS, sink)?;
    let attempts_max = i64::from(limits::RETRY_ATTEMPTS_MAX);
    let attempts = retry
        .require("attempts", sink)
        .and_then(|n| yaml::expect_int(n, &retry.path_of("attempts"), 1..=attempts_max, sink));
    let backoff = match retry.get("backoff") {
        Some(node) => read_backoff(node, &retry.path_of("backoff"), sink),
        None => Some(Backoff::Exponential),
    };
    let delay = |name: &str, sink: &mut Sink| {
        let node = retry.get(name)?;
        read_duration(
            node,
            &retry.path_of(name),
            0..=limits::RETRY_DELAY_MS_MAX,
            sink,
        )
    };
    let initial_ms = delay("initial", sink);
    let max_ms = delay("max", sink);
    let (attempts, backoff) = (u32::try_from(attempts?).ok()?, backoff?);
    let initial_ms = match (retry.get("initial"), initial_ms) {
        (Some(_), None) => return None,
        (_, initial_ms) => initial_ms.unwrap_or(limits::RETRY_INITIAL_MS_DEFAULT),
    };
    let max_ms = read_retry_max(&retry, backoff, initial_ms, max_ms, sink)?;
    Some(RetryPolicy {
        attempts,
        backoff,
        initial_ms,
        max_ms,
    })
}

/// `max` bounds an exponential backoff; a fixed backoff waits `initial` every time.
fn read_retry_max(
    retry: &Fields<'_>,
    backoff: Backoff,
    initial_ms: u64,
    max_ms: Option<u64>,
    sink: &mut Sink,
) -> Option<u64> {
    let node = retry.get("max");
    let path = retry.path_of("max");
    match (backoff, node, max_ms) {
        (_, Some(_), None) => None,
        (Backoff::Fixed, Some(node), Some(_)) => {
            sink.push(
                yaml::pos(node),
                &path,
                "`max` applies only to exponential backoff",
            );
            None
        }
        (Backoff::Fixed, None, _) => Some(initial_ms),
        (Backoff::Exponential, Some(node), Some(max_ms)) if max_ms < initial_ms => {
            let message = format!(
                "max {} is shorter than initial {}",
                duration::format_ms(max_ms),
                duration::format_ms(initial_ms)
            );
            sink.push(yaml::pos(node), &path, message);
            None
        }
        (Backoff::Exponential, _, Some(max_ms)) => Some(max_ms),
        (Backoff::Exponential, _, None) => Some(limits::RETRY_MAX_MS_DEFAULT.max(initial_ms)),
    }
}

fn read_backoff(node: &Node, path: &str, sink: &mut Sink) -> Option<Backoff> {
    match yaml::expect_string(node, path, sink)? {
        "fixed" => Some(Backoff::Fixed),
        "exponential" => Some(Backoff::Exponential),
        other => {
            let message = yaml::unknown_message("backoff", other, &["fixed", "exponential"]);
            sink.push(yaml::pos(node), path, message);
            None
        }
    }
}

fn read_timeout(fields: &Fields<'_>, sink: &mut Sink) -> u64 {
    let Some(node) = fields.get("timeout") else {
        return limits::TIMEOUT_MS_DEFAULT;
    };
    let path = fields.path_of("timeout");
    read_duration(node, &path, 1..=limits::TIMEOUT_MS_MAX, sink)
        .unwrap_or(limits::TIMEOUT_MS_DEFAULT)
}

/// Duration text whose milliseconds are within `allowed`.
fn read_duration(
    node: &Node,
    path: &str,
    allowed: RangeInclusive<u64>,
    sink: &mut Sink,
) -> Option<u64> {
    let Some(text) = node
        .as_scalar()
        .filter(|s| !yaml::is_null(s))
        .map(|s| s.as_str())
    else {
        let message = format!(
            "expected a duration like `30s`, found {}",
            yaml::describe(node)
        );
        sink.push(yaml::pos(node), path, message);
        return None;
    };
    let ms = match duration::parse_ms(text) {
        Ok(ms) => ms,
        Err(message) => {
            sink.push(yaml::pos(node), path, message);
            return None;
        }
    };
    let text = text.trim();
    if ms < *allowed.start() {
        let shortest = duration::format_ms(*allowed.start());
        let message = match ms {
            0 => format!("must be longer than zero, found `{text}`"),
            _ => format!("must be at least {shortest}, found `{text}`"),
        };
        sink.push(yaml::pos(node), path, message);
        return None;
    }
    if ms > *allowed.end() {
        let longest = duration::format_ms(*allowed.end());
        sink.push(
            yaml::pos(node),
            path,
            format!("must be at most {longest}, found `{text}`"),
        );
        return None;
    }
    Some(ms)
}

fn read_labels(
    fields: &Fields<'_>,
    uses: &mut Vec<Use>,
    sink: &mut Sink,
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let Some(node) = fields.get("labels") else {
        return labels;
    };
    let path = fields.path_of("labels");
    let Some(map) = yaml::expect_mapping(node, &path, sink) else {
        return labels;
    };
    if map.len() > limits::LABELS_MAX {
        let message = format!(
            "{} labels, more than the {} allowed",
            map.len(),
            limits::LABELS_MAX
        );
        sink.push(yaml::pos(node), &path, message);
    }
    for (key, value) in map.iter() {
        let value_path = yaml::join(&path, key.as_str());
        let valid_key = check_label_key(key, &value_path, sink);
        let Some(text) = yaml::expect_string(value, &value_path, sink) else {
            continue;
        };
        if let Leaf::Expression(_) | Leaf::Template = template::classify(text) {
            uses.extend(Use::leaf(
                text,
                Field::Labels,
                yaml::pos(value),
                &value_path,
            ));
        }
        if valid_key {
            labels.insert(key.as_str().to_string(), text.to_string());
        }
    }
    labels
}

/// Label keys: `[a-z0-9][a-z0-9_.-]*`, at most [`limits::NAME_BYTES_MAX`] bytes.
fn check_label_key(
    key: &marked_yaml::types::MarkedScalarNode,
    path: &str,
    sink: &mut Sink,
) -> bool {
    let text = key.as_str();
    let valid = text.len() <= limits::NAME_BYTES_MAX
        && text
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && text.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        });
    if !valid {
        let message = format!(
            "invalid label `{}`: use lowercase letters, digits, `_`, `.` and `-`, starting with \
             a letter or digit, at most {} bytes",
            yaml::shorten(text),
            limits::NAME_BYTES_MAX
        );
        sink.push(yaml::scalar_pos(key), path, message);
    }
    valid
}
