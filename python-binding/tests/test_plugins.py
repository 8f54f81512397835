"""Third-party plugins named in the configuration: loaded, configured from
their own section, documented by their docstrings; broken ones reported to
the client with their traceback while the shell and the host go on."""

from __future__ import annotations

import json
import re

import conftest
from conftest import run_ispy

GOOD = "tests_plugins.good:GoodPlugin"
BROKEN_IMPORT = "tests_plugins.broken_import:BrokenPlugin"
BROKEN_ACTIVATE = "tests_plugins.broken_activate:Picky"


def test_plugin_from_config_is_listed_with_its_summary(write_config, start_app):
    app = start_app(write_config(plugins=f"%(builtins)s {GOOD}"))
    result = run_ispy(app.address, ["connect", "plugins"])
    assert re.search(r"^good\s+Greetings from a plugin the configuration loaded$", result.stdout, re.M), result
    assert re.search(r"^python\s", result.stdout, re.M), result
    assert re.search(r"^process\s", result.stdout, re.M), result


def test_plugin_docstrings_are_its_help(write_config, start_app):
    app = start_app(write_config(plugins=f"%(builtins)s {GOOD}"))
    result = run_ispy(app.address, ["connect", "shell good", "help", "help hello"])
    assert result.code == 0, result
    assert re.search(r"^exit\s+hello\s+help\s+prompt\s+x\s*$", result.stdout, re.M), result
    assert "hello [NAME]: greet NAME (default: world) with the configured greeting." in result.stdout


def test_plugin_activate_reads_its_own_section(write_config, start_app):
    config = write_config(plugins=f"%(builtins)s {GOOD}", extra="[good]\ngreeting = bonjour\n")
    app = start_app(config)
    result = run_ispy(app.address, ["connect", "shell good", "hello", "hello Ada"])
    assert result.stdout.splitlines() == ["bonjour, world!", "bonjour, Ada!"], result
    # Its section belongs to a loaded plugin: no warning about it.
    assert "warning" not in app.stderr.text(), app.output()


def test_plugin_shutdown_runs_when_the_manager_stops(write_config, start_app):
    app = start_app(write_config(plugins=f"%(builtins)s {GOOD}"))
    app.command("shutdown", r"^SHUT DOWN False$")
    assert "GOOD PLUGIN SHUT DOWN" in app.stdout.snapshot()


def test_exception_in_a_command_reaches_the_client_with_its_traceback(write_config, start_app):
    app = start_app(write_config(plugins=f"%(builtins)s {GOOD}"))
    result = run_ispy(app.address, ["connect", "shell good", "x", "hello after"])
    assert result.code == 0, result
    assert "Traceback (most recent call last):" in result.stderr, result
    assert 'good.py", line' in result.stderr and "in do_x" in result.stderr, result
    assert "RuntimeError: do_x failed on purpose" in result.stderr, result
    # The same session goes on, and so does the host.
    assert result.stdout.splitlines() == ["hello, after!"], result
    assert app.proc.poll() is None
    assert run_ispy(app.address, ["connect", "shell good", "hello"]).stdout == "hello, world!\n"


def test_plugin_that_fails_to_import_is_reported_and_the_rest_load(write_config, start_app):
    app = start_app(write_config(plugins=f"%(builtins)s {BROKEN_IMPORT} {GOOD}"))
    # The host is told at start-up, with the traceback.
    assert "ispyd_no_such_module_for_tests" in app.stderr.text(), app.output()
    result = run_ispy(
        app.address,
        ["connect", "plugins", f"shell {BROKEN_IMPORT}", "traceback", "exit", "shell good", "hello"],
    )
    assert result.code == 0, result
    listed = re.search(rf"^{re.escape(BROKEN_IMPORT)}\s+FAILED TO LOAD \((.*)\)", result.stdout, re.M)
    assert listed, result
    assert "ModuleNotFoundError" in listed.group(1)
    assert "Traceback (most recent call last):" in result.stdout, result
    assert "No module named 'ispyd_no_such_module_for_tests'" in result.stdout, result
    assert result.stdout.endswith("hello, world!\n"), result


def test_plugin_whose_activate_raises_is_reported_as_broken(write_config, start_app):
    app = start_app(write_config(plugins=f"%(builtins)s {BROKEN_ACTIVATE}"))
    result = run_ispy(app.address, ["connect", "plugins", f"shell {BROKEN_ACTIVATE}", "traceback"])
    assert re.search(rf"^{re.escape(BROKEN_ACTIVATE)}\s+FAILED TO LOAD \(ValueError", result.stdout, re.M), result
    assert "picky: no configuration is good enough" in result.stdout, result
    assert "in activate" in result.stdout, result


def test_what_ispyd_sets_on_a_plugin_is_what_ispyd_plugin_declares(write_config, start_app):
    app = start_app(write_config(plugins="%(builtins)s tests_plugins.typed:TypedPlugin"))
    result = run_ispy(app.address, "", conftest.WAIT, "--json", "-c", "shell typed", "-c", "check")
    data = json.loads(result.stdout.splitlines()[-1])["data"]
    assert data["plugin"] is True and data["progress"] is True, data
    assert isinstance(data["session"], int) and data["session"] > 0, data


DECLARED = "tests_plugins.declared:Declared"


def test_a_plugin_that_declares_its_keys_gets_the_cores_warnings(write_config, start_app):
    extra = "[declared]\nsize = 3\nttl = 0.5\nszie = 4\n[debugger]\nmax_traceback = 3\n"
    app = start_app(write_config(plugins=f"%(builtins)s debugger {DECLARED}", extra=extra))
    result = run_ispy(app.address, ["connect", "shell declared", "show"])
    assert result.stdout.splitlines() == ["size=3 szie=4 ttl=0.5"], result
    stderr = app.stderr.text()
    assert "[declared] szie: unknown key, ignored (did you mean 'size'?)" in stderr, app.output()
    assert "[debugger] max_traceback: unknown key, ignored (did you mean 'max_tracebacks'?)" in stderr, app.output()
    assert stderr.count("warning") == 2, app.output()


def test_a_bad_value_of_a_declared_key_is_one_configuration_error_line(write_config, monkeypatch):
    monkeypatch.syspath_prepend(str(conftest.APPS))
    for key, value, said in [
        ("size", "11", "'11' is not a whole number from 1 to 10"),
        ("verbose", "maybe", "'maybe' is not a boolean"),
        ("ttl", "\x1b[2J" * 10_000, "'\\u{1b}[2J\\u{1b}[2J"),
    ]:
        path = write_config(plugins=f"process {DECLARED}", extra=f"[declared]\n{key} = {value}\n")
        text = conftest.refused_configuration(path)
        assert text.startswith(f"ispyd: {path}: [declared] {key}: {said}"), text
        assert "\x1b" not in text, text
