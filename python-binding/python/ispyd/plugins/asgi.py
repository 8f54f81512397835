"""The ASGI counterpart of :class:`~ispyd.plugins.wsgi.WSGIApplicationWrapper`::

    from ispyd.plugins.asgi import ASGIApplicationWrapper

    app = ASGIApplicationWrapper(app)        # Starlette, FastAPI, any ASGI app

Every HTTP request and websocket connection the application serves is then
listed by the ``wsgi`` plugin's ``requests`` (beside WSGI requests): its
number, the event loop's thread, the task serving it, when it started, how
long it has run, its scope (method, path, headers, client…), and the task's
await stack, outermost first. The ``dump_on`` dump lists them too.

Transparent: the same scope, ``receive`` and ``send``, the same result and
exceptions; ``lifespan`` and any other scope type pass through untouched,
unrecorded. A request stops being listed when the application's coroutine
ends (a websocket: when the connection does), however it ends.
"""

from __future__ import annotations

from asyncio import CancelledError, current_task
from typing import Any, Awaitable, Callable, Set

from ispyd._native import asgi_track, asgi_untrack

__all__ = ["ASGIApplicationWrapper", "RequestCancelled"]

_TRACKED = frozenset(("http", "websocket"))

#: The requests the asyncio plugin's ``cancel`` cancelled, by number; only
#: their event loop's thread touches it (``cancel_request``).
_cancelled: Set[int] = set()


class RequestCancelled(Exception):
    """Raised out of the application when an operator cancelled its request
    with ispyd's ``cancel``: an exception the server handles as an
    application error (uvicorn answers 500 and closes the connection, or
    closes it if the response had started), where a bare cancellation of
    the server's task would leave the client's connection hanging."""


def cancel_request(task: Any, number: int) -> None:
    """Cancels request ``number``'s ``task``; runs on its event loop's
    thread (the asyncio plugin calls it with ``call_soon_threadsafe``)."""
    _cancelled.add(number)
    task.cancel()


class ASGIApplicationWrapper:
    """Wraps an ASGI 3 application so that ``requests`` sees its requests."""

    __slots__ = ("__wrapped__",)

    def __init__(self, application: Callable[..., Awaitable[Any]]) -> None:
        if not callable(application):
            raise TypeError(
                "ASGIApplicationWrapper wraps an ASGI application, a callable taking "
                f"(scope, receive, send); got {application!r}"
            )
        self.__wrapped__ = application

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        application = self.__wrapped__
        if scope.get("type") not in _TRACKED:
            return await application(scope, receive, send)
        coroutine = application(scope, receive, send)
        # The coroutine, not the task: asyncio.current_task() would cost
        # more than all the rest (a Python function before 3.12); the
        # asyncio plugin finds the task awaiting it when it lists them.
        number, ticket = asgi_track(scope, coroutine)
        try:
            return await coroutine
        except CancelledError:
            if number not in _cancelled:
                raise
            _cancelled.discard(number)
            uncancel = getattr(current_task(), "uncancel", None)  # Python 3.11+
            if uncancel is not None:
                uncancel()
            raise RequestCancelled(f"request {number} was cancelled with ispyd's cancel") from None
        finally:
            asgi_untrack(ticket)

    def __repr__(self) -> str:
        return f"<ispyd ASGIApplicationWrapper of {self.__wrapped__!r}>"
