"""Stopping: ShellManager.shutdown(), the context manager, interpreter exit
and SIGTERM, each with a client connected: no hang, no crash, and the
socket file is gone afterwards."""

from __future__ import annotations

import signal
import threading
import subprocess
from pathlib import Path

import pytest

from conftest import WAIT, ConsoleClient, Lines, is_listening, ispy_command, run_ispy, wait_until

CRASH_SIGNS = ("Fatal Python error", "panicked", "Segmentation fault", "Traceback", "core dumped")


class Connected(ConsoleClient):
    """An ``ispy`` holding a session open, inside the python console."""

    def end(self) -> int:
        """Ends ispy's input; returns its exit status."""
        self.proc.stdin.close()
        return self.proc.wait(timeout=WAIT)


@pytest.fixture
def connect():
    made = []
    yield lambda address: made.append(Connected(address)) or made[-1]
    for client in made:
        client.kill()


def assert_no_crash(app) -> None:
    text = app.stderr.text()
    assert not any(sign in text for sign in CRASH_SIGNS), app.output()


def test_shutdown_with_a_client_connected_removes_the_socket(write_config, start_app, connect):
    app = start_app(write_config(console=True))
    client = connect(app.address)
    app.command("shutdown", r"^SHUT DOWN False$")
    assert not Path(app.address).exists()
    # The client's session was ended; ispy goes back to its local shell and
    # leaves at the end of its input.
    assert client.end() == 0
    assert app.proc.poll() is None
    assert_no_crash(app)


def test_shutdown_twice_does_nothing_more(write_config, start_app):
    app = start_app(write_config())
    app.command("shutdown", r"^SHUT DOWN False$")
    app.command("shutdown", r"^SHUT DOWN False$")
    app.close_stdin()
    assert app.wait() == 0, app.output()
    assert_no_crash(app)


def test_new_connections_are_refused_after_shutdown(write_config, start_app):
    app = start_app(write_config())
    address = Path(app.address)
    app.command("shutdown", r"^SHUT DOWN False$")
    assert not address.exists()
    assert run_ispy(address, ["connect", "shell process", "pid"]).code != 0


def test_context_manager_shuts_down_when_the_block_ends(write_config, start_app, connect):
    app = start_app(write_config(console=True), "--with")
    client = connect(app.address)
    app.close_stdin()
    app.stdout.wait_for(r"^LEFT WITH False$")
    assert not Path(app.address).exists()
    assert app.wait() == 0, app.output()
    client.end()
    assert_no_crash(app)


def test_interpreter_exit_with_a_client_connected(write_config, start_app, connect):
    app = start_app(write_config(console=True))
    client = connect(app.address)
    app.close_stdin()
    assert app.wait() == 0, app.output()
    assert not Path(app.address).exists()
    client.end()
    assert_no_crash(app)


def test_sys_exit_with_a_client_in_a_command(write_config, start_app, connect):
    app = start_app(write_config(console=True))
    client = connect(app.address)
    # The console runs a line that is still running when the app exits.
    client.proc.stdin.write("import time; time.sleep(3); print('never shown')\n")
    client.proc.stdin.flush()
    app.send("exit 0")
    assert app.wait() == 0, app.output()
    assert not Path(app.address).exists()
    client.end()
    assert_no_crash(app)


def test_sigterm_with_the_usual_handler_exits_cleanly(write_config, start_app, connect):
    app = start_app(write_config(console=True), "--sigterm")
    client = connect(app.address)
    app.signal(signal.SIGTERM)
    assert app.wait() == 0, app.output()
    assert not Path(app.address).exists()
    client.end()
    assert_no_crash(app)


def test_idle_sigterm_with_the_usual_handler_exits_cleanly(write_config, start_app):
    app = start_app(write_config(), "--sigterm")
    assert is_listening(Path(app.address))
    app.signal(signal.SIGTERM)
    assert app.wait() == 0, app.output()
    assert not Path(app.address).exists()
    assert_no_crash(app)


def test_signals_reach_the_application_while_clients_connect(write_config, start_app):
    # A signal for the process goes to any thread that does not block it.
    # Right after a connection, ispyd's listener thread is waking up; if it
    # took the signal, CPython would only flag it, and the main thread,
    # blocked reading stdin, would never run the handler.
    app = start_app(write_config(), "--usr1")
    for n in range(1, 31):
        assert is_listening(Path(app.address))
        app.signal(signal.SIGUSR1)
        wait_until(lambda: app.stdout.snapshot().count("USR1") == n, f"SIGUSR1 number {n} to be handled")
    app.close_stdin()
    assert app.wait() == 0, app.output()


def test_exit_while_clients_run_python_commands(write_config, start_app):
    # Session threads keep asking for the GIL while the interpreter ends.
    app = start_app(write_config())
    commands = "connect\nshell python\n" + "version\nmodules\nthreads\n" * 300
    clients = [
        subprocess.Popen(
            [ispy_command(), app.address],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        outputs = [Lines(client.stdout) for client in clients]
        writers = [threading.Thread(target=feed, args=(client, commands)) for client in clients]
        for writer in writers:
            writer.start()
        for out in outputs:
            out.wait_for(r"^3\.\d+\.\d+", "each client to get answers")
        app.close_stdin()
        assert app.wait() == 0, app.output()
        assert not Path(app.address).exists()
        assert_no_crash(app)
    finally:
        for client in clients:
            client.kill()
            client.wait(timeout=WAIT)


def feed(client: subprocess.Popen, text: str) -> None:
    """Writes ``text`` to ``client``'s stdin, whenever it reads it."""
    try:
        client.stdin.write(text)
        client.stdin.close()
    except (BrokenPipeError, ValueError):
        pass


def test_exit_while_a_console_runs_forever(write_config, start_app, connect):
    # The interpreter cannot finalize under a call that never ends: exit
    # stops it (SystemExit in that thread) instead of crashing or hanging.
    app = start_app(write_config(console=True))
    client = connect(app.address)
    client.proc.stdin.write("while True: pass\n\n")
    client.proc.stdin.flush()
    app.close_stdin()
    assert app.wait() == 0, app.output()
    assert not Path(app.address).exists()
    client.end()
    assert_no_crash(app)
