"""Ctrl-C during a plan stops it.

CP-SAT catches SIGINT itself while it searches (its ``catch_sigint_signal``, on by default):
it ended the search and returned its best plan as if the time limit had come, and Python never
heard of it, so ``lvplan plan`` went on through its rounds, wrote every output and exited 0
(found by a hostile probe: three Ctrl-C, two seconds apart, in a 40 s plan). Every CP-SAT
search here runs through :func:`solve`, which leaves SIGINT to Python; but Python raises
``KeyboardInterrupt`` only when the main thread runs Python again, after the search has run to
its limit (tens of seconds). So :func:`watch` (the command line, around a plan) has Python's
signal handler write to a socket (``signal.set_wakeup_fd``: done in C, at once) and a thread
waiting on it stops every search running: the search returns, the main thread raises
``KeyboardInterrupt``, and the command exits 130 with no output written (its files are staged,
:func:`lvplan.io.atomic.staged_files`; stopped among the final renames, it finishes them: all
of the run's output then). SIGTERM and SIGHUP do the same (:func:`stop_on_signals`; exit 143,
129). HiGHS's threads (daemon threads) end with the process.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any, NoReturn

_lock = threading.Lock()
_running: set[Any] = set()  # the CP-SAT solvers searching now
#: a SIGINT came while :func:`watch` runs: :func:`check` raises ``KeyboardInterrupt`` again
#: (Python raises it once, in whatever the main thread runs then; inside a finaliser, a
#: ``__del__`` or a library's bare ``except:`` it is lost: in one CI run the plan went on
#: for 43 s and exited 0)
_interrupted = threading.Event()
#: threads that may be inside a solver's C++ code that cannot be stopped (HiGHS through MathOpt
#: does not heed its interrupter): :func:`native_running`
_native: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


#: the signals that stop a run as Ctrl-C does (a service manager's or ``timeout``'s SIGTERM; a
#: terminal closed): the same clean end, with exit code 128 + the signal's number. Unhandled,
#: they ended a plan at once with no message, its lock file and a half-staged output folder
#: left behind (the next run cleaned them up)
STOPS = (signal.SIGTERM, signal.SIGHUP)
_stopped_by = [int(signal.SIGINT)]


def _as_ctrl_c(signum: int, _frame: Any) -> None:
    _stopped_by[0] = signum
    for sig in STOPS:  # (once: a second one would break off the clean-up it starts)
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(sig) is _as_ctrl_c:
                signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


def stop_on_signals() -> dict[int, Any]:
    """Has :data:`STOPS` raise ``KeyboardInterrupt`` as SIGINT does, where the process left
    them to their default (a SIGHUP ``nohup`` ignores stays ignored); main thread only.
    Returns the handlers it replaced, for :func:`restore`."""
    _stopped_by[0] = int(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread():
        return {}
    was: dict[int, Any] = {}
    for sig in STOPS:
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(sig) is signal.SIG_DFL:
                signal.signal(sig, _as_ctrl_c)
                was[sig] = signal.SIG_DFL
    return was


def restore(was: dict[int, Any]) -> None:
    """The handlers :func:`stop_on_signals` replaced, back (one it set to ignore a second
    signal included)."""
    for sig, handler in was.items():
        with contextlib.suppress(ValueError, OSError):
            signal.signal(sig, handler)


def exit_code() -> int:
    """The exit code of a run a stopping signal ended: 130 for Ctrl-C, 143 for SIGTERM."""
    return 128 + _stopped_by[0]


#: how long Python's exit waits for the registered threads still running (:func:`_join_native`)
NATIVE_JOIN_S = 120.0


def native(thread: threading.Thread) -> threading.Thread:
    """Registers ``thread`` as one that may be inside a solver's C++ code, for
    :func:`native_running` and :func:`_join_native`; returns it."""
    with _lock:
        _native.add(thread)
    return thread


def end_now(code: int) -> NoReturn:
    """Ends the process with ``code`` without Python's exit (``os._exit``), stdout and stderr
    flushed first: the way out while :func:`native_running`."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _join_native() -> None:
    """At Python's exit (a script or a test run that called the planner, a pool worker; the
    command line ends with ``os._exit`` before, :func:`lvplan.cli.entry`): waits for the
    registered threads still running, each of which ends at its own time limit (HiGHS's, at
    the latest its deadline), for at most :data:`NATIVE_JOIN_S` in all, as Python's exit under
    a running solver aborts (:func:`native_running`). One still running then: the process
    says so on stderr and ends with ``os._exit(1)``. A local pool's worker does not wait: it
    ends with ``os._exit(0)``. (atexit functions run before Python stops its daemon threads.)"""
    pool = sys.modules.get("lvplan.workers")
    if pool is not None and pool.in_pool_worker():
        # a local pool's worker ends when its pool is shut down, after its results were sent:
        # waiting there for a bound whose plan CP-SAT had already proved would hold the
        # driver's shutdown up to that group's deadline; it ends at once
        if native_running():
            end_now(0)
        return
    end = time.monotonic() + NATIVE_JOIN_S
    with _lock:
        alive = [t for t in _native if t.is_alive()]
    for t in alive:
        t.join(max(0.0, end - time.monotonic()))
    if native_running():
        with contextlib.suppress(Exception):
            print(
                "lvplan: a solver thread still ran at exit: ended without Python's exit",
                file=sys.stderr,
            )
        end_now(1)


