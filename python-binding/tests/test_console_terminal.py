"""The console as a person uses it: ``ispy`` on a terminal (tmux), where the
console's ``>>> ``/``... `` prompts reach ispy's line editor, with its own
history, and ``exit()`` or Ctrl-D return to the python plugin's shell."""

from __future__ import annotations

import os
from conftest import ispy_command


def test_console_prompts_and_history_in_the_line_editor(write_config, start_app, workdir, terminal):
    app = start_app(write_config(console=True))
    pid = os.path.basename(app.address).split("-")[-1].split(".")[0]
    history = workdir / "history"
    term = terminal(f"ISPY_HISTORY={history} exec {ispy_command()} {app.address}")
    # A socket named on a terminal is connected to at once.
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
