"""The ``python`` plugin: the interpreter's view of this process."""

from __future__ import annotations

import fnmatch
import os
import sys
import threading
from typing import Any, Optional

from ispyd import _native
from ispyd.console import ConsoleSession


class PythonPlugin:
    """The Python interpreter: version, paths, modules, thread stacks, console"""

    name = "python"
    gated_commands = {"console": "python:console"}
    stdout: Any = sys.stdout

    def _print(self, *values: Any) -> None:
        print(*values, file=self.stdout)

    def do_platform(self, line: str) -> None:
        """The platform Python runs on (sys.platform)."""
        self._print(sys.platform)

    def do_version(self, line: str) -> None:
        """The interpreter's version (sys.version)."""
        self._print(sys.version)

    def do_prefix(self, line: str) -> None:
        """The installation prefix, and the virtual environment's if any."""
        self._print(sys.prefix)
        if sys.base_prefix != sys.prefix:
            self._print(f"(virtual environment; base prefix {sys.base_prefix})")

    def do_path(self, line: str) -> None:
        """The module search path (sys.path), one entry a line."""
        for entry in sys.path:
            self._print(entry if entry else "'' (the current directory)")

    def do_executable(self, line: str) -> None:
        """The interpreter's executable (sys.executable)."""
        self._print(sys.executable)

    def do_argv(self, line: str) -> None:
        """The program's arguments (sys.argv)."""
        self._print(sys.argv)

    def do_defaultencoding(self, line: str) -> None:
        """The default string encoding (sys.getdefaultencoding())."""
        self._print(sys.getdefaultencoding())

    def do_filesystemencoding(self, line: str) -> None:
        """The encoding of file names (sys.getfilesystemencoding())."""
        self._print(sys.getfilesystemencoding())

    def do_maxsize(self, line: str) -> None:
        """The largest container size (sys.maxsize)."""
        self._print(sys.maxsize)

    def do_maxint(self, line: str) -> None:
        """Python 3 has no maxint: integers are unbounded. Shows sys.maxsize."""
        self._print(f"Python 3 has no sys.maxint (integers are unbounded); sys.maxsize is {sys.maxsize}")

    def do_maxunicode(self, line: str) -> None:
        """The largest code point (sys.maxunicode)."""
        self._print(sys.maxunicode)

    def do_environ(self, line: str) -> None:
        """The environment as Python sees it (os.environ), sorted."""
        for key in sorted(os.environ):
            self._print(f"{key} = {os.environ[key]!r}")

    def do_modules(self, line: str) -> None:
        """modules [GLOB]: the imported modules and where they come from.

        Without GLOB, only top-level modules; with it, every module whose
        name matches (e.g. 'modules flask.*', 'modules *json*')."""
        pattern = line.strip()
        names = sorted(sys.modules)
        if pattern:
            names = [name for name in names if fnmatch.fnmatchcase(name, pattern)]
        else:
            names = [name for name in names if "." not in name]
        if not names:
            self._print(f"No imported module matches {pattern!r}." if pattern else "No modules.")
            return
        width = max(len(name) for name in names)
        for name in names:
            module = sys.modules.get(name)
            origin = getattr(module, "__file__", None) or "(built-in)"
            self._print(f"{name:<{width}}  {origin}")

    def do_threads(self, line: str) -> None:
        """Every Python thread's current stack, innermost call last.

        Threads come in the order they started (MainThread first); those
        Python's threading did not start are named by the OS. The thread
        running this command, ispyd's own, is marked and comes last."""
        self.stdout.write(_native.format_threads(threading.get_ident()))

    def do_console(self, line: str) -> Optional[ConsoleSession]:
        """An interactive Python interpreter inside this process.

        Leave it with exit(), quit() or Ctrl-D. It can do anything the
        program can: it is off unless [python:console] enabled = true."""
        return ConsoleSession()
