# Sourced by run.sh and instructions.sh from the repository root: makes
# target/bench-venv with ispyd (built from ./python-binding), flask and
# gunicorn, and sets $venv. ispyd is rebuilt when its sources are newer than
# the last install; cargo builds it in target/bench-venv/cargo-target, so
# other builds in ./target do not race it.

venv=target/bench-venv
export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ beside app.py
stamp=$venv/.ispyd-installed
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import flask, gunicorn' 2>/dev/null; then
  "$venv/bin/pip" install --quiet flask gunicorn >&2
fi
if [ ! -x "$venv/bin/py-spy" ]; then
  "$venv/bin/pip" install --quiet py-spy >&2
fi
sources=(Cargo.toml Cargo.lock core/src core/Cargo.toml adapter-std/src
  adapter-std/Cargo.toml client/src client/Cargo.toml python-binding/src
  python-binding/python python-binding/Cargo.toml python-binding/pyproject.toml)
if [ ! -e "$stamp" ] || [ -n "$(find "${sources[@]}" -newer "$stamp" -print -quit)" ]; then
  echo "bench/gunicorn: installing ispyd from ./python-binding into $venv ..." >&2
  touch "$stamp.new"
  CARGO_TARGET_DIR=$venv/cargo-target \
    "$venv/bin/pip" install --quiet --force-reinstall --no-deps ./python-binding >&2
  mv "$stamp.new" "$stamp"
fi
