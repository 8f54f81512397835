"""Throughput of app.py under gunicorn: ispyd absent (A) versus idle (B).

Run through run.sh, which provides the venv. Each round starts a fresh
gunicorn for one variant, warms it up with wrk, measures with wrk, and stops
it; the variants alternate A B, B A, A B, ... so that a drift of the machine
over the run falls on both. While B is measured, the CPU ticks and context
switches of every thread named ``ispyd-*`` in each worker are read from
/proc before and after, to show what the idle listener costs.

Each measurement waits for the machine to be quiet first and notes how much
CPU other processes used during it; one where they used 10 % or more is
repeated, a bounded number of times (BENCH_RETRIES).

All traffic goes to 127.0.0.1; every wrk run is bounded by its duration and
every wait by a deadline. Prints markdown on stdout.
"""

from __future__ import annotations

import http.client
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata

HERE = os.path.dirname(os.path.abspath(__file__))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
WARMUP = int(os.environ.get("BENCH_WARMUP", "3"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "8"))
THREADS = int(os.environ.get("BENCH_THREADS", "1"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))
QUIET_WAIT = int(os.environ.get("BENCH_QUIET_WAIT", "60"))
RETRIES = int(os.environ.get("BENCH_RETRIES", "2"))
QUIET_PERCENT = 10.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
START_DEADLINE = 30.0
STOP_DEADLINE = 30.0


def fail(message: str) -> None:
    print(f"bench.py: {message}", file=sys.stderr)
    sys.exit(1)


# --- /proc readings -------------------------------------------------------


@dataclass
class ThreadSample:
    name: str
    ticks: int
    voluntary: int
    involuntary: int


def read_stat_ticks(path: str) -> int:
    """utime + stime of a /proc/.../stat file, in clock ticks."""
    with open(path) as f:
        text = f.read()
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def sample_threads(pid: int) -> dict[int, ThreadSample]:
    """Every thread of a process: name, CPU ticks, context switches."""
    threads = {}
    task_dir = f"/proc/{pid}/task"
    for tid in os.listdir(task_dir):
        try:
            with open(f"{task_dir}/{tid}/comm") as f:
                name = f.read().strip()
            ticks = read_stat_ticks(f"{task_dir}/{tid}/stat")
            with open(f"{task_dir}/{tid}/status") as f:
                status = dict(
                    line.split(":", 1) for line in f.read().splitlines() if ":" in line
                )
        except FileNotFoundError:
            continue  # the thread ended between listdir and open
        threads[int(tid)] = ThreadSample(
            name,
            ticks,
            int(status["voluntary_ctxt_switches"]),
            int(status["nonvoluntary_ctxt_switches"]),
        )
    return threads


def children_of(ppid: int) -> list[int]:
    """PIDs whose parent is ppid (gunicorn's workers)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                text = f.read()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(text[text.rindex(")") + 2 :].split()[1]) == ppid:
            pids.append(int(entry))
    return sorted(pids)


def machine_task_ticks() -> int:
    """Clock ticks all CPUs spent running processes, from /proc/stat.

    Interrupt and softirq time is left out: it holds the kernel's loopback
    work for the benchmark's own traffic, charged to no process.
    """
    with open("/proc/stat") as f:
        user, nice, system = (int(v) for v in f.readline().split()[1:4])
    return user + nice + system


def children_ticks() -> int:
    """CPU ticks of this process's waited-for children (wrk runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return round((usage.ru_utime + usage.ru_stime) * CLK_TCK)


def wait_for_quiet() -> float:
    """Waits, at most QUIET_WAIT s, until other processes use little CPU.

    Returns the share of all CPUs they used in the last second. Other work
    on a 2-CPU machine (a build, a test run) takes CPU from the workers and
    wrk and moves the result more than anything measured here.
    """
    deadline = time.monotonic() + QUIET_WAIT
    capacity = CLK_TCK * (os.cpu_count() or 1)
    while True:
        before, t0 = machine_task_ticks(), time.monotonic()
        time.sleep(1)
        used = (machine_task_ticks() - before) / ((time.monotonic() - t0) * capacity) * 100
        if used < QUIET_PERCENT or time.monotonic() >= deadline:
            return used


