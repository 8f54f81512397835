"""ispyd in processes served by green threads: a real gunicorn with its
gevent worker, eventlet's own ``eventlet.wsgi.server`` and gevent's
``pywsgi``, each monkey-patched, serving ``apps/green_app.py`` (gevent and
eventlet are installed by ``test.sh``).

Every request of such a process runs on one OS thread, each in a greenlet
of its own. ispyd's listener and sessions are native threads, which the
patching does not reach; what they must get right is the greenlets: each
request's own stack in ``requests``, every greenlet in ``greenlets``, and a
console that neither blocks the hub nor is blocked by it, whether ispyd was
imported before the patching or after it.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import List, Optional

import pytest

from conftest import (
    APPS,
    WAIT,
    ConsoleClient,
    Process,
    free_port,
    installed_command,
    open_shell,
    run_ispy,
    wait_for_socket,
    wait_until,
)
from test_interrupt import stops_burning

#: Requests in flight at once, each asleep in its own greenlet.
CONCURRENT = 20
#: How long each of them sleeps.
SLEEP = 8.0


class GreenServer:
    """A monkey-patched process serving ``green_app`` on ``port``."""

    def __init__(self, process: Process, port: int, pid: int, workdir: Path) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.pid = pid
        self.socket = wait_for_socket(workdir / f"ispyd-{pid}.sock")
        wait_until(lambda: self.answers(), "the server to answer")

    def get(self, path: str, timeout: float = WAIT) -> str:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
            return response.read().decode()

    def answers(self) -> bool:
        try:
            return self.get("/", 1.0).startswith("hello from ")
        except OSError:
            return False

    def ispy(self, *commands: str, json_output: bool = False) -> str:
        options = ["--json"] if json_output else []
        for command in commands:
            options += ["-c", command]
        done = run_ispy(self.socket, [], WAIT, *options)
        assert done.code == 0, done
        return done.stdout


@pytest.fixture
def start_green(write_config, spawn, workdir):
    def start(server: str, order: str = "patch-first") -> GreenServer:
        config = write_config(console=True)
        port = free_port()
        if server == "gunicorn":
            gunicorn = installed_command("gunicorn", "test.sh installs it: pip install gunicorn gevent")
            argv = [gunicorn, "-k", "gevent", "-w", "1", "-b", f"127.0.0.1:{port}", "--chdir", str(APPS), "green_app:app"]
            process = spawn(argv, APP_ISPYD_CONFIG=str(config))
            pid = int(process.stderr.wait_for(r"Booting worker with pid: (\d+)", "gunicorn's worker").group(1))
        else:
            argv = [sys.executable, str(APPS / "green_app.py"), server, str(port), order]
            process = spawn(argv, APP_ISPYD_CONFIG=str(config))
            pid = int(process.stdout.wait_for(r"^SERVING (\d+)$", f"the {server} server").group(1))
        return GreenServer(process, port, pid, workdir)

    return start


class Sleepers:
    """``CONCURRENT`` requests to ``/sleep/SLEEP?token=N``, each on a thread
    of the test."""

    def __init__(self, server: GreenServer) -> None:
        self.answers: List[Optional[str]] = [None] * CONCURRENT
        self.threads = [threading.Thread(target=self._get, args=(server, n), daemon=True) for n in range(CONCURRENT)]
        for thread in self.threads:
            thread.start()

    def _get(self, server: GreenServer, n: int) -> None:
        self.answers[n] = server.get(f"/sleep/{SLEEP}?token=t{n}", SLEEP + WAIT)

    def finish(self) -> List[Optional[str]]:
        for thread in self.threads:
            thread.join(SLEEP + WAIT)
        return self.answers


class Poller:
    """Asks ``/`` over and over while the test works, keeping the longest
    wait for an answer: a blocked hub would hold every request."""

    def __init__(self, server: GreenServer) -> None:
        self.longest = 0.0
        self.answered = 0
        self.failures: List[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, args=(server,), daemon=True)
        self._thread.start()

    def _poll(self, server: GreenServer) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                server.get("/", SLEEP + WAIT)
                self.answered += 1
            except OSError as err:
                self.failures.append(repr(err))
            self.longest = max(self.longest, time.monotonic() - started)
            self._stop.wait(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(SLEEP + WAIT)


SERVERS = [
    pytest.param("gunicorn", "patch-first", id="gunicorn-gevent"),
    pytest.param("eventlet", "patch-first", id="eventlet-patch-first"),
    pytest.param("eventlet", "ispyd-first", id="eventlet-ispyd-first"),
    pytest.param("gevent", "ispyd-first", id="gevent-pywsgi-ispyd-first"),
]


def sleeping_requests(server: GreenServer) -> list:
    """The requests ``requests`` lists as data."""
    lines = server.ispy("shell wsgi", "requests", json_output=True).splitlines()
    return json.loads(lines[-1])["data"]["requests"]


def in_sleeper(request: dict) -> bool:
    return any(frame["function"] == "green_sleeper" for frame in request["frames"] or [])


@pytest.mark.parametrize("server_kind,order", SERVERS)
def test_each_request_shows_its_own_greenlet_and_the_console_does_not_stall_the_hub(start_green, server_kind, order):
    server = start_green(server_kind, order)
    sleepers = Sleepers(server)
    wait_until(
        lambda: sum(in_sleeper(r) for r in sleeping_requests(server)) == CONCURRENT,
        f"{CONCURRENT} requests asleep in green_sleeper, each in its greenlet's stack",
    )

    # requests: twenty entries, twenty greenlets, each stack its own
    # request's (down to the sleep in green_sleeper), not the hub's.
    listed = sleeping_requests(server)
    assert len(listed) == CONCURRENT, listed
    assert len({request["greenlet"] for request in listed}) == CONCURRENT, listed
    assert sorted(request["environ"]["QUERY_STRING"] for request in listed) == sorted(f"token=t{n}" for n in range(CONCURRENT))
    for request in listed:
        functions = [frame["function"] for frame in request["frames"]]
        # Then the green library's sleep and its switch to the hub.
        assert "green_sleeper" in functions[-3:], functions
    text = server.ispy("shell wsgi", "requests")
    assert text.count("\ngreenlet = ") == CONCURRENT, text
    assert len(re.findall(r'line \d+, in green_sleeper\n  time\.sleep\(seconds\)\n', text)) == CONCURRENT, text

    # greenlets: every request's greenlet, with its request and its stack.
    text = server.ispy("shell python", "greenlets")
    numbers = sorted(request["id"] for request in listed)
    shown = sorted(int(n) for n in re.findall(r"^# Request: (\d+) GET /sleep/", text, re.M))
    assert shown == numbers, text
    for block in text.split("\n# Greenlet: ")[1:]:
        if "# Request: " in block:
            assert re.search(r'in green_sleeper\n  time\.sleep\(seconds\)\n', block), block
    data = json.loads(server.ispy("shell python", "greenlets", json_output=True).splitlines()[-1])["data"]
    serving = [g for g in data["greenlets"] if g["request"] is not None]
    assert sorted(g["request"] for g in serving) == numbers, data
    assert all(g["state"] == "suspended" and g["thread_id"] is not None for g in serving), serving

    # threads: the main thread is still MainThread (gevent re-keys it in
    # threading under its main greenlet's id).
    text = server.ispy("shell python", "threads")
    assert re.search(r"^# Name: MainThread\n", text, re.M), text

    # The console evaluates, and sleeps with the patched time.sleep, on its
    # own thread, while the hub keeps serving.
    poller = Poller(server)
    console = ConsoleClient(str(server.socket))
    try:
        console.send("6 * 7", "import time; time.sleep(1.0); print('slept', 6 * 7)")
        console.out.wait_for(r"^42$", "the console's answer")
        console.out.wait_for(r"^slept 42$", "the console's sleep to end")
        served_during = poller.answered
        wait_until(lambda: poller.answered > served_during + 3, "the app to keep answering with a console open")
    finally:
        console.kill()
        poller.stop()
    assert not poller.failures, poller.failures
    assert poller.longest < SLEEP, f"a request waited {poller.longest:.1f} s: the hub stalled"

    answers = sleepers.finish()
    assert answers == [f"t{n} slept in {server.pid}\n" for n in range(CONCURRENT)], answers
    wait_until(lambda: not sleeping_requests(server), "every request to end")


@pytest.mark.parametrize("server_kind,order", SERVERS)
def test_ctrl_c_interrupts_a_console_line_in_a_patched_process(start_green, terminal, workdir, server_kind, order):
    # Each line runs on a native thread: as a greenlet it would run on the
    # session's thread, hold it while busy, and no interrupt would reach it.
    server = start_green(server_kind, order)
    term = open_shell(terminal, workdir, server.socket, server.pid, "python")
    term.keys("console", "Enter")
    term.wait_last_line(">>>")
    term.keys("while True: pass", "Enter")
    term.wait_last_line("...")
    term.keys("Enter")
    wait_until(lambda: not stops_burning(server.pid), "the loop to run")
    term.keys("C-c")
    term.wait_last_line(">>>")
    assert "KeyboardInterrupt" in term.screen(), term.screen()
    wait_until(lambda: stops_burning(server.pid), "the loop to stop")
    term.keys("6 * 7", "Enter")
    term.wait_last_line(">>>")
    assert "\n42\n>>>" in term.screen(), term.screen()
    assert server.answers()
