//! Plugins: how they are described to the core, and the one trait every
//! adapter calls them through.
//!
//! The core only ever sees [`PluginInfo`] (data). Running a command is the
//! adapter's job: it receives an [`Event::Call`](crate::Event::Call), hands
//! it to [`Registry::execute`] (here, so that every adapter catches panics
//! and reports failures the same way) and gives the resulting
//! [`Completion`] back to the session.

use crate::progress::Progress;
use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use serde::Serialize;

use crate::config::{Config, ConfigError, ConfigProblem, MAIN_SECTION, Setting, SettingKind};
use crate::session::{Call, Completing, Completion, Feed};

/// What a plugin tells the core about itself: its name, its commands and
/// their help texts, and which configuration section (if any) gates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// Name used by `shell NAME` and shown in prompts: `(NAME:PID) `.
    pub name: String,
    /// One line saying what the plugin is for, shown by `plugins`.
    pub summary: String,
    /// The commands of the plugin's sub-shell, in any order.
    pub commands: Vec<CommandInfo>,
    /// Configuration section whose `enabled` key must be true for the plugin
    /// to be entered. `None`: always available.
    pub gate: Option<String>,
    /// True when every command is quick and never waits on anything another
    /// thread may hold (a lock, the GIL). Adapters may then run calls on the
    /// session's own thread instead of handing them to a worker, saving two
    /// thread wake-ups per command.
    pub inline: bool,
    /// What a call may have to wait for before it can run (e.g. "the Python
    /// interpreter (the GIL)"), named when a call is given up on.
    pub waits_for: Option<String>,
    /// The keys the plugin reads from its own section `[NAME]`, besides
    /// `enabled`. `Some`: the core checks their values
    /// ([`Config::check_settings`]) and warns of any other key
    /// ([`Config::warnings`]). `None` (the default): the section is the
    /// plugin's own business.
    pub settings: Option<Vec<Setting>>,
}

impl PluginInfo {
    /// A plugin with no commands yet; add them with [`PluginInfo::command`].
    pub fn new(name: impl Into<String>, summary: impl Into<String>) -> Self {
        PluginInfo {
            name: name.into(),
            summary: summary.into(),
            commands: Vec::new(),
            gate: None,
            inline: false,
            waits_for: None,
            settings: None,
        }
    }

    /// Adds a command with its help text (the first line is its summary).
    #[must_use]
    pub fn command(mut self, name: impl Into<String>, help: impl Into<String>) -> Self {
        self.commands.push(CommandInfo::new(name, help));
        self
    }

    /// Adds a command that may run long (a profile): it never runs on the
    /// session's thread, even in an [inline](PluginInfo::inline) plugin,
    /// and may report progress.
    #[must_use]
    pub fn long_command(mut self, name: impl Into<String>, help: impl Into<String>) -> Self {
        let mut info = CommandInfo::new(name, help);
        info.long = true;
        self.commands.push(info);
        self
    }

    /// Adds a command that is refused unless `[gate] enabled` is true.
    #[must_use]
    pub fn gated_command(
        mut self,
        name: impl Into<String>,
        help: impl Into<String>,
        gate: impl Into<String>,
    ) -> Self {
        let mut info = CommandInfo::new(name, help);
        info.gate = Some(gate.into());
        self.commands.push(info);
        self
    }

    /// Makes the whole plugin refuse entry unless `[gate] enabled` is true.
    #[must_use]
    pub fn gated(mut self, gate: impl Into<String>) -> Self {
        self.gate = Some(gate.into());
        self
    }

    /// Marks every command as quick and non-blocking (see [`PluginInfo::inline`]).
    #[must_use]
    pub fn inline(mut self) -> Self {
        self.inline = true;
        self
    }

    /// Declares a key of the plugin's section `[NAME]` (see
    /// [`PluginInfo::settings`]).
    #[must_use]
    pub fn setting(mut self, key: impl Into<String>, kind: SettingKind) -> Self {
        self.settings.get_or_insert_with(Vec::new).push(Setting {
            key: key.into(),
            kind,
        });
        self
    }

    /// Names what the plugin's calls may wait for (see [`PluginInfo::waits_for`]).
    #[must_use]
    pub fn waits_for(mut self, what: impl Into<String>) -> Self {
        self.waits_for = Some(what.into());
        self
    }

