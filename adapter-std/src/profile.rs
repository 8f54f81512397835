//! Profiles, whatever took the samples (the python plugin's sampler of
//! Python stacks, or [`native`]'s SIGPROF sampler of machine stacks):
//! stacks counted as they come, then the top table a person reads, the
//! folded stacks (inferno, speedscope, Brendan Gregg's FlameGraph read
//! them) and a flame graph drawn by `inferno`, as py-spy draws its own.
//!
//! A stack is a list of place numbers counted in a map, so a profile's
//! memory grows with the distinct stacks, not with its length; past
//! [`MAX_STACKS`] further new stacks are only counted.

pub mod native;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ispyd_core::{Attachment, PluginError, Report};

/// One profile at a time per process, whichever plugin takes it.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// The right to profile this process, until dropped.
#[derive(Debug)]
pub struct Claim(());

impl Drop for Claim {
    fn drop(&mut self) {
        RUNNING.store(false, Ordering::Release);
    }
}

/// Claims the process's one profile; refused while another runs (the
/// python plugin's or the process plugin's).
pub fn claim() -> Result<Claim, PluginError> {
    if RUNNING.swap(true, Ordering::AcqRel) {
        return Err(PluginError::new(
            "a profile is already running in this process; wait for it to end",
        ));
    }
    Ok(Claim(()))
}

/// Distinct stacks kept; samples of further ones are counted together.
pub const MAX_STACKS: usize = 100_000;
/// Rows of the top table.
pub const TOP_ROWS: usize = 20;

/// A function and the line a sample found it at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// What makes it one function (a code object's address, a symbol's
    /// number): places with the same id are one row of the top table.
    pub function_id: u64,
    /// Its name.
    pub function: String,
    /// Its source file; empty when unknown.
    pub file: String,
    /// The line it starts at, when known: what the top table shows.
    pub first_line: Option<i64>,
    /// The line the sample found it at, when known.
    pub line: Option<i64>,
}

impl Place {
    /// `function (file:line)`, as a folded stack names a frame (without
    /// `;`, which separates frames there).
    fn frame_name(&self) -> String {
        let name = match (self.file.is_empty(), self.line) {
            (true, _) => self.function.clone(),
            (false, Some(line)) => format!("{} ({}:{line})", self.function, self.file),
            (false, None) => format!("{} ({})", self.function, self.file),
        };
        name.replace(';', ":")
    }

    /// `function (file:first line)`, as the top table names a function.
    fn function_name(&self) -> String {
        match (self.file.is_empty(), self.first_line) {
            (true, _) => self.function.clone(),
            (false, Some(line)) => format!("{} ({}:{line})", self.function, self.file),
            (false, None) => format!("{} ({})", self.function, self.file),
        }
    }
}

/// The stacks of a profile, counted.
#[derive(Debug, Default)]
pub struct Samples {
    places: Vec<Place>,
    stacks: HashMap<Vec<u32>, u64>,
    /// Samples counted.
    pub samples: u64,
    /// Samples of stacks past [`MAX_STACKS`].
    pub unkept: u64,
}

/// One row of the top table: a function, its own samples and its total.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    /// The function (one of its places).
    pub place: &'a Place,
    /// Samples it was the innermost frame of.
    pub own: u64,
    /// Samples it was anywhere in.
    pub total: u64,
}

impl Samples {
    /// Adds a place; its number, for stacks.
    pub fn add_place(&mut self, place: Place) -> u32 {
        self.places.push(place);
        u32::try_from(self.places.len() - 1).unwrap_or(u32::MAX)
    }

    /// Counts `count` samples of `stack` (place numbers, outermost first).
    pub fn count(&mut self, stack: &[u32], count: u64) {
        self.samples += count;
        if let Some(counted) = self.stacks.get_mut(stack) {
            *counted += count;
        } else if self.stacks.len() < MAX_STACKS {
            self.stacks.insert(stack.to_vec(), count);
        } else {
            self.unkept += count;
        }
    }

