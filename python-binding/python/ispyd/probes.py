"""Exception probes: wrappers put in place of functions and methods, which
record the exceptions raised within them, and the registry of those probes
and of what they caught. The ``debugger`` plugin's commands are built on
this module; ``ispyd.postmortem`` runs pdb on what it holds.

Theory of operation
===================

Probes. ``insert('MODULE:Class.method')`` replaces the attribute where it
is defined (the module's or the class's own ``__dict__``) with a wrapper
made by ``functools.wraps``. The wrapper calls the original; when an
``Exception`` leaves it, the wrapper records it and re-raises the very same
object. Static and class methods are unwrapped, their function wrapped and
re-wrapped as they were. ``remove`` puts back the object that was there,
itself, not a copy.

Shared state. Plugin commands run on shallow copies of the plugin, one per
call, from any session's thread. So probes and what they caught live here,
at module level, behind one lock: every session sees the same probes.
Nothing that can run the application's code (``str()`` of its exception,
``setattr`` on its classes, dropping a traceback, which runs its frames'
finalizers) happens while the lock is held: entries are taken out or copied
under it, and used or dropped after.

Captures. A probe keeps only its last exception, and at most
``max_tracebacks`` probes hold one: a capture beyond that drops the oldest.
A capture holds the exception and a traceback from the thread's first frame
to the one that raised (probes' own frames left out), so ``print`` and pdb
show the whole call path as it was when the exception left the probed
function. Holding it keeps those frames and their locals alive: that is
what post-mortem debugging needs, and why it is bounded.
"""

from __future__ import annotations

import collections
import functools
import gc
import importlib
import sys
import threading
import time
import traceback
import types
from typing import Any, Dict, List, Optional, Tuple

from ispyd import _native

#: The default of ``[debugger] max_tracebacks``.
DEFAULT_MAX_TRACEBACKS = 100

USAGE = "insert MODULE:FUNCTION, or insert MODULE:Class.method"


class ProbeError(Exception):
    """What was asked cannot be done; the message says why, for the user."""


class Capture:
    """One exception a probe caught, with the stack it left."""

    __slots__ = ("exc_type", "value", "tb", "when", "thread")

    def __init__(self, value: BaseException, tb: Optional[types.TracebackType]) -> None:
        self.exc_type = type(value)
        self.value = value
        self.tb = tb
        self.when = time.time()
        self.thread = threading.current_thread().name

    def summary(self) -> str:
        """``Type: message`` on one line, shortened."""
        text = traceback.format_exception_only(self.exc_type, self.value)[-1].strip()
        text = " ".join(text.split())
        return text if len(text) <= 160 else text[:157] + "..."

    def time_text(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.when))

    def format(self) -> str:
        """The traceback as Python prints it, with source lines."""
        return "".join(traceback.format_exception(self.exc_type, self.value, self.tb))


class Probe:
    """A probe in place: where it is, what was there, what replaced it."""

    def __init__(self, name: str, owner: Any, attribute: str, original: Any, kind: str) -> None:
        self.name = name
        self.owner = owner
        self.attribute = attribute
        self.original = original
        self.kind = kind
        self.installed: Any = None
        self.caught = 0
        #: Framework tables that held their own reference to the original
        #: (a Flask app's ``view_functions``), probed too: (table, key, what).
        self.tables: List[Tuple[Dict[Any, Any], Any, str]] = []


_lock = _native.Lock()
_probes: Dict[str, Probe] = {}
#: Captures by probe name, oldest first.
_captures: "collections.OrderedDict[str, Capture]" = collections.OrderedDict()
#: How many captures were dropped to keep within max_tracebacks.
_dropped = 0
_max_tracebacks = DEFAULT_MAX_TRACEBACKS


# ---------------------------------------------------------------------------
# Capturing


def _is_probe_frame(frame: types.FrameType) -> bool:
    return frame.f_code.co_name == "probe_wrapper" and frame.f_globals is globals()


def _stack(tb: Optional[types.TracebackType]) -> Optional[types.TracebackType]:
    """The traceback of an exception caught in a probe's wrapper, from the
    thread's first frame to the one that raised, without probes' own
    frames. The callers' line numbers are those of this moment."""
    if tb is None:
        return None
    entries = []
    frame = tb.tb_frame.f_back
    while frame is not None:
        entries.append((frame, frame.f_lasti, frame.f_lineno or 0))
        frame = frame.f_back
    entries.reverse()
    inner = tb.tb_next
    while inner is not None:
        entries.append((inner.tb_frame, inner.tb_lasti, inner.tb_lineno))
        inner = inner.tb_next
    head = None
    for frame, lasti, lineno in reversed(entries):
        if not _is_probe_frame(frame):
            head = types.TracebackType(head, frame, lasti, lineno)
    return head


