"""Fixtures for the ispyd package's tests: real processes, real sockets and
the real ``ispy`` command.

Every wait is bounded by ``WAIT`` seconds and fails with a message saying
what did not happen; no assertion depends on how long anything took. Every
process a test starts runs in a session of its own and its whole process
group is killed when the test ends, whatever the outcome.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence

import pytest

#: The longest any single wait in a test may take.
WAIT = 20.0

TESTS = Path(__file__).resolve().parent
APPS = TESTS / "apps"


def wait_until(predicate: Callable[[], object], what: str, timeout: float = WAIT) -> object:
    """Polls ``predicate`` until it returns something true, and returns that;
    fails the test naming ``what`` once ``timeout`` has passed."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"gave up after {timeout} s waiting for {what}")
        time.sleep(0.02)


def installed_command(name: str, install: str) -> str:
    """The command ``name`` that pip installed beside this interpreter (the
    venv's), else the one on PATH; fails the test saying how to ``install``
    it when there is none."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"the {name} command is not installed ({install})")
    return found


def ispy_command() -> str:
    """The installed ``ispy``."""
    return installed_command("ispy", "pip install ./python-binding")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def child_env(**extra: str) -> dict:
    """The environment for an app: the test apps and plugins importable,
    unbuffered output."""
    env = dict(os.environ)
    # These start ispyd in every Python process that has them: only a test
    # that means to passes them on.
    env.pop("ISPYD_CONFIG", None)
    env.pop("ISPYD_WSGI", None)
    env["PYTHONPATH"] = os.pathsep.join([str(APPS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def is_listening(path: Path) -> bool:
    """Whether a process accepts connections on the UNIX socket ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(WAIT)
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def wait_for_socket(path: Path) -> Path:
    """Waits until something listens on the UNIX socket ``path``."""
    wait_until(lambda: path.exists() and is_listening(path), f"a listener on {path}")
    return path


def kill_group(proc: subprocess.Popen) -> None:
    """Kills ``proc`` and every process of its group, then reaps ``proc``."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=WAIT)
    except subprocess.TimeoutExpired:
        pass


class Lines:
    """Collects the lines a process writes to one pipe, on a thread, so a
    test can wait for a line without ever blocking on the pipe."""

    def __init__(self, stream) -> None:
        self.lines: List[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            with self._lock:
                self.lines.append(line.rstrip("\n"))
        stream.close()

    def snapshot(self) -> List[str]:
        with self._lock:
            return list(self.lines)

    def text(self) -> str:
        return "\n".join(self.snapshot())

    def find(self, pattern: str) -> Optional[re.Match]:
        """The first line matching the regular expression ``pattern``."""
        for line in self.snapshot():
            match = re.search(pattern, line)
            if match:
                return match
        return None

    def wait_for(self, pattern: str, what: str = "") -> re.Match:
        return wait_until(lambda: self.find(pattern), what or f"a line matching {pattern!r}")

    def finish(self) -> None:
        """Waits for the end of the stream (the process closed it)."""
        self._thread.join(WAIT)


class Process:
    """A process under test, in its own process group, with its output
    collected line by line and its stdin open for commands."""

    def __init__(self, argv: Sequence[str], cwd: Path, env: dict) -> None:
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.pid = self.proc.pid
        self.stdout = Lines(self.proc.stdout)
        self.stderr = Lines(self.proc.stderr)

    def send(self, command: str) -> None:
        """Writes one command line to the process's stdin."""
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        self.proc.stdin.close()

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self) -> int:
        """Waits for the process to exit; returns its status."""
        try:
            return self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"{self.argv} did not exit within {WAIT} s\n"
                f"stdout:\n{self.stdout.text()}\nstderr:\n{self.stderr.text()}"
            )

    def output(self) -> str:
        """Everything the process wrote, for failure messages."""
        return f"stdout:\n{self.stdout.text()}\nstderr:\n{self.stderr.text()}"

    def kill(self) -> None:
        if self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        kill_group(self.proc)


