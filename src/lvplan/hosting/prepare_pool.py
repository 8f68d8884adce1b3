"""The map's preparation in several processes (``prepare(..., workers=N)``; the map itself
builds in one, see :data:`PARALLEL_MIN_AREAS`): every LV area's problem (its cut, its exact
matrices and limits, its summary for the MV response) is independent of the others, so the
areas are built in chunks by worker processes and come back in order. What the workers
return is what one process would have built, to the bit (the same arithmetic on the same
arrays); only the area solver is factored again where it is used (it does not pickle).

The MV response (:class:`lvplan.hosting.outside.OutsideModel`) and the envelopes that need
every area's summary stay in the driver.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

#: Below this many areas one process builds them. Measured on the shared 2-core machine it did
#: not pay at all: the 158 k-bus city's 2,000 areas took 9.6 s in one process and 12.0 s in
#: two, the 1 M-bus city's 13,000 areas 46.5 s and 86.3 s (the problems go back to the driver
#: pickled, 48 MB at 158 k; no idle core), so ``hosting_capacity`` builds them in one.
PARALLEL_MIN_AREAS = 5000
#: Chunks per worker (a worker that finishes early takes the next chunk).
CHUNKS_PER_WORKER = 4


@dataclass(frozen=True)
class EngineView:
    """What an area's problem reads of the fast engine: sent once to each worker instead of
    the engine (whose factors do not pickle and are not needed)."""

    Ybus: sp.csr_matrix
    Yf: sp.csr_matrix
    Yt: sp.csr_matrix
    f_bus: np.ndarray
    t_bus: np.ndarray
    ref: np.ndarray
    pv: np.ndarray
    V0: np.ndarray
    S0: np.ndarray
    baseMVA: float

    @classmethod
    def of(cls, eng) -> EngineView:
        return cls(
            eng.Ybus,
            eng.Yf,
            eng.Yt,
            eng.f_bus,
            eng.t_bus,
            eng.ref,
            eng.pv,
            eng.V0,
            eng.S0,
            eng.baseMVA,
        )


_SHARED: tuple | None = None


def _init(shared: tuple | None) -> None:
    global _SHARED
    _SHARED = shared


def _build_chunk(chunk: list[tuple]) -> list[Any]:
    from lvplan.hosting.build import build_area

    assert _SHARED is not None
    view, incidence, limits_int, branches = _SHARED
    return [build_area(view, incidence, limits_int, branches, *task) for task in chunk]


def build_areas(tasks: list[tuple], shared: tuple, workers: int) -> list[Any]:
    """:func:`lvplan.hosting.build.build_area` for every task (label, buses, branch rows,
    answered pp buses, their internal buses), in order; in ``workers`` processes when there
    are at least :data:`PARALLEL_MIN_AREAS` areas. ``shared``: (engine view, branch
    incidence, limits, branches), the same for every area."""
    from lvplan.hosting.build import build_area

    if workers <= 1 or len(tasks) < PARALLEL_MIN_AREAS:
        view, incidence, limits_int, branches = shared
        return [build_area(view, incidence, limits_int, branches, *t) for t in tasks]
    import multiprocessing as mp
    from concurrent.futures.process import BrokenProcessPool

    from lvplan.workers import process_pool

    n = min(len(tasks), workers * CHUNKS_PER_WORKER)
    bounds = np.linspace(0, len(tasks), n + 1).astype(int)
    chunks = [tasks[a:b] for a, b in itertools.pairwise(bounds.tolist())]
    # forked workers start at once and read the driver's arrays as they are (nothing to send
    # or import; they only compute on numpy arrays); spawned ones where fork is not offered
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    start: dict[str, Any] = (
        {} if method == "fork" else {"initializer": _init, "initargs": (shared,)}
    )
    _init(shared)
    try:
        with process_pool(workers, method=method, **start) as pool:  # they die with the driver
            parts = list(pool.map(_build_chunk, chunks))
    except BrokenProcessPool:  # a worker died (memory?): build them here, as one process would
        view, incidence, limits_int, branches = shared
        return [build_area(view, incidence, limits_int, branches, *t) for t in tasks]
    finally:
        _init(None)
    return [r for part in parts for r in part]
