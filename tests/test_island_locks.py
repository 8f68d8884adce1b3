"""One lock per MV island in one process (lvplan.register.locks): a decision on one island
never waits for another island's; one over every island waits for all and excludes all."""

from __future__ import annotations

import threading
import time

from lvplan.register.locks import IslandLocks


def _in_thread(fn) -> threading.Thread:
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t


def test_islands_do_not_wait_for_each_other_and_the_gate_waits_for_all():
    locks = IslandLocks()
    inside_a, leave_a = threading.Event(), threading.Event()

    def hold_a():
        with locks.hold(["A"]):
            inside_a.set()
            leave_a.wait(5)

    t = _in_thread(hold_a)
    assert inside_a.wait(5)
    t0 = time.monotonic()
    with locks.hold(["B"]):  # another island: at once
        assert time.monotonic() - t0 < 0.5
    assert not locks.acquire(blocking=False)  # every island: not while A is held
    got_a = threading.Event()
    _in_thread(lambda: _hold_then(locks, ["A"], got_a))
    assert not got_a.wait(0.3)  # the same island waits
    leave_a.set()
    t.join(5)
    assert got_a.wait(5)
    assert locks.acquire(blocking=False)  # now free
    try:
        with locks.hold(["A"]), locks.hold(None):  # the gate's holder re-enters anything
            pass
        blocked = threading.Event()
        _in_thread(lambda: _hold_then(locks, ["C"], blocked))
        assert not blocked.wait(0.3)  # an island decision waits for the gate's holder
    finally:
        locks.release()
    assert blocked.wait(5)


def _hold_then(locks: IslandLocks, islands, done: threading.Event) -> None:
    with locks.hold(islands):
        done.set()