atexit.register(_join_native)  # (it does nothing unless a registered thread still runs)


def native_running() -> bool:
    """Whether a thread registered with :func:`native` is still running. A process must not
    end through Python's exit then: the C++ static destructors that exit runs would pull the
    solver out from under its thread ("terminate called without an active exception",
    SIGABRT: exit -6 instead of 130 when Ctrl-C came while HiGHS bounded the plan). The
    command line ends such a process with ``os._exit`` (:func:`lvplan.cli.entry`)."""
    with _lock:
        return any(t.is_alive() for t in _native)


def check() -> None:
    """Raises ``KeyboardInterrupt`` when a SIGINT came while :func:`watch` runs (the plan
    calls it at each round and search)."""
    if _interrupted.is_set():
        raise KeyboardInterrupt


def solve(solver: Any, model: Any) -> Any:
    """``solver.solve(model)``, with SIGINT left to Python, and stopped at once by one while
    :func:`watch` runs."""
    check()
    solver.parameters.catch_sigint_signal = False
    with _lock:
        _running.add(solver)
    try:
        out = solver.solve(model)
    finally:
        with _lock:
            _running.discard(solver)
    check()
    return out


def stop_all() -> int:
    """Stops every search running; returns how many."""
    with _lock:
        running = list(_running)
    for s in running:
        s.stop_search()
    return len(running)


@contextlib.contextmanager
def watch() -> Iterator[None]:
    """While inside, a SIGINT stops every CP-SAT search at once (:func:`stop_all`), so that its
    ``KeyboardInterrupt`` reaches the main thread in a moment; so do SIGTERM and SIGHUP under
    :func:`stop_on_signals`. Only in the main thread, and only for the signals with those
    handlers (elsewhere, or under another handler, it does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # the signals whose handler raises KeyboardInterrupt here: SIGINT under Python's own, and
    # SIGTERM and SIGHUP under :func:`stop_on_signals` (a run started in the background
    # ignores SIGINT: a SIGTERM must still stop its search); a caller's own handler is its own
    handlers = {signal.SIGINT: signal.default_int_handler, **dict.fromkeys(STOPS, _as_ctrl_c)}
    ours = [int(sig) for sig, mine in handlers.items() if signal.getsignal(sig) is mine]
    if not ours:
        yield
        return
    r, w = socket.socketpair()
    w.setblocking(False)
    try:
        old = signal.set_wakeup_fd(w.fileno(), warn_on_full_buffer=False)
    except ValueError:  # (not the main thread of the main interpreter)
        r.close()
        w.close()
        yield
        return

    def wait() -> None:
        while True:
            try:
                got = r.recv(64)
            except OSError:
                return
            if not got:  # (the writing end closed: watch() is over)
                return
            if any(sig in got for sig in ours):
                _interrupted.set()
                stop_all()

    _interrupted.clear()
    t = threading.Thread(target=wait, name="sigint-watch", daemon=True)
    t.start()
    try:
        yield
    finally:
        _interrupted.clear()
        signal.set_wakeup_fd(old)
        w.close()
        t.join(timeout=2.0)
        r.close()
