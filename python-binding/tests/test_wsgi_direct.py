"""``WSGIApplicationWrapper`` called directly, the way a PEP 3333 server
calls an application, and the ``wsgi`` plugin's ``requests`` command run
in-process against requests held open on real threads.

``serve()`` below is the server: it calls the application, iterates the
response (or takes the file wrapper path) and calls ``close()`` in a
``finally``, as gunicorn's sync worker does. Every test starts and ends
with no request registered.
"""

from __future__ import annotations

import gc
import io
import re
import subprocess
import sys
import threading
import wsgiref.util
from typing import Any, Callable, Dict, List, Optional

import pytest

from conftest import WAIT, run_ispy, wait_until
from ispyd import CommandError
from ispyd import _support
from ispyd.plugins.wsgi import WSGIApplicationWrapper, WSGIPlugin, active_request_count, wsgi_application


@pytest.fixture(autouse=True)
def registry_empty():
    assert active_request_count() == 0, "a request was left registered before this test"
    yield
    gc.collect()
    assert active_request_count() == 0, "a request is still registered after this test"


def environ(**extra: Any) -> Dict[str, Any]:
    env = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": wsgiref.util.FileWrapper,
    }
    env.update(extra)
    return env


class Server:
    """A minimal PEP 3333 server: what it was given and what it did."""

    def __init__(self) -> None:
        self.statuses: List[str] = []
        self.exc_infos: List[Any] = []
        self.chunks: List[bytes] = []
        self.response: Any = None
        self.used_file_wrapper = False

    def start_response(self, status: str, headers: list, exc_info: Any = None) -> Callable:
        if exc_info is not None:
            self.exc_infos.append(exc_info)
        self.statuses.append(status)
        return self.chunks.append

    def serve(self, application: Callable, env: Optional[dict] = None) -> List[bytes]:
        env = environ() if env is None else env
        self.response = response = application(env, self.start_response)
        try:
            if isinstance(response, env["wsgi.file_wrapper"]):
                self.used_file_wrapper = True
            for chunk in response:
                self.chunks.append(chunk)
        finally:
            if hasattr(response, "close"):
                response.close()
        return self.chunks


class Closing:
    """An iterable that counts its ``close()`` calls."""

    def __init__(self, chunks, error: Optional[BaseException] = None, close_error: Optional[BaseException] = None):
        self.chunks = chunks
        self.error = error
        self.close_error = close_error
        self.closed = 0

    def __iter__(self):
        yield from self.chunks
        if self.error is not None:
            raise self.error

    def close(self):
        self.closed += 1
        if self.close_error is not None:
            raise self.close_error


