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
from typing import Any, Dict, List, Optional, TextIO, Tuple

from ispyd import _interrupt, _native

_routes: Dict[int, Any] = {}
_install_lock = _native.Lock()


class _Router(io.TextIOBase):
    """Stands in for ``sys.stdout``/``sys.stderr``: console threads write to
    their console, all others to the original stream.

    For the application it behaves as the stream it replaced, whatever a
    console line did to ``sys.stdout`` before: if that was ``None`` (a
    console typed ``sys.stdout = None``, or the program runs without one,
    as under ``pythonw``), writes are dropped, as ``print`` drops them when
    ``sys.stdout`` is ``None``, instead of raising in the application's
    thread."""

    def __init__(self, original: Optional[TextIO]) -> None:
        self._original = original

    def write(self, text: str) -> int:
        target = _routes.get(_native.thread_ident())
        if target is not None:
            return target.write(text)
        if self._original is None:
            return len(text)
        return self._original.write(text)

    def flush(self) -> None:
        if _native.thread_ident() not in _routes and self._original is not None:
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
        # Tracebacks and syntax errors, to the buffer of the line that
        # raised them.
        _routes.get(_native.thread_ident(), self._out).write(data)


def banner() -> str:
    """The banner Python's own interactive interpreter shows."""
    return (
        f"Python {sys.version} on {sys.platform}\n"
        'Type "help", "copyright", "credits" or "license" for more information.\n'
        "(EmbeddedConsole)\n"
    )


#: How long an interrupted line gets to stop before the prompt comes back
#: without it (it is blocked in C code, e.g. ``time.sleep``, and stops when
#: that call returns).
GRACE = 0.5


class ConsoleSession:
    """An interpreter session driven line by line over an ispyd connection.

    Leave it with ``exit()``, ``quit()`` or end of input (Ctrl-D).

    Each line runs on a thread of its own, so that an interrupt (Ctrl-C in
    ``ispy``, ``call_timeout``, the client leaving) gives the prompt back
    even when the line is blocked in C code, where ``KeyboardInterrupt``
    cannot reach it until the call returns; such a line finishes on its own,
    its output dropped. The thread, and the locks and events between it and
    the session, are native (``_native``): green-thread monkey-patching
    (gevent, eventlet) would make them greenlets, which no Ctrl-C reaches.
    """

    def __init__(self, namespace: Optional[Dict[str, Any]] = None) -> None:
        _install_router()
        self._out = io.StringIO()
        if namespace is None:
            namespace = {"__name__": "__console__", "__doc__": None}
        for name in ("exit", "quit"):
            namespace.setdefault(name, _Leave(name))
        self._console = _Console(namespace, self._out)
        #: The thread running a line now, for interrupt().
        self._running: Optional[int] = None
        self._interrupted = _native.Event()
        self._lock = _native.Lock()

    def interrupt(self) -> None:
        """Ctrl-C from the client, a line past its time limit, or a client
        that went: raises KeyboardInterrupt in the code the current line
        runs, as Ctrl-C does at a local prompt. Nothing when no line runs."""
        with self._lock:
            if self._running is not None:
                _interrupt.interrupt(self._running)
                self._interrupted.set()

    def start(self) -> Tuple[str, Optional[str]]:
        return banner(), ">>> "

    def complete(self, text: str) -> Tuple[int, List[str]]:
        """Tab: the names and attributes of the console's namespace, as
        Python's own prompt offers them."""
        from ispyd._support import python_completions

        return python_completions(text, self._console.locals)

    def feed(self, line: Optional[str]) -> Tuple[str, Optional[str]]:
        if line is None:
            return "\n", None
        from ispyd._support import BoundedText

        out = BoundedText()
        outcome: Dict[str, bool] = {}
        done = _native.Event()
        self._interrupted.clear()

        def run() -> None:
            ident = _native.thread_ident()
            _routes[ident] = out
            with self._lock:
                self._running = ident
            try:
                try:
                    outcome["more"] = self._console.push(line)
                except SystemExit:
                    outcome["exit"] = True
                except KeyboardInterrupt:
                    # It landed outside the user's code, in the console's.
                    self._console.resetbuffer()
                    out.write("\nKeyboardInterrupt\n")
                finally:
                    with self._lock:
                        self._running = None
                    # One asked for as the line ended must not hit what
                    # comes next.
                    _interrupt.cancel(ident)
                    _routes.pop(ident, None)
                    done.set()
            except KeyboardInterrupt:
                done.set()

        _native.start_thread(run, "ispyd-line")
        while not done.wait(0.05):
            if self._interrupted.is_set() and not done.wait(GRACE):
                # Blocked in C code: give the prompt back without it.
                self._console.resetbuffer()
                return (
                    out.getvalue() + "\nKeyboardInterrupt (the line is blocked outside Python code; "
                    "it stops when that call returns, and its output is dropped)\n",
                    ">>> ",
                )
        if outcome.get("exit"):
            return out.getvalue(), None
        return out.getvalue(), ("... " if outcome.get("more") else ">>> ")
