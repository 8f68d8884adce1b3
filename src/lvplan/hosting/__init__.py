"""City-wide hosting capacity: the largest new 380 V load every LV bus can take.

``hosting_capacity(network)`` returns a :class:`HostingResult` whose ``table`` has the columns of
``hosting.csv`` (``bus, name, transformer, hosting_kw, binding_kind, binding_element, lon,
lat``). The value at a
bus is the largest design kW (at ``pf``) that ``lvplan.check`` answers ``fits`` for, to 0.1 kW,
found per LV area by :func:`lvplan.hosting.area.solve_area`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from lvplan.criteria import Criteria
from lvplan.errors import InputError, PowerFlowError
from lvplan.hosting.run import (
    COLUMNS,
    ChunkStore,
    Progress,
    RunStats,
    assemble,
    execute,
    manifest_for,
    now,
    plan_chunks,
)

if TYPE_CHECKING:
    from lvplan.model.network import Network


@dataclass(frozen=True)
class HostingResult:
    """The map: ``table`` (the columns of ``hosting.csv``, one row per LV bus), how the run
    went (``stats``), the question (``criteria``, ``pf``, ``max_kw``) and which transformer
    feeds each bus (``bus_trafo``: pandapower bus -> transformer index)."""

    table: pd.DataFrame
    stats: RunStats
    criteria: Criteria
    pf: float
    max_kw: float
    bus_trafo: dict[int, int] = field(repr=False)
    #: with ``n1``: per MV feeder, {"status": "ok" | "fails", "worst": what fails already}
    n1_feeders: dict[str, dict] | None = None
    #: with ``n1``: the district's N-1 pass rate (:class:`lvplan.n1.feeders.PassRate` as a dict)
    n1_pass_rate: dict | None = None


def hosting_capacity(
    network: Network,
    *,
    criteria: Criteria | str | None = None,
    pf: float | None = None,
    max_kw: float = 1000.0,
    workers: int = 1,
    scheduler: str | None = None,
    work_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool | None = False,
    chunk_buses: int | None = None,
    changes=None,
    n1: bool = False,
    keep_chunks: bool = False,
) -> HostingResult:
    """The hosting capacity of every in-service LV bus (see the module docstring).
    ``changes``: of the network with those changes made (:meth:`Network.with_changes`).
    ``n1``: also ``hosting_kw_n1`` and ``binding_n1`` (:mod:`lvplan.n1.hosting`; profiles with
    an N-1 rule).

    ``workers`` local processes, or a Dask ``scheduler`` address, solve the areas in chunks;
    with ``work_dir`` finished chunks are kept there and ``resume`` reuses them; they are
    removed when the map is done, unless ``keep_chunks`` (the CLI removes them once the map's
    files are written: a run that fails to write them keeps what it computed for --resume).
    """
    from lvplan.decision import resolve_criteria
    from lvplan.hosting.build import prepare
    from lvplan.hosting.fallback import ac_rows
    from lvplan.hosting.run import CHUNK_BUSES
    from lvplan.model.network import as_network

    network = as_network(network)
    crit = resolve_criteria(criteria)
    if changes is not None:
        network = network.with_changes(changes)
    pf_val = crit.new_customer_pf if pf is None else float(pf)
    if not (math.isfinite(pf_val) and 0 < pf_val <= 1):
        raise InputError(f"pf must be in (0, 1], got {pf!r}")
    if not (math.isfinite(max_kw) and max_kw > 0):
        raise InputError(f"max_kw must be > 0, got {max_kw!r}")
    if workers < 1:
        raise InputError(f"workers must be >= 1, got {workers}")
    t0 = now()
    network.base_state()  # PowerFlowError when the base case fails
    # one process builds the areas: in two (prepare(workers=2)) the 1 M-bus city's took 86.3 s
    # against 46.5 s in one on the 2-core machine (the problems come back pickled, and the
    # driver's share of unpickling them is 17 s); see README "City scale"
    prep = prepare(network, crit, pf=pf_val)
    t1 = now()
    chunks = plan_chunks(prep.problems, chunk_buses or CHUNK_BUSES, 2 if scheduler else workers)
    manifest = manifest_for(
        network.fingerprint,
        crit,
        pf_val,
        max_kw,
        [[int(prep.problems[j].label) for j in c] for c in chunks],
    )
    store = ChunkStore(Path(work_dir) if work_dir else None, manifest, resume=resume)
    total = sum(int(p.buses.size) for p in prep.problems)
    bar = Progress(total, progress)
    try:
        parts, reused = execute(
            prep.problems,
            chunks,
            store,
            pf=pf_val,
            max_kw=max_kw,
            workers=workers,
            scheduler=scheduler,
            progress=bar,
        )
    finally:
        bar.close()
    from lvplan.hosting.secant import recheck

    parts, by_ac, _redone = recheck(prep, parts, pf=pf_val, max_kw=max_kw)
    # (an LV slack bus, too, as check decides it: a load there flows through nothing, but a
    # limit its LV network broke before closes it as it closes the rest of that network; it
    # was given the cap, 1000 kW where nothing fits: probe, 2026-12-08)
    extra = [
        ac_rows(network, crit, buses, pf=pf_val, max_kw=max_kw)
        for buses in [
            *(b for b, _reason in prep.unsupported),
            *by_ac,
            *([prep.slack_buses] if len(prep.slack_buses) else []),
        ]
    ]
    df = assemble(network.pp, parts + extra, prep.bus_transformer)
    t2 = now()
    n1_feeders = n1_rate = None
    if n1:
        if not crit.has_n1:
            raise InputError(f"profile {crit.profile} has no N-1 rule (--n1)")
        from lvplan.n1.hosting import n1_columns

        df, n1_feeders, rate = n1_columns(network, crit, df, pf=pf_val, max_kw=max_kw)
        n1_rate = rate.to_dict()
    stats = RunStats(
        areas=len(prep.problems),
        buses=len(df),
        chunks=len(chunks),
        chunks_reused=reused,
        prepare_s=t1 - t0,
        solve_s=t2 - t1,
        n1_s=now() - t2 if n1 else None,
    )
    if work_dir and not keep_chunks:
        store.clear()
    return HostingResult(df, stats, crit, pf_val, max_kw, prep.bus_trafo, n1_feeders, n1_rate)


def area_capacity(
    network: Network,
    *,
    lv_bus: int,
    criteria: Criteria | str | None = None,
    pf: float | None = None,
    max_kw: float = 1000.0,
) -> pd.DataFrame:
    """The hosting table (the map's columns and search) of the one transformer area that
    ``lv_bus`` lies in: a single pass over that area, reservations counted. What
    ``GET /v1/capacity/buses`` serves; the preparation (network-wide, 0.2 s on the urban
    district) is kept on the network until its base moves."""
    from lvplan.decision import resolve_criteria
    from lvplan.hosting.build import prepare
    from lvplan.hosting.fallback import ac_rows

    crit = resolve_criteria(criteria)
    pf_val = crit.new_customer_pf if pf is None else float(pf)
    network.base_state()
    key = ("hosting-prepared", crit, pf_val)
    hit = network.contexts.get(key)
    if hit is None or hit[0] != network.version:
        hit = (network.version, prepare(network, crit, pf=pf_val))
        network.contexts.put(key, hit)
    prep = hit[1]
    eng = network.fast_engine()
    label = eng.area_of(int(eng.bus_lookup[lv_bus]))
    problems = [p for p in prep.problems if int(p.label) == label]
    parts: list[pd.DataFrame] = []
    if problems:
        store = ChunkStore(None, {}, resume=False)
        parts, _ = execute(
            problems, [[0]], store, pf=pf_val, max_kw=max_kw, workers=1, scheduler=None
        )
        from lvplan.hosting.secant import recheck

        one = dataclasses.replace(
            prep,
            problems=problems,
            roots=[
                r for p, r in zip(prep.problems, prep.roots, strict=True) if int(p.label) == label
            ],
        )
        parts, by_ac, _redone = recheck(one, parts, pf=pf_val, max_kw=max_kw)
        parts += [ac_rows(network, crit, b, pf=pf_val, max_kw=max_kw) for b in by_ac]
    else:  # an area the fast engine cannot model: full AC bus by bus, as the map does
        area = network.topology.area_of(lv_bus)
        buses = list(area.buses) if area is not None else [lv_bus]
        parts = [ac_rows(network, crit, buses, pf=pf_val, max_kw=max_kw)]
    return assemble(network.pp, parts, prep.bus_transformer)


__all__ = ["COLUMNS", "HostingResult", "PowerFlowError", "area_capacity", "hosting_capacity"]
