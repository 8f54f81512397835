"""ispyd inside a real Flask application served by a real uWSGI (installed
by ``test.sh``) with a master and 3 worker processes, inspected with the
installed ``ispy``.

- with ``--lazy-apps`` every worker imports the app after uWSGI forked it,
  and creates its own ShellManager; the master has none.
- without it (uWSGI's default) the master imports the app, starting its
  shell, and forks the workers from C: Python's at-fork hooks never run in
  them. Each worker gets its listener from uWSGI's post-fork hook instead,
  and the master keeps its own; the application's own post-fork hooks
  (``tests/apps/uwsgi_app.py``) still run.

Stopping uWSGI leaves no socket file behind, and no process panics on its
way out.
"""

from __future__ import annotations

import os
import re
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import List, Optional, Sequence, Set

import pytest

from conftest import APPS, WAIT, Process, free_port, installed_command, run_ispy, servers, wait_for_socket, wait_until

WORKERS = 3


class UWSGI:
    """A running uWSGI: its master, its workers and the app's port."""

    def __init__(self, process: Process, lazy: bool, config: Path, workdir: Path, port: int) -> None:
        self.process = process
        self.lazy = lazy
        self.config = config
        self.workdir = workdir
        self.url = f"http://127.0.0.1:{port}"
        self.master = int(process.stderr.wait_for(r"spawned uWSGI master process \(pid: (\d+)\)", "the uWSGI master").group(1))
        wait_until(lambda: len(self.workers()) >= WORKERS, f"{WORKERS} uWSGI workers to start")
        for pid in self.shell_pids():
            wait_for_socket(workdir / f"ispyd-{pid}.sock")

    def workers(self) -> List[int]:
        """The live workers' pids: the last ones uWSGI has logged starting."""
        started = re.findall(
            r"(?:spawned uWSGI worker \d+ \(pid|Respawned uWSGI worker \d+ \(new pid): (\d+)",
            self.process.stderr.text(),
        )
        return [int(pid) for pid in started[-WORKERS:]]

    def sockets(self) -> Set[int]:
        return {int(path.stem.split("-")[1]) for path in self.workdir.glob("ispyd-*.sock")}

    def shell_pids(self) -> List[int]:
        return self.workers() + ([] if self.lazy else [self.master])

    def get(self, path: str = "/") -> str:
        with urllib.request.urlopen(self.url + path, timeout=WAIT) as response:
            return response.read().decode()


@pytest.fixture
def start_uwsgi(write_config, spawn, workdir):
    """Starts uWSGI with 3 workers serving ``uwsgi_app`` (``--lazy-apps`` or
    not) and waits until every process that should have a shell listens."""

    def start(lazy: bool, config: Optional[Path] = None, module: str = "uwsgi_app:app", extra: Sequence[str] = ()) -> UWSGI:
        config = config or write_config(console=True)
        port = free_port()
        argv = [
            installed_command("uwsgi", "test.sh installs it: pip install uwsgi"),
            "--master",
            "--processes", str(WORKERS),
            "--threads", "2",
            "--http", f"127.0.0.1:{port}",
            "--chdir", str(APPS),
            "--module", module,
            "--die-on-term",
            *extra,
        ]
        if lazy:
            argv.append("--lazy-apps")
        process = spawn(argv, APP_ISPYD_CONFIG=str(config))
        return UWSGI(process, lazy, config, workdir, port)

    return start


@pytest.fixture(params=[False, True], ids=["default-fork", "lazy-apps"])
def uwsgi(request, start_uwsgi) -> UWSGI:
    return start_uwsgi(request.param)


def test_every_worker_listens_and_its_shell_is_that_worker(uwsgi):
    expected = set(uwsgi.shell_pids())
    wait_until(lambda: set(servers(uwsgi.config)) == expected, f"ispy servers to list exactly {sorted(expected)}")
    if not uwsgi.lazy:
        # The master's own shell is not mistaken for a worker's.
        listing = run_ispy(uwsgi.config, ["servers"]).stdout
        assert re.search(rf"^\d+: pid {uwsgi.master} .*  master of {WORKERS} workers$", listing, re.M), listing
        for pid in uwsgi.workers():
            assert re.search(rf"^\d+: pid {pid} .*  worker of {uwsgi.master}$", listing, re.M), listing
    for pid in uwsgi.workers():
        address = uwsgi.workdir / f"ispyd-{pid}.sock"
        result = run_ispy(address, ["connect", "shell process", "pid", "exit", "shell python", "console", "import os; os.getpid()", "exit()"])
        assert result.code == 0, result
        assert re.findall(rf"^{pid}$", result.stdout, re.M) == [str(pid)] * 2, result
    # The workers still serve.
    assert uwsgi.get().startswith("hello from ")


