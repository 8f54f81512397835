"""The debugger plugin: exception probes on functions and methods of every
kind, bounded capture, and post-mortem pdb over the connection, in text
mode (a raw socket, ``nc``) and framed mode (``ispy``, piped and on a
terminal), in a real Flask application under a real gunicorn and in
``tests/apps/debug_host.py`` (host.py plus ``eval``/``exec`` on stdin,
with the targets of ``tests/apps/debug_targets.py``).
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import List, Optional

import pytest

from conftest import (
    APPS,
    WAIT,
    App,
    Process,
    child_env,
    open_shell,
    refused_configuration,
    run_ispy,
    wait_for_socket,
    wait_until,
)

T = "debug_targets"


# ---------------------------------------------------------------------------
# Helpers


def debugger_config(write_config, **debugger: object) -> Path:
    """A configuration with the debugger enabled (and the console, for
    checks from inside the process), plus ``[debugger]`` keys."""
    keys = {"enabled": "true", **debugger}
    ispyd = {key: keys.pop(key) for key in ("call_timeout",) if key in keys}
    extra = "\n[debugger]\n" + "".join(f"{key} = {value}\n" for key, value in keys.items())
    return write_config(console=True, extra=extra, **ispyd)


class DebugHost(App):
    """``tests/apps/debug_host.py``: host.py with ``eval`` and ``exec``."""

    def __init__(self, config: Path, cwd: Path, env: dict) -> None:
        Process.__init__(self, [sys.executable, str(APPS / "debug_host.py"), str(config)], cwd, env)
        self.address = ""

    def _reply(self, command: str) -> str:
        seen = len(self.stdout.snapshot())
        self.send(command)
        wait_until(lambda: len(self.stdout.snapshot()) > seen, f"the host's answer to {command!r}")
        return self.stdout.snapshot()[seen]

    def eval(self, expression: str) -> str:
        """``repr()`` of ``expression``'s value in the host's main thread."""
        reply = self._reply(f"eval {expression}")
        assert reply.startswith("EVAL "), f"{expression}: {reply}\n{self.output()}"
        return reply[len("EVAL ") :]

    def exec(self, statement: str) -> str:
        """Runs ``statement``; returns ``done`` or ``ERROR Type: message``."""
        reply = self._reply(f"exec {statement}")
        return "done" if reply == "EXEC done" else reply

    def pdb_threads(self) -> str:
        return self.eval("os_threads('ispyd-pdb')")


@pytest.fixture
def start_host(workdir, processes):
    def start(config: Path) -> DebugHost:
        host = DebugHost(config, workdir, child_env())
        processes.append(host)
        return host.wait_ready()

    return start


class Shell:
    """A text-mode session on a raw socket, as ``nc -U`` has: each line
    sent gets its output and then the next prompt."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(WAIT)
        self.sock.connect(address)
        self.pid = int(re.search(r"ispyd-(\d+)\.sock$", address).group(1))
        self.read_until(f"(ispyd:{self.pid}) ")

    @property
    def debugger(self) -> str:
        return f"(debugger:{self.pid}) "

    def read_until(self, prompt: str) -> str:
        data = b""
        while not data.endswith(prompt.encode()):
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                pytest.fail(f"no {prompt!r} within {WAIT} s; got:\n{data.decode(errors='replace')}")
            if not chunk:
                pytest.fail(f"the session closed before {prompt!r}; got:\n{data.decode(errors='replace')}")
            data += chunk
        return data.decode()[: -len(prompt)]

    def ask(self, line: str, prompt: Optional[str] = None) -> str:
        """Sends ``line``; returns what came before the next prompt, which
        must be ``prompt`` (by default the debugger's shell prompt)."""
        self.sock.sendall(line.encode() + b"\n")
        return self.read_until(prompt or self.debugger)

    def pdb(self, line: str) -> str:
        return self.ask(line, "(Pdb) ")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def shells():
    made: List[Shell] = []

    def connect(address: str) -> Shell:
        made.append(Shell(address))
        return made[-1]

    yield connect
    for shell in made:
        shell.close()


def debugger_shell(shells, address: str) -> Shell:
    shell = shells(address)
    shell.ask("shell debugger")
    return shell


