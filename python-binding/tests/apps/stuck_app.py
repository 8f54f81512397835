"""A Flask application, wrapped for ``requests``, with routes that never
return: each is stuck in C the way a worker that times out is stuck, for
``tests/test_dump.py``.

- ``/stuck-released``: a default ``pthread_mutex_t`` locked twice through
  ``ctypes.CDLL`` (the GIL released while the call waits): a deadlock that
  no signal interrupts (libc ``sleep()`` would return early on a signal).
- ``/stuck-held``: the same through ``ctypes.PyDLL``, which keeps the GIL:
  no other thread of the worker runs Python again.

``ShellManager(APP_ISPYD_CONFIG)`` at import, when the variable is set.
"""

import ctypes
import os

from flask import Flask

from ispyd.plugins.wsgi import WSGIApplicationWrapper

if os.environ.get("APP_ISPYD_CONFIG"):
    from ispyd.manager import ShellManager

    shell_manager = ShellManager(os.environ["APP_ISPYD_CONFIG"])

app = Flask(__name__)
app.wsgi_app = WSGIApplicationWrapper(app.wsgi_app)

#: Larger than any pthread_mutex_t; zeroed, which is PTHREAD_MUTEX_INITIALIZER.
MUTEX_BYTES = 64


def deadlock(library):
    mutex = ctypes.create_string_buffer(MUTEX_BYTES)
    library.pthread_mutex_lock(mutex)
    library.pthread_mutex_lock(mutex)


@app.route("/")
def index():
    return f"hello from {os.getpid()}\n"


@app.route("/stuck-released")
def stuck_released():
    deadlock(ctypes.CDLL(None))
    return "unreachable\n"


@app.route("/stuck-held")
def stuck_held():
    deadlock(ctypes.PyDLL(None))
    return "unreachable\n"


@app.route("/busy")
def busy():
    # Pure Python: gunicorn's own SIGABRT handler gets to run here.
    while True:
        pass
