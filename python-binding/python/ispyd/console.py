"""The embedded interactive interpreter behind the python plugin's
``console`` command.

What the console's code prints must reach that client only, while the
application's own output from other threads stays where it was. So
``sys.stdout`` and ``sys.stderr`` are replaced, once, by a router that sends
writes made on a thread running a console line to that console's buffer,
and everything else to the stream it replaced.
"""

from __future__ import annotations

import code
import io
import sys
import threading
from typing import Any, Dict, Optional, TextIO, Tuple

_routes: Dict[int, io.StringIO] = {}
_install_lock = threading.Lock()


class _Router(io.TextIOBase):
    """Stands in for ``sys.stdout``/``sys.stderr``: console threads write to
    their console, all others to the original stream."""

    def __init__(self, original: TextIO) -> None:
        self._original = original

    def write(self, text: str) -> int:
        target = _routes.get(threading.get_ident())
        if target is not None:
            return target.write(text)
        return self._original.write(text)

    def flush(self) -> None:
        if threading.get_ident() not in _routes:
            self._original.flush()

    def writable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        # encoding, fileno, isatty, buffer...: those of the real stream.
        return getattr(self._original, name)


def _install_router() -> None:
    with _install_lock:
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if not isinstance(stream, _Router):
                setattr(sys, name, _Router(stream))


class _Leave:
    """``exit()`` and ``quit()`` inside the console: leave the console.

    Python's own (``site.Quitter``) also closes ``sys.stdin`` before raising
    ``SystemExit``. Here that stdin is the application's: closing it would
    take it from the application, and blocks for as long as one of its
    threads is reading from it.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Use {self.name}() or Ctrl-D (i.e. EOF) to exit"

    def __call__(self, code: object = None) -> None:
        raise SystemExit(code)


class _Console(code.InteractiveConsole):
    def __init__(self, namespace: Dict[str, Any], out: io.StringIO) -> None:
        super().__init__(namespace, filename="<console>")
        self._out = out

    def write(self, data: str) -> None:
        # Tracebacks and syntax errors.
        self._out.write(data)


def banner() -> str:
    """The banner Python's own interactive interpreter shows."""
    return (
        f"Python {sys.version} on {sys.platform}\n"
        'Type "help", "copyright", "credits" or "license" for more information.\n'
        "(EmbeddedConsole)\n"
    )


class ConsoleSession:
    """An interpreter session driven line by line over an ispyd connection.

    Leave it with ``exit()``, ``quit()`` or end of input (Ctrl-D).
    """

    def __init__(self, namespace: Optional[Dict[str, Any]] = None) -> None:
        _install_router()
        self._out = io.StringIO()
        if namespace is None:
            namespace = {"__name__": "__console__", "__doc__": None}
        for name in ("exit", "quit"):
            namespace.setdefault(name, _Leave(name))
        self._console = _Console(namespace, self._out)

    def _take(self) -> str:
        text = self._out.getvalue()
        self._out.seek(0)
        self._out.truncate()
        return text

    def start(self) -> Tuple[str, Optional[str]]:
        return banner(), ">>> "

    def feed(self, line: Optional[str]) -> Tuple[str, Optional[str]]:
        if line is None:
            return "\n", None
        ident = threading.get_ident()
        _routes[ident] = self._out
        try:
            more = self._console.push(line)
        except SystemExit:
            return self._take(), None
        finally:
            _routes.pop(ident, None)
        return self._take(), ("... " if more else ">>> ")
