//! The shell stack and every transition of it: root → plugin shell →
//! interactive takeover.
//!
//! Rules:
//! - The root shell has `exit help plugins prompt shell`; a plugin's shell
//!   has the plugin's commands plus `exit help prompt`.
//! - `shell NAME` enters a plugin's shell unless the plugin is gated and its
//!   section is not enabled; then the user stays where they were.
//! - A plugin command becomes a call; while the call's takeover runs, every
//!   line is fed to it, and the shell resumes when it says it is done.
//! - `exit` (or end of input) leaves the current level; at the root it ends
//!   the session.
//! - `prompt on|off` is one setting for the whole session.
//!
//! The depth of the stack is at most three: root, plugin, takeover.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::command::{CommandLine, parse_command};
use crate::config::{Config, Limits};
use crate::help;
use crate::name::Name;
use crate::plugin::PluginInfo;
use crate::render::{self, Body};
use crate::session::Completion;

const ROOT_NAME: &str = "ispyd";

const EXIT_HELP: &str = "Leave this shell: from a plugin's shell back to the top level; \
                         at the top level, end the session.";
const HELP_HELP: &str = "List the commands, or show one command's help: help [COMMAND]. \
                         '?' is the same as 'help'.";
const PLUGINS_HELP: &str = "List the loaded plugins, what each is for, and whether it is enabled.";
const PROMPT_HELP: &str = "Turn the prompt on or off: prompt on|off. Plugin shells follow the \
                           setting; 'prompt off' suits scripts.";
const SHELL_HELP: &str = "Enter a plugin's shell: shell NAME, or !NAME. 'plugins' lists the names.";
const DUMP_HELP: &str = "What the process is doing, at a glance: the 'dump' command of the last \
                         loaded plugin that has one, the program's own before the operating \
                         system's (in Python: every active request and every thread's stack, \
                         as written on a dump_on signal; elsewhere the process plugin's threads).";
/// The command `dump` at the top level runs in a plugin.
const DUMP: &str = "dump";

const ROOT_COMMANDS: &[(&str, &str)] = &[
    ("dump", DUMP_HELP),
    ("exit", EXIT_HELP),
    ("help", HELP_HELP),
    ("plugins", PLUGINS_HELP),
    ("prompt", PROMPT_HELP),
    ("shell", SHELL_HELP),
];
const PLUGIN_BUILTINS: &[(&str, &str)] = &[
    ("exit", EXIT_HELP),
    ("help", HELP_HELP),
    ("prompt", PROMPT_HELP),
];

/// The host as each kind of peer sees it, chosen by what admission learnt
/// of the peer: the adapters keep one of these and start every session with
/// [`Hosts::for_peer`].
#[derive(Debug, Clone)]
pub struct Hosts {
    local: Arc<Host>,
    remote: Arc<Host>,
}

impl Hosts {
    /// Both views of `host`: as it is, and [`Host::for_remote_peers`].
    pub fn new(host: Host) -> Hosts {
        Hosts {
            remote: Arc::new(host.for_remote_peers()),
            local: Arc::new(host),
        }
    }

    /// The view for a peer whose uid is `peer_uid`, as given to
    /// [`crate::admit`]: `None` (a TCP peer on another machine) gets the
    /// remote view.
    pub fn for_peer(&self, peer_uid: Option<Option<u32>>) -> Arc<Host> {
        Arc::clone(if peer_uid.is_none() {
            &self.remote
        } else {
            &self.local
        })
    }
}

/// What the core knows of the host process: its pid, its plugins, which
/// gated features are enabled, and the limits. Shared by all its sessions.
#[derive(Debug, Clone)]
pub struct Host {
    pid: u32,
    /// `pid` as text, for the prompts written after every command.
    pid_text: String,
    plugins: Vec<PluginInfo>,
    /// Each plugin's name and its commands' names, in the order of
    /// `plugins` and their commands, made once for every call to share.
    names: Vec<(Name, Vec<Name>)>,
    enabled: BTreeSet<String>,
    limits: Limits,
    /// Set on the view given to sessions of peers on other machines.
    remote: bool,
    /// `allow_remote_gated`: whether such peers may use gated features.
    remote_gated: bool,
}

impl Host {
    /// Describes a host process from its configuration and its plugins'
    /// descriptions.
    pub fn new(pid: u32, config: &Config, plugins: Vec<PluginInfo>) -> Host {
        let mut enabled = BTreeSet::new();
        for plugin in &plugins {
            let gates = plugin
                .gate
                .iter()
                .chain(plugin.commands.iter().filter_map(|c| c.gate.as_ref()));
            for gate in gates {
                if config.is_enabled(gate) {
                    enabled.insert(gate.clone());
                }
            }
        }
        let names = plugins
            .iter()
            .map(|p| {
                let commands = p.commands.iter().map(|c| Name::from(&c.name)).collect();
                (Name::from(&p.name), commands)
            })
            .collect();
        Host {
            pid,
            pid_text: pid.to_string(),
            plugins,
            names,
            enabled,
            limits: config.limits,
            remote: false,
            remote_gated: config.allow_remote_gated,
        }
    }

