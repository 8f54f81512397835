"""``flask_app`` as ``tests/test_uwsgi.py`` serves it under uWSGI, with
post-fork hooks of the application's own around ispyd's: one set directly
on ``uwsgi.post_fork_hook`` before ispyd starts, one registered with
``uwsgidecorators.postfork`` after; ``wrapped`` is the app through
ispyd's WSGI wrapper. Each hook prints ``POSTFORK KIND PID`` to
stderr (uWSGI's log) in every worker it runs in."""

import os
import sys

import uwsgi


def _say(kind):
    print(f"POSTFORK {kind} {os.getpid()}", file=sys.stderr, flush=True)


uwsgi.post_fork_hook = lambda: _say("direct")

from flask_app import app  # noqa: E402 - starts ispyd, after the hook above

from uwsgidecorators import postfork  # noqa: E402

from ispyd.plugins.wsgi import WSGIApplicationWrapper  # noqa: E402


@postfork
def decorated():
    _say("decorated")


#: The same app through ispyd's WSGI wrapper, whose requests dumps list.
wrapped = WSGIApplicationWrapper(app.wsgi_app)

__all__ = ["app", "wrapped"]
