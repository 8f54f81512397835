"""A plugin module that cannot be imported."""

import ispyd_no_such_module_for_tests  # noqa: F401


class BrokenPlugin:
    name = "broken"
