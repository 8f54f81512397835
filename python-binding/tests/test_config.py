"""A missing or wrong configuration raises ispyd.ConfigurationError at
start-up, naming the file, the section and the key, and starts nothing."""

from __future__ import annotations

import pytest

import ispyd
from ispyd.manager import ShellManager


def start_with(path):
    with pytest.raises(ispyd.ConfigurationError) as raised:
        ShellManager(path)
    return str(raised.value)


def test_configuration_error_is_an_ispyd_error():
    assert issubclass(ispyd.ConfigurationError, ispyd.IspydError)
    assert issubclass(ispyd.IspydError, Exception)


def test_missing_file_is_named(workdir):
    message = start_with(workdir / "nowhere.ini")
    assert str(workdir / "nowhere.ini") in message


def test_missing_listen_names_section_and_key(write_config):
    path = write_config("[ispyd]\nplugins = %(builtins)s\n")
    message = start_with(path)
    assert str(path) in message and "[ispyd]" in message and "listen" in message, message


def test_missing_ispyd_section_is_named(write_config):
    path = write_config("[python:console]\nenabled = true\n")
    message = start_with(path)
    assert str(path) in message and "[ispyd]" in message, message


def test_bad_number_names_key_and_value(write_config, workdir):
    path = write_config(max_sessions="lots")
    message = start_with(path)
    assert str(path) in message and "[ispyd]" in message, message
    assert "max_sessions" in message and "'lots'" in message, message


def test_relative_listen_path_is_rejected(write_config):
    path = write_config("[ispyd]\nlisten = ispyd.sock\n")
    message = start_with(path)
    assert str(path) in message and "[ispyd]" in message and "listen" in message, message


def test_bad_boolean_in_console_section_names_it(write_config):
    path = write_config(extra="[python:console]\nenabled = maybe\n")
    message = start_with(path)
    assert str(path) in message, message
    assert "[python:console]" in message and "enabled" in message and "'maybe'" in message, message


def test_bad_configuration_leaves_no_socket(write_config, workdir):
    path = write_config(max_sessions="0")
    start_with(path)
    assert list(workdir.glob("*.sock")) == []


def test_a_typo_of_listen_is_pointed_out(write_config):
    path = write_config("[ispyd]\nlisen = /tmp/ispyd-%(pid)s.sock\n")
    message = start_with(path)
    assert "[ispyd] listen: this key is required" in message, message
    assert "'lisen' (did you mean 'listen'?)" in message, message


def test_a_plugin_that_is_no_plugin_name_is_one_line_not_a_traceback(write_config, workdir):
    path = write_config(plugins="process maybe")
    message = start_with(path)
    assert message.count("\n") == 0, message
    assert f"{path}: [ispyd] plugins: 'maybe' is neither a builtin" in message, message
    assert "Traceback" not in message
    assert list(workdir.glob("*.sock")) == []


def test_a_huge_generated_file_is_reported_in_a_few_short_lines(write_config, capfd):
    sections = "".join(f"[s{n}]\nenabled = true\n" for n in range(1000))
    path = write_config(plugins="process", extra=sections)
    manager = ShellManager(path)
    try:
        warnings = manager.warnings
    finally:
        manager.shutdown()
    assert len(warnings) == 11, warnings
    assert warnings[-1].endswith("and 990 more warnings like these, not shown"), warnings[-1]
    assert sum(len(w) for w in warnings) < 5000
    message = start_with(write_config(plugins="x" * 100_000))
    assert len(message) < 1000, len(message)
    assert "… (99800 more characters)" in message, message[:300]
