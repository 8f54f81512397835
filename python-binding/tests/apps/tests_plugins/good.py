"""A well-behaved third-party plugin, of the 2012 original's shape."""


class GoodPlugin:
    """Greetings from a plugin the configuration loaded"""

    name = "good"

    def __init__(self):
        self.greeting = "hello"
        self.shut_down = False

    def activate(self, config):
        """Reads the plugin's own section of the configuration."""
        self.greeting = config.get("greeting", self.greeting)

    def do_hello(self, line):
        """hello [NAME]: greet NAME (default: world) with the configured greeting."""
        self.stdout.write(f"{self.greeting}, {line.strip() or 'world'}!\n")

    def do_x(self, line):
        """Fails: raises an exception with a recognisable message."""
        raise RuntimeError("do_x failed on purpose")

    def shutdown(self):
        print("GOOD PLUGIN SHUT DOWN", flush=True)
