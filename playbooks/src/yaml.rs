//! From source text to a YAML tree with positions, and small readers over that tree.
//!
//! Building the tree recurses once per nesting level, so the source is checked first: its
//! size, its characters, then one pass over the parser's event stream (an iterative state
//! machine, safe at any depth) that refuses a second document and nesting deeper than
//! [`limits::YAML_DEPTH_MAX`] at the exact position. Only then is the tree built.

use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode, MarkedSequenceNode};
use marked_yaml::{LoadError, LoaderOptions, Node};
use serde_json::Value;
use yaml_rust2::parser::{Event, Parser};

use crate::diagnostic::{Pos, Sink};
use crate::limits;

/// What kind of document the front end reads: the noun its messages use and its bounds.
pub(crate) struct Document {
    pub noun: &'static str,
    pub bytes_max: usize,
    /// Nesting levels allowed (a scalar counts as a level, like the collections holding it).
    pub depth_max: usize,
}

/// A playbook.
pub(crate) const PLAYBOOK: Document = Document {
    noun: "playbook",
    bytes_max: limits::SOURCE_BYTES_MAX,
    depth_max: limits::YAML_DEPTH_MAX,
};

/// Parses a playbook's `source` into a bounded tree, or reports why not.
pub(crate) fn load(source: &str, sink: &mut Sink) -> Option<Node> {
    load_document(source, &PLAYBOOK, sink)
}

/// Reads a YAML document of a kind the language does not define itself (a playbook's test
/// file) through the same bounded front end, into JSON: one document of at most `bytes_max`
/// bytes, nested at most [`limits::YAML_DEPTH_MAX`] levels, no duplicate keys.
pub fn load_json(
    source: &str,
    noun: &'static str,
    bytes_max: usize,
) -> Result<Value, Vec<crate::Diagnostic>> {
    let document = Document {
        noun,
        bytes_max,
        depth_max: limits::YAML_DEPTH_MAX,
    };
    let mut sink = Sink::default();
    match load_document(source, &document, &mut sink) {
        Some(node) => Ok(crate::schedule::yaml::to_json(&node)),
        None => Err(sink.into_sorted()),
    }
}

/// The one YAML front end of the language (playbooks, schedules, rules): parses `source` into
/// a tree no deeper than `document.depth_max`, or reports why not.
pub(crate) fn load_document(source: &str, document: &Document, sink: &mut Sink) -> Option<Node> {
    if source.len() > document.bytes_max {
        let message = format!(
            "{} is {} bytes, more than the {} allowed",
            document.noun,
            source.len(),
            document.bytes_max
        );
        sink.push(Pos::NONE, "", message);
        return None;
    }
    if !check_characters(source, sink) || !check_events(source, document, sink) {
        return None;
    }
    let options = LoaderOptions::default()
        .error_on_duplicate_keys(true)
        .prevent_coercion(true);
    match marked_yaml::parse_yaml_with_options(0, source, options) {
        Ok(root) => Some(root),
        Err(error) => {
            report_load_error(&error, document, sink);
            None
        }
    }
}

/// Refuses control characters other than tab and line breaks: YAML does not allow them, and
/// the parser takes a NUL for the end of the input.
fn check_characters(source: &str, sink: &mut Sink) -> bool {
    let lines = source
        .split('\n')
        .flat_map(|line| line.strip_suffix('\r').unwrap_or(line).split('\r'));
    for (index, line) in lines.enumerate() {
        let found = line
            .chars()
            .enumerate()
            .find(|(_, c)| c.is_control() && *c != '\t');
        if let Some((column, c)) = found {
            let message = format!("control character U+{:04X} is not allowed", u32::from(c));
            sink.push(Pos::new(index + 1, column + 1), "", message);
            return false;
        }
    }
    true
}

