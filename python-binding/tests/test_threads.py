"""The python plugin's ``threads`` command, asked through the real ``ispy``
of a real process whose threads wait in known places, one of them spinning
in pure Python.

The app is written below; every wait is bounded.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator, List

import pytest

from conftest import ispy_command, wait_until, with_engine

#: The longest any single wait may take.
WAIT = 30.0

APP = textwrap.dedent(
    """
    import sys
    import threading
    from pathlib import Path

    from ispyd.manager import ShellManager

    def handle_request(arrived, stop):
        arrived.set()
        stop.wait()

    def nested(level, arrived, stop):
        if level:
            return nested(level - 1, arrived, stop)
        handle_request(arrived, stop)

    def spin(spinning):
        spinning.set()
        while True:
            pass

    config, ready = sys.argv[1], Path(sys.argv[2])
    manager = ShellManager(config)
    stop, arrived, spinning = threading.Event(), threading.Event(), threading.Event()
    threading.Thread(
        target=nested, args=(3, arrived, stop), name="request-worker", daemon=True
    ).start()
    threading.Thread(target=spin, args=(spinning,), name="busy-loop", daemon=True).start()
    if arrived.wait(30) and spinning.wait(30):
        ready.write_text(manager.address)
    sys.stdin.read()  # until the test closes stdin
    stop.set()
    manager.shutdown()
    """
)


@pytest.fixture(scope="module")
def threads_config(tmp_path_factory) -> Iterator[Path]:
    """The configuration of a running app with a named thread four calls
    deep in ``Event.wait()`` and another spinning in ``while True: pass``."""
    folder = tmp_path_factory.mktemp("threads")
    config = folder / "ispyd.ini"
    config.write_text(with_engine(f"[ispyd]\nlisten = {folder}/ispyd-%(pid)s.sock\n"))
    (folder / "app.py").write_text(APP)
    ready = folder / "ready"
    app = subprocess.Popen(
        [sys.executable, str(folder / "app.py"), str(config), str(ready)],
        cwd=folder,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until(
            lambda: ready.exists() or app.poll() is not None,
            "the app to start its threads and its shell",
        )
        if not ready.exists():
            pytest.fail(f"the app exited: {app.communicate()[0].decode(errors='replace')}")
        yield config
    finally:
        try:
            os.killpg(app.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        app.wait(timeout=WAIT)


def ispy(config: Path, commands: str) -> str:
    command = ispy_command()
    done = subprocess.run(
        [command, str(config)],
        input=commands,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def dump(threads_config: Path) -> str:
    return ispy(threads_config, "connect\nshell python\nthreads\n")


def sections(dump: str) -> List[str]:
    """The dump's per-thread sections, each starting with its ThreadID."""
    return ["# ThreadID:" + part for part in dump.split("\n# ThreadID:")[1:]]


def section_named(dump: str, name: str) -> str:
    found = [s for s in sections(dump) if re.search(rf"^# Name: {re.escape(name)}$", s, re.M)]
    assert len(found) == 1, dump
    return found[0]


def test_threads_counts_the_threads_it_lists(dump: str) -> None:
    count = re.search(r"^# Threads: (\d+)$", dump, re.M)
    assert count, dump
    assert int(count.group(1)) == len(sections(dump)) >= 4, dump


def test_threads_shows_a_named_threads_stack_outermost_first_with_source(dump: str) -> None:
    worker = section_named(dump, "request-worker")
    frames = re.findall(r'^File: "([^"]*)", line (\d+), in (\S+)$', worker, re.M)
    functions = [function for _, _, function in frames]
    app_frames = [f for f in functions if f in ("nested", "handle_request")]
    assert app_frames == ["nested"] * 4 + ["handle_request"], worker
    assert functions[0] == "_bootstrap", worker
    assert functions.index("handle_request") < functions.index("wait"), worker
    assert "\n  stop.wait()\n" in worker, worker
    assert "\n  return nested(level - 1, arrived, stop)\n" in worker, worker


def test_threads_answers_while_another_thread_spins_in_pure_python(dump: str) -> None:
    spinning = section_named(dump, "busy-loop")
    assert re.search(r'^File: ".*app\.py", line \d+, in spin$', spinning, re.M), spinning


def test_threads_marks_this_sessions_thread_and_lists_it_last(dump: str) -> None:
    marked = [s for s in sections(dump) if "this ispyd session's thread)" in s.splitlines()[1]]
    assert len(marked) == 1, dump
    assert sections(dump)[-1] == marked[0], dump
    assert re.search(r"^File: .*, in do_threads$", marked[0], re.M), dump


def test_threads_lists_the_main_thread_first(dump: str) -> None:
    assert sections(dump)[0].splitlines()[1] == "# Name: MainThread", dump


def test_each_threading_thread_shows_its_native_id_to_match_process_threads(threads_config: Path, dump: str) -> None:
    """A stack can be matched with ``process threads`` (OS thread ids and
    CPU time): the header names the native id."""
    main = sections(dump)[0].splitlines()
    native = int(main[2].removeprefix("# Native ID: "))
    process_threads = ispy(threads_config, "connect\nshell process\nthreads\n")
    tids = {int(line.split()[0]): line.split()[1] for line in process_threads.splitlines()[1:-1]}
    assert native in tids, (native, process_threads)
    # The main thread's OS id is the process id, which `process pid` gives.
    assert native == int(ispy(threads_config, "connect\nshell process\npid\n").strip())
    for section in sections(dump):
        lines = section.splitlines()
        if "not a threading.Thread" not in lines[1]:
            assert lines[2].startswith("# Native ID: "), section


