"""A plugin that declares the keys of its section, for the core to check."""


class Declared:
    """Settings the core checked before activate"""

    name = "declared"
    settings = {"size": range(1, 11), "ttl": "seconds", "verbose": "bool", "label": "text"}

    def activate(self, config):
        self.config = dict(config)

    def do_show(self, line):
        """show: the section activate was given."""
        self.stdout.write(" ".join(f"{key}={value}" for key, value in sorted(self.config.items())) + "\n")