def test_the_applications_own_post_fork_hooks_still_run(start_uwsgi):
    # Without --lazy-apps: with it, a worker's post-fork hooks run before it
    # loads the app, so there are none of the app's to run.
    uwsgi = start_uwsgi(lazy=False)
    for pid in uwsgi.workers():
        for kind in ("direct", "decorated"):
            uwsgi.process.stderr.wait_for(rf"^POSTFORK {kind} {pid}$", f"worker {pid}'s {kind} post-fork hook")


def test_reloads_leave_no_stale_socket_and_the_new_processes_listen(uwsgi):
    first = uwsgi.workers()
    # A worker reloaded gracefully (as --max-requests and --reload-on-rss
    # reload one): its socket goes, its successor's comes.
    reloaded = first[0]
    os.kill(reloaded, signal.SIGHUP)
    wait_until(lambda: reloaded not in uwsgi.workers(), f"uWSGI to respawn worker {reloaded}")
    wait_until(lambda: uwsgi.sockets() == set(uwsgi.shell_pids()), "one socket per live process with a shell")
    if uwsgi.lazy:
        # A reload sent to a --lazy-apps master (which runs no ispyd) while
        # its respawned worker still loads the app was seen to be dropped.
        successor = uwsgi.workers()[-1]
        uwsgi.process.stderr.wait_for(rf"ready in .* pid: {successor} ", f"worker {successor}'s app")
    # uwsgi --reload (SIGHUP to the master): every worker is replaced; the
    # master re-executes itself under its own pid and listens again.
    before = set(uwsgi.workers())
    uwsgi.process.signal(signal.SIGHUP)
    wait_until(lambda: not before & set(uwsgi.workers()), "uWSGI to replace every worker")
    wait_until(lambda: uwsgi.sockets() == set(uwsgi.shell_pids()), "one socket per live process with a shell")
    for pid in uwsgi.shell_pids():
        address = wait_for_socket(uwsgi.workdir / f"ispyd-{pid}.sock")
        assert run_ispy(address, ["connect", "shell process", "pid"]).stdout == f"{pid}\n"


def test_stopping_uwsgi_leaves_no_socket_and_no_panic(uwsgi):
    assert uwsgi.get().startswith("hello from ")
    uwsgi.process.signal(signal.SIGTERM)
    status = uwsgi.process.wait()
    uwsgi.process.stderr.finish()
    assert status == 0, (status, uwsgi.process.output())
    wait_until(lambda: not list(uwsgi.workdir.glob("*.sock")), "every socket file to be removed")
    output = uwsgi.process.output()
    assert "panicked" not in output and "Traceback" not in output, output


@pytest.mark.parametrize("lazy", [False, True], ids=["default-fork", "lazy-apps"])
def test_a_worker_harakiri_kills_writes_its_dump_first(start_uwsgi, write_config, lazy):
    # uWSGI sends SIGTERM first (--harakiri-graceful-timeout), then SIGKILL.
    # It sets its workers' handlers after every hook ispyd has: dump_on's go
    # back in front at the worker's first request through the wrapper.
    config = write_config(dump_on="SIGTERM")
    uwsgi = start_uwsgi(lazy, config, "uwsgi_app:wrapped", ["--harakiri", "2", "--harakiri-graceful-timeout", "2"])
    workers = set(uwsgi.workers())
    try:
        uwsgi.get("/sleep/8.0")
    except (urllib.error.URLError, ConnectionError):
        pass  # the worker serving it was killed
    pid = int(uwsgi.process.stderr.wait_for(r"^ispyd dump of pid (\d+), on SIGTERM", "the killed worker's dump").group(1))
    assert pid in workers, (pid, workers)
    uwsgi.process.stderr.wait_for(rf"^ispyd dump of pid {pid}: end$", "the end of the dump")
    dump = uwsgi.process.stderr.text().split(f"ispyd dump of pid {pid}, on SIGTERM", 1)[1]
    assert re.search(r"^  GET /sleep/8\.0  \(request \d+, ", dump, re.M), dump
    assert re.search(r'File ".*flask_app\.py", line \d+ in sleep', dump), dump
