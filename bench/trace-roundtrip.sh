#!/usr/bin/env bash
# Where a round trip's time goes: counts, per round trip of `pid`, the
# syscalls, heap allocations, wake-ups and context switches of the serving
# thread (ispyd's session thread, or the echo baseline's) and of the client.
#
#   bench/trace-roundtrip.sh [ROUNDS]        (default 10000; needs root and perf)
#
# It runs the roundtrip benchmark's pinned measurement (everything on CPU 0,
# so the order of events is the order they happened in) under `perf record`
# with the syscall and scheduler tracepoints and uprobes on libc's malloc,
# free and realloc. Latencies under perf are much slower than without it:
# use `cargo bench -p ispyd-std --bench roundtrip` for those, this for counts.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-10000}
warmup=2000 # the benchmark's warm-up round trips, traced too
command -v perf >/dev/null || {
  echo "trace-roundtrip.sh: needs perf (Debian: apt-get install linux-perf)" >&2
  exit 1
}

exe=$(cargo bench -p ispyd-std --bench roundtrip --no-run 2>&1 |
  sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -1)
[ -x "$exe" ] || {
  echo "trace-roundtrip.sh: cannot find the roundtrip benchmark's executable" >&2
  exit 1
}
libc=$(ldd "$exe" | awk '/libc\.so/ { print $3 }')

tmp=$(mktemp -d)
probes=()
cleanup() {
  for probe in "${probes[@]}"; do perf probe -q -d "$probe" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

events=raw_syscalls:sys_enter,sched:sched_switch,sched:sched_wakeup
for fn in malloc free realloc; do
  if perf probe -q -x "$libc" "ispyd_bench_$fn=$fn" 2>/dev/null; then
    probes+=("probe_libc:ispyd_bench_$fn")
    events+=",probe_libc:ispyd_bench_$fn"
  fi
done

ISPYD_BENCH_ROUNDS=$rounds ISPYD_BENCH_CONNECTS=10 \
  perf record -q -o "$tmp/perf.data" -e "$events" -- "$exe" --child pinned --bench >/dev/null

echo "Per round trip of \`pid\` ($((rounds + warmup)) traced, warm-up included), pinned to CPU 0:"
echo
echo "| thread | event | per round trip |"
echo "|---|---|---:|"
# Thread names: the serving threads are ispyd-session-N and echo-session-N;
# the client is the main thread (named after the executable), whose events
# are told apart by the socket it last sent on or read from: of the two it
# uses most, the echo one was opened first and so has the lower number.
perf script -i "$tmp/perf.data" -F comm,event,trace 2>/dev/null |
  awk -v n=$((rounds + warmup)) '
    function hex(text,    i, value) {
      value = 0
      for (i = 1; i <= length(text); i++)
        value = value * 16 + index("0123456789abcdef", substr(text, i, 1)) - 1
      return value
    }
    {
      who = $1
      if (who ~ /^ispyd-session/) who = "ispyd session thread"
      else if (who ~ /^echo-session/) who = "echo session thread"
      else if (who ~ /^roundtrip/) who = "client"
      else next
      what = $2
      sub(/:$/, "", what)
      if (what == "raw_syscalls:sys_enter") {
        match($0, /NR [0-9]+ \([0-9a-f]+/)
        split(substr($0, RSTART + 3, RLENGTH - 3), call, / \(/)
        nr = call[1]
        name = (nr == 0) ? "read" : (nr == 1) ? "write" : (nr == 39) ? "getpid" : \
               (nr == 44) ? "sendto" : (nr == 45) ? "recvfrom" : (nr == 7) ? "poll" : \
               (nr == 202) ? "futex" : "syscall " nr
        what = "syscall " name
        if (who == "client" && (nr == 44 || nr == 45)) fd = call[2]
        if (who == "client" && nr == 44) sends[fd]++
      } else if (what == "sched:sched_switch") {
        what = ($0 ~ /prev_state=R/) ? "switched out, preempted" : "switched out, sleeping"
      } else if (what == "sched:sched_wakeup") {
        what = "woke another thread"
      } else {
        sub(/^probe_libc:ispyd_bench_/, "", what)
      }
      if (who == "client") who = "client fd " fd
      count[who "\t" what]++
    }
    END {
      for (f in sends) {
        if (first == "" || sends[f] > sends[first]) { second = first; first = f }
        else if (second == "" || sends[f] > sends[second]) second = f
      }
      lo = (hex(first) < hex(second)) ? first : second
      hi = (lo == first) ? second : first
      for (key in count) {
        split(key, part, "\t")
        who = part[1]
        if (who == "client fd " lo) who = "client, to echo"
        else if (who == "client fd " hi) who = "client, to ispyd"
        else if (who ~ /^client/) continue
        per = count[key] / n
        if (per >= 0.05) printf "| %s | %s | %.2f |\n", who, part[2], per
      }
    }' | sort
