"""Raising ``KeyboardInterrupt`` in another thread, as Ctrl-C does at a
local prompt: what the console and pdb do when the user presses Ctrl-C in
``ispy``, when a line runs past its time limit, and when the client goes."""

from __future__ import annotations

from typing import Any


def _set_async_exc(thread_id: int, exception: Any) -> None:
    # ctypes only when a Ctrl-C comes: it would add 3 ms to every start.
    import ctypes

    function = ctypes.pythonapi.PyThreadState_SetAsyncExc
    function.restype = ctypes.c_int
    function(ctypes.c_ulong(thread_id), exception if exception is None else ctypes.py_object(exception))


def interrupt(thread_id: int) -> None:
    """Raises KeyboardInterrupt in the thread ``thread_id`` at its next
    Python instruction (code blocked in C stays blocked until it returns)."""
    _set_async_exc(thread_id, KeyboardInterrupt)


def cancel(thread_id: int) -> None:
    """Withdraws an interrupt not yet raised in ``thread_id``."""
    _set_async_exc(thread_id, None)
