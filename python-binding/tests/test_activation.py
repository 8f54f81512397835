"""Starting ispyd without a line in the application: ``ISPYD_CONFIG`` (a
``.pth`` hook installed with the package), ``ISPYD_WSGI=1`` (gunicorn's
application wrapped), and ``[ispyd] activate_on`` (nothing listens until
the signal comes)."""

from __future__ import annotations

import os
import re
import signal
import site
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

from conftest import APPS, WAIT, child_env, ispy_command, run_ispy, wait_for_socket, wait_until

#: A program that never mentions ispyd: it starts a child Python process
#: like itself (unless told not to), says its pid, and waits for stdin.
PLAIN = """
import os, subprocess, sys
if len(sys.argv) < 2:
    child = subprocess.Popen([sys.executable, __file__, "child"], stdin=subprocess.PIPE)
print("up", os.getpid(), flush=True)
sys.stdin.read()
"""


def test_the_hook_is_installed_and_without_the_variable_imports_nothing():
    assert any((Path(p) / "ispyd-activate.pth").exists() for p in site.getsitepackages())
    done = subprocess.run(
        [sys.executable, "-c", "import sys; print(sorted(m for m in sys.modules if m.startswith('ispyd')))"],
        env=child_env(), capture_output=True, text=True, timeout=WAIT,
    )
    assert done.stdout == "[]\n" and done.stderr == "", done


def test_a_program_that_never_mentions_ispyd_gets_a_shell_and_so_does_its_child(write_config, spawn, workdir):
    config = write_config()
    (workdir / "plain.py").write_text(PLAIN)
    program = spawn([sys.executable, str(workdir / "plain.py")], ISPYD_CONFIG=str(config))
    pids = [int(m) for m in wait_until(lambda: (lambda found: found if len(found) == 2 else None)(
        re.findall(r"^up (\d+)$", program.stdout.text(), re.M)), "the program and its child")]
    for pid in pids:
        wait_for_socket(workdir / f"ispyd-{pid}.sock")
        result = run_ispy(workdir / f"ispyd-{pid}.sock", [], WAIT, "-c", "shell process", "-c", "pid")
        assert result.code == 0 and result.stdout.strip() == str(pid), result
    assert program.stderr.text() == ""


def test_a_bad_configuration_is_said_once_and_the_program_runs(write_config, workdir):
    config = write_config("[ispyd]\nlisten = /tmp/ispyd-test.sock\nmax_sessions = lots\n")
    done = subprocess.run([sys.executable, "-c", "print('the app ran')"], env=child_env(ISPYD_CONFIG=str(config)),
                          capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 0 and done.stdout == "the app ran\n", done
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "max_sessions" in lines[0] and "the program goes on without ispyd" in lines[0], lines


def test_the_ispy_client_does_not_start_a_shell_of_its_own(write_config, workdir):
    config = write_config()
    done = subprocess.run([ispy_command(), "--list", str(config)], env=child_env(ISPYD_CONFIG=str(config)),
                          capture_output=True, text=True, timeout=WAIT)
    assert list(workdir.glob("ispyd-*.sock")) == [], done


#: The frame of plain_flask_app's slow view, in a requests listing.
SLOW_FRAME = r'File: ".*plain_flask_app\.py", line \d+, in slow'


def test_ispyd_wsgi_wraps_an_unmodified_flask_app_under_gunicorn(write_config, spawn, workdir):
    assert "ispyd" not in (APPS / "plain_flask_app.py").read_text().split('"""', 2)[2]
    config = write_config()
    argv = [sys.executable, "-m", "gunicorn", "-w", "2", "-b", "127.0.0.1:0", "plain_flask_app:app"]
    gunicorn = spawn(argv, ISPYD_CONFIG=str(config), ISPYD_WSGI="1", WSGI_CONTROL=str(workdir))
    url = "http://127.0.0.1:" + gunicorn.stderr.wait_for(r"Listening at: http://127\.0\.0\.1:(\d+)", "gunicorn").group(1)
    workers = [int(p) for p in wait_until(
        lambda: (lambda found: found if len(found) == 2 else None)(
            re.findall(r"Booting worker with pid: (\d+)", gunicorn.stderr.text())), "two workers")]
    for pid in [gunicorn.pid, *workers]:
        wait_for_socket(workdir / f"ispyd-{pid}.sock")
    slow = threading.Thread(target=lambda: urllib.request.urlopen(url + "/slow?from=test", timeout=WAIT).read())
    slow.start()
    try:
        def in_flight():
            result = run_ispy(config, [], WAIT, "--all", "-c", "shell wsgi", "-c", "requests")
            # Listed from the moment the wrapper has it, which may be before
            # the view runs: wait for its frame too.
            found = "PATH_INFO = '/slow'" in result.stdout and re.search(SLOW_FRAME, result.stdout)
            return result.stdout if found else None

        listing = wait_until(in_flight, "the slow request in some worker's requests, in its view")
    finally:
        (workdir / "release").touch()
        slow.join(WAIT)
    assert "QUERY_STRING = 'from=test'" in listing
    assert re.search(SLOW_FRAME, listing), listing
    assert urllib.request.urlopen(url + "/", timeout=WAIT).read().startswith(b"hello from ")


def test_activate_on_listens_only_once_the_signal_comes(write_config, start_app, workdir):
    config = write_config(activate_on="SIGUSR2", dump_on="SIGABRT")
    app = start_app(config)
    socket = Path(app.address)
    assert socket == workdir / f"ispyd-{app.pid}.sock"
    names = lambda: sorted(Path(f"/proc/{app.pid}/task/{t}/comm").read_text().strip()
                           for t in os.listdir(f"/proc/{app.pid}/task"))
    assert not socket.exists()
    # The thread names itself as it starts, a moment after the app is ready.
    ours = lambda: [n for n in names() if n.startswith("ispyd")]
    wait_until(lambda: ours() == ["ispyd-activate"] or len(ours()) > 1, "the ispyd-activate thread's name")
    assert ours() == ["ispyd-activate"], names()
    # A forked child waits for a signal of its own.
    child = int(app.command("mpchild", r"^MPCHILD (\d+) ").group(1))
    os.kill(app.pid, signal.SIGUSR2)
    wait_for_socket(socket)
    app.stderr.wait_for(rf"^ispyd: SIGUSR2 received: listening on {re.escape(str(socket))}$", "the message")
    result = run_ispy(socket, [], WAIT, "-c", "shell process", "-c", "pid")
    assert result.code == 0 and result.stdout.strip() == str(app.pid), result
    assert not (workdir / f"ispyd-{child}.sock").exists()
    os.kill(child, signal.SIGUSR2)
    wait_for_socket(workdir / f"ispyd-{child}.sock")
    # A second signal changes nothing, and the process lives on.
    os.kill(app.pid, signal.SIGUSR2)
    app.command("print still-here", "^still-here$")
    app.command("mpstop", r"^MPSTOPPED 0$")
