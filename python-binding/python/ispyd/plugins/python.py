"""The ``python`` plugin: the interpreter's view of this process.

Each command prints what a person reads and returns the same facts as data
(see RESULTS.md), which ``ispy --json`` and scripts receive.
"""

from __future__ import annotations

import fnmatch
import os
import sys
import threading
from typing import Any, Dict, List, Optional

from ispyd import _native
from ispyd.console import ConsoleSession


class PythonPlugin:
    """The Python interpreter: version, paths, modules, thread stacks, console"""

    name = "python"
    gated_commands = {"console": "python:console"}
    stdout: Any = sys.stdout
    wants_data = False
    wants_text = True

    def _print(self, *values: Any) -> None:
        print(*values, file=self.stdout)

    def _value(self, key: str, value: Any) -> Dict[str, Any]:
        self._print(value)
        return {key: value}

    def do_platform(self, line: str) -> Dict[str, Any]:
        """The platform Python runs on (sys.platform)."""
        return self._value("platform", sys.platform)

    def do_version(self, line: str) -> Dict[str, Any]:
        """The interpreter's version (sys.version)."""
        self._print(sys.version)
        info = sys.version_info
        return {
            "version": sys.version,
            "version_info": {
                "major": info.major,
                "minor": info.minor,
                "micro": info.micro,
                "releaselevel": info.releaselevel,
                "serial": info.serial,
            },
            "implementation": sys.implementation.name,
        }

    def do_prefix(self, line: str) -> Dict[str, Any]:
        """The installation prefix, and the virtual environment's if any."""
        self._print(sys.prefix)
        virtual = sys.base_prefix != sys.prefix
        if virtual:
            self._print(f"(virtual environment; base prefix {sys.base_prefix})")
        return {"prefix": sys.prefix, "base_prefix": sys.base_prefix, "virtual_environment": virtual}

    def do_path(self, line: str) -> Dict[str, Any]:
        """The module search path (sys.path), one entry a line."""
        for entry in sys.path:
            self._print(entry if entry else "'' (the current directory)")
        return {"path": list(sys.path)}

    def do_executable(self, line: str) -> Dict[str, Any]:
        """The interpreter's executable (sys.executable)."""
        return self._value("executable", sys.executable)

    def do_argv(self, line: str) -> Dict[str, Any]:
        """The program's arguments (sys.argv)."""
        self._print(sys.argv)
        return {"argv": list(sys.argv)}

    def do_defaultencoding(self, line: str) -> Dict[str, Any]:
        """The default string encoding (sys.getdefaultencoding())."""
        return self._value("defaultencoding", sys.getdefaultencoding())

    def do_filesystemencoding(self, line: str) -> Dict[str, Any]:
        """The encoding of file names (sys.getfilesystemencoding())."""
        return self._value("filesystemencoding", sys.getfilesystemencoding())

    def do_maxsize(self, line: str) -> Dict[str, Any]:
        """The largest container size (sys.maxsize)."""
        return self._value("maxsize", sys.maxsize)

    def do_maxint(self, line: str) -> Dict[str, Any]:
        """Python 3 has no maxint: integers are unbounded. Shows sys.maxsize."""
        self._print(f"Python 3 has no sys.maxint (integers are unbounded); sys.maxsize is {sys.maxsize}")
        return {"maxsize": sys.maxsize}

    def do_maxunicode(self, line: str) -> Dict[str, Any]:
        """The largest code point (sys.maxunicode)."""
        return self._value("maxunicode", sys.maxunicode)

    def do_environ(self, line: str) -> Dict[str, Any]:
        """The environment as Python sees it (os.environ), sorted."""
        environ = {key: os.environ[key] for key in sorted(os.environ)}
        for key, value in environ.items():
            self._print(f"{key} = {value!r}")
        return {"environ": environ}

    def do_modules(self, line: str) -> Dict[str, Any]:
        """modules [GLOB]: the imported modules and where they come from.

        Without GLOB, only top-level modules; with it, every module whose
        name matches (e.g. 'modules flask.*', 'modules *json*')."""
        pattern = line.strip()
        names = sorted(sys.modules)
        if pattern:
            names = [name for name in names if fnmatch.fnmatchcase(name, pattern)]
        else:
            names = [name for name in names if "." not in name]
        modules: List[Dict[str, Optional[str]]] = []
        for name in names:
            module = sys.modules.get(name)
            modules.append({"name": name, "file": getattr(module, "__file__", None) or None})
        if not names:
            self._print(f"No imported module matches {pattern!r}." if pattern else "No modules.")
            return {"modules": modules}
        width = max(len(name) for name in names)
        for entry in modules:
            self._print(f"{entry['name']:<{width}}  {entry['file'] or '(built-in)'}")
        return {"modules": modules}

    def do_threads(self, line: str) -> Optional[_native.NativeData]:
        """Every Python thread's current stack, innermost call last.

        Threads come in the order they started (MainThread first); those
        Python's threading did not start are named by the OS. The thread
        running this command, ispyd's own, is marked and comes last."""
        text, data = _native.threads_report(threading.get_ident(), self.wants_data, self.wants_text)
        self.stdout.write(text)
        return data

    def do_dump(self, line: str) -> Optional[_native.NativeData]:
        """What the process is doing: every active request, then every
        thread's Python stack (most recent call first).

        The same dump that [ispyd] dump_on writes when one of its signals
        arrives (gunicorn's SIGABRT to a worker that missed its timeout),
        written by the same code."""
        text, data = _native.dump_report(self.wants_data)
        self.stdout.write(text)
        return data

    def do_console(self, line: str) -> Optional[ConsoleSession]:
        """An interactive Python interpreter inside this process.

        Leave it with exit(), quit() or Ctrl-D. It can do anything the
        program can: it is off unless [python:console] enabled = true."""
        return ConsoleSession()
