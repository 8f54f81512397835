"""A plugin with a long command that reports its progress."""

import time


class LongPlugin:
    """A command that takes long and says how far it has got"""

    name = "long"

    def do_work(self, line):
        """work SECONDS: works that long, reporting progress; Ctrl-C stops it."""
        seconds = float(line or "10")
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            if self.progress.stop_requested:
                self.stdout.write(f"stopped after {time.monotonic() - started:.1f} s\n")
                return
            self.progress.report(f"working: {time.monotonic() - started:.1f} s of {seconds:g}")
            time.sleep(0.05)
        self.stdout.write(f"worked {seconds:g} s\n")
