"""ispyd under a real Apache/mod_wsgi: ``mod_wsgi-express`` in daemon mode,
2 processes × 4 threads, serving a Flask application (``apps/
mod_wsgi_app.py``) whose WSGI script embeds ispyd as the 2012 README
shows, inspected with the installed ``ispy``.

mod_wsgi's request threads are Apache's, created outside Python: they have
a Python stack only while they serve a request, and ``threads`` lists the
others by native id and name instead of leaving them out.

``mod_wsgi-express`` comes from the second virtualenv ``test.sh`` makes,
from the system's ``/usr/bin/python3`` (with Debian's ``apache2`` and
``apache2-dev``): run as root, Apache runs its children and mod_wsgi's
daemon processes as an unprivileged user (it refuses to serve as root),
and that user must be able to read the interpreter, which a Python
installed under ``/root`` (pyenv's) is not.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import signal
import threading
import urllib.request
from pathlib import Path
from typing import Dict, List, Set

import pytest

from conftest import APPS, TESTS, WAIT, Process, free_port, run_ispy, servers, wait_until

EXPRESS = Path(os.environ.get("ISPYD_MOD_WSGI_VENV", TESTS.parents[1] / "target" / "mod-wsgi-venv")) / "bin" / "mod_wsgi-express"
PROCESSES = 2
THREADS = 4
SLEEP = 8.0


class Express:
    """A running ``mod_wsgi-express``: its Apache parent and its daemons."""

    def __init__(self, process: Process, port: int, config: Path, workdir: Path) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.config = config
        self.workdir = workdir
        wait_until(lambda: len(self.daemons()) == PROCESSES, f"{PROCESSES} daemon processes to listen")

    def daemons(self) -> Dict[int, Path]:
        return servers(self.config)

    def sockets(self) -> Set[int]:
        return {int(path.stem.split("-")[1]) for path in self.workdir.glob("ispyd-*.sock")}

    def get(self, path: str, timeout: float = WAIT) -> str:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
            return response.read().decode()

    def all(self, *commands: str) -> List[dict]:
        """``ispy --all --json``: the last result line of each daemon."""
        options = ["--all", "--json"]
        for command in commands:
            options += ["-c", command]
        done = run_ispy(self.config, [], WAIT, *options)
        assert done.code == 0, done
        last: Dict[int, dict] = {}
        for line in done.stdout.splitlines():
            result = json.loads(line)
            last[result["pid"]] = result
        return list(last.values())


@pytest.fixture
def express(write_config, spawn, workdir) -> Express:
    if not EXPRESS.exists():
        pytest.fail(f"{EXPRESS} is missing: test.sh makes it (a virtualenv of /usr/bin/python3 with mod_wsgi, "
                    "which needs Debian's apache2 and apache2-dev)")
    config = write_config(console=True)
    script = workdir / "app.wsgi"
    script.write_text(f"import sys\nsys.path.insert(0, {str(APPS)!r})\n"
                      f"import mod_wsgi_app\napplication = mod_wsgi_app.make({str(config)!r})\n")
    port = free_port()
    argv = [str(EXPRESS), "start-server", str(script), "--processes", str(PROCESSES), "--threads", str(THREADS),
            "--port", str(port), "--host", "127.0.0.1", "--server-root", str(workdir / "express"),
            "--log-to-terminal", "--locale", "C.UTF-8"]
    if os.geteuid() == 0:
        # Apache will not serve as root: its daemons run as nobody, and
        # ispyd's sockets go where nobody may write (and no one else).
        nobody = pwd.getpwnam("nobody")
        os.chown(workdir, nobody.pw_uid, nobody.pw_gid)
        argv += ["--user", "nobody", "--group", grp.getgrgid(nobody.pw_gid).gr_name]
    return Express(spawn(argv), port, config, workdir)


def sleeping(express: Express) -> int:
    """How many requests are asleep in mod_wsgi_sleeper, over every daemon."""
    count = 0
    for result in express.all("shell wsgi", "requests"):
        for request in result["data"]["requests"]:
            count += any(frame["function"] == "mod_wsgi_sleeper" for frame in request["frames"] or [])
    return count


def test_each_daemon_listens_and_shows_its_requests_and_every_thread(express):
    for pid, address in express.daemons().items():
        assert run_ispy(address, ["connect", "shell process", "pid"]).stdout == f"{pid}\n"
    answers: List[str] = []
    getters = [threading.Thread(target=lambda: answers.append(express.get(f"/sleep/{SLEEP}", SLEEP + WAIT)), daemon=True)
               for _ in range(THREADS)]
    for getter in getters:
        getter.start()
    wait_until(lambda: sleeping(express) == THREADS, f"{THREADS} requests asleep in mod_wsgi_sleeper")

    text = run_ispy(express.config, [], WAIT, "--all", "-c", "shell wsgi", "-c", "requests").stdout
    assert len(re.findall(r"line \d+, in mod_wsgi_sleeper\n  time\.sleep\(seconds\)\n", text)) == THREADS, text

    for result in express.all("shell python", "threads"):
        pid = result["pid"]
        data = result["data"]
        python_ids = [thread["native_id"] for thread in data["threads"]]
        frameless = [thread["native_id"] for thread in data["without_python"]]
        # Apache's request threads serving a request have their Python
        # stack and, known from the wrapper, their native id; the others
        # are listed by native id and name.
        serving = [t for t in data["threads"] if any(f["function"] == "mod_wsgi_sleeper" for f in t["frames"])]
        assert all(thread["native_id"] is not None for thread in data["threads"]), data["threads"]
        assert not set(python_ids) & set(frameless), data
        names = [thread["name"] for thread in data["without_python"]]
        assert names.count("apache2") >= THREADS - len(serving), names
        assert any(name.startswith("ispyd-") for name in names), names
        # Every thread of the process is in one list or the other (those
        # that lived through the command: ispyd's session threads come
        # and go with it).
        tasks = {int(task) for task in os.listdir(f"/proc/{pid}/task")}
        assert tasks - set(python_ids) - set(frameless) <= {t for t in tasks if "ispyd" in Path(f"/proc/{pid}/task/{t}/comm").read_text()}, (tasks, data)
    text = run_ispy(express.config, [], WAIT, "--all", "-c", "shell python", "-c", "threads").stdout
    assert re.search(r"^# OS threads without a Python stack now: \d+ \(native id, name\)\n# \d+ apache2\n", text, re.M), text

    for getter in getters:
        getter.join(SLEEP + WAIT)
    assert len(answers) == THREADS and all(a.startswith("slept in ") for a in answers), answers


def test_a_graceful_restart_leaves_no_stale_socket_and_stopping_leaves_none(express):
    old = set(express.daemons())
    # mod_wsgi-express's apachectl execs Apache: the process started is its
    # parent, and SIGUSR1 is `apachectl graceful`.
    express.process.signal(signal.SIGUSR1)
    wait_until(lambda: len(express.sockets()) == PROCESSES and not express.sockets() & old,
               "the new daemons' sockets, and none of the old ones")
    new = express.daemons()
    assert len(new) == PROCESSES and not set(new) & old, (new, old)
    for pid, address in new.items():
        assert run_ispy(address, ["connect", "shell process", "pid"]).stdout == f"{pid}\n"
    assert express.get("/").startswith("hello from ")

    express.process.signal(signal.SIGTERM)
    express.process.wait()
    wait_until(lambda: not express.sockets(), "every socket file to be removed")
    output = express.process.output()
    assert "panicked" not in output and "Traceback" not in output, output
