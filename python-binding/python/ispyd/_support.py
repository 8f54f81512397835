"""The Python half of plugin calls, called from the native extension.

Plugins have the shape of the 2012 ispyd's: a ``name``, ``do_*`` methods
whose docstrings are their help texts, and ``self.stdout`` to write to. Each
call works on a shallow copy of the plugin with its own ``stdout``, so two
sessions calling at once never mix their output.
"""

from __future__ import annotations

import copy
import importlib
import io
import json
from typing import Any, Dict, List, Optional, Tuple

from ispyd import _native

#: Plugins that ``%(builtins)s`` stands for (besides the native ``process``).
BUILTINS: Dict[str, str] = {
    "python": "ispyd.plugins.python:PythonPlugin",
    "debugger": "ispyd.plugins.debugger:DebuggerPlugin",
    "wsgi": "ispyd.plugins.wsgi:WSGIPlugin",
    "asyncio": "ispyd.plugins.asyncio:AsyncioPlugin",
}


def load_plugin(spec: str) -> Any:
    """Imports and creates the plugin ``spec``: a builtin name, or
    ``module:Class`` (or ``module:object`` for a ready-made instance)."""
    target = BUILTINS.get(spec, spec)
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(
            f"plugin {spec!r} is neither a builtin ({', '.join(['process', *BUILTINS])}) "
            "nor of the form 'package.module:Class'"
        )
    found: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        found = getattr(found, part)
    return found() if isinstance(found, type) else found


def plugin_name(plugin: Any) -> str:
    """The plugin's shell name: its ``name``, else its class's name in lower
    case. Its configuration section is ``[NAME]``."""
    return str(getattr(plugin, "name", None) or type(plugin).__name__.lower())


def activate_plugin(plugin: Any, section: Dict[str, str]) -> None:
    """Calls the plugin's ``activate(section)``, if it has one, with the keys
    of its own section ``[NAME]`` (empty if the file has none)."""
    activate = getattr(plugin, "activate", None)
    if callable(activate):
        activate(dict(section))


def _first_line(text: Optional[str]) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def docstring(obj: Any) -> str:
    """``obj``'s docstring, its indentation removed as ``inspect.cleandoc``
    does. (``inspect`` itself would add 15 ms to every start of a program
    with ispyd, for this alone.)"""
    doc = getattr(obj, "__doc__", None)
    if not isinstance(doc, str):
        return ""
    lines = doc.expandtabs().split("\n")
    rest = [line for line in lines[1:] if line.strip()]
    margin = min((len(line) - len(line.lstrip()) for line in rest), default=0)
    cleaned = [lines[0].strip()] + [line[margin:].rstrip() for line in lines[1:]]
    return "\n".join(cleaned).strip("\n")


def describe(plugin: Any) -> Dict[str, Any]:
    """What the shell needs to know of a plugin."""
    name = plugin_name(plugin)
    gated: Dict[str, str] = dict(getattr(plugin, "gated_commands", {}) or {})
    commands: List[Tuple[str, str, Optional[str]]] = []
    for attribute in sorted(dir(plugin)):
        if not attribute.startswith("do_"):
            continue
        method = getattr(plugin, attribute)
        if not callable(method):
            continue
        command = attribute[3:]
        commands.append((command, docstring(method), gated.get(command)))
    return {
        "name": name,
        "summary": _first_line(docstring(type(plugin))),
        "gate": getattr(plugin, "gate", None),
        "commands": commands,
        "settings": _settings(name, getattr(plugin, "settings", None)),
    }


def _settings(name: str, declared: Any) -> Optional[List[Tuple[str, str, int, int]]]:
    """A plugin's ``settings`` (``{'size': range(1, 101), 'ttl': 'seconds'}``)
    as the core's kinds: ``(key, kind, low, high)``, the bounds used by
    ``'whole'`` only. ``None``: the plugin does not declare its keys."""
    if declared is None:
        return None
    kinds = []
    for key, kind in dict(declared).items():
        if isinstance(kind, range) and kind.step == 1 and len(kind) and kind.start >= 0:
            kinds.append((str(key), "whole", kind.start, kind.stop - 1))
        elif kind in ("text", "bool", "seconds"):
            kinds.append((str(key), kind, 0, 0))
        else:
            raise TypeError(
                f"plugin {name!r}: settings[{key!r}] is {kind!r}; use 'text', 'bool', "
                "'seconds' or a range of whole numbers from 0 up, such as range(1, 101)"
            )
    return kinds


#: The most characters one command (or console line) keeps of what it
#: prints: ``[ispyd] max_output``, set by the manager at start.
MAX_OUTPUT = 8 << 20


