//! Where results go: stdout in the chosen [`Format`], with tables built one way everywhere.

use std::io::{self, IsTerminal, Write};

use comfy_table::presets::NOTHING;
use comfy_table::{ContentArrangement, Table, TableComponent};
use serde_json::Value;

use crate::args::Format;
use crate::error::Error;

/// The command's standard output.
pub struct Out {
    format: Format,
    stdout: io::Stdout,
}

impl Out {
    pub fn new(format: Format) -> Out {
        Out {
            format,
            stdout: io::stdout(),
        }
    }

    /// The format the operator asked for.
    pub fn format(&self) -> Format {
        self.format
    }

    /// One line of text.
    pub fn line(&mut self, text: &str) -> Result<(), Error> {
        writeln!(self.stdout, "{text}")?;
        Ok(())
    }

    /// The command's one JSON document, indented for people reading it too.
    pub fn document(&mut self, value: &Value) -> Result<(), Error> {
        let text = serde_json::to_string_pretty(value).map_err(io::Error::from)?;
        self.line(&text)
    }

    /// One record of a JSON Lines stream, written out at once.
    pub fn record(&mut self, value: &Value) -> Result<(), Error> {
        let text = serde_json::to_string(value).map_err(io::Error::from)?;
        self.line(&text)?;
        self.stdout.flush()?;
        Ok(())
    }

    /// Text exactly as given (a stored source that must round-trip byte for byte).
    pub fn text(&mut self, text: &str) -> Result<(), Error> {
        self.stdout.write_all(text.as_bytes())?;
        Ok(())
    }

    /// Lines of text.
    pub fn lines(&mut self, lines: &[String]) -> Result<(), Error> {
        lines.iter().try_for_each(|line| self.line(line))
    }
}

/// A line on stderr, for problems reported while the command goes on. A failure to write
/// it is ignored: there is nowhere left to report it.
pub fn problem(text: &str) {
    let _ = writeln!(io::stderr(), "{text}");
}

/// An empty table with the given column titles: no borders, columns two blanks apart, no
/// colors, wrapped to the terminal's width only when stdout is a terminal.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(NOTHING)
        .remove_style(TableComponent::LeftBorder)
        .remove_style(TableComponent::RightBorder)
        .set_header(header.to_vec());
    if io::stdout().is_terminal() {
        table.set_content_arrangement(ContentArrangement::Dynamic);
    } else {
        table.force_no_tty();
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table
}

/// A table's lines, without trailing blanks.
pub fn lines(table: &Table) -> Vec<String> {
    table
        .lines()
        .map(|line| line.trim_end().to_string())
        .collect()
}

/// `key: value` lines with the values aligned, for a record's header.
pub fn fields(fields: &[(&str, String)]) -> Vec<String> {
    let width = fields.iter().map(|(key, _)| key.len()).max().unwrap_or(0) + 1;
    fields
        .iter()
        .map(|(key, value)| format!("{:<width$} {value}", format!("{key}:")))
        .map(|line| line.trim_end().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_have_no_borders_and_two_blank_gaps() {
        let mut playbooks = table(&["NAME", "VERSION"]);
        playbooks.add_row(vec!["ip-block", "3"]);
        assert_eq!(lines(&playbooks), ["NAME      VERSION", "ip-block  3"]);
    }

    #[test]
    fn fields_are_aligned() {
        let lines = fields(&[("run", "r-1".into()), ("status", "failed".into())]);
        assert_eq!(lines, ["run:    r-1", "status: failed"]);
    }
}
