"""ASGI requests and asyncio tasks, on a real uvicorn serving a real
Starlette app (``tests/apps/asgi_app.py``) wrapped in
``ASGIApplicationWrapper``: a slow endpoint in flight shows in ``requests``
(scope, task, the ``asyncio.sleep`` frame) and in ``tasks``; ``cancel``
ends it and the client sees its connection end; a websocket is tracked for
as long as it is open; lifespan passes through; nothing stays behind.
"""

from __future__ import annotations

import http.client
import json
import re
import sys
import threading
from typing import Optional

import pytest
from websockets.sync.client import connect as ws_connect

from conftest import APPS, WAIT, free_port, run_ispy, wait_for_socket, wait_until


class Uvicorn:
    def __init__(self, process, workdir) -> None:
        self.process = process
        self.port = int(process.stderr.wait_for(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", "uvicorn").group(1))
        self.socket = wait_for_socket(workdir / f"ispyd-{process.pid}.sock")

    def ispy(self, *commands: str) -> str:
        options = [option for command in commands for option in ("-c", command)]
        result = run_ispy(self.socket, [], WAIT, *options)
        assert result.code == 0, result
        return result.stdout

    def get(self, path: str):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT)
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read(), response.getheader("connection")


@pytest.fixture
def uvicorn(write_config, spawn, workdir) -> Uvicorn:
    config = write_config(extra="\n[asyncio:cancel]\nenabled = true\n")
    argv = [sys.executable, "-m", "uvicorn", "--app-dir", str(APPS), "--port", str(free_port()), "asgi_app:app"]
    return Uvicorn(spawn(argv, APP_ISPYD_CONFIG=str(config)), workdir)


class Background:
    """A GET on a thread of its own; its outcome once it ends."""

    def __init__(self, uvicorn: Uvicorn, path: str) -> None:
        self.outcome: Optional[object] = None
        self.thread = threading.Thread(target=self._get, args=(uvicorn, path), daemon=True)
        self.thread.start()

    def _get(self, uvicorn: Uvicorn, path: str) -> None:
        try:
            self.outcome = uvicorn.get(path)
        except OSError as err:
            self.outcome = err

    def wait(self) -> object:
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the request did not end"
        return self.outcome


def test_a_slow_request_shows_in_requests_and_tasks_and_cancel_ends_it(uvicorn):
    assert uvicorn.process.stdout.wait_for("^lifespan startup$", "the lifespan scope to reach the app")
    slow = Background(uvicorn, "/slow?who=pytest")
    listing = wait_until(lambda: (lambda out: out if "path = '/slow'" in out else None)(
        uvicorn.ispy("shell wsgi", "requests")), "the slow request in requests")
    assert re.search(r"^task = Task-\d+$", listing, re.M), listing
    assert "method = 'GET'\n" in listing and "query_string = b'who=pytest'\n" in listing, listing
    assert re.search(r"^client = \('127\.0\.0\.1', \d+\)$", listing, re.M), listing
    assert "router = " not in listing, "only the scope's ASGI keys"
    # The task's await chain, outermost first, down to asyncio.sleep.
    frames = re.findall(r'^File: ".*?([\w.]+)", line \d+, in (\w+)$', listing, re.M)
    assert frames[-2:] == [("asgi_app.py", "slow"), ("tasks.py", "sleep")], frames

    tasks = uvicorn.ispy("shell asyncio", "tasks")
    serving = re.search(r"^\s+(\d+)  (Task-\d+)  pending  [\d.]+ s  loop thread MainThread  coroutine "
                        r"RequestResponseCycle\.run_asgi\n\s+serving GET /slow\?who=pytest \(request \d+\)$",
                        tasks, re.M)
    assert serving, tasks
    number = serving.group(1)
    block = re.split(r"\n {0,3}\d+  ", tasks[serving.end():])[0]
    assert re.search(r"asgi_app\.py:\d+ in slow\n.*tasks\.py:\d+ in sleep", block), block
    where = uvicorn.ispy("shell asyncio", f"where {number}")
    assert "await asyncio.sleep(3600)" in where, where

    cancelled = uvicorn.ispy("shell asyncio", f"cancel {number}")
    assert re.search(rf"^Task {number} \(Task-\d+\) is (done|failed)\.$", cancelled, re.M), cancelled
    status, _, connection = slow.wait()
    assert status == 500 and connection == "close", slow.outcome
    assert "RequestCancelled: request" in uvicorn.process.stderr.text()
    assert "No active transactions." in uvicorn.ispy("shell wsgi", "requests")
    # The server goes on.
    assert uvicorn.get("/")[0] == 200


def test_a_websocket_is_listed_while_open_and_released_when_closed(uvicorn):
    with ws_connect(f"ws://127.0.0.1:{uvicorn.port}/ws?room=1", open_timeout=WAIT) as websocket:
        websocket.send("ping")
        assert websocket.recv(timeout=WAIT) == "ping"
        listing = uvicorn.ispy("shell wsgi", "requests")
        assert "type = 'websocket'\n" in listing and "path = '/ws'\n" in listing, listing
        result = run_ispy(uvicorn.socket, [], WAIT, "--json", "-c", "shell wsgi", "-c", "requests")
        (request,) = json.loads(result.stdout.splitlines()[-1])["data"]["requests"]
        assert request["scope"]["type"] == "websocket" and request["environ"] is None, request
        assert request["task"].startswith("Task-"), request
    wait_until(lambda: "No active transactions." in uvicorn.ispy("shell wsgi", "requests"),
               "the closed websocket to leave requests")


def test_many_requests_leave_nothing_behind_and_the_dump_names_active_ones(uvicorn):
    for _ in range(200):
        assert uvicorn.get("/")[0] == 200
    out = uvicorn.ispy("shell wsgi", "requests")
    assert "No active transactions." in out, out
    slow = Background(uvicorn, "/slow?dumped=1")
    wait_until(lambda: "/slow" in uvicorn.ispy("shell wsgi", "requests"), "the slow request")
    dump = uvicorn.ispy("dump")
    assert re.search(r"^  GET /slow\?dumped=1  \(request \d+, ", dump, re.M), dump
    number = re.search(r"^\s+(\d+)  Task-\d+  pending  [\d.]+ s .*\n\s+serving GET /slow",
                       uvicorn.ispy("shell asyncio", "tasks"), re.M).group(1)
    uvicorn.ispy("shell asyncio", f"cancel {number}")
    slow.wait()


def test_tasks_of_a_loop_on_another_thread_where_and_a_gated_cancel(write_config, start_app):
    app = start_app(write_config())
    app.command("loop", "^LOOP RUNNING$")
    result = run_ispy(app.socket(), [], WAIT, "-c", "shell asyncio", "-c", "tasks", "-c", "tasks sleep*",
                      "-c", "where sleeper", "-c", "cancel sleeper", "-c", "where nobody")
    out = result.stdout
    for name, frame in (("sleeper", "_sleeper"), ("waiter", "_waiter")):
        assert re.search(rf"^\s+\d+  {name}  pending  >= [\d.]+ s  loop thread loop-thread  coroutine {frame}$",
                         out, re.M), out
    listed = out.split("No asyncio", 1)[0]
    assert "host.py" in listed and "in _sleeper" in listed
    sleeper_only = re.findall(r"^\s+\d+  (\w+)  pending", out, re.M)
    assert sleeper_only.count("sleeper") == 2 and sleeper_only.count("waiter") == 1, sleeper_only
    assert "    await asyncio.sleep(3600)" in out, out
    assert "Sorry, the cancel command is disabled." in result.stdout + result.stderr, result
    assert "No asyncio task 'nobody'" in result.stdout + result.stderr, result
    app.command("print still-here", "^still-here$")
