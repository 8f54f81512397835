#!/usr/bin/env bash
# Runs the roundtrip benchmark several times and prints, for each run, its
# latency rows and how busy the machine was: on a shared 2-CPU machine one
# run's absolute figures can be off by a third, the ratios much less.
#
#   bench/roundtrip-repeat.sh [RUNS]        (default 5; extra settings via ISPYD_BENCH_*)
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-5}
cargo bench -p ispyd-std --bench roundtrip --no-run 2>/dev/null
for run in $(seq 1 "$runs"); do
  echo "run $run:"
  cargo bench -p ispyd-std --bench roundtrip 2>/dev/null |
    grep -E '^\| (round trip|connect)|^Other processes'
  echo
done