class BoundedText(io.TextIOBase):
    """A ``StringIO`` that keeps at most :data:`MAX_OUTPUT` characters and
    counts the rest: ``print('x' * 50_000_000)`` in a console must not
    double the host's memory (nor reach the client whole)."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: List[str] = []
        self._room = MAX_OUTPUT
        self._dropped = 0

    def write(self, text: str) -> int:
        if len(text) <= self._room:
            self._parts.append(text)
            self._room -= len(text)
        else:
            if self._room:
                self._parts.append(text[: self._room])
            self._dropped += len(text) - self._room
            self._room = 0
        return len(text)

    def writable(self) -> bool:
        return True

    def getvalue(self) -> str:
        text = "".join(self._parts)
        if self._dropped:
            text += (
                f"\n*** Output cut at {MAX_OUTPUT} characters (max_output); "
                f"{self._dropped} more characters not shown.\n"
            )
        return text


class CommandError(Exception):
    """Raised by a plugin command that fails: the user sees ``*** MESSAGE``
    (an ``Error`` frame in ``ispy``), and a structured result says
    ``"ok": false`` with the message, with no traceback."""


def render(data: Any) -> str:
    """The text of a command that returned data and printed nothing: a dict
    as ``key: value`` lines, a list one item a line, anything else as
    ``str()``."""
    if isinstance(data, dict):
        return "".join(f"{key}: {value}\n" for key, value in data.items())
    if isinstance(data, (list, tuple)):
        return "".join(f"{item}\n" for item in data)
    return f"{data}\n"


class _NoProgress:
    """``self.progress`` for a command run outside a session."""

    stop_requested = False

    def report(self, text: str) -> None:
        pass


def run_command(
    plugin: Any,
    command: str,
    args: str,
    session: int,
    wants_data: bool = False,
    wants_text: bool = True,
    progress: Any = None,
    wants_files: bool = False,
) -> Tuple[str, Any, Any, Optional[str], List[Tuple[str, bytes]]]:
    """Runs ``do_<command>(args)`` on a copy of ``plugin`` whose ``stdout``
    collects the output.

    Returns the output; the interactive object (``start()``/``feed(line)``)
    if the command returned one; the data it returned as JSON, when the
    session wants data; and the message of a :class:`CommandError` it
    raised. A command that returns data and prints nothing gets its text
    from :func:`render`."""
    instance = copy.copy(plugin)
    out = BoundedText()
    instance.stdout = out
    instance.session = session
    instance.wants_data = wants_data
    # False when the client takes the data instead of the text: a command
    # whose text costs much to make may skip it.
    instance.wants_text = wants_text
    # A long command says how far it has got (self.progress.report("3 s
    # of 10")), which keeps it going past call_timeout; once it has, Ctrl-C
    # sets self.progress.stop_requested, and it answers with what it has.
    instance.progress = progress if progress is not None else _NoProgress()
    # A command that makes files (a flame graph) appends (name, bytes) here
    # when the client saves files; otherwise it writes them itself.
    instance.wants_files = wants_files
    instance.files = files = []
    try:
        result = getattr(instance, "do_" + command)(args)
    except CommandError as err:
        return out.getvalue(), None, None, str(err), []
    if result is not None and callable(getattr(result, "feed", None)):
        return out.getvalue(), result, None, None, []
    text = out.getvalue()
    if result is None:
        return text, None, None, None, files
    native = isinstance(result, _native.NativeData)
    if not text and not native:
        text = render(result)
    if not wants_data:
        return text, None, None, None, files
    if native:
        # JSON made by native code: handed back as it is.
        return text, None, result, None, files
    return text, None, json.dumps(result, default=repr, ensure_ascii=False), None, files


#: The most completion candidates passed on: a namespace with thousands of
#: names must not flood the line editor.
MAX_CANDIDATES = 500


def complete_interactive(obj: Any, text: str) -> Tuple[int, List[str]]:
    """A takeover's completion of ``text`` (the line up to the cursor): its
    ``complete(text)``, returning ``(start, candidates)``, if it has one."""
    complete = getattr(obj, "complete", None)
    if not callable(complete):
        return len(text), []
    start, items = complete(text)
    return int(start), [str(item) for item in list(items)[:MAX_CANDIDATES]]


def complete_command(plugin: Any, command: str, text: str) -> Tuple[int, List[str]]:
    """Tab in a plugin's shell, after a command's name: its
    ``complete_<command>(word)`` (as Python's ``cmd`` names them) gives
    the candidates for the word being typed, the last of ``text``."""
    method = getattr(plugin, "complete_" + command, None)
    start = text.rfind(" ") + 1
    if not callable(method):
        return len(text), []
    items = sorted({str(item) for item in method(text[start:])})
    return start, items[:MAX_CANDIDATES]


def python_completions(text: str, namespace: Dict[str, Any]) -> Tuple[int, List[str]]:
    """What Python's own prompt offers on Tab (``rlcompleter``): names, and
    after a dot, attributes. The word starts after the last character that
    cannot be part of a dotted name."""
    import rlcompleter

    start = len(text)
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] in "_."):
        start -= 1
    word = text[start:]
    completer = rlcompleter.Completer(namespace)
    found: List[str] = []
    for state in range(MAX_CANDIDATES):
        try:
            candidate = completer.complete(word, state)
        except Exception:  # noqa: BLE001 - a property that raises: stop there
            break
        if candidate is None:
            break
        found.append(candidate)
    return start, sorted(set(found))


def step_interactive(obj: Any, method: str, line: Optional[str]) -> Tuple[str, Optional[str]]:
    """One step of a takeover: ``start()`` or ``feed(line)``, each returning
    ``(output, prompt)``; a ``None`` prompt ends the takeover."""
    output, prompt = obj.start() if method == "start" else obj.feed(line)
    return str(output or ""), (None if prompt is None else str(prompt))


def shutdown_plugins(plugins: List[Any]) -> None:
    """Calls each plugin's ``shutdown()``, if it has one; errors are printed,
    not raised, so every plugin gets its turn."""
    for plugin in plugins:
        stop = getattr(plugin, "shutdown", None)
        if callable(stop):
            try:
                stop()
            except Exception:  # noqa: BLE001 - reported, and the others still run
                import traceback

                traceback.print_exc()
