"""ispyd's own native lock, event and thread (``_native.Lock``, ``Event``,
``start_thread``, ``thread_ident``), which the console and pdb use so that
green-thread monkey-patching cannot turn them into greenlets (see
``test_green.py`` for the patched servers): they keep ``threading``'s
contract, waiting without the GIL."""

from __future__ import annotations

import threading

import pytest

from ispyd import _native

WAIT = 20.0


def test_a_thread_started_natively_is_its_own_os_thread():
    seen = {}
    done = _native.Event()

    def run():
        seen["ident"] = _native.thread_ident()
        seen["native"] = threading.get_native_id()
        done.set()

    _native.start_thread(run, "ispyd-test")
    assert done.wait(WAIT)
    assert seen["ident"] != _native.thread_ident() == threading.get_ident()
    assert seen["native"] != threading.get_native_id()


def test_event_waits_until_set_or_its_timeout():
    event = _native.Event()
    assert not event.is_set()
    assert event.wait(0.01) is False
    threading.Timer(0.05, event.set).start()
    assert event.wait(WAIT) is True and event.is_set()
    event.clear()
    assert not event.is_set()
    with pytest.raises(ValueError):
        event.wait(float("nan"))


def test_lock_excludes_and_its_wait_is_woken_by_notify_all():
    lock = _native.Lock()
    assert lock.acquire() and lock.locked()
    assert lock.acquire(blocking=False) is False
    assert lock.acquire(timeout=0.01) is False
    lock.release()
    with pytest.raises(RuntimeError):
        lock.release()
    with pytest.raises(RuntimeError):
        lock.wait(0.01)
    with pytest.raises(RuntimeError):
        lock.notify_all()

    state = {"ready": False}
    woken = []

    def waiter():
        with lock:
            while not state["ready"]:
                if not lock.wait(WAIT):
                    break
            woken.append(state["ready"])

    threads = [threading.Thread(target=waiter) for _ in range(3)]
    for thread in threads:
        thread.start()
    with lock:
        state["ready"] = True
        lock.notify_all()
    for thread in threads:
        thread.join(WAIT)
    assert woken == [True, True, True]
    with lock:
        assert lock.wait(0.01) is False  # nobody notifies: times out, holding the lock again
        assert lock.locked()
    assert not lock.locked()
