"""The ``wsgi`` plugin: the web requests a WSGI application is serving now.

Wrap the application's entry point, as the 2012 original showed::

    from ispyd.plugins.wsgi import WSGIApplicationWrapper

    from django.core.wsgi import get_wsgi_application
    application = get_wsgi_application()

    application = WSGIApplicationWrapper(application)

or, for Flask, ``app.wsgi_app = WSGIApplicationWrapper(app.wsgi_app)``, or
decorate a WSGI function with ``@wsgi_application()``. Then ``requests`` in
the ``wsgi`` plugin's shell shows every request being served: its number,
thread, start time, duration, WSGI environ, and the stack of the thread
serving it now (under gevent or eventlet, of the greenlet serving it).

The wrapper is native code and costs a request a fraction of a microsecond
(see BENCHMARKS.md); it is transparent to the server and the application:
the same arguments and response, exceptions unchanged, the response's
``close()`` called exactly once, file wrappers (``wsgi.file_wrapper``)
passed through so the server can still ``sendfile()`` them. A request stops
being listed the moment the server closes its response.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Optional, TypeVar

from ispyd import _native
from ispyd._native import WSGIApplicationWrapper, active_request_count, requests_report
from ispyd._support import CommandError

__all__ = ["WSGIApplicationWrapper", "WSGIPlugin", "active_request_count", "wsgi_application"]

_Application = TypeVar("_Application", bound=Callable[..., Any])


def wsgi_application() -> Callable[[_Application], WSGIApplicationWrapper]:
    """A decorator that wraps a WSGI application in
    :class:`WSGIApplicationWrapper`::

        @wsgi_application()
        def application(environ, start_response):
            ...
    """

    def decorator(application: _Application) -> WSGIApplicationWrapper:
        return WSGIApplicationWrapper(application)

    return decorator


class WSGIPlugin:
    """Web requests being served now by wrapped WSGI applications"""

    name = "wsgi"
    stdout: Any = sys.stdout
    wants_data = False

    def do_requests(self, line: str) -> Optional[_native.NativeData]:
        """requests [SECONDS]: the web requests being served now, oldest first.

        For each: its number, the thread serving it, when it started, how
        long it has run, its WSGI environ (sorted), and the stack of the
        thread serving it now, innermost call last. With SECONDS, only the
        requests running for longer than that: 'requests 5' shows the hung
        ones. Only applications wrapped in
        ispyd.plugins.wsgi.WSGIApplicationWrapper are seen. Under gevent
        or eventlet each request shows its own greenlet's stack."""
        argument = line.strip()
        older_than = None
        if argument:
            try:
                older_than = float(argument)
            except ValueError:
                older_than = -1.0
            if not 0.0 <= older_than < float("inf"):  # also rejects nan
                raise CommandError(
                    f"requests: {argument!r} is not a number of seconds; "
                    "try 'requests' for all requests or 'requests 5' for those "
                    "running longer than 5 seconds"
                )
        text, data = requests_report(older_than, self.wants_data)
        self.stdout.write(text)
        return data
