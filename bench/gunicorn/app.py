"""The benchmarked application: one Flask route with a small response.

With APP_ISPYD_CONFIG set to an ini file, each process that imports this module
(each gunicorn worker, since the benchmark does not use --preload) starts
ispyd's listener and leaves it idle; without it, ispyd is never imported.
Nothing else differs between the two variants.
"""

import os

from flask import Flask

if os.environ.get("APP_ISPYD_CONFIG"):
    from ispyd.manager import ShellManager

    shell_manager = ShellManager(os.environ["APP_ISPYD_CONFIG"])

app = Flask(__name__)


@app.route("/")
def hello() -> str:
    return "Hello, World!\n"


@app.route("/compute")
def compute() -> str:
    """About 2 ms of pure Python per request: what profile_load.py loads,
    so that the work measured is the application's, not the connection's."""
    total = 0
    for i in range(40_000):
        total += i * i
    return f"{total}\n"
