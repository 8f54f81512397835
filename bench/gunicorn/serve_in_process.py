"""Serves N requests to app.py in process, through Flask's test client.

    python serve_in_process.py N

The app reads APP_ISPYD_CONFIG as under gunicorn. instructions.sh runs this
under callgrind for two values of N: the difference, divided by the
difference in N, is the instructions one request costs, start-up excluded.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import app  # noqa: E402

if os.environ.get("APP_ISPYD_CONFIG"):
    assert app.shell_manager.running, "ispyd's listener did not start"

client = app.app.test_client()
for _ in range(int(sys.argv[1])):
    assert client.get("/").status_code == 200
