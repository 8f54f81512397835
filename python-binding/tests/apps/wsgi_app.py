"""WSGI applications wrapped with ispyd's ``WSGIApplicationWrapper``, for
``tests/test_wsgi_gunicorn.py`` (served by gunicorn) and
``tests/test_wsgi_wsgiref.py`` (imported and served in-process).

- ``app``: a Flask application embedding ispyd as the 2012 README shows
  (``ShellManager`` at import when ``APP_ISPYD_CONFIG`` is set), its
  ``wsgi_app`` wrapped. ``/slow`` waits until the test lets it go.
- ``raw``: a plain WSGI application, wrapped with ``@wsgi_application()``,
  whose responses log what happens to them, one line each, to
  ``events.log`` in the control directory:
  ``/stream``, ``/iter-error``, ``/close-error``, ``/app-error``,
  ``/exc-info``, ``/file``; every request names itself with ``?token=T``.

The tests control the apps through files in the directory ``WSGI_CONTROL``
(a test's work directory): a request waiting for ``NAME`` goes on when the
file ``NAME`` appears there, and gives up after ``WAIT`` seconds anyway.
"""

import io
import os
import sys
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs

from flask import Flask

from ispyd.plugins.wsgi import WSGIApplicationWrapper, wsgi_application

if os.environ.get("APP_ISPYD_CONFIG"):
    from ispyd.manager import ShellManager

    shell_manager = ShellManager(os.environ["APP_ISPYD_CONFIG"])

CONTROL = Path(os.environ.get("WSGI_CONTROL", "."))
#: The longest a request waits for the test.
WAIT = 30.0

_log_lock = threading.Lock()


def log(*words):
    """Appends one line to ``events.log``."""
    with _log_lock:
        with open(CONTROL / "events.log", "a") as events:
            events.write(" ".join(str(word) for word in words) + "\n")


def wait_for_release(name):
    """Waits (bounded) until the test creates the file ``name``."""
    deadline = time.monotonic() + WAIT
    while not (CONTROL / name).exists() and time.monotonic() < deadline:
        time.sleep(0.02)


app = Flask(__name__)
app.wsgi_app = WSGIApplicationWrapper(app.wsgi_app)


@app.route("/")
def index():
    return f"hello from {os.getpid()}\n"


@app.route("/slow")
def slow():
    log("started", "slow", threading.get_ident())
    wait_for_release("release-slow")
    return "slow done\n"


def token_of(environ):
    return parse_qs(environ.get("QUERY_STRING", "")).get("token", ["-"])[0]


class Stream:
    """A streaming response: one chunk, then (once ``release-TOKEN``
    exists) ``chunks`` more of ``size`` bytes each."""

    def __init__(self, token, chunks, size):
        self.token = token
        self.chunks = chunks
        self.size = size

    def __iter__(self):
        yield b"first\n"
        log("first-sent", self.token)
        wait_for_release("release-" + self.token)
        for _ in range(self.chunks):
            yield b"x" * self.size
        log("exhausted", self.token)

    def close(self):
        log("close", self.token)


class FailingIterable:
    """Yields one chunk, then raises ``ERRORS[token]``."""

    def __init__(self, token):
        self.token = token

    def __iter__(self):
        yield b"partial\n"
        raise ERRORS.setdefault(self.token, RuntimeError(f"boom in iteration {self.token}"))

    def close(self):
        log("close", self.token)


class FailingClose:
    """A normal body whose ``close()`` raises ``ERRORS[token]``."""

    def __init__(self, token):
        self.token = token

    def __iter__(self):
        return iter([b"closing badly\n"])

    def close(self):
        log("close", self.token)
        raise ERRORS.setdefault(self.token, RuntimeError(f"boom in close {self.token}"))


class LoggedFile(io.FileIO):
    """A file that logs every read and its close: served with sendfile(),
    it is never read."""

    token = "-"

    def read(self, *args):
        log("read", self.token)
        return super().read(*args)

    def readinto(self, buffer):
        log("read", self.token)
        return super().readinto(buffer)

    def close(self):
        if not self.closed:
            log("file-close", self.token)
        super().close()


#: The exception objects raised, by token, for identity checks in-process.
ERRORS = {}

FILE_BODY = b"".join(b"line %05d of the file response\n" % n for n in range(2000))


@wsgi_application()
def raw(environ, start_response):
    path = environ.get("PATH_INFO", "")
    token = token_of(environ)
    query = parse_qs(environ.get("QUERY_STRING", ""))
    log("call", path, token, threading.get_ident())
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Stream(token, int(query.get("chunks", ["100"])[0]), int(query.get("size", ["65536"])[0]))
    if path == "/iter-error":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return FailingIterable(token)
    if path == "/close-error":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return FailingClose(token)
    if path == "/app-error":
        raise ERRORS.setdefault(token, RuntimeError(f"boom in app {token}"))
    if path == "/exc-info":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError(f"replaced response {token}")
        except ValueError:
            # Nothing sent yet: the server must take the new status.
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"replaced\n"]
    if path == "/file":
        name = CONTROL / "served-file"
        if not name.exists():
            name.write_bytes(FILE_BODY)
        filelike = LoggedFile(name, "r")
        filelike.token = token
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(FILE_BODY)))])
        return environ["wsgi.file_wrapper"](filelike)
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"no such path\n"]
