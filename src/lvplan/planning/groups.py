"""Plan each group of MV islands on its own sub-network, in parallel, and join the plans.

Each group (:mod:`lvplan.planning.islands`) becomes one job: its sub-network, its demands and
the settings. A job runs :func:`lvplan.planning.plan.plan_network` (candidates, greedy, the
optimum, the AC verification loop: all on the sub-network) in a local process
(``workers`` > 1 on a network of ``POOL_MIN_BUSES`` buses or more), in this process (one
group after another), or on a Dask cluster (``scheduler``).

Kept work: with a ``work_dir``, every finished group is written (atomically, by this driver
alone) to ``work_dir/parts/<key>.pkl``, where ``key`` is the sha256 of everything the group's
plan depends on: the sub-network's tables (:attr:`Network.fingerprint`), the group's demand
rows, the profile, the catalogue, the method, the time limit, and the code's ``PLAN_FORMAT``
and lvplan version (not a hash of its source). A group whose worker dies is
run again (Dask's retries; a fresh local pool); ``resume`` reuses the finished groups of an
interrupted run, and a changed input changes the key, so a stale group is never reused. The
files are pickles signed with this user's key (:mod:`lvplan.io.signed`): one lvplan did not
write is planned again, never unpickled.

The plans are joined into one :class:`lvplan.planning.plan.Plan` over the whole network:
options, sites, upgrades and areas renumbered into one instance, the chosen ones into one
solution, priced once (:meth:`Solution.of`), and its measures, assignments and network changes
made by the same code as for a single network. Its bound is the sum of the groups' bounds
(the groups share nothing, so this is a bound for the whole plan); each group's cost, bound,
gap, status and AC rounds are in ``summary.json`` under ``solver.parts``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import pickle
import re
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lvplan.criteria import Criteria
from lvplan.errors import InputError
from lvplan.io import signed
from lvplan.io.atomic import (
    atomic_file,
    output_errors,
    remove_stale_temporaries,
    write_bytes_atomic,
)
from lvplan.io.textfile import read_text_bounded
from lvplan.model.network import Network
from lvplan.model.topology import mv_label
from lvplan.planning.candidates import Instance
from lvplan.planning.demand import Demand, DemandSet
from lvplan.planning.islands import IslandGroup, SubNetworks
from lvplan.planning.measures import MeasureKind, Measures, tap_cost_cny
from lvplan.planning.model import Solution
from lvplan.planning.year_check import joined_years

#: each group's time, set when it starts: its share (by demands) of what the workers have
#: until the deadline among the groups not finished yet, at least this (at most what is left)
MIN_GROUP_S = 10.0
#: what is kept of ``--time-limit`` after the groups, for joining them and writing the files:
#: ``RESERVE_S`` plus ``RESERVE_S_PER_MBUS`` per million buses of the network (its
#: ``reinforced.json``), at most ``RESERVE_SHARE`` of the limit
RESERVE_S = 10.0
RESERVE_S_PER_MBUS = 150.0
RESERVE_SHARE = 0.25
_BLAS_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
#: Below this many buses the groups are planned one after another in this process (CP-SAT
#: with ``workers`` threads): a spawned worker's start (imports, numba's compilation) costs more
#: than a small network's groups take (``sz-futian``'s 30 demands: 2 groups, under 2 s).
POOL_MIN_BUSES = 50_000
#: In every group's key: bumped whenever the same inputs would give a group another plan (the
#: physics of the candidates, the model or the verification loop) or a kept group's pickle
#: changes shape, so that ``--resume`` never reuses a group planned under other physics. The
#: key holds no hash of the source: an edit that changes no plan (a message, a refactoring)
#: keeps the finished groups. 2: a parallel pair over its limit cut by its share of the
#: current; the optimal rounds stop at the deadline. 3: sites between two clusters, the
#: greedy made again without them, measures dated by need. 4: sites tied to other feeders.
#: 5: a plan lists the pre-existing violations elsewhere it makes worse (``worse_elsewhere``).
#: 6: a plan says which plan stands, the greedy or the optimal one (``plan_from``).
PLAN_FORMAT = 6


@dataclass
class GroupJob:
    index: int  # position in the groups list (its site names: "new substation S<index+1>.n")
    key: str
    net: Any  # the sub-network's pandapower net
    name: str
    source: str
    demands: tuple[Demand, ...]
    demand_source: str
    criteria: Criteria
    measures: Measures
    method: str
    time_limit_s: float
    cp_workers: int
    discount_rate: float
    hard_limit_s: float | None = None  # the city's deadline, from the job's start


@dataclass
class GroupResult:
    index: int
    key: str
    plan: Any  # Plan, or None when the group has no verified plan
    error: str  # why not
    seconds: float  # wall
    cpu_s: float = 0.0  # this process's CPU time (the machine's load aside)
    time_limit_s: float = 0.0  # the time it was given


def run_group(job: GroupJob) -> GroupResult:
    """The worker's job: one group's verified plan on its sub-network."""
    from lvplan.planning.plan import plan_network

    t0, c0 = time.perf_counter(), time.process_time()
    net = Network(job.net, name=job.name, source=job.source, validate=False, owned=True)
    ds = DemandSet(job.demands, job.demand_source, job.criteria.profile)
    try:
        p = plan_network(
            net,
            ds,
            job.criteria,
            job.measures,
            method=job.method,
            time_limit_s=job.time_limit_s,
            workers=job.cp_workers,
            discount_rate=job.discount_rate,
            site_tag=str(job.index + 1),
            mip_bound=True,
            bound_only=True,  # the strengthened relaxation's bound: one core per worker
            hard_limit_s=job.hard_limit_s,
        )
    except InputError as exc:  # no verified plan for this group: it builds nothing
        return GroupResult(
            job.index,
            job.key,
            None,
            str(exc),
            time.perf_counter() - t0,
            time.process_time() - c0,
            job.time_limit_s,
        )
    p.changes = None  # remade for the whole network when the plans are joined
    return GroupResult(
        job.index,
        job.key,
        p,
        "",
        time.perf_counter() - t0,
        time.process_time() - c0,
        job.time_limit_s,
    )


def group_key(sub: Network, demands: tuple[Demand, ...], settings: dict[str, Any]) -> str:
    h = hashlib.sha256()
    h.update(sub.fingerprint.encode())
    h.update(json.dumps([d.to_dict() for d in demands], sort_keys=True, default=str).encode())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return h.hexdigest()


#: the files a :class:`GroupStore` writes in ``parts/``: ``<sha256 hex>.pkl``, and ``RUN_FILE``
#: naming the network. Only these are ever removed: a user's own ``parts/model.pkl`` stays
#: (before, every ``*.pkl`` there was deleted when a run started).
_KEY_NAME = re.compile(r"[0-9a-f]{64}\.pkl")
RUN_FILE = "run.json"


def network_label(network: Network) -> str:
    """What ``parts/run.json`` says of the network a run planned: its name and bus count."""
    return f"{network.name} ({len(network.pp.bus):,} buses)"


def check_resume(work_dir: Path, network: Network) -> None:
    """An InputError (one line) unless ``work_dir`` holds an interrupted plan of ``network``:
    a ``parts/`` folder whose ``run.json`` (when it has one: a folder of an earlier release
    has none) names this network."""
    parts = work_dir / "parts"
    _no_link(parts, "--resume")
    if not parts.is_dir():
        raise InputError(f"--resume {work_dir}: no interrupted plan there (no parts/ folder)")
    record = parts / RUN_FILE
    if not record.exists() and not record.is_symlink():
        return
    try:  # (a named pipe hung the run, a link to /dev/zero read without end: probe, 12-07)
        run = json.loads(read_text_bounded(record, "a plan's run record", 1 << 20))
    except (InputError, ValueError, RecursionError):  # (unreadable, or nested past the stack)
        run = {}
    want = network_label(network)
    if not isinstance(run, dict) or run.get("network") != want:
        other = run.get("network") if isinstance(run, dict) else None
        raise InputError(
            f"--resume {work_dir}: no interrupted plan of {want} there"
            + (f" (its parts/ are of {other})" if isinstance(other, str) else "")
        )


def remove_parts(work_dir: Path) -> None:
    """``work_dir/parts`` without this store's files (a user's own stay), removed if then
    empty: what a new run that made ``work_dir`` and then failed leaves there."""
    parts = work_dir / "parts"
    if parts.is_symlink() or not parts.is_dir():  # (never through a link: its target stays)
        return
    for f in parts.iterdir():
        if _KEY_NAME.fullmatch(f.name) or f.name == RUN_FILE:
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
    remove_stale_temporaries(parts)
    with contextlib.suppress(OSError):
        parts.rmdir()


def _no_link(parts: Path, flag: str) -> None:
    """One line when ``parts`` is a symbolic link: the store writes and deletes its files there,
    and through a link that would be outside the folder named."""
    if parts.is_symlink():
        raise InputError(
            f"{flag} {parts.parent}: its parts/ is a symbolic link; lvplan keeps its groups in a "
            f"folder of its own there: remove the link"
        )


class GroupStore:
    """Finished groups on disk (``work_dir/parts``); ``None``: nothing is kept.

    A new run (not ``resume``) removes the finished groups of an earlier run there only once
    its own first group is written (:meth:`put`): a run refused before that (a scheduler not
    reached) leaves them for a later ``--resume`` (before, they were deleted at the start)."""

    def __init__(self, work_dir: Path | None, *, resume: bool, network: Network | None = None):
        self.dir = None if work_dir is None else work_dir / "parts"
        self.resume = resume
        self.flag = "--resume" if resume else "--out"
        self.label = None if network is None else network_label(network)
        self.stale = not resume  # the earlier run's groups, removed at the first put
        if self.dir is None or work_dir is None:
            if resume:
                raise InputError("--resume needs the folder of the interrupted run")
            return
        _no_link(self.dir, self.flag)
        if resume:
            if network is not None:
                check_resume(work_dir, network)
            elif not self.dir.is_dir():
                raise InputError(
                    f"--resume {work_dir}: no interrupted plan there (no parts/ folder)"
                )
        with output_errors(self.flag, self.dir.parent):
            if self.dir.is_dir():  # a group half-written by a killed run: its temporary goes
                remove_stale_temporaries(self.dir)
            self.dir.mkdir(parents=True, exist_ok=True)  # now: a run killed before its first
            # group finished is resumed (from nothing)
        signed.key()  # (here, in the run's own process: a key file not used is said at once)

    def names(self) -> list[Path]:
        """The group files in ``parts/`` (this store's names only)."""
        if self.dir is None or not self.dir.is_dir():
            return []
        return [f for f in self.dir.iterdir() if _KEY_NAME.fullmatch(f.name)]

    def get(self, key: str) -> GroupResult | None:
        if self.dir is None:
            return None
        p = self.dir / f"{key}.pkl"
        if not p.is_file():
            return None
        try:
            with signed.verified(p) as fh:  # (one this user's lvplan did not write: None)
                out = None if fh is None else pickle.load(fh)
        except Exception:  # a file from another lvplan version: planned again
            return None
        return out if isinstance(out, GroupResult) and out.key == key else None

    def put(self, res: GroupResult) -> None:
        """Keep ``res`` (atomically); a failure to write (a full disk) is one line naming the
        folder, and the parts/ folder of a new run left empty by it is removed."""
        if self.dir is None:
            return
        try:
            with output_errors(self.flag, self.dir.parent):
                # this group first: an earlier run's groups go only once it is kept (they were
                # removed first, and a write that failed then left none: found by review)
                # (only its owner may read it, as the islands cache)
                with atomic_file(self.dir / f"{res.key}.pkl", mode=0o600) as fh:
                    fh.write(signed.dumps(res))
                run = json.dumps({"network": self.label}).encode()
                if self.stale:  # this run is under way: the earlier run's groups go now
                    if self.label is not None:
                        try:
                            write_bytes_atomic(self.dir / RUN_FILE, run)
                        except OSError:  # (the earlier run's folder as it was: no group of
                            (self.dir / f"{res.key}.pkl").unlink(missing_ok=True)  # this one)
                            raise
                    for f in self.names():
                        if f.name != f"{res.key}.pkl":
                            f.unlink()
                    self.stale = False
                elif self.label is not None and not (self.dir / RUN_FILE).exists():
                    write_bytes_atomic(self.dir / RUN_FILE, run)
        except InputError:
            if not self.resume and not self.names():  # a new run's empty parts/ goes (the
                with contextlib.suppress(OSError):  # folder too, if it is new)
                    (self.dir / RUN_FILE).unlink()
                with contextlib.suppress(OSError):
                    self.dir.rmdir()  # only when empty
            raise

    def clear(self) -> None:
        if self.dir is None or not self.dir.is_dir():
            return
        for f in self.names():
            f.unlink()
        with contextlib.suppress(FileNotFoundError):
            (self.dir / RUN_FILE).unlink()
        with contextlib.suppress(OSError):
            self.dir.rmdir()  # only when empty: a user's own file there stays


def plan_by_groups(
    network: Network,
    ds: DemandSet,
    groups: list[IslandGroup],
    crit: Criteria,
    meas: Measures,
    *,
    method: str,
    time_limit_s: float,
    workers: int,
    discount_rate: float,
    say: Callable[[str], None],
    scheduler: str | None,
    work_dir: Path | None,
    resume: bool,
    t0: float,
):
    """The joined plan of every group (see the module docstring)."""
    store = GroupStore(work_dir, resume=resume, network=network)
    n_bus = len(network.pp.bus)
    pool = workers > 1 and len(network.pp.bus) >= POOL_MIN_BUSES
    parallel = scheduler is not None or pool
    from lvplan.code_id import code_id

    settings = {
        "plan_format": PLAN_FORMAT,
        "lvplan": code_id(),  # (a group another lvplan planned is planned again)
        "criteria": crit.to_dict(),
        "measures": repr(meas),
        "method": method,
        "time_limit_s": float(time_limit_s),  # 900 and 900.0 are one setting
        "discount_rate": float(discount_rate),
    }
    slots = max(workers, 1) if parallel else 1
    reserve = min(RESERVE_SHARE * time_limit_s, RESERVE_S + RESERVE_S_PER_MBUS * n_bus / 1e6)
    deadline = t0 + time_limit_s - reserve
    jobs: list[GroupJob] = []
    results: dict[int, GroupResult] = {}
    cutter = SubNetworks(network, [g.buses for g in groups])
    for j, g in enumerate(groups):
        sub = cutter.make(j, f"{network.name} group {j + 1}")
        dem = tuple(ds.demands[i] for i in g.demands)
        key = group_key(sub, dem, settings)
        hit = store.get(key) if resume else None
        if hit is not None:
            results[j] = dataclasses.replace(hit, index=j)
            continue
        jobs.append(
            GroupJob(
                j,
                key,
                sub.pp,
                sub.name,
                network.source,
                dem,
                ds.source,
                crit,
                meas,
                method,
                time_limit_s,  # set when it starts (budget below)
                1 if parallel else workers,
                discount_rate,
            )
        )
    if results:
        say(f"resume: {len(results)} of {len(groups)} groups reused")
    todo = {job.index: len(groups[job.index].demands) for job in jobs}

    def budget(job: GroupJob) -> GroupJob:
        """``job`` with its time: its share, by demands, of the time the slots have until the
        deadline among the groups not finished (those running included)."""
        left = deadline - time.perf_counter()
        share = left * slots * todo[job.index] / max(sum(todo.values()), 1)
        return dataclasses.replace(
            job,
            time_limit_s=round(min(time_limit_s, max(MIN_GROUP_S, min(share, left))), 1),
            hard_limit_s=max(left, 0.0),
        )

    def finish(res: GroupResult) -> None:
        if res.index in results:  # a retried job's second answer: the first stands
            return
        store.put(res)
        results[res.index] = res
        todo.pop(res.index, None)
        g = groups[res.index]
        if res.plan is None:
            what = f"no verified plan ({res.error})"
        else:
            p = res.plan
            what = (
                f"{p.cost_cny:,.0f} CNY, {len(p.assignments)} of {len(g.demands)} served, "
                f"{p.status}, {p.ac_rounds} AC rounds"
            )
        say(
            f"group {res.index + 1}/{len(groups)} ({len(g.islands)} islands, {g.buses.size} "
            f"buses): {what} in {res.seconds:.1f} s of {res.time_limit_s:.0f} s given "
            f"({res.cpu_s:.1f} s CPU); {len(results)} done "
            f"({time.perf_counter() - t0:.1f} s)"
        )

    if scheduler:  # submitted at once: each its share now
        _run_dask([budget(job) for job in jobs], finish, scheduler)
    elif not pool or len(jobs) <= 1:
        for job in jobs:
            finish(run_group(budget(job)))
    else:
        _run_pool(jobs, finish, workers, budget)
    t_join = time.perf_counter()
    out = join(network, ds, groups, [results[j] for j in range(len(groups))], method)
    say(f"joined {len(groups)} groups in {time.perf_counter() - t_join:.1f} s")
    out.runtime_s = time.perf_counter() - t0
    out.discount_rate = discount_rate
    return out


def _run_pool(
    jobs: list[GroupJob],
    finish: Callable[[GroupResult], None],
    workers: int,
    budget: Callable[[GroupJob], GroupJob] = lambda job: job,
) -> None:
    """Largest groups first on ``workers`` spawned processes (one BLAS thread each); the jobs a
    dead worker took down are run again in a fresh pool, up to three pools."""
    saved = {k: os.environ.get(k) for k in _BLAS_ENV}
    os.environ.update(dict.fromkeys(_BLAS_ENV, "1"))
    try:
        pending = list(jobs)
        for _attempt in range(3):
            if not pending:
                return
            pending = _one_pool(pending, finish, workers, budget)
        if pending:
            raise RuntimeError(f"{len(pending)} groups failed three times (a worker keeps dying)")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _one_pool(
    pending: list[GroupJob],
    finish: Callable[[GroupResult], None],
    workers: int,
    budget: Callable[[GroupJob], GroupJob],
) -> list[GroupJob]:
    from concurrent.futures.process import BrokenProcessPool

    from lvplan.workers import process_pool

    failed: list[GroupJob] = []
    queue = iter(pending)
    futs: dict = {}
    with process_pool(workers) as pool:  # a killed driver leaves no worker running its job

        def submit_next() -> bool:
            job = next(queue, None)
            if job is None:
                return False
            futs[pool.submit(run_group, budget(job))] = job
            return True

        for _ in range(workers):
            if not submit_next():
                break
        while futs:
            done, _ = wait(list(futs), return_when=FIRST_COMPLETED)
            for fut in done:
                job = futs.pop(fut)
                try:
                    finish(fut.result())
                except BrokenProcessPool:
                    failed.append(job)
                    continue
                submit_next()
            if failed and not futs:
                break
    return failed + list(queue)


def _run_dask(jobs: list[GroupJob], finish: Callable[[GroupResult], None], address: str) -> None:
    from lvplan.workers import dask_client

    client = dask_client(address)
    from dask.distributed import as_completed

    try:
        futs = [
            client.submit(run_group, job, key=f"lvplan-plan-{job.key[:32]}", retries=3)
            for job in jobs
        ]
        for fut in as_completed(futs):
            finish(fut.result())
    finally:
        client.close()


def join(
    network: Network,
    ds: DemandSet,
    groups: list[IslandGroup],
    results: list[GroupResult],
    method: str,
):
    """One plan over the whole network from the groups' plans (see the module docstring)."""
    from lvplan.planning.plan import PlanRound, _result

    demands = ds.demands
    options: list[Any] = []
    sites: list[Any] = []
    upgrades: list[Any] = []
    areas: dict[int, Any] = {}
    bus_area: dict[int, int] = {}
    trafo_kva: dict[int, float] = {}
    trafo_base: dict[int, float] = {}
    trafo_z: dict[int, tuple[float, float]] = {}
    line_data: dict[int, Any] = {}
    mv_lines: dict[int, Any] = {}
    transfers: dict[int, Any] = {}  # feeder splits, by the line each opens
    unservable: dict[int, str] = {}
    stats: dict[str, int] = {}
    chosen: list[int] = []
    ups: list[int] = []
    built: list[int] = []
    reasons: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    history: list[PlanRound] = []
    pruned = 0
    rounds = 0
    greedy_cost = greedy_kw = optimal = obj = bound = 0.0
    unbounded: list[int] = []  # groups with a plan and no bound of their own
    statuses: list[str] = []
    crit = None
    pf = 0.9
    meas = None
    for g, res in zip(groups, results, strict=True):
        p = res.plan
        row: dict[str, Any] = {
            "group": res.index + 1,
            "islands": len(g.islands),
            "buses": int(g.buses.size),
            "demands": len(g.demands),
            "capped": len(g.capped),
        }
        if p is None:
            why = f"its group of MV islands has no verified plan: {res.error}"
            for i in g.demands:
                unservable[i] = why
            statuses.append("failed")
            bound = math.nan
            optimal = math.nan
            rows.append(dict(row, status="failed", error=res.error, seconds=round(res.seconds, 2)))
            continue
        inst: Instance = p.instance
        sol: Solution = p.solution
        crit, pf, meas = inst.criteria, inst.pf, inst.measures
        at = g.demands  # the group's demand i is demands[at[i]]
        o_off, s_off, u_off, a_off = len(options), len(sites), len(upgrades), len(areas)
        amap = {a: a_off + n for n, a in enumerate(sorted(inst.areas))}
        for o in inst.options:
            site = None if o.site is None else o.site + s_off
            options.append(dataclasses.replace(o, demand=at[o.demand], site=site))
        sites += [
            dataclasses.replace(
                s,
                id=s.id + s_off,
                tie_of=None if s.tie_of is None else s.tie_of + s_off,
                twin_of=None if s.twin_of is None else s.twin_of + s_off,
            )
            for s in inst.sites
        ]
        upgrades += inst.upgrades
        for a, tree in inst.areas.items():
            areas[amap[a]] = dataclasses.replace(tree, area=amap[a])
        bus_area.update({b: amap[a] for b, a in inst.bus_area.items()})
        trafo_kva.update(inst.trafo_kva)
        trafo_base.update(inst.trafo_base_kva)
        trafo_z.update(inst.trafo_z)
        line_data.update(inst.line_data)
        mv_lines.update(inst.mv_line_data)
        transfers.update(
            {r: dataclasses.replace(sp, area=amap[sp.area]) for r, sp in inst.transfers.items()}
        )
        unservable.update({at[i]: why for i, why in inst.unservable.items()})
        for k, v in inst.stats.items():
            stats[k] = stats.get(k, 0) + int(v)
        pruned += inst.pruned_by_cap
        chosen += [k + o_off for k in sol.chosen]
        ups += [u + u_off for u in sol.upgrades]
        built += [s + s_off for s in sol.sites]
        for u in p.unserved:
            reasons[u["demand"]] = u["reason"]
        rounds += p.ac_rounds
        history += [
            dataclasses.replace(h, method=f"{h.method} (group {res.index + 1})") for h in p.history
        ]
        greedy_cost += p.greedy_cost_cny or 0.0
        greedy_kw += p.greedy_served_kw or 0.0
        optimal += math.nan if p.optimal_cost_cny is None else p.optimal_cost_cny
        obj += p.objective if math.isfinite(p.objective) else p.cost_cny
        if math.isfinite(p.bound):
            bound += p.bound
        else:  # (below: 0 for it in the total, when other groups have bounds)
            unbounded.append(res.index + 1)
        statuses.append(p.status)
        rows.append(
            dict(
                row,
                options=len(inst.options),
                status=p.status,
                # the last CP-SAT round's status (None: greedy only; "unknown (hint kept)": it
                # found nothing in its time and the plan is the greedy hint, with its bound)
                cp_sat="unknown (hint kept)"
                if sol.from_hint
                else next((h.status for h in reversed(p.history) if h.method == "optimal"), None),
                method=p.method,
                cost_cny=round(p.cost_cny, 2),
                bound_cny=round(p.bound, 2) if math.isfinite(p.bound) else None,
                # cp_sat, relaxation (the strengthened one); None: no bound (0 in the total)
                bound_by=sol.bounds.get("bound_by") if math.isfinite(p.bound) else None,
                gap=round(p.gap, 6) if math.isfinite(p.gap) else None,
                served=len(p.assignments),
                withdrawn=sum(1 for u in p.unserved if str(u["reason"]).startswith("withdrawn")),
                ac_rounds=p.ac_rounds,
                stopped=p.stopped,
                greedy_cost_cny=None if p.greedy_cost_cny is None else round(p.greedy_cost_cny, 2),
                plan_from=p.plan_from,
                seconds=round(res.seconds, 2),
                cpu_s=round(res.cpu_s, 2),
                time_limit_s=res.time_limit_s,
                parts=sol.parts,
            )
        )
    if crit is None:  # no group has a plan
        raise InputError(
            "plan: no group of MV islands has a verified plan: "
            + "; ".join(sorted({r.error for r in results if r.error}))
        )
    inst_all = Instance(
        demands=demands,
        options=options,
        sites=sites,
        areas=areas,
        bus_area=bus_area,
        trafo_kva=trafo_kva,
        trafo_base_kva=trafo_base,
        trafo_z=trafo_z,
        line_data=line_data,
        upgrades=upgrades,
        unservable=unservable,
        pruned_by_cap=pruned,
        pf=pf,
        criteria=crit,
        stats=dict(stats, groups=len(groups)),
        measures=meas,
        mv=mv_label(network),
    )
    status = "optimal" if all(s == "optimal" for s in statuses) else "feasible"
    # a group that stopped before any of its rounds proved a bound (its greedy rounds took its
    # time) counts 0 in the total, a bound all the same: no plan costs less than nothing. The
    # total stays a bound, weaker by at most those groups' costs; with no group bounded (the
    # greedy method), there is none
    if len(unbounded) == sum(1 for r in results if r.plan is not None):
        bound = math.nan
    # (a group proved optimal has its objective, whole CNY, as its bound: summed, the bounds
    # came 0.03 CNY above the plans' cost in cents; no bound is above a plan that exists)
    cost = sum(r.plan.cost_cny for r in results if r.plan is not None)
    if math.isfinite(bound) and cost < bound <= cost + len(rows) * 1.0:  # (rounding only: a
        bound = cost  # larger excess is a wrong bound, and shows)
    gap = abs(obj - bound) / max(abs(obj), 1e-9) if obj and math.isfinite(bound) else math.nan
    sol_all = Solution.of(
        inst_all,
        sorted(chosen),
        sorted(ups),
        sorted(built),
        status,
        objective=obj,
        bound=bound,
        gap=gap,
        parts=rows,
    )
    if unbounded and math.isfinite(bound):
        sol_all.bounds["zero_bound_groups"] = unbounded
    by = sorted({k for r in rows if r.get("bound_by") for k in str(r["bound_by"]).split("+")})
    if by and math.isfinite(bound):  # (the groups' kinds joined, as a plan by parts says them)
        sol_all.bounds["bound_by"] = "+".join(by)
    inst_all.mv_line_data.update(mv_lines)
    inst_all.transfers.update(transfers)
    out = _result(network, inst_all, sol_all, None, method, check_each_year=False)
    # what each group's own plan said of its measures: the demands and the limit a 10 kV
    # section's cuts held, and each measure's year (dated on the group's linear model and
    # cuts, known only in the group); and of N-1
    said = {(m.kind, m.element): m for r in results if r.plan is not None for m in r.plan.measures}
    out.measures = [said.get((m.kind, m.element), m) for m in out.measures]
    out.years_checked = joined_years([r.plan.years_checked for r in results if r.plan is not None])
    # the off-load taps each group's check of its years moved (on its own islands): their
    # measures, their cost and, first, their changes
    planned = [r.plan for r in results if r.plan is not None]
    taps = {t: v for p in planned for t, v in p.taps.items()}
    tap = MeasureKind.TRANSFORMER_TAP.value
    out.add_taps(
        taps, [m for p in planned for m in p.measures if m.kind == tap], tap_cost_cny(meas)
    )
    n1s = [r.plan.n1 for r in results if r.plan is not None and r.plan.n1 is not None]
    if n1s:
        out.n1 = {
            "demands_full_n1": sum(x["demands_full_n1"] for x in n1s),
            "served": sum(x["served"] for x in n1s),
            "contingencies_passed": sorted({c for x in n1s for c in x["contingencies_passed"]}),
        }
    for u in out.unserved:
        u["reason"] = u["reason"] or reasons.get(u["demand"]) or "no option fits"
        del u["position"]
    out.ac_rounds = rounds
    # (an element on rows several groups share is listed once, at its worst)
    worst: dict[tuple[str, str, float], dict[str, Any]] = {}
    for r in results:
        for x in r.plan.worse_elsewhere if r.plan is not None else []:
            el = (x["element"], x["kind"], x["limit"])
            if el not in worst or abs(x["after"] - x["limit"]) > abs(
                worst[el]["after"] - x["limit"]
            ):
                worst[el] = x
    out.worse_elsewhere = list(worst.values())
    late = [r.index + 1 for r in results if r.plan is not None and r.plan.stopped]
    if late:
        out.stopped = "time_limit"
        out.stop_note = (
            f"{len(late)} of {len(groups)} groups stopped at the time they were given, each with "
            f"the best plan that had passed its AC check (groups {', '.join(map(str, late[:20]))}"
            f"{', ...' if len(late) > 20 else ''})"
        )
    out.greedy_cost_cny = greedy_cost
    out.greedy_served_kw = greedy_kw
    out.optimal_cost_cny = optimal if math.isfinite(optimal) and method == "optimal" else None
    out.history = history
    froms = {r.plan.plan_from for r in results if r.plan is not None}
    out.plan_from = froms.pop() if len(froms) == 1 else "greedy and optimal"
    return out
