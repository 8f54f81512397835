"""The python plugin's console: what its code prints goes to its own client
only; the application's own output is unaffected and never lost."""

from __future__ import annotations

import re
import sys
from typing import List

import pytest

import conftest
from conftest import WAIT, run_ispy

LOOP = "for i in range({n}): print('{tag}', i); time.sleep(0.002)"


class ConsoleClient(conftest.ConsoleClient):
    """An ``ispy`` process in the app's console, fed line by line."""

    def __init__(self, address: str) -> None:
        super().__init__(address, "import time, sys")

    def finish(self) -> List[str]:
        """Leaves the console and ispy; returns every line ispy printed."""
        self.send("exit()")
        self.proc.stdin.close()
        assert self.proc.wait(timeout=WAIT) == 0, self.err.text()
        self.err.finish()
        assert self.err.snapshot() == [], self.err.text()
        self.out.finish()
        return self.out.snapshot()


@pytest.fixture
def consoles():
    made: List[ConsoleClient] = []
    yield lambda address: made.append(ConsoleClient(address)) or made[-1]
    for client in made:
        client.kill()


def numbered(lines: List[str], tag: str) -> List[int]:
    return [int(m.group(1)) for line in lines for m in [re.fullmatch(rf"{tag} (\d+)", line)] if m]


def test_two_consoles_and_the_app_each_keep_their_own_output(write_config, start_app, consoles):
    app = start_app(write_config(console=True))
    a, b = consoles(app.address), consoles(app.address)
    app.send("chatter 300")
    a.send(LOOP.format(n=200, tag="A"), "")
    b.send(LOOP.format(n=200, tag="B"), "", "print('to stderr', file=sys.stderr)")
    app.stdout.wait_for(r"^chatter done$")
    a_lines, b_lines = a.finish(), b.finish()

    assert numbered(a_lines, "A") == list(range(200)) and numbered(a_lines, "B") == []
    assert numbered(b_lines, "B") == list(range(200)) and numbered(b_lines, "A") == []
    assert "to stderr" in b_lines and "to stderr" not in a_lines
    for lines in (a_lines, b_lines):
        assert numbered(lines, "chatter") == []
    app_lines = app.stdout.snapshot()
    assert numbered(app_lines, "chatter") == list(range(300))
    assert numbered(app_lines, "A") == [] and numbered(app_lines, "B") == []
    assert "to stderr" not in app.stderr.text()


def test_app_output_after_consoles_closed_still_reaches_its_stdout(write_config, start_app, consoles):
    app = start_app(write_config(console=True))
    consoles(app.address).finish()
    app.command("print after the console", r"^after the console$")


def test_console_exit_leaves_the_apps_stdin_alone(write_config, start_app, consoles):
    # Python's own exit() closes sys.stdin: the app's, which its main
    # thread is reading here.
    app = start_app(write_config(console=True))
    consoles(app.address).finish()
    app.command("print stdin still open", r"^stdin still open$")
    assert not app.proc.stdin.closed and app.proc.poll() is None


def test_a_console_setting_sys_stdout_to_none_does_not_break_the_apps_print(write_config, start_app, consoles):
    app = start_app(write_config(console=True))
    first = consoles(app.address)
    first.send("sys.stdout = None")
    first.finish()
    # The next console wraps what it finds (None); the app's own
    # print(..., flush=True) must then do what it does with None: nothing.
    consoles(app.address).finish()
    app.send("print into the void")
    restore = consoles(app.address)
    restore.send("sys.stdout = sys.__stdout__")
    restore.finish()
    app.command("print heard again", r"^heard again$")
    assert app.proc.poll() is None
    assert "into the void" not in app.stdout.text()
    assert "AttributeError" not in app.stderr.text(), app.stderr.text()


def test_console_traceback_goes_to_its_client(write_config, start_app, consoles):
    app = start_app(write_config(console=True))
    client = consoles(app.address)
    client.send("1/0", "print('still here')")
    lines = client.finish()
    assert "ZeroDivisionError: division by zero" in lines
    assert "still here" in lines
    assert "ZeroDivisionError" not in app.stderr.text()


def test_console_is_off_unless_enabled(write_config, start_app):
    app = start_app(write_config())
    result = run_ispy(app.address, ["connect", "shell python", "console", "version"])
    assert result.code == 0, result
    assert "[python:console]" in result.stdout + result.stderr, result
    assert sys.version.split()[0] in result.stdout, result


def test_a_huge_print_in_the_console_is_cut_at_max_output_and_the_host_stays_small(write_config, start_app, consoles):
    app = start_app(write_config(console=True, max_output=100000))
    client = consoles(app.address)
    # The peak resident size, reset first (clear_refs 5): what the line cost at its worst.
    client.send("peak = lambda: int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) // 1024")
    client.send("open('/proc/self/clear_refs', 'w').write('5'); before = peak()")
    client.send("print('x' * 50_000_000)")
    client.send("print('grew', peak() - before, 'MB')")
    lines = client.finish()
    cut = [line for line in lines if line.startswith("*** Output cut at")]
    assert cut == ["*** Output cut at 100000 characters (max_output); 49900001 more characters not shown."], lines[-5:]
    kept = [line for line in lines if set(line) == {"x"}]
    assert len(kept) == 1 and len(kept[0]) == 100000, [len(line) for line in kept]
    grew = [line for line in lines if line.startswith("grew ")]
    # The 50 MB string itself is the user's; ispyd keeps no copy of it.
    assert grew and int(grew[0].split()[1]) < 80, grew
