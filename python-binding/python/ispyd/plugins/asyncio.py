"""The ``asyncio`` plugin: every task of every running event loop in the
process, where each one is waiting, and (when enabled) a way to cancel one.

``tasks`` lists them as aiomonitor's ``ps`` does, with each task's await
stack; ``where TASK`` shows one task's whole stack with source lines;
``cancel TASK`` cancels one (off unless ``[asyncio:cancel] enabled =
true``).

The loops run on other threads, so this plugin never touches their state:
it reads the tasks (``asyncio``'s own registry of tasks, copied the way
``asyncio.all_tasks`` copies it), walks each task's chain of coroutines
through their frames, and asks a loop to cancel a task with
``loop.call_soon_threadsafe``, the one call asyncio allows from another
thread.
"""

from __future__ import annotations

import fnmatch
import functools
import linecache
import sys
import threading
import time
import weakref
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

from ispyd import _native
from ispyd._support import CommandError

#: ispyd's own short number for each task it has listed, and when it first
#: saw it: tasks have no creation time of their own.
_seen: "weakref.WeakKeyDictionary[Any, Tuple[int, float]]" = weakref.WeakKeyDictionary()
_seen_lock = _native.Lock()
_last_number = 0

def _asyncio() -> Any:
    """The asyncio module if the program imported it: a program that did
    not has no tasks, and need not pay for importing it."""
    return sys.modules.get("asyncio")


#: How long ``cancel`` waits to see the task end.
CANCEL_WAIT = 2.0


def _copy(tasks: Iterable[Any]) -> List[Any]:
    # The loops add and remove tasks while this copies: retry, as
    # asyncio.all_tasks() does.
    for _ in range(1000):
        try:
            return list(tasks)
        except RuntimeError:
            continue
    return []


def every_task() -> List[Any]:
    """Every task of every loop in the process, not done or done, in the
    order ispyd first saw them."""
    asyncio = _asyncio()
    if asyncio is None:
        return []
    found: Dict[int, "asyncio.Task"] = {}
    registries = [getattr(asyncio.tasks, name, None) for name in ("_all_tasks", "_scheduled_tasks", "_eager_tasks")]
    for registry in registries:
        if registry is not None:
            for task in _copy(registry):
                found[id(task)] = task
    tasks = list(found.values())
    global _last_number
    now = time.monotonic()
    with _seen_lock:
        for task in tasks:
            if task not in _seen:
                _last_number += 1
                _seen[task] = (_last_number, now)
        return sorted(tasks, key=lambda task: _seen[task][0])


def _chain(task: Any) -> Iterator[Any]:
    """The task's coroutine and each awaitable it awaits, outermost first
    (what ``Task.get_stack()`` walks)."""
    awaited = task.get_coro()
    for _ in range(1000):
        if awaited is None:
            return
        yield awaited
        awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)


def tasks_by_coroutine(tasks: Optional[List[Any]] = None) -> Dict[int, Any]:
    """``id()`` of every coroutine in a task's await chain: that task. (The
    ASGI wrapper records a request's coroutine; this finds its task.)"""
    return {id(awaited): task for task in (every_task() if tasks is None else tasks) for awaited in _chain(task)}


def _request_tasks(tasks: List[Any]) -> List[Tuple[int, str, float, Any, Any]]:
    """(number, "METHOD path", age, task, loop thread) of each ASGI request
    served by one of ``tasks``."""
    by_coroutine = tasks_by_coroutine(tasks)
    found = []
    for number, text, age, coroutine, thread in _native.asgi_requests():
        task = by_coroutine.get(id(coroutine))
        if task is not None:
            found.append((number, text, age, task, thread))
    return found


def coroutine_chain(task: Any) -> List[Any]:
    """The frames of the task's await chain, outermost first. An awaitable
    without a frame of its own still says what it awaits."""
    frames = (getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None) for awaited in _chain(task))
    return [frame for frame in frames if frame is not None]


def _state(task: Any) -> str:
    if task.done():
        if task.cancelled():
            return "cancelled"
        return "failed" if task.exception() is not None else "done"
    loop = task.get_loop()
    current = getattr(_asyncio().tasks, "_current_tasks", {}).get(loop)
    return "running" if current is task else "pending"


def _loop_thread(task: Any) -> Tuple[Optional[int], str]:
    ident = getattr(task.get_loop(), "_thread_id", None)
    if ident is None:
        return None, "(not running)"
    thread = threading._active.get(ident)  # type: ignore[attr-defined]
    return ident, thread.name if thread is not None else str(ident)


def _coroutine_name(task: Any) -> str:
    coro = task.get_coro()
    return getattr(coro, "__qualname__", None) or type(coro).__name__


def _frame_data(frame: Any) -> Dict[str, Any]:
    code = frame.f_code
    line = frame.f_lineno
    source = linecache.getline(code.co_filename, line, frame.f_globals).strip() or None
    return {"file": code.co_filename, "line": line, "function": code.co_name, "source": source}


