#!/usr/bin/env bash
# Instructions per request of app.py with ispyd absent (A) and embedded but
# idle (B), counted by callgrind: deterministic, so unlike req/s it does not
# move with what else the machine runs. Requests go through Flask's test
# client in one process (no sockets, no gunicorn); start-up is cancelled by
# counting two runs, of FEW and MANY requests. Prints markdown.
#
#   bench/gunicorn/instructions.sh
#
# Needs valgrind (Debian: apt-get install valgrind). Takes about a minute.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v valgrind >/dev/null; then
  echo "instructions.sh: needs valgrind (Debian/Ubuntu: apt-get install valgrind)" >&2
  exit 1
fi
source bench/gunicorn/venv.sh

few=100
many=600
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '[ispyd]\nlisten = %s/ispyd-%%(pid)s.sock\n' "$work" >"$work/ispyd.ini"

count() { # variant requests -> instructions collected
  local config=""
  [ "$1" = B ] && config=$work/ispyd.ini
  APP_ISPYD_CONFIG=$config PYTHONHASHSEED=0 timeout 900 valgrind --tool=callgrind \
    --callgrind-out-file="$work/$1.$2.out" "$venv/bin/python" \
    bench/gunicorn/serve_in_process.py "$2" >"$work/$1.$2.log" 2>&1 ||
    { cat "$work/$1.$2.log" >&2; exit 1; }
  sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$work/$1.$2.log"
}

declare -A per_request
for variant in A B; do
  low=$(count "$variant" "$few")
  high=$(count "$variant" "$many")
  per_request[$variant]=$(((high - low) / (many - few)))
done
a=${per_request[A]}
b=${per_request[B]}
echo "| variant | instructions per request |"
echo "|---|---:|"
echo "| A: ispyd absent | $a |"
echo "| B: ispyd embedded, idle | $b |"
awk -v a="$a" -v b="$b" 'BEGIN { printf "| B vs A | %+.2f %% |\n", (b / a - 1) * 100 }'