    /// The command called `name`, if the plugin has one.
    pub fn find(&self, name: &str) -> Option<&CommandInfo> {
        self.commands.iter().find(|c| c.name == name)
    }
}

/// One command of a plugin's sub-shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandInfo {
    /// What the user types.
    pub name: String,
    /// Shown by `help NAME`. Commands with an empty help are listed under
    /// "Undocumented commands", as Python's `cmd` does.
    pub help: String,
    /// Configuration section whose `enabled` key must be true for this one
    /// command to run (the seed's `[python:console]`).
    pub gate: Option<String>,
    /// It may run long: never on the session's thread (see
    /// [`PluginInfo::long_command`]).
    pub long: bool,
}

impl CommandInfo {
    /// A command available whenever its plugin is.
    pub fn new(name: impl Into<String>, help: impl Into<String>) -> Self {
        CommandInfo {
            name: name.into(),
            help: help.into(),
            gate: None,
            long: false,
        }
    }
}

/// A plugin command's failure, shown to the user as `*** MESSAGE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    message: String,
}

impl PluginError {
    /// A failure with a message the user can act on.
    pub fn new(message: impl Into<String>) -> Self {
        PluginError {
            message: message.into(),
        }
    }

    /// The message, without the `*** ` the shell adds.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PluginError {}

impl From<std::io::Error> for PluginError {
    fn from(err: std::io::Error) -> Self {
        PluginError::new(err.to_string())
    }
}

/// A command's result as text and as data: what a plugin returns when it
/// has facts a script may want (threads, requests, ids…).
///
/// The text is what a person reads, in the same layout as without data;
/// the data, a JSON document, is made only when the session asked for
/// structured results ([`Call::wants_data`]), so a person at a terminal
/// pays nothing for it. Both are made where the command runs, by the
/// plugin: for any but an inline plugin that is a worker thread, never a
/// driver's loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    text: String,
    data: Option<String>,
    files: Vec<Attachment>,
}

/// A file a command made (a flame graph, folded stacks), sent with its
/// result to a client that saves files ([`Call::wants_files`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// A plain file name (see [`is_file_name`](crate::frame::is_file_name)).
    pub name: String,
    /// The file's contents.
    pub bytes: Vec<u8>,
}

impl Attachment {
    /// A file called `name`; a name that is not a plain file name (a path,
    /// a hidden file) is refused.
    pub fn new(name: impl Into<String>, bytes: Vec<u8>) -> Result<Attachment, PluginError> {
        let name = name.into();
        if !crate::frame::is_file_name(&name) {
            return Err(PluginError::new(format!(
                "{name:?} is not a file name a client may be sent"
            )));
        }
        Ok(Attachment { name, bytes })
    }
}

impl Report {
    /// The result `value`: its `Display` is the text, its `Serialize` the
    /// data (when the call wants data).
    pub fn of<T: Serialize + fmt::Display + ?Sized>(
        call: &Call,
        value: &T,
    ) -> Result<Report, PluginError> {
        Report::new(call, value.to_string(), value)
    }

    /// A result whose text is rendered already; `data` is serialised when
    /// the call wants data.
    pub fn new<T: Serialize + ?Sized>(
        call: &Call,
        text: String,
        data: &T,
    ) -> Result<Report, PluginError> {
        let data = if call.wants_data {
            Some(serde_json::to_string(data).map_err(|err| {
                PluginError::new(format!(
                    "'{}' could not give its result as data: {err}",
                    call.command
                ))
            })?)
        } else {
            None
        };
        Ok(Report {
            text,
            data,
            files: Vec::new(),
        })
    }

    /// Adds a file for the client to save; send files only to a call that
    /// [wants them](Call::wants_files).
    #[must_use]
    pub fn attach(mut self, file: Attachment) -> Report {
        self.files.push(file);
        self
    }

    /// The files attached.
    pub fn files(&self) -> &[Attachment] {
        &self.files
    }

    /// The text a person reads.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The data, JSON, when it was made.
    pub fn data(&self) -> Option<&str> {
        self.data.as_deref()
    }

    fn into_completion(self) -> Completion {
        if self.data.is_none() && self.files.is_empty() {
            return Completion::Output(self.text);
        }
        Completion::Report {
            text: self.text,
            data: self.data,
            files: self.files,
        }
    }
}