class App(Process):
    """``tests/apps/host.py``: a Python program that embeds a ShellManager
    and takes commands on stdin (see that file)."""

    def __init__(self, config: Path, cwd: Path, env: dict, args: Sequence[str] = ()) -> None:
        super().__init__([sys.executable, str(APPS / "host.py"), str(config), *args], cwd, env)
        self.address = ""

    def wait_ready(self) -> "App":
        """Waits for the app's ``READY PID ADDRESS`` line."""
        match = wait_until(
            lambda: self.stdout.find(r"^READY (\d+) (.*)$") or self.proc.poll() is not None,
            "the app's READY line",
        )
        if not isinstance(match, re.Match):
            pytest.fail(f"the app exited with status {self.proc.returncode}\n{self.output()}")
        self.address = match.group(2)
        return self

    def socket(self) -> Path:
        return Path(self.address)

    def command(self, command: str, reply: str) -> re.Match:
        """Sends ``command`` and waits for a stdout line matching ``reply``."""
        self.send(command)
        return self.stdout.wait_for(reply, f"the app's answer to {command!r} ({reply!r})")


@dataclass
class Result:
    stdout: str
    stderr: str
    code: int


#: Where ``run_ispy`` runs ispy, so that the files commands send (a
#: profile's flame graph) land in no checkout.
ISPY_CWD = tempfile.mkdtemp(prefix="ispy-cwd-")
atexit.register(shutil.rmtree, ISPY_CWD, True)


def run_ispy(target: object, commands: Sequence[str] | str, timeout: float = WAIT, *options: str) -> Result:
    """Runs the installed ``ispy TARGET`` with ``commands`` piped to it, one
    a line, and returns what it printed and its exit status."""
    text = commands if isinstance(commands, str) else "".join(c + "\n" for c in commands)
    try:
        done = subprocess.run(
            [ispy_command(), *options, str(target)],
            cwd=ISPY_CWD,
            input=text,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"ispy {target} did not finish within {timeout} s; it printed:\n{err.stdout!r}\n{err.stderr!r}")
    return Result(done.stdout, done.stderr, done.returncode)


SERVER_LINE = re.compile(r"^\s*(\d+): pid (\d+)\s+(\S+)")


def servers(config: Path) -> dict:
    """``ispy CONFIG`` piped ``servers``: {pid: socket path} of the servers
    it offers."""
    result = run_ispy(config, ["servers"])
    assert result.code == 0, result
    found = {}
    for line in result.stdout.splitlines():
        match = SERVER_LINE.match(line)
        if match and "stale" not in line:
            found[int(match.group(2))] = Path(match.group(3))
    return found


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A fresh directory under /tmp (mode 0755: no other user may write in
    it, as ispyd requires), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="ispyd-t-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def write_config(workdir: Path) -> Callable[..., Path]:
    """Writes an ini file into the work directory and returns its path.

    ``write_config(text)`` writes ``text`` as it is;
    ``write_config(console=True, plugins=..., call_timeout=...)`` writes a
    configuration listening on ``WORKDIR/ispyd-%(pid)s.sock``."""

    def write(text: Optional[str] = None, name: str = "ispyd.ini", **options: object) -> Path:
        if text is None:
            text = config_text(workdir, **options)
        text = with_engine(text)
        path = workdir / name
        path.write_text(text)
        return path

    return write


#: The engine every configuration the tests write asks for: the suite runs
#: once per engine (see test.sh).
ENGINE = os.environ.get("ISPYD_TEST_ENGINE", "threads")


def with_engine(text: str) -> str:
    """``text`` with ``engine = ENGINE`` in its ``[ispyd]`` section, unless
    the text chooses an engine itself."""
    if "engine =" in text or "[ispyd]\n" not in text:
        return text
    return text.replace("[ispyd]\n", f"[ispyd]\nengine = {ENGINE}\n", 1)


def config_text(
    workdir: Path,
    console: bool = False,
    plugins: Optional[str] = None,
    extra: str = "",
    **ispyd: object,
) -> str:
    lines = ["[ispyd]", f"listen = {workdir}/ispyd-%(pid)s.sock"]
    if plugins is not None:
        lines.append(f"plugins = {plugins}")
    lines += [f"{key} = {value}" for key, value in ispyd.items()]
    if console:
        lines += ["", "[python:console]", "enabled = true"]
    return "\n".join(lines) + "\n" + extra


