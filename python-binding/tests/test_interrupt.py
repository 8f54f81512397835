"""Ctrl-C in ``ispy`` interrupts what runs, as at a local prompt, and a
console line never outlives the time it is given or the client that typed
it; a command that reports progress outlasts ``call_timeout``, and Ctrl-C
stops it with its answer. Driven as a person drives it: the installed
``ispy`` on a terminal (tmux), against a real process."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from conftest import WAIT, open_shell, run_ispy, wait_until
from test_debugger import (  # noqa: F401 - shells and start_host are fixtures
    debug_on_a_terminal,
    debugger_config,
    debugger_shell,
    failed_function,
    pid_of,
    shells,
    start_host,
)


def cpu_ticks(pid: int) -> int:
    """User plus system clock ticks the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def stops_burning(pid: int) -> bool:
    """True once the process uses (almost) no CPU over a quarter second:
    polled with a bound, never timed."""
    before = cpu_ticks(pid)
    time.sleep(0.25)
    return cpu_ticks(pid) - before <= 2




def test_ctrl_c_in_the_console_raises_keyboard_interrupt_and_the_session_goes_on(
    write_config, start_app, workdir, terminal
):
    app = start_app(write_config(console=True))
    pid = pid_of(app)
    term = open_shell(terminal, workdir, app.address, pid, "python")
    term.keys("console", "Enter")
    term.wait_last_line(">>>")
    term.keys("import time; time.sleep(30)", "Enter")
    wait_until(lambda: "Interrupting" not in term.screen() and term.last_line() == ">>> import time; time.sleep(30)", "the sleep to run")
    term.keys("C-c")
    term.wait_last_line(">>>")
    screen = term.screen()
    assert "KeyboardInterrupt" in screen, screen
    assert "connection closed" not in screen, screen
    term.keys("6 * 7", "Enter")
    term.wait_last_line(">>>")
    assert "\n42\n>>>" in term.screen(), term.screen()


def test_ctrl_c_in_pdb_interrupts_the_command_and_pdb_asks_again(write_config, start_host, shells, terminal, workdir):
    host = start_host(debugger_config(write_config, command_timeout=60))
    failed_function(host, debugger_shell(shells, host.address))
    pid = pid_of(host)
    term = open_shell(terminal, workdir, host.address, pid, "debugger")
    debug_on_a_terminal(term)
    term.keys("!while True: pass", "Enter")
    wait_until(lambda: not stops_burning(host.pid), "the loop to run")
    term.keys("C-c")
    term.wait_last_line("(Pdb)")
    assert "KeyboardInterrupt" in term.screen(), term.screen()
    wait_until(lambda: stops_burning(host.pid), "the loop to stop")
    term.keys("p 6 * 7", "Enter")
    term.wait_last_line("(Pdb)")
    assert "\n42\n(Pdb)" in term.screen(), term.screen()