# --- gunicorn and wrk -----------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One gunicorn master with WORKERS sync workers serving app.py."""

    def __init__(self, variant: str, workdir: str, ini: str) -> None:
        self.variant = variant
        self.port = free_port()
        self.socket_dir = os.path.join(workdir, "sockets")
        self.log_path = os.path.join(workdir, f"gunicorn-{variant}.log")
        env = dict(os.environ)
        env.pop("APP_ISPYD_CONFIG", None)
        if variant == "B":
            env["APP_ISPYD_CONFIG"] = ini
        # No --access-logfile: gunicorn then writes no access log.
        command = [
            sys.executable, "-m", "gunicorn",
            "--chdir", HERE,
            "--workers", str(WORKERS),
            "--worker-class", "sync",
            "--bind", f"127.0.0.1:{self.port}",
            "--error-logfile", self.log_path,
            "--log-level", "warning",
            "app:app",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.workers: list[int] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def wait_ready(self) -> None:
        """Waits until the app answers and all workers are up."""
        deadline = time.monotonic() + START_DEADLINE
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                fail(f"gunicorn ({self.variant}) exited; see {self.log_path}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/")
                ok = conn.getresponse().status == 200
                conn.close()
            except OSError:
                ok = False
            self.workers = children_of(self.process.pid)
            if ok and len(self.workers) == WORKERS:
                return
            time.sleep(0.1)
        fail(f"gunicorn ({self.variant}) not ready in {START_DEADLINE:.0f} s")

    def check_variant(self) -> None:
        """B: each worker has an ispyd listener and socket; A: none."""
        for pid in self.workers:
            names = [t.name for t in sample_threads(pid).values()]
            has_listener = "ispyd-listener" in names
            sock = os.path.join(self.socket_dir, f"ispyd-{pid}.sock")
            if self.variant == "B" and not (has_listener and os.path.exists(sock)):
                fail(f"worker {pid}: no ispyd listener or no {sock}")
            if self.variant == "A" and any(n.startswith("ispyd-") for n in names):
                fail(f"worker {pid}: ispyd threads in the variant without ispyd")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_DEADLINE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_DEADLINE)


@dataclass
class WrkResult:
    requests_per_second: float
    requests: int
    errors: str


def run_wrk(url: str, seconds: int) -> WrkResult:
    command = [
        "wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "5s", url
    ]
    # wrk stops by itself after its duration; the timeout is a backstop.
    output = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=seconds + 30
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if rps is None:
        fail(f"no Requests/sec in wrk's output:\n{output}")
    if "Non-2xx" in output:
        fail(f"wrk saw non-2xx responses:\n{output}")
    requests = re.search(r"(\d+) requests in", output)
    errors = re.search(r"Socket errors: (.*)", output)
    return WrkResult(
        float(rps.group(1)),
        int(requests.group(1)) if requests else 0,
        errors.group(1) if errors else "none",
    )


# --- one round ------------------------------------------------------------


@dataclass
class WorkerCost:
    pid: int
    ispyd_threads: list[str]
    ispyd_ticks: int
    ispyd_voluntary: int
    ispyd_involuntary: int
    worker_ticks: int


@dataclass
class Measurement:
    variant: str
    wrk: WrkResult
    other_cpu_percent: float
    worker_ticks: int
    costs: list[WorkerCost] = field(default_factory=list)