def debugger(address: object, *commands: str) -> str:
    """``ispy`` (framed mode) piped ``connect``, ``shell debugger`` and
    ``commands``; everything it printed, errors included."""
    result = run_ispy(address, ["connect", "shell debugger", *commands])
    assert result.code == 0, result
    return result.stdout + result.stderr


def pid_of(app: App) -> int:
    return int(re.search(r"ispyd-(\d+)\.sock$", app.address).group(1))


def failed_function(host: DebugHost, shell: Shell) -> None:
    """Probes debug_targets:function and makes it fail once."""
    assert "Probe inserted" in shell.ask(f"insert {T}:function")
    assert host.exec("t.function(1)") == "ERROR RuntimeError: function failed on 4"


# ---------------------------------------------------------------------------
# The gate and the help


def test_debugger_is_off_unless_enabled(write_config, start_app):
    app = start_app(write_config())
    result = run_ispy(app.address, ["connect", "plugins", "shell debugger", "insert os:getcwd"])
    assert result.code == 0, result
    assert "Sorry, the debugger plugin is disabled." in result.stderr, result
    assert "[debugger]" in result.stderr, result
    assert "Probe inserted" not in result.stdout, result
    assert re.search(r"^debugger\s", result.stdout, re.M), result


def test_help_lists_the_seeds_commands_and_explains_early_references(write_config, start_host):
    host = start_host(debugger_config(write_config))
    out = debugger(host.address, "help", "help insert")
    assert (
        "debug    exit  insert  print   remove  tracebacks\n"
        "discard  help  list    prompt  reset \n"
    ) in out, out
    assert "code that took its own reference before" in out and "still calls the original" in out, out


# ---------------------------------------------------------------------------
# The seed's sample: a Flask app under gunicorn


class Worker:
    """gunicorn with one worker serving tests/apps/debug_app.py."""

    def __init__(self, process: Process, workdir: Path) -> None:
        self.process = process
        port = process.stderr.wait_for(r"Listening at: http://127\.0\.0\.1:(\d+)", "gunicorn to listen")
        self.url = f"http://127.0.0.1:{port.group(1)}"
        booted = process.stderr.wait_for(r"Booting worker with pid: (\d+)", "the worker to boot")
        self.pid = int(booted.group(1))
        self.address = str(wait_for_socket(workdir / f"ispyd-{self.pid}.sock"))

    def status(self, path: str) -> int:
        try:
            with urllib.request.urlopen(self.url + path, timeout=WAIT) as response:
                response.read()
                return response.status
        except urllib.error.HTTPError as err:
            return err.code


@pytest.fixture
def worker(write_config, spawn, workdir) -> Worker:
    config = debugger_config(write_config)
    argv = [sys.executable, "-m", "gunicorn", "-w", "1", "-b", "127.0.0.1:0", "debug_app:app"]
    return Worker(spawn(argv, APP_ISPYD_CONFIG=str(config)), workdir)


def test_failed_request_is_captured_and_debugged_with_pdb(worker, shells):
    shell = debugger_shell(shells, worker.address)
    assert shell.ask("insert debug_app:function") == "Probe inserted on debug_app:function (function).\n"
    assert worker.status("/") == 500

    listed = shell.ask("tracebacks")
    assert re.search(r"^debug_app:function\s+\S+ \S+\s+MainThread\s+RuntimeError: xxx 42$", listed, re.M), listed

    printed = shell.ask("print debug_app:function")
    assert "Traceback (most recent call last):" in printed, printed
    assert re.search(r'debug_app\.py", line \d+, in index\n\s+return function\(\) or request_note', printed), printed
    assert re.search(r'debug_app\.py", line \d+, in function\n\s+raise RuntimeError\(f"xxx \{answer\}"\)', printed), printed
    assert "gunicorn/workers/" in printed, printed  # the whole call path
    assert printed.rstrip().endswith("RuntimeError: xxx 42"), printed

    started = shell.pdb("debug debug_app:function")
    assert re.search(r"^> .*debug_app\.py\(\d+\)function\(\)\n-> raise RuntimeError", started, re.M), started
    assert shell.pdb("p answer") == "42\n"
    where = shell.pdb("bt")
    assert re.search(r"debug_app\.py\(\d+\)index\(\)\n-> return function\(\)", where), where
    assert re.search(r"^> .*debug_app\.py\(\d+\)function\(\)", where, re.M), where
    assert re.search(r"^> .*debug_app\.py\(\d+\)index\(\)", shell.pdb("up"), re.M)
    assert shell.pdb("p request_note") == "'index is calling function'\n"
    listing = shell.pdb("l")
    assert "time.sleep(0.05)" in listing and re.search(r"->\s+return function\(\) or request_note", listing), listing
    assert re.search(r"^> .*function\(\)", shell.pdb("down"), re.M)

    # While one user is in pdb, the application serves and other sessions answer.
    assert worker.status("/ok") == 200
    assert re.search(rf"^{worker.pid}$", debugger(worker.address, "exit", "shell process", "pid"), re.M)
    assert shell.pdb("p answer + 1") == "43\n"

    assert shell.ask("q") == ""  # straight back to (debugger:PID)
    assert re.search(r"^debug_app:function\s+function\s+1\s+yes$", shell.ask("list"), re.M)