def app_returning(body: Any) -> Callable:
    def application(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    return application


def test_wrapper_imports_as_the_2012_readme_shows_and_wsgi_is_a_builtin_plugin():
    from ispyd.plugins.wsgi import WSGIApplicationWrapper as imported

    assert imported is WSGIApplicationWrapper
    assert _support.BUILTINS["wsgi"] == "ispyd.plugins.wsgi:WSGIPlugin"
    assert _support.describe(WSGIPlugin())["name"] == "wsgi"


def test_response_passes_through_and_close_is_called_once():
    body = Closing([b"a", b"b", b"c"])
    server = Server()
    assert server.serve(WSGIApplicationWrapper(app_returning(body))) == [b"a", b"b", b"c"]
    assert server.statuses == ["200 OK"]
    assert body.closed == 1


def test_request_is_registered_from_the_call_until_close():
    seen = []

    def application(environ, start_response):
        seen.append(active_request_count())
        start_response("200 OK", [])
        return Closing([b"x"])

    response = WSGIApplicationWrapper(application)(environ(), Server().start_response)
    assert seen == [1]
    assert list(response) == [b"x"]
    assert active_request_count() == 1
    response.close()
    assert active_request_count() == 0


def test_exception_from_the_application_propagates_as_the_same_object():
    error = RuntimeError("boom in app")

    def application(environ, start_response):
        raise error

    with pytest.raises(RuntimeError) as raised:
        Server().serve(WSGIApplicationWrapper(application))
    assert raised.value is error
    assert raised.value.__traceback__ is not None


def test_exception_from_iteration_propagates_unchanged_and_close_is_still_called_once():
    error = ValueError("boom in iteration")
    body = Closing([b"partial"], error=error)
    server = Server()
    with pytest.raises(ValueError) as raised:
        server.serve(WSGIApplicationWrapper(app_returning(body)))
    assert raised.value is error
    assert server.chunks == [b"partial"]
    assert body.closed == 1


def test_exception_from_close_propagates_unchanged_and_the_request_still_ends():
    error = OSError("boom in close")
    body = Closing([b"done"], close_error=error)
    with pytest.raises(OSError) as raised:
        Server().serve(WSGIApplicationWrapper(app_returning(body)))
    assert raised.value is error
    assert body.closed == 1


def test_a_second_close_does_not_close_the_application_iterable_again():
    body = Closing([b"x"])
    response = WSGIApplicationWrapper(app_returning(body))(environ(), Server().start_response)
    list(response)
    response.close()
    response.close()
    assert body.closed == 1


def test_start_response_exc_info_reaches_the_server_unchanged():
    caught = []

    def application(environ, start_response):
        start_response("200 OK", [])
        try:
            raise KeyError("replaced")
        except KeyError:
            caught.append(sys.exc_info())
            start_response("500 Internal Server Error", [], sys.exc_info())
        return [b"error page"]

    server = Server()
    assert server.serve(WSGIApplicationWrapper(application)) == [b"error page"]
    assert server.statuses == ["200 OK", "500 Internal Server Error"]
    assert len(server.exc_infos) == 1
    assert server.exc_infos[0][1] is caught[0][1]


def test_exc_info_raised_by_start_response_after_headers_propagates_unchanged():
    # A server re-raises exc_info once headers are sent (PEP 3333).
    def start_response(status, headers, exc_info=None):
        if exc_info is not None:
            raise exc_info[1].with_traceback(exc_info[2])

    error = LookupError("too late")

    def application(environ, start_response):
        try:
            raise error
        except LookupError:
            start_response("500 Internal Server Error", [], sys.exc_info())
        return [b"unreachable"]

    with pytest.raises(LookupError) as raised:
        WSGIApplicationWrapper(application)(environ(), start_response)
    assert raised.value is error


def test_file_wrapper_reaches_the_server_as_the_same_object():
    made = []

    class Filelike(io.BytesIO):
        closes = 0

        def close(self):
            Filelike.closes += 1
            super().close()

    def application(environ, start_response):
        start_response("200 OK", [])
        made.append(environ["wsgi.file_wrapper"](Filelike(b"file body"), 4))
        return made[0]

    server = Server()
    assert b"".join(server.serve(WSGIApplicationWrapper(application))) == b"file body"
    assert server.response is made[0]
    assert server.used_file_wrapper
    assert Filelike.closes == 1


def test_file_wrapper_of_a_file_without_close_still_ends_the_request():
    class Readable:
        def __init__(self):
            self.data = [b"only", b""]

        def read(self, size):
            return self.data.pop(0)

    def application(environ, start_response):
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](Readable())

    server = Server()
    assert server.serve(WSGIApplicationWrapper(application)) == [b"only"]
    assert server.used_file_wrapper


def test_file_wrapper_that_takes_no_attributes_is_served_as_a_plain_body():
    class SlottedWrapper:
        __slots__ = ("filelike", "closed")

        def __init__(self, filelike, blksize=8192):
            self.filelike = filelike
            self.closed = 0

        def __iter__(self):
            return iter([self.filelike.read()])

        def close(self):
            self.closed += 1

    made = []

    def application(environ, start_response):
        start_response("200 OK", [])
        made.append(environ["wsgi.file_wrapper"](io.BytesIO(b"slotted")))
        return made[0]

    server = Server()
    assert server.serve(WSGIApplicationWrapper(application), environ(**{"wsgi.file_wrapper": SlottedWrapper})) == [b"slotted"]
    assert server.response is not made[0]
    assert made[0].closed == 1


def test_generator_response_streams_one_chunk_at_a_time():
    produced = []

    def application(environ, start_response):
        start_response("200 OK", [])
        for n in range(3):
            produced.append(n)
            yield b"%d" % n

    response = WSGIApplicationWrapper(application)(environ(), Server().start_response)
    assert produced == []
    chunks = iter(response)
    assert next(chunks) == b"0" and produced == [0]
    assert next(chunks) == b"1" and produced == [0, 1]
    response.close()
    assert produced == [0, 1]  # closed early, as on a client disconnect
    with pytest.raises(StopIteration):
        next(chunks)


def test_closing_a_generator_response_early_runs_its_finally_once():
    finished = []

    def application(environ, start_response):
        start_response("200 OK", [])
        try:
            yield b"first"
            yield b"second"
        finally:
            finished.append(True)

    response = WSGIApplicationWrapper(application)(environ(), Server().start_response)
    assert next(iter(response)) == b"first"
    assert active_request_count() == 1
    response.close()
    assert finished == [True]
    assert active_request_count() == 0


def test_list_response_keeps_its_length_and_other_responses_have_none():
    listed = WSGIApplicationWrapper(app_returning([b"a", b"b"]))(environ(), Server().start_response)
    assert len(listed) == 2
    listed.close()
    generated = WSGIApplicationWrapper(app_returning(iter([b"a"])))(environ(), Server().start_response)
    assert not hasattr(generated, "__len__")
    generated.close()