def _seen_inside(stack: Optional[types.TracebackType], tb: Optional[types.TracebackType]) -> bool:
    """Whether ``stack`` runs through the frame of the call a probe's
    wrapper made (``tb`` being the traceback as the wrapper caught it)."""
    inner = tb.tb_next if tb is not None else None
    if inner is None:
        return False
    frame = inner.tb_frame
    while stack is not None:
        if stack.tb_frame is frame:
            return True
        stack = stack.tb_next
    return False


def _capture(probe: Probe, exc: BaseException) -> None:
    """Records ``exc`` for ``probe``. Never raises: the application's
    exception must go on unchanged."""
    global _dropped
    try:
        with _lock:
            held = _captures.get(probe.name)
        if held is not None and held.value is exc and _seen_inside(held.tb, exc.__traceback__):
            # A recursive call of the probed function, seen again on its
            # way out: the innermost call's capture already has it all.
            return
        capture = Capture(exc, _stack(exc.__traceback__))
        dropped: List[Capture] = []
        with _lock:
            if _probes.get(probe.name) is not probe:
                return  # removed meanwhile
            probe.caught += 1
            previous = _captures.pop(probe.name, None)
            if previous is not None:
                dropped.append(previous)
            _captures[probe.name] = capture
            while len(_captures) > _max_tracebacks:
                dropped.append(_captures.popitem(last=False)[1])
                _dropped += 1
        # `dropped` (and the frames it holds) goes here, outside the lock.
    except Exception:  # noqa: BLE001 - see the docstring
        pass


