#!/usr/bin/env python3
"""What the `dump_on` dump costs: written from its signal handler, and by
the `dump` command, beside `faulthandler`'s own dump of the same threads,
in the same process and run.

    pip install ./python-binding && python3 bench/dump.py [--threads 100] [--requests 50] [--repeat 31]

The process runs `--threads` threads, each waiting 10 calls deep in
`Event.wait()`; `--requests` of them wait inside a WSGI request served
through `WSGIApplicationWrapper` (so they are in the dump's requests). Then,
interleaved, `--repeat` times each:

* ispyd, signal: `os.kill(getpid(), SIGUSR1)` with `[ispyd] dump_on =
  SIGUSR1` and `dump_file` a file: the native handler writes the requests
  and every thread's stack, then hands on to a Python handler that does
  nothing;
* faulthandler, signal: the same with `faulthandler.register(SIGUSR2,
  file, all_threads=True)`, its C handler writing every thread's stack;
* ispyd, command: `_native.dump_report()`, the `dump` command's work
  (the same writer into a memory file, read back as text);
* faulthandler, call: `faulthandler.dump_traceback(file, all_threads=True)`
  (into a fresh temporary file).

Times are wall clock around the call (a signal sent to the process itself
is handled before `kill` returns); bytes are what each wrote. Prints
Markdown.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path


def nest(depth: int, event: threading.Event) -> None:
    if depth:
        nest(depth - 1, event)
    else:
        event.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=100)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=31)
    args = parser.parse_args()

    from ispyd import _native
    from ispyd.manager import ShellManager
    from ispyd.plugins.wsgi import WSGIApplicationWrapper

    work = Path(tempfile.mkdtemp(prefix="ispyd-bench-dump-"))
    work.chmod(0o700)
    ours = work / "dump.txt"
    theirs = work / "faulthandler.txt"
    (work / "ispyd.ini").write_text(
        f"[ispyd]\nlisten = {work}/ispyd-%(pid)s.sock\ndump_on = SIGUSR1\ndump_file = {ours}\n"
    )
    signal.signal(signal.SIGUSR1, lambda *_: None)
    manager = ShellManager(str(work / "ispyd.ini"))

    release = threading.Event()

    def application(environ, start_response):
        nest(10, release)
        start_response("200 OK", [])
        return [b""]

    wrapped = WSGIApplicationWrapper(application)

    def serve(n: int) -> None:
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": f"/held/{n}", "QUERY_STRING": "bench=1"}
        body = wrapped(environ, lambda *_: None)
        list(body)
        body.close()

    threads = [
        threading.Thread(target=serve, args=(n,)) if n < args.requests else threading.Thread(target=nest, args=(10, release))
        for n in range(args.threads)
    ]
    for thread in threads:
        thread.start()
    while _native.active_request_count() < args.requests:
        time.sleep(0.01)
    time.sleep(0.2)

    theirs_file = open(theirs, "w")
    faulthandler.register(signal.SIGUSR2, file=theirs_file, all_threads=True)

    def by_signal(signum: int, path: Path) -> float:
        start = time.perf_counter()
        os.kill(os.getpid(), signum)
        return time.perf_counter() - start

    def command() -> float:
        start = time.perf_counter()
        _native.dump_report()
        return time.perf_counter() - start

    def call() -> float:
        with tempfile.TemporaryFile("w") as sink:
            start = time.perf_counter()
            faulthandler.dump_traceback(file=sink, all_threads=True)
            return time.perf_counter() - start

    times = {"ispyd signal": [], "faulthandler signal": [], "ispyd command": [], "faulthandler call": []}
    for _ in range(args.repeat):
        times["ispyd signal"].append(by_signal(signal.SIGUSR1, ours))
        times["faulthandler signal"].append(by_signal(signal.SIGUSR2, theirs))
        times["ispyd command"].append(command())
        times["faulthandler call"].append(call())
    theirs_file.flush()
    sizes = {
        "ispyd signal": ours.stat().st_size // args.repeat,
        "faulthandler signal": theirs.stat().st_size // args.repeat,
        "ispyd command": len(_native.dump_report()[0].encode()),
    }
    with tempfile.TemporaryFile("w+") as one:
        faulthandler.dump_traceback(file=one, all_threads=True)
        sizes["faulthandler call"] = one.tell()
    text = ours.read_text()
    listed = text.split("Active requests:\n", 2)[1].split("\n\n", 1)[0].count("(request ")

    release.set()
    for thread in threads:
        thread.join()
    manager.shutdown()

    load = os.getloadavg()[0]
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load:.2f}; "
          f"{args.threads} threads + main and ispyd's, {args.requests} of them in a request "
          f"(the dump lists {listed}); median of {args.repeat}\n")
    print("| dump | time | bytes |")
    print("|---|--:|--:|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values) * 1e3:.3f} ms | {sizes[name]:,} |")
    for path in work.iterdir():
        path.unlink()
    work.rmdir()


if __name__ == "__main__":
    main()
