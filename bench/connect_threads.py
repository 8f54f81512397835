#!/usr/bin/env python3
"""Times connect() to the first prompt in a Python host, as the number of
threads the host runs grows, beside a bare accept-and-write server in the
same process and run.

    python3 bench/connect_threads.py [--threads 10,100,1000] [--connects 2000] [--engine threads] [--pause-ms 2]

Needs the `ispyd` package installed (`pip install ./python-binding`). For
each thread count it starts that many idle threads (blocked in
`Event.wait()`, as a web worker's idle pool is), then times, in blocks
that alternate between the two servers:

* ispyd: `connect()` to the UNIX socket of a `ShellManager` in this
  process, until the whole greeting `(ispyd:PID) ` is read;
* bare: `connect()` to a UNIX listener of this process whose thread
  accepts and writes a 12-byte greeting at once, until it is read.

Each connection is closed before the next. Back to back (the default),
a connect also pays for the previous session's end still running (its
thread exiting, its audit records taking the GIL); `--pause-ms` waits that
long after each connect, so each one meets an idle process, as a person's
`ispy` does. It prints the median and p90
microseconds per connect and the ratio, as a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from ispyd.manager import ShellManager

GREETING = b"(bare:0000) "


def bare_server(path: str) -> socket.socket:
    """A listener whose thread accepts and writes the greeting at once."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(128)

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.sendall(GREETING)
            conn.close()

    threading.Thread(target=serve, name="bare-accept", daemon=True).start()
    return listener


def connect_once(path: str, end: bytes) -> float:
    started = time.perf_counter()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        got = b""
        while not got.endswith(end):
            chunk = sock.recv(4096)
            if not chunk:
                raise RuntimeError(f"closed before the greeting: {got!r}")
            got += chunk
        return time.perf_counter() - started


def measure(paths: dict, ends: dict, connects: int, pause: float, blocks: int = 10) -> dict:
    samples = {name: [] for name in paths}
    for name in paths:
        for _ in range(min(200, connects)):
            connect_once(paths[name], ends[name])
    for _ in range(blocks):
        for name in paths:
            for _ in range(connects // blocks):
                samples[name].append(connect_once(paths[name], ends[name]))
                if pause:
                    time.sleep(pause)
            # Let ispyd see each closed session go before the next block.
            time.sleep(0.05)
    return samples


def micros(values: list, q: float) -> float:
    ordered = sorted(values)
    return 1e6 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", default="10,100,1000")
    parser.add_argument("--connects", type=int, default=2000)
    parser.add_argument("--engine", default="threads")
    parser.add_argument("--pause-ms", type=float, default=0.0)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ispyd-bench-connect-"))
    work.chmod(0o700)
    config = work / "ispyd.ini"
    config.write_text(
        f"[ispyd]\nlisten = {work}/ispyd.sock\nengine = {args.engine}\nmax_sessions = 64\n"
    )
    manager = ShellManager(str(config))
    bare = bare_server(str(work / "bare.sock"))
    paths = {"ispyd": str(work / "ispyd.sock"), "bare": str(work / "bare.sock")}
    ends = {"ispyd": f"(ispyd:{os.getpid()}) ".encode(), "bare": GREETING}

    stop = threading.Event()
    running = []
    rows = []
    for count in [int(n) for n in args.threads.split(",")]:
        while len(running) < count:
            thread = threading.Thread(target=stop.wait, name=f"idle-{len(running)}", daemon=True)
            thread.start()
            running.append(thread)
        samples = measure(paths, ends, args.connects, args.pause_ms / 1000)
        rows.append((count, samples))

    print(f"connect to first prompt in a Python host (engine {args.engine}, {args.connects} connects per server and count, "
          f"{f'{args.pause_ms:g} ms apart' if args.pause_ms else 'back to back'}, "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs)\n")
    print("| host threads | bare median µs | bare p90 µs | ispyd median µs | ispyd p90 µs | ispyd ÷ bare (median) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for count, samples in rows:
        bm, bp = micros(samples["bare"], 0.5), micros(samples["bare"], 0.9)
        im, ip = micros(samples["ispyd"], 0.5), micros(samples["ispyd"], 0.9)
        print(f"| {count} | {bm:.1f} | {bp:.1f} | {im:.1f} | {ip:.1f} | {im / bm:.2f}× |")
    stop.set()
    manager.shutdown()
    bare.close()


if __name__ == "__main__":
    main()