def test_remove_and_reset_put_the_flask_apps_function_back(worker):
    check = [
        "exit",
        "shell python",
        "console",
        "import debug_app",
        "f, o = debug_app.function, debug_app.ORIGINAL_FUNCTION",
        "print('{}:', f is o, getattr(f, '__wrapped__', None) is o)",
        "exit()",
        "exit",
        "shell debugger",
    ]

    def step(name: str, *commands: str) -> str:
        lines = [c.replace("{}", name) for c in check]
        return debugger(worker.address, *commands, *lines)

    assert "probed: False True" in step("probed", "insert debug_app:function")
    assert worker.status("/") == 500
    assert "removed: True False" in step("removed", "remove debug_app:function")
    assert worker.status("/") == 500
    out = step("reinserted", "insert debug_app:function")
    assert "reinserted: False True" in out, out
    assert "reset: True False" in step("reset", "reset")


# ---------------------------------------------------------------------------
# Probe kinds

KINDS = [
    # target, kind, call, the callable as seen, the original function, RAISED key
    ("function", "function", "t.function(1, y=2)", "t.function", "t.ORIGINAL['function']", "function"),
    ("Kinds.method", "method", "t.Kinds().method(5)", "t.Kinds.method", "t.ORIGINAL['method']", "method"),
    ("Kinds.static", "static method", "t.Kinds().static(5)", "t.Kinds.static", "t.ORIGINAL['static'].__func__", "static"),
    ("Kinds.klass", "class method", "t.Child.klass(5)", "t.Kinds.klass.__func__", "t.ORIGINAL['klass'].__func__", "klass"),
    (
        "Kinds.Inner.Deeper.method",
        "method",
        "t.Kinds.Inner.Deeper().method()",
        "t.Kinds.Inner.Deeper.method",
        "t.ORIGINAL['nested']",
        "nested",
    ),
    ("generator", "generator function", "list(t.generator(3))", "t.generator", "t.ORIGINAL['generator']", "generator"),
    ("coroutine", "coroutine function", "asyncio.run(t.coroutine(3))", "t.coroutine", "t.ORIGINAL['coroutine']", "coroutine"),
]


