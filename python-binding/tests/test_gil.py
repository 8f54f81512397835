"""A thread that holds the GIL for long (a C call that does not release it)
must not hang a session: a Python command gives up after call_timeout and
says what it waits for; the process plugin, which needs no GIL, answers."""

from __future__ import annotations

import platform
from pathlib import Path

from conftest import run_ispy, wait_until

#: Longer than any bound of the test: if anything in ispy or the session
#: waited for the GIL, the ispy run would hit its own bound and fail.
HOLD_SECONDS = 120

#: nanosleep and clock_nanosleep, by machine.
SLEEP_SYSCALLS = {"x86_64": {"35", "230"}, "aarch64": {"101", "115"}}


def in_sleep(pid: int, tid: int) -> bool:
    """Whether thread ``tid`` is inside libc's sleep(), i.e. holds the GIL
    in the C call (not still on its way there)."""
    task = Path(f"/proc/{pid}/task/{tid}")
    numbers = SLEEP_SYSCALLS.get(platform.machine())
    if numbers is not None:
        return (task / "syscall").read_text().split(" ")[0] in numbers
    return "sleep" in (task / "wchan").read_text()


def hold_gil(app) -> None:
    tid = int(app.command(f"gil {HOLD_SECONDS}", r"^GIL (\d+)$").group(1))
    wait_until(lambda: in_sleep(app.pid, tid), "the app's thread to hold the GIL in sleep()")


def test_python_command_gives_up_and_names_the_gil(write_config, start_app):
    app = start_app(write_config(call_timeout=1))
    hold_gil(app)
    result = run_ispy(app.address, ["connect", "shell python", "version"])
    assert result.code == 0, result
    message = result.stdout + result.stderr
    assert "'version' (python plugin) did not answer within 1 s" in message, result
    assert "still running, or waiting for the Python interpreter (the GIL)" in message, result


def test_process_plugin_answers_while_the_gil_is_held(write_config, start_app):
    app = start_app(write_config(call_timeout=1))
    hold_gil(app)
    result = run_ispy(
        app.address, ["connect", "shell python", "version", "help version", "exit", "shell process", "pid"]
    )
    assert result.code == 0, result
    assert "The interpreter's version (sys.version)." in result.stdout, result
    assert result.stdout.rstrip().splitlines()[-1] == str(app.pid), result


def test_new_sessions_are_served_after_a_call_was_given_up(write_config, start_app):
    app = start_app(write_config(call_timeout=1))
    hold_gil(app)
    first = run_ispy(app.address, ["connect", "shell python", "platform"])
    assert "did not answer" in first.stdout + first.stderr, first
    second = run_ispy(app.address, ["connect", "shell process", "pid"])
    assert second.code == 0 and second.stdout == f"{app.pid}\n", second
