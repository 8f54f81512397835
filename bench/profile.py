#!/usr/bin/env python3
"""What one sample of the `profile` command costs the process: the CPU time
of ispyd's sampling thread per sweep of every thread's stack, with 10 / 100
/ 1,000 threads each waiting 10 calls deep (15 frames), in the same run.

    pip install ./python-binding && python3 bench/profile.py [--seconds 2]

`--idle` keeps every thread (a sweep then walks them all); the figure is
the sampler's `time.thread_time()` over the profile divided by the sweeps
it made (seconds × 100 Hz). The GIL is held for a sweep and let go between
sweeps, so this is also how long each sweep keeps the application's
threads from running Python. Prints Markdown.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

from ispyd import _native
from python_threads import start_threads  # bench/, beside this script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    release = threading.Event()
    started: list = []
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"`profile {args.seconds:g} --idle` at 100 Hz\n")
    print("| threads | sweeps | samples | sampler CPU per sweep | per thread |")
    print("|--:|--:|--:|--:|--:|")
    for count in (10, 100, 1000):
        started += start_threads(count - len(started), 10, release)
        cpu = time.thread_time()
        _text, files, _data = _native.profile_report(args.seconds, 100, None, True, None, False)
        cpu = time.thread_time() - cpu
        folded = next(content.decode() for name, content in files if name.endswith(".folded"))
        samples = sum(int(line.rsplit(" ", 1)[1]) for line in folded.splitlines())
        sweeps = round(samples / (count + 1))
        per_sweep = cpu / max(sweeps, 1)
        print(f"| {count} + main | {sweeps} | {samples} | {per_sweep * 1e3:.3f} ms | {per_sweep / (count + 1) * 1e6:.2f} µs |")
    release.set()


if __name__ == "__main__":
    main()
