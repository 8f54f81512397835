"""``ASGIApplicationWrapper`` awaited directly, as a server awaits it: the
same result and exceptions, ``lifespan`` untouched, and every request
forgotten however it ends."""

from __future__ import annotations

import asyncio

import pytest

from ispyd.plugins.asgi import ASGIApplicationWrapper
from ispyd.plugins.wsgi import active_request_count


class Boom(Exception):
    pass


async def receive():
    return {"type": "http.request", "body": b"", "more_body": False}


def run(coroutine):
    return asyncio.run(coroutine)


def test_results_exceptions_and_cancellation_pass_through_and_nothing_stays():
    seen = []

    async def app(scope, receive, send):
        seen.append(active_request_count())
        if scope["path"] == "/boom":
            raise Boom("from the app")
        if scope["path"] == "/wait":
            await asyncio.sleep(3600)
        return "result"

    wrapped = ASGIApplicationWrapper(app)
    scope = {"type": "http", "method": "GET", "path": "/", "query_string": b""}
    assert run(wrapped(scope, receive, None)) == "result"
    with pytest.raises(Boom, match="from the app") as raised:
        run(wrapped({**scope, "path": "/boom"}, receive, None))
    assert raised.type is Boom

    async def cancel_one():
        task = asyncio.ensure_future(wrapped({**scope, "path": "/wait"}, receive, None))
        await asyncio.sleep(0.01)
        assert active_request_count() == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(cancel_one())
    assert seen == [1, 1, 1] and active_request_count() == 0


def test_lifespan_is_the_applications_own_and_is_not_recorded():
    async def app(scope, receive, send):
        return active_request_count()

    wrapped = ASGIApplicationWrapper(app)
    assert run(wrapped({"type": "lifespan"}, receive, None)) == 0
    assert run(wrapped({"type": "websocket", "path": "/ws"}, receive, None)) == 1
    assert wrapped.__wrapped__ is app and "ASGIApplicationWrapper of" in repr(wrapped)


def test_a_non_callable_is_refused_with_a_clear_error():
    with pytest.raises(TypeError, match="wraps an ASGI application"):
        ASGIApplicationWrapper("app:app")