@pytest.mark.parametrize("target, kind, call, seen, original, key", KINDS, ids=[k[0] for k in KINDS])
def test_probe_catches_and_reraises_and_is_removed_exactly(
    write_config, start_host, shells, target, kind, call, seen, original, key
):
    host = start_host(debugger_config(write_config))
    shell = debugger_shell(shells, host.address)
    name = f"{T}:{target}"
    assert shell.ask(f"insert {name}") == f"Probe inserted on {name} ({kind}).\n"

    # The probe is the original to its callers: name, docstring, signature.
    assert host.eval(f"{seen} is not {original}") == "True"
    assert host.eval(f"{seen}.__wrapped__ is {original}") == "True"
    same = "(s.__name__, s.__qualname__, s.__doc__, str(inspect.signature(s)))"
    assert host.eval(f"(lambda s: {same})({seen})") == host.eval(f"(lambda s: {same})({original})")

    # The caller gets the very exception that was raised.
    assert host.eval(f"catch(lambda: {call}) is t.RAISED[{key!r}]") == "True"
    listed = shell.ask("tracebacks")
    assert re.search(rf"^{re.escape(name)}\s.*RuntimeError: {key} failed", listed, re.M), listed
    printed = shell.ask(f"print {name}")
    assert re.search(r"in _raise\n\s+raise error\nRuntimeError: ", printed), printed

    assert shell.ask(f"remove {name}") == f"Probe removed from {name}; the original {kind} is back.\n"
    owner, _, attribute = f"t.{target}".rpartition(".")
    assert host.eval(f"vars({owner})[{attribute!r}] is t.ORIGINAL[{key!r}]") == "True"
    # Still captured after the probe went; a new failure is not.
    assert host.eval(f"type(catch(lambda: {call})).__name__") == "'RuntimeError'"
    assert re.search(r"^\S+\s+\S+ \S+\s+MainThread\s+RuntimeError", shell.ask("tracebacks"), re.M)
    assert shell.ask("list").startswith("No probes.")


def test_recursive_probe_captures_once_at_the_innermost_call(write_config, start_host, shells):
    host = start_host(debugger_config(write_config))
    shell = debugger_shell(shells, host.address)
    shell.ask(f"insert {T}:recursive")
    assert host.exec("t.recursive(30)") == "ERROR RuntimeError: recursion bottomed out"
    assert re.search(rf"^{T}:recursive\s+function\s+1\s+yes$", shell.ask("list"), re.M)
    printed = shell.ask(f"print {T}:recursive")
    # All 31 calls, the probe's own frames left out.
    assert printed.count(", in recursive\n") == 4, printed
    assert "[Previous line repeated 27 more times]" in printed, printed
    assert "probe_wrapper" not in printed, printed
    shell.pdb(f"debug {T}:recursive")
    shell.pdb("up")
    assert shell.pdb("p n") == "0\n"
    assert shell.ask("q") == ""


def test_probe_on_a_builtin_in_a_class_does_not_bind(write_config, start_host, shells):
    host = start_host(debugger_config(write_config))
    shell = debugger_shell(shells, host.address)
    assert shell.ask(f"insert {T}:Kinds.builtin") == f"Probe inserted on {T}:Kinds.builtin (built-in function).\n"
    assert host.eval("t.Kinds().builtin([1, 2, 3])") == "3"
    assert host.eval("type(catch(lambda: t.Kinds().builtin(5))).__name__") == "'TypeError'"
    assert "TypeError: object of type 'int' has no len()" in shell.ask("tracebacks")
    shell.ask(f"remove {T}:Kinds.builtin")
    assert host.eval("vars(t.Kinds)['builtin'] is len") == "True"


def test_reset_removes_every_probe_and_traceback(write_config, start_host, shells):
    host = start_host(debugger_config(write_config))
    shell = debugger_shell(shells, host.address)
    names = ["function", "Kinds.method", "Kinds.static", "Kinds.klass", "Kinds.Inner.Deeper.method"]
    for name in names:
        assert "Probe inserted" in shell.ask(f"insert {T}:{name}")
    host.exec("t.function(1)")
    assert shell.ask("reset") == "Removed 5 probes; no tracebacks held.\n"
    for key, owner, attribute in [
        ("function", "t", "function"),
        ("method", "t.Kinds", "method"),
        ("static", "t.Kinds", "static"),
        ("klass", "t.Kinds", "klass"),
        ("nested", "t.Kinds.Inner.Deeper", "method"),
    ]:
        assert host.eval(f"vars({owner})[{attribute!r}] is t.ORIGINAL[{key!r}]") == "True", key
    assert shell.ask("tracebacks") == "No tracebacks captured.\n"
    assert shell.ask("list").startswith("No probes.")


def test_probes_are_shared_by_every_session(write_config, start_host, shells):
    host = start_host(debugger_config(write_config))
    first, second = debugger_shell(shells, host.address), debugger_shell(shells, host.address)
    first.ask(f"insert {T}:function")
    assert re.search(rf"^{T}:function\s+function\s+0\s+no$", second.ask("list"), re.M)
    host.exec("t.function(1)")
    assert "RuntimeError: function failed on 4" in second.ask("tracebacks")
    assert second.ask(f"remove {T}:function").startswith("Probe removed")
    assert first.ask("list").startswith("No probes.")


