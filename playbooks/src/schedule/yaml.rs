//! Schedules and rules in YAML: the language's one front end ([`crate::yaml::load_document`],
//! with the bounds of a schedule or a rule), and small readers that report into the
//! language's [`Sink`].
//!
//! The playbook compiler keeps its readers private; these are the small subset schedules need.

use marked_yaml::Node;
use serde_json::Value;

pub(crate) use crate::diagnostic::Sink;
use crate::yaml::{Document, load_document};

use super::limits;

/// A schedule's bounds.
const SCHEDULE: Document = Document {
    noun: "schedule",
    bytes_max: limits::SOURCE_BYTES_MAX,
    depth_max: limits::YAML_DEPTH_MAX,
};

/// A rule's bounds.
const RULE: Document = Document {
    noun: "rule",
    bytes_max: crate::rules::limits::SOURCE_BYTES_MAX,
    depth_max: limits::YAML_DEPTH_MAX,
};

/// Parses a schedule's `source` into a bounded mapping, or reports why not.
pub(crate) fn load(source: &str, sink: &mut Sink) -> Option<Node> {
    load_mapping(source, &SCHEDULE, sink)
}

/// Parses a rule's `source` into a bounded mapping, or reports why not.
pub(crate) fn load_rule(source: &str, sink: &mut Sink) -> Option<Node> {
    load_mapping(source, &RULE, sink)
}

fn load_mapping(source: &str, document: &Document, sink: &mut Sink) -> Option<Node> {
    match load_document(source, document, sink)? {
        Node::Mapping(map) => Some(Node::Mapping(map)),
        other => {
            let message = format!("a {} must be a YAML mapping", document.noun);
            sink.push(pos(&other), "", message);
            None
        }
    }
}

fn clamp(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Where a node starts, 1-based line and column (0:0 when unknown).
pub(crate) fn pos(node: &Node) -> (u32, u32) {
    span_pos(node.span())
}

pub(crate) fn span_pos(span: &marked_yaml::Span) -> (u32, u32) {
    span.start()
        .map_or((0, 0), |m| (clamp(m.line()), clamp(m.column())))
}

/// "a mapping", "a list", "`text`" for "expected X, found Y" messages.
pub(crate) fn describe(node: &Node) -> String {
    match node {
        Node::Mapping(_) => "a mapping".to_string(),
        Node::Sequence(_) => "a list".to_string(),
        Node::Scalar(s) => {
            let text: String = s.as_str().chars().take(40).collect();
            format!("`{text}`")
        }
    }
}

/// The text of a scalar, or a diagnostic.
pub(crate) fn string<'a>(node: &'a Node, path: &str, sink: &mut Sink) -> Option<&'a str> {
    match node {
        Node::Scalar(s) if !s.as_str().is_empty() => Some(s.as_str()),
        _ => {
            let message = format!("expected a string, found {}", describe(node));
            sink.push(pos(node), path, message);
            None
        }
    }
}

/// A plain integer within `range`, or a diagnostic.
pub(crate) fn int(
    node: &Node,
    path: &str,
    range: std::ops::RangeInclusive<i64>,
    sink: &mut Sink,
) -> Option<i64> {
    let Some(value) = node.as_scalar().and_then(|s| s.as_i64()) else {
        let message = format!("expected an integer, found {}", describe(node));
        sink.push(pos(node), path, message);
        return None;
    };
    if !range.contains(&value) {
        let message = format!(
            "must be between {} and {}, found {value}",
            range.start(),
            range.end()
        );
        sink.push(pos(node), path, message);
        return None;
    }
    Some(value)
}

/// A plain `true` or `false`, or a diagnostic.
pub(crate) fn boolean(node: &Node, path: &str, sink: &mut Sink) -> Option<bool> {
    let value = node.as_scalar().and_then(|s| s.as_bool());
    if value.is_none() {
        let message = format!("expected true or false, found {}", describe(node));
        sink.push(pos(node), path, message);
    }
    value
}

/// The JSON a node stands for: plain scalars typed (null, bool, integer, float), quoted ones
/// strings.
pub(crate) fn to_json(node: &Node) -> Value {
    match node {
        Node::Scalar(s) if s.may_coerce() && matches!(s.as_str(), "" | "~" | "null") => Value::Null,
        Node::Scalar(s) => s
            .as_bool()
            .map(Value::Bool)
            .or_else(|| s.as_i64().map(Value::from))
            .or_else(|| {
                let numeric = s
                    .as_str()
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
                s.as_f64()
                    .filter(|_| numeric)
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
            })
            .unwrap_or_else(|| Value::String(s.as_str().to_string())),
        Node::Sequence(seq) => Value::Array(seq.iter().map(to_json).collect()),
        Node::Mapping(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.as_str().to_string(), to_json(v)))
                .collect(),
        ),
    }
}