    /// The folded stacks: `frame;frame;… count` per line, outermost first,
    /// sorted.
    pub fn folded(&self) -> String {
        let mut lines: Vec<String> = self
            .stacks
            .iter()
            .map(|(stack, count)| {
                let names: Vec<String> = stack
                    .iter()
                    .map(|&at| self.places[at as usize].frame_name())
                    .collect();
                format!("{} {count}", names.join(";"))
            })
            .collect();
        if self.unkept > 0 {
            lines.push(format!(
                "[stacks past the {MAX_STACKS} kept] {}",
                self.unkept
            ));
        }
        lines.sort();
        let mut folded = lines.join("\n");
        if !folded.is_empty() {
            folded.push('\n');
        }
        folded
    }

    /// Every function with its own and total samples, most of its own
    /// first.
    pub fn functions(&self) -> Vec<Row<'_>> {
        let mut table: HashMap<u64, (u32, u64, u64)> = HashMap::new();
        let mut seen: Vec<u64> = Vec::new();
        for (stack, &count) in &self.stacks {
            seen.clear();
            for (depth, &at) in stack.iter().enumerate() {
                let id = self.places[at as usize].function_id;
                let entry = table.entry(id).or_insert((at, 0, 0));
                if depth + 1 == stack.len() {
                    entry.1 += count;
                }
                if !seen.contains(&id) {
                    entry.2 += count;
                    seen.push(id);
                }
            }
        }
        let mut rows: Vec<Row<'_>> = table
            .into_values()
            .map(|(at, own, total)| Row {
                place: &self.places[at as usize],
                own,
                total,
            })
            .collect();
        rows.sort_by(|a, b| {
            (b.own, b.total).cmp(&(a.own, a.total)).then_with(|| {
                (&a.place.function, &a.place.file).cmp(&(&b.place.function, &b.place.file))
            })
        });
        rows
    }

    /// The top table, the folded stacks and the flame graph, under
    /// `header` (the profile's first line: what was sampled, how long).
    pub fn render(&self, header: &str, title: &str) -> Result<Rendered, PluginError> {
        let mut text = format!("{header}\n\n");
        let rows = self.functions();
        let total = self.samples.max(1) as f64;
        text.push_str("  SELF%  TOTAL%    SELF   TOTAL  FUNCTION (FILE:LINE)\n");
        for row in rows.iter().take(TOP_ROWS) {
            let _ = writeln!(
                text,
                "{:>6.1}% {:>6.1}% {:>7} {:>7}  {}",
                row.own as f64 * 100.0 / total,
                row.total as f64 * 100.0 / total,
                row.own,
                row.total,
                row.place.function_name(),
            );
        }
        if rows.is_empty() {
            text.push_str("  (no samples)\n");
        }
        let top = rows
            .iter()
            .take(TOP_ROWS)
            .map(|row| {
                serde_json::json!({
                    "function": row.place.function,
                    "file": (!row.place.file.is_empty()).then_some(&row.place.file),
                    "line": row.place.first_line,
                    "self": row.own, "total": row.total,
                    "self_pct": row.own as f64 * 100.0 / total,
                    "total_pct": row.total as f64 * 100.0 / total,
                })
            })
            .collect();
        let folded = self.folded();
        let mut svg = Vec::new();
        if !folded.is_empty() {
            let mut options = inferno::flamegraph::Options::default();
            options.title = title.to_owned();
            options.count_name = "samples".to_owned();
            inferno::flamegraph::from_lines(&mut options, folded.lines(), &mut svg)
                .map_err(|err| PluginError::new(format!("cannot draw the flame graph: {err}")))?;
        }
        Ok(Rendered {
            text,
            folded,
            svg,
            top,
        })
    }
}

/// A profile made readable.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The header and the top table.
    pub text: String,
    /// The folded stacks.
    pub folded: String,
    /// The flame graph (SVG); empty when there were no samples.
    pub svg: Vec<u8>,
    /// The top table's rows, as data.
    pub top: Vec<serde_json::Value>,
}

