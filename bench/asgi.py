#!/usr/bin/env python3
"""What `ASGIApplicationWrapper` costs a request, against the bare
application, in the same process and run.

    pip install ./python-binding && python3 bench/asgi.py [--requests 2000] [--repeat 301]

Each application is awaited directly in a loop inside one task, the way an
ASGI server's request task awaits it minus the socket: `await app(scope,
receive, send)` with a fresh scope dict, a `receive` that returns the
request body and a `send` that takes `http.response.start` and one
`http.response.body`. Rounds time `--requests` requests of the bare app and
of the wrapped one back to back, alternating which goes first, in thread
CPU time; the overhead is the median over the rounds of the wrapped time
minus the bare time in the same round. Then 1,000,000 wrapped requests go
through after a warm-up, and the resident memory and the number of
requests still registered are read. Prints Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time

from ispyd.plugins.asgi import ASGIApplicationWrapper
from ispyd.plugins.wsgi import active_request_count

SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/",
    "raw_path": b"/",
    "query_string": b"",
    "root_path": "",
    "headers": [(b"host", b"localhost")],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
}
START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
BODY = {"type": "http.response.body", "body": b"Hello, World!\n"}
REQUEST = {"type": "http.request", "body": b"", "more_body": False}


async def application(scope, receive, send):
    await receive()
    await send(START)
    await send(BODY)


async def receive():
    return REQUEST


async def send(message):
    pass


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def loop_of(app, requests: int) -> int:
    start = time.thread_time_ns()
    for _ in range(requests):
        await app(dict(SCOPE), receive, send)
    return time.thread_time_ns() - start


async def main_async(args) -> None:
    wrapped = ASGIApplicationWrapper(application)
    for _ in range(20):
        await loop_of(application, args.requests)
        await loop_of(wrapped, args.requests)
    bare_times, wrapped_times, overheads = [], [], []
    for round_number in range(args.repeat):
        if round_number % 2:
            w = await loop_of(wrapped, args.requests)
            b = await loop_of(application, args.requests)
        else:
            b = await loop_of(application, args.requests)
            w = await loop_of(wrapped, args.requests)
        bare_times.append(b / args.requests)
        wrapped_times.append(w / args.requests)
        overheads.append((w - b) / args.requests)
    await loop_of(wrapped, 100_000)
    before = rss_mib()
    await loop_of(wrapped, args.memory)
    after = rss_mib()
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"median of {args.repeat} rounds of {args.requests} requests, thread CPU time\n")
    print("| bare app | ispyd wrapper | ispyd overhead |")
    print("|--:|--:|--:|")
    print(f"| {statistics.median(bare_times) / 1e3:.3f} µs | {statistics.median(wrapped_times) / 1e3:.3f} µs "
          f"| **{statistics.median(overheads) / 1e3:.3f} µs** |")
    print(f"\nMemory over {args.memory:,} wrapped requests after a warm-up: {before:.1f} MiB before, "
          f"{after:.1f} MiB after ({after - before:+.1f} MiB); {active_request_count()} still registered.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=301)
    parser.add_argument("--memory", type=int, default=1_000_000)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
