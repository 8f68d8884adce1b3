"""A plan that passed the AC check, made cheaper in the seconds left: a large-neighbourhood search.

When an optimal round's plan passes with too little time left for another round (a model,
HiGHS's two threads and CP-SAT: :data:`lvplan.planning.plan.GO_ON_S`), those seconds went
unused. CP-SAT on the whole model from the plan found nothing cheaper in 6 s on the SimBench
district (seed 1: its presolve of the 33,618-variable model alone takes seconds). Here one model
of the plan's grid is made, the demands the plan serves are held served, and, in turn, the
demands of a few areas are set free while every other demand keeps its connection (its
variable's domain fixed to 1, then given back): CP-SAT's presolve takes the model down to a
couple of thousand variables in about a second, and it searches every measure and site again
with those demands' connections. A cheaper plan found is the next neighbourhood's start.

The neighbourhoods alternate between two kinds: the demands connected in three areas (or new
substations' sites) drawn at random, and the demands with a connection option in one area drawn
at random (the demands that compete for its room), at most :data:`MOST_FREE`. Measured from
seed 1's verified plan (41,530,105 CNY), 2-s neighbourhoods on 2 cores: 41.37-41.52 M CNY in
15 s over six draws, 41.50-41.53 M in 6 s.

A plan found here is a plan of the same linear model; the caller's AC check (``accept``) judges
each cheaper one as it is found, and only one that passes is kept and searched on from. On seed
1 a plan found this way broke a line's loading by a fraction of a per cent; judged only at the
end, it was thrown away with the 0.1 M CNY it saved and no time to repair it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ortools.sat.python import cp_model

from lvplan.planning import interrupt

if TYPE_CHECKING:
    from lvplan.planning.linear import LinearGrid
    from lvplan.planning.model import Solution

#: the longest CP-SAT searches one neighbourhood (its presolve takes about a second of it)
NEIGHBOURHOOD_S = 2.0
#: a neighbourhood is started only with at least this long left
MIN_NEIGHBOURHOOD_S = 0.8
#: the most demands one neighbourhood of the second kind sets free
MOST_FREE = 25
#: areas (or sites) whose demands one neighbourhood of the first kind sets free
AREAS_FREED = 3


def polish(
    grid: LinearGrid,
    sol: Solution,
    *,
    time_limit_s: float,
    workers: int,
    seed: int = 0,
    accept: Callable[[Solution], bool] | None = None,
    timings: dict[str, float] | None = None,
) -> Solution | None:
    """The cheapest plan of ``grid``'s model serving the demands ``sol`` serves that the
    neighbourhoods found within ``time_limit_s`` (making the model included), or None when
    none costs less than ``sol`` (or ``sol`` does not fit the model). ``accept``: a cheaper
    plan is taken (and searched on from) only if it says so (the caller's AC check: a plan that
    uses the linear model's room to the last kW may break a limit in AC, and the seconds left
    would not repair it). ``timings``: ``model_s`` is set to how long its model took to make
    (the one step its time limit does not bound)."""
    from lvplan.planning.model import PlanModel, Solution

    t0 = time.perf_counter()
    inst, ot = grid.inst, grid.options
    if not sol.chosen:  # (nothing connected: no neighbourhood to draw)
        return None
    mdl = PlanModel(grid)
    if timings is not None:
        timings["model_s"] = time.perf_counter() - t0
    m = mdl.m
    served = {inst.options[k].demand for k in sol.chosen}
    for i, sv in mdl.served.items():  # (a demand it leaves out stays out)
        m.add(sv == int(i in served))
    m.minimize(mdl.cost)
    if any(k not in mdl.x for k in sol.chosen) or not mdl.hint(
        sol, time_limit_s=max(0.1, time_limit_s - (time.perf_counter() - t0))
    ):
        return None

    def group(k: int) -> tuple[str, int]:
        o = ot[k]
        return (
            ("site", o.site) if o.site is not None else ("area", -1 if o.area is None else o.area)
        )

    connected: dict[tuple[str, int], set[int]] = {}  # the demands connected in each group
    for k in sol.chosen:
        connected.setdefault(group(k), set()).add(inst.options[k].demand)
    competing: dict[tuple[str, int], set[int]] = {}  # ... and those with an option in it
    for k in mdl.x:
        if inst.options[k].demand in served:
            competing.setdefault(group(k), set()).add(inst.options[k].demand)
    keys = sorted(connected)
    rivals = sorted(competing)
    rng = random.Random(seed)
    best = sol
    turn = 0
    while True:
        left = time_limit_s - (time.perf_counter() - t0)
        if left < MIN_NEIGHBOURHOOD_S:
            break
        if turn % 2 == 0:
            drawn = rng.sample(keys, min(AREAS_FREED, len(keys)))
            free = set().union(*(connected[g] for g in drawn))
        else:
            free = set(competing[rng.choice(rivals)])
            if len(free) > MOST_FREE:
                free = set(rng.sample(sorted(free), MOST_FREE))
        turn += 1
        held = [mdl.x[k].index for k in best.chosen if inst.options[k].demand not in free]
        domains = m.proto.variables
        for v in held:  # (a Boolean's domain is [0, 1]: held to [1, 1], then given back)
            domains[v].domain[0] = 1
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = min(NEIGHBOURHOOD_S, left)
        solver.parameters.num_workers = max(1, workers)
        try:
            status = interrupt.solve(solver, m)
        finally:
            for v in held:
                domains[v].domain[0] = 0
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            continue
        whole = served <= free and status == cp_model.OPTIMAL  # (the optimum of the model)
        found = Solution.of(
            inst,
            [k for k, v in mdl.x.items() if solver.value(v)],
            [u for u, v in mdl.y.items() if solver.value(v)],
            [s for s, v in mdl.z.items() if solver.value(v)],
            "feasible",
        )
        if found.cost_cny < best.cost_cny - 0.5 and (accept is None or accept(found)):
            best = found
            mdl.rehint(solver)  # the next neighbourhood starts from it
        if whole:
            break
    return None if best is sol else best
