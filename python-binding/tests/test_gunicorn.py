"""ispyd inside a real Flask application served by a real gunicorn with 3
workers, inspected with the installed ``ispy``.

Two ways of running it, each its own path through ispyd:

- without ``--preload`` every worker imports the app after gunicorn forked
  it, so each worker creates its own ShellManager; the master never imports
  the app and has no shell: 3 servers.
- with ``--preload`` the master imports the app (and starts listening)
  before it forks the workers; each worker gets its own listener from the
  at-fork hook under its own pid, and the master keeps its own: 4 servers,
  the master's and one per worker.

A worker killed with SIGKILL (as gunicorn's own timeout does) cannot remove
its socket. With ``--preload`` its parent, the master, removes it; without,
nothing can, and ``ispy servers`` shows it as stale and does not offer it.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Dict, List

import pytest

from conftest import WAIT, Lines, Process, ispy_command, run_ispy, servers, wait_for_socket, wait_until

WORKERS = 3


class Gunicorn:
    """A running gunicorn: its master, its workers and the app's port."""

    def __init__(self, process: Process, preload: bool, config: Path, workdir: Path, workers: int = WORKERS) -> None:
        self.process = process
        self.preload = preload
        self.config = config
        self.master = process.pid
        port = process.stderr.wait_for(r"Listening at: http://127\.0\.0\.1:(\d+)", "gunicorn to listen")
        self.url = f"http://127.0.0.1:{port.group(1)}"
        wait_until(lambda: len(self.booted()) >= workers, f"{workers} gunicorn workers to boot")
        self.workers: List[int] = self.booted()
        for pid in self.shell_pids():
            wait_for_socket(workdir / f"ispyd-{pid}.sock")

    def booted(self) -> List[int]:
        """Every worker pid gunicorn has logged booting, in order."""
        return [int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", self.process.stderr.text())]

    def shell_pids(self) -> List[int]:
        """The pids that should have a shell."""
        return self.workers + ([self.master] if self.preload else [])

    def get(self, path: str = "/") -> str:
        with urllib.request.urlopen(self.url + path, timeout=WAIT) as response:
            assert response.status == 200
            return response.read().decode()


@pytest.fixture
def start_gunicorn(write_config, spawn, workdir):
    """Starts gunicorn with 3 workers serving flask_app, and waits until the
    app is served and every process that should have a shell listens."""

    def start(preload: bool, workers: int = WORKERS) -> Gunicorn:
        config = write_config(console=True)
        argv = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", "127.0.0.1:0"]
        if preload:
            argv.append("--preload")
        process = spawn([*argv, "flask_app:app"], APP_ISPYD_CONFIG=str(config))
        return Gunicorn(process, preload, config, workdir, workers)

    return start


@pytest.fixture(params=[False, True], ids=["import-in-worker", "preload-fork"])
def gunicorn(request, start_gunicorn) -> Gunicorn:
    return start_gunicorn(request.param)


def test_servers_lists_one_live_server_per_process_with_a_shell(gunicorn):
    expected = set(gunicorn.shell_pids())
    found = wait_until(
        lambda: (lambda listed: listed if set(listed) == expected else None)(servers(gunicorn.config)),
        f"ispy servers to list exactly {sorted(expected)}",
    )
    assert len(found) == (WORKERS + 1 if gunicorn.preload else WORKERS)
    assert (gunicorn.master in found) == gunicorn.preload


def numbered_servers(config: Path) -> Dict[int, int]:
    """``servers``' listing as {pid: number to connect to}."""
    result = run_ispy(config, ["servers"])
    listing = {}
    for line in result.stdout.splitlines():
        match = re.match(r"^\s*(\d+): pid (\d+)\s", line)
        if match:
            listing[int(match.group(2))] = int(match.group(1))
    return listing


def inspect(config: Path, number: int) -> str:
    commands = [
        f"connect {number}",
        "shell process",
        "pid",
        "exit",
        "shell python",
        "threads",
        "console",
        "import os; os.getpid()",
        "exit()",
    ]
    result = run_ispy(config, commands)
    assert result.code == 0, result
    assert result.stderr == "", result
    return result.stdout


def test_each_worker_shell_is_that_worker(gunicorn):
    listing = numbered_servers(gunicorn.config)
    for pid in gunicorn.workers:
        out = inspect(gunicorn.config, listing[pid])
        # `pid` from the process plugin, then os.getpid() in the console.
        assert re.findall(rf"^{pid}$", out, re.M) == [str(pid), str(pid)], out
        assert "# Name: MainThread" in out, out
        assert "gunicorn/workers/" in out, out


def test_preloaded_master_shell_is_the_master(start_gunicorn):
    gunicorn = start_gunicorn(preload=True)
    out = inspect(gunicorn.config, numbered_servers(gunicorn.config)[gunicorn.master])
    assert re.findall(rf"^{gunicorn.master}$", out, re.M) == [str(gunicorn.master)] * 2, out
    assert "gunicorn/arbiter.py" in out, out
    assert "gunicorn/workers/" not in out, out


def test_servers_says_which_is_the_master_and_whose_worker_each_is(start_gunicorn):
    gunicorn = start_gunicorn(preload=True)
    listing = run_ispy(gunicorn.config, ["servers"]).stdout
    assert re.search(rf"^\s*\d+: pid {gunicorn.master}\s.*  master of {WORKERS} workers$", listing, re.M), listing
    for worker in gunicorn.workers:
        assert re.search(rf"^\s*\d+: pid {worker}\s.*  worker of {gunicorn.master}$", listing, re.M), listing
    # Each server's whole command line follows it.
    assert listing.count("gunicorn") >= WORKERS + 1, listing


def test_second_client_works_while_first_is_in_console(gunicorn, workdir, processes):
    worker = gunicorn.workers[0]
    sock = workdir / f"ispyd-{worker}.sock"
    first = subprocess.Popen(
        [ispy_command(), str(sock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out = Lines(first.stdout)
    try:
        first.stdin.write("connect\nshell python\nconsole\nanswer = 41\nprint('first', answer)\n")
        first.stdin.flush()
        out.wait_for(r"^first 41$", "the first client's console")

        second = run_ispy(sock, ["connect", "shell process", "pid", "exit", "shell python", "console", "print('second')", "exit()"])
        assert second.code == 0, second
        assert re.findall(r"^(\d+|second)$", second.stdout, re.M) == [str(worker), "second"], second

        first.stdin.write("print('first', answer + 1)\nexit()\n")
        first.stdin.close()
        assert first.wait(timeout=WAIT) == 0
        out.finish()
        assert "first 42" in out.snapshot()
        assert "second" not in out.snapshot()
    finally:
        first.kill()
        first.wait(timeout=WAIT)


def test_http_requests_still_succeed(gunicorn):
    pids = set()
    for _ in range(20):
        body = gunicorn.get("/")
        match = re.fullmatch(r"hello from (\d+)\n", body)
        assert match, body
        pids.add(int(match.group(1)))
    assert pids <= set(gunicorn.workers)
    assert gunicorn.get("/sleep/0.01").startswith("slept in ")


def test_stopping_gunicorn_removes_every_socket(gunicorn, workdir):
    for pid in gunicorn.shell_pids():
        assert (workdir / f"ispyd-{pid}.sock").exists()
    gunicorn.process.signal(signal.SIGTERM)
    assert gunicorn.process.wait() == 0, gunicorn.process.output()
    assert sorted(workdir.glob("*.sock")) == []


def test_killed_worker_is_replaced_and_not_offered(gunicorn, workdir):
    # As gunicorn's own timeout does: SIGKILL, so no exit handler runs.
    victim = gunicorn.workers[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: len(gunicorn.booted()) > WORKERS, "gunicorn to boot a replacement worker")
    replacement = gunicorn.booted()[WORKERS]
    wait_for_socket(workdir / f"ispyd-{replacement}.sock")
    expected = set(gunicorn.shell_pids()) - {victim} | {replacement}
    wait_until(lambda: set(servers(gunicorn.config)) == expected, f"ispy servers to offer {expected}")
    if gunicorn.preload:
        # The master forked it, so the master removes what it left behind.
        wait_until(lambda: not (workdir / f"ispyd-{victim}.sock").exists(), "the dead worker's socket to go")
    else:
        # Nobody can remove it, but ispy sees nobody listens there.
        listing = run_ispy(gunicorn.config, ["servers"]).stdout
        assert re.search(rf"{victim}.*stale", listing), listing
