"""``profile`` in the python plugin, on a real gunicorn worker serving a
Flask app whose ``/hot`` endpoint burns CPU in ``hot()`` while a client
calls it in a loop: the top table's first row is ``hot``, the flame graph
is valid SVG that names it and renders, the folded stacks add up to the
samples, a second profile at once is refused, and Ctrl-C ends one early
with what it collected."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import urllib.request
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from conftest import WAIT, open_shell, run_ispy, wait_until
from test_gunicorn import start_gunicorn  # noqa: F401 - the fixture


class Load:
    """GET /hot in a loop on a thread, until stopped."""

    def __init__(self, url: str) -> None:
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self.thread.start()

    def _run(self, url: str) -> None:
        while not self.stopped.is_set():
            try:
                urllib.request.urlopen(url + "/hot", timeout=WAIT).read()
            except OSError:
                pass

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(WAIT)


@pytest.fixture
def hot_worker(start_gunicorn):
    gunicorn = start_gunicorn(preload=False, workers=1)
    load = Load(gunicorn.url)
    yield gunicorn
    load.stop()


def profile(gunicorn, *arguments: str, json_lines: bool = False):
    options = ["--json"] if json_lines else []
    return run_ispy(gunicorn.config, [], 60.0, *options, "--pid", str(gunicorn.workers[0]),
                    "-c", "shell python", "-c", " ".join(["profile", *arguments]))


def test_the_hot_function_tops_the_table_and_the_files_hold_the_profile(hot_worker):
    result = profile(hot_worker, "2")
    assert result.code == 0, result
    header = re.search(r"^Profile of pid \d+: [\d.]+ s at 100 Hz, (\d+) samples \((\d+) idle samples left out",
                       result.stdout, re.M)
    assert header, result.stdout
    samples = int(header.group(1))
    assert samples > 50, result.stdout
    first = re.search(r"^\s+[\d.]+%\s+[\d.]+%\s+\d+\s+\d+\s+(\S+) \(", result.stdout, re.M)
    assert first and first.group(1) == "hot", result.stdout

    svg = Path(re.search(r"^Flame graph: (\S+\.svg)$", result.stdout, re.M).group(1))
    folded = Path(re.search(r"^Folded stacks: (\S+\.folded)$", result.stdout, re.M).group(1))
    for path in (svg, folded):
        assert path.stat().st_mode & 0o777 == 0o600, path
    ElementTree.parse(svg)  # valid XML
    assert "hot (" in svg.read_text()
    counts = [int(line.rsplit(" ", 1)[1]) for line in folded.read_text().splitlines()]
    assert sum(counts) == samples
    assert any(";hot (" in line for line in folded.read_text().splitlines()), folded.read_text()
    png = svg.with_suffix(".png")
    subprocess.run(["rsvg-convert", "-o", str(png), str(svg)], check=True, timeout=WAIT)
    width, height = int.from_bytes(png.read_bytes()[16:20], "big"), int.from_bytes(png.read_bytes()[20:24], "big")
    assert width >= 800 and height >= 100, (width, height)


def test_json_carries_the_top_table_and_the_folded_stacks(hot_worker):
    result = profile(hot_worker, "1", "--hz", "200", json_lines=True)
    assert result.code == 0, result
    data = json.loads(result.stdout.splitlines()[-1])["data"]
    assert data["hz"] == 200 and data["top"][0]["function"] == "hot", data["top"][:2]
    assert sum(int(line.rsplit(" ", 1)[1]) for line in data["folded"].splitlines()) == data["samples"]


def test_a_second_profile_at_once_is_refused_and_bad_arguments_are_explained(hot_worker):
    first = {}
    running = threading.Thread(target=lambda: first.update(result=profile(hot_worker, "3")))
    running.start()
    wait_until(
        lambda: "in do_profile" in run_ispy(hot_worker.config, [], WAIT, "--pid", str(hot_worker.workers[0]),
                                            "-c", "shell python", "-c", "threads").stdout,
        "the first profile to run",
    )
    second = profile(hot_worker, "1")
    assert second.code == 1, second
    running.join(60)
    assert first["result"].code == 0, first
    for arguments, message in (("--hz 0", "1 to 1000"), ("soon", "not a number of seconds"),
                               ("--thread", "needs a value")):
        refused = profile(hot_worker, arguments)
        assert refused.code == 1 and message in refused.stderr, refused


def test_ctrl_c_ends_a_profile_early_with_what_it_collected(hot_worker, terminal, workdir):
    worker = hot_worker.workers[0]
    socket = workdir / f"ispyd-{worker}.sock"
    term = open_shell(terminal, workdir, socket, worker, "python")
    term.keys("profile 60", "Enter")
    wait_until(lambda: "profiling: 1 s of 60" in term.screen(), "the profile's progress")
    term.keys("C-c")
    wait_until(lambda: "Folded stacks:" in term.screen(), "the early profile")
    folded = Path(re.search(r"Folded stacks: (\S+\.folded)", term.screen()).group(1))
    samples = sum(int(line.rsplit(" ", 1)[1]) for line in folded.read_text().splitlines())
    # One busy thread at 100 Hz: about 100 a second; 60 s would be 6000.
    assert 50 <= samples < 3000, samples
    assert "gave up" not in term.screen(), term.screen()
