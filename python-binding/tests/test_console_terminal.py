"""The console as a person uses it: ``ispy`` on a terminal (tmux), where the
console's ``>>> ``/``... `` prompts reach ispy's line editor, with its own
history, and ``exit()`` or Ctrl-D return to the python plugin's shell."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import WAIT, ispy_command

class Terminal:
    """A private tmux server running one command in a 100x30 window."""

    def __init__(self, command: str, cwd: Path) -> None:
        self.socket = f"ispyd-py-{uuid.uuid4().hex[:8]}"
        subprocess.run(
            ["tmux", "-L", self.socket, "new-session", "-d", "-s", "t", "-x", "100", "-y", "30", command],
            cwd=cwd,
            check=True,
        )

    def keys(self, *keys: str) -> None:
        subprocess.run(["tmux", "-L", self.socket, "send-keys", "-t", "t", *keys], check=True)

    def screen(self) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, "capture-pane", "-p", "-t", "t"],
            capture_output=True,
            text=True,
        ).stdout

    def last_line(self) -> str:
        lines = [line for line in self.screen().splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def wait_last_line(self, expected: str) -> None:
        deadline = time.monotonic() + WAIT
        while self.last_line() != expected:
            if time.monotonic() > deadline:
                pytest.fail(f"waited for the line {expected!r}; the screen:\n{self.screen()}")
            time.sleep(0.02)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], stderr=subprocess.DEVNULL)


@pytest.fixture
def terminal(workdir: Path):
    made = []

    def start(command: str) -> Terminal:
        made.append(Terminal(command, workdir))
        return made[-1]

    yield start
    for term in made:
        term.close()


def test_console_prompts_and_history_in_the_line_editor(write_config, start_app, workdir, terminal):
    app = start_app(write_config(console=True))
    pid = os.path.basename(app.address).split("-")[-1].split(".")[0]
    history = workdir / "history"
    term = terminal(f"ISPY_HISTORY={history} exec {ispy_command()} {app.address}")
    term.wait_last_line("(ispyd)")
    term.keys("connect", "Enter")
    term.wait_last_line(f"(ispyd:{pid})")
    term.keys("shell python", "Enter")
    term.wait_last_line(f"(python:{pid})")
    term.keys("console", "Enter")
    term.wait_last_line(">>>")
    assert "(EmbeddedConsole)" in term.screen()

    # A compound statement: the continuation prompt comes from the server.
    term.keys("def answer():", "Enter")
    term.wait_last_line("...")
    term.keys("    return 41 + 1", "Enter")
    term.wait_last_line("...")
    term.keys("Enter")
    term.wait_last_line(">>>")
    term.keys("answer()", "Enter")
    term.wait_last_line(">>>")
    assert "\n42\n>>>" in term.screen(), term.screen()

    # The console keeps its own history: Up recalls its last line, not a
    # shell command.
    term.keys("Up")
    term.wait_last_line(">>> answer()")
    term.keys("C-u")  # clear the recalled line without running it
    term.wait_last_line(">>>")

    term.keys("exit()", "Enter")
    term.wait_last_line(f"(python:{pid})")
    term.keys("console", "Enter")
    term.wait_last_line(">>>")
    term.keys("C-d")
    term.wait_last_line(f"(python:{pid})")
    term.keys("Up")
    term.wait_last_line(f"(python:{pid}) console")