    /// The same host as seen by a peer on another machine (a TCP
    /// connection from a non-loopback address, possible only with
    /// `allow_remote`): its gated features (the console, the debugger: code
    /// run as the host's user) are closed unless the configuration also
    /// sets `allow_remote_gated`, since no uid rule can be applied to it.
    pub fn for_remote_peers(&self) -> Host {
        Host {
            remote: true,
            ..self.clone()
        }
    }

    /// True on the view made by [`Host::for_remote_peers`].
    pub fn is_remote(&self) -> bool {
        self.remote
    }

    /// The host's process id, shown in prompts.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The session limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The plugins' descriptions.
    pub fn plugins(&self) -> &[PluginInfo] {
        &self.plugins
    }

    /// The shared names of plugin `index` and of its command `command`,
    /// for a call.
    fn call_names(&self, index: usize, command: &str) -> Option<(Name, Name)> {
        let (plugin, commands) = &self.names[index];
        let command = commands.iter().find(|name| **name == *command)?;
        Some((plugin.clone(), command.clone()))
    }

    fn plugin(&self, name: &str) -> Option<(usize, &PluginInfo)> {
        self.plugins
            .iter()
            .enumerate()
            .find(|(_, p)| p.name == name)
    }

    /// The gate (the configuration section that enables it) behind
    /// `plugin`'s `command`: the command's own, else its plugin's. `None`
    /// for a command anyone admitted may run.
    pub(crate) fn gate_of(&self, plugin: &str, command: &str) -> Option<&str> {
        let (_, info) = self.plugin(plugin)?;
        info.find(command)
            .and_then(|c| c.gate.as_deref())
            .or(info.gate.as_deref())
    }

    fn is_open(&self, gate: Option<&String>) -> bool {
        gate.is_none_or(|g| self.enabled.contains(g) && (!self.remote || self.remote_gated))
    }

    /// Why the feature `what` behind `gate` is closed: not enabled, or
    /// enabled but not for remote peers.
    fn disabled(&self, what: &str, gate: Option<&String>) -> String {
        let gate = gate.map_or("", String::as_str);
        if self.enabled.contains(gate) {
            format!(
                "Sorry, the {what} is not available over a remote connection.\n\
                 To allow it, set 'allow_remote_gated = true' in the [ispyd] section of the \
                 configuration file."
            )
        } else {
            format!(
                "Sorry, the {what} is disabled.\n\
                 To enable it, set 'enabled = true' in the [{gate}] section of the configuration \
                 file."
            )
        }
    }

    /// How the plugin table marks a closed plugin.
    fn closed_mark(&self, gate: Option<&String>) -> String {
        let gate = gate.map_or("", String::as_str);
        if self.enabled.contains(gate) {
            " (not over a remote connection: allow_remote_gated)".to_owned()
        } else {
            format!(" (disabled: set enabled = true in [{gate}])")
        }
    }

    fn sorted_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.plugins.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        names
    }

    fn loaded_list(&self) -> String {
        let names = self.sorted_names();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    }
}

/// Something the shell shows, in order, before its next step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    Output(String),
    Error(String),
    TakeoverBegin(String),
    TakeoverEnd,
}

/// What the session does after showing a reply's pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Next {
    /// Show the prompt and read the next input.
    Prompt,
    /// Run a plugin command; the reply comes later.
    Call {
        plugin: Name,
        command: Name,
        args: String,
    },
    /// Hand a line (or end of input) to the running takeover.
    Feed(Option<String>),
    /// End the session: the user left.
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) pieces: Vec<Piece>,
    pub(crate) next: Next,
    /// The structured result of a command the shell answered itself, when
    /// the session wants them (see [`render::record`]).
    pub(crate) record: Option<String>,
}

impl Reply {
    fn prompt(pieces: Vec<Piece>) -> Reply {
        Reply {
            pieces,
            next: Next::Prompt,
            record: None,
        }
    }

    fn next(next: Next) -> Reply {
        Reply {
            pieces: Vec::new(),
            next,
            record: None,
        }
    }

    fn output(text: String) -> Reply {
        Reply::prompt(vec![Piece::Output(text)])
    }

    fn error(text: String) -> Reply {
        Reply::prompt(vec![Piece::Error(text)])
    }
}

