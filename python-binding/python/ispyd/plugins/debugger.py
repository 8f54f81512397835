"""The ``debugger`` plugin: exception probes on functions and methods, and
post-mortem ``pdb`` on what they caught, over the ispyd connection.

The seed's commands, on ``ispyd.probes`` (the probes and their shared
registry) and ``ispyd.postmortem`` (pdb driven line by line). It runs any
code its user types, inside the application: it is off unless the
configuration says ``[debugger] enabled = true``.
"""

from __future__ import annotations

import datetime
import sys
from typing import Any, Dict, List, NoReturn, Optional, Sequence, Tuple

from ispyd import probes
from ispyd._support import CommandError
from ispyd.postmortem import DebugSession
from ispyd.probes import ProbeError

#: The default of ``[debugger] command_timeout``.
DEFAULT_COMMAND_TIMEOUT = 5.0


def _iso(when: float) -> str:
    return datetime.datetime.fromtimestamp(when, datetime.timezone.utc).isoformat()


class _Settings:
    command_timeout = DEFAULT_COMMAND_TIMEOUT


def configure(config: Dict[str, str]) -> None:
    """Applies the ``[debugger]`` section. The core has checked its values
    against :attr:`DebuggerPlugin.settings` (a bad one is a configuration
    error naming file, section and key) and warned of unknown keys."""
    max_tracebacks = int(config.get("max_tracebacks", probes.DEFAULT_MAX_TRACEBACKS))
    command_timeout = float(config.get("command_timeout", DEFAULT_COMMAND_TIMEOUT))
    probes.set_max_tracebacks(max_tracebacks)
    _Settings.command_timeout = command_timeout


