#!/usr/bin/env bash
# Runs every test: formatting, lints, unit, property and end-to-end tests
# (real processes, sockets and the ispy client), and the fuzz corpus replay.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
for tool in socat nc tmux setpriv; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: the end-to-end tests need: ${missing[*]}" >&2
  echo "  Debian/Ubuntu: apt-get install socat netcat-openbsd tmux util-linux" >&2
  exit 1
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins --examples
cargo test --workspace
