"""A Python program embedding ispyd, driven by the tests through its stdin.

Usage: ``python host.py CONFIG [--sigterm] [--with]``

It creates ``ShellManager(CONFIG)`` as the 2012 README shows, prints
``READY PID ADDRESS``, then runs one command per stdin line (see
``COMMANDS``) until stdin ends, and then exits normally, leaving the
manager to the interpreter's exit.

``--sigterm`` installs the usual handler, ``SIGTERM -> sys.exit(0)``;
``--usr1`` one that prints ``USR1`` for each SIGUSR1.
``--with`` runs the command loop inside ``with ShellManager(...)``;
``--unreferenced`` keeps no reference to the manager.
"""

import asyncio
import ctypes
import gc
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time

from ispyd.manager import ShellManager

manager = None


def say(*words):
    print(*words, flush=True)


def cmd_print(arg):
    """The application's own output, from the main thread."""
    say(arg)


def _chatter(count):
    for n in range(count):
        print(f"chatter {n}", flush=True)
        time.sleep(0.005)
    say("chatter done")


def cmd_chatter(arg):
    """The application's own output from another thread, while consoles run."""
    threading.Thread(target=_chatter, args=(int(arg),), name="chatter").start()


def _hold_gil(seconds):
    say("GIL", threading.get_native_id())
    # PyDLL keeps the GIL held across the call: libc's sleep() blocks every
    # other Python thread, as a C extension that forgets to release it does.
    ctypes.PyDLL(None).sleep(seconds)


def cmd_gil(arg):
    threading.Thread(target=_hold_gil, args=(int(arg),), name="gil-holder", daemon=True).start()


def cmd_logging(arg):
    """Sends the process's logs to the file ``arg``, as an application
    configures its logging (after ispyd has started)."""
    import logging

    logging.basicConfig(filename=arg, level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    say("LOGGING")


def cmd_shutdown(arg):
    manager.shutdown()
    say("SHUT DOWN", manager.running)


def cmd_exit(arg):
    sys.exit(int(arg or 0))


def cmd_forkexec(arg):
    """A child that execs another program at once (as subprocess's
    preexec_fn path or a hand-written spawn does)."""
    pid = os.fork()
    if pid == 0:
        os.execv("/bin/sleep", ["sleep", arg])
    say("CHILD", pid)


def cmd_preexec(arg):
    """subprocess with a preexec_fn: the at-fork hooks run in its child
    before it execs."""
    done = subprocess.run(["/bin/true"], preexec_fn=lambda: None)
    say("PREEXEC", done.returncode)


def _mp_child(stop):
    say("MPCHILD", os.getpid(), manager.address)
    stop.wait(60)


def cmd_mpchild(arg):
    """A multiprocessing child with the fork start method; it runs until
    ``mpstop``."""
    ctx = multiprocessing.get_context("fork")
    global _stop, _child
    _stop = ctx.Event()
    _child = ctx.Process(target=_mp_child, args=(_stop,))
    _child.start()


def cmd_mpstop(arg):
    _stop.set()
    _child.join(20)
    say("MPSTOPPED", _child.exitcode)


async def _sleeper():
    await asyncio.sleep(3600)


async def _waiter(event):
    await event.wait()


def _run_loop():
    async def main():
        event = asyncio.Event()
        asyncio.create_task(_sleeper(), name="sleeper")
        asyncio.create_task(_waiter(event), name="waiter")
        say("LOOP RUNNING")
        await asyncio.sleep(3600)

    asyncio.run(main())


def cmd_loop(arg):
    """An asyncio event loop on a thread of its own, with two tasks:
    ``sleeper`` (in asyncio.sleep) and ``waiter`` (on an Event)."""
    threading.Thread(target=_run_loop, name="loop-thread", daemon=True).start()


COMMANDS = {name[4:]: func for name, func in list(globals().items()) if name.startswith("cmd_")}


def serve_stdin():
    for line in sys.stdin:
        name, _, arg = line.strip().partition(" ")
        if name:
            COMMANDS[name](arg)


def main():
    global manager
    config, options = sys.argv[1], sys.argv[2:]
    if "--sigterm" in options:
        signal.signal(signal.SIGTERM, lambda *args: sys.exit(0))
    if "--usr1" in options:
        signal.signal(signal.SIGUSR1, lambda *args: say("USR1"))
    if "--with" in options:
        with ShellManager(config) as manager:
            say("READY", os.getpid(), manager.address)
            serve_stdin()
        say("LEFT WITH", manager.running)
        return
    if "--unreferenced" in options:
        # As `ShellManager(config)` in a function whose result is dropped.
        address = ShellManager(config).address
        gc.collect()
        say("READY", os.getpid(), address)
        serve_stdin()
        return
    manager = ShellManager(config)
    for warning in manager.warnings:
        say("WARNING", warning)
    say("READY", os.getpid(), manager.address)
    serve_stdin()


if __name__ == "__main__":
    main()
