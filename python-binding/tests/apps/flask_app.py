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


# Five functions whose own time is about 40, 25, 15, 10 and 5 % of
# /mix's (each loops itself: a shared helper would hold all the self
# time): a profile that is right ranks them so, with those shares.
def burn_a():
    total = 0
    for i in range(80_000):
        total += i * i
    return total


def burn_b():
    total = 0
    for i in range(50_000):
        total += i * i
    return total


def burn_c():
    total = 0
    for i in range(30_000):
        total += i * i
    return total


def burn_d():
    total = 0
    for i in range(20_000):
        total += i * i
    return total


def burn_e():
    total = 0
    for i in range(10_000):
        total += i * i
    return total


@app.route("/mix")
def mix_route():
    return f"{burn_a() + burn_b() + burn_c() + burn_d() + burn_e()} from {os.getpid()}\n"
