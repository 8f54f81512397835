//! How `ispy -c` shows what the servers answered: text blocks per server,
//! or JSON Lines (`--json`), each line built around the result's data as
//! it came, never parsed into a tree.

use std::io::{self, Write};

use ispyd_core::SCHEMA_VERSION;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::fleet::Run;

/// Where the text of a run goes.
pub struct TextReport<'a> {
    /// Standard output.
    pub out: &'a mut dyn Write,
    /// Standard error.
    pub err: &'a mut dyn Write,
    /// With several servers, each run is a block under a header naming it,
    /// errors included; with one, output goes to `out` and errors to `err`.
    pub grouped: bool,
    /// The host to name in headers and messages (`--ssh` runs).
    pub host: Option<&'a str>,
}

impl TextReport<'_> {
    /// Writes one server's answers.
    pub fn write(&mut self, run: &Run) -> io::Result<()> {
        if self.grouped {
            writeln!(self.out, "{}", run.target.header(self.host))?;
        }
        for answer in &run.answers {
            self.out.write_all(answer.text.as_bytes())?;
            let errors: &mut dyn Write = if self.grouped {
                &mut *self.out
            } else {
                &mut *self.err
            };
            for error in &answer.errors {
                writeln!(errors, "{error}")?;
            }
            for saved in &answer.files {
                match saved {
                    Ok(file) => writeln!(self.out, "{file}")?,
                    Err(why) => {
                        let line = format!("ispy: {}: {why}", run.target.name(self.host));
                        if self.grouped {
                            writeln!(self.out, "{line}")?;
                        }
                        writeln!(self.err, "{line}")?;
                    }
                }
            }
        }
        if let Some(failure) = &run.failure {
            let line = format!("ispy: {}: {failure}", run.target.name(self.host));
            if self.grouped {
                writeln!(self.out, "{line}")?;
            }
            writeln!(self.err, "{line}")?;
        }
        if self.grouped {
            writeln!(self.out)?;
        }
        self.out.flush()
    }
}

/// One line of `--json`: a command's result on one server. Written with
/// `data` (`null` when there is none) exactly when there is no `error`.
#[derive(Debug, Deserialize)]
pub struct Line<'a> {
    /// The machine (or the `--ssh` host as given).
    pub host: Option<String>,
    /// The server's pid.
    pub pid: Option<u32>,
    /// Where it listens.
    pub address: Option<String>,
    /// The command line as given.
    pub command: Option<String>,
    /// Whether it succeeded.
    pub ok: bool,
    /// Its data, when it succeeded (`None` for `null`).
    #[serde(borrow, default)]
    pub data: Option<&'a RawValue>,
    /// Why it failed.
    #[serde(default)]
    pub error: Option<String>,
    /// The version of the data's shapes (`RESULTS.md`).
    #[serde(default)]
    pub schema: Option<u32>,
    /// The files the command sent, saved here: their paths.
    #[serde(default)]
    pub files: Vec<String>,
}

impl Serialize for Line<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("host", &self.host)?;
        map.serialize_entry("pid", &self.pid)?;
        map.serialize_entry("address", &self.address)?;
        map.serialize_entry("command", &self.command)?;
        map.serialize_entry("ok", &self.ok)?;
        match &self.error {
            Some(error) => map.serialize_entry("error", error)?,
            None => map.serialize_entry("data", &self.data)?,
        }
        map.serialize_entry("schema", &self.schema)?;
        if !self.files.is_empty() {
            map.serialize_entry("files", &self.files)?;
        }
        map.end()
    }
}

/// One server's answers as JSON Lines: an object per command, and for the
/// commands a failure left unsent, an object saying why.
pub fn json_lines(run: &Run, host: &str) -> Vec<String> {
    fn line<'a>(
        run: &Run,
        host: &str,
        command: &str,
        data: Option<&'a RawValue>,
        error: Option<String>,
        files: Vec<String>,
    ) -> Line<'a> {
        Line {
            files,
            host: Some(host.to_owned()),
            pid: run.target.pid,
            address: Some(run.target.address.to_string()),
            command: Some(command.to_owned()),
            ok: error.is_none(),
            data,
            error,
            schema: Some(SCHEMA_VERSION),
        }
    }
    let mut lines = Vec::new();
    for answer in &run.answers {
        let files = || {
            answer
                .files
                .iter()
                .flatten()
                .map(|file| file.path.display().to_string())
                .collect()
        };
        let unsaved: Vec<&str> = answer
            .files
            .iter()
            .filter_map(|saved| saved.as_ref().err().map(String::as_str))
            .collect();
        let line = match &answer.record {
            Some(record) if record.ok && unsaved.is_empty() => line(
                run,
                host,
                &answer.command,
                record.data.as_deref(),
                None,
                files(),
            ),
            Some(record) if record.ok => {
                let error = unsaved.join("\n");
                line(run, host, &answer.command, None, Some(error), files())
            }
            Some(record) => {
                let error = record.error.clone().unwrap_or_else(|| "failed".to_owned());
                line(run, host, &answer.command, None, Some(error), files())
            }
            None => {
                let error = answer.errors.join("\n");
                let error = match (error.is_empty(), &run.failure) {
                    (false, _) => error,
                    (true, Some(failure)) => failure.clone(),
                    (true, None) => "the server sent no result".to_owned(),
                };
                line(run, host, &answer.command, None, Some(error), files())
            }
        };
        lines.push(line.to_json());
    }
    if let Some(failure) = &run.failure {
        // The command that was cut short already says so; the ones that
        // never ran say why.
        for command in &run.unsent {
            let failed = line(run, host, command, None, Some(failure.clone()), Vec::new());
            lines.push(failed.to_json());
        }
    }
    lines
}

impl Line<'_> {
    /// The line's JSON text.
    pub fn to_json(&self) -> String {
        // Only strings, numbers and JSON already checked: cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// This machine's name, for the `host` field.
pub fn hostname() -> String {
    let name = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    if name.is_empty() {
        "localhost".to_owned()
    } else {
        name
    }
}
