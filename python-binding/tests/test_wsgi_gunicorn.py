"""The ``wsgi`` plugin as the 2012 README shows it: a Flask application
wrapped in ``WSGIApplicationWrapper``, served by a real gunicorn, inspected
with the installed ``ispy`` while a slow request is in flight; and the
wrapper's WSGI behaviour under gunicorn's sync worker: streaming, a client
that disconnects mid-response, errors, ``exc_info``, file responses sent
with ``sendfile()``.

The apps are ``tests/apps/wsgi_app.py``; they log what happens to each
response to ``events.log`` in the test's work directory and wait for files
the test creates there, so every step is observed, never timed.
"""

from __future__ import annotations

import http.client
import re
import socket
import struct
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import List, Optional

import pytest

from conftest import APPS, WAIT, Process, run_ispy, servers, wait_for_socket, wait_until

sys.path.insert(0, str(APPS))
from wsgi_app import FILE_BODY  # noqa: E402  (tests/apps is not a package)


class Gunicorn:
    """One gunicorn sync worker serving ``wsgi_app:APP``, with ispyd in it."""

    def __init__(self, process: Process, config: Path, workdir: Path) -> None:
        self.process = process
        self.config = config
        self.workdir = workdir
        port = process.stderr.wait_for(r"Listening at: http://127\.0\.0\.1:(\d+)", "gunicorn to listen")
        self.port = int(port.group(1))
        self.url = f"http://127.0.0.1:{self.port}"
        worker = process.stderr.wait_for(r"Booting worker with pid: (\d+)", "the worker to boot")
        self.worker = int(worker.group(1))
        wait_for_socket(workdir / f"ispyd-{self.worker}.sock")

    def get(self, path: str, headers: Optional[dict] = None):
        """(status, body) of GET ``path``."""
        try:
            request = urllib.request.Request(self.url + path, headers=headers or {})
            with urllib.request.urlopen(request, timeout=WAIT) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def wsgi_shell(self, *commands: str) -> str:
        """What ``ispy`` prints for ``connect``, ``shell wsgi``, then
        ``commands``."""
        listing = run_ispy(self.config, ["servers"]).stdout
        number = re.search(rf"^\s*(\d+): pid {self.worker}\s", listing, re.M)
        assert number, listing
        result = run_ispy(self.config, [f"connect {number.group(1)}", "shell wsgi", *commands])
        assert result.code == 0 and result.stderr == "", result
        return result.stdout

    def events(self, token: str) -> List[str]:
        path = self.workdir / "events.log"
        if not path.exists():
            return []
        return [line.split()[0] for line in path.read_text().splitlines() if token in line.split()[1:3]]

    def idle(self) -> bool:
        return "No active transactions." in self.wsgi_shell("requests")


@pytest.fixture
def start_gunicorn(write_config, spawn, workdir):
    def start(application: str, *options: str) -> Gunicorn:
        config = write_config()
        argv = [sys.executable, "-m", "gunicorn", "-w", "1", "-b", "127.0.0.1:0", *options, f"wsgi_app:{application}"]
        process = spawn(argv, APP_ISPYD_CONFIG=str(config), WSGI_CONTROL=str(workdir))
        return Gunicorn(process, config, workdir)

    return start


@pytest.fixture
def flask_app(start_gunicorn) -> Gunicorn:
    return start_gunicorn("app")


@pytest.fixture
def raw_app(start_gunicorn) -> Gunicorn:
    return start_gunicorn("raw")


class Background:
    """A GET on a thread of its own, so the test can look while it runs."""

    def __init__(self, gunicorn: Gunicorn, path: str, headers: Optional[dict] = None) -> None:
        self.result: Optional[tuple] = None
        self.thread = threading.Thread(target=self._get, args=(gunicorn, path, headers), daemon=True)
        self.thread.start()

    def _get(self, gunicorn: Gunicorn, path: str, headers: Optional[dict]) -> None:
        self.result = gunicorn.get(path, headers)

    def wait(self) -> tuple:
        self.thread.join(WAIT)
        assert self.result is not None, "the request did not finish"
        return self.result


