//! Text helpers shared by the formatters: tables, plurals, escaping.

use super::*;

pub(super) fn plural(count: usize) -> &'static str {
    if count == 1 { "" } else { "s" }
}

/// Escapes control characters, so a thread name or a path holding a newline
/// or an escape sequence cannot break the table or the operator's terminal.
pub(super) fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Aligned columns separated by two spaces; `right[i]` right-aligns column i.
/// The last column is not padded, so lines carry no trailing spaces.
pub(super) fn table(header: &[&str], right: &[bool], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len() - 1;
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| match (right[i], i == last) {
                (true, _) => format!("{cell:>w$}", w = widths[i]),
                (false, false) => format!("{cell:<w$}", w = widths[i]),
                (false, true) => cell.clone(),
            })
            .collect();
        out.push_str(&line(cells.join("  ")));
    }
    out
}
