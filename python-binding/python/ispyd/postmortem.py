"""Post-mortem pdb over an ispyd connection: the ``debugger`` plugin's
``debug`` takeover.

Theory of operation
===================

A :class:`DebugSession` runs ``pdb`` on a thread of its own: pdb reads its
commands from a queue and writes to a buffer, both a :class:`_Channel`.
Each line the user sends is put on the queue; the session's call waits
until pdb asks for the next line (the output so far and pdb's prompt go
back) or ends (the takeover ends). Waiting releases the GIL, so the
application, its other threads and other sessions run on.

Every wait is bounded. A command that runs longer than ``command_timeout``
is interrupted as Ctrl-C would (``KeyboardInterrupt`` raised in pdb's
thread); one that cannot be interrupted (blocked in C code) is left to
finish alone: the user gets the shell back, and that pdb ends once the
command returns. A takeover dropped before it finished (the client left,
ispyd gave up waiting) ends its pdb the same way. A pdb left without input
for an hour ends by itself.

What stock pdb does to the whole process is done to pdb's thread only here:
see :func:`_define_post_mortem`.
"""

from __future__ import annotations

import collections
import sys
import time
import traceback
import types
from typing import Any, List, Optional, Tuple

from ispyd import _native, console
from ispyd._interrupt import cancel, interrupt

#: How long an interrupted pdb command gets to stop before the user is given
#: the shell back without it.
GRACE = 2.0

#: How long a pdb waits for its next line before it ends by itself. It
#: bounds the life of a pdb whose session vanished without its takeover
#: being dropped; the same as ispyd's default ``idle_timeout``.
_INPUT_WAIT = 3600.0

#: How often a waiting session's call wakes, so that an exception raised in
#: its thread (interpreter exit) is seen promptly.
_SLICE = 0.25


_EOF = object()

_interrupt = interrupt
_cancel_interrupt = cancel


class _Channel:
    """Between a session and its pdb thread: lines in, output out.

    pdb sees it as its stdin (``readline``) and stdout (``write``). All the
    fields are guarded by ``cond``, a native lock and condition, as pdb's
    thread is a native thread: see ``console.ConsoleSession``."""

    def __init__(self) -> None:
        self.cond = _native.Lock()
        self.lines: "collections.deque[Any]" = collections.deque()
        self.out: List[str] = []
        #: Times pdb has asked for a line; with ``waiting``, tells a session
        #: that pdb took its line and is asking for the next one.
        self.asks = 0
        self.waiting = False
        self.prompt = "(Pdb) "
        self.finished = False
        self.closed = False
        self.thread_id: Optional[int] = None
        self.debugger: Any = None

    # -- pdb's side -----------------------------------------------------------

    def write(self, text: str) -> int:
        with self.cond:
            self.out.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def readline(self, size: int = -1) -> str:
        with self.cond:
            # cmd.Cmd writes its prompt just before it reads: hand it over
            # as the prompt, not as output.
            prompt = self.debugger.prompt if self.debugger is not None else ""
            if prompt and self.out and self.out[-1] == prompt:
                self.out.pop()
            self.prompt = prompt or "(Pdb) "
            self.asks += 1
            self.waiting = True
            self.cond.notify_all()
            deadline = time.monotonic() + _INPUT_WAIT
            try:
                while not self.lines and not self.closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self.closed = True
                        break
                    self.cond.wait(remaining)
                line: Any = _EOF if self.closed or not self.lines else self.lines.popleft()
            finally:
                self.waiting = False
        return "" if line is _EOF else line + "\n"

    def finish(self) -> None:
        with self.cond:
            self.finished = True
            self.cond.notify_all()

    # -- the session's side ---------------------------------------------------

    def take(self) -> str:
        text = "".join(self.out)
        self.out.clear()
        return text

    def abandon(self) -> None:
        """Ends the pdb: at once if it waits for a line, otherwise at its
        next line, after interrupting the command it runs."""
        with self.cond:
            if self.finished or self.closed:
                return
            self.closed = True
            if not self.waiting and self.thread_id is not None:
                _interrupt(self.thread_id)
            self.cond.notify_all()


_post_mortem_class: Optional[type] = None


def _post_mortem(channel: _Channel) -> Any:
    """A pdb for ``channel``. pdb is imported on first use, not with this
    module."""
    global _post_mortem_class
    if _post_mortem_class is None:
        _post_mortem_class = _define_post_mortem()
    return _post_mortem_class(channel)