def _make_wrapper(probe: Probe, func: Any) -> Any:
    """The probe's wrapper around ``func``: same name, docstring,
    signature, ``__wrapped__``; generators and coroutines stay so."""
    import inspect  # here: only inserting a probe needs it

    if inspect.iscoroutinefunction(func):

        async def probe_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await func(*args, **kwargs)
            except Exception as exc:
                _capture(probe, exc)
                raise

    elif inspect.isgeneratorfunction(func):

        def probe_wrapper(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            try:
                return (yield from func(*args, **kwargs))
            except Exception as exc:
                _capture(probe, exc)
                raise

    else:

        def probe_wrapper(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            try:
                return func(*args, **kwargs)
            except Exception as exc:
                _capture(probe, exc)
                raise

    wrapper = functools.wraps(func)(probe_wrapper)
    setattr(wrapper, "__ispyd_probe__", probe.name)
    return wrapper


# ---------------------------------------------------------------------------
# Finding what to probe


def _a(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def _resolve(target: str) -> Probe:
    """Finds the attribute ``target`` names, checks it can be probed, and
    returns a probe for it (not yet installed)."""
    import inspect  # here: only inserting a probe needs it

    module_name, sep, path = target.partition(":")
    if not sep:
        raise ProbeError(
            f"'{target}' is not MODULE:FUNCTION or MODULE:Class.method: a ':' separates "
            "the module from what is in it (e.g. 'insert myapp.views:handler')."
        )
    if not module_name or not all(part.isidentifier() for part in module_name.split(".")):
        raise ProbeError(f"'{module_name}' (before the ':') is not a module name. Usage: {USAGE}")
    parts = path.split(".")
    if not path or not all(part.isidentifier() for part in parts):
        raise ProbeError(f"'{path}' (after the ':') is not a name or a dotted path. Usage: {USAGE}")
    if module_name == "ispyd" or module_name.startswith("ispyd."):
        raise ProbeError("ispyd's own code cannot be probed.")
    name = f"{module_name}:{path}"

    try:
        owner: Any = importlib.import_module(module_name)
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # noqa: BLE001 - an import can raise anything
        raise ProbeError(f"Cannot import module '{module_name}': {type(err).__name__}: {err}") from None

    # Walk to the owner of the last part: 'mod:Outer.Inner.method'.
    where = f"Module '{module_name}'"
    for index, part in enumerate(parts[:-1]):
        try:
            owner = getattr(owner, part)
        except AttributeError:
            raise ProbeError(f"{where} has no attribute '{part}' (looking for '{name}').") from None
        where = f"'{module_name}:{'.'.join(parts[: index + 1])}'"

    attribute = parts[-1]
    if isinstance(owner, type):
        defined_in = next((klass for klass in owner.__mro__ if attribute in vars(klass)), None)
        if defined_in is None:
            if hasattr(owner, attribute):
                raise ProbeError(
                    f"'{name}' is computed on lookup (by a metaclass?), not defined in a class: "
                    "it cannot be replaced by a probe."
                )
            raise ProbeError(f"{where} has no attribute '{attribute}'.")
        if defined_in is not owner:
            defining = f"{defined_in.__module__}:{defined_in.__qualname__}"
            raise ProbeError(
                f"'{name}' is inherited from {defining}: probe '{defining}.{attribute}' instead "
                "(a probe replaces an attribute where it is defined)."
            )
        raw = vars(owner)[attribute]
    else:
        own = getattr(owner, "__dict__", None)
        if not isinstance(own, dict) or attribute not in own:
            if not hasattr(owner, attribute):
                raise ProbeError(f"{where} has no attribute '{attribute}'.")
            if isinstance(owner, types.ModuleType):
                raise ProbeError(
                    f"'{name}' is computed by the module's __getattr__: it cannot be replaced by a probe."
                )
            klass = type(owner)
            raise ProbeError(
                f"'{name}' comes from the object's class: probe "
                f"'{klass.__module__}:{klass.__qualname__}.{attribute}' instead."
            )
        raw = own[attribute]

    in_class = isinstance(owner, type)
    rewrap: Any = None
    if isinstance(raw, staticmethod):
        kind, func, rewrap = "static method", raw.__func__, staticmethod
    elif isinstance(raw, classmethod):
        kind, func, rewrap = "class method", raw.__func__, classmethod
    elif isinstance(raw, type):
        raise ProbeError(f"'{name}' is a class: probe one of its methods instead (e.g. '{name}.__init__').")
    elif inspect.isfunction(raw):
        kind, func = ("method" if in_class else "function"), raw
        if inspect.iscoroutinefunction(raw):
            kind = "coroutine " + kind
        elif inspect.isgeneratorfunction(raw):
            kind = "generator " + kind
    elif not callable(raw):
        raise ProbeError(f"'{name}' is {_a(type(raw).__name__)}, not a function or method: nothing to probe.")
    elif in_class and hasattr(type(raw), "__get__"):
        raise ProbeError(
            f"'{name}' is {_a(type(raw).__name__)}, a descriptor, not a function or method: "
            "it cannot be probed in place."
        )
    else:
        kind = "built-in function" if inspect.isbuiltin(raw) else "callable object"
        func = raw
        if in_class:
            # It does not bind to instances: neither may its probe.
            rewrap = staticmethod
    if not callable(func):
        raise ProbeError(f"'{name}' holds {_a(type(func).__name__)}, which is not callable: nothing to probe.")
    already = getattr(func, "__ispyd_probe__", None)
    if already:
        raise ProbeError(f"'{name}' is already the probe '{already}'.")

    probe = Probe(name, owner, attribute, raw, kind)
    wrapper = _make_wrapper(probe, func)
    probe.installed = wrapper if rewrap is None else rewrap(wrapper)
    return probe


def _current(probe: Probe) -> Any:
    """What the probe's attribute holds now."""
    own = getattr(probe.owner, "__dict__", {})
    return own.get(probe.attribute, _MISSING) if isinstance(own, (dict, types.MappingProxyType)) else _MISSING


_MISSING = object()


def _restore(probe: Probe) -> str:
    """Puts the original back, if the probe is still in place. Returns what
    was done, for the user."""
    if _current(probe) is not probe.installed:
        return (
            f"'{probe.name}' was replaced by something else since the probe was inserted "
            "(a reload?): left as it is."
        )
    try:
        setattr(probe.owner, probe.attribute, probe.original)
    except Exception as err:  # noqa: BLE001 - reported to the user
        return f"Could not put the original back on '{probe.name}': {type(err).__name__}: {err}"
    for table, key, _ in probe.tables:
        if table.get(key) is probe.installed:
            table[key] = probe.original
    return f"Probe removed from {probe.name}; the original {probe.kind} is back."


# ---------------------------------------------------------------------------
# The registry's operations, for the plugin's commands


def _names(mapping: Dict[str, Any]) -> str:
    return ", ".join(sorted(mapping)) if mapping else "none"


def insert(target: str) -> Probe:
    """Puts a probe on ``target`` (``MODULE:FUNCTION``,
    ``MODULE:Class.method``...) and returns it."""
    exists = f"A probe on '{target}' already exists; 'remove {target}' first, or 'list' to see them."
    with _lock:
        if target in _probes:
            raise ProbeError(exists)
    probe = _resolve(target)
    with _lock:
        if probe.name in _probes:
            raise ProbeError(exists)
        _probes[probe.name] = probe
    # setattr can run the application's code (a metaclass, a module's
    # __setattr__): not under the lock.
    problem = None
    if _current(probe) is not probe.original:
        problem = f"'{probe.name}' changed while the probe was being made; try again."
    else:
        try:
            setattr(probe.owner, probe.attribute, probe.installed)
        except Exception as err:  # noqa: BLE001 - reported to the user
            problem = f"Cannot replace '{probe.name}' with a probe: {type(err).__name__}: {err}"
    if problem is not None:
        with _lock:
            if _probes.get(probe.name) is probe:
                del _probes[probe.name]
        raise ProbeError(problem)
    _probe_tables(probe)
    return probe


def _probe_tables(probe: Probe) -> None:
    """Puts the probe in the framework tables that keep their own reference
    to the original too, or the probe would never fire for the calls they
    make: Flask's ``app.view_functions`` (a route's view)."""
    flask = sys.modules.get("flask")
    app_class = getattr(flask, "Flask", None)
    if app_class is None:
        return
    # A walk of the heap, once per insert: every Flask app there is.
    for app in [obj for obj in gc.get_objects() if isinstance(obj, app_class)]:
        views = getattr(app, "view_functions", None)
        if not isinstance(views, dict):
            continue
        for key, value in list(views.items()):
            if value is probe.original:
                views[key] = probe.installed
                probe.tables.append((views, key, f"Flask app '{app.name}' view '{key}'"))


def remove(name: str) -> str:
    """Removes the probe ``name``, putting the original back; says what was
    done. Its captured traceback, if any, stays."""
    with _lock:
        probe = _probes.pop(name, None)
        known = _names(_probes)
    if probe is None:
        raise ProbeError(f"No probe named '{name}'. Probes: {known}.")
    return _restore(probe)


def reset() -> int:
    """Removes every probe, restoring the originals, and drops every
    captured traceback. Returns how many probes there were."""
    global _dropped
    with _lock:
        probes = list(_probes.values())
        _probes.clear()
        captures = list(_captures.values())
        _captures.clear()
        _dropped = 0
    for probe in probes:
        _restore(probe)
    del captures
    return len(probes)


def probes() -> List[Tuple[str, str, int, bool]]:
    """Every probe: name, kind, exceptions caught, whether it holds a
    traceback; sorted by name."""
    with _lock:
        return sorted((p.name, p.kind, p.caught, p.name in _captures) for p in _probes.values())


def captures() -> Tuple[List[Tuple[str, Capture]], int, int]:
    """The captures held, oldest first, by probe name; how many were
    dropped to keep within the limit; the limit."""
    with _lock:
        return list(_captures.items()), _dropped, _max_tracebacks


def capture_of(name: str) -> Capture:
    """The capture of the probe ``name``."""
    with _lock:
        capture = _captures.get(name)
        probe = _probes.get(name)
        held = _names(_captures)
    if capture is None:
        if probe is not None:
            raise ProbeError(
                f"No traceback captured by '{name}': it has caught no exception, or its last was discarded."
            )
        raise ProbeError(f"No probe or traceback named '{name}'. Tracebacks held: {held}.")
    return capture


def discard(name: str) -> None:
    """Drops the capture of the probe ``name`` (and the frames it keeps
    alive); the probe stays."""
    with _lock:
        capture = _captures.pop(name, None)
        held = _names(_captures)
    if capture is None:
        raise ProbeError(f"No traceback captured by '{name}'. Tracebacks held: {held}.")
    del capture  # here, outside the lock


def set_max_tracebacks(limit: int) -> None:
    """At most ``limit`` probes hold a traceback from now on."""
    global _dropped, _max_tracebacks
    dropped: List[Capture] = []
    with _lock:
        _max_tracebacks = limit
        while len(_captures) > limit:
            dropped.append(_captures.popitem(last=False)[1])
            _dropped += 1
