"""``ispy --all`` on a real gunicorn with four workers serving a Flask app:
every worker's threads at once, as text grouped per worker and as JSON
Lines, and a stopped worker given up on while the others answer."""

from __future__ import annotations

import json
import os
import re
import signal

from conftest import run_ispy
from test_gunicorn import start_gunicorn  # noqa: F401 - the fixture

WORKERS = 4


def test_all_prints_one_group_per_worker_with_its_threads(start_gunicorn):
    gunicorn = start_gunicorn(preload=False, workers=WORKERS)
    result = run_ispy(gunicorn.config, [], 30.0, "--all", "-c", "shell python", "-c", "threads")
    assert result.code == 0, result
    headers = re.findall(r"^==> pid (\d+)  \S+ <==$", result.stdout, re.M)
    assert [int(pid) for pid in headers] == sorted(gunicorn.workers), result.stdout
    groups = result.stdout.split("==> pid ")[1:]
    for group in groups:
        assert "# Name: MainThread" in group, group
        assert "gunicorn/workers/" in group, group


def test_json_gives_one_object_per_worker_each_with_frames(start_gunicorn):
    gunicorn = start_gunicorn(preload=False, workers=WORKERS)
    result = run_ispy(gunicorn.config, [], 30.0, "--all", "--json", "-c", "shell python", "-c", "threads")
    assert result.code == 0, result
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    threads = [line for line in lines if line["command"] == "threads"]
    assert sorted(line["pid"] for line in threads) == sorted(gunicorn.workers)
    for line in threads:
        assert line["ok"] is True and line["schema"] == 1
        main = line["data"]["threads"][0]
        assert main["name"] == "MainThread"
        assert main["native_id"] == line["pid"]
        assert any("gunicorn/workers/" in frame["file"] for frame in main["frames"]), main


def test_a_stopped_worker_is_reported_after_the_timeout_and_the_others_print(start_gunicorn):
    gunicorn = start_gunicorn(preload=False, workers=WORKERS)
    stopped = gunicorn.workers[0]
    os.kill(stopped, signal.SIGSTOP)
    try:
        result = run_ispy(gunicorn.config, [], 30.0, "--all", "--timeout", "2", "-c", "shell python", "-c", "threads")
    finally:
        os.kill(stopped, signal.SIGCONT)
    assert result.code == 1, result
    for worker in gunicorn.workers[1:]:
        assert re.search(rf"^==> pid {worker} .*\n# Threads: \d+", result.stdout, re.M), result.stdout
    assert f"ispy: pid {stopped}  " in result.stderr, result.stderr
    assert "no answer within 2 s (--timeout)" in result.stderr, result.stderr