def test_response_dropped_without_close_is_no_longer_registered():
    response = WSGIApplicationWrapper(app_returning(Closing([b"x"])))(environ(), Server().start_response)
    assert active_request_count() == 1
    del response
    assert active_request_count() == 0


def test_keyword_arguments_reach_the_application():
    def application(environ, start_response):
        start_response("200 OK", [])
        return [environ["PATH_INFO"].encode()]

    server = Server()
    response = WSGIApplicationWrapper(application)(environ=environ(PATH_INFO="/kw"), start_response=server.start_response)
    assert list(response) == [b"/kw"]
    response.close()


def test_decorator_form_and_methods_bind_their_instance():
    class Site:
        greeting = b"hello"

        @wsgi_application()
        def __call__(self, environ, start_response):
            start_response("200 OK", [])
            return [self.greeting]

    @wsgi_application()
    def function(environ, start_response):
        start_response("200 OK", [])
        return [b"function"]

    assert isinstance(function, WSGIApplicationWrapper)
    assert Server().serve(function) == [b"function"]
    assert Server().serve(Site()) == [b"hello"]
    assert Site.__dict__["__call__"].__wrapped__.__name__ == "__call__"


def test_wrapping_something_that_is_not_callable_says_what_is_expected():
    with pytest.raises(TypeError, match="a callable taking \\(environ, start_response\\)"):
        WSGIApplicationWrapper("application")


def test_nothing_stays_behind_after_many_requests():
    env = environ()
    application = WSGIApplicationWrapper(app_returning([b"x"]))
    references = sys.getrefcount(env)
    for _ in range(20_000):
        Server().serve(application, env)
    assert active_request_count() == 0
    assert sys.getrefcount(env) == references


def test_a_subclass_of_the_wrapper_serves_and_records_its_requests():
    class Mine(WSGIApplicationWrapper):
        pass

    seen = []

    def application(environ, start_response):
        seen.append(active_request_count())
        start_response("200 OK", [])
        return Closing([b"sub"])

    wrapper = Mine(application)
    assert isinstance(wrapper, WSGIApplicationWrapper)
    assert Server().serve(wrapper) == [b"sub"]
    assert seen == [1]
    assert active_request_count() == 0


def test_a_second_end_after_the_slot_is_reused_leaves_the_new_request_alone():
    from ispyd._native import asgi_track, asgi_untrack

    first_number, first = asgi_track({"type": "http", "path": "/a"}, None)
    asgi_untrack(first)
    second_number, second = asgi_track({"type": "http", "path": "/b"}, None)
    assert second_number == first_number + 1
    assert active_request_count() == 1
    asgi_untrack(first)
    assert active_request_count() == 1
    asgi_untrack(second)
    assert active_request_count() == 0


def test_a_response_in_a_reference_cycle_is_collected_and_its_request_ends():
    class SelfReferring:
        def __init__(self) -> None:
            self.response: Any = None

        def __iter__(self):
            return iter([b"x"])

    inner = SelfReferring()
    response = WSGIApplicationWrapper(app_returning(inner))(environ(), Server().start_response)
    inner.response = response
    assert active_request_count() == 1
    del inner, response
    gc.collect()
    assert active_request_count() == 0


# The `requests` command, in-process.


class HeldRequests:
    """Requests held open on threads of their own, inside the application,
    until ``release()``."""

    def __init__(self) -> None:
        self.release_event = threading.Event()
        self.threads: List[threading.Thread] = []
        self.idents: Dict[str, int] = {}
        self.application = WSGIApplicationWrapper(self._application)

    def _application(self, environ, start_response):
        self.idents[environ["PATH_INFO"]] = threading.get_ident()
        hold_the_request(self.release_event)
        start_response("200 OK", [])
        return [b"released"]

    def start(self, path: str, **extra: Any) -> None:
        before = active_request_count()
        thread = threading.Thread(target=Server().serve, args=(self.application, environ(PATH_INFO=path, **extra)))
        thread.start()
        self.threads.append(thread)
        wait_until(lambda: active_request_count() > before, f"the request {path} to start")

    def release(self) -> None:
        self.release_event.set()
        for thread in self.threads:
            thread.join(WAIT)


def hold_the_request(release):
    release.wait(WAIT)


@pytest.fixture
def held():
    requests = HeldRequests()
    yield requests
    requests.release()


def run_requests(line: str = "") -> str:
    plugin = WSGIPlugin()
    plugin.stdout = io.StringIO()
    plugin.do_requests(line)
    return plugin.stdout.getvalue()


def test_requests_when_idle_says_no_active_transactions():
    assert run_requests() == "No active transactions.\n\n"