def framed_console(address: str, *lines: str) -> socket.socket:
    """A framed session in the console that has sent ``lines`` and keeps
    the connection open (the caller closes it)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(WAIT)
    sock.connect(address)
    sock.sendall(b"\0ISPY/1\n")
    for line in ("shell python", "console", *lines):
        data = line.encode()
        sock.sendall(len(data + b" ").to_bytes(4, "big") + b"\x01" + data)
    return sock


def test_a_console_line_given_up_on_at_call_timeout_is_interrupted(write_config, start_app):
    app = start_app(write_config(console=True, call_timeout=1))
    # A compound statement: the empty line ends it, as at Python's prompt.
    sock = framed_console(app.address, "while True: pass", "")
    try:
        wait_until(lambda: not stops_burning(app.pid), "the loop to run")
        # The shell gives up on the line after call_timeout and interrupts it.
        wait_until(lambda: stops_burning(app.pid), "the loop to be interrupted after call_timeout")
    finally:
        sock.close()
    assert "Traceback" not in app.stderr.text(), app.output()


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"the server closed after {data!r}"
        data += chunk
    return data


def frames_until_prompt(sock: socket.socket) -> list:
    """The server's frames, ``(type, text)``, up to and with the next
    ``Prompt``."""
    frames = []
    while not frames or frames[-1][0] != 0x83:
        frame = recv_exactly(sock, int.from_bytes(recv_exactly(sock, 4), "big"))
        frames.append((frame[0], frame[1:].decode()))
    return frames


def test_ctrl_d_sent_while_a_console_line_outlives_call_timeout_leaves_one_level(write_config, start_app):
    app = start_app(write_config(console=True, call_timeout=1))
    sock = framed_console(app.address, "import time; time.sleep(30)")
    try:
        hello = b""  # after the text-mode prompt every session starts with
        while not hello.endswith(b"\0ISPY/1\n"):
            hello += sock.recv(1)
        while not any(kind == 0x83 and text == ">>> " for kind, text in frames_until_prompt(sock)):
            pass
        sock.sendall((1).to_bytes(4, "big") + b"\x03")  # Ctrl-D, while the line sleeps
        given_up = frames_until_prompt(sock)
        assert given_up[0][0] == 0x82 and "The line did not finish within 1 s" in given_up[0][1], given_up
        assert given_up[-1] == (0x83, f"(python:{app.pid}) "), given_up
        # The Ctrl-D's own answer: a prompt, at the same level.
        assert frames_until_prompt(sock) == [(0x83, f"(python:{app.pid}) ")]
        data = b"version"
        sock.sendall(len(data + b" ").to_bytes(4, "big") + b"\x01" + data)
        answer = frames_until_prompt(sock)
        # Still in the python shell: the Ctrl-D, meant for the console
        # that the give-up left, did not leave the shell as well.
        assert answer[-1] == (0x83, f"(python:{app.pid}) "), answer
        assert any(kind == 0x81 and text.startswith("3.") for kind, text in answer), answer
    finally:
        sock.close()


def test_a_console_line_left_by_its_client_is_interrupted(write_config, start_app):
    app = start_app(write_config(console=True, call_timeout=3600))
    # A compound statement: the empty line ends it, as at Python's prompt.
    sock = framed_console(app.address, "while True: pass", "")
    wait_until(lambda: not stops_burning(app.pid), "the loop to run")
    sock.close()
    wait_until(lambda: stops_burning(app.pid), "the loop to be interrupted when its client left")
    # The process and its shell are fine.
    assert app.proc.poll() is None
    assert os.path.exists(app.address)


LONG = "tests_plugins.long:LongPlugin"


def test_a_python_command_that_reports_progress_outlasts_call_timeout(write_config, start_app):
    app = start_app(write_config(plugins=f"%(builtins)s {LONG}", call_timeout="0.5"))
    result = run_ispy(app.address, [], WAIT, "-c", "shell long", "-c", "work 1.5")
    assert result.code == 0 and result.stdout == "worked 1.5 s\n", result
    # Text mode: each report is a line.
    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(app.address)
        conn.sendall(b"shell long\nwork 1\n")
        conn.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := conn.recv(65536):
            received += chunk
    text = received.decode()
    assert "working: 0.0 s of 1\n" in text and "worked 1 s\n" in text, text
    assert "did not answer" not in text, text


def test_ctrl_c_stops_a_python_command_that_reports_progress_with_its_answer(write_config, start_app, workdir, terminal):
    app = start_app(write_config(plugins=f"%(builtins)s {LONG}"))
    pid = pid_of(app)
    term = open_shell(terminal, workdir, app.address, pid, "long")
    term.keys("work 60", "Enter")
    wait_until(lambda: "working: " in term.screen() and " s of 60" in term.screen(), "the progress line")
    term.keys("C-c")
    term.wait_last_line(f"(long:{pid})")
    screen = term.screen()
    assert "stopped after " in screen and "gave up" not in screen, screen
