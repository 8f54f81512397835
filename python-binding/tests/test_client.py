"""The ``ispy`` command that ``pip install`` puts beside the interpreter is
the Rust client of this repository."""

import subprocess
import sys
from pathlib import Path

import ispyd

from conftest import WAIT, ispy_command, run_ispy


def test_ispy_is_installed_beside_the_interpreter():
    assert Path(ispy_command()).parent == Path(sys.executable).parent


def test_ispy_version_is_the_rust_clients():
    done = subprocess.run([ispy_command(), "--version"], capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 0, done
    assert done.stdout.strip() == f"ispy {ispyd.__version__}"
    # When the workspace's own build is at hand (test.sh builds it first),
    # both say the same.
    built = Path(__file__).resolve().parents[2] / "target" / "debug" / "ispy"
    if built.exists():
        native = subprocess.run([str(built), "--version"], capture_output=True, text=True, timeout=WAIT)
        assert native.stdout == done.stdout


def test_ispy_exits_2_for_a_missing_configuration(workdir):
    result = run_ispy(workdir / "missing.ini", ["servers"])
    assert result.code == 2, result
    assert "missing.ini" in result.stderr
