"""Raising ``KeyboardInterrupt`` in another thread, as Ctrl-C does at a
local prompt: what the console and pdb do when the user presses Ctrl-C in
``ispy``, when a line runs past its time limit, and when the client goes."""

from __future__ import annotations

import ctypes

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.restype = ctypes.c_int


def interrupt(thread_id: int) -> None:
    """Raises KeyboardInterrupt in the thread ``thread_id`` at its next
    Python instruction (code blocked in C stays blocked until it returns)."""
    _set_async_exc(ctypes.c_ulong(thread_id), ctypes.py_object(KeyboardInterrupt))


def cancel(thread_id: int) -> None:
    """Withdraws an interrupt not yet raised in ``thread_id``."""
    _set_async_exc(ctypes.c_ulong(thread_id), None)