def test_every_os_thread_is_listed_with_its_python_stack_or_as_having_none(threads_config: Path) -> None:
    pid = int(ispy(threads_config, "connect\nshell process\npid\n").strip())
    before = set(os.listdir(f"/proc/{pid}/task"))
    done = subprocess.run([ispy_command(), "--json", str(threads_config), "-c", "shell python", "-c", "threads"],
                          capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 0, done
    data = json.loads(done.stdout.splitlines()[-1])["data"]
    after = set(os.listdir(f"/proc/{pid}/task"))
    with_python = [thread["native_id"] for thread in data["threads"]]
    without = [thread["native_id"] for thread in data["without_python"]]
    # ispyd knows its own thread's native id, as threading knows its threads'.
    assert None not in with_python, data["threads"]
    assert not set(with_python) & set(without), data
    # The threads that lived through the command are each in one list.
    assert {int(tid) for tid in before & after} <= set(with_python) | set(without), (before, after, data)
    names = {thread["name"] for thread in data["without_python"]}
    assert names & {"ispyd-listener", "ispyd-loop"}, names


def test_every_stack_of_many_threads_of_different_depths_is_its_own() -> None:
    # More threads than the dump walks side by side, each waiting at a
    # different depth: every thread's File: lines are exactly its own
    # stack's, as traceback.extract_stack reads it.
    import threading
    import traceback

    from ispyd import _native

    release, started = threading.Event(), []

    def nested(level: int, arrived: threading.Event) -> None:
        if level:
            return nested(level - 1, arrived)
        arrived.set()
        release.wait(WAIT)

    threads = []
    for i in range(53):
        arrived = threading.Event()
        thread = threading.Thread(target=nested, args=(i * 7 % 23, arrived), name=f"depth-{i}", daemon=True)
        thread.start()
        threads.append(thread)
        started.append(arrived)
    try:
        assert all(arrived.wait(WAIT) for arrived in started)
        # Settled: every thread inside Condition.wait.
        wait_code = threading.Condition.wait.__code__
        wait_until(
            lambda: all(sys._current_frames()[t.ident].f_code is wait_code for t in threads),
            "every thread to wait",
        )
        frames = sys._current_frames()
        dump = _native.format_threads(threading.get_ident())
        for i, thread in enumerate(threads):
            section = section_named(dump, f"depth-{i}")
            listed = re.findall(r'^File: "(.*)", line (\d+), in (\S+)$', section, re.M)
            expected = [
                (summary.filename, str(summary.lineno), summary.name)
                for summary in traceback.extract_stack(frames[thread.ident])
            ]
            assert listed == expected, (i, section)
            assert [name for _, _, name in listed].count("nested") == i * 7 % 23 + 1
    finally:
        release.set()
        for thread in threads:
            thread.join(WAIT)


def test_a_thread_class_with_its_own_name_property_is_named_by_it() -> None:
    import threading

    from ispyd import _native

    release = threading.Event()

    class Renamed(threading.Thread):
        @property
        def name(self) -> str:
            return "renamed-by-property"

        @name.setter
        def name(self, value: str) -> None:
            pass

    class Plain(threading.Thread):
        pass

    threads = [
        Renamed(target=release.wait, args=(WAIT,), daemon=True),
        Plain(target=release.wait, args=(WAIT,), name="plain-subclass", daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        dump = _native.format_threads(threading.get_ident())
        renamed = section_named(dump, "renamed-by-property")
        assert f"# Native ID: {threads[0].native_id}\n" in renamed, renamed
        plain = section_named(dump, "plain-subclass")
        assert f"# Native ID: {threads[1].native_id}\n" in plain, plain
    finally:
        release.set()
        for thread in threads:
            thread.join(WAIT)


def test_in_a_process_of_many_threads_those_without_python_are_counted_unless_asked() -> None:
    # Listing them reads /proc/self/task, which costs as much as the dump
    # itself at a thousand threads: above 256 they are counted.
    import threading

    from ispyd import _native

    release = threading.Event()
    threads = [threading.Thread(target=release.wait, args=(WAIT,), daemon=True) for _ in range(300)]
    for thread in threads:
        thread.start()
    try:
        serving = threading.get_ident()
        text, data = _native.threads_report(serving, True, True, False)
        os_threads = len(os.listdir("/proc/self/task"))
        counted = data_of(data)["without_python_count"]
        assert data_of(data)["without_python"] is None
        assert counted == os_threads - len(data_of(data)["threads"]), (counted, os_threads)
        assert f"# OS threads without a Python stack now: {counted}, not listed in a process of more than 256 threads" in str(text)
        text, data = _native.threads_report(serving, True, True, True)
        listed = data_of(data)["without_python"]
        assert listed is not None and len(listed) == data_of(data)["without_python_count"]
        assert not {t["native_id"] for t in listed} & {t["native_id"] for t in data_of(data)["threads"]}
    finally:
        release.set()
        for thread in threads:
            thread.join(WAIT)


def data_of(data) -> dict:
    return json.loads(str(data))
