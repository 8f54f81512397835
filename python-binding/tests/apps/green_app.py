"""A Flask application served by green threads, for ``tests/test_green.py``.

Under gunicorn, ``gunicorn -k gevent green_app:app``: gunicorn's gevent
worker monkey-patches the process, then imports this module, which starts
ispyd (``APP_ISPYD_CONFIG``) after the patching.

Alone, ``python green_app.py SERVER PORT ORDER`` serves it with
``eventlet.wsgi.server`` or gevent's ``pywsgi`` (SERVER ``eventlet`` or
``gevent``), having imported ispyd before the monkey-patching (ORDER
``ispyd-first``) or after it (``patch-first``), and prints ``SERVING``.

``/sleep/SECONDS?token=T`` sleeps in ``green_sleeper`` (a patched
``time.sleep``: the greenlet waits, the others run); ``/`` answers at once.
"""

import sys

if __name__ == "__main__":
    SERVER, PORT, ORDER = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if ORDER == "ispyd-first":
        import ispyd.manager  # noqa: F401 - imported before the patching, on purpose
        import ispyd.plugins.wsgi  # noqa: F401 - as is this
    if SERVER == "gevent":
        from gevent import monkey

        monkey.patch_all()
    else:
        import eventlet

        eventlet.monkey_patch()

import os  # noqa: E402 - after the patching, as a patched program does
import time  # noqa: E402

from flask import Flask, request  # noqa: E402

from ispyd.manager import ShellManager  # noqa: E402
from ispyd.plugins.wsgi import WSGIApplicationWrapper  # noqa: E402

shell_manager = ShellManager(os.environ["APP_ISPYD_CONFIG"])

app = Flask(__name__)


def green_sleeper(token, seconds):
    time.sleep(seconds)
    return f"{token} slept in {os.getpid()}\n"


@app.route("/")
def index():
    return f"hello from {os.getpid()}\n"


@app.route("/sleep/<float:seconds>")
def sleep(seconds):
    return green_sleeper(request.args.get("token", ""), seconds)


app.wsgi_app = WSGIApplicationWrapper(app.wsgi_app)


if __name__ == "__main__":
    if SERVER == "gevent":
        from gevent.pywsgi import WSGIServer

        server = WSGIServer(("127.0.0.1", PORT), app, log=None)
        print("SERVING", os.getpid(), flush=True)
        server.serve_forever()
    else:
        import eventlet.wsgi

        listener = eventlet.listen(("127.0.0.1", PORT))
        print("SERVING", os.getpid(), flush=True)
        eventlet.wsgi.server(listener, app, log_output=False)