def _define_post_mortem() -> type:
    import pdb

    class PostMortem(pdb.Pdb):
        """pdb reading from and writing to an ispyd session.

        What stock pdb does to the whole process is done to this thread
        only: ``!`` statements print to this session (through the console's
        per-thread routing of ``sys.stdout``), without swapping
        ``sys.stdout``, ``sys.stdin`` or ``sys.displayhook`` for everyone.
        Commands that would read the application's own stdin, or restart
        it, say so instead."""

        def __init__(self, channel: _Channel) -> None:
            # pdb's constructor sets readline's completer delimiters, for
            # the whole process: keep those of an application that uses it.
            readline = sys.modules.get("readline")
            delims = readline.get_completer_delims() if readline is not None else None
            try:
                super().__init__(stdin=channel, stdout=channel, nosigint=True, readrc=False)  # type: ignore[arg-type]
            finally:
                if readline is not None and delims is not None:
                    readline.set_completer_delims(delims)
            self.use_rawinput = False
            self.prompt = "(Pdb) "
            channel.debugger = self

        def default(self, line: str) -> None:
            if line[:1] == "!":
                line = line[1:]
            frame_globals = self.curframe.f_globals  # type: ignore[union-attr]
            frame_locals = self.curframe_locals
            try:
                try:
                    code = compile(line, "<stdin>", "eval")
                except SyntaxError:
                    exec(compile(line + "\n", "<stdin>", "exec"), frame_globals, frame_locals)
                else:
                    value = eval(code, frame_globals, frame_locals)
                    if value is not None:
                        self.message(repr(value))
            except BaseException:  # noqa: BLE001 - as pdb: any error is shown
                exc_type, exc_value = sys.exc_info()[:2]
                self.error(traceback.format_exception_only(exc_type, exc_value)[-1].strip())

        def do_interact(self, arg: str) -> None:
            """interact
            Not available over ispyd: use the python plugin's 'console'."""
            self.error("'interact' is not available over ispyd; the python plugin's 'console' is.")

        def do_debug(self, arg: str) -> None:
            """debug code
            Not available over ispyd (post-mortem only)."""
            self.error("'debug' (a recursive debugger) is not available over ispyd.")

        def do_run(self, arg: str) -> None:
            """run / restart
            Not available over ispyd: this is the application's process."""
            self.error("'run' and 'restart' are not available: this is the application's own process.")

        do_restart = do_run

        def do_clear(self, arg: str) -> None:
            if not arg:
                # pdb would ask "Clear all breaks?" on the application's stdin.
                self.clear_all_breaks()
                self.message("Deleted all breakpoints.")
                return
            super().do_clear(arg)

        do_clear.__doc__ = pdb.Pdb.do_clear.__doc__
        do_cl = do_clear

        def help_pdb(self) -> None:
            self.message(pdb.__doc__ or "")

        def _cannot_step(self, name: str) -> None:
            self.error(
                f"'{name}' cannot run here: this is a post-mortem, the traceback has finished and "
                "there is nothing to step through. 'u' and 'd' move between its frames, 'p' and "
                "'!' look at them; 'q' or Ctrl-D leaves."
            )

        def do_next(self, arg: str) -> None:
            """next / step / until / return / jump
            Not available over ispyd: a post-mortem has nothing to step."""
            self._cannot_step("next")

        def do_step(self, arg: str) -> None:
            self._cannot_step("step")

        def do_until(self, arg: str) -> None:
            self._cannot_step("until")

        def do_return(self, arg: str) -> None:
            self._cannot_step("return")

        def do_jump(self, arg: str) -> None:
            self._cannot_step("jump")

        do_n = do_next
        do_s = do_step
        do_unt = do_until
        do_r = do_return
        do_j = do_jump
        do_step.__doc__ = do_until.__doc__ = do_return.__doc__ = do_jump.__doc__ = do_next.__doc__

        def do_continue(self, arg: str) -> bool:
            """continue
            Leaves pdb: post-mortem there is nothing to continue."""
            self.message("Post-mortem: nothing to continue (the traceback has finished); left pdb.")
            return super().do_continue(arg)

        do_c = do_cont = do_continue

        def do_help(self, arg: str) -> None:
            super().do_help(arg)
            if not arg:
                self.message(
                    "Over ispyd, post-mortem in a live process: next, step, until, return and jump "
                    "have nothing to step; run, restart, debug and interact are not available; "
                    "continue and quit leave pdb.\n"
                )

    return PostMortem