/// Walks the parser's events without building anything: one document, bounded depth (scalars
/// count as a level, like the collections holding them).
fn check_events(source: &str, document: &Document, sink: &mut Sink) -> bool {
    let mut parser = Parser::new_from_str(source);
    let (mut depth, mut documents) = (0usize, 0usize);
    loop {
        let (event, marker) = match parser.next_token() {
            Ok(next) => next,
            Err(error) => {
                let pos = scan_pos(error.marker());
                sink.push(pos, "", scan_message(error.info()));
                return false;
            }
        };
        let pos = scan_pos(&marker);
        match event {
            Event::StreamEnd => return true,
            Event::DocumentStart if documents > 0 => {
                let message = format!("a {} must be a single YAML document", document.noun);
                sink.push(pos, "", message);
                return false;
            }
            Event::DocumentStart => documents += 1,
            Event::SequenceStart(..) | Event::MappingStart(..) | Event::Scalar(..) => {
                if depth == document.depth_max {
                    let message = format!("nesting deeper than {} levels", document.depth_max);
                    sink.push(pos, "", message);
                    return false;
                }
                if !matches!(event, Event::Scalar(..)) {
                    depth += 1;
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
}

/// The parser's markers count columns from 0; ours from 1.
fn scan_pos(marker: &yaml_rust2::scanner::Marker) -> Pos {
    Pos::new(marker.line(), marker.col() + 1)
}

fn report_load_error(error: &LoadError, document: &Document, sink: &mut Sink) {
    let (pos, message) = match error {
        LoadError::TopLevelMustBeMapping(m) | LoadError::TopLevelMustBeSequence(m) => (
            Pos::of_marker(m),
            format!("a {} must be a YAML mapping", document.noun),
        ),
        LoadError::UnexpectedAnchor(m) => (
            Pos::of_marker(m),
            "YAML anchors and aliases are not allowed".to_string(),
        ),
        LoadError::MappingKeyMustBeScalar(m) => (
            Pos::of_marker(m),
            "mapping keys must be scalars".to_string(),
        ),
        LoadError::UnexpectedTag(m) => (Pos::of_marker(m), "YAML tags are not allowed".to_string()),
        LoadError::ScanError(m, scan) => (Pos::of_marker(m), scan_message(scan.info())),
        LoadError::DuplicateKey(inner) => {
            let first = Pos::of_span(inner.prev_key.span());
            let message = format!(
                "duplicate key `{}` (first at {}:{})",
                inner.key.as_str(),
                first.line,
                first.column
            );
            (Pos::of_span(inner.key.span()), message)
        }
    };
    sink.push(pos, "", message);
}

fn scan_message(info: &str) -> String {
    if info.contains("unknown anchor") {
        "YAML anchors and aliases are not allowed".to_string()
    } else {
        format!("invalid YAML: {info}")
    }
}

/// Where a node starts.
pub(crate) fn pos(node: &Node) -> Pos {
    Pos::of_span(node.span())
}

/// Where a scalar (a mapping key, say) starts.
pub(crate) fn scalar_pos(scalar: &MarkedScalarNode) -> Pos {
    Pos::of_span(scalar.span())
}

/// A short description of what a node is, for "expected X, found Y" messages.
pub(crate) fn describe(node: &Node) -> String {
    match node {
        Node::Mapping(_) => "a mapping".to_string(),
        Node::Sequence(_) => "a list".to_string(),
        Node::Scalar(s) if is_null(s) => "nothing".to_string(),
        Node::Scalar(s) if !s.may_coerce() => {
            format!("the quoted string `{}`", shorten(s.as_str()))
        }
        Node::Scalar(s) => format!("`{}`", shorten(s.as_str())),
    }
}

/// Cuts long text for messages.
pub(crate) fn shorten(text: &str) -> String {
    const CHARS_MAX: usize = 40;
    if text.chars().count() <= CHARS_MAX {
        return text.to_string();
    }
    let head: String = text.chars().take(CHARS_MAX).collect();
    format!("{head}...")
}

/// A plain `null`, `~` or empty scalar.
pub(crate) fn is_null(scalar: &MarkedScalarNode) -> bool {
    scalar.may_coerce() && matches!(scalar.as_str(), "" | "~" | "null" | "Null" | "NULL")
}

/// The JSON value a YAML node stands for: plain scalars are typed (null, bool, integer,
/// finite float), quoted ones stay strings. The tree is already depth-checked.
pub(crate) fn to_json(node: &Node) -> Value {
    match node {
        Node::Scalar(s) => scalar_to_json(s),
        Node::Sequence(seq) => Value::Array(seq.iter().map(to_json).collect()),
        Node::Mapping(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.as_str().to_string(), to_json(v)))
                .collect(),
        ),
    }
}

fn scalar_to_json(s: &MarkedScalarNode) -> Value {
    if is_null(s) {
        return Value::Null;
    }
    if let Some(b) = s.as_bool() {
        return Value::Bool(b);
    }
    if let Some(i) = s.as_i64() {
        return Value::from(i);
    }
    let looks_numeric = s.as_str().bytes().any(|b| b.is_ascii_digit())
        && s.as_str()
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
    if looks_numeric && let Some(n) = s.as_f64().and_then(serde_json::Number::from_f64) {
        return Value::Number(n);
    }
    Value::String(s.as_str().to_string())
}

/// A mapping's fields, checked against the names a context allows.
pub(crate) struct Fields<'a> {
    pub map: &'a MarkedMappingNode,
    pub path: &'a str,
}

impl<'a> Fields<'a> {
    /// Reads `node` as a mapping whose keys must be in `allowed`; reports unknown keys.
    pub fn new(node: &'a Node, path: &'a str, allowed: &[&str], sink: &mut Sink) -> Option<Self> {
        let map = expect_mapping(node, path, sink)?;
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                let message = unknown_message("field", key.as_str(), allowed);
                sink.push(scalar_pos(key), &join(path, key.as_str()), message);
            }
        }
        Some(Fields { map, path })
    }

    pub fn get(&self, name: &str) -> Option<&'a Node> {
        self.map.get_node(name)
    }

    /// The path of field `name`.
    pub fn path_of(&self, name: &str) -> String {
        join(self.path, name)
    }

    /// Reports a missing required field at the mapping's position.
    pub fn require(&self, name: &str, sink: &mut Sink) -> Option<&'a Node> {
        let node = self.get(name);
        if node.is_none() {
            let message = format!("missing required field `{name}`");
            sink.push(self.pos(), &self.path_of(name), message);
        }
        node
    }

    /// Where the key `name` is written: the place for a problem with the field as a whole
    /// (a block mapping's own position is where its first value begins).
    pub fn key_pos(&self, name: &str) -> Pos {
        self.map
            .keys()
            .find(|key| key.as_str() == name)
            .map_or(self.pos(), scalar_pos)
    }

    /// Where the mapping starts: its first key (the parser marks a block mapping where its
    /// first value begins), or its opening brace when empty.
    pub fn pos(&self) -> Pos {
        self.map
            .keys()
            .next()
            .map_or(Pos::of_span(self.map.span()), scalar_pos)
    }
}