@pytest.fixture
def processes() -> Iterator[List[Process]]:
    """Processes to kill (with their groups) when the test ends."""
    started: List[Process] = []
    yield started
    for process in started:
        process.kill()


@pytest.fixture
def start_app(workdir: Path, processes: List[Process]) -> Callable[..., App]:
    """Starts ``tests/apps/host.py CONFIG [ARGS]`` and waits until it listens."""

    def start(config: Path, *args: str, **env: str) -> App:
        app = App(config, workdir, child_env(**env), args)
        processes.append(app)
        return app.wait_ready()

    return start


@pytest.fixture
def spawn(workdir: Path, processes: List[Process]) -> Callable[..., Process]:
    """Starts any command (e.g. gunicorn) as a process under test."""

    def start(argv: Sequence[str], **env: str) -> Process:
        process = Process(argv, workdir, child_env(**env))
        processes.append(process)
        return process

    return start


class Terminal:
    """A private tmux server running one command in a 100x30 window."""

    def __init__(self, command: str, cwd: Path) -> None:
        self.socket = f"ispyd-py-{uuid.uuid4().hex[:8]}"
        subprocess.run(
            ["tmux", "-L", self.socket, "new-session", "-d", "-s", "t", "-x", "100", "-y", "30", command],
            cwd=cwd,
            check=True,
        )
        self._before: Optional[str] = None

    def keys(self, *keys: str) -> None:
        """Types ``keys``; the next ``wait_last_line`` waits for the screen
        to change from what it shows now, so the prompt the keys were typed
        at is never taken for the answer to them."""
        self._before = self.screen()
        subprocess.run(["tmux", "-L", self.socket, "send-keys", "-t", "t", *keys], check=True)

    def screen(self) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, "capture-pane", "-p", "-t", "t"],
            capture_output=True,
            text=True,
        ).stdout

    def last_line(self) -> str:
        lines = [line for line in self.screen().splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def wait_last_line(self, expected: str) -> None:
        deadline = time.monotonic() + WAIT
        while True:
            screen = self.screen()
            lines = [line for line in screen.splitlines() if line.strip()]
            if screen != self._before and lines and lines[-1] == expected:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"waited for the line {expected!r}; the screen:\n{self.screen()}")
            time.sleep(0.02)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], stderr=subprocess.DEVNULL)


@pytest.fixture
def terminal(workdir: Path):
    made = []

    def start(command: str) -> Terminal:
        made.append(Terminal(command, workdir))
        return made[-1]

    yield start
    for term in made:
        term.close()


def open_shell(terminal: Callable[[str], Terminal], workdir: Path, address: object, pid: object, shell: str) -> Terminal:
    """The installed ``ispy`` on a terminal, connected at once to the
    socket ``address`` of process ``pid`` (as a socket named on a terminal
    is), in the plugin shell ``shell``."""
    term = terminal(f"ISPY_HISTORY={workdir / 'history'} exec {ispy_command()} {address}")
    term.wait_last_line(f"(ispyd:{pid})")
    term.keys(f"shell {shell}", "Enter")
    term.wait_last_line(f"({shell}:{pid})")
    return term


class ConsoleClient:
    """An installed ``ispy`` driven through a pipe, inside the python
    plugin's console of the process at ``address``; ``setup`` lines run in
    the console before it is ready."""

    def __init__(self, address: str, *setup: str) -> None:
        self.proc = subprocess.Popen(
            [ispy_command(), address],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out = Lines(self.proc.stdout)
        self.err = Lines(self.proc.stderr)
        self.send("connect", "shell python", "console", *setup, "print('console ready')")
        self.out.wait_for(r"^console ready$", "the client to be in the console")

    def send(self, *lines: str) -> None:
        self.proc.stdin.write("".join(line + "\n" for line in lines))
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=WAIT)


def refused_configuration(path: Path) -> str:
    """The one-line error ``ShellManager(path)`` refuses to start with, once
    checked to be one short line that left no socket behind."""
    import ispyd
    from ispyd.manager import ShellManager

    with pytest.raises(ispyd.ConfigurationError) as raised:
        ShellManager(path)
    text = str(raised.value)
    assert "\n" not in text and len(text) < 600, text
    assert not list(path.parent.glob("*.sock")), "nothing listens"
    return text
