"""``dump_on``: a real gunicorn (``--timeout 2``) kills a worker stuck in C,
and the dump written from ispyd's signal handler names the request and
shows the route's frame; the ``dump`` command gives the same dump on
demand; with ``dump_on`` unset nothing is installed.

The routes are in ``tests/apps/stuck_app.py``: a deadlock in C with the GIL
released, the same with the GIL held (no Python runs in the worker again,
so gunicorn's own SIGABRT handler never does), and a pure-Python loop
(where gunicorn's handler does run, after ispyd's).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import List

import pytest

from conftest import WAIT, APPS, Process, run_ispy, wait_for_socket, wait_until

WORKERS = 2


class Gunicorn:
    def __init__(self, process: Process, workdir: Path, config: Path, preload: bool) -> None:
        self.process = process
        self.workdir = workdir
        self.config = config
        self.master = process.pid
        port = process.stderr.wait_for(r"Listening at: http://127\.0\.0\.1:(\d+)", "gunicorn to listen")
        self.url = f"http://127.0.0.1:{port.group(1)}"
        wait_until(lambda: len(self.booted()) >= WORKERS, "the workers to boot")
        self.workers = self.booted()
        if config is not None:
            for pid in self.workers + ([self.master] if preload else []):
                wait_for_socket(workdir / f"ispyd-{pid}.sock")

    def booted(self) -> List[int]:
        return [int(pid) for pid in re.findall(r"Booting worker with pid: (\d+)", self.process.stderr.text())]

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=WAIT) as response:
            return response.read().decode()

    def send_and_forget(self, path: str) -> None:
        """A GET the worker never answers, on a thread of its own."""

        def get() -> None:
            try:
                urllib.request.urlopen(self.url + path, timeout=WAIT).read()
            except OSError:
                pass

        threading.Thread(target=get, daemon=True).start()


@pytest.fixture
def start_gunicorn(write_config, spawn, workdir):
    def start(preload: bool, ispyd: str = "dump_on = SIGABRT\n") -> Gunicorn:
        config = write_config(f"[ispyd]\nlisten = {workdir}/ispyd-%(pid)s.sock\n{ispyd}") if ispyd is not None else None
        argv = [sys.executable, "-m", "gunicorn", "--chdir", str(APPS), "-w", str(WORKERS), "--timeout", "2"]
        argv += ["-b", "127.0.0.1:0"] + (["--preload"] if preload else []) + ["stuck_app:app"]
        env = {"APP_ISPYD_CONFIG": str(config)} if config is not None else {}
        return Gunicorn(spawn(argv, **env), workdir, config, preload)

    return start


def dump_of(text: str, pid: int) -> str:
    """The dump of ``pid`` in ``text``, from its header to its end line."""
    match = re.search(rf"^ispyd dump of pid {pid}, on SIGABRT, .*?^ispyd dump of pid {pid}: end$", text, re.M | re.S)
    return match.group(0) if match else ""


@pytest.mark.parametrize("preload", [False, True], ids=["import-in-worker", "preload-fork"])
@pytest.mark.parametrize(
    "route, function, to_file",
    [("/stuck-released?q=1", "stuck_released", False), ("/stuck-held?q=2", "stuck_held", True)],
    ids=["gil-released", "gil-held"],
)
def test_a_worker_killed_for_its_timeout_leaves_its_request_and_stack(
    start_gunicorn, workdir, preload, route, function, to_file
):
    dump_file = "dump_file = {}/dump-%(pid)s.txt\n".format(workdir) if to_file else ""
    gunicorn = start_gunicorn(preload, f"dump_on = SIGABRT\n{dump_file}")
    gunicorn.send_and_forget(route)
    timeout = gunicorn.process.stderr.wait_for(r"WORKER TIMEOUT \(pid:(\d+)\)", "gunicorn's WORKER TIMEOUT")
    stuck = int(timeout.group(1))

    def written() -> str:
        if not to_file:
            return gunicorn.process.stderr.text()
        path = workdir / f"dump-{stuck}.txt"
        return path.read_text() if path.exists() else ""

    dump = wait_until(lambda: dump_of(written(), stuck), "the dump of the stuck worker")
    line = rf"^  GET {re.escape(route)}  \(request \d+, \d+\.\d{{3}} s, thread 0x[0-9a-f]{{16}}, native {stuck}\)$"
    assert re.search(line, dump, re.M), dump
    assert re.search(rf'^  File ".*stuck_app\.py", line \d+ in {function}$', dump, re.M), dump
    assert re.search(r'^  File ".*stuck_app\.py", line \d+ in deadlock$', dump, re.M), dump
    serving = re.search(r"thread (0x[0-9a-f]{16})", dump).group(1)
    assert re.search(rf"^(Current thread|Thread) {serving} \(most recent call first\):$", dump, re.M), dump
    # The other worker serves meanwhile and lives on; gunicorn kills and
    # replaces the stuck one.
    assert int(gunicorn.get("/").split()[-1]) != stuck
    gunicorn.process.stderr.wait_for(rf"Worker \(pid:{stuck}\) was sent SIGKILL", "the SIGKILL")
    for pid in gunicorn.workers:
        assert Path(f"/proc/{pid}").exists() == (pid != stuck), pid
    # One dump, by the worker: not by the master, and not twice.
    everything = gunicorn.process.stderr.text() + "".join(p.read_text() for p in workdir.glob("dump-*.txt"))
    assert len(re.findall(r"^ispyd dump of pid \d+, on SIGABRT", everything, re.M)) == 1, everything


def test_gunicorns_own_abort_handler_still_runs_after_the_dump(start_gunicorn):
    gunicorn = start_gunicorn(True)
    gunicorn.send_and_forget("/busy")
    stuck = int(gunicorn.process.stderr.wait_for(r"WORKER TIMEOUT \(pid:(\d+)\)", "WORKER TIMEOUT").group(1))
    gunicorn.process.stderr.wait_for(rf"Worker exiting \(pid: {stuck}\)", "gunicorn's handle_abort to end the worker")
    text = gunicorn.process.stderr.text()
    dump = dump_of(text, stuck)
    assert "GET /busy  (request" in dump and " in busy\n" in dump, text
    assert text.index(dump) < text.index("SystemExit: 1"), "ispyd's handler runs first"
    assert f"Worker (pid:{stuck}) was sent SIGKILL" not in text


#: Signals 1 to 31. glibc catches its own SIGSETXID (33) once a process
#: starts a thread, which ispyd's listener does.
STANDARD_SIGNALS = (1 << 31) - 1


def signal_masks(pid: int) -> dict:
    """The main thread's caught, ignored and blocked standard signals."""
    status = Path(f"/proc/{pid}/status").read_text()
    masks = re.findall(r"^(Sig(?:Cgt|Ign|Blk)):\s*(\S+)$", status, re.M)
    return {name: int(mask, 16) & STANDARD_SIGNALS for name, mask in masks}