def _human(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 600 else f"{seconds / 60:.0f} min"


class AsyncioPlugin:
    """asyncio: every task of every running event loop, where each waits"""

    name = "asyncio"
    gated_commands = {"cancel": "asyncio:cancel"}
    stdout: Any = sys.stdout
    wants_data = False

    def _print(self, *values: Any) -> None:
        print(*values, file=self.stdout)

    def _describe(self) -> List[Dict[str, Any]]:
        tasks = every_task()
        requests = {id(task): (number, text, age) for number, text, age, task, _ in _request_tasks(tasks)}
        now = time.monotonic()
        described = []
        for task in tasks:
            number, first_seen = _seen.get(task, (0, now))
            first_seen = min(first_seen, now)
            ident, thread = _loop_thread(task)
            request = requests.get(id(task))
            described.append(
                {
                    "task": task,
                    "id": number,
                    "name": task.get_name(),
                    "state": _state(task),
                    "coroutine": _coroutine_name(task),
                    "loop_thread": {"id": ident, "name": thread},
                    "age_s": request[2] if request else None,
                    "seen_s": now - first_seen,
                    "request": {"id": request[0], "request": request[1]} if request else None,
                    "frames": [_frame_data(frame) for frame in coroutine_chain(task)],
                }
            )
        return described

    def do_tasks(self, line: str) -> Dict[str, Any]:
        """tasks [GLOB]: every asyncio task in the process, with its await stack.

        For each task: ispyd's number for it (for 'where' and 'cancel'),
        its name, state, age, the thread of its event loop, its coroutine,
        the request it serves (ASGI), and where it waits, outermost call
        first. A task's age is its request's when it serves one; otherwise
        '>= N s' is how long ispyd has known it (asyncio keeps no creation
        time). GLOB selects by task or coroutine name ('Task-*', '*handler')."""
        pattern = line.strip()
        described = [
            task
            for task in self._describe()
            if not pattern or fnmatch.fnmatchcase(task["name"], pattern) or fnmatch.fnmatchcase(task["coroutine"], pattern)
        ]
        if not described:
            self._print("No asyncio tasks." if not pattern else f"No asyncio task matches {pattern!r}.")
        for task in described:
            age = _human(task["age_s"]) if task["age_s"] is not None else ">= " + _human(task["seen_s"])
            self._print(
                f"{task['id']:>4}  {task['name']}  {task['state']}  {age}  loop thread {task['loop_thread']['name']}"
                f"  coroutine {task['coroutine']}"
            )
            if task["request"]:
                self._print(f"      serving {task['request']['request']} (request {task['request']['id']})")
            for frame in task["frames"]:
                self._print(f"      {frame['file']}:{frame['line']} in {frame['function']}")
        return {"tasks": [{key: value for key, value in task.items() if key != "task"} for task in described]}

    def _find(self, line: str) -> Dict[str, Any]:
        wanted = line.strip()
        if not wanted:
            raise CommandError("Usage: a task's number or name, as 'tasks' lists them (where 3, where Task-7)")
        described = self._describe()
        matches = [task for task in described if str(task["id"]) == wanted or task["name"] == wanted]
        if not matches:
            raise CommandError(f"No asyncio task {wanted!r}: 'tasks' lists them with their numbers")
        if len(matches) > 1:
            numbers = ", ".join(str(task["id"]) for task in matches)
            raise CommandError(f"{len(matches)} tasks are named {wanted!r} (numbers {numbers}): give the number")
        return matches[0]

    def do_where(self, line: str) -> Dict[str, Any]:
        """where TASK: one task's whole await stack, outermost call first,
        with source lines. TASK is its number in 'tasks', or its name."""
        task = self._find(line)
        self._print(
            f"Task {task['id']} ({task['name']}, {task['state']}, coroutine {task['coroutine']}, "
            f"loop thread {task['loop_thread']['name']}):"
        )
        for frame in task["frames"]:
            self._print(f'  File "{frame["file"]}", line {frame["line"]}, in {frame["function"]}')
            if frame["source"]:
                self._print(f"    {frame['source']}")
        if not task["frames"]:
            self._print("  (no frame: the task has not started, or has ended)")
        graph = getattr(_asyncio(), "format_call_graph", None)
        if graph is not None:
            self._print(graph(task["task"]))
        return {key: value for key, value in task.items() if key != "task"}

    def do_cancel(self, line: str) -> Dict[str, Any]:
        """cancel TASK: cancels one task (CancelledError at its next await),
        asking its event loop to do it. Off unless enabled in
        [asyncio:cancel]."""
        task = self._find(line)
        handle = task["task"]
        if handle.done():
            raise CommandError(f"Task {task['id']} ({task['name']}) has already ended ({task['state']})")
        loop = handle.get_loop()
        if task["request"]:
            # A request's task: the wrapper turns the cancellation into an
            # error the server answers, so that the client is not left
            # hanging on its connection.
            from ispyd.plugins.asgi import cancel_request

            cancel = functools.partial(cancel_request, handle, task["request"]["id"])
        else:
            cancel = handle.cancel
        try:
            loop.call_soon_threadsafe(cancel)
        except RuntimeError as err:  # the loop is closed
            raise CommandError(f"Task {task['id']}'s event loop cannot take the request: {err}") from None
        deadline = time.monotonic() + CANCEL_WAIT
        while not handle.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        state = _state(handle)
        if handle.done():
            self._print(f"Task {task['id']} ({task['name']}) is {state}.")
        else:
            self._print(
                f"Asked task {task['id']} ({task['name']})'s loop to cancel it; after {CANCEL_WAIT:g} s it is "
                f"still {state} (the loop may be busy, or the task may catch CancelledError)."
            )
        return {"id": task["id"], "name": task["name"], "state": state, "done": handle.done()}
