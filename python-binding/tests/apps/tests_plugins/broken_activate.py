"""A plugin whose activate() rejects its configuration."""


class Picky:
    """Refuses every configuration"""

    name = "picky"

    def activate(self, config):
        raise ValueError("picky: no configuration is good enough")

    def do_nothing(self, line):
        """Does nothing."""