def _run_pdb(channel: _Channel, tb: types.TracebackType) -> None:
    """The pdb thread: post-mortem on ``tb`` until q, c or end of input."""
    ident = _native.thread_ident()
    with channel.cond:
        channel.thread_id = ident
    console._install_router()
    console._routes[ident] = channel  # type: ignore[assignment]
    try:
        debugger = _post_mortem(channel)
        debugger.reset()
        debugger.interaction(None, tb)
    except BaseException as err:  # noqa: BLE001 - reported to the session
        try:
            channel.write(f"*** The debugger stopped: {type(err).__name__}: {err}\n")
        except BaseException:  # noqa: BLE001
            pass
    finally:
        _cancel_interrupt(ident)
        sys.settrace(None)
        console._routes.pop(ident, None)
        channel.finish()


class DebugSession:
    """``pdb`` post-mortem on a captured traceback, driven line by line
    over an ispyd connection. ``q``, ``c`` or Ctrl-D leave it."""

    def __init__(self, name: str, tb: types.TracebackType, command_timeout: float) -> None:
        self._name = name
        self._tb: Optional[types.TracebackType] = tb
        self._timeout = command_timeout
        self._channel = _Channel()

    def start(self) -> Tuple[str, Optional[str]]:
        channel = self._channel
        # The thread refers to the channel, never to this object, so that
        # dropping this object (see __del__) can end the thread.
        tb, self._tb = self._tb, None
        with channel.cond:
            _native.start_thread(lambda: _run_pdb(channel, tb), "ispyd-pdb")
            before = channel.asks
        return self._wait(before)

    def complete(self, text: str) -> Tuple[int, List[str]]:
        """Tab: pdb's commands for the first word, then the names and
        attributes of the selected frame, as in an expression after ``p``
        or ``!``."""
        from ispyd._support import python_completions

        debugger = self._channel.debugger
        if debugger is None or self._channel.finished:
            return len(text), []
        stripped = text.lstrip()
        if " " not in stripped and not stripped.startswith("!"):
            start = len(text) - len(stripped)
            names = sorted({name[3:] for name in dir(debugger) if name.startswith("do_") and name[3:].startswith(stripped)})
            return start, names
        frame = getattr(debugger, "curframe", None)
        if frame is None:
            return len(text), []
        namespace = dict(frame.f_globals)
        namespace.update(getattr(debugger, "curframe_locals", None) or frame.f_locals)
        return python_completions(text, namespace)

    def interrupt(self) -> None:
        """Ctrl-C from the client: interrupts the pdb command running now
        (pdb says so and asks for the next one); nothing while pdb waits
        for a line."""
        channel = self._channel
        with channel.cond:
            if not channel.waiting and not channel.finished and channel.thread_id is not None:
                _interrupt(channel.thread_id)

    def feed(self, line: Optional[str]) -> Tuple[str, Optional[str]]:
        channel = self._channel
        with channel.cond:
            if channel.finished or channel.closed:
                return channel.take(), None
            before = channel.asks
            channel.lines.append(_EOF if line is None else line)
            channel.cond.notify_all()
        return self._wait(before)

    def _wait(self, before: int) -> Tuple[str, Optional[str]]:
        """Waits, bounded, until pdb asks for a line after the ``before``-th
        or ends."""
        channel = self._channel
        started = time.monotonic()
        interrupted = False
        note = ""
        with channel.cond:
            while True:
                if channel.finished:
                    return channel.take() + note, None
                if channel.waiting and channel.asks > before:
                    return channel.take() + note, channel.prompt
                elapsed = time.monotonic() - started
                if not interrupted and elapsed >= self._timeout:
                    interrupted = True
                    if channel.thread_id is not None:
                        _interrupt(channel.thread_id)
                    note = (
                        f"*** The command ran longer than command_timeout ({self._timeout:g} s): "
                        "interrupted it, as Ctrl-C would.\n"
                    )
                elif interrupted and elapsed >= self._timeout + GRACE:
                    channel.closed = True
                    return (
                        channel.take()
                        + f"*** The command is still running {self._timeout + GRACE:g} s later and "
                        "cannot be interrupted (it waits outside Python code). Left the debugger; "
                        "its pdb ends when that command returns.\n",
                        None,
                    )
                limit = self._timeout if not interrupted else self._timeout + GRACE
                channel.cond.wait(max(0.01, min(_SLICE, limit - elapsed)))

    def __del__(self) -> None:
        try:
            self._channel.abandon()
        except Exception:  # noqa: BLE001 - nothing to report to at this point
            pass
