"""Processes created by fork(): with ``%(pid)s`` in ``listen`` a child gets
a listener of its own under its own pid; a child that execs another
program, or ends without Python's exit handlers, leaves nothing behind."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from conftest import run_ispy, servers, wait_for_socket, wait_until


def exec_done(pid: int, program: str) -> bool:
    """Whether process ``pid`` now runs ``program`` (it has exec'd)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == program.encode()
    except FileNotFoundError:
        return False


def test_multiprocessing_child_gets_its_own_listener(write_config, start_app, workdir):
    config = write_config(console=True)
    app = start_app(config)
    child = app.command("mpchild", r"^MPCHILD (\d+) (.*)$")
    pid, address = int(child.group(1)), Path(child.group(2))
    assert address == workdir / f"ispyd-{pid}.sock"
    wait_for_socket(address)
    assert set(servers(config)) == {app.pid, pid}

    result = run_ispy(address, ["connect", "shell process", "pid", "exit", "shell python", "console", "import os; os.getpid()", "exit()"])
    assert result.stdout.splitlines() == [str(pid)] + result.stdout.splitlines()[1:-1] + [str(pid)], result
    # The parent's shell is still the parent's.
    assert run_ispy(app.address, ["connect", "shell process", "pid"]).stdout == f"{app.pid}\n"


def test_multiprocessing_child_leaves_no_socket(write_config, start_app, workdir):
    app = start_app(write_config())
    child = app.command("mpchild", r"^MPCHILD (\d+) (.*)$")
    address = wait_for_socket(Path(child.group(2)))
    # multiprocessing ends the child with os._exit(): no atexit handler runs.
    app.command("mpstop", r"^MPSTOPPED 0$")
    wait_until(lambda: not address.exists(), f"{address} to be removed")
    assert sorted(workdir.glob("*.sock")) == [Path(app.address)]


def test_child_that_execs_leaves_nothing_behind(write_config, start_app, workdir):
    config = write_config()
    app = start_app(config)
    pid = int(app.command("forkexec 60", r"^CHILD (\d+)$").group(1))
    wait_until(lambda: exec_done(pid, "sleep"), "the child to exec sleep")
    # The exec'd program is alive under the same pid, but no socket of it.
    child_socket = workdir / f"ispyd-{pid}.sock"
    wait_until(lambda: not child_socket.exists(), f"{child_socket} to be removed")
    assert sorted(workdir.glob("*.sock")) == [Path(app.address)]
    assert set(servers(config)) == {app.pid}
    listing = run_ispy(config, ["servers"]).stdout
    assert str(pid) not in listing, listing
    os.kill(pid, 9)


def test_subprocess_with_preexec_fn_leaves_nothing_behind(write_config, start_app, workdir):
    app = start_app(write_config())
    app.command("preexec", r"^PREEXEC 0$")
    wait_until(
        lambda: sorted(workdir.glob("*.sock")) == [Path(app.address)],
        "only the app's own socket to remain",
    )


def test_child_of_a_fixed_address_does_not_listen(write_config, start_app, workdir):
    address = workdir / "fixed.sock"
    config = write_config(f"[ispyd]\nlisten = {address}\n")
    app = start_app(config)
    child = app.command("mpchild", r"^MPCHILD (\d+) ?(.*)$")
    assert child.group(2) == ""
    # The parent says, once, that its children cannot listen there.
    warning = app.stderr.wait_for(r"listen is a fixed path", "the fixed-path warning")
    assert "put %(pid)s in the path" in warning.string, warning.string
    # The parent alone keeps serving the fixed address.
    result = run_ispy(address, ["connect", "shell process", "pid"])
    assert result.stdout == f"{app.pid}\n", result
    app.command("mpstop", r"^MPSTOPPED 0$")
    assert sorted(workdir.glob("*.sock")) == [address]
    assert run_ispy(address, ["connect", "shell process", "pid"]).stdout == f"{app.pid}\n"


RAW_FORK = """
import ctypes, os, sys
from ispyd.manager import ShellManager

manager = ShellManager(sys.argv[1])
# fork() from C, as uWSGI forks its workers: no at-fork hook runs.
pid = ctypes.CDLL(None).fork()
if pid == 0:
    manager.shutdown()
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("CHILD", pid, os.waitstatus_to_exitcode(status), manager.address, flush=True)
sys.stdin.read()
"""


def test_a_child_forked_from_c_stops_without_harm_to_its_parent(write_config, spawn, workdir):
    # The child has none of its parent's threads and shares its descriptors:
    # its shutdown() must neither wait for those threads nor stop the
    # parent's shell.
    config = write_config()
    (workdir / "raw_fork.py").write_text(RAW_FORK)
    process = spawn([sys.executable, str(workdir / "raw_fork.py"), str(config)])
    child = process.stdout.wait_for(r"^CHILD (\d+) (-?\d+) (.*)$", "the child forked from C to end")
    assert child.group(2) == "0", process.output()
    address = wait_for_socket(Path(child.group(3)))
    assert run_ispy(address, ["connect", "shell process", "pid"]).stdout == f"{process.pid}\n"
    assert "panicked" not in process.stderr.text(), process.output()