/// What a plugin's command returns: the plugin's side of one call.
///
/// The four result types are four points on one path. A command answers
/// with an `Outcome`; a takeover it starts answers each line with a
/// [`Step`]; the [`Registry`] turns either (or an error, or a panic) into an
/// [`Execution`], which splits what goes back to the session (a
/// [`Completion`](crate::Completion), the session's only result type) from
/// the takeover object the adapter keeps. Plugins make `Outcome`s and
/// `Step`s; adapters handle `Execution`s; sessions consume `Completion`s.
pub enum Outcome {
    /// Text for the user. A missing final newline is added by the shell.
    /// As data, it is `{"text": ...}`.
    Output(String),
    /// Text and the same facts as data (see [`Report`]).
    Report(Report),
    /// The command takes the connection over (an interpreter, a debugger):
    /// every following line goes to this object until it says it is done.
    Interactive(Box<dyn Interactive>),
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Output(text) => f.debug_tuple("Output").field(text).finish(),
            Outcome::Report(report) => f.debug_tuple("Report").field(report).finish(),
            Outcome::Interactive(_) => f.write_str("Interactive(..)"),
        }
    }
}

/// What an interactive takeover returns for its start and for each line
/// fed to it. Unlike an [`Outcome`], it cannot start another takeover or
/// carry data: it either goes on, with the takeover's own prompt, or ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Show `output`, then read the next line at `prompt` (e.g. `>>> `).
    Continue {
        /// Text produced by the last line.
        output: String,
        /// The takeover's own prompt for the next line.
        prompt: String,
    },
    /// Show `output`; the takeover is over and the plugin's shell resumes.
    Done {
        /// Text produced by the last line.
        output: String,
    },
}

/// An interactive takeover of a session (console, post-mortem debugger).
///
/// The adapter keeps the object between lines; it is dropped when the
/// takeover ends, when the session closes, or when the call that feeds it is
/// abandoned.
pub trait Interactive: Send {
    /// Called once when the takeover begins: the banner and the first prompt.
    fn start(&mut self) -> Step;
    /// Called with each line the user enters, or `None` at end of input
    /// (Ctrl-D), which should end the takeover.
    fn feed(&mut self, line: Option<&str>) -> Step;
    /// A handle that stops the code a [`Interactive::feed`] runs, from
    /// another thread: what Ctrl-C, `call_timeout` and a vanished client
    /// use. `None` (the default): the takeover cannot be interrupted, and a
    /// line given up on runs to its end.
    fn interrupter(&self) -> Option<Arc<dyn Interrupt>> {
        None
    }

    /// Completion candidates for `text`, the line typed so far (Tab): the
    /// byte offset where the completed word starts, and full replacements
    /// for it (an interpreter's names and attributes). The default offers
    /// nothing.
    fn complete(&mut self, text: &str) -> (usize, Vec<String>) {
        (text.len(), Vec::new())
    }
}

/// Stops what a takeover's `feed` is running (see
/// [`Interactive::interrupter`]), as Ctrl-C at a local prompt would: an
/// interpreter raises `KeyboardInterrupt` in the code, and the feed returns
/// with its output and the next prompt.
pub trait Interrupt: Send + Sync {
    /// Asks the running code to stop. Must not block (a driver's loop
    /// thread calls it): start the interruption and return. Calling it
    /// when nothing runs does no harm.
    fn interrupt(&self);
}

/// The interface every plugin implements, whatever runs it (the std
/// adapter's threads, the mio adapter's workers, the Python binding).
///
/// Calls may come from several sessions at once, hence `Sync`. A panic in
/// [`Plugin::call`] is caught by [`Registry::execute`] and reported to the
/// session that made the call.
pub trait Plugin: Send + Sync {
    /// Describes the plugin. Called once, when the plugin is registered.
    fn describe(&self) -> PluginInfo;
    /// Runs `call.command` with `call.args` (the rest of the line, trimmed).
    fn call(&self, call: &Call) -> Result<Outcome, PluginError>;