class DebuggerPlugin:
    """Exception probes on functions, and post-mortem pdb on what they caught

    Off unless the configuration says ``[debugger] enabled = true``: it runs
    any code its user types, inside the application.
    """

    name = "debugger"
    gate = "debugger"
    #: The keys of ``[debugger]``, checked by the core.
    settings = {"max_tracebacks": range(1, 100_001), "command_timeout": "seconds"}
    stdout: Any = sys.stdout

    def activate(self, config: Dict[str, str]) -> None:
        """``[debugger]``: ``max_tracebacks`` (how many probes may hold a
        traceback, default 100), ``command_timeout`` (seconds a pdb command
        may run before it is interrupted, default 5; keep it a few seconds
        below ``[ispyd] call_timeout``)."""
        configure(config)

    def shutdown(self) -> None:
        """ispyd stops: the application gets its functions back."""
        probes.reset()

    def _print(self, text: str = "") -> None:
        print(text, file=self.stdout)

    def _error(self, text: str) -> NoReturn:
        raise CommandError(text)

    def _table(self, header: Tuple[str, ...], rows: Sequence[Tuple[str, ...]]) -> None:
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths)] + [row[-1]]
            self._print("  ".join(cells).rstrip())

    def do_insert(self, line: str) -> None:
        """insert MODULE:FUNCTION | MODULE:Class.method: catch the exceptions it raises.

        Replaces the function in place (in its module, or in its class for a
        method, static method or class method; nested classes as
        MODULE:Outer.Inner.method) with a probe that records the traceback
        of any exception raised within it, then re-raises that exception
        unchanged. The probe keeps the name, docstring and signature
        (__wrapped__ is the original); 'remove' and 'reset' put back the
        original object itself.

        Only calls that look the name up after the probe is inserted reach
        it: code that took its own reference before ('from mod import
        function', a framework's table of callbacks, a bound method stored
        away) still calls the original, and its exceptions are not caught;
        probe a function such code calls by name instead. A Flask view is
        probed in its app's view_functions too, and said so.

        Exceptions (Exception and its subclasses) are caught; SystemExit,
        KeyboardInterrupt and GeneratorExit pass untouched. The module is
        imported if it was not loaded yet."""
        target = line.strip()
        if not target:
            self._error(f"Usage: {probes.USAGE}")
            return
        try:
            probe = probes.insert(target)
        except ProbeError as err:
            self._error(str(err))
            return
        self._print(f"Probe inserted on {probe.name} ({probe.kind}).")
        for _, _, what in probe.tables:
            self._print(f"Also probed in {what}, which keeps its own reference to it.")

    def complete_insert(self, word: str) -> List[str]:
        """Tab after ``insert``: loaded modules, then after the ``:`` their
        functions and classes, and after a class's ``.`` its methods."""
        module_name, colon, path = word.partition(":")
        if not colon:
            return [f"{name}:" for name in list(sys.modules) if name.startswith(module_name)]
        module = sys.modules.get(module_name)
        if module is None:
            return []
        *owners, last = path.split(".")
        target: Any = module
        for owner in owners:
            target = getattr(target, owner, None)
            if not isinstance(target, type):
                return []
        prefix = f"{module_name}:" + "".join(f"{owner}." for owner in owners)
        found = []
        for name, value in list(vars(target).items()):
            if not name.startswith(last) or (name.startswith("_") and not last.startswith("_")):
                continue
            if isinstance(value, type):
                found.append(f"{prefix}{name}.")
            elif callable(value) or isinstance(value, (staticmethod, classmethod)):
                found.append(f"{prefix}{name}")
        return found

    def complete_remove(self, word: str) -> List[str]:
        """Tab after ``remove``: the probes."""
        return [name for name, _, _, _ in probes.probes() if name.startswith(word)]

    complete_print = complete_debug = complete_discard = complete_remove

    def do_remove(self, line: str) -> None:
        """remove NAME: remove the probe NAME, putting the original back.

        NAME is as 'insert' was given it (see 'list'). The traceback the
        probe captured, if any, stays until 'discard' or 'reset'."""
        name = line.strip()
        if not name:
            self._error("Usage: remove NAME (see 'list' for the probes)")
            return
        try:
            self._print(probes.remove(name))
        except ProbeError as err:
            self._error(str(err))

    def do_list(self, line: str) -> Dict[str, Any]:
        """List the probes, with how many exceptions each caught.

        Also whether each holds a traceback ('tracebacks' lists those)."""
        listed = probes.probes()
        rows = [(name, kind, str(caught), "yes" if held else "no") for name, kind, caught, held in listed]
        if not rows:
            self._print("No probes. 'insert MODULE:FUNCTION' inserts one.")
        else:
            self._table(("PROBE", "KIND", "CAUGHT", "TRACEBACK"), rows)
        return {
            "probes": [
                {"name": name, "kind": kind, "caught": caught, "holds_traceback": bool(held)}
                for name, kind, caught, held in listed
            ]
        }

    def do_reset(self, line: str) -> None:
        """Remove every probe and discard every captured traceback.

        Each function or method gets its original object back."""
        count = probes.reset()
        self._print(f"Removed {count} probe{'s' if count != 1 else ''}; no tracebacks held.")

    def do_tracebacks(self, line: str) -> Dict[str, Any]:
        """List the captured tracebacks, with their time, thread and exception.

        Each probe holds the last exception it caught; at most
        max_tracebacks probes ([debugger] section, default 100) hold one,
        the oldest capture being dropped first. 'print NAME' shows one,
        'debug NAME' runs pdb on it, 'discard NAME' drops it."""
        held, dropped, limit = probes.captures()
        rows = [(name, capture.time_text(), capture.thread, capture.summary()) for name, capture in held]
        data: List[Dict[str, Any]] = [
            {
                "probe": name,
                "captured_at": _iso(capture.when),
                "captured_epoch": capture.when,
                "thread": capture.thread,
                "exception_type": capture.exc_type.__name__,
                "exception": capture.summary(),
            }
            for name, capture in held
        ]
        del held
        if not rows:
            self._print("No tracebacks captured.")
        else:
            self._table(("PROBE", "CAPTURED", "THREAD", "EXCEPTION"), rows)
        if dropped:
            were = "s were" if dropped != 1 else " was"
            self._print(f"({dropped} older traceback{were} dropped: max_tracebacks = {limit})")
        return {"tracebacks": data, "dropped": dropped, "max_tracebacks": limit}

    def _capture(self, command: str, line: str) -> Optional[probes.Capture]:
        name = line.strip()
        if not name:
            self._error(f"Usage: {command} NAME (see 'tracebacks')")
            return None
        try:
            return probes.capture_of(name)
        except ProbeError as err:
            self._error(str(err))
            return None

    def do_print(self, line: str) -> None:
        """print NAME: show the traceback probe NAME captured, with source lines.

        The stack runs from the thread's first frame to the one that
        raised, as it was when the exception left the probed function
        (the probe's own frame left out)."""
        capture = self._capture("print", line)
        if capture is None:
            return
        self._print(f"Captured by {line.strip()} at {capture.time_text()} in thread {capture.thread}:")
        self.stdout.write(capture.format())

    def do_discard(self, line: str) -> None:
        """discard NAME: drop the traceback probe NAME captured.

        That frees the frames it kept alive. The probe, if any, stays."""
        name = line.strip()
        if not name:
            self._error("Usage: discard NAME (see 'tracebacks')")
            return
        try:
            probes.discard(name)
        except ProbeError as err:
            self._error(str(err))
            return
        self._print(f"Discarded the traceback of {name}.")

    def do_debug(self, line: str) -> Optional[DebugSession]:
        """debug NAME: run pdb post-mortem on the traceback probe NAME captured.

        The prompt becomes '(Pdb) ': p, pp, l, ll, up, down, bt, where and
        the other inspection commands work, and '!statement' runs in the
        selected frame. q, c or Ctrl-D leave pdb. The application and other
        sessions keep running meanwhile; a command that runs longer than
        command_timeout ([debugger] section, default 5 s) is interrupted as
        Ctrl-C would."""
        capture = self._capture("debug", line)
        if capture is None:
            return None
        name = line.strip()
        if capture.tb is None:
            self._error(f"The exception captured by '{name}' has no traceback to debug.")
            return None
        self._print(
            f"Post-mortem of {capture.summary()}, captured by {name} at {capture.time_text()} "
            f"in thread {capture.thread}. 'q' or Ctrl-D leaves pdb."
        )
        return DebugSession(name, capture.tb, _Settings.command_timeout)