/// A session's place in the shell stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shell {
    plugin: Option<usize>,
    takeover: Option<Takeover>,
    prompts: bool,
}

/// A running takeover: the command that started it and its current prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Takeover {
    name: Name,
    prompt: String,
}

impl Default for Shell {
    fn default() -> Self {
        Shell {
            plugin: None,
            takeover: None,
            prompts: true,
        }
    }
}

impl Shell {
    /// How many levels deep the session is: 1 at the root, at most 3.
    pub(crate) fn depth(&self) -> usize {
        1 + usize::from(self.plugin.is_some()) + usize::from(self.takeover.is_some())
    }

    pub(crate) fn in_takeover(&self) -> bool {
        self.takeover.is_some()
    }

    /// The prompt to show now, in pieces to write one after the other (a
    /// prompt follows every command: building it costs no allocation);
    /// `None` when prompts are off. A takeover's prompt is always shown: it
    /// tells the user which interpreter reads.
    pub(crate) fn prompt_parts<'a>(&'a self, host: &'a Host) -> Option<[&'a str; 5]> {
        if let Some(takeover) = &self.takeover {
            return Some([&takeover.prompt, "", "", "", ""]);
        }
        self.prompts
            .then(|| ["(", self.name(host), ":", &host.pid_text, ") "])
    }

    /// The prompt to show now, as one string.
    #[cfg(test)]
    pub(crate) fn prompt(&self, host: &Host) -> Option<String> {
        self.prompt_parts(host).map(|parts| parts.concat())
    }

    /// The running takeover's name and its plugin's, shared, for the
    /// session's record of a line or completion sent to it.
    pub(crate) fn takeover_names(&self, host: &Host) -> (Name, Name) {
        let command = self
            .takeover
            .as_ref()
            .map_or_else(|| Name::from(""), |t| t.name.clone());
        let plugin = match self.plugin {
            Some(index) => host.names[index].0.clone(),
            None => Name::from(ROOT_NAME),
        };
        (command, plugin)
    }

    fn name<'h>(&self, host: &'h Host) -> &'h str {
        match self.plugin {
            Some(index) => &host.plugins[index].name,
            None => ROOT_NAME,
        }
    }

    /// Interprets one line of input. With `wants_data`, a command the
    /// shell answers itself comes with its structured result.
    pub(crate) fn run_line(&mut self, line: &str, host: &Host, wants_data: bool) -> Reply {
        if self.takeover.is_some() {
            return Reply::next(Next::Feed(Some(line.to_owned())));
        }
        let Some(command) = parse_command(line) else {
            return Reply::prompt(Vec::new());
        };
        let shell = self.name(host);
        let mut reply = match self.plugin {
            None => self.run_root(command, host),
            Some(index) => self.run_plugin(index, command, host),
        };
        if wants_data && reply.next == Next::Prompt {
            reply.record = Some(self.builtin_record(shell, command, &reply.pieces, host));
        }
        reply
    }

    /// The structured result of a command the shell answered itself
    /// (`plugins`, `help`, `shell`, `prompt`, or a refusal).
    fn builtin_record(
        &self,
        shell: &str,
        command: CommandLine<'_>,
        pieces: &[Piece],
        host: &Host,
    ) -> String {
        let error = pieces.iter().find_map(|piece| match piece {
            Piece::Error(text) => Some(text.strip_prefix("*** ").unwrap_or(text)),
            _ => None,
        });
        if let Some(error) = error {
            return render::record(shell, command.name, Body::Error(error));
        }
        let data = match command.name {
            "plugins" if shell == ROOT_NAME => Some(plugins_data(host)),
            "shell" if shell == ROOT_NAME => {
                Some(serde_json::json!({ "shell": self.name(host) }).to_string())
            }
            "prompt" => {
                let state = if self.prompts { "on" } else { "off" };
                Some(serde_json::json!({ "prompt": state }).to_string())
            }
            _ => None,
        };
        let text: String = pieces
            .iter()
            .filter_map(|piece| match piece {
                Piece::Output(text) => Some(text.as_str()),
                _ => None,
            })
            .collect();
        let body = match &data {
            Some(data) => Body::Data(data),
            None if text.is_empty() => Body::Nothing,
            None => Body::Text(&text),
        };
        render::record(shell, command.name, body)
    }

    /// End of input (Ctrl-D): leaves the current level.
    pub(crate) fn end_of_input(&mut self) -> Reply {
        if self.takeover.is_some() {
            return Reply::next(Next::Feed(None));
        }
        self.exit()
    }

    fn exit(&mut self) -> Reply {
        if self.plugin.take().is_some() {
            return Reply::prompt(Vec::new());
        }
        Reply::next(Next::Close)
    }

    fn run_root(&mut self, command: CommandLine<'_>, host: &Host) -> Reply {
        match command.name {
            "exit" => self.exit(),
            "help" => Reply::output(root_help(command.args, host)),
            "prompt" => self.set_prompt(command.args),
            "plugins" => Reply::output(plugin_table(host)),
            "shell" => self.enter(command.args, host),
            DUMP => dump(command.args, host),
            _ => Reply::prompt(unknown(
                command,
                ROOT_COMMANDS.iter().map(|(name, _)| *name),
            )),
        }
    }

    fn run_plugin(&mut self, index: usize, command: CommandLine<'_>, host: &Host) -> Reply {
        let plugin = &host.plugins[index];
        match command.name {
            "exit" => self.exit(),
            "help" => Reply::output(plugin_help(plugin, command.args)),
            "prompt" => self.set_prompt(command.args),
            name => match plugin.find(name) {
                Some(info) if !host.is_open(info.gate.as_ref()) => {
                    Reply::error(host.disabled(&format!("{name} command"), info.gate.as_ref()))
                }
                Some(info) => {
                    let (plugin, name) = host
                        .call_names(index, name)
                        .unwrap_or_else(|| (Name::from(&plugin.name), Name::from(&info.name)));
                    Reply::next(Next::Call {
                        plugin,
                        command: name,
                        args: command.args.to_owned(),
                    })
                }
                None => {
                    let names = plugin_command_names(plugin);
                    Reply::prompt(unknown(command, names.into_iter()))
                }
            },
        }
    }

    fn set_prompt(&mut self, args: &str) -> Reply {
        match args {
            "on" => self.prompts = true,
            "off" => self.prompts = false,
            "" => {
                let state = if self.prompts { "on" } else { "off" };
                return Reply::output(format!("The prompt is {state}. Use: prompt on|off\n"));
            }
            _ => {
                return Reply::error(format!(
                    "*** Usage: prompt on|off (not '{}')",
                    render::echoed(args)
                ));
            }
        }
        Reply::prompt(Vec::new())
    }

    fn enter(&mut self, name: &str, host: &Host) -> Reply {
        if name.is_empty() {
            return Reply::error(format!(
                "*** Usage: shell NAME. Loaded plugins: {}.",
                host.loaded_list()
            ));
        }
        match host.plugin(name) {
            None => Reply::error(format!(
                "Unknown plugin '{}'. Loaded plugins: {}.",
                render::echoed(name),
                host.loaded_list()
            )),
            Some((_, plugin)) if !host.is_open(plugin.gate.as_ref()) => {
                Reply::error(host.disabled(&format!("{name} plugin"), plugin.gate.as_ref()))
            }
            Some((index, _)) => {
                self.plugin = Some(index);
                Reply::prompt(Vec::new())
            }
        }
    }

    /// Applies the result of the call or feed the session was waiting for.
    ///
    /// At most two pieces, and no allocation for them: this runs for every
    /// command.
    pub(crate) fn finish(
        &mut self,
        command: &Name,
        completion: Completion,
    ) -> impl Iterator<Item = Piece> + use<> {
        let (first, second) = match completion {
            Completion::Interactive { output, prompt } => match &mut self.takeover {
                Some(takeover) => {
                    takeover.prompt = prompt;
                    (None, Some(Piece::Output(output)))
                }
                None => {
                    self.takeover = Some(Takeover {
                        name: command.clone(),
                        prompt,
                    });
                    let begin = Piece::TakeoverBegin(command.to_string());
                    (Some(begin), Some(Piece::Output(output)))
                }
            },
            // Answered by the session itself; nothing to show.
            Completion::Candidates { .. } => (None, None),
            Completion::Output(output) | Completion::Report { text: output, .. } => {
                (Some(Piece::Output(output)), self.takeover_end())
            }
            Completion::Error(message) => (
                Some(Piece::Error(format!("*** {message}"))),
                self.takeover_end(),
            ),
        };
        first.into_iter().chain(second)
    }

    /// Gives up on the call the session was waiting for.
    pub(crate) fn abandon(&mut self, message: String) -> Vec<Piece> {
        let mut pieces = vec![Piece::Error(message)];
        self.end_takeover(&mut pieces);
        pieces
    }

    fn end_takeover(&mut self, pieces: &mut Vec<Piece>) {
        pieces.extend(self.takeover_end());
    }

    /// Ends the takeover, if one runs: the piece that says so.
    fn takeover_end(&mut self) -> Option<Piece> {
        self.takeover.take().map(|_| Piece::TakeoverEnd)
    }

    /// When `text` (the line up to the cursor) is typing the arguments of a
    /// plugin command, in its plugin's shell: the plugin, the command, and
    /// the byte offset where the arguments begin.
    pub(crate) fn argument_of(&self, text: &str, host: &Host) -> Option<(String, String, usize)> {
        if self.takeover.is_some() {
            return None;
        }
        let plugin = &host.plugins[self.plugin?];
        let trimmed = text.trim_start();
        let name_end = trimmed.find([' ', '\t'])?;
        let name = &trimmed[..name_end];
        let info = plugin.find(name)?;
        if !host.is_open(info.gate.as_ref()) {
            return None;
        }
        let offset = text.len() - trimmed.len() + name_end + 1;
        Some((plugin.name.clone(), name.to_owned(), offset))
    }

    /// Completion candidates for `text` (the line up to the cursor): the
    /// byte offset where the completed word starts, and the candidates.
    pub(crate) fn completions(&self, text: &str, host: &Host) -> (usize, Vec<String>) {
        if self.takeover.is_some() {
            return (text.len(), Vec::new());
        }
        let start = text
            .rfind([' ', '\t'])
            .map_or(text.len() - text.trim_start().len(), |at| at + 1);
        let word = &text[start..];
        let before: Vec<&str> = text[..start].split_whitespace().collect();
        let plugin = self.plugin.map(|i| &host.plugins[i]);
        let pool: Vec<String> = match (before.as_slice(), plugin) {
            ([], None) => names(ROOT_COMMANDS.iter().map(|(n, _)| *n)),
            ([], Some(plugin)) => names(plugin_command_names(plugin).into_iter()),
            (["help" | "?"], None) => names(ROOT_COMMANDS.iter().map(|(n, _)| *n)),
            (["help" | "?"], Some(plugin)) => names(plugin_command_names(plugin).into_iter()),
            (["shell" | "!"], None) => names(host.sorted_names().into_iter()),
            (["prompt"], _) => names(["on", "off"].into_iter()),
            _ => Vec::new(),
        };
        let mut items: Vec<String> = pool.into_iter().filter(|c| c.starts_with(word)).collect();
        items.sort();
        items.dedup();
        // A word completed for certain is followed by a space, as in a
        // shell: the next word can be typed at once.
        if let [only] = items.as_mut_slice() {
            only.push(' ');
        }
        (start, items)
    }
}