def measure(variant: str, workdir: str, ini: str) -> Measurement:
    busy = wait_for_quiet()
    if busy >= QUIET_PERCENT:
        print(f"  machine still busy ({busy:.0f} % CPU), measuring anyway", file=sys.stderr)
    server = Server(variant, workdir, ini)
    try:
        server.wait_ready()
        run_wrk(server.url, WARMUP)
        server.check_variant()
        ours = [server.process.pid, *server.workers]
        before = {pid: sample_threads(pid) for pid in server.workers}
        ours_before = {pid: read_stat_ticks(f"/proc/{pid}/stat") for pid in ours}
        busy_before, wrk_before, t0 = machine_task_ticks(), children_ticks(), time.monotonic()
        result = run_wrk(server.url, DURATION)
        busy_after, wrk_after, t1 = machine_task_ticks(), children_ticks(), time.monotonic()
        ours_after = {pid: read_stat_ticks(f"/proc/{pid}/stat") for pid in ours}
        after = {pid: sample_threads(pid) for pid in server.workers}
    finally:
        server.stop()

    ticks = {pid: ours_after[pid] - ours_before[pid] for pid in ours}
    worker_ticks = sum(ticks[pid] for pid in server.workers)
    ours_ticks = sum(ticks.values()) + (wrk_after - wrk_before)
    capacity = (t1 - t0) * CLK_TCK * (os.cpu_count() or 1)
    other = max(0, (busy_after - busy_before) - ours_ticks) / capacity * 100
    costs = []
    for pid in server.workers:
        ispyd = [tid for tid, t in after[pid].items() if t.name.startswith("ispyd-")]

        def delta(attr: str, tids: list[int], pid: int = pid) -> int:
            return sum(
                getattr(after[pid][tid], attr)
                - (getattr(before[pid][tid], attr) if tid in before[pid] else 0)
                for tid in tids
            )

        costs.append(
            WorkerCost(
                pid,
                sorted(after[pid][tid].name for tid in ispyd),
                delta("ticks", ispyd),
                delta("voluntary", ispyd),
                delta("involuntary", ispyd),
                ticks[pid],
            )
        )
    return Measurement(variant, result, other, worker_ticks, costs)


# --- report ---------------------------------------------------------------


def percent(new: float, base: float) -> str:
    return f"{(new / base - 1) * 100:+.1f} %"


def cpu_per_request(m: Measurement) -> float:
    """Microseconds of worker CPU time per request served."""
    return m.worker_ticks / CLK_TCK * 1e6 / max(1, m.wrk.requests)


def spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values) * 100