    /// Runs a call that may take long: `progress` says how far it has got
    /// (which keeps it alive past `call_timeout`) and tells it when the
    /// user asks it to stop (Ctrl-C), so it can answer with what it has.
    /// The default runs [`Plugin::call`].
    fn call_with_progress(&self, call: &Call, progress: &Progress) -> Result<Outcome, PluginError> {
        let _ = progress;
        self.call(call)
    }

    /// Completion of `command`'s arguments (Tab): `text` is what follows
    /// the command's name; the answer is the byte offset in `text` where
    /// the completed word starts, and full replacements for it. The
    /// default offers nothing.
    fn complete(&self, command: &str, text: &str) -> (usize, Vec<String>) {
        let _ = command;
        (text.len(), Vec::new())
    }
}

/// A set of plugins, looked up by name, executing calls with panics caught.
#[derive(Clone, Default)]
pub struct Registry {
    entries: Vec<(PluginInfo, Arc<dyn Plugin>)>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(info, _)| &info.name))
            .finish()
    }
}

/// The result of [`Registry::execute`] or [`Registry::feed`]: what to hand
/// back to the session, and the takeover to keep if one is running.
///
/// It exists because a [`Completion`] is plain data that crosses threads and
/// is compared in tests, while the takeover is a live object owned by the
/// adapter: the registry hands the two back side by side.
#[must_use]
pub struct Execution {
    /// Give this to [`Session::handle_result`](crate::Session::handle_result).
    pub completion: Completion,
    /// Keep this and pass it to [`Registry::feed`] with the session's next
    /// [`Event::Feed`](crate::Event::Feed).
    pub interactive: Option<Box<dyn Interactive>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Adds a plugin. A later plugin with the same name replaces the earlier
    /// one, so a program can override a builtin.
    pub fn register(&mut self, plugin: Arc<dyn Plugin>) {
        let info = plugin.describe();
        self.entries.retain(|(other, _)| other.name != info.name);
        self.entries.push((info, plugin));
    }

    /// The plugins that the configuration's `plugins` list names, in its
    /// order, taken from those the host makes `available`. A name with no
    /// such plugin is an error naming the key and what is available.
    pub fn from_config(
        config: &Config,
        available: &[Arc<dyn Plugin>],
    ) -> Result<Registry, ConfigError> {
        let described: Vec<(PluginInfo, &Arc<dyn Plugin>)> =
            available.iter().map(|p| (p.describe(), p)).collect();
        let mut registry = Registry::new();
        for name in &config.plugins {
            let Some((_, plugin)) = described.iter().find(|(info, _)| info.name == *name) else {
                let names: Vec<&str> = described.iter().map(|(i, _)| i.name.as_str()).collect();
                return Err(ConfigError {
                    file: config.file.clone(),
                    section: Some(MAIN_SECTION.to_owned()),
                    key: Some("plugins".to_owned()),
                    problem: ConfigProblem::InvalidValue(format!(
                        "no plugin named '{name}' (available: {})",
                        names.join(", ")
                    )),
                });
            };
            registry.register(Arc::clone(plugin));
        }
        for (info, _) in &registry.entries {
            config.check_settings(info)?;
        }
        Ok(registry)
    }

    /// The descriptions of all registered plugins, in registration order.
    pub fn infos(&self) -> Vec<PluginInfo> {
        self.entries.iter().map(|(info, _)| info.clone()).collect()
    }

    /// The plugin called `name`.
    pub fn get(&self, name: &str) -> Option<(&PluginInfo, &Arc<dyn Plugin>)> {
        self.entries
            .iter()
            .find(|(info, _)| info.name == name)
            .map(|(info, plugin)| (info, plugin))
    }

    /// True when the calls of plugin `name` may run on the session's thread.
    pub fn is_inline(&self, name: &str) -> bool {
        self.get(name).is_some_and(|(info, _)| info.inline)
    }

    /// True when `command` of plugin `name` may run on the session's
    /// thread: the plugin is inline and the command is not a long one.
    pub fn runs_inline(&self, name: &str, command: &str) -> bool {
        self.get(name).is_some_and(|(info, _)| {
            info.inline && !info.find(command).is_some_and(|command| command.long)
        })
    }

    /// Runs a call, turning a failure or a panic into an error completion.
    pub fn execute(&self, call: &Call) -> Execution {
        self.execute_with(call, &Progress::new())
    }

