"""RESULTS.md is the reference of every built-in command's structured
result: each example there is checked against what the command really
returns, run through the installed ``ispy --json`` against a live host
(``apps/results_host.py``) with every builtin plugin and something for each
to show."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any, List, Set, Tuple

import pytest

from conftest import APPS, run_ispy, wait_until

RESULTS = Path(__file__).resolve().parents[2] / "RESULTS.md"

#: ``<!-- result: SHELL COMMAND[; maps: PATH, PATH] -->`` then a JSON block.
EXAMPLE = re.compile(r"<!-- result: (\S+) (.+?)(?:; maps: ([^>]+?))? -->\n```json\n(.*?)\n```", re.S)


def examples() -> List[Tuple[str, str, Set[str], Any]]:
    found = []
    for shell, command, maps, body in EXAMPLE.findall(RESULTS.read_text()):
        maps_set = {m.strip() for m in maps.split(",")} if maps else set()
        found.append((shell, command.strip(), maps_set, json.loads(body)))
    return found


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def check_shape(example: Any, actual: Any, path: str, maps: Set[str], problems: List[str]) -> None:
    """Adds to ``problems`` where ``actual`` differs from ``example`` in
    field names or types (see RESULTS.md for the rules)."""
    if example is None or actual is None:
        return
    if kind(example) != kind(actual):
        problems.append(f"{path or '.'}: documented {kind(example)}, got {kind(actual)}: {actual!r:.80}")
        return
    if isinstance(example, dict):
        if path in maps:
            pattern = next(iter(example.values()), None)
            for key, value in actual.items():
                check_shape(pattern, value, f"{path}.{key}", maps, problems)
            return
        missing = set(example) - set(actual)
        extra = set(actual) - set(example)
        if missing or extra:
            problems.append(f"{path or '.'}: fields documented but missing {sorted(missing)}, undocumented {sorted(extra)}")
        for key in set(example) & set(actual):
            check_shape(example[key], actual[key], f"{path}.{key}".lstrip("."), maps, problems)
    elif isinstance(example, list) and example:
        for index, item in enumerate(actual):
            check_shape(example[0], item, path, maps, problems)


def test_check_shape_catches_a_renamed_field_and_a_wrong_type():
    problems: List[str] = []
    check_shape({"a": 1, "b": [{"c": "x"}]}, {"a": "1", "b": [{"d": "x"}]}, "", set(), problems)
    assert len(problems) == 2, problems
    assert "documented number, got str" in problems[0] + problems[1]
    assert "missing ['c'], undocumented ['d']" in problems[0] + problems[1]


@pytest.fixture
def results_host(write_config, spawn):
    config = write_config(
        extra="\n[python:console]\nenabled = true\n\n[debugger]\nenabled = true\n",
        plugins="%(builtins)s",
        dump_on="SIGUSR1",
    )
    host = spawn([sys.executable, str(APPS / "results_host.py"), str(config)])
    host.stdout.wait_for(r"^READY ", "the results host's READY line")
    # Something for the debugger to show: a probe that has caught.
    inserted = run_ispy(config, [], 20.0, "-c", "shell debugger", "-c", "insert __main__:failing")
    assert inserted.code == 0, inserted
    wait_until(
        lambda: "__main__:failing" in run_ispy(config, [], 20.0, "-c", "shell debugger", "-c", "tracebacks").stdout,
        "the probe to capture a traceback",
    )
    return config


def result(config: Path, shell: str, command: str) -> dict:
    """The last JSON line of ``ispy --json`` running ``command`` in ``shell``."""
    commands = ["-c", command] if shell == "ispyd" else ["-c", f"shell {shell}", "-c", command]
    done = run_ispy(config, [], 20.0, "--json", *commands)
    assert done.stdout, done
    return json.loads(done.stdout.splitlines()[-1])


def test_every_documented_example_is_what_the_command_returns(results_host):
    found = examples()
    assert len(found) >= 30, "the examples were not found in RESULTS.md"
    problems: List[str] = []
    for shell, command, maps, example in found:
        line = result(results_host, shell, command)
        assert line["ok"], line
        assert line["schema"] == 1
        shape: List[str] = []
        check_shape(example, line["data"], "", maps, shape)
        problems += [f"{shell} {command}: {problem}" for problem in shape]
    assert not problems, "\n".join(problems)


def test_every_builtin_command_is_documented(results_host):
    listed = result(results_host, "ispyd", "plugins")["data"]["plugins"]
    text = RESULTS.read_text()
    documented = {(shell, command.split()[0]) for shell, command, _, _ in examples()}
    for plugin in listed:
        assert f"## `{plugin['name']}`" in text, plugin["name"]
        for command in plugin["commands"]:
            name = command["name"]
            assert (plugin["name"], name) in documented or f"`{name}`" in text, f"{plugin['name']} {name}"


def test_a_command_that_fails_is_not_ok_and_says_why(results_host):
    line = result(results_host, "debugger", "remove nothing-here")
    assert line["ok"] is False
    assert "No probe named 'nothing-here'" in line["error"]
    assert "data" not in line


def test_threads_data_lists_each_thread_with_its_frames(results_host):
    line = result(results_host, "python", "threads")
    names = [thread["name"] for thread in line["data"]["threads"]]
    assert names[0] == "MainThread"
    assert "held-request" in names
    held = next(t for t in line["data"]["threads"] if t["name"] == "held-request")
    assert any(frame["function"] == "application" for frame in held["frames"])
    assert line["data"]["threads"][-1]["serving"] is True


def test_greenlets_data_shows_the_parked_greenlet_with_its_request(results_host):
    line = result(results_host, "python", "greenlets")
    serving = [g for g in line["data"]["greenlets"] if g["request"] is not None]
    assert len(serving) == 1, line
    assert serving[0]["state"] == "suspended" and serving[0]["thread_id"] is not None, serving
    assert serving[0]["frames"][-1]["function"] == "green_application", serving
    requests = result(results_host, "wsgi", "requests")["data"]["requests"]
    green = next(r for r in requests if r["environ"]["PATH_INFO"] == "/green")
    assert green["id"] == serving[0]["request"] and green["greenlet"] is not None, green
    assert green["frames"][-1]["function"] == "green_application", green