# ---------------------------------------------------------------------------
# What the user is told when something cannot be done

FAILURES = [
    ("usage", [], "insert", "*** Usage: insert MODULE:FUNCTION, or insert MODULE:Class.method"),
    ("no colon", [], f"insert {T}.function", f"*** '{T}.function' is not MODULE:FUNCTION or MODULE:Class.method: a ':' separates"),
    ("bad module name", [], "insert 1abc:f", "*** '1abc' (before the ':') is not a module name."),
    ("bad path", [], f"insert {T}:a..b", "*** 'a..b' (after the ':') is not a name or a dotted path."),
    (
        "not importable",
        [],
        "insert no_such_module_for_ispyd:f",
        "*** Cannot import module 'no_such_module_for_ispyd': ModuleNotFoundError: No module named 'no_such_module_for_ispyd'",
    ),
    ("missing function", [], f"insert {T}:nope", f"*** Module '{T}' has no attribute 'nope'."),
    (
        "missing class",
        [],
        f"insert {T}:Nope.method",
        f"*** Module '{T}' has no attribute 'Nope' (looking for '{T}:Nope.method').",
    ),
    (
        "missing nested class",
        [],
        f"insert {T}:Kinds.Nope.method",
        f"*** '{T}:Kinds' has no attribute 'Nope' (looking for '{T}:Kinds.Nope.method').",
    ),
    ("missing method", [], f"insert {T}:Kinds.nope", f"*** '{T}:Kinds' has no attribute 'nope'."),
    ("not callable", [], f"insert {T}:VALUE", f"*** '{T}:VALUE' is an int, not a function or method: nothing to probe."),
    ("a class", [], f"insert {T}:Kinds", f"*** '{T}:Kinds' is a class: probe one of its methods instead"),
    ("a property", [], f"insert {T}:Kinds.prop", f"*** '{T}:Kinds.prop' is a property, not a function or method"),
    (
        "inherited",
        [],
        f"insert {T}:Child.method",
        f"*** '{T}:Child.method' is inherited from {T}:Kinds: probe '{T}:Kinds.method' instead",
    ),
    ("ispyd itself", [], "insert ispyd.console:banner", "*** ispyd's own code cannot be probed."),
    (
        "already exists",
        [f"insert {T}:function"],
        f"insert {T}:function",
        f"*** A probe on '{T}:function' already exists; 'remove {T}:function' first",
    ),
    ("no such probe", [f"insert {T}:function"], "remove nope", f"*** No probe named 'nope'. Probes: {T}:function."),
    (
        "no traceback yet",
        [f"insert {T}:function"],
        f"print {T}:function",
        f"*** No traceback captured by '{T}:function': it has caught no exception",
    ),
    ("debug unknown", [], "debug nope", "*** No probe or traceback named 'nope'. Tracebacks held: none."),
    ("discard unknown", [], "discard nope", "*** No traceback captured by 'nope'. Tracebacks held: none."),
]


@pytest.mark.parametrize("setup, command, message", [f[1:] for f in FAILURES], ids=[f[0] for f in FAILURES])
def test_failure_is_explained(write_config, start_host, shells, setup, command, message):
    host = start_host(debugger_config(write_config))
    shell = debugger_shell(shells, host.address)
    for line in setup:
        shell.ask(line)
    reply = shell.ask(command)
    assert reply.startswith(message), reply
    assert reply.count("\n") == 1, reply
    # Nothing was changed.
    assert host.eval("t.function is t.ORIGINAL['function']") == ("False" if setup else "True")


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("max_tracebacks", "lots", "[debugger] max_tracebacks: 'lots' is not a whole number from 1 to 100000"),
        ("max_tracebacks", "-5", "[debugger] max_tracebacks: '-5' is not a whole number from 1 to 100000"),
        ("command_timeout", "1e9", "[debugger] command_timeout: '1e9' is not a number of seconds above 0 (at most a year)"),
        ("command_timeout", "x" * 100_000, "[debugger] command_timeout: 'xxxx"),
    ],
)
def test_a_bad_debugger_value_is_one_configuration_error_line(write_config, key, value, message):
    path = debugger_config(write_config, **{key: value})
    text = refused_configuration(path)
    assert text.startswith(f"ispyd: {path}: {message}"), text
    assert "Traceback" not in text, text


