"""A Python program with every builtin plugin and something for each to
show, for the check of RESULTS.md (``tests/test_results.py``).

Usage: ``python results_host.py CONFIG``. It starts ispyd, serves one WSGI
request that stays in flight (on a thread named ``held-request``), calls
``failing()`` every 20 ms on a thread of its own (so that a probe inserted
on it captures a traceback), runs an asyncio loop on a thread named
``loop-thread`` whose task ``results-task`` sleeps, prints ``READY PID ADDRESS`` and waits for
stdin to end.
"""

import asyncio
import os
import sys
import threading
import time

from ispyd.manager import ShellManager
from ispyd.plugins.wsgi import WSGIApplicationWrapper

release = threading.Event()


def application(environ, start_response):
    release.wait(60)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"done"]


def failing():
    raise ValueError("failing() always fails")


def call_failing():
    while not release.is_set():
        try:
            sys.modules[__name__].failing()
        except ValueError:
            pass
        time.sleep(0.02)


def held_request(app=application, path="/held"):
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "why=results",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
    }
    body = WSGIApplicationWrapper(app)(environ, lambda status, headers: None)
    for _ in body:
        pass
    body.close()


def green_request():
    """A request served by a greenlet that is parked, as a gevent hub parks
    one waiting for I/O, while its thread's main greenlet waits."""
    import greenlet

    main = greenlet.getcurrent()

    def green_application(environ, start_response):
        main.switch()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done"]

    greenlet.greenlet(lambda: held_request(green_application, "/green")).switch()
    release.wait(3600)


async def results_task():
    await asyncio.sleep(3600)


def run_loop():
    async def main():
        await asyncio.create_task(results_task(), name="results-task")

    asyncio.run(main())


def main():
    manager = ShellManager(sys.argv[1])
    threading.Thread(target=run_loop, name="loop-thread", daemon=True).start()
    threading.Thread(target=held_request, name="held-request", daemon=True).start()
    threading.Thread(target=call_failing, name="caller", daemon=True).start()
    threading.Thread(target=green_request, name="green-request", daemon=True).start()
    print("READY", os.getpid(), manager.address, flush=True)
    sys.stdin.read()
    release.set()


if __name__ == "__main__":
    main()
