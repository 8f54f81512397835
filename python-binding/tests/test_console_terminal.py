"""The console as a person uses it: ``ispy`` on a terminal (tmux), where the
console's ``>>> ``/``... `` prompts reach ispy's line editor, with its own
history, and ``exit()`` or Ctrl-D return to the python plugin's shell."""

from __future__ import annotations

import os
import sys
import time

from conftest import WAIT, open_shell


def test_console_prompts_and_history_in_the_line_editor(write_config, start_app, workdir, terminal):
    app = start_app(write_config(console=True))
    pid = os.path.basename(app.address).split("-")[-1].split(".")[0]
    term = open_shell(terminal, workdir, app.address, pid, "python")
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


def test_tab_in_the_console_completes_names_and_attributes(write_config, start_app, workdir, terminal):
    app = start_app(write_config(console=True))
    pid = os.path.basename(app.address).split("-")[-1].split(".")[0]
    term = open_shell(terminal, workdir, app.address, pid, "python")
    term.keys("console", "Enter")
    term.wait_last_line(">>>")
    term.keys("import os", "Enter")
    term.wait_last_line(">>>")
    # Two candidates: the first Tab completes what they share, the second lists them.
    term.keys("os.pa", "Tab", "Tab")
    deadline = time.monotonic() + WAIT
    while not ("os.pardir" in term.screen() and "os.path" in term.screen()):
        assert time.monotonic() < deadline, term.screen()
        time.sleep(0.02)
    term.keys("C-u")
    term.wait_last_line(">>>")
    # One candidate is put in place.
    term.keys("os.getpi", "Tab")
    # No arguments: rlcompleter closes the call (from Python 3.10).
    term.wait_last_line(">>> os.getpid()" if sys.version_info >= (3, 10) else ">>> os.getpid(")