def test_requests_shows_the_slow_request_its_environ_and_where_it_waits(flask_app, workdir):
    assert flask_app.idle()
    credentials = {"Authorization": "Bearer tok-9d2f", "Cookie": "session=sess-77ab"}
    slow = Background(flask_app, "/slow?who=pytest", credentials)
    started = wait_until(lambda: re.search(r"^started slow (\d+)$", (workdir / "events.log").read_text(), re.M)
                         if (workdir / "events.log").exists() else None, "the slow request to start")
    try:
        out = flask_app.wsgi_shell("requests", "requests 3600")
    finally:
        (workdir / "release-slow").touch()
    first, older = out.split("No active transactions older than", 1)
    assert re.search(r"^==== \d+ ====$", first, re.M), out
    assert f"thread_id = {started.group(1)}\n" in first
    assert re.search(r"^start_time = \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$", first, re.M), out
    assert re.search(r"^duration = \d+\.\d{6} seconds$", first, re.M), out
    assert "PATH_INFO = '/slow'\n" in first
    assert "QUERY_STRING = 'who=pytest'\n" in first
    assert "REQUEST_METHOD = 'GET'\n" in first
    # Credentials in request headers are masked, in the text and the data.
    assert "HTTP_AUTHORIZATION = ******** (masked)\n" in first and "HTTP_COOKIE = ******** (masked)\n" in first
    assert "tok-9d2f" not in out and "sess-77ab" not in out, out
    # The stack of the worker's thread: gunicorn, Flask, the view, the wait.
    assert "gunicorn/workers/sync.py" in first
    assert re.search(r'File: "[^"]*wsgi_app\.py", line \d+, in slow\n  wait_for_release\("release-slow"\)', first), out
    assert re.search(r'in wait_for_release\n  time\.sleep\(0\.02\)\n', first), out
    assert older.startswith(" 3600 seconds (1 younger)."), out

    assert slow.wait() == (200, b"slow done\n")
    wait_until(flask_app.idle, "requests to say no active transactions")
    out = flask_app.wsgi_shell("requests 3600")
    assert "No active transactions." in out and "====" not in out, out


def test_wsgi_shell_lists_requests_with_its_help(flask_app):
    out = flask_app.wsgi_shell("help", "help requests")
    assert "requests" in out
    assert "requests [SECONDS]" in out and "'requests 5'" in out
    listing = run_ispy(flask_app.config, ["connect", "plugins"]).stdout
    assert re.search(r"^wsgi\s+Web requests being served now", listing, re.M), listing


def test_streamed_response_arrives_whole_and_is_closed_once(raw_app, workdir):
    (workdir / "release-s1").touch()
    assert raw_app.get("/stream?token=s1&chunks=5&size=100") == (200, b"first\n" + b"x" * 500)
    wait_until(lambda: "close" in raw_app.events("s1"), "the response to be closed")
    assert raw_app.events("s1") == ["call", "first-sent", "exhausted", "close"]
    assert raw_app.idle()


def test_client_disconnecting_mid_response_still_closes_once_and_ends_the_request(raw_app, workdir):
    client = socket.create_connection(("127.0.0.1", raw_app.port), timeout=WAIT)
    try:
        client.sendall(b"GET /stream?token=d1&chunks=1000&size=65536 HTTP/1.1\r\nHost: test\r\n\r\n")
        received = b""
        while b"first\n" not in received:
            data = client.recv(4096)
            assert data, f"gunicorn closed before the first chunk: {received!r}"
            received += data
        out = raw_app.wsgi_shell("requests")
        assert "PATH_INFO = '/stream'" in out and "in wait_for_release" in out, out
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        client.close()
    (workdir / "release-d1").touch()
    wait_until(lambda: "close" in raw_app.events("d1"), "the response to be closed")
    wait_until(raw_app.idle, "requests to say no active transactions")
    assert raw_app.events("d1") == ["call", "first-sent", "close"]


@pytest.mark.parametrize("sendfile", [True, False], ids=["sendfile", "no-sendfile"])
def test_file_response_reaches_gunicorn_as_a_file_and_is_closed_once(start_gunicorn, workdir, sendfile):
    gunicorn = start_gunicorn("raw", *([] if sendfile else ["--no-sendfile"]))
    assert gunicorn.get("/file?token=f1") == (200, FILE_BODY)
    wait_until(lambda: "file-close" in gunicorn.events("f1"), "the file to be closed")
    found = gunicorn.events("f1")
    assert found.count("file-close") == 1
    if sendfile:
        # sendfile() sends from the descriptor: the file is never read.
        assert "read" not in found, found
    else:
        assert "read" in found, found
    assert gunicorn.idle()


def test_exceptions_reach_gunicorn_unchanged_and_every_response_is_closed_once(raw_app, workdir):
    status, _ = raw_app.get("/app-error?token=a1")
    assert status == 500
    raw_app.process.stderr.wait_for(r"RuntimeError: boom in app a1", "gunicorn to log the application's error")

    # Headers and a first chunk went out: the client sees a cut response.
    with pytest.raises((http.client.IncompleteRead, urllib.error.URLError, ConnectionError)):
        raw_app.get("/iter-error?token=i1")
    raw_app.process.stderr.wait_for(r"RuntimeError: boom in iteration i1", "gunicorn to log the iteration error")

    status, body = raw_app.get("/close-error?token=c1")
    assert (status, body) == (200, b"closing badly\n")
    raw_app.process.stderr.wait_for(r"RuntimeError: boom in close c1", "gunicorn to log the close() error")

    assert raw_app.events("i1") == ["call", "close"]
    assert raw_app.events("c1") == ["call", "close"]
    assert raw_app.idle()


def test_start_response_with_exc_info_replaces_the_response(raw_app):
    assert raw_app.get("/exc-info?token=e1") == (503, b"replaced\n")
    assert raw_app.idle()


def test_servers_lists_the_worker(raw_app):
    assert raw_app.worker in servers(raw_app.config)
