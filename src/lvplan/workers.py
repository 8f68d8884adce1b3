"""Worker processes that do not outlive the process that started them.

A local process pool's workers (the city plan's groups, :mod:`lvplan.planning.groups`) are
separate processes: when their driver dies (SIGKILL, out of memory, a closed terminal) a
worker busy with a job would run it to its end, for minutes of CPU on a shared machine, and
only then find no one to give its answer to. :func:`die_with_parent` is the pool's
initializer: on Linux the kernel sends the worker SIGKILL when its parent dies
(``prctl(PR_SET_PDEATHSIG)`` through ctypes); elsewhere, or if that call fails, a daemon
thread polls the parent's pid every ``POLL_S`` seconds and ends the worker when it changes
(the worker was re-parented). A driver that died before the initializer ran is caught by the
same check at once. Linux sends the signal when the *thread* that started the worker ends: a
pool is made, fed and closed in one thread (:func:`lvplan.planning.groups._one_pool`; a
``ProcessPoolExecutor`` starts its workers in the thread that submits).

:func:`process_pool` is the one way lvplan makes a local pool (the city plan's groups, the
hosting map's chunks and its area builds, the islands of a city load): every one of its workers
dies with its driver.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

#: seconds between two looks at the parent's pid (the fallback)
POLL_S = 1.0
_PR_SET_PDEATHSIG = 1


def _pdeathsig() -> bool:
    """Ask the kernel for SIGKILL when the parent dies (Linux); False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int) -> None:
    while True:
        time.sleep(POLL_S)
        if os.getppid() != parent:
            os._exit(1)


def die_with_parent(parent: int) -> None:
    """A pool initializer (``initargs=(os.getpid(),)`` in the driver): this worker ends when
    process ``parent`` does (see the module docstring)."""
    if not _pdeathsig():
        threading.Thread(target=_watch, args=(parent,), daemon=True, name="parent-watch").start()
    if os.getppid() != parent:  # the driver died before the request above: nothing to serve
        os._exit(1)


_pool_worker = [False]


def in_pool_worker() -> bool:
    """Whether this process is a worker of :func:`process_pool` (its exit need not wait for
    a solver's threads: :func:`lvplan.planning.interrupt._join_native`)."""
    return _pool_worker[0]


def _start(parent: int, initializer: Callable[..., Any] | None, initargs: tuple) -> None:
    _pool_worker[0] = True
    die_with_parent(parent)
    if initializer is not None:
        initializer(*initargs)


def process_pool(
    workers: int,
    *,
    method: str = "spawn",
    initializer: Callable[..., Any] | None = None,
    initargs: tuple = (),
) -> ProcessPoolExecutor:
    """A ``ProcessPoolExecutor`` of ``workers`` processes (start ``method``) whose workers end
    when this process does (:func:`die_with_parent`, then ``initializer(*initargs)``). Make,
    feed and close it in one thread (the module docstring says why)."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=mp.get_context(method),
        initializer=_start,
        initargs=(os.getpid(), initializer, initargs),
    )


def check_scheduler_address(address: str) -> None:
    """An InputError (one line) unless ``address`` is one Dask could connect to (a known scheme;
    for tcp/tls/ws, a host and an optional port), checked without connecting: a network planned
    in one piece never contacts the scheduler, and took ``nonsense:::`` without a word."""
    import warnings

    from lvplan.errors import InputError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (the ucx backend warns that it is gone)
            from distributed.comm.addressing import parse_address, parse_host_port
            from distributed.comm.registry import get_backend

            scheme, loc = parse_address(address)
            get_backend(scheme)
            if scheme in ("tcp", "tls", "ws", "wss"):
                host, port = parse_host_port(loc, 8786)
                if not host or not 0 < int(port) < 65536:
                    raise ValueError(f"no host, or a port out of range, in {address!r}")
    except ImportError:  # pragma: no cover - dask is a dependency
        raise InputError("--scheduler needs dask[distributed]") from None
    except (ValueError, TypeError) as exc:
        raise InputError(f"--scheduler: no Dask scheduler at {address}: {exc}") from None


def dask_client(address: str) -> Any:
    """A ``dask.distributed.Client`` of the scheduler at ``address`` (``--scheduler``), the one
    way lvplan connects to one (the city plan's groups, the hosting map's chunks). A scheduler
    that cannot be reached and an address that is not one (``nonsense:::``, an unknown scheme:
    before, a ValueError traceback) are one line (:class:`~lvplan.errors.InputError`)."""
    from lvplan.errors import InputError

    try:
        from dask.distributed import Client
    except ImportError:  # pragma: no cover - dask is a dependency
        raise InputError("--scheduler needs dask[distributed]") from None
    check_scheduler_address(address)
    try:
        return Client(address, timeout=10)
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
