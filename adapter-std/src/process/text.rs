//! Text helpers shared by the formatters: tables (the core's, shared
//! with `ispy --list`), plurals, escaping.

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

pub(super) use ispyd_core::table;