def version_of(command: list[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    match = re.search(r"\d+\.\d+(\.\d+)?", out.stdout + out.stderr)
    return match.group(0) if match else "?"


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def main() -> None:
    if shutil.which("wrk") is None:
        fail("needs wrk (Debian/Ubuntu: apt-get install wrk)")
    workdir = tempfile.mkdtemp(prefix="ispyd-bench-gunicorn-")
    socket_dir = os.path.join(workdir, "sockets")
    os.mkdir(socket_dir)
    ini = os.path.join(workdir, "ispyd.ini")
    with open(ini, "w") as f:
        f.write(f"[ispyd]\nlisten = {socket_dir}/ispyd-%(pid)s.sock\n")

    order = []
    for i in range(ROUNDS):
        order.append(("A", "B") if i % 2 == 0 else ("B", "A"))
    rounds: list[dict[str, Measurement]] = []
    retried = 0
    for i, pair in enumerate(order, 1):
        results = {}
        for variant in pair:
            for attempt in range(1 + RETRIES):
                print(f"round {i}: {variant} ...", file=sys.stderr, flush=True)
                m = measure(variant, workdir, ini)
                print(
                    f"round {i}: {variant} {m.wrk.requests_per_second:.0f} req/s, "
                    f"other CPU {m.other_cpu_percent:.0f} %",
                    file=sys.stderr,
                    flush=True,
                )
                if m.other_cpu_percent < QUIET_PERCENT:
                    break
            results[variant] = m
            retried += attempt
        rounds.append(results)
    leftover = os.listdir(socket_dir)
    shutil.rmtree(workdir)

    a = [r["A"].wrk.requests_per_second for r in rounds]
    b = [r["B"].wrk.requests_per_second for r in rounds]
    paired = [(rb / ra - 1) * 100 for ra, rb in zip(a, b)]
    cpu_a = [cpu_per_request(r["A"]) for r in rounds]
    cpu_b = [cpu_per_request(r["B"]) for r in rounds]

    print("Machine: {} CPUs ({}), Linux {}, Python {}, gunicorn {}, Flask {}, wrk {}.".format(
        os.cpu_count(), cpu_model(), platform.release(), platform.python_version(),
        metadata.version("gunicorn"), metadata.version("flask"), version_of(["wrk", "-v"]),
    ))  # fmt: skip
    print(
        f"gunicorn `--workers {WORKERS} --worker-class sync --bind 127.0.0.1:PORT`, "
        f"no access log; load `wrk -t{THREADS} -c{CONNECTIONS} -d{DURATION}s` after a "
        f"{WARMUP} s warm-up of each fresh server. A = ispyd absent, B = ispyd "
        "embedded and idle (a ShellManager in each worker, no client connected)."
    )
    print()
    print("| round | order | A req/s | B req/s | B vs A | worker CPU per request A / B "
          "| other CPU during A / B |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|")
    for i, (pair, r) in enumerate(zip(order, rounds), 1):
        print(
            f"| {i} | {' '.join(pair)} | {a[i - 1]:.0f} | {b[i - 1]:.0f} "
            f"| {paired[i - 1]:+.1f} % | {cpu_a[i - 1]:.0f} µs / {cpu_b[i - 1]:.0f} µs "
            f"| {r['A'].other_cpu_percent:.0f} % / {r['B'].other_cpu_percent:.0f} % |"
        )
    ma, mb = statistics.median(a), statistics.median(b)
    mca, mcb = statistics.median(cpu_a), statistics.median(cpu_b)
    print(
        f"| **median** | | **{ma:.0f}** | **{mb:.0f}** | **{percent(mb, ma)}** "
        f"| **{mca:.0f} µs / {mcb:.0f} µs** ({percent(mcb, mca)}) | |"
    )
    print()
    print(
        f"Spread between rounds (max - min, over the median): A {spread(a):.1f} %, "
        f"B {spread(b):.1f} %; B vs A within a round: {min(paired):+.1f} % to "
        f"{max(paired):+.1f} %, median {statistics.median(paired):+.1f} %. Worker CPU per request is the workers' user + "
        "system time over the requests served; \"other CPU\" is what processes "
        "outside the benchmark used meanwhile, as a share of all CPUs."
    )
    quiet = [
        d
        for d, r in zip(paired, rounds)
        if max(m.other_cpu_percent for m in r.values()) < QUIET_PERCENT
    ]
    if quiet:
        print(
            f"Over the {len(quiet)} round(s) where other processes used under "
            f"{QUIET_PERCENT:.0f} % CPU during both measurements, B vs A has median "
            f"{statistics.median(quiet):+.1f} % ({min(quiet):+.1f} % to {max(quiet):+.1f} %)."
        )
    if retried:
        print(
            f"{retried} measurement(s) were repeated because other processes used "
            f"{QUIET_PERCENT:.0f} % CPU or more meanwhile; the table shows the last try."
        )
    errors = {m.wrk.errors for r in rounds for m in r.values()}
    if errors != {"none"}:
        print(f"wrk socket errors: {'; '.join(sorted(errors))}.")
    print()
    print(f"ispyd threads in each worker during B's {DURATION} s measurements "
          f"(from /proc/PID/task/*/stat and status; 1 tick = {1000 // CLK_TCK} ms):")  # fmt: skip
    print()
    print("| round | worker | ispyd threads | their CPU ticks | their voluntary / "
          "involuntary context switches | whole worker CPU ticks |")  # fmt: skip
    print("|---|---|---|---:|---:|---:|")
    for i, r in enumerate(rounds, 1):
        for c in r["B"].costs:
            print(
                f"| {i} | {c.pid} | {', '.join(c.ispyd_threads)} | {c.ispyd_ticks} "
                f"| {c.ispyd_voluntary} / {c.ispyd_involuntary} | {c.worker_ticks} |"
            )
    if leftover:
        print(f"\nNote: socket files left after the workers stopped: {leftover}")


if __name__ == "__main__":
    main()
