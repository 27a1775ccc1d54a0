//! Markdown tables for every report of the workspace (the benchmark results of `testbed`, the IoT
//! emulator's report), drawn by `tabled`: a header row, a separator that marks right-aligned
//! columns (`---:`), then one row per entry, every column padded to its widest cell.

use tabled::builder::Builder;
use tabled::grid::config::Offset;
use tabled::settings::object::Columns;
use tabled::settings::style::LineChar;
use tabled::settings::{Alignment, Style};

/// How a column's cells are aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text (`---`).
    Left,
    /// Numbers (`---:`).
    Right,
}

/// A column: its title and how its cells are aligned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub title: String,
    pub align: Align,
}

/// A column of text.
pub fn left(title: impl Into<String>) -> Column {
    Column {
        title: title.into(),
        align: Align::Left,
    }
}

/// A column of numbers.
pub fn right(title: impl Into<String>) -> Column {
    Column {
        title: title.into(),
        align: Align::Right,
    }
}

/// A markdown table being filled row by row.
#[derive(Debug, Clone)]
pub struct MarkdownTable {
    aligns: Vec<Align>,
    builder: Builder,
}

impl MarkdownTable {
    /// A table with these columns, in order.
    pub fn new(columns: impl IntoIterator<Item = Column>) -> Self {
        let (titles, aligns): (Vec<String>, Vec<Align>) =
            columns.into_iter().map(|c| (c.title, c.align)).unzip();
        let mut builder = Builder::new();
        builder.push_record(titles);
        Self { aligns, builder }
    }

    /// Adds a row: one cell per column, in order (missing cells are left empty).
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) -> &mut Self {
        let mut cells: Vec<String> = cells.into_iter().map(Into::into).collect();
        cells.resize(self.aligns.len(), String::new());
        self.builder.push_record(cells);
        self
    }

    /// The table as markdown, ending with a newline.
    pub fn render(&self) -> String {
        let mut table = self.builder.clone().build();
        table.with(Style::markdown());
        for (i, align) in self.aligns.iter().enumerate() {
            if *align == Align::Right {
                table.modify(Columns::one(i), Alignment::right());
                table.modify((1, i), LineChar::horizontal(':', Offset::End(0)));
            }
        }
        let mut text = table.to_string();
        text.push('\n');
        text
    }
}

/// `text` with every run of spaces made one space: a rendered table compared to the cells it
/// should hold, whatever the padding.
pub fn squeeze_spaces(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last_space = false;
    for c in text.chars() {
        if c == ' ' {
            if !last_space {
                out.push(c);
            }
            last_space = true;
        } else {
            out.push(c);
            last_space = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_has_a_header_a_separator_marking_number_columns_and_padded_rows() {
        let mut t = MarkdownTable::new([left("name"), right("count")]);
        t.row(["alpha", "1"]).row(["b", "12345"]);
        assert_eq!(
            t.render(),
            "| name  | count |\n\
             |-------|------:|\n\
             | alpha |     1 |\n\
             | b     | 12345 |\n"
        );
        assert!(squeeze_spaces(&t.render()).contains("| b | 12345 |"));
    }

    #[test]
    fn a_table_without_rows_is_its_header_and_separator_and_short_rows_are_padded() {
        let t = MarkdownTable::new([left("a"), right("b")]);
        assert_eq!(t.render(), "| a | b |\n|---|--:|\n");
        let mut t = MarkdownTable::new([left("a"), left("b")]);
        t.row(["x"]);
        assert_eq!(
            squeeze_spaces(&t.render()),
            "| a | b |\n|---|---|\n| x | |\n"
        );
    }
}
