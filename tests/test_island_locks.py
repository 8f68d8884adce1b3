"""One lock per MV island in one process (lvplan.register.locks): a decision on one island
never waits for another island's; one over every island waits for all and excludes all."""

from __future__ import annotations

import threading
import time

import pytest

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


def test_a_decision_waits_for_the_desks_locks_at_most_wait_s(monkeypatch):
    """Behind a holder that does not let go, a decision is answered busy (a 503 with nothing
    recorded) after WAIT_S, on the gate and on an island alike; it queued without end before
    (probe, 2026-12-08: the last of eight applications answered after 130 s)."""
    import lvplan.register.locks as locks_mod
    from lvplan.errors import RegisterUnavailable

    monkeypatch.setattr(locks_mod, "WAIT_S", 0.3)
    locks = IslandLocks()
    held, done = threading.Event(), threading.Event()

    def holder(islands):
        with locks.hold(islands):
            held.set()
            done.wait(10)

    for islands, wanted in ((None, ["A"]), (["A"], ["A"]), (["A"], None)):
        held.clear()
        done.clear()
        t = threading.Thread(target=holder, args=(islands,))
        t.start()
        held.wait(5)
        t0 = time.monotonic()
        with (
            pytest.raises(RegisterUnavailable, match=r"busy .*0\.3 s.*nothing recorded"),
            locks.hold(wanted),
        ):
            pass
        assert 0.25 < time.monotonic() - t0 < 3.0
        done.set()
        t.join()
    with locks.hold(["A"]):  # (free again: nothing left held by the refusals)
        pass
    with locks:
        pass
