"""A Flask application that embeds ispyd the way the 2012 README shows:
``ShellManager(config_file)`` at import. gunicorn serves it as
``flask_app:app``; ``APP_ISPYD_CONFIG`` names the ini file."""

import os
import time

from flask import Flask

from ispyd.manager import ShellManager

shell_manager = ShellManager(os.environ["APP_ISPYD_CONFIG"])

app = Flask(__name__)


@app.route("/")
def index():
    return f"hello from {os.getpid()}\n"


@app.route("/sleep/<float:seconds>")
def sleep(seconds):
    time.sleep(seconds)
    return f"slept in {os.getpid()}\n"


def hot():
    """Burns CPU in pure Python: the function a profile must find."""
    total = 0
    for i in range(300_000):
        total += i * i
    return total


@app.route("/hot")
def hot_route():
    return f"{hot()} from {os.getpid()}\n"
