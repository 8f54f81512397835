#!/usr/bin/env bash
# Request throughput of a small Flask app under gunicorn, with ispyd embedded
# but idle (B) versus absent (A), alternated in one run; prints markdown.
#
#   bench/gunicorn/run.sh                   # idle ispyd versus none
#   bench/gunicorn/run.sh profile_load.py   # a running profile versus none, beside py-spy
#
# Settings (environment): BENCH_ROUNDS (5 per variant), BENCH_DURATION (10
# s), BENCH_WARMUP (3 s), BENCH_CONNECTIONS (8), BENCH_THREADS (1),
# BENCH_WORKERS (2), BENCH_QUIET_WAIT (60: before each measurement, seconds
# to wait for other processes to use under 10 % CPU), BENCH_RETRIES (2: how
# often a measurement is repeated when other processes took 10 % CPU or more
# during it). Traffic goes to 127.0.0.1 only; every round is bounded by
# wrk's duration. Needs wrk (Debian: apt-get install wrk). The venv is
# target/bench-venv (see venv.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v wrk >/dev/null; then
  echo "run.sh: needs wrk (Debian/Ubuntu: apt-get install wrk)" >&2
  exit 1
fi
source bench/gunicorn/venv.sh
exec "$venv/bin/python" "bench/gunicorn/${1:-bench.py}"
