"""The ShellManager: starts ispyd's listener in the background."""

from __future__ import annotations

import atexit
import functools
import os
import signal
import sys
from typing import Optional, Set, Union

from ispyd import _native

#: Every manager still running. Held strongly: like the 2012 original's
#: listener thread, a running manager lives until shutdown() or interpreter
#: exit, even if the application keeps no reference to it.
_managers: "Set[ShellManager]" = set()
_hooks_lock = _native.Lock()
_hooks_installed = False


def _before_fork() -> None:
    if any(manager.running for manager in list(_managers)):
        _native.fork_prepare()


def _after_fork_in_parent() -> None:
    _native.fork_parent()
    for manager in list(_managers):
        native = manager._native
        if native is not None and native.running and not native.per_process:
            _warn_fixed_path_once(native.address)


#: The process the at-fork hooks last ran in (or that imported this).
_pid = os.getpid()


def _after_fork_in_child() -> None:
    global _pid
    _pid = os.getpid()
    _native.fork_child()
    # Managers may share one native shell (ISPYD_CONFIG's and the
    # application's own for the same file): each restarts once.
    alive = {}
    for manager in list(_managers):
        native = manager._native
        if native is None:
            continue
        if id(native) not in alive:
            alive[id(native)] = manager._after_fork()
        elif not alive[id(native)]:
            manager._native = None
            _managers.discard(manager)


#: How long interpreter exit waits for plugin calls still running, twice:
#: once for them to finish, once after raising SystemExit in them.
_EXIT_WAIT = 1.0


def _after_fork_from_c() -> None:
    """In a process forked without ``os.fork`` (uWSGI forks its workers in
    C), whose at-fork hooks therefore never ran: what they would have done,
    once. Called by the server's own post-fork hook."""
    if os.getpid() != _pid:
        _after_fork_in_child()


def _install_uwsgi_hooks() -> None:
    """Under uWSGI, which forks its workers from C (the app loaded in the
    master, as without ``--lazy-apps``): each worker gets its listener from
    uWSGI's post-fork hook, through ``uwsgidecorators``' chain of them, so
    that the application's own ``@postfork`` functions, or a hook it set
    itself, still run."""
    try:
        import uwsgi  # type: ignore[import-not-found]
    except ImportError:
        return
    hook = getattr(uwsgi, "post_fork_hook", None)
    spooler = getattr(uwsgi, "spooler", None)
    # uWSGI sets a worker's signal handlers after its post-fork hook and
    # after a lazy worker's import of the app: dump_on's handlers go back in
    # front at the worker's first request.
    _native.rearm_at_next_request()
    try:
        import uwsgidecorators  # type: ignore[import-not-found]
    except ImportError:
        # uWSGI without its decorators module: chain by hand.
        def post_fork() -> None:
            _uwsgi_post_fork()
            if hook is not None:
                hook()

        uwsgi.post_fork_hook = post_fork
        return
    chain = uwsgidecorators.postfork_chain_hook
    # Importing uwsgidecorators the first time sets both of these.
    if spooler is not None:
        uwsgi.spooler = spooler
    if hook is not None and hook is not chain:
        uwsgidecorators.postfork_chain.insert(0, hook)
    uwsgi.post_fork_hook = chain
    uwsgidecorators.postfork_chain.append(_uwsgi_post_fork)


def _uwsgi_post_fork() -> None:
    _after_fork_from_c()
    _native.rearm_at_next_request()


def _at_exit() -> None:
    for manager in list(_managers):
        manager.shutdown()
    # The interpreter is still whole here; once it finalizes, a call still
    # running on an ispyd thread would crash the process (see gate.rs).
    _native.close_python_calls(_EXIT_WAIT)


def _install_hooks() -> None:
    global _hooks_installed
    with _hooks_lock:
        if _hooks_installed:
            return
        # A forked child (a gunicorn worker, a multiprocessing process) has
        # none of the parent's threads: it gets a listener of its own. The
        # parent watches each child, to remove the child's socket file if
        # the child execs or ends without removing it (see fork_watch.rs).
        os.register_at_fork(
            before=_before_fork,
            after_in_parent=_after_fork_in_parent,
            after_in_child=_after_fork_in_child,
        )
        # Remove the socket at interpreter exit, connected clients or not.
        atexit.register(_at_exit)
        _install_uwsgi_hooks()
        _hooks_installed = True