def test_requests_shows_the_2012_block_for_an_active_request(held):
    held.start("/held", HTTP_USER_AGENT="pytest")
    out = run_requests()
    block = re.compile(
        r"\A\n==== (\d+) ====\n\n"
        r"thread_id = (\d+)\n"
        r"start_time = \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\n"
        r"duration = \d+\.\d{6} seconds\n\n"
        r"(?P<environ>(?:[^\n]+ = [^\n]*\n)+)\n"
        r"(?P<stack>(?:File: \"[^\"]+\", line \d+, in \S+\n(?:  [^\n]+\n)?)+)\n\Z"
    )
    match = block.match(out)
    assert match, out
    assert int(match.group(2)) == held.idents["/held"]
    environ_lines = match.group("environ").splitlines()
    keys = [line.split(" = ", 1)[0] for line in environ_lines]
    assert keys == sorted(keys)
    assert "PATH_INFO = '/held'" in environ_lines
    assert "HTTP_USER_AGENT = 'pytest'" in environ_lines
    assert "wsgi.version = (1, 0)" in environ_lines
    stack = match.group("stack")
    # Innermost last: the wait inside the application.
    assert re.search(r'in hold_the_request\n  release\.wait\(WAIT\)\n', stack), stack
    assert stack.index("in _application") < stack.index("in hold_the_request")
    assert "in serve" in stack


def test_requests_lists_requests_oldest_first(held):
    held.start("/first")
    held.start("/second")
    out = run_requests()
    numbers = [int(n) for n in re.findall(r"^==== (\d+) ====$", out, re.M)]
    assert len(numbers) == 2 and numbers[0] < numbers[1]
    assert out.index("PATH_INFO = '/first'") < out.index("PATH_INFO = '/second'")


def test_requests_with_seconds_shows_only_older_requests(held):
    held.start("/young")
    assert run_requests("3600") == "No active transactions older than 3600 seconds (1 younger).\n\n"
    assert "PATH_INFO = '/young'" in run_requests("0")
    assert "PATH_INFO = '/young'" in run_requests("  0.0  ")
    assert run_requests("2.5e20") == "No active transactions older than 2.5e20 seconds (1 younger).\n\n"


def test_requests_with_a_bad_age_fails_saying_how_to_use_it():
    for bad in ("soon", "-1", "inf", "nan"):
        with pytest.raises(CommandError) as failed:
            run_requests(bad)
        assert str(failed.value).startswith(f"requests: {bad!r} is not a number of seconds"), failed.value


def test_requests_survives_an_environ_value_whose_repr_fails(held):
    class Broken:
        def __repr__(self):
            raise RuntimeError("no repr")

    held.start("/broken", **{"x.broken": Broken()})
    out = run_requests()
    assert "x.broken = <repr() failed: RuntimeError: no repr>" in out, out
    assert "PATH_INFO = '/broken'" in out


def test_help_for_requests_explains_the_age_argument():
    help_text = _support.describe(WSGIPlugin())["commands"]
    (name, text, gate), = [command for command in help_text if command[0] == "requests"]
    assert gate is None
    assert "requests [SECONDS]" in text and "'requests 5'" in text


FORK_SCRIPT = """
import os, sys, threading
from ispyd.manager import ShellManager
from ispyd.plugins.wsgi import WSGIApplicationWrapper, active_request_count

manager = ShellManager(sys.argv[1])
held, release = threading.Event(), threading.Event()

def hold(environ, start_response):
    held.set()
    release.wait(30)
    start_response("200 OK", [])
    return [b"held"]

def fork_inside_a_request(environ, start_response):
    before = active_request_count()
    pid = os.fork()
    if pid == 0:
        # Only this thread's own request exists in the child.
        print("child", before, active_request_count(), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
    start_response("200 OK", [])
    return [b"forked"]

def serve(application):
    response = application({"PATH_INFO": "/"}, lambda *args: None)
    list(response)
    response.close()

thread = threading.Thread(target=serve, args=(WSGIApplicationWrapper(hold),))
thread.start()
held.wait(30)
serve(WSGIApplicationWrapper(fork_inside_a_request))
print("parent", active_request_count(), flush=True)
release.set()
thread.join(30)
print("end", active_request_count(), flush=True)
manager.shutdown()
"""


def test_forked_child_forgets_the_requests_of_the_threads_it_has_not(write_config, workdir):
    script = workdir / "fork_in_request.py"
    script.write_text(FORK_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(write_config())],
        capture_output=True, text=True, timeout=WAIT, cwd=workdir,
    )
    assert done.returncode == 0, done
    assert done.stdout.splitlines() == ["child 2 1", "parent 1", "end 0"], done


def test_requests_in_a_process_that_wrapped_no_application_says_how_to(write_config, start_app):
    app = start_app(write_config())
    out = run_ispy(app.socket(), ["connect", "shell wsgi", "requests"]).stdout
    assert "No active transactions.\n" in out, out
    assert "(No WSGI or ASGI application in this process is wrapped: see 'help requests'.)" in out, out
