"""Functions and methods of every kind for the debugger plugin's probes.

Each raises an exception it first records in ``RAISED`` (by name), so a
test can check that the exception that reached the caller is the very
object that was raised. ``ORIGINAL`` holds every target as it was at
import: the objects ``remove`` and ``reset`` must put back.
"""

import threading

RAISED = {}
VALUE = 42
GATE = threading.Event()


def _raise(name, message):
    error = RuntimeError(message)
    RAISED[name] = error
    raise error


def helper(x):
    doubled = x * 2
    _raise("function", f"function failed on {doubled}")


def function(x, y=1, *, flag=False):
    """A plain function."""
    local_in_function = x + y
    helper(local_in_function)


def fine(x):
    return x + 1


def other(n):
    _raise("other", f"other failed {n}")


def generator(n):
    """A generator function."""
    yield n
    _raise("generator", "generator failed")


async def coroutine(n):
    """A coroutine function."""
    _raise("coroutine", f"coroutine failed {n}")


class Kinds:
    """Methods of every kind."""

    def method(self, a, b=2):
        """A method."""
        _raise("method", f"method failed {a}")

    @staticmethod
    def static(a):
        """A static method."""
        _raise("static", f"static failed {a}")

    @classmethod
    def klass(cls, a):
        """A class method."""
        _raise("klass", f"klass failed {cls.__name__} {a}")

    class Inner:
        class Deeper:
            def method(self):
                """A method of a nested class."""
                _raise("nested", "nested failed")

    prop = property(lambda self: 1)
    builtin = len


class Child(Kinds):
    pass


def many(n):
    """One of several failing probes: many_0 ... many_4 are copies."""
    _raise(f"many_{n}", f"many {n} failed")


def _make_many(n):
    def many_n():
        _raise(f"many_{n}", f"many {n} failed")

    many_n.__name__ = many_n.__qualname__ = f"many_{n}"
    return many_n


for _n in range(5):
    globals()[f"many_{_n}"] = _make_many(_n)


ORIGINAL = {
    "function": function,
    "generator": generator,
    "coroutine": coroutine,
    "method": vars(Kinds)["method"],
    "static": vars(Kinds)["static"],
    "klass": vars(Kinds)["klass"],
    "nested": vars(Kinds.Inner.Deeper)["method"],
    "builtin": vars(Kinds)["builtin"],
}


def recursive(n):
    """Calls itself n times, then fails."""
    if n == 0:
        _raise("recursive", "recursion bottomed out")
    recursive(n - 1)
