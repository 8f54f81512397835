"""The ShellManager's life: it runs until shutdown() or exit whatever
references the application keeps, never takes a socket a live process
holds, and reports what looks wrong in its configuration."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import WAIT, child_env, run_ispy, wait_for_socket


def test_manager_without_a_reference_keeps_listening(write_config, start_app):
    app = start_app(write_config(), "--unreferenced")
    wait_for_socket(Path(app.address))
    result = run_ispy(app.address, ["connect", "shell process", "pid"])
    assert result.stdout == f"{app.pid}\n", result
    app.close_stdin()
    assert app.wait() == 0, app.output()
    assert not Path(app.address).exists()


def test_address_held_by_a_live_process_raises_listen_error(write_config, start_app, workdir):
    address = workdir / "fixed.sock"
    config = write_config(f"[ispyd]\nlisten = {address}\n")
    first = start_app(config)
    second = subprocess.run(
        [sys.executable, "-c", f"from ispyd.manager import ShellManager; ShellManager({str(config)!r})"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        env=child_env(),
    )
    assert second.returncode == 1
    assert "ispyd.ListenError" in second.stderr, second.stderr
    assert f"{address} is in use by a live process" in second.stderr, second.stderr
    # What a fixed path under a prefork server needs instead.
    assert "put %(pid)s in the path" in second.stderr, second.stderr
    # The first keeps its socket.
    assert run_ispy(address, ["connect", "shell process", "pid"]).stdout == f"{first.pid}\n"


def test_stale_socket_is_replaced(write_config, start_app, workdir):
    address = workdir / "fixed.sock"
    config = write_config(f"[ispyd]\nlisten = {address}\n")
    first = start_app(config)
    first.kill()  # SIGKILL: the socket file stays, nobody listening.
    assert address.exists()
    second = start_app(config)
    assert run_ispy(address, ["connect", "shell process", "pid"]).stdout == f"{second.pid}\n"


def reported_warnings(app) -> list:
    """The ``ShellManager.warnings`` the test app printed at start."""
    return [line for line in app.stdout.snapshot() if line.startswith("WARNING ")]


def started_with_an_unknown_key(write_config, start_app, workdir, keys: str = "", sections: str = ""):
    """Starts the test app with the misspelt ``[ispyd] max_session`` besides
    ``keys`` and ``sections``, checks that it was reported as an unknown
    key, and returns the configuration's path, the app and its warnings."""
    config = write_config(f"[ispyd]\nlisten = {workdir}/ispyd-%(pid)s.sock\n{keys}max_session = 3\n{sections}")
    app = start_app(config)
    warnings = reported_warnings(app)
    assert any("[ispyd] max_session" in w and "unknown key" in w for w in warnings), app.output()
    return config, app, warnings


def test_unknown_keys_and_sections_are_warnings(write_config, start_app, workdir):
    config, app, warnings = started_with_an_unknown_key(
        write_config, start_app, workdir, sections="[nosuchplugin]\nenabled = true\n"
    )
    assert any("[nosuchplugin]" in w for w in warnings), app.output()
    # Also on stderr, as start-up messages.
    assert f"ispyd: warning: {config}: [ispyd] max_session" in app.stderr.text(), app.output()


def test_a_manager_waiting_for_activate_on_warns_at_start_and_once(write_config, start_app, workdir):
    config, app, _ = started_with_an_unknown_key(write_config, start_app, workdir, keys="activate_on = SIGUSR2\n")
    line = f"ispyd: warning: {config}: [ispyd] max_session"
    assert app.stderr.text().count(line) == 1, app.output()
    socket = workdir / f"ispyd-{app.pid}.sock"
    os.kill(app.pid, signal.SIGUSR2)
    wait_for_socket(socket)
    app.stderr.wait_for(r"^ispyd: SIGUSR2 received: listening on ", "the activation message")
    assert app.stderr.text().count(line) == 1, app.output()
