"""What a running profile costs the application: requests per second of
app.py's /compute (about 2 ms of Python a request: the application's own
work, which a profile slows down, rather than connection handling, whose
cost on this machine swings by tens of percent from run to run) under one
gunicorn sync worker with ispyd loaded, while nothing
profiles it, while ispyd's `profile` samples it at 100 and 1,000 Hz, and
while `py-spy record` samples it from outside at 100 Hz (by default, which
stops the process for each sample, and with --nonblocking), in one run.

    bench/gunicorn/run.sh profile_load.py

The worker's threads (ispyd's sampler among them) and wrk share CPU 1;
ispy and py-spy run on CPU 0, so that a profiler's own CPU is charged to
the application only when it runs in the application. (wrk and the worker
on different CPUs made every figure swing by ±40 %: this machine's vCPUs
answer a cross-CPU wake-up in 11 or 52 µs depending on whether the other
one is halted, and a profiler keeps it awake.) One gunicorn serves
every variant; each round measures them all, in an order rotated from
round to round. Prints Markdown.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("BENCH_WORKERS", "1")
from bench import CLK_TCK, DURATION, Server, fail, read_stat_ticks, run_wrk, version_of  # noqa: E402 - after the worker count

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
VARIANTS = ["no profile", "ispyd 100 Hz", "ispyd 1000 Hz", "py-spy 100 Hz", "py-spy 100 Hz --nonblocking"]


def tool(name: str) -> str:
    found = shutil.which(name, path=os.path.dirname(sys.executable)) or shutil.which(name)
    if found is None:
        fail(f"needs {name} (pip install py-spy; the ispy of the ispyd package)")
    return found


def pin(pid: int, cpu: int) -> None:
    """Every thread of `pid`, now and to come (they inherit it), on `cpu`."""
    for task in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(task), {cpu})


def profiler(variant: str, worker: int, socket: str, seconds: int) -> subprocess.Popen | None:
    if variant == "no profile":
        return None
    if variant.startswith("ispyd"):
        hz = variant.split()[1]
        command = [tool("ispy"), "--out", tempfile.gettempdir(), socket,
                   "-c", "shell python", "-c", f"profile {seconds} --hz {hz}"]  # fmt: skip
    else:
        command = [tool("py-spy"), "record", "--pid", str(worker), "--rate", "100", "--duration", str(seconds),
                   "--format", "raw", "--output", os.devnull]  # fmt: skip
        if variant.endswith("--nonblocking"):
            command.append("--nonblocking")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: os.sched_setaffinity(0, {0}))


def main() -> None:
    if (os.cpu_count() or 1) < 2:
        fail("needs 2 CPUs: the worker on one, the load and the profilers on the other")
    os.sched_setaffinity(0, {1})  # wrk and gunicorn inherit it
    workdir = tempfile.mkdtemp(prefix="ispyd-bench-profile-")
    sockets = os.path.join(workdir, "sockets")
    os.makedirs(sockets)
    ini = os.path.join(workdir, "ispyd.ini")
    with open(ini, "w") as out:
        out.write(f"[ispyd]\nlisten = {sockets}/ispyd-%(pid)s.sock\n")
    server = Server("B", workdir, ini)
    results: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    ratios: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    costs: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    try:
        server.wait_ready()
        (worker,) = server.workers
        pin(worker, 1)
        socket = os.path.join(sockets, f"ispyd-{worker}.sock")
        url = server.url + "compute"
        run_wrk(url, 2)  # warm up
        for round_ in range(ROUNDS):
            order = VARIANTS[round_ % len(VARIANTS):] + VARIANTS[: round_ % len(VARIANTS)]
            measured = {}
            for variant in order:
                running = profiler(variant, worker, socket, DURATION + 2)
                time.sleep(1.0)  # the profiler is attached and sampling
                ticks = read_stat_ticks(f"/proc/{worker}/stat")
                wrk = run_wrk(url, DURATION)
                ticks = read_stat_ticks(f"/proc/{worker}/stat") - ticks
                measured[variant] = wrk.requests_per_second
                costs[variant].append(ticks / CLK_TCK / max(wrk.requests, 1))
                if running is not None:
                    _, err = running.communicate(timeout=DURATION + 60)
                    if running.returncode != 0:
                        fail(f"{variant} failed: {err}")
                pin(worker, 1)  # threads a profile started
            for variant in VARIANTS:
                results[variant].append(measured[variant])
                ratios[variant].append(measured[variant] / measured["no profile"])
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"Python {sys.version.split()[0]}, {version_of([tool('py-spy'), '--version'])}, 1 gunicorn sync worker and wrk on CPU 1, "
          f"ispy and py-spy on CPU 0, {DURATION} s per measurement, {ROUNDS} rounds (median; range of the ratio)\n")
    print("| while the worker serves | requests/s | vs no profile | range | worker CPU per request | vs no profile |")
    print("|---|--:|--:|--:|--:|--:|")
    base = statistics.median(costs["no profile"])
    for variant in VARIANTS:
        ratio = statistics.median(ratios[variant])
        cost = statistics.median(costs[variant])
        print(f"| {variant} | {statistics.median(results[variant]):.0f} | {(ratio - 1) * 100:+.1f} % | "
              f"{(min(ratios[variant]) - 1) * 100:+.1f} … {(max(ratios[variant]) - 1) * 100:+.1f} % | "
              f"{cost * 1e6:.0f} µs | {(cost / base - 1) * 100:+.1f} % |")


if __name__ == "__main__":
    main()