# ---------------------------------------------------------------------------
# Bounded capture


def test_each_probe_keeps_only_its_last_exception(write_config, start_host, shells):
    host = start_host(debugger_config(write_config))
    shell = debugger_shell(shells, host.address)
    shell.ask(f"insert {T}:other")
    host.exec("t.other(1)")
    host.exec("t.other(2)")
    listed = shell.ask("tracebacks")
    assert re.findall(r"RuntimeError: other failed \d", listed) == ["RuntimeError: other failed 2"], listed
    assert re.search(rf"^{T}:other\s+function\s+2\s+yes$", shell.ask("list"), re.M)


def test_at_most_max_tracebacks_probes_hold_one_oldest_dropped_first(write_config, start_host, shells):
    host = start_host(debugger_config(write_config, max_tracebacks=3))
    shell = debugger_shell(shells, host.address)
    for n in range(5):
        shell.ask(f"insert {T}:many_{n}")
    for n in range(5):
        host.exec(f"t.many_{n}()")
    listed = shell.ask("tracebacks")
    assert re.findall(r"^debug_targets:(many_\d)\s", listed, re.M) == ["many_2", "many_3", "many_4"], listed
    assert "(2 older tracebacks were dropped: max_tracebacks = 3)" in listed, listed
    assert shell.ask(f"print {T}:many_0").startswith(f"*** No traceback captured by '{T}:many_0'")
    held = re.findall(r"^debug_targets:(many_\d)\s+function\s+1\s+(yes|no)$", shell.ask("list"), re.M)
    assert held == [("many_0", "no"), ("many_1", "no"), ("many_2", "yes"), ("many_3", "yes"), ("many_4", "yes")]

    host.exec("t.many_0()")
    listed = shell.ask("tracebacks")
    assert re.findall(r"^debug_targets:(many_\d)\s", listed, re.M) == ["many_3", "many_4", "many_0"], listed


def test_discard_drops_a_traceback_and_keeps_the_probe(write_config, start_host, shells):
    host = start_host(debugger_config(write_config))
    shell = debugger_shell(shells, host.address)
    failed_function(host, shell)
    assert shell.ask(f"discard {T}:function") == f"Discarded the traceback of {T}:function.\n"
    assert shell.ask("tracebacks") == "No tracebacks captured.\n"
    assert shell.ask(f"debug {T}:function").startswith(f"*** No traceback captured by '{T}:function'")
    assert re.search(rf"^{T}:function\s+function\s+1\s+no$", shell.ask("list"), re.M)


# ---------------------------------------------------------------------------
# pdb over the connection


