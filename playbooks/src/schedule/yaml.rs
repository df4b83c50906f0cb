//! Schedule YAML to a positioned tree, with the same pre-parse bounds as the playbook
//! compiler (size, one document, nesting depth checked on the event stream before the tree
//! is built), and small readers that report into a [`Sink`].
//!
//! The playbook compiler keeps its readers private; this is the small subset schedules need.

use crate::Diagnostic;
use marked_yaml::{LoaderOptions, Node};
use serde_json::Value;
use yaml_rust2::parser::{Event, Parser};

use super::limits;

/// Collects every problem, so that all are reported at once.
#[derive(Debug, Default)]
pub(crate) struct Sink(Vec<Diagnostic>);

impl Sink {
    pub fn push(&mut self, (line, column): (u32, u32), path: &str, message: impl Into<String>) {
        self.0.push(Diagnostic {
            message: message.into(),
            path: path.to_string(),
            line,
            column,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// In source order, at most [`limits::DIAGNOSTICS_MAX`] and one that counts the rest.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.0.sort_by_key(|d| (d.line, d.column));
        self.0.dedup();
        let total = self.0.len();
        if total > limits::DIAGNOSTICS_MAX {
            self.0.truncate(limits::DIAGNOSTICS_MAX);
            let more = total - limits::DIAGNOSTICS_MAX;
            self.push((0, 0), "", format!("{more} more problems not shown"));
        }
        self.0
    }
}

/// Parses `source` into a bounded tree, or reports why not.
pub(crate) fn load(source: &str, sink: &mut Sink) -> Option<Node> {
    if source.len() > limits::SOURCE_BYTES_MAX {
        let message = format!(
            "schedule is {} bytes, more than the {} allowed",
            source.len(),
            limits::SOURCE_BYTES_MAX
        );
        sink.push((0, 0), "", message);
        return None;
    }
    if let Some(c) = source
        .chars()
        .find(|c| c.is_control() && !"\t\n\r".contains(*c))
    {
        let message = format!("control character U+{:04X} is not allowed", u32::from(c));
        sink.push((0, 0), "", message);
        return None;
    }
    if !check_events(source, sink) {
        return None;
    }
    let options = LoaderOptions::default()
        .error_on_duplicate_keys(true)
        .prevent_coercion(true);
    match marked_yaml::parse_yaml_with_options(0, source, options) {
        Ok(Node::Mapping(map)) => Some(Node::Mapping(map)),
        Ok(other) => {
            sink.push(pos(&other), "", "a schedule must be a YAML mapping");
            None
        }
        Err(error) => {
            sink.push((0, 0), "", format!("invalid YAML: {error}"));
            None
        }
    }
}

/// One document, nesting at most [`limits::YAML_DEPTH_MAX`], without building a tree.
fn check_events(source: &str, sink: &mut Sink) -> bool {
    let mut parser = Parser::new_from_str(source);
    let (mut depth, mut documents) = (0usize, 0usize);
    loop {
        let (event, marker) = match parser.next_token() {
            Ok(next) => next,
            Err(error) => {
                let at = (
                    clamp(error.marker().line()),
                    clamp(error.marker().col() + 1),
                );
                sink.push(at, "", format!("invalid YAML: {}", error.info()));
                return false;
            }
        };
        let at = (clamp(marker.line()), clamp(marker.col() + 1));
        match event {
            Event::StreamEnd => return true,
            Event::DocumentStart if documents > 0 => {
                sink.push(at, "", "a schedule must be a single YAML document");
                return false;
            }
            Event::DocumentStart => documents += 1,
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                depth += 1;
                if depth > limits::YAML_DEPTH_MAX {
                    let message = format!("nesting deeper than {} levels", limits::YAML_DEPTH_MAX);
                    sink.push(at, "", message);
                    return false;
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            _ => {}
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
