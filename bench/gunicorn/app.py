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