def test_without_dump_on_the_workers_signal_dispositions_are_gunicorns(start_gunicorn):
    bare = start_gunicorn(False, ispyd=None)
    plain = start_gunicorn(False, ispyd="")
    armed = start_gunicorn(False)
    expected = signal_masks(bare.workers[0])
    assert signal_masks(plain.workers[0]) == expected
    # With dump_on the same signals are caught (by ispyd, handing on to
    # gunicorn's), and the dump command says which are armed.
    assert signal_masks(armed.workers[0]) == expected
    for gunicorn, armed_signals in ((plain, []), (armed, ["SIGABRT"])):
        socket = gunicorn.workdir / f"ispyd-{gunicorn.workers[0]}.sock"
        result = run_ispy(socket, [], WAIT, "--json", "-c", "shell python", "-c", "dump")
        assert result.code == 0, result
        dump = json.loads(result.stdout.splitlines()[-1])
        assert dump["data"]["dump_on"] == armed_signals, dump


def test_dump_on_demand_from_the_top_shell_and_across_every_worker(start_gunicorn, workdir):
    gunicorn = start_gunicorn(False, "")
    result = run_ispy(gunicorn.config, [], WAIT, "--all", "-c", "dump")
    assert result.code == 0, result
    for pid in gunicorn.workers:
        group = result.stdout.split(f"==> pid {pid} ")[1].split("==> pid ")[0]
        assert re.search(rf"^ispyd dump of pid {pid}, on the dump command, at ", group, re.M), group
        assert "Active requests:\n  none\n" in group, group
        assert re.search(r'^  File ".*gunicorn/workers/sync\.py", line \d+ in run$', group, re.M), group
        assert f"ispyd dump of pid {pid}: end" in group


def test_a_dump_file_that_is_a_symbolic_link_is_refused(write_config, workdir):
    target = workdir / "elsewhere.txt"
    target.write_text("")
    (workdir / "dump.txt").symlink_to(target)
    config = write_config(dump_on="SIGABRT", dump_file=str(workdir / "dump.txt"))
    code = "from ispyd.manager import ShellManager; import sys; ShellManager(sys.argv[1])"
    done = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True, timeout=WAIT)
    assert done.returncode != 0, done
    assert "ConfigurationError" in done.stderr and "is a symbolic link; refused" in done.stderr, done.stderr
    assert target.read_text() == ""
