#!/usr/bin/env bash
# Starts the demo program (a Rust program with ispyd embedded) and connects
# the ispy client to it. Leave ispy with 'exit' (or Ctrl-D); the demo stops
# with it.
set -euo pipefail
cd "$(dirname "$0")"

cargo build --quiet --bin ispy --example demo
config=adapter-std/examples/demo.ini
log=$(mktemp -t ispyd-demo.XXXXXX.log)

# A session of its own: Ctrl-C in ispy (the terminal's foreground) must
# not reach the demo.
setsid target/debug/examples/demo "$config" >"$log" 2>&1 &
demo=$!
trap 'kill "$demo" 2>/dev/null || true; wait "$demo" 2>/dev/null || true; rm -f "$log"' EXIT

socket=/tmp/ispyd-demo-$demo.sock
for _ in $(seq 100); do
  [ -S "$socket" ] && break
  kill -0 "$demo" 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.1
done

cat <<MSG
The demo runs as pid $demo, listening on $socket.
Try:  servers   connect   (or connect N when several run)
      dump   plugins   shell process   threads   fds   profile 3   exit
      shell demo   stats   workers   slow 2   work 5 (Ctrl-C)   crash   exit
      exit      (leaves ispy and stops the demo)
MSG
target/debug/ispy "$config"
