"""``host.py`` with two more stdin commands, for the debugger's tests:
``eval EXPR`` prints ``EVAL repr(value)`` and ``exec STMT`` runs a
statement, printing ``EXEC done``; either prints ``ERROR Type: message`` if
it raised. Both run in the main thread, in one namespace that has
``debug_targets`` imported as ``t`` and ``catch(call)``, which returns the
exception ``call()`` raised.
"""

import asyncio
import inspect
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


namespace = {
    "catch": catch,
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
