"""The ``python`` plugin: the interpreter's view of this process.

Each command prints what a person reads and returns the same facts as data
(see RESULTS.md), which ``ispy --json`` and scripts receive.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import sys
import tempfile
from typing import Any, Dict, List, Optional, Tuple

from ispyd import _native
from ispyd._support import CommandError
from ispyd.console import ConsoleSession


class PythonPlugin:
    """The Python interpreter: version, paths, modules, thread stacks, console"""

    name = "python"
    gated_commands = {"console": "python:console"}
    #: The keys of ``[python]``, checked by the core.
    settings = {"profile_dir": "text"}
    stdout: Any = sys.stdout
    session = 0
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
        """environ [--reveal]: the environment as Python sees it (os.environ), sorted.

        Values that look secret (names with KEY, TOKEN, SECRET, PASSWORD,
        PASSWD or CREDENTIAL; passwords in URLs) are masked; --reveal shows
        them, and the audit log records it."""
        if line.strip() not in ("", "--reveal"):
            raise CommandError(f"Usage: environ [--reveal] (not {line.strip()[:200]!r})")
        reveal = line.strip() == "--reveal"
        environ: Dict[str, str] = {}
        masked: List[str] = []
        for key in sorted(os.environ):
            value = os.environ[key]
            shown = None if reveal else _native.masked_value(key, value)
            if shown is None:
                self._print(f"{key} = {value!r}")
            elif "://" not in shown:
                self._print(f"{key} = {shown} (masked)")
            else:
                self._print(f"{key} = {shown!r} (password masked)")
            if shown is not None:
                masked.append(key)
            environ[key] = value if shown is None else shown
        if masked:
            plural = "" if len(masked) == 1 else "s"
            self._print(
                f"{len(masked)} value{plural} masked (names that look secret, passwords in URLs): "
                "'environ --reveal' shows them."
            )
        if reveal:
            logging.getLogger("ispyd.audit").info(
                "session %s ran python environ --reveal: every value of os.environ", self.session
            )
        return {"environ": environ, "masked": masked}

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
        """threads [--os]: every Python thread's current stack, innermost call last.

        Threads come in the order they started (MainThread first); those
        Python's threading did not start are named by the OS. The thread
        running this command, ispyd's own, is marked and comes last. Then
        the OS threads that run no Python code now (a server's idle
        threads, ispyd's), by native id and name; in a process of more than
        256 threads they are only counted, unless --os."""
        argument = line.strip()
        if argument not in ("", "--os"):
            raise CommandError(f"Usage: threads [--os] (not {argument[:200]!r})")
        text, data = _native.threads_report(
            _native.thread_ident(), self.wants_data, self.wants_text, argument == "--os"
        )
        self.stdout.write(text)
        return data

    def do_greenlets(self, line: str) -> Optional[Dict[str, Any]]:
        """Every live greenlet's stack (gevent, eventlet, greenlet), by thread.

        For each: what it is, whether it is running or suspended, its
        parent, the WSGI request it serves (see 'wsgi requests'), its
        stack innermost call last, and where gevent spawned it. Finding
        them walks every object the garbage collector tracks, as gevent's
        own report does: in a large heap that holds the GIL for a while."""
        from ispyd import _greenlets

        text, data = _greenlets.report(self.wants_data)
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

    def activate(self, config: Dict[str, str]) -> None:
        """Reads ``[python] profile_dir``."""
        self.profile_dir = config.get("profile_dir") or None

    def do_profile(self, line: str) -> Optional[_native.NativeData]:
        """profile [SECONDS] [--hz N] [--thread ID|NAME] [--idle]: sample every thread's stack.

        Samples the Python stack of every thread (or one, by its id or
        name) N times a second (default 100) for SECONDS (default 10),
        then shows the 20 hottest functions (self and total share of the
        samples) and makes a flame graph (SVG) and the folded stacks (for
        inferno, speedscope, FlameGraph): ispy saves them where you are
        (ispy --out DIR); a client that cannot (nc) gets them written
        next to ispyd's socket, or in [python] profile_dir, and their
        paths. Threads not running on a CPU (waiting
        on a lock, in select or sleep) are left out unless --idle. It
        says how far it has got while it runs; Ctrl-C ends it early with
        what it collected. One profile at a time per process."""
        seconds, hz, thread, idle = _profile_arguments(line)
        progress = getattr(self, "progress", None)
        if not isinstance(progress, _native.NativeProgress):
            progress = None
        try:
            text, files, data = _native.profile_report(seconds, hz, thread, idle, progress, True)
        except RuntimeError as err:
            raise CommandError(str(err)) from None
        self.stdout.write(text)
        result = json.loads(str(data)) if data is not None else {}
        if getattr(self, "wants_files", False):
            self.files.extend(files)
            result["files"] = [name for name, _ in files]
            return result
        written = _write_profile(self._profile_dir(), files)
        for name, path in written:
            self._print(f"{'Flame graph' if name.endswith('.svg') else 'Folded stacks'}: {path}")
        result["files"] = [path for _, path in written]
        return result

    def _profile_dir(self) -> str:
        configured = getattr(self, "profile_dir", None)
        if configured:
            return configured
        from ispyd import manager

        for running in list(manager._managers):
            address = running.address
            if address.startswith("/"):
                return os.path.dirname(address)
        return tempfile.gettempdir()

    def do_console(self, line: str) -> Optional[ConsoleSession]:
        """An interactive Python interpreter inside this process.

        Leave it with exit(), quit() or Ctrl-D. It can do anything the
        program can: it is off unless [python:console] enabled = true."""
        return ConsoleSession()


def _profile_arguments(line: str) -> Tuple[float, int, Optional[str], bool]:
    usage = "Usage: profile [SECONDS] [--hz N] [--thread ID|NAME] [--idle]"
    seconds, hz, thread, idle = 10.0, 100, None, False
    words = line.split()
    at = 0
    while at < len(words):
        word = words[at]
        if word == "--idle":
            idle = True
        elif word in ("--hz", "--thread"):
            if at + 1 == len(words):
                raise CommandError(f"{word} needs a value. {usage}")
            at += 1
            if word == "--thread":
                thread = words[at]
            else:
                try:
                    hz = int(words[at])
                except ValueError:
                    raise CommandError(f"--hz {words[at]!r} is not a whole number. {usage}") from None
                if not 1 <= hz <= 1000:
                    raise CommandError(f"--hz takes 1 to 1000 samples a second, not {hz}")
        else:
            try:
                seconds = float(word)
            except ValueError:
                raise CommandError(f"{word!r} is not a number of seconds. {usage}") from None
            if not 0 < seconds <= 3600:
                raise CommandError(f"a profile lasts more than 0 and at most 3600 seconds, not {word}")
        at += 1
    return seconds, hz, thread, idle


def _write_profile(folder: str, files: List[Tuple[str, bytes]]) -> List[Tuple[str, str]]:
    """Writes the files, mode 0600, never over another file; their
    names and paths."""
    written: List[Tuple[str, str]] = []
    for name, content in files:
        path = os.path.join(folder, name)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except OSError as err:
            raise CommandError(f"cannot write the profile to {path}: {err.strerror}") from None
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        written.append((name, path))
    return written
