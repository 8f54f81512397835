#!/usr/bin/env bash
# Runs every test: formatting, lints, unit, property and end-to-end tests
# (real processes, sockets and the ispy client), the fuzz corpus replay, and
# the Python package's tests (pip-installed into a fresh virtualenv, then a
# real gunicorn, uWSGI, Apache/mod_wsgi, gevent and eventlet serving Flask
# apps and uvicorn serving a Starlette app, inspected with the installed
# ispy).
set -euo pipefail
cd "$(dirname "$0")"

missing=()
for tool in socat nc tmux setpriv python3 ssh ssh-keygen rsvg-convert apxs; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
[ -x /usr/sbin/sshd ] || missing+=(sshd)
[ -x /usr/sbin/apache2 ] || missing+=(apache2)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
/usr/bin/python3 -c 'import venv, ensurepip, os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null ||
  missing+=("/usr/bin/python3 with venv and headers")
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: the end-to-end tests need: ${missing[*]}" >&2
  echo "  Debian/Ubuntu: apt-get install socat netcat-openbsd tmux util-linux python3-venv openssh-server openssh-client librsvg2-bin apache2 apache2-dev python3 python3-dev" >&2
  exit 1
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --bins --examples
cargo test --workspace
# The end-to-end suite again, with the demo's shell on the mio engine.
ISPYD_TEST_ENGINE=mio cargo test -p ispyd-tests

# The Python package, as a user gets it: `pip install ./python-binding`
# (maturin builds the extension and the ispy command) into a virtualenv made
# afresh each run, so that nothing installed by an earlier run is tested.
venv=target/py-venv
python3 -m venv --clear "$venv"
"$venv/bin/pip" install --quiet ./python-binding pytest gunicorn flask uvicorn starlette websockets py-spy uwsgi gevent eventlet
# mod_wsgi's tests serve from Apache, whose children run as an unprivileged
# user when the tests run as root (Apache refuses root); that user must be
# able to read the interpreter, so mod_wsgi-express gets a virtualenv of the
# system's /usr/bin/python3 rather than of a Python under /root. mod_wsgi
# is built afresh (--no-cache-dir): a cached build is linked against the
# Python that made it.
"/usr/bin/python3" -m venv --clear target/mod-wsgi-venv
target/mod-wsgi-venv/bin/pip install --quiet ./python-binding flask
target/mod-wsgi-venv/bin/pip install --quiet --no-cache-dir mod_wsgi
# The whole Python suite once per engine ([ispyd] engine = threads | mio).
for engine in threads mio; do
  echo "test.sh: Python tests with engine = $engine"
  pytest_status=0
  (cd python-binding && ISPYD_TEST_ENGINE=$engine "../$venv/bin/python" -m pytest -p no:cacheprovider -q) \
    || pytest_status=$?
  if [ "$pytest_status" -eq 5 ]; then
    echo "test.sh: pytest collected no Python tests" >&2
    exit 1
  fi
  if [ "$pytest_status" -ne 0 ]; then
    exit "$pytest_status"
  fi
done
