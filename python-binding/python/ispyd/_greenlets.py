"""The python plugin's ``greenlets`` command: every live greenlet's stack,
under gevent, eventlet or greenlet alone.

greenlet keeps no registry of its greenlets, so they are found as gevent's
own ``format_run_info`` finds them, among the objects the garbage collector
tracks. gevent's report leaves out the stacks of greenlets of threads other
than the caller's (ispyd's command runs on a thread of its own), which are
the ones that matter here: each suspended greenlet's stack is read from its
``gr_frame``, and a running one's is its thread's stack.

A greenlet belongs to the thread whose main greenlet is at the root of its
``parent`` chain; that thread is known from the requests the WSGI wrapper
records (each with its thread and greenlet) and from gevent's hubs (each
with its ``thread_ident``).
"""

from __future__ import annotations

import gc
import linecache
import sys
from typing import Any, Dict, List, Optional, Tuple

from ispyd import _native

#: How much of a greenlet's ``repr()`` is shown (gevent's include the
#: reprs of the arguments it was spawned with).
_REPR_CHARS = 200


def _frames(frame: Any) -> List[Dict[str, Any]]:
    """The stack ending at ``frame``, outermost first."""
    stack = []
    while frame is not None:
        code = frame.f_code
        line = frame.f_lineno
        source = linecache.getline(code.co_filename, line, frame.f_globals).strip() if line else ""
        stack.append({"file": code.co_filename, "line": line, "function": code.co_name, "source": source or None})
        frame = frame.f_back
    stack.reverse()
    return stack


def _summary(greenlet: Any) -> Dict[str, Any]:
    try:
        text = repr(greenlet)
    except Exception as err:  # noqa: BLE001 - a broken repr is not the report's failure
        text = f"<{type(greenlet).__name__} at {id(greenlet):#x}: repr() failed: {err}>"
    if len(text) > _REPR_CHARS:
        text = text[: _REPR_CHARS - 4] + " ...>"
    name = getattr(greenlet, "name", None)
    return {"id": id(greenlet), "repr": text, "name": name if isinstance(name, str) else None}


def _root(greenlet: Any) -> Any:
    seen = 0
    while greenlet.parent is not None and seen < 10_000:
        greenlet = greenlet.parent
        seen += 1
    return greenlet


def _spawned_at(greenlet: Any) -> Optional[List[Dict[str, Any]]]:
    """gevent's spawning stack of a ``gevent.Greenlet`` (a frame-like
    chain it keeps when ``gevent.config.track_greenlet_tree`` is on)."""
    stack = getattr(greenlet, "spawning_stack", None)
    if stack is None:
        return None
    try:
        return _frames(stack)
    except AttributeError:
        return None


def report(wants_data: bool) -> Tuple[str, Optional[Dict[str, Any]]]:
    """The command's text and, with ``wants_data``, its result."""
    module = sys.modules.get("greenlet")
    if module is None:
        return (
            "No greenlets: greenlet (what gevent and eventlet run on) is not imported in this process.\n",
            {"greenlets": [], "dead": 0},
        )
    greenlet_type = module.greenlet
    requests = {id(g): (number, text, thread) for number, text, thread, g in _native.greenlet_requests()}
    threads: Dict[int, int] = {}  # root greenlet id -> thread ident
    found = []
    dead = 0
    for obj in gc.get_objects():
        if not isinstance(obj, greenlet_type):
            continue
        if obj.dead:
            dead += 1
            continue
        found.append(obj)
    hub_type = getattr(sys.modules.get("gevent.hub"), "Hub", None)
    for greenlet in found:
        thread = requests.get(id(greenlet), (None, None, None))[2]
        if thread is None and hub_type is not None and isinstance(greenlet, hub_type):
            thread = getattr(greenlet, "thread_ident", None)
        if thread is not None:
            threads.setdefault(id(_root(greenlet)), thread)
    serving = _native.thread_ident()
    if found:
        # This thread's main greenlet (greenlet makes one if it has none).
        threads.setdefault(id(_root(module.getcurrent())), serving)
    current = sys._current_frames()

    # Each tree depth first, from its root: a main greenlet, or one whose
    # parent is finished.
    known = {id(greenlet) for greenlet in found}
    children: Dict[Optional[int], List[Any]] = {}
    for greenlet in found:
        parent = greenlet.parent
        key = id(parent) if parent is not None and id(parent) in known else None
        children.setdefault(key, []).append(greenlet)
    ordered: List[Any] = []
    # The trees of ispyd's thread last, as in 'threads'.
    roots = sorted(children.get(None, []), key=lambda root: threads.get(id(root)) == serving)
    waiting = list(reversed(roots))
    while waiting:
        greenlet = waiting.pop()
        ordered.append(greenlet)
        waiting.extend(reversed(children.get(id(greenlet), [])))

    entries = []
    for greenlet in ordered:
        entry = _summary(greenlet)
        root = _root(greenlet)
        thread = threads.get(id(root))
        frame = greenlet.gr_frame
        if not greenlet:
            state = "not started"
        elif frame is None:
            state = "running"
            frame = current.get(thread) if thread is not None else None
        else:
            state = "suspended"
        request = requests.get(id(greenlet))
        entry.update(
            state=state,
            main=greenlet.parent is None,
            parent=id(greenlet.parent) if greenlet.parent is not None else None,
            thread_id=thread,
            request=request[0] if request else None,
            frames=_frames(frame),
            spawned_at=_spawned_at(greenlet),
            request_text=request[1] if request else None,
        )
        entries.append(entry)
    del current

    lines = [f"# Greenlets: {len(entries)}" + (f" ({dead} finished, not shown)" if dead else "")]
    shown_thread: Any = object()
    for entry in entries:
        if entry["thread_id"] != shown_thread:
            shown_thread = entry["thread_id"]
            lines.append("")
            if shown_thread is None:
                lines.append("## Thread not known")
            else:
                mine = " (this ispyd session's thread)" if shown_thread == serving else ""
                lines.append(f"## Thread {shown_thread}{mine}")
        lines.append("")
        lines.append(f"# Greenlet: {entry['repr']}")
        state = entry["state"] + (", its thread's main greenlet" if entry["main"] else "")
        if entry["parent"] is not None:
            state += f"; parent {entry['parent']:#x}"
        lines.append(f"# State: {state}")
        if entry["request"] is not None:
            lines.append(f"# Request: {entry['request']} {entry['request_text']} (see 'wsgi requests')")
        for frame in entry["frames"]:
            lines.append(_frame_text(frame))
        if entry["state"] == "running" and not entry["frames"]:
            lines.append("(running now; its thread is not known, so neither is its stack)")
        if entry["spawned_at"]:
            lines.append("# Spawned at:")
            for frame in entry["spawned_at"]:
                lines.append(_frame_text(frame))
    for entry in entries:
        del entry["request_text"]
    text = "\n".join(lines) + "\n"
    return text, ({"greenlets": entries, "dead": dead} if wants_data else None)


def _frame_text(frame: Dict[str, Any]) -> str:
    text = f'File: "{frame["file"]}", line {frame["line"]}, in {frame["function"]}'
    if frame["source"]:
        text += f"\n  {frame['source']}"
    return text
