"""A plugin that checks what ispyd set on it against ``ispyd.Plugin``."""

import ispyd


class TypedPlugin:
    """Checks its own attributes"""

    name = "typed"

    def do_check(self: ispyd.Plugin, line: str) -> dict:
        """Whether this command's self is an ispyd.Plugin, and its progress an ispyd.Progress."""
        return {
            "plugin": isinstance(self, ispyd.Plugin),
            "progress": isinstance(self.progress, ispyd.Progress),
            "session": self.session,
        }
