"""One lock per MV island in one process, and one over them all: the in-process twin of the
PostgreSQL register's locks (the register lock shared plus the island's lock exclusively for a
decision on one island; the register lock exclusively for one that may touch any island).

A decision on island X holds the gate *shared* and X's lock; decisions on other islands run at
the same time. A decision whose island is not known before it is made (coordinates), a
catch-up on every island (SQLite), start-up and the capacity routes hold the gate
*exclusively* (no island decision runs meanwhile). The exclusive holder may take any island's
lock again (its thread already excludes everyone). No island lock is ever waited for while
holding another, so the locks cannot deadlock.

The GIL still serialises the Python parts of decisions on different islands (the area solve,
the judge, the search); what runs at once is the waiting (a register round trip, an island's
lock) and the numpy/SciPy kernels that release it. See README, "One lock per island".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from lvplan.errors import RegisterUnavailable

#: the longest a decision waits for the desk's locks (other decisions of this process): then
#: it is answered "busy" (503) instead of queueing without end (probe, 2026-12-08: with
#: another process holding the register's write lock for 130 s, eight applications queued
#: here one behind the other, each then given its own 30 s for the register, the last
#: answered after 130 s, and a SIGTERM took 117 s)
WAIT_S = 30.0


def _busy() -> RegisterUnavailable:
    return RegisterUnavailable(
        f"register: busy (other decisions held it for {WAIT_S:g} s); nothing recorded"
    )


class IslandLocks:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None  # thread holding the gate exclusively
        self._depth = 0
        self._shared = 0
        self._islands: dict[str, threading.RLock] = {}

    # -- the gate, exclusively (the ``acquire``/``release`` of a lock, for the service) --------
    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return True
            if not blocking and (self._owner is not None or self._shared):
                return False
            ok = self._cond.wait_for(
                lambda: self._owner is None and not self._shared,
                None if timeout < 0 else timeout,
            )
            if not ok:
                return False
            self._owner, self._depth = me, 1
            return True

    def release(self) -> None:
        with self._cond:
            if self._owner != threading.get_ident():
                raise RuntimeError("release of an island gate this thread does not hold")
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()

    def __enter__(self) -> IslandLocks:
        if not self.acquire(timeout=WAIT_S):
            raise _busy()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def held_exclusively(self) -> bool:
        return self._owner == threading.get_ident()

    # -- one island ----------------------------------------------------------------------------
    @contextmanager
    def hold(self, islands: list[str] | None) -> Iterator[None]:
        """Hold ``islands`` (one island's key in a list) for a decision; None: every island
        (the gate exclusively)."""
        if islands is None or len(islands) != 1 or self.held_exclusively():
            with self:
                yield
            return
        until = time.monotonic() + WAIT_S
        with self._cond:
            if not self._cond.wait_for(lambda: self._owner is None, WAIT_S):
                raise _busy()
            self._shared += 1
            lock = self._islands.setdefault(islands[0], threading.RLock())
        try:
            if not lock.acquire(timeout=max(0.0, until - time.monotonic())):
                raise _busy()
            try:
                yield
            finally:
                lock.release()
        finally:
            with self._cond:
                self._shared -= 1
                if not self._shared:
                    self._cond.notify_all()
