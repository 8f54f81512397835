#!/usr/bin/env python3
"""What the `ispyd-activate.pth` hook costs interpreter start-up: `python -c
pass` with the package installed and `ISPYD_CONFIG` unset, beside an
interpreter without the package (two virtualenvs made for the run, one
with the installed package and its hook copied in), and with the
variable set (the shell starts, then the process ends), in the same run.

    pip install ./python-binding && python3 bench/startup.py [--repeat 41]

Each round starts one process of each kind, in turn; the figure is the
median wall time from `subprocess.run` to its return. Prints Markdown.
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
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=41)
    args = parser.parse_args()

    # Two virtualenvs that differ only by ispyd: the package and its .pth
    # copied as pip installed them into this interpreter's site-packages.
    import ispyd

    package = Path(ispyd.__file__).parent
    hook = package.parent / "ispyd-activate.pth"
    pythons = {}
    for name in ("bare", "ispyd"):
        where = ROOT / "target" / f"bench-startup-{name}"
        venv.EnvBuilder(with_pip=False, clear=True).create(where)
        pythons[name] = str(where / "bin" / "python")
    site = subprocess.run([pythons["ispyd"], "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    shutil.copytree(package, Path(site) / "ispyd")
    shutil.copy(hook, site)
    bare, installed = pythons["bare"], pythons["ispyd"]
    assert subprocess.run([bare, "-c", "import ispyd"], capture_output=True).returncode != 0, "the bare venv has ispyd"

    work = Path(tempfile.mkdtemp(prefix="ispyd-bench-startup-"))
    work.chmod(0o700)
    config = work / "ispyd.ini"
    config.write_text(f"[ispyd]\nlisten = {work}/ispyd-%(pid)s.sock\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("ISPYD_")}
    kinds = {
        "without the package": ([bare, "-c", "pass"], env),
        "installed, ISPYD_CONFIG unset": ([installed, "-c", "pass"], env),
        "installed, ISPYD_CONFIG set": ([installed, "-c", "pass"], {**env, "ISPYD_CONFIG": str(config)}),
    }
    times = {name: [] for name in kinds}
    for _ in range(3):
        for argv, environment in kinds.values():
            subprocess.run(argv, env=environment, check=True)
    for _ in range(args.repeat):
        for name, (argv, environment) in kinds.items():
            start = time.perf_counter()
            subprocess.run(argv, env=environment, check=True)
            times[name].append(time.perf_counter() - start)
    for path in work.iterdir():
        path.unlink()
    work.rmdir()

    base = statistics.median(times["without the package"])
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"`python -c pass`, median of {args.repeat} (quartiles in brackets)\n")
    print("| interpreter | start-up | difference |")
    print("|---|--:|--:|")
    for name, values in times.items():
        quartiles = statistics.quantiles(values, n=4)
        median = statistics.median(values)
        print(f"| {name} | {median * 1e3:.2f} ms ({quartiles[0] * 1e3:.2f}–{quartiles[2] * 1e3:.2f}) "
              f"| {(median - base) * 1e3:+.2f} ms |")


if __name__ == "__main__":
    main()
