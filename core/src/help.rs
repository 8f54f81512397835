//! Help listings laid out exactly as Python's `cmd` module lays them out,
//! so the shell reads like the 2012 ispyd.

/// Lays out `names` in columns no wider than `width`, the way
/// `cmd.Cmd.columnize` does (fewest rows that fit; each row's last column
/// is still padded to its width).
pub(crate) fn columnize(names: &[&str], width: usize, out: &mut String) {
    if names.is_empty() {
        out.push_str("<empty>\n");
        return;
    }
    if names.len() == 1 {
        out.push_str(names[0]);
        out.push('\n');
        return;
    }
    let size = names.len();
    let mut layout = (size, 1, vec![0]);
    for nrows in 1..size {
        let ncols = size.div_ceil(nrows);
        let mut widths = Vec::with_capacity(ncols);
        let mut total: isize = -2;
        for col in 0..ncols {
            let widest = (0..nrows)
                .map(|row| row + nrows * col)
                .take_while(|&i| i < size)
                .map(|i| names[i].chars().count())
                .max()
                .unwrap_or(0);
            widths.push(widest);
            total += widest as isize + 2;
            if total > width as isize {
                break;
            }
        }
        if total <= width as isize {
            layout = (nrows, ncols, widths);
            break;
        }
    }
    let (nrows, ncols, widths) = layout;
    for row in 0..nrows {
        let mut texts: Vec<&str> = (0..ncols)
            .map(|col| names.get(row + nrows * col).copied().unwrap_or(""))
            .collect();
        while texts.last().is_some_and(|t| t.is_empty()) {
            texts.pop();
        }
        let cells: Vec<String> = texts
            .iter()
            .zip(&widths)
            .map(|(text, width)| format!("{text:<width$}"))
            .collect();
        out.push_str(&cells.join("  "));
        out.push('\n');
    }
}

/// Writes the listing `help` prints: documented commands, then any
/// undocumented ones, each under its header and ruler.
pub(crate) fn listing(documented: &[&str], undocumented: &[&str]) -> String {
    let mut out = String::from("\n");
    for (header, names) in [
        ("Documented commands (type help <topic>):", documented),
        ("Undocumented commands:", undocumented),
    ] {
        if names.is_empty() {
            continue;
        }
        out.push_str(header);
        out.push('\n');
        out.push_str(&"=".repeat(header.len()));
        out.push('\n');
        columnize(names, 79, &mut out);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_listing_matches_the_seed() {
        let text = listing(&["exit", "help", "plugins", "prompt", "shell"], &[]);
        assert_eq!(
            text,
            "\nDocumented commands (type help <topic>):\n\
             ========================================\n\
             exit  help  plugins  prompt  shell\n\n"
        );
    }

    #[test]
    fn long_listing_wraps_like_python_cmd() {
        let names = [
            "argv",
            "console",
            "defaultencoding",
            "environ",
            "executable",
            "exit",
            "filesystemencoding",
            "help",
            "maxint",
            "maxsize",
            "maxunicode",
            "modules",
            "path",
            "platform",
            "prefix",
            "prompt",
            "threads",
            "version",
        ];
        let mut out = String::new();
        columnize(&names, 79, &mut out);
        // The seed's python plugin help, as Python 2's cmd printed it.
        assert_eq!(
            out,
            "argv             environ     filesystemencoding  maxsize     path      prompt \n\
             console          executable  help                maxunicode  platform  threads\n\
             defaultencoding  exit        maxint              modules     prefix    version\n"
        );
    }
}
