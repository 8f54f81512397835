"""Starts ispyd in a program that does not mention it: imported at
interpreter start-up by ``ispyd-activate.pth`` (installed with the package
at the top of site-packages) when ``ISPYD_CONFIG`` names a configuration.

- Every Python process that has the variable starts a shell, including the
  child processes it starts (each on its own ``%(pid)s`` socket), except
  the ``ispy`` client itself.
- A configuration that cannot be used is reported once on stderr and the
  program goes on without ispyd: a diagnostic add-on must not stop the
  application at import time. (An explicit ``ShellManager(...)`` in code
  still raises.)
- ``ISPYD_WSGI=1`` also wraps the WSGI application gunicorn loads (see
  :mod:`ispyd._autowrap`).

With the variable unset, the ``.pth`` line does not import this module.
"""

import os
import sys


def _activate() -> None:
    config = os.environ.get("ISPYD_CONFIG")
    if not config:
        return
    if os.path.basename(sys.argv[0] if sys.argv else "") == "ispy":
        return
    try:
        from ispyd import manager

        manager.start_activated(config)
    except Exception as err:  # noqa: BLE001 - any failure: report, go on
        message = str(err)
        message = message[len("ispyd: ") :] if message.startswith("ispyd: ") else message
        print(
            f"ispyd: {message} (ISPYD_CONFIG={config}); the program goes on without ispyd",
            file=sys.stderr,
            flush=True,
        )
        return
    if os.environ.get("ISPYD_WSGI", "").lower() in ("1", "true", "yes", "on"):
        from ispyd import _autowrap

        _autowrap.install()


_activate()
