#!/usr/bin/env python3
"""Times `ispy` against many servers at once, and its JSON output against
its text, each beside its baseline in the same run.

    cargo build --release --bin ispy --example demo
    python3 bench/fleet.py [--counts 1,8,64] [--repeat 11] [--threads 1000]

1. Fan-out: starts N demo processes (the release build of
   `adapter-std/examples/demo.rs`) listening in one directory and times, interleaved,
   `--repeat` runs of
   * `ispy CONFIG --all -c 'shell process' -c pid` (the servers at once, 8 at a time),
   * the same with `--jobs 1` (one server after another, in one ispy), and
   * one `ispy CONFIG --pid PID -c … -c pid` per server, one after another (what
     a shell loop does),
   and prints the median wall time of each, and the fan-out's time over a
   single server's (`N = 1`).
2. JSON: a Python program (needs `pip install ./python-binding` for the
   interpreter given by `--python`) with `--threads` threads, each 15 calls
   deep in `Event.wait()`; times `ispy --pid P -c 'shell python' -c threads`
   with and without `--json`, interleaved, and prints the medians, their
   ratio and the output sizes.

Wall times include starting `ispy` (a fork and exec) and its scan of the
socket directory; they are what a person or a script waits for.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ISPY = ROOT / "target" / "release" / "ispy"
DEMO = ROOT / "target" / "release" / "examples" / "demo"

PYTHON_HOST = r"""
import sys, threading
from ispyd.manager import ShellManager

release = threading.Event()

def blocked(level):
    if level > 1:
        blocked(level - 1)
    else:
        release.wait()

manager = ShellManager(sys.argv[1])
threads = [threading.Thread(target=blocked, args=(15,), daemon=True) for _ in range(int(sys.argv[2]))]
for thread in threads:
    thread.start()
print("READY", flush=True)
sys.stdin.read()
release.set()
"""


def wait_for(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            sys.exit(f"gave up waiting for {what}")
        time.sleep(0.02)


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{argv} failed: {done.stderr.decode()}")
    return elapsed


def fan_out(counts: list[int], repeat: int) -> None:
    print("| servers | `--all` (8 at a time) | `--all --jobs 1` | one `ispy --pid` each | `--all` ÷ one server |")
    print("|---:|---:|---:|---:|---:|")
    single = None
    for count in counts:
        work = Path(tempfile.mkdtemp(prefix="ispyd-fleet-", dir="/tmp"))
        config = work / "ispyd.ini"
        config.write_text(f"[ispyd]\nlisten = {work}/ispyd-%(pid)s.sock\n")
        demos = [
            subprocess.Popen([str(DEMO), str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(count)
        ]
        try:
            for demo in demos:
                sock = work / f"ispyd-{demo.pid}.sock"
                wait_for(sock.exists, f"{sock}")
            commands = ["-c", "shell process", "-c", "pid"]
            together, serial, loops = [], [], []
            for _ in range(repeat):
                together.append(timed([str(ISPY), str(config), "--all", *commands]))
                serial.append(timed([str(ISPY), str(config), "--all", "--jobs", "1", *commands]))
                start = time.perf_counter()
                for demo in demos:
                    timed([str(ISPY), str(config), "--pid", str(demo.pid), *commands])
                loops.append(time.perf_counter() - start)
            medians = [statistics.median(t) * 1000 for t in (together, serial, loops)]
            if single is None:
                single = medians[0]
            print(
                f"| {count} | {medians[0]:.1f} ms | {medians[1]:.1f} ms | {medians[2]:.1f} ms "
                f"| {medians[0] / single:.2f}× |"
            )
        finally:
            for demo in demos:
                demo.terminate()
            for demo in demos:
                demo.wait()
            shutil.rmtree(work, ignore_errors=True)


def json_vs_text(python: str, threads: int, repeat: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="ispyd-json-", dir="/tmp"))
    config = work / "ispyd.ini"
    config.write_text(f"[ispyd]\nlisten = {work}/ispyd-%(pid)s.sock\ncall_timeout = 60\n")
    host = subprocess.Popen(
        [python, "-c", PYTHON_HOST, str(config), str(threads)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert host.stdout is not None
        if host.stdout.readline().strip() != "READY":
            sys.exit("the Python host did not start")
        commands = ["--pid", str(host.pid), "-c", "shell python", "-c", "threads", "--timeout", "60"]
        text_argv = [str(ISPY), str(config), *commands]
        json_argv = [*text_argv, "--json"]
        sizes = [len(subprocess.run(argv, capture_output=True).stdout) for argv in (text_argv, json_argv)]
        text_times, json_times = [], []
        for _ in range(repeat):
            text_times.append(timed(text_argv))
            json_times.append(timed(json_argv))
        text_ms = statistics.median(text_times) * 1000
        json_ms = statistics.median(json_times) * 1000
        print()
        print("| threads × frames | text | `--json` | `--json` ÷ text | text bytes | JSON bytes |")
        print("|---:|---:|---:|---:|---:|---:|")
        print(
            f"| {threads} × 15 | {text_ms:.1f} ms | {json_ms:.1f} ms | {json_ms / text_ms:.2f}× "
            f"| {sizes[0]:,} | {sizes[1]:,} |"
        )
    finally:
        host.stdin.close()  # type: ignore[union-attr]
        host.wait()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="1,8,64")
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--threads", type=int, default=1000)
    parser.add_argument("--python", default=str(ROOT / "target" / "py-venv" / "bin" / "python"))
    args = parser.parse_args()
    for binary in (ISPY, DEMO):
        if not binary.exists():
            sys.exit(f"{binary} is missing: cargo build --release --bin ispy --example demo")
    os.environ.setdefault("ISPY_HISTORY", "/dev/null")
    fan_out([int(c) for c in args.counts.split(",")], args.repeat)
    json_vs_text(args.python, args.threads, args.repeat)


if __name__ == "__main__":
    main()
