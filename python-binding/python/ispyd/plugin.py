"""What a Python plugin can count on: the attributes ispyd sets on the copy
of the plugin each command runs on, as :class:`typing.Protocol` types for
a type checker (and ``isinstance``, both being ``runtime_checkable``).

A plugin is any object; ispyd looks for these, all optional:

* ``name``: its shell's name and its configuration section (default: the
  class name in lower case); the class docstring's first line is its
  summary in ``plugins``;
* ``settings``: the keys of its section, ``{'size': range(1, 101),
  'ttl': 'seconds', 'dir': 'text', 'fast': 'bool'}``: the core checks
  their values before ``activate`` (a bad one stops the start with one
  line naming file, section and key) and puts any other key in
  ``ShellManager.warnings``, as for ``[ispyd]``;
* ``activate(self, config)``: called once with its section, a dict; raise
  :class:`ispyd.ConfigurationError` for a bad value the kinds above do not
  cover;
* ``do_NAME(self, line)``: a command, its docstring the help;
* ``gated_commands``: ``{'flush': 'cache:flush'}``, commands off unless
  their section says ``enabled = true``;
* ``shutdown(self)``: called when ispyd stops.

Type a command's ``self`` as :class:`Plugin` (or inherit nothing and use
these names) to have the checker know what ispyd provides::

    class CachePlugin:
        def do_stats(self: ispyd.Plugin, line: str) -> dict:
            print('entries', len(CACHE), file=self.stdout)
            return {'entries': len(CACHE)}
"""

from __future__ import annotations

from typing import List, Protocol, TextIO, Tuple, runtime_checkable


@runtime_checkable
class Progress(Protocol):
    """``self.progress``: how a long command says how far it has got."""

    #: Set once the user pressed Ctrl-C after a report: answer with what
    #: there is.
    stop_requested: bool

    def report(self, text: str) -> None:
        """Shows ``text`` in place and gives the command another
        ``call_timeout``."""


@runtime_checkable
class Plugin(Protocol):
    """The attributes ispyd sets before each command runs."""

    #: Where the command's text goes (bounded by ``max_output``).
    stdout: TextIO
    #: The number of the session that runs the command, as the audit trail
    #: names it.
    session: int
    #: Whether the client wants the command's facts as data (return them).
    wants_data: bool
    #: False when the client takes only the data: text that costs much to
    #: make may be skipped.
    wants_text: bool
    progress: Progress
    #: Whether the client saves files: append ``(name, bytes)`` to ``files``.
    wants_files: bool
    files: List[Tuple[str, bytes]]
