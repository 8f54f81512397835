"""The audit trail in a Python host: records reach the ``ispyd.audit``
logger of Python's ``logging``, wherever the application sends its logs."""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

import conftest
from conftest import WAIT, run_ispy, wait_until


def records(log: Path) -> list:
    return [line for line in log.read_text().splitlines() if line.startswith("ispyd.audit ")] if log.exists() else []


def admitted(address: str):
    """A connection that got a session (a prompt, not a refusal), or None
    while the sessions of a client that just left are still ending."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(WAIT)
    sock.connect(address)
    if b"already serving" in sock.recv(4096):
        sock.close()
        return None
    return sock


def test_a_console_session_and_a_refused_peer_are_recorded(write_config, start_app, workdir):
    app = start_app(write_config(console=True, max_sessions=2))
    log = workdir / "app.log"
    app.command(f"logging {log}", r"^LOGGING$")

    console = conftest.ConsoleClient(app.address)
    try:
        console.send("6 * 7")
        console.out.wait_for(r"^42$", "the console's answer")
        console.send("exit()", "exit")
        console.proc.stdin.close()
        assert console.proc.wait(timeout=WAIT) == 0, console.err.text()
    finally:
        console.kill()
    wait_until(lambda: any(" console [python:console] line: exit()" in r for r in records(log)),
               "the console's last line in the log")

    # Two sessions held open fill max_sessions = 2; a third peer is refused.
    held: list = []
    try:
        while len(held) < 2:
            held.append(wait_until(lambda: admitted(app.address), "a session to hold open"))
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as refused:
            refused.settimeout(WAIT)
            refused.connect(app.address)
            assert b"already serving 2 sessions" in refused.recv(4096)
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: any("connection refused" in r for r in records(log)), "the refusal in the log")
    lines = records(log)
    ran = next(r for r in lines if " ran python console " in r)
    session = ran.split()[3]
    opened = next((r for r in lines if f" session {session} opened: " in r), None)
    assert opened is not None, lines
    match = re.fullmatch(r"ispyd\.audit INFO session (\d+) opened: pid (\d+), uid (\d+), gid (\d+), (.*)", opened)
    assert match, opened
    assert int(match.group(2)) == console.proc.pid
    assert int(match.group(3)) == os.geteuid() and int(match.group(4)) == os.getegid()
    assert match.group(5) == app.address

    mine = [r for r in lines if r.startswith(f"ispyd.audit INFO session {session} ")]
    assert f"ispyd.audit INFO session {session} ran python console [python:console]: " in mine, lines
    typed = [r.split(" line: ", 1)[1] for r in mine if " console [python:console] line: " in r]
    assert "6 * 7" in typed and "exit()" in typed, lines
    assert mine[-1].startswith(f"ispyd.audit INFO session {session} closed: "), lines

    refusal = [r for r in lines if "connection refused" in r]
    assert refusal == [
        f"ispyd.audit WARNING connection refused: pid {os.getpid()}, uid {os.geteuid()}, gid {os.getegid()}, "
        f"{app.address}: already serving 2 sessions (max_sessions = 2); try again when one ends."
    ], lines
    # Ungated commands ('shell python') leave no record of their own.
    assert not [r for r in mine if "shell python" in r], lines


def test_a_burst_of_connections_loses_no_record(write_config, start_app, workdir):
    # Records are handed to Python in batches: a burst far larger than the
    # queue (1,024) must still arrive whole, each session opened and closed.
    app = start_app(write_config(max_sessions=64))
    log = workdir / "app.log"
    app.command(f"logging {log}", r"^LOGGING$")
    sessions = 0
    while sessions < 1500:
        sock = admitted(app.address)
        if sock is not None:
            sessions += 1
            sock.close()
    ended = lambda: sum(" closed: " in r for r in records(log))
    dropped = lambda: [r for r in records(log) if "dropped" in r]
    wait_until(lambda: ended() >= sessions or dropped(),
               f"{sessions} sessions closed in the log (or a count of dropped records)")
    lines = records(log)
    assert sum(" opened: " in r for r in lines) == sessions, len(lines)
    assert not dropped(), dropped()
    assert ended() == sessions


def test_environ_masks_secrets_and_reveal_is_recorded(write_config, start_app, workdir):
    app = start_app(
        write_config(),
        DEMO_API_TOKEN="tok-7f3a9c",
        DATABASE_URL="postgres://app:pw-4f1e@db.internal/app",
        DEMO_PLAIN="nothing to hide",
    )
    log = workdir / "app.log"
    app.command(f"logging {log}", r"^LOGGING$")

    masked = run_ispy(app.address, ["connect", "shell python", "environ"])
    assert masked.code == 0, masked
    assert "tok-7f3a9c" not in masked.stdout and "pw-4f1e" not in masked.stdout, masked.stdout
    assert "DEMO_API_TOKEN = ******** (masked)" in masked.stdout.splitlines(), masked.stdout
    assert "DATABASE_URL = 'postgres://app:********@db.internal/app' (password masked)" in masked.stdout
    assert "DEMO_PLAIN = 'nothing to hide'" in masked.stdout
    assert "'environ --reveal' shows them." in masked.stdout
    assert not [r for r in records(log) if "--reveal" in r]

    data = run_ispy(app.address, "", conftest.WAIT, "--json", "-c", "shell python", "-c", "environ")
    environ = json.loads(data.stdout.splitlines()[-1])["data"]
    assert environ["environ"]["DEMO_API_TOKEN"] == "********"
    assert environ["masked"] == ["DATABASE_URL", "DEMO_API_TOKEN"]

    revealed = run_ispy(app.address, ["connect", "shell python", "environ --reveal"])
    assert "DEMO_API_TOKEN = 'tok-7f3a9c'" in revealed.stdout.splitlines(), revealed.stdout
    assert "DATABASE_URL = 'postgres://app:pw-4f1e@db.internal/app'" in revealed.stdout

    wait_until(lambda: [r for r in records(log) if "--reveal" in r], "the reveal in the log")
    reveal = [r for r in records(log) if "--reveal" in r]
    assert len(reveal) == 1 and re.fullmatch(
        r"ispyd\.audit INFO session \d+ ran python environ --reveal: every value of os\.environ", reveal[0]
    ), reveal

    wrong = run_ispy(app.address, ["connect", "shell python", "environ --everything"])
    assert "*** Usage: environ [--reveal] (not '--everything')" in wrong.stdout + wrong.stderr, wrong