#: The manager ISPYD_CONFIG started at interpreter start-up, if any.
_activated: "Optional[ShellManager]" = None


def start_activated(config_file: str) -> "ShellManager":
    """Starts the shell ``ISPYD_CONFIG`` names (see ``ispyd._activate``)."""
    global _activated
    _activated = ShellManager(config_file)
    return _activated


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


_signal_wrapped = False


def _keep_signal_handlers_first() -> None:
    """While ispyd handles a signal (``dump_on``, ``activate_on``), a handler
    the application sets later with ``signal.signal`` (a gunicorn worker
    sets its own after the fork) goes behind ispyd's native one, which does
    its part and then hands the signal on to it."""
    global _signal_wrapped
    if _signal_wrapped or not _native.handled_signals():
        return
    original = signal.signal

    @functools.wraps(original)
    def wrapped(signalnum, handler):  # type: ignore[no-untyped-def]
        previous = original(signalnum, handler)
        _native.keep_first(int(signalnum))
        return previous

    signal.signal = wrapped
    _signal_wrapped = True


_warned_fixed_path = False


def _warn_fixed_path_once(address: str) -> None:
    """Forked children (gunicorn --preload workers) cannot listen on the
    parent's fixed path: the parent says so at its first fork."""
    global _warned_fixed_path
    if _warned_fixed_path:
        return
    _warned_fixed_path = True
    print(
        f"ispyd: [ispyd] listen is a fixed path ({address}): only the process that created the "
        "ShellManager listens, not the processes forked from it (gunicorn --preload workers); "
        "put %(pid)s in the path for one socket per process",
        file=sys.stderr,
        flush=True,
    )


class ShellManager:
    """Runs an ispyd shell for this process, configured by an ini file.

    The listener runs on a native thread that never holds the GIL while it
    waits, so an idle ispyd costs the application nothing. Raises
    :class:`ispyd.ConfigurationError` for a missing or wrong configuration
    (the message names the file, section and key) and
    :class:`ispyd.ListenError` when the socket cannot be created.

    Use :meth:`shutdown` (or a ``with`` block) to stop it; it also stops at
    interpreter exit, removing its socket file. Until then it keeps
    running even if the application drops every reference to it, as the
    2012 original did.
    """

    def __init__(self, config_file: Union[str, "os.PathLike[str]"]) -> None:
        self.config_file = os.fspath(config_file)
        _install_hooks()
        activated = _activated
        if activated is not None and activated.running and _same_file(activated.config_file, self.config_file):
            # ISPYD_CONFIG already started this shell at start-up: the
            # application's own ShellManager for the same file is that one.
            self._native = activated._native
            _managers.add(self)
            return
        self._native: Optional[_native.NativeManager] = _native.NativeManager(
            self.config_file
        )
        _keep_signal_handlers_first()
        _managers.add(self)

    @property
    def address(self) -> str:
        """Where this process listens: a socket path or ``host:port``."""
        return self._native.address if self._native is not None else ""

    @property
    def warnings(self) -> list:
        """Unknown keys and sections found in the configuration."""
        return self._native.warnings if self._native is not None else []

    @property
    def running(self) -> bool:
        """True until :meth:`shutdown`."""
        return self._native is not None and self._native.running

    def shutdown(self) -> None:
        """Stops listening, ends the sessions and removes the socket file.

        Calling it again does nothing.
        """
        native = self._native
        if native is not None:
            native.shutdown()
        _managers.discard(self)

    def _after_fork(self) -> bool:
        """In a forked child: restarts the shell there; whether it runs."""
        native = self._native
        if native is not None and native.running:
            if native.restart_after_fork():
                return True
            self._native = None
            _managers.discard(self)
        return False

    def __enter__(self) -> "ShellManager":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        state = "listening on " + self.address if self.running else "stopped"
        return f"<ShellManager {self.config_file!r} {state}>"
