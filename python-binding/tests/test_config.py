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
