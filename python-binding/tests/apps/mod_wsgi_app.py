"""A Flask application for Apache/mod_wsgi, embedding ispyd as the 2012
README shows for a WSGI script file: ``ShellManager(config_file)`` at
import, the application wrapped. ``tests/test_mod_wsgi.py`` serves it with
``mod_wsgi-express`` from a script that sets ``CONFIG`` and imports this.

``/sleep/SECONDS`` sleeps in ``mod_wsgi_sleeper``; ``/`` answers at once.
"""

import os
import time

from flask import Flask

from ispyd.manager import ShellManager
from ispyd.plugins.wsgi import WSGIApplicationWrapper


def make(config):
    """The WSGI application, with a ShellManager for ``config`` started."""
    global shell_manager
    shell_manager = ShellManager(config)
    app = Flask(__name__)

    @app.route("/")
    def index():
        return f"hello from {os.getpid()}\n"

    @app.route("/sleep/<float:seconds>")
    def sleep(seconds):
        return mod_wsgi_sleeper(seconds)

    return WSGIApplicationWrapper(app.wsgi_app)


def mod_wsgi_sleeper(seconds):
    time.sleep(seconds)
    return f"slept in {os.getpid()}\n"
