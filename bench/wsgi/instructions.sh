#!/usr/bin/env bash
# Instructions per request of a WSGI application called directly, bare,
# wrapped in ispyd's WSGIApplicationWrapper, and wrapped in the 2012
# wrapper, counted by callgrind: deterministic, so unlike times it does not
# move with what else the shared machine runs. Start-up is cancelled by
# counting two runs of FEW and MANY requests and dividing the difference.
# Prints markdown.
#
#   bench/wsgi/instructions.sh        # with the ispyd package installed in the python3 on PATH
#   GEVENT=1 bench/wsgi/instructions.sh   # monkey-patched by gevent, requests in a greenlet
#
# Needs valgrind (Debian: apt-get install valgrind). Takes about two minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v valgrind >/dev/null; then
  echo "instructions.sh: needs valgrind (Debian/Ubuntu: apt-get install valgrind)" >&2
  exit 1
fi
python=${PYTHON:-python3}
few=1000
many=6000
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

count() { # variant shape requests -> instructions collected
  PYTHONHASHSEED=0 timeout 900 valgrind --tool=callgrind \
    --callgrind-out-file="$work/$1.$2.$3.out" "$python" \
    bench/wsgi/bench.py --serve "$1" "$2" "$3" ${GEVENT:+--gevent} >"$work/$1.$2.$3.log" 2>&1 ||
    { cat "$work/$1.$2.$3.log" >&2; exit 1; }
  sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$work/$1.$2.$3.log"
}

echo "| response | bare app | ispyd wrapper | 2012 wrapper | ispyd overhead | 2012 overhead |"
echo "|---|--:|--:|--:|--:|--:|"
declare -A shape_names=([list1]="list of 1 chunk" [list100]="list of 100 chunks" [generator100]="generator of 100 chunks")
for shape in list1 list100 generator100; do
  declare -A per_request=()
  for variant in bare ispyd 2012; do
    low=$(count "$variant" "$shape" "$few")
    high=$(count "$variant" "$shape" "$many")
    per_request[$variant]=$(((high - low) / (many - few)))
  done
  b=${per_request[bare]} i=${per_request[ispyd]} s=${per_request[2012]}
  echo "| ${shape_names[$shape]} | $b | $i | $s | **$((i - b))** | $((s - b)) |"
done