    /// Runs a call that reports to `progress` (see
    /// [`Plugin::call_with_progress`]).
    pub fn execute_with(&self, call: &Call, progress: &Progress) -> Execution {
        let Some((_, plugin)) = self.get(&call.plugin) else {
            return Execution::fail(format!("Unknown plugin '{}'.", call.plugin));
        };
        match catch_unwind(AssertUnwindSafe(|| {
            plugin.call_with_progress(call, progress)
        })) {
            Ok(Ok(Outcome::Output(text))) => Execution {
                completion: Completion::Output(text),
                interactive: None,
            },
            Ok(Ok(Outcome::Report(report))) => Execution {
                completion: report.into_completion(),
                interactive: None,
            },
            Ok(Ok(Outcome::Interactive(mut interactive))) => {
                match catch_unwind(AssertUnwindSafe(|| interactive.start())) {
                    Ok(step) => Execution::from_step(step, interactive),
                    Err(panic) => Execution::fail(panicked(&call.command, &*panic)),
                }
            }
            Ok(Err(err)) => Execution::fail(err.message),
            Err(panic) => Execution::fail(panicked(&call.command, &*panic)),
        }
    }

    /// Asks plugin `plugin` to complete the arguments of `command`; a panic
    /// only means no candidates.
    pub fn complete_arguments(&self, plugin: &str, command: &str, text: &str) -> Execution {
        let (start, items) = self
            .get(plugin)
            .and_then(|(_, plugin)| {
                catch_unwind(AssertUnwindSafe(|| plugin.complete(command, text))).ok()
            })
            .filter(|(start, _)| *start <= text.len() && text.is_char_boundary(*start))
            .unwrap_or_else(|| (text.len(), Vec::new()));
        Execution {
            completion: Completion::Candidates { start, items },
            interactive: None,
        }
    }

    /// Asks a running takeover to complete a line; the takeover goes on
    /// whatever happens (a panic only means no candidates).
    pub fn complete(mut interactive: Box<dyn Interactive>, completing: &Completing) -> Execution {
        let text = completing.text.as_str();
        let (start, items) = catch_unwind(AssertUnwindSafe(|| interactive.complete(text)))
            .unwrap_or_else(|_| (text.len(), Vec::new()));
        Execution {
            completion: Completion::Candidates { start, items },
            interactive: Some(interactive),
        }
    }

    /// Feeds a line to a running takeover. A panic ends the takeover with an
    /// error; the session goes on in the plugin's shell.
    pub fn feed(mut interactive: Box<dyn Interactive>, feed: &Feed) -> Execution {
        let line = feed.line.as_deref();
        match catch_unwind(AssertUnwindSafe(|| interactive.feed(line))) {
            Ok(step) => Execution::from_step(step, interactive),
            Err(panic) => Execution::fail(panicked("interactive session", &*panic)),
        }
    }
}

impl Execution {
    fn fail(message: String) -> Self {
        Execution {
            completion: Completion::Error(message),
            interactive: None,
        }
    }

    fn from_step(step: Step, interactive: Box<dyn Interactive>) -> Self {
        match step {
            Step::Continue { output, prompt } => Execution {
                completion: Completion::Interactive { output, prompt },
                interactive: Some(interactive),
            },
            Step::Done { output } => Execution {
                completion: Completion::Output(output),
                interactive: None,
            },
        }
    }
}

fn panicked(what: &str, panic: &(dyn Any + Send)) -> String {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned());
    format!("'{what}' failed inside the plugin (panic: {detail}); the session goes on.")
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Quick;

    impl Plugin for Quick {
        fn describe(&self) -> PluginInfo {
            PluginInfo::new("quick", "Quick commands, and one long one")
                .command("pid", "Quick.")
                .long_command("profile", "Takes its time.")
                .inline()
        }

        fn call(&self, _: &Call) -> Result<Outcome, PluginError> {
            Ok(Outcome::Output(String::new()))
        }
    }

    #[test]
    fn a_long_command_of_an_inline_plugin_never_runs_inline() {
        let mut registry = Registry::new();
        registry.register(Arc::new(Quick));
        assert!(registry.runs_inline("quick", "pid"));
        assert!(!registry.runs_inline("quick", "profile"));
        assert!(!registry.runs_inline("nobody", "pid"));
    }
}
