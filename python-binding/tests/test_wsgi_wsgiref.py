"""``WSGIApplicationWrapper`` behind a real HTTP server in this process: the
standard library's reference server, ``wsgiref``, serving
``tests/apps/wsgi_app.py`` on a thread, with real HTTP clients.

In-process, the tests can see what a subprocess hides: the registry itself
(``active_request_count()``), the exception object the server was handed,
and the object the server checked for a file wrapper. The server's handler
records those; nothing else in wsgiref is changed.
"""

from __future__ import annotations

import http.client
import socket
import struct
import sys
import threading
import wsgiref.simple_server
import wsgiref.util
from pathlib import Path
from typing import Any, Iterator, List

import pytest

from conftest import APPS, WAIT, wait_until

sys.path.insert(0, str(APPS))
import wsgi_app  # noqa: E402  (tests/apps is not a package)

from ispyd.plugins.wsgi import active_request_count  # noqa: E402


class Records:
    """What the server saw."""

    def __init__(self) -> None:
        self.exceptions: List[BaseException] = []
        self.sendfile_results: List[Any] = []


class RecordingHandler(wsgiref.simple_server.ServerHandler):
    records: Records

    def sendfile(self) -> bool:
        # wsgiref's own sendfile() declines; recording what it was offered
        # shows the file wrapper reached the server as one.
        self.records.sendfile_results.append(self.result)
        return False

    def log_exception(self, exc_info) -> None:
        self.records.exceptions.append(exc_info[1])


class RequestHandler(wsgiref.simple_server.WSGIRequestHandler):
    """wsgiref's own ``handle()``, with the recording handler."""

    def handle(self) -> None:
        self.raw_requestline = self.rfile.readline(65537)
        if not self.parse_request():
            return
        handler = RecordingHandler(self.rfile, self.wfile, self.get_stderr(), self.get_environ(), multithread=False)
        handler.records = self.server.records
        handler.request_handler = self
        handler.run(self.server.get_app())

    def log_message(self, *args) -> None:
        pass


class Server:
    def __init__(self, application) -> None:
        self.httpd = wsgiref.simple_server.make_server("127.0.0.1", 0, application, handler_class=RequestHandler)
        self.httpd.records = Records()
        self.records = self.httpd.records
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def get(self, path: str):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            try:
                body = response.read()
            except http.client.IncompleteRead as partial:
                body = partial.partial
            return response.status, body
        finally:
            connection.close()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(WAIT)


@pytest.fixture
def control(workdir: Path) -> Iterator[Path]:
    wsgi_app.CONTROL = workdir
    yield workdir


@pytest.fixture
def server(control) -> Iterator[Server]:
    assert active_request_count() == 0
    running = Server(wsgi_app.raw)
    yield running
    running.stop()
    assert active_request_count() == 0


def events(control: Path, token: str) -> List[str]:
    """The events logged for ``token``, e.g. ``['call', 'close']``."""
    path = control / "events.log"
    if not path.exists():
        return []
    found = []
    for line in path.read_text().splitlines():
        words = line.split()
        if token in words[1:3]:
            found.append(words[0])
    return found


def idle() -> bool:
    return active_request_count() == 0


def test_streamed_response_arrives_whole_and_is_closed_once(server, control):
    (control / "release-s1").touch()
    status, body = server.get("/stream?token=s1&chunks=3&size=10")
    assert status == 200
    assert body == b"first\n" + b"x" * 30
    wait_until(idle, "the request to end")
    assert events(control, "s1") == ["call", "first-sent", "exhausted", "close"]


def test_client_disconnecting_mid_response_still_closes_once_and_ends_the_request(server, control):
    client = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    try:
        client.sendall(b"GET /stream?token=d1&chunks=1000&size=65536 HTTP/1.0\r\nHost: test\r\n\r\n")
        received = b""
        while b"first\n" not in received:
            data = client.recv(4096)
            assert data, f"the server closed before the first chunk: {received!r}"
            received += data
        assert active_request_count() == 1
        # Reset, not a polite close: the server's next write fails.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        client.close()
    (control / "release-d1").touch()
    wait_until(lambda: "close" in events(control, "d1"), "the response to be closed")
    wait_until(idle, "the request to end")
    assert events(control, "d1") == ["call", "first-sent", "close"]


def test_exception_while_iterating_reaches_the_server_unchanged_and_close_runs_once(server, control):
    status, body = server.get("/iter-error?token=i1")
    assert status == 200 and body.startswith(b"partial\n")
    wait_until(idle, "the request to end")
    assert server.records.exceptions == [wsgi_app.ERRORS["i1"]]
    assert events(control, "i1") == ["call", "close"]


def test_exception_from_close_reaches_the_server_unchanged(server, control):
    server.get("/close-error?token=c1")
    wait_until(idle, "the request to end")
    assert server.records.exceptions == [wsgi_app.ERRORS["c1"]]
    assert events(control, "c1") == ["call", "close"]


def test_exception_from_the_application_reaches_the_server_unchanged(server, control):
    status, body = server.get("/app-error?token=a1")
    assert status == 500
    wait_until(idle, "the request to end")
    assert server.records.exceptions == [wsgi_app.ERRORS["a1"]]


def test_start_response_with_exc_info_replaces_the_status(server, control):
    status, body = server.get("/exc-info?token=e1")
    assert (status, body) == (503, b"replaced\n")
    wait_until(idle, "the request to end")
    assert server.records.exceptions == []


def test_file_wrapper_reaches_the_server_as_a_file_wrapper(server, control):
    status, body = server.get("/file?token=f1")
    assert (status, body) == (200, wsgi_app.FILE_BODY)
    (offered,) = server.records.sendfile_results
    assert type(offered) is wsgiref.util.FileWrapper
    assert isinstance(offered.filelike, wsgi_app.LoggedFile)
    wait_until(idle, "the request to end")
    assert events(control, "f1").count("file-close") == 1


def test_flask_application_is_served_and_leaves_nothing_registered(control):
    flask_server = Server(wsgi_app.app)
    try:
        status, body = flask_server.get("/")
        assert status == 200 and body.startswith(b"hello from ")
        wait_until(idle, "the request to end")
    finally:
        flask_server.stop()