impl Rendered {
    /// The flame graph and the folded stacks as files, named
    /// `profile-PID-YYYYmmdd-HHMMSS.svg` and `.folded` (UTC); none when
    /// there were no samples.
    pub fn files(&self) -> Vec<(String, Vec<u8>)> {
        let prefix = format!("profile-{}-{}", std::process::id(), utc_stamp());
        [
            (format!("{prefix}.svg"), self.svg.clone()),
            (format!("{prefix}.folded"), self.folded.clone().into_bytes()),
        ]
        .into_iter()
        .filter(|(_, bytes)| !bytes.is_empty())
        .collect()
    }

    /// The command's answer: the files attached when the client saves
    /// them, else written in `dir` and named in the text. `data` is the
    /// structured result; its `files` are set here.
    pub fn into_report(
        self,
        call: &ispyd_core::Call,
        dir: &Path,
        mut data: serde_json::Value,
    ) -> Result<Report, PluginError> {
        let files = self.files();
        let mut text = self.text;
        if call.wants_files {
            data["files"] = files.iter().map(|(name, _)| name.clone()).collect();
            let mut report = Report::new(call, text, &data)?;
            for (name, bytes) in files {
                report = report.attach(Attachment::new(name, bytes)?);
            }
            return Ok(report);
        }
        let mut written = Vec::new();
        for (name, bytes) in &files {
            let path = write_new(dir, name, bytes)?;
            let what = if name.ends_with(".svg") {
                "Flame graph"
            } else {
                "Folded stacks"
            };
            let _ = writeln!(text, "{what}: {}", path.display());
            written.push(path.display().to_string());
        }
        data["files"] = written.into();
        Report::new(call, text, &data)
    }
}

/// Writes `bytes` to a new file `dir/name`, mode 0600, never through a
/// symbolic link nor over a file that is there.
fn write_new(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, PluginError> {
    let path = dir.join(name);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
        .map_err(|err| {
            PluginError::new(format!(
                "cannot write the profile to {}: {err}",
                path.display()
            ))
        })?;
    file.write_all(bytes).map_err(|err| {
        PluginError::new(format!(
            "cannot write the profile to {}: {err}",
            path.display()
        ))
    })?;
    Ok(path)
}

/// Now as `YYYYmmdd-HHMMSS`, UTC.
fn utc_stamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (year, month, day) = crate::process::civil_from_days(secs.div_euclid(86_400));
    let of_day = secs.rem_euclid(86_400);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(id: u64, name: &str) -> Place {
        Place {
            function_id: id,
            function: name.to_owned(),
            file: "app.py".to_owned(),
            first_line: Some(1),
            line: Some(2),
        }
    }

    #[test]
    fn the_table_ranks_by_own_samples_and_counts_recursion_once() {
        let mut samples = Samples::default();
        let main = samples.add_place(place(1, "main"));
        let hot = samples.add_place(place(2, "hot"));
        samples.count(&[main, hot], 3);
        samples.count(&[main, hot, hot], 2);
        samples.count(&[main], 1);
        let rows = samples.functions();
        assert_eq!(rows[0].place.function, "hot");
        assert_eq!((rows[0].own, rows[0].total), (5, 5));
        assert_eq!((rows[1].own, rows[1].total), (1, 6));
        let folded = samples.folded();
        let counted: u64 = folded
            .lines()
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(counted, samples.samples);
        let rendered = samples.render("Profile", "t").unwrap();
        assert!(
            rendered.text.contains("hot (app.py:1)"),
            "{}",
            rendered.text
        );
        assert!(String::from_utf8(rendered.svg).unwrap().contains("hot"));
    }

    #[test]
    fn memory_is_bounded_by_the_distinct_stacks_kept() {
        let mut samples = Samples::default();
        for n in 0..MAX_STACKS + 10 {
            let at = samples.add_place(place(n as u64, "f"));
            samples.count(&[at], 1);
        }
        assert_eq!(samples.stacks.len(), MAX_STACKS);
        assert_eq!(samples.unkept, 10);
        assert!(
            samples
                .folded()
                .contains("[stacks past the 100000 kept] 10")
        );
    }
}
