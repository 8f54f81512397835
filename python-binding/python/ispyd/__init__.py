"""ispyd: an in-process introspection shell for long-running Python programs.

Embed it as the 2012 original was embedded::

    from ispyd.manager import ShellManager
    shell_manager = ShellManager('/path/to/ispyd.ini')

then inspect the live process with ``ispy /path/to/ispyd.ini``.
"""

from ispyd._native import ConfigurationError, IspydError, ListenError
from ispyd._support import CommandError
from ispyd.plugin import Plugin, Progress

__all__ = ["CommandError", "ConfigurationError", "IspydError", "ListenError", "Plugin", "Progress"]
__version__ = "0.1.0"
