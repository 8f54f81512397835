"""``host.py`` with two more stdin commands, for the debugger's tests:
``eval EXPR`` prints ``EVAL repr(value)`` and ``exec STMT`` runs a
statement, printing ``EXEC done``; either prints ``ERROR Type: message`` if
it raised. Both run in the main thread, in one namespace that has
``debug_targets`` imported as ``t`` and ``catch(call)``, which returns the
exception ``call()`` raised.
"""

import asyncio
import inspect
import os
import sys
import threading

import debug_targets
import host


def catch(call):
    """The exception ``call()`` raises (None if it returns)."""
    try:
        call()
    except BaseException as err:  # noqa: BLE001 - that is the point
        return err
    return None


def os_threads(prefix):
    """The names the OS has for this process's threads that start with
    ``prefix``: ispyd's pdb threads are native threads, not in
    ``threading.enumerate()``."""
    names = []
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/comm") as comm:
                name = comm.read().strip()
        except FileNotFoundError:  # ended since the listing
            continue
        if name.startswith(prefix):
            names.append(name)
    return names


namespace = {
    "catch": catch,
    "os_threads": os_threads,
    "t": debug_targets,
    "asyncio": asyncio,
    "inspect": inspect,
    "sys": sys,
    "threading": threading,
}


def cmd_eval(arg):
    try:
        host.say("EVAL", repr(eval(arg, namespace)))
    except Exception as err:
        host.say("ERROR", f"{type(err).__name__}: {err}")


def cmd_exec(arg):
    try:
        exec(arg, namespace)
        host.say("EXEC", "done")
    except Exception as err:
        host.say("ERROR", f"{type(err).__name__}: {err}")


host.COMMANDS.update(eval=cmd_eval, exec=cmd_exec)

if __name__ == "__main__":
    host.main()
