"""A Flask application that knows nothing of ispyd, for
``tests/test_activation.py``: gunicorn serves it with ``ISPYD_CONFIG`` and
``ISPYD_WSGI=1`` in its environment, and nothing else.

``/slow`` waits until the file ``release`` appears in ``WSGI_CONTROL``
(bounded), so the test can look at it while it is in flight.
"""

import os
import time
from pathlib import Path

from flask import Flask

app = Flask(__name__)


@app.route("/")
def index():
    return f"hello from {os.getpid()}\n"


@app.route("/slow")
def slow():
    release = Path(os.environ["WSGI_CONTROL"]) / "release"
    deadline = time.monotonic() + 30
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return "done\n"