def test_pdb_in_text_mode_with_nc(write_config, start_host, shells):
    host = start_host(debugger_config(write_config))
    failed_function(host, debugger_shell(shells, host.address))
    script = f"shell debugger\ndebug {T}:function\nup\np doubled\nq\nlist\n"
    done = subprocess.run(["nc", "-N", "-U", host.address], input=script, capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 0, done
    prompt = f"(debugger:{pid_of(host)}) "
    out = done.stdout
    assert f"{prompt}Post-mortem of RuntimeError: function failed on 4" in out, out
    assert re.search(r"-> raise error\n\(Pdb\) > .*helper\(\)\n-> _raise\(.*\n\(Pdb\) 4\n\(Pdb\) ", out), out
    assert f"(Pdb) {prompt}PROBE" in out, out


def test_pdb_in_framed_mode_with_piped_ispy(write_config, start_host, shells):
    host = start_host(debugger_config(write_config))
    failed_function(host, debugger_shell(shells, host.address))
    out = debugger(host.address, f"debug {T}:function", "p error", "up", "p doubled, x", "q", "tracebacks")
    assert "RuntimeError('function failed on 4')\n" in out, out
    assert "(4, 2)\n" in out, out
    assert re.search(rf"^{T}:function\s", out, re.M), out


def debug_on_a_terminal(term) -> None:
    """In the debugger's shell on a terminal: post-mortem pdb on the
    traceback that ``failed_function`` captured."""
    term.keys(f"debug {T}:function", "Enter")
    term.wait_last_line("(Pdb)")


def test_pdb_prompt_reaches_ispys_line_editor_and_ctrl_d_leaves(write_config, start_host, shells, terminal, workdir):
    host = start_host(debugger_config(write_config))
    failed_function(host, debugger_shell(shells, host.address))
    pid = pid_of(host)
    # A socket named on a terminal is connected to at once.
    term = open_shell(terminal, workdir, host.address, pid, "debugger")
    debug_on_a_terminal(term)
    term.keys("u", "Enter")  # ("up" would be tmux's Up arrow key)
    term.wait_last_line("(Pdb)")
    term.keys("p doubled * 10", "Enter")
    term.wait_last_line("(Pdb)")
    assert "\n40\n(Pdb)" in term.screen(), term.screen()
    term.keys("C-d")
    term.wait_last_line(f"(debugger:{pid})")


def test_two_sessions_in_pdb_each_get_their_own_output(write_config, start_host, shells):
    host = start_host(debugger_config(write_config))
    first, second = debugger_shell(shells, host.address), debugger_shell(shells, host.address)
    failed_function(host, first)
    first.pdb(f"debug {T}:function")
    second.pdb(f"debug {T}:function")
    assert first.pdb("u").startswith("> ")
    assert first.pdb("!print('first sees', doubled)") == "first sees 4\n"
    assert second.pdb("!import sys; print('second sees', error, file=sys.stderr)") == "second sees function failed on 4\n"
    assert "nothing to continue" in first.ask("c")
    assert second.ask("q") == ""
    # Nothing reached the application's own streams, which still work.
    host.exec("print('app output')")
    assert "app output" in host.stdout.snapshot()
    assert "sees" not in host.stdout.text() + host.stderr.text()


def test_runaway_pdb_command_is_interrupted_and_pdb_goes_on(write_config, start_host, shells):
    host = start_host(debugger_config(write_config, command_timeout=0.5))
    shell = debugger_shell(shells, host.address)
    failed_function(host, shell)
    shell.pdb(f"debug {T}:function")
    out = shell.pdb("!while True: pass")
    assert "*** KeyboardInterrupt" in out, out
    assert "ran longer than command_timeout (0.5 s): interrupted it" in out, out
    assert shell.pdb("p 6 * 7") == "42\n"
    assert shell.ask("q") == ""


def test_uninterruptible_pdb_command_gives_the_shell_back_and_its_pdb_ends_later(write_config, start_host, shells):
    host = start_host(debugger_config(write_config, command_timeout=0.2))
    shell = debugger_shell(shells, host.address)
    failed_function(host, shell)
    shell.pdb(f"debug {T}:function")
    # Event.wait() blocks in C: no Python instruction runs to be interrupted.
    out = shell.ask("!GATE.wait()")
    assert "cannot be interrupted" in out and "Left the debugger" in out, out
    assert host.pdb_threads() == "['ispyd-pdb']"
    assert shell.ask("list").startswith("PROBE")  # the shell is back
    host.exec("t.GATE.set()")
    wait_until(lambda: host.pdb_threads() == "[]", "the abandoned pdb's thread to end")


def test_pdb_abandoned_by_call_timeout_ends(write_config, start_host, shells):
    host = start_host(debugger_config(write_config, call_timeout=1, command_timeout=3))
    shell = debugger_shell(shells, host.address)
    failed_function(host, shell)
    shell.pdb(f"debug {T}:function")
    out = shell.ask("!while True: pass")
    assert "The line did not finish within 1 s" in out, out

    # Ends by itself: no call through ispyd is needed to release it.
    wait_until(lambda: host.pdb_threads() == "[]", "the abandoned pdb's thread to end")


def test_pdb_of_a_client_that_left_ends(write_config, start_host, shells):
    host = start_host(debugger_config(write_config))
    shell = debugger_shell(shells, host.address)
    failed_function(host, shell)
    shell.pdb(f"debug {T}:function")
    assert host.pdb_threads() == "['ispyd-pdb']"
    shell.close()
    # Ends with its session: no other session has to enter Python first.
    wait_until(lambda: host.pdb_threads() == "[]", "the pdb of the client that left to end")


def test_a_pdb_left_is_freed(write_config, start_host, shells):
    # Nothing ispyd holds (the takeover, its interrupter) keeps a pdb alive
    # once it is left.
    host = start_host(debugger_config(write_config))
    shell = debugger_shell(shells, host.address)
    failed_function(host, shell)
    alive = "sum(type(o).__name__ == 'DebugSession' for o in __import__('gc').get_objects())"
    # Left by q, then by a client that went away.
    for round in range(2):
        shell.pdb(f"debug {T}:function")
        assert host.eval(alive) == "1"
        if round == 0:
            assert shell.ask("q") == ""
        else:
            shell.close()
            shell = debugger_shell(shells, host.address)
        wait_until(lambda: host.eval(alive) == "0", f"the pdb left in round {round} to be freed")


def test_stepping_post_mortem_says_why_it_cannot_and_pdb_goes_on(write_config, start_host, shells):
    host = start_host(debugger_config(write_config))
    shell = debugger_shell(shells, host.address)
    failed_function(host, shell)
    shell.pdb(f"debug {T}:function")
    for command in ("n", "s", "next", "until", "r", "j 3"):
        out = shell.pdb(command)
        assert "cannot run here: this is a post-mortem" in out, (command, out)
    assert shell.pdb("p 6 * 7") == "42\n", "still in pdb"
    help_text = shell.pdb("help")
    assert "next, step, until, return and jump have nothing to step" in help_text, help_text
    # continue leaves, and says so.
    assert "nothing to continue" in shell.ask("c")


def test_a_flask_view_is_probed_in_its_app_too(write_config, start_host, shells):
    host = start_host(debugger_config(write_config))
    shell = debugger_shell(shells, host.address)
    reply = shell.ask("insert flask_views:fail")
    assert "Probe inserted on flask_views:fail (function)." in reply, reply
    assert "Also probed in Flask app 'flask_views' view 'fail'" in reply, reply
    # A request through Flask reaches the probe.
    assert host.exec("import flask_views") == "done"
    assert host.eval("flask_views.app.test_client().get('/fail').status_code") == "500"
    assert "flask_views:fail" in shell.ask("tracebacks")
    # remove puts the original back in the app too.
    shell.ask("remove flask_views:fail")
    assert host.eval("flask_views.app.view_functions['fail'] is flask_views.fail") == "True"


def test_tab_in_pdb_completes_commands_and_the_frames_names(write_config, start_host, shells, terminal, workdir):
    host = start_host(debugger_config(write_config))
    failed_function(host, debugger_shell(shells, host.address))
    pid = pid_of(host)
    term = open_shell(terminal, workdir, host.address, pid, "debugger")
    debug_on_a_terminal(term)
    term.keys("u", "Enter")
    term.wait_last_line("(Pdb)")
    term.keys("p doub", "Tab")
    term.wait_last_line("(Pdb) p doubled")
    term.keys("Enter")
    term.wait_last_line("(Pdb)")
    assert "\n4\n(Pdb)" in term.screen(), term.screen()
    term.keys("wher", "Tab")
    term.wait_last_line("(Pdb) where")


def test_tab_after_insert_completes_module_and_function(write_config, start_host, shells, terminal, workdir):
    host = start_host(debugger_config(write_config))
    assert host.exec(f"import {T}") == "done"
    pid = pid_of(host)
    term = open_shell(terminal, workdir, host.address, pid, "debugger")
    term.keys(f"insert {T[:-2]}", "Tab")
    term.wait_last_line(f"(debugger:{pid}) insert {T}:")
    term.keys("functi", "Tab")
    term.wait_last_line(f"(debugger:{pid}) insert {T}:function")
    term.keys("Enter")
    term.wait_last_line(f"(debugger:{pid})")
    assert f"Probe inserted on {T}:function (function)." in term.screen(), term.screen()
    term.keys(f"remove {T[:3]}", "Tab")
    term.wait_last_line(f"(debugger:{pid}) remove {T}:function")
