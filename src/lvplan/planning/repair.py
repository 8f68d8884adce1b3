"""A plan the AC check broke, repaired where it broke: the start of the next optimal round.

A plan that uses the linear model's room to the last kW (the relaxation neighbourhood's,
:mod:`lvplan.planning.mipbound`) often breaks a few limits in AC by a fraction of a per cent.
The AC check then tightens the model there (:func:`lvplan.planning.verify.tighten`) and the plan
no longer fits it. Starting the next round from the verified greedy plan throws its savings away
(on the SimBench district: 50.96 M CNY broke 3 limits and the next round, with a few seconds,
returned the greedy 52.66 M). So the plan is repaired first: every demand whose connection the
new cuts do not touch keeps it, and the demands they touch are connected again: first greedily,
the plan's measures kept (a fraction of a second), then by CP-SAT from there (their
connections, and every measure and site), a small model. On the district, CP-SAT alone, started
from the broken plan, returned 58-68 M CNY for a 46.7 M plan with 32 demands touched, in the
seconds it had: the round then started from the greedy plan and lost the savings.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from ortools.sat.python import cp_model

from lvplan.planning import interrupt

if TYPE_CHECKING:
    from lvplan.planning.linear import Cuts, LinearGrid
    from lvplan.planning.model import PlanModel, Solution

#: the repair is tried only when the cuts touch at most this share of the served demands (past
#: it, the repair is the whole plan again)
MAX_TOUCHED_SHARE = 0.5


def snapshot(cuts: Cuts) -> Cuts:
    """A copy of ``cuts`` to compare the next round's with (:func:`touched`)."""
    return copy.deepcopy(cuts)


def touched(grid: LinearGrid, before: Cuts, after: Cuts, sol: Solution) -> set[int] | None:
    """The demands whose connection in ``sol`` a cut added or tightened between ``before`` and
    ``after`` bears on (positions in ``Instance.demands``); None when the change is not one
    this can place (the 10 kV drop scaled, measures banned)."""
    if after.mv_factor != before.mv_factor or after.banned != before.banned:
        return None
    inst, ot = grid.inst, grid.options

    def changed(a: dict, b: dict) -> set:
        return {key for key, v in b.items() if a.get(key) != v}

    lines = changed(before.line_kw, after.line_kw)
    trafos = changed(before.trafo_kw, after.trafo_kw)
    sites = changed(before.site_kw, after.site_kw)
    for u in changed(before.upgrade_kw, after.upgrade_kw):
        trafos.add(inst.upgrades[u].element)
    volt = changed(before.volt_pu, after.volt_pu)
    areas = {inst.bus_area.get(b) for kind, b in volt if kind == "bus"} - {None}
    sites |= {s for kind, s in volt if kind == "site"}
    opts = {k for kind, k in volt if kind == "opt"}
    new = len(before.linear)
    for (coefs, _rhs), relief in zip(after.linear[new:], after.relief[new:], strict=True):
        # a cut that a measure lifts (a 10 kV section reinforced) is met by building it: the
        # repair chooses the measures again, so the connections it counts stay (such a cut
        # counts every option whose load crosses the section: on the district, seed 2, 2,535
        # options, every demand "touched", and the repair, the whole plan again, was given up
        # for the greedy plan: 45.99 M CNY where the broken plan was 37.68 M)
        if not relief:
            opts |= {k for k, c in coefs.items() if c > 0}
    out: set[int] = set()
    for k in sol.chosen:
        o = ot[k]
        hit = k in opts or (o.site is not None and o.site in sites)
        if not hit and o.area is not None:
            hit = (
                o.area in areas
                or grid.areas[o.area].trafo in trafos
                or any(ln in lines for ln in o.path)
            )
        if hit:
            out.add(inst.options[k].demand)
    return out


def repair(
    grid: LinearGrid,
    sol: Solution,
    demands: set[int],
    *,
    time_limit_s: float,
    workers: int,
    model: PlanModel | None = None,
) -> Solution | None:
    """``sol`` with only ``demands`` connected anew (every other demand keeps its connection;
    measures and sites are chosen again; with no demand, only those), at the least cost: a
    plan of ``grid``'s model serving what ``sol`` served, or None (none found in the time, or
    the repair would be the whole plan). ``model``: ``grid``'s :class:`PlanModel`, already
    made (the round's, whose hint ``sol`` did not fit: a second one takes a second on the
    district); it is spent here."""
    from lvplan.planning.greedy import Greedy
    from lvplan.planning.model import PlanModel, Solution

    served = {grid.inst.options[k].demand for k in sol.chosen}
    # (none: every connection kept, the measures chosen again: a new cut a measure lifts)
    if len(demands) > MAX_TOUCHED_SHARE * max(len(served), 1):
        return None
    # first greedily: the plan's measures kept, its other demands as they are, these connected
    # one by one (in a fraction of a second: a start CP-SAT improves on, and the answer if it
    # finds nothing in its time)
    inst = grid.inst
    patched = Greedy(grid, keep=tuple(sol.upgrades)).complete(
        [k for k in sol.chosen if inst.options[k].demand not in demands],
        sorted(demands & served, key=lambda i: (inst.demands[i].year or 0, i)),
    )
    mdl = PlanModel(grid) if model is None else model
    m = mdl.m
    m.clear_hints()  # (a model made before: the hint of the plan that did not fit it)
    for k in sol.chosen:
        if grid.inst.options[k].demand not in demands and k in mdl.x:
            m.add(mdl.x[k] == 1)
    for i, sv in mdl.served.items():
        if i in served:
            m.add(sv == 1)
    m.minimize(mdl.cost)
    if patched is None or not mdl.hint(patched):
        chosen, ups, sites = set(sol.chosen), set(sol.upgrades), set(sol.sites)
        m.clear_hints()
        for k, v in mdl.x.items():
            m.add_hint(v, k in chosen)
        for u, v in mdl.y.items():
            m.add_hint(v, u in ups)
        for s, v in mdl.z.items():
            m.add_hint(v, s in sites)
        patched = None
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(0.1, time_limit_s)
    solver.parameters.num_workers = max(1, workers)
    status = interrupt.solve(solver, m)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return patched
    return Solution.of(
        grid.inst,
        [k for k, v in mdl.x.items() if solver.value(v)],
        [u for u, v in mdl.y.items() if solver.value(v)],
        [s for s, v in mdl.z.items() if solver.value(v)],
        "feasible",
    )
