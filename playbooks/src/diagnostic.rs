//! A problem found in a playbook, with where it is; and the sink validation collects them in.

use std::fmt;

use marked_yaml::{Marker, Span};

use crate::limits;

/// One problem in a playbook's source.
///
/// Displays as `line:column: path: message`, e.g.
/// `3:7: steps[1].needs[0]: unknown step `fetch``. Line and column are 1-based; both are 0 when
/// the problem has no position (the source as a whole is too large, for instance). The path is
/// left out when it is empty (a YAML syntax error).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Diagnostic {
    /// What is wrong, lowercase, without a trailing period.
    pub message: String,
    /// Where in the document, e.g. `steps[1].needs[0]` or `params.port.default`.
    pub path: String,
    /// 1-based line, 0 when unknown.
    pub line: u32,
    /// 1-based column (in characters), 0 when unknown.
    pub column: u32,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diagnostic {}

/// A position in the source: 1-based line and column, or 0:0 when unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    /// No position.
    pub const NONE: Pos = Pos { line: 0, column: 0 };

    pub fn new(line: usize, column: usize) -> Pos {
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Pos {
            line: clamp(line),
            column: clamp(column),
        }
    }

    pub fn of_marker(marker: &Marker) -> Pos {
        Pos::new(marker.line(), marker.column())
    }

    pub fn of_span(span: &Span) -> Pos {
        span.start().map_or(Pos::NONE, Pos::of_marker)
    }
}

/// `(line, column)`, as the schedule and rule readers carry positions.
impl From<(u32, u32)> for Pos {
    fn from((line, column): (u32, u32)) -> Pos {
        Pos { line, column }
    }
}

/// Collects diagnostics while validation goes on, so that every problem is reported at once.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    diagnostics: Vec<Diagnostic>,
}

impl Sink {
    pub fn push(&mut self, pos: impl Into<Pos>, path: &str, message: impl Into<String>) {
        let pos = pos.into();
        self.diagnostics.push(Diagnostic {
            message: message.into(),
            path: path.to_string(),
            line: pos.line,
            column: pos.column,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.diagnostics.is_empty()
    }

    /// The diagnostics in source order (a stable sort: same position keeps discovery order),
    /// at most [`limits::DIAGNOSTICS_MAX`] of them and one more that counts the rest.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.diagnostics.sort_by_key(|d| (d.line, d.column));
        self.diagnostics.dedup();
        let total = self.diagnostics.len();
        if total > limits::DIAGNOSTICS_MAX {
            self.diagnostics.truncate(limits::DIAGNOSTICS_MAX);
            let more = total - limits::DIAGNOSTICS_MAX;
            self.push(Pos::NONE, "", format!("{more} more problems not shown"));
        }
        self.diagnostics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_position_path_and_message() {
        let d = Diagnostic {
            message: "unknown step `fetch`".into(),
            path: "steps[1].needs[0]".into(),
            line: 3,
            column: 7,
        };
        assert_eq!(
            d.to_string(),
            "3:7: steps[1].needs[0]: unknown step `fetch`"
        );
    }

    #[test]
    fn display_leaves_out_an_empty_path() {
        let d = Diagnostic {
            message: "bad".into(),
            path: String::new(),
            line: 0,
            column: 0,
        };
        assert_eq!(d.to_string(), "0:0: bad");
    }
}