/// "unknown field `neds` (did you mean `needs`?)"
pub(crate) fn unknown_message(what: &str, name: &str, known: &[&str]) -> String {
    match suggest(name, known.iter().copied()) {
        Some(close) => format!("unknown {what} `{name}` (did you mean `{close}`?)"),
        None => format!("unknown {what} `{name}`"),
    }
}

/// The known name closest to `name`, if it is close enough to be a likely typo.
pub(crate) fn suggest<'k>(name: &str, known: impl Iterator<Item = &'k str>) -> Option<&'k str> {
    // A third of the name may differ: short names get no suggestion (`a` is not a typo of `b`).
    let threshold = name.chars().count() / 3;
    known
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .filter(|(distance, _)| *distance <= threshold && threshold > 0)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Edits (insert, delete, substitute, swap two neighbours) from `a` to `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

/// `parent.key`, or `parent["odd key"]` when the key is not a plain word.
pub(crate) fn join(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{}]", Value::String(key.to_string())),
    }
}

/// `parent[index]`.
pub(crate) fn index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

pub(crate) fn expect_mapping<'a>(
    node: &'a Node,
    path: &str,
    sink: &mut Sink,
) -> Option<&'a MarkedMappingNode> {
    let map = node.as_mapping();
    if map.is_none() {
        sink.push(
            pos(node),
            path,
            format!("expected a mapping, found {}", describe(node)),
        );
    }
    map
}

pub(crate) fn expect_sequence<'a>(
    node: &'a Node,
    path: &str,
    sink: &mut Sink,
) -> Option<&'a MarkedSequenceNode> {
    let seq = node.as_sequence();
    if seq.is_none() {
        sink.push(
            pos(node),
            path,
            format!("expected a list, found {}", describe(node)),
        );
    }
    seq
}

/// The text of a non-null scalar.
pub(crate) fn expect_string<'a>(node: &'a Node, path: &str, sink: &mut Sink) -> Option<&'a str> {
    match node {
        Node::Scalar(s) if !is_null(s) => Some(s.as_str()),
        _ => {
            sink.push(
                pos(node),
                path,
                format!("expected a string, found {}", describe(node)),
            );
            None
        }
    }
}

/// A plain integer scalar within `min..=max`.
pub(crate) fn expect_int(
    node: &Node,
    path: &str,
    range: std::ops::RangeInclusive<i64>,
    sink: &mut Sink,
) -> Option<i64> {
    let Some(value) = node.as_scalar().and_then(|s| s.as_i64()) else {
        sink.push(
            pos(node),
            path,
            format!("expected an integer, found {}", describe(node)),
        );
        return None;
    };
    if value < *range.start() {
        sink.push(
            pos(node),
            path,
            format!("must be at least {}, found {value}", range.start()),
        );
        return None;
    }
    if value > *range.end() {
        sink.push(
            pos(node),
            path,
            format!("must be at most {}, found {value}", range.end()),
        );
        return None;
    }
    Some(value)
}

/// A plain boolean scalar.
pub(crate) fn expect_bool(node: &Node, path: &str, sink: &mut Sink) -> Option<bool> {
    let value = node.as_scalar().and_then(|s| s.as_bool());
    if value.is_none() {
        sink.push(
            pos(node),
            path,
            format!("expected true or false, found {}", describe(node)),
        );
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggest_finds_typos_only() {
        let known = ["needs", "when", "with"];
        assert_eq!(suggest("neds", known.iter().copied()), Some("needs"));
        assert_eq!(suggest("wiht", known.iter().copied()), Some("with"));
        assert_eq!(suggest("banana", known.iter().copied()), None);
        assert_eq!(suggest("prot", ["port"].into_iter()), Some("port"));
    }

    #[test]
    fn join_quotes_odd_keys() {
        assert_eq!(join("", "steps"), "steps");
        assert_eq!(join("steps[0].with", "msg"), "steps[0].with.msg");
        assert_eq!(join("with", "content type"), "with[\"content type\"]");
    }

    #[test]
    fn plain_scalars_are_typed_and_quoted_ones_are_strings() {
        let mut sink = Sink::default();
        let root = load(
            "a: 1\nb: '1'\nc: true\nd: ~\ne: 1.5\nf: inf\ng: x\n",
            &mut sink,
        );
        let json = to_json(&root.expect("valid yaml"));
        let expected = serde_json::json!({
            "a": 1, "b": "1", "c": true, "d": null, "e": 1.5, "f": "inf", "g": "x"
        });
        assert_eq!(json, expected);
    }
}
