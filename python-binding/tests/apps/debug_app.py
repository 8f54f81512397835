"""The 2012 README's debugger sample as a Flask application under gunicorn:
``/`` sleeps briefly, then calls ``function()``, which raises. ispyd is
embedded as the README shows; ``APP_ISPYD_CONFIG`` names the ini file."""

import os
import time

from flask import Flask

from ispyd.manager import ShellManager

shell_manager = ShellManager(os.environ["APP_ISPYD_CONFIG"])

app = Flask(__name__)


def function():
    answer = 41 + 1
    raise RuntimeError(f"xxx {answer}")


#: What ``function`` was at import: a removed probe must put this back.
ORIGINAL_FUNCTION = function


@app.route("/")
def index():
    request_note = "index is calling function"
    time.sleep(0.05)
    return function() or request_note


@app.route("/ok")
def ok():
    return f"ok from {os.getpid()}\n"
