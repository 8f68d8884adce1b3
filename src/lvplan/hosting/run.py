"""Run the hosting-capacity map: chunks of areas on local processes or a Dask cluster.

The driver cuts the network into :class:`AreaProblem` objects (one base load flow, one MV
Jacobian LU), groups them into chunks of about ``CHUNK_BUSES`` buses and hands the chunks to an
executor. Every finished chunk is written atomically to ``<dir>/chunks/NNNNNN.csv`` by the driver
alone, under a manifest naming the network fingerprint, the profile and the settings, so:

* a chunk whose worker dies is resubmitted (Dask reschedules it; the local pool retries it)
  and its buses are written once, by the chunk id;
* ``resume`` reuses the chunk files of an interrupted run with the same manifest.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lvplan.criteria import Criteria
from lvplan.errors import InputError
from lvplan.hosting.area import AreaProblem, solve_area
from lvplan.io.atomic import remove_stale_temporaries, write_json_atomic, write_text_atomic

CHUNK_BUSES = 4000
COLUMNS = [
    "bus",
    "name",
    "transformer",
    "hosting_kw",
    "binding_kind",
    "binding_element",
    "lon",
    "lat",
]


def solve_chunk(problems: list[AreaProblem], pf: float, max_kw: float) -> pd.DataFrame:
    """The worker's job: every bus of every area in the chunk."""
    parts = []
    for p in problems:
        r = solve_area(p, pf=pf, max_kw=max_kw)
        parts.append(
            pd.DataFrame(
                {
                    "bus": r.buses,
                    "hosting_kw": r.hosting_kw,
                    "binding_kind": r.binding_kind,
                    "binding_element": r.binding_element,
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=["bus", "hosting_kw", "binding_kind", "binding_element"])
    return pd.concat(parts, ignore_index=True)


def plan_chunks(
    problems: list[AreaProblem], chunk_buses: int = CHUNK_BUSES, workers: int = 1
) -> list[list[int]]:
    """Consecutive areas in chunks of about ``chunk_buses`` buses, at least 4 per worker."""
    total = sum(int(p.buses.size) for p in problems)
    if workers > 1:
        chunk_buses = max(200, min(chunk_buses, total // (4 * workers) + 1))
    chunks: list[list[int]] = []
    cur: list[int] = []
    size = 0
    for i, p in enumerate(problems):
        cur.append(i)
        size += int(p.buses.size)
        if size >= chunk_buses:
            chunks.append(cur)
            cur, size = [], 0
    if cur:
        chunks.append(cur)
    return chunks


@dataclass
class RunStats:
    areas: int
    buses: int
    chunks: int
    chunks_reused: int
    prepare_s: float
    solve_s: float
    n1_s: float | None = None  # the N-1 columns (--n1)


def _chunk_files(cdir: Path) -> list[Path]:
    """The chunk files a run writes in ``cdir`` (``ChunkStore.path``: six digits ``.csv``)."""
    return [f for f in cdir.glob("*.csv") if len(f.stem) == 6 and f.stem.isdigit()]


class ChunkStore:
    """Finished chunks on disk, under a manifest; ``None`` directory keeps them in memory."""

    def __init__(self, directory: Path | None, manifest: dict, *, resume: bool):
        self.dir = directory
        self.mem: dict[int, pd.DataFrame] = {}
        if directory is None:
            return
        cdir = directory / "chunks"
        mpath = cdir / "manifest.json"
        if resume:
            if not mpath.is_file():
                raise InputError(f"--resume {directory}: no interrupted run there (no manifest)")
            try:
                old = json.loads(mpath.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                raise InputError(f"--resume {directory}: unreadable chunk manifest") from None
            if isinstance(old, dict) and old.get("lvplan") != manifest["lvplan"]:
                raise InputError(
                    f"--resume {directory}: the chunks there were solved by another lvplan "
                    f"({str(old.get('lvplan', 'before 0.1.0+'))[:40]}; this is "
                    f"{manifest['lvplan']}): run it again without --resume"
                )
            if old != manifest:
                raise InputError(
                    f"--resume {directory}: the chunks there belong to another run "
                    "(network, profile or settings differ)"
                )
        else:
            if cdir.is_dir():  # its own chunk files only: "chunks/" may hold an engineer's files
                for f in _chunk_files(cdir):
                    f.unlink()
                remove_stale_temporaries(cdir)  # a killed run's half-written chunk
        cdir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(mpath, manifest)
        self.cdir = cdir

    def path(self, i: int) -> Path:
        return self.cdir / f"{i:06d}.csv"

    def done(
        self, i: int, buses: np.ndarray | None = None, max_kw: float = math.inf
    ) -> pd.DataFrame | None:
        """Chunk ``i`` as a finished run wrote it, or None. A file that is not what a run
        writes (other columns, other buses than ``buses``, a hosting capacity that is not a
        number within 0..``max_kw``, unreadable bytes) is none: the chunk is solved again
        (``--resume`` read junk, a cut file or 999999 kW as they were: probe, 2026-12-07)."""
        if self.dir is None:
            return self.mem.get(i)
        p = self.path(i)
        if not p.is_file():
            return None
        try:
            df = pd.read_csv(p, keep_default_na=False, dtype={"binding_element": str})
            kw = pd.to_numeric(df["hosting_kw"], errors="coerce").to_numpy(float)
            got = df["bus"].to_numpy()
        except (OSError, ValueError, KeyError, UnicodeDecodeError, pd.errors.ParserError):
            return None
        if list(df.columns) != ["bus", "hosting_kw", "binding_kind", "binding_element"]:
            return None
        if not (np.isfinite(kw).all() and (kw >= 0).all() and (kw <= max_kw).all()):
            return None
        if buses is not None and (
            got.dtype.kind not in "iu" or len(got) != len(buses) or set(got) != set(buses.tolist())
        ):
            return None
        df["hosting_kw"] = kw
        return df

    def put(self, i: int, df: pd.DataFrame) -> None:
        if self.dir is None:
            self.mem[i] = df
            return
        write_text_atomic(self.path(i), df.to_csv(index=False))

    def clear(self) -> None:
        if self.dir is not None:
            clear_chunks(self.dir)


def clear_chunks(directory: Path) -> None:
    """A finished run's chunk files and manifest under ``directory/chunks`` removed (what else
    is there stays, and so does the folder)."""
    cdir = directory / "chunks"
    if not cdir.is_dir():
        return
    for f in [*_chunk_files(cdir), cdir / "manifest.json"]:
        f.unlink(missing_ok=True)
    remove_stale_temporaries(cdir)
    if not any(cdir.iterdir()):
        cdir.rmdir()


def manifest_for(fingerprint: str, criteria: Criteria, pf: float, max_kw: float, chunks) -> dict:
    from lvplan.code_id import code_id

    h = hashlib.sha256(json.dumps(chunks).encode()).hexdigest()
    return {
        "lvplan": code_id(),  # (chunks another lvplan solved are solved again)
        "network_fingerprint": fingerprint,
        "criteria": criteria.to_dict(),
        "pf": pf,
        "max_kw": max_kw,
        "chunk_plan_sha256": h,
        "chunks": len(chunks),
    }


def execute(
    problems: list[AreaProblem],
    chunks: list[list[int]],
    store: ChunkStore,
    *,
    pf: float,
    max_kw: float,
    workers: int,
    scheduler: str | None,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[pd.DataFrame], int]:
    """Every chunk's result, in chunk order; the number reused from the store."""
    results: dict[int, pd.DataFrame] = {}
    todo = []
    for i in range(len(chunks)):
        buses = np.concatenate([problems[j].buses for j in chunks[i]]) if chunks[i] else None
        hit = store.done(i, buses, max_kw)
        if hit is not None:
            results[i] = hit
            if progress:
                progress(len(hit))
        else:
            todo.append(i)
    reused = len(chunks) - len(todo)

    def finish(i: int, df: pd.DataFrame) -> None:
        if i in results:  # a duplicate answer (a retried task): the first one stands
            return
        store.put(i, df)
        results[i] = df
        if progress:
            progress(len(df))

    if scheduler:
        _run_dask(problems, chunks, todo, finish, pf=pf, max_kw=max_kw, address=scheduler)
    elif workers <= 1 or len(todo) <= 1:
        for i in todo:
            finish(i, solve_chunk([problems[j] for j in chunks[i]], pf, max_kw))
    else:
        _run_pool(problems, chunks, todo, finish, pf=pf, max_kw=max_kw, workers=workers)
    return [results[i] for i in range(len(chunks))], reused


def _run_pool(problems, chunks, todo, finish, *, pf, max_kw, workers) -> None:
    pending = list(todo)
    # one BLAS thread per worker: the processes are the parallelism (2x faster measured)
    saved = {k: os.environ.get(k) for k in _BLAS_ENV}
    os.environ.update(dict.fromkeys(_BLAS_ENV, "1"))
    try:
        _pool_rounds(problems, chunks, pending, finish, pf=pf, max_kw=max_kw, workers=workers)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _pool_rounds(problems, chunks, pending, finish, *, pf, max_kw, workers) -> None:
    """Up to three pools: chunks lost with a dead worker are run again in a fresh pool."""
    for _attempt in range(3):
        if not pending:
            return
        pending = _one_pool(
            problems, chunks, pending, finish, pf=pf, max_kw=max_kw, workers=workers
        )
    if pending:
        raise RuntimeError(f"{len(pending)} chunks failed three times (a worker keeps dying)")


def _one_pool(problems, chunks, pending, finish, *, pf, max_kw, workers) -> list[int]:
    from concurrent.futures.process import BrokenProcessPool

    from lvplan.workers import process_pool

    failed: list[int] = []
    queue = iter(pending)
    futs: dict = {}
    with process_pool(workers) as pool:  # a killed driver leaves no worker on its chunk

        def submit_next() -> bool:
            i = next(queue, None)
            if i is None:
                return False
            futs[pool.submit(solve_chunk, [problems[j] for j in chunks[i]], pf, max_kw)] = i
            return True

        for _ in range(2 * workers):
            if not submit_next():
                break
        while futs:
            done, _ = wait(list(futs), return_when=FIRST_COMPLETED)
            for fut in done:
                i = futs.pop(fut)
                try:
                    finish(i, fut.result())
                except BrokenProcessPool:
                    failed.append(i)
                    continue
                submit_next()
            if failed and not futs:
                break
    return failed + list(queue)


def _run_dask(problems, chunks, todo, finish, *, pf, max_kw, address) -> None:
    from lvplan.workers import dask_client

    client = dask_client(address)
    from dask.distributed import as_completed

    try:
        futs = {}
        for i in todo:
            data = [problems[j] for j in chunks[i]]
            fut = client.submit(
                solve_chunk, data, pf, max_kw, key=f"lvplan-hosting-{i}-{id(data)}", retries=3
            )
            futs[fut] = i
        for fut in as_completed(list(futs)):
            finish(futs[fut], fut.result())
    finally:
        client.close()


def assemble(net, parts: Iterable[pd.DataFrame], bus_transformer: dict[int, str]) -> pd.DataFrame:
    df = pd.concat(list(parts), ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)
    df["bus"] = df["bus"].astype(np.int64)
    df = df.sort_values("bus", kind="stable").reset_index(drop=True)
    if df["bus"].duplicated().any():  # pragma: no cover - guarded by the chunk ids
        raise RuntimeError("a bus was answered twice")
    names = net.bus.name if "name" in net.bus.columns else pd.Series("", index=net.bus.index)
    df["name"] = [n if isinstance(n, str) else "" for n in names.reindex(df["bus"]).tolist()]
    df["transformer"] = [bus_transformer.get(int(b), "") for b in df["bus"]]
    lon, lat = bus_coordinates(net)
    df["lon"] = lon.reindex(df["bus"]).to_numpy()
    df["lat"] = lat.reindex(df["bus"]).to_numpy()
    df["binding_element"] = df["binding_element"].fillna("").astype(str)
    return df[COLUMNS]


def bus_coordinates(net) -> tuple[pd.Series, pd.Series]:
    """lon/lat of every bus, by bus index, in degrees (:func:`lvplan.model.coordinates.bus_lonlat`:
    NaN where none, and everywhere when the network's coordinates are not degrees). ``net``: a
    pandapower net, or a :class:`Network` (its positions read once, 2.9 s on a city)."""
    from lvplan.model.coordinates import bus_lonlat
    from lvplan.model.network import Network

    if isinstance(net, Network):
        lon, lat = net.bus_lonlat
        net = net.pp
    else:
        lon, lat, _ = bus_lonlat(net)
    idx = net.bus.index
    return pd.Series(lon, index=idx), pd.Series(lat, index=idx)


class Progress:
    """A tqdm bar on stderr when it is a terminal (or forced), silent otherwise."""

    def __init__(self, total: int, enabled: bool | None = None):
        if enabled is None:
            enabled = sys.stderr.isatty()
        self.bar = None
        if enabled:
            from tqdm import tqdm

            from lvplan.io.stderr_report import QuietStderr

            # (a reader that leaves, ``2>&1 | head``, silences the bar, not the map)
            self.bar = tqdm(total=total, unit="bus", file=QuietStderr(), smoothing=0.1)

    def __call__(self, k: int) -> None:
        if self.bar is not None:
            self.bar.update(k)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = None


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


def now() -> float:
    return time.perf_counter()


__all__ = ["COLUMNS", "RunStats", "assemble", "execute", "plan_chunks", "solve_chunk"]
