#!/usr/bin/env python3
"""Times the python plugin's `threads` dump against the same dump in pure
Python, in the same process and run.

    python3 bench/python_threads.py [--threads 10,100,1000] [--depth 10] [--repeat 21] [--alone]

Needs the `ispyd` package installed (`pip install ./python-binding`). For
each thread count it starts that many threads, each blocked `--depth`
calls deep in `Event.wait()`, then times, interleaved, `--repeat` dumps of

* native: `ispyd._native.format_threads()`, what `threads` runs, and
* traceback: the same text built with `sys._current_frames()` and
  `traceback.extract_stack()`, what the 2012 original did, in Python 3;

and prints the median milliseconds per dump and their ratio as a Markdown
table. With ``--alone`` it also times, per thread count, ``--repeat``
native dumps in a row with no ``traceback`` dump between them (warm
caches), and prints their median. Both are called through a one-frame Python wrapper so that the
calling thread's stack is the same depth in both; the check that both dumps
list the same frames (the same number of `File:` lines, the same text for
every thread but the calling one) runs before the timing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import traceback

from ispyd import _native

SERVING = "this ispyd session's thread"
NOT_THREADING = "not a threading.Thread"


def native_dump(serving: int) -> str:
    return _native.format_threads(serving)


def traceback_dump(serving: int) -> str:
    """The native dump's text, built the 2012 way (OS thread names aside:
    pure Python cannot read them)."""
    active = threading._active  # type: ignore[attr-defined]
    frames = sys._current_frames()
    order = {ident: position for position, ident in enumerate(list(active))}

    def key(item):
        ident = item[0]
        started = ident in order
        return (ident == serving, 0 if started else 1, order[ident] if started else ident)

    out = [f"# Threads: {len(frames)}\n"]
    for ident, frame in sorted(frames.items(), key=key):
        thread = active.get(ident)
        notes = [] if thread is not None else [NOT_THREADING]
        if ident == serving:
            notes.append(SERVING)
        name = thread.name if thread is not None else ""
        if notes:
            name = f"{name} ({'; '.join(notes)})" if name else f"({'; '.join(notes)})"
        out.append(f"\n# ThreadID: {ident}\n# Name: {name}\n")
        if thread is not None and thread.native_id is not None:
            out.append(f"# Native ID: {thread.native_id}\n")
        for summary in traceback.extract_stack(frame):
            out.append(f'File: "{summary.filename}", line {summary.lineno}, in {summary.name}\n')
            if summary.line:
                out.append(f"  {summary.line}\n")
    return "".join(out)


def start_threads(count: int, depth: int, release: threading.Event) -> list:
    def blocked(level: int) -> None:
        if level > 1:
            blocked(level - 1)
        else:
            release.wait()

    threads = [
        threading.Thread(target=blocked, args=(depth,), name=f"bench-{i}", daemon=True)
        for i in range(count)
    ]
    for thread in threads:
        thread.start()
    # Settled when every thread waits inside Condition.wait and two looks a
    # little apart see the same stacks.
    wait_code = threading.Condition.wait.__code__
    idents = {thread.ident for thread in threads}
    deadline = time.monotonic() + 60
    previous = None
    while time.monotonic() < deadline:
        frames = sys._current_frames()
        tops = {ident: (frames[ident].f_code, frames[ident].f_lineno)
                for ident in idents if ident in frames}
        if len(tops) == count and all(code is wait_code for code, _ in tops.values()):
            if tops == previous:
                return threads
            previous = tops
        time.sleep(0.05)
    raise SystemExit(f"python_threads.py: {count} threads did not settle in 60 s")


def without_caller(dump: str) -> str:
    return dump.rsplit("\n# ThreadID:", 1)[0]


def measure(count: int, depth: int, repeat: int, alone: bool) -> dict:
    release = threading.Event()
    threads = start_threads(count, depth, release)
    serving = threading.get_ident()
    try:
        native, python = native_dump(serving), traceback_dump(serving)
        files = native.count("\nFile: ")
        if files != python.count("\nFile: "):
            raise SystemExit(
                f"python_threads.py: {count} threads: the native dump has {files} "
                f"File: lines, the traceback one {python.count(chr(10) + 'File: ')}"
            )
        if without_caller(native) != without_caller(python):
            raise SystemExit(f"python_threads.py: {count} threads: the dumps differ")
        timings = {"native": [], "traceback": []}
        for _ in range(2):  # warm-up
            native_dump(serving)
            traceback_dump(serving)
        for _ in range(repeat):
            for label, dump in (("native", native_dump), ("traceback", traceback_dump)):
                start = time.perf_counter()
                dump(serving)
                timings[label].append(time.perf_counter() - start)
        timings["alone"] = []
        for _ in range(repeat if alone else 0):
            start = time.perf_counter()
            native_dump(serving)
            timings["alone"].append(time.perf_counter() - start)
    finally:
        release.set()
        for thread in threads:
            thread.join()
    return {
        "threads": count,
        "files": files,
        "native": statistics.median(timings["native"]) * 1e3,
        "traceback": statistics.median(timings["traceback"]) * 1e3,
        "alone": statistics.median(timings["alone"]) * 1e3 if alone else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="10,100,1000",
                        help="comma-separated thread counts (default 10,100,1000)")
    parser.add_argument("--depth", type=int, default=10,
                        help="calls of each thread's own before Event.wait() (default 10)")
    parser.add_argument("--repeat", type=int, default=21,
                        help="timed dumps of each kind per thread count (default 21)")
    parser.add_argument("--alone", action="store_true",
                        help="also time native dumps in a row, with no traceback dump between")
    args = parser.parse_args()

    rows = [measure(int(n), args.depth, args.repeat, args.alone) for n in args.threads.split(",")]
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}; median of {args.repeat} dumps each")
    print()
    print("| threads | frames (`File:` lines) | native `format_threads` | "
          "pure Python `traceback` | speed-up |")
    print("|--:|--:|--:|--:|--:|")
    for row in rows:
        print(f"| {row['threads']} + main | {row['files']} | {row['native']:.2f} ms | "
              f"{row['traceback']:.2f} ms | {row['traceback'] / row['native']:.1f}× |")
    if args.alone:
        print()
        print("| threads | native `format_threads`, dumps in a row |")
        print("|--:|--:|")
        for row in rows:
            print(f"| {row['threads']} + main | {row['alone']:.2f} ms |")


if __name__ == "__main__":
    main()