fn names<'a>(iter: impl Iterator<Item = &'a str>) -> Vec<String> {
    iter.map(str::to_owned).collect()
}

fn plugin_command_names(plugin: &PluginInfo) -> Vec<&str> {
    let mut names: Vec<&str> = PLUGIN_BUILTINS
        .iter()
        .map(|(name, _)| *name)
        .chain(plugin.commands.iter().map(|c| c.name.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

fn unknown<'a>(command: CommandLine<'_>, known: impl Iterator<Item = &'a str>) -> Vec<Piece> {
    let known: Vec<&str> = known.collect();
    let mut message = format!(
        "*** Unknown syntax: {}",
        render::echoed(&command.to_string())
    );
    let wanted = if command.name == "quit" {
        Some("exit")
    } else {
        closest(command.name, &known)
    };
    match wanted {
        Some(name) => message.push_str(&format!(
            "\nDid you mean '{name}'? Type 'help' for the commands here."
        )),
        None => message.push_str("\nType 'help' for the commands here."),
    }
    vec![Piece::Error(message)]
}

fn closest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|name| (edit_distance(word, name), *name))
        .filter(|(distance, name)| *distance <= 2 && *distance < name.len())
        .min()
        .map(|(_, name)| name)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// `dump` at the top level: the dump of the last loaded plugin that has
/// one, as if typed in its shell. Plugins load builtins first, the
/// program's own after: the last is the one that knows the program best.
fn dump(args: &str, host: &Host) -> Reply {
    let Some(plugin) = host.plugins.iter().rev().find(|p| p.find(DUMP).is_some()) else {
        return Reply::error(
            "*** No loaded plugin has a dump command (the process plugin has one, and the \
             python plugin in a Python program)."
                .to_owned(),
        );
    };
    if !host.is_open(plugin.gate.as_ref()) {
        return Reply::error(
            host.disabled(&format!("{} plugin", plugin.name), plugin.gate.as_ref()),
        );
    }
    match plugin.find(DUMP) {
        Some(info) if !host.is_open(info.gate.as_ref()) => {
            Reply::error(host.disabled(&format!("{DUMP} command"), info.gate.as_ref()))
        }
        _ => Reply::next(Next::Call {
            plugin: Name::from(&plugin.name),
            command: Name::from(DUMP),
            args: args.to_owned(),
        }),
    }
}

fn root_help(topic: &str, host: &Host) -> String {
    if topic.is_empty() {
        let names: Vec<&str> = ROOT_COMMANDS.iter().map(|(name, _)| *name).collect();
        return help::listing(&names, &[]);
    }
    match ROOT_COMMANDS.iter().find(|(name, _)| *name == topic) {
        Some((_, text)) => format!("{text}\n"),
        None if host.plugin(topic).is_some() => format!(
            "'{topic}' is a plugin: enter its shell with 'shell {topic}', then type 'help'.\n"
        ),
        None => format!("*** No help on {topic}\n"),
    }
}

fn plugin_help(plugin: &PluginInfo, topic: &str) -> String {
    if topic.is_empty() {
        let mut documented = Vec::new();
        let mut undocumented = Vec::new();
        for name in plugin_command_names(plugin) {
            let has_help = PLUGIN_BUILTINS.iter().any(|(n, _)| *n == name)
                || plugin.find(name).is_some_and(|c| !c.help.trim().is_empty());
            if has_help {
                documented.push(name);
            } else {
                undocumented.push(name);
            }
        }
        return help::listing(&documented, &undocumented);
    }
    if let Some((_, text)) = PLUGIN_BUILTINS.iter().find(|(name, _)| *name == topic) {
        return format!("{text}\n");
    }
    match plugin.find(topic) {
        Some(command) if !command.help.trim().is_empty() => {
            format!("{}\n", command.help.trim_end())
        }
        _ => format!("*** No help on {topic}\n"),
    }
}

fn plugin_table(host: &Host) -> String {
    let mut plugins: Vec<&PluginInfo> = host.plugins.iter().collect();
    plugins.sort_by(|a, b| a.name.cmp(&b.name));
    if plugins.is_empty() {
        return "No plugins are loaded.\n".to_owned();
    }
    let width = plugins.iter().map(|p| p.name.len()).max().unwrap_or(0);
    let mut out = String::new();
    for plugin in plugins {
        let state = if host.is_open(plugin.gate.as_ref()) {
            String::new()
        } else {
            host.closed_mark(plugin.gate.as_ref())
        };
        out.push_str(&format!(
            "{:<width$}  {}{}\n",
            plugin.name, plugin.summary, state
        ));
    }
    out
}

/// `plugins` as data: every plugin in name order with its commands, and
/// whether configuration lets it (and each command) be used.
fn plugins_data(host: &Host) -> String {
    let mut plugins: Vec<&PluginInfo> = host.plugins.iter().collect();
    plugins.sort_by(|a, b| a.name.cmp(&b.name));
    let plugins: Vec<serde_json::Value> = plugins
        .into_iter()
        .map(|plugin| {
            let commands: Vec<serde_json::Value> = plugin
                .commands
                .iter()
                .map(|command| {
                    serde_json::json!({
                        "name": command.name,
                        "summary": command.help.lines().next().unwrap_or_default(),
                        "gate": command.gate,
                        "enabled": host.is_open(command.gate.as_ref()),
                    })
                })
                .collect();
            serde_json::json!({
                "name": plugin.name,
                "summary": plugin.summary,
                "gate": plugin.gate,
                "enabled": host.is_open(plugin.gate.as_ref()),
                "commands": commands,
            })
        })
        .collect();
    serde_json::json!({ "plugins": plugins }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Listen;

    fn host() -> Host {
        let mut config = Config::new(Listen::Unix("/tmp/x".into()), &[]);
        config.set_enabled("open", true);
        let plugins = vec![
            PluginInfo::new("process", "The OS's view")
                .command("pid", "Print the process id.")
                .command("cwd", "Print the working directory."),
            PluginInfo::new("debugger", "Probes").gated("debugger"),
            PluginInfo::new("python", "The interpreter")
                .command("threads", "Dump stacks.")
                .gated_command("console", "Interpreter.", "python:console")
                .command("quiet", ""),
        ];
        Host::new(42, &config, plugins)
    }

    fn run(shell: &mut Shell, line: &str) -> Reply {
        shell.run_line(line, &host(), false)
    }

    fn error_text(reply: &Reply) -> &str {
        match reply.pieces.as_slice() {
            [Piece::Error(text)] => text,
            other => panic!("expected one error, got {other:?}"),
        }
    }

    #[test]
    fn dump_at_the_top_runs_the_last_plugin_dump_and_says_when_there_is_none() {
        let config = Config::new(Listen::Unix("/tmp/x".into()), &[]);
        let with = Host::new(
            42,
            &config,
            vec![
                PluginInfo::new("process", "").command("dump", "Threads."),
                PluginInfo::new("python", "").command("dump", "Stacks and requests."),
                PluginInfo::new("debugger", "").command("list", ""),
            ],
        );
        let reply = Shell::default().run_line("dump", &with, false);
        assert_eq!(
            reply.next,
            Next::Call {
                plugin: "python".into(),
                command: "dump".into(),
                args: String::new(),
            }
        );
        let reply = run(&mut Shell::default(), "dump");
        assert!(error_text(&reply).contains("No loaded plugin has a dump"));
    }

    #[test]
    fn root_prompt_shows_ispyd_and_pid() {
        assert_eq!(
            Shell::default().prompt(&host()).as_deref(),
            Some("(ispyd:42) ")
        );
    }

    #[test]
    fn shell_enters_plugin_and_exit_restores_root_prompt() {
        let host = host();
        let mut shell = Shell::default();
        shell.run_line("shell process", &host, false);
        assert_eq!(shell.prompt(&host).as_deref(), Some("(process:42) "));
        assert_eq!(shell.depth(), 2);
        shell.run_line("exit", &host, false);
        assert_eq!(shell.prompt(&host).as_deref(), Some("(ispyd:42) "));
    }

    #[test]
    fn bang_enters_plugin() {
        let host = host();
        let mut shell = Shell::default();
        shell.run_line("!process", &host, false);
        assert_eq!(shell.prompt(&host).as_deref(), Some("(process:42) "));
    }

    #[test]
    fn exit_at_root_closes_session() {
        let reply = run(&mut Shell::default(), "exit");
        assert_eq!(reply.next, Next::Close);
    }

    #[test]
    fn unknown_command_names_it_and_hints() {
        let reply = run(&mut Shell::default(), "foo bar");
        assert_eq!(
            error_text(&reply),
            "*** Unknown syntax: foo bar\nType 'help' for the commands here."
        );
    }

    #[test]
    fn near_miss_suggests_the_command() {
        let reply = run(&mut Shell::default(), "plugns");
        assert!(error_text(&reply).contains("Did you mean 'plugins'?"));
        let reply = run(&mut Shell::default(), "quit");
        assert!(error_text(&reply).contains("Did you mean 'exit'?"));
    }

    #[test]
    fn echoed_user_text_has_its_control_characters_escaped() {
        let reply = run(&mut Shell::default(), "fo\u{1b}[31mo\0 \rbar");
        assert_eq!(
            error_text(&reply),
            "*** Unknown syntax: fo\\u{1b}[31mo\\0 \\rbar\nType 'help' for the commands here."
        );
        let reply = run(&mut Shell::default(), "shell \u{1b}]0;owned\u{7}");
        assert!(
            error_text(&reply).starts_with("Unknown plugin '\\u{1b}]0;owned\\u{7}'."),
            "{}",
            error_text(&reply)
        );
    }

    #[test]
    fn unknown_plugin_lists_loaded_ones() {
        let reply = run(&mut Shell::default(), "shell foo");
        assert_eq!(
            error_text(&reply),
            "Unknown plugin 'foo'. Loaded plugins: debugger, process, python."
        );
    }

    #[test]
    fn disabled_plugin_is_refused_and_user_stays_at_root() {
        let host = host();
        let mut shell = Shell::default();
        let reply = shell.run_line("shell debugger", &host, false);
        assert!(error_text(&reply).starts_with("Sorry, the debugger plugin is disabled.\n"));
        assert_eq!(shell.depth(), 1);
    }

    #[test]
    fn remote_peers_get_no_gated_feature_unless_allowed() {
        let mut config = Config::new(Listen::Unix("/tmp/x".into()), &[]);
        config.set_enabled("python:console", true);
        let plugins = || {
            vec![
                PluginInfo::new("python", "The interpreter")
                    .command("threads", "Dump stacks.")
                    .gated_command("console", "Interpreter.", "python:console"),
            ]
        };
        let local = Host::new(42, &config, plugins());
        let remote = local.for_remote_peers();
        let mut shell = Shell::default();
        shell.run_line("shell python", &remote, false);
        let reply = shell.run_line("console", &remote, false);
        assert!(
            error_text(&reply).starts_with(
                "Sorry, the console command is not available over a remote connection.\n\
                 To allow it, set 'allow_remote_gated = true'"
            ),
            "{}",
            error_text(&reply)
        );
        assert_eq!(reply.next, Next::Prompt);
        assert!(matches!(
            shell.run_line("threads", &remote, false).next,
            Next::Call { .. }
        ));
        assert!(matches!(
            shell.run_line("console", &local, false).next,
            Next::Call { .. }
        ));
        config.allow_remote_gated = true;
        let allowed = Host::new(42, &config, plugins()).for_remote_peers();
        assert!(allowed.is_remote());
        assert!(matches!(
            shell.run_line("console", &allowed, false).next,
            Next::Call { .. }
        ));
    }

    #[test]
    fn disabled_command_is_refused_without_a_call() {
        let host = host();
        let mut shell = Shell::default();
        shell.run_line("shell python", &host, false);
        let reply = shell.run_line("console", &host, false);
        assert!(error_text(&reply).starts_with("Sorry, the console command is disabled."));
        assert_eq!(reply.next, Next::Prompt);
    }

    #[test]
    fn plugin_command_becomes_a_call_with_trimmed_args() {
        let host = host();
        let mut shell = Shell::default();
        shell.run_line("shell python", &host, false);
        let reply = shell.run_line("threads   all ", &host, false);
        assert_eq!(
            reply.next,
            Next::Call {
                plugin: "python".into(),
                command: "threads".into(),
                args: "all".into()
            }
        );
    }

    #[test]
    fn empty_line_does_nothing() {
        let reply = run(&mut Shell::default(), "   ");
        assert_eq!(reply, Reply::prompt(Vec::new()));
    }

    #[test]
    fn prompt_off_is_inherited_by_subshells() {
        let host = host();
        let mut shell = Shell::default();
        shell.run_line("prompt off", &host, false);
        shell.run_line("shell process", &host, false);
        assert_eq!(shell.prompt(&host), None);
        shell.run_line("prompt on", &host, false);
        shell.run_line("exit", &host, false);
        assert_eq!(shell.prompt(&host).as_deref(), Some("(ispyd:42) "));
    }

    #[test]
    fn plugin_help_lists_plugin_and_builtin_commands() {
        let host = host();
        let mut shell = Shell::default();
        shell.run_line("shell process", &host, false);
        let reply = shell.run_line("help", &host, false);
        assert_eq!(
            reply.pieces,
            vec![Piece::Output(
                "\nDocumented commands (type help <topic>):\n\
                 ========================================\n\
                 cwd  exit  help  pid  prompt\n\n"
                    .into()
            )]
        );
        let reply = shell.run_line("help pid", &host, false);
        assert_eq!(
            reply.pieces,
            vec![Piece::Output("Print the process id.\n".into())]
        );
        let reply = shell.run_line("help nope", &host, false);
        assert_eq!(
            reply.pieces,
            vec![Piece::Output("*** No help on nope\n".into())]
        );
    }

    #[test]
    fn commands_without_help_are_listed_as_undocumented() {
        let host = host();
        let mut shell = Shell::default();
        shell.run_line("shell python", &host, false);
        let reply = shell.run_line("help", &host, false);
        let Piece::Output(text) = &reply.pieces[0] else {
            panic!()
        };
        assert!(text.contains("Undocumented commands:\n======================\nquiet\n"));
    }

    #[test]
    fn plugins_table_marks_disabled_ones() {
        let reply = run(&mut Shell::default(), "plugins");
        let Piece::Output(text) = &reply.pieces[0] else {
            panic!()
        };
        assert_eq!(
            text,
            "debugger  Probes (disabled: set enabled = true in [debugger])\n\
             process   The OS's view\n\
             python    The interpreter\n"
        );
    }

    #[test]
    fn takeover_receives_lines_until_done() {
        let host = host();
        let mut shell = Shell::default();
        shell.run_line("shell python", &host, false);
        let pieces: Vec<Piece> = shell
            .finish(
                &Name::from("console"),
                Completion::Interactive {
                    output: "banner\n".into(),
                    prompt: ">>> ".into(),
                },
            )
            .collect();
        assert_eq!(pieces[0], Piece::TakeoverBegin("console".into()));
        assert_eq!(shell.prompt(&host).as_deref(), Some(">>> "));
        assert_eq!(shell.depth(), 3);
        let reply = shell.run_line("exit", &host, false);
        assert_eq!(reply.next, Next::Feed(Some("exit".into())));
        let mut pieces = shell.finish(&Name::from("console"), Completion::Output(String::new()));
        assert_eq!(pieces.nth(1), Some(Piece::TakeoverEnd));
        assert_eq!(shell.prompt(&host).as_deref(), Some("(python:42) "));
    }

    #[test]
    fn completion_offers_commands_plugins_and_topics() {
        let host = host();
        let mut shell = Shell::default();
        assert_eq!(
            shell.completions("p", &host),
            (0, vec!["plugins".into(), "prompt".into()])
        );
        assert_eq!(
            shell.completions("shell p", &host),
            (6, vec!["process".into(), "python".into()])
        );
        assert_eq!(
            shell.completions("prompt o", &host),
            (7, vec!["off".into(), "on".into()])
        );
        shell.run_line("shell process", &host, false);
        // The only candidate comes with the space that ends the word.
        assert_eq!(shell.completions("help c", &host), (5, vec!["cwd ".into()]));
    }
}
