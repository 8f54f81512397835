"""A Starlette application wrapped in ``ASGIApplicationWrapper``, served by
uvicorn for ``tests/test_asgi.py``.

- ``/slow``: sleeps an hour in ``asyncio.sleep`` (the test cancels it).
- ``/ws``: a websocket that echoes text until the client closes.
- ``/``: answers at once.

Its lifespan handler prints ``lifespan startup`` and ``lifespan shutdown``,
to show that the lifespan scope reaches the application. ``ShellManager``
starts at import from ``APP_ISPYD_CONFIG``.
"""

import asyncio
import contextlib
import os

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute

from ispyd.manager import ShellManager
from ispyd.plugins.asgi import ASGIApplicationWrapper

shell_manager = ShellManager(os.environ["APP_ISPYD_CONFIG"])


async def index(request):
    return PlainTextResponse(f"hello from {os.getpid()}\n")


async def slow(request):
    await asyncio.sleep(3600)
    return PlainTextResponse("slept\n")


async def echo(websocket):
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except Exception:
        pass


@contextlib.asynccontextmanager
async def lifespan(app):
    print("lifespan startup", flush=True)
    yield
    print("lifespan shutdown", flush=True)


app = ASGIApplicationWrapper(
    Starlette(routes=[Route("/", index), Route("/slow", slow), WebSocketRoute("/ws", echo)], lifespan=lifespan)
)
