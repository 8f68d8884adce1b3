"""The sites' bound: a lower bound on a plan's cost in a second, for a city group whose time
left no room for the relaxation of its whole model.

Every plan of the plan model (:class:`lvplan.planning.model.PlanModel`) that serves a set ``D``
of demands connects each of them by exactly one of its options, pays the option's service
cable, pays every new substation an option of the plan uses, and loads a new substation with
at most its capacity. Those rows, and only those, make a smaller model: a capacitated facility
location in which the existing network is free (no transformer, line or voltage limit, no
upgrade, no AC cut). Each row left out only takes plans away and every cost left out (the
upgrades') is at least 0, so the optimum of the smaller model's linear relaxation is at most
the cost of every plan of the whole model serving ``D``: a bound. It is weaker than the
relaxation of the whole model (which holds all of these rows and more), and takes a linear
program of the group's options and sites, not the whole model. Measured on the SimBench
district (``bench_plan.py``'s demand, seeds 1-3, 300 demands; the first optimal round's grid,
the greedy plan's demands): 27.0 / 22.0 / 25.3 M CNY in 0.02-0.03 s, where the strengthened
relaxation of the whole model gives 34.7 / 28.2 / 31.1 M in 14-16 s (its model, HiGHS's copy
and 4-5 rounds of inequalities).

A :class:`lvplan.planning.linear.LinearGrid` of the instance made under any cuts serves: the
costs do not depend on them, and a site's capacity only shrinks with them, so a grid made under
fewer cuts gives a larger room, a relaxation all the same.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from lvplan.planning.strengthen import site_covers, sites_alone

if TYPE_CHECKING:
    from lvplan.planning.linear import LinearGrid


def sites_bound(
    grid: LinearGrid, served: Collection[int], *, time_limit_s: float = 30.0
) -> float | None:
    """The bound (CNY, rounded up as the model's costs are whole CNY) on every plan of
    ``grid``'s model that serves the demands ``served`` (positions in ``Instance.demands``);
    None when the linear program is not solved to optimality in ``time_limit_s``, or a demand
    in ``served`` has no option (no plan serves it: nothing to bound)."""
    inst = grid.inst
    want = set(served)
    if not want:
        return 0.0
    ks = [k for k, o in enumerate(inst.options) if o.demand in want]
    if {inst.options[k].demand for k in ks} != want:
        return None
    site_of = {j: o.site for j, k in enumerate(ks) if (o := grid.options[k]).site is not None}
    sites = sorted(set(site_of.values()))
    col_of_site = {s: len(ks) + j for j, s in enumerate(sites)}
    n = len(ks) + len(sites)
    cost = np.array(
        [grid.options[k].cost for k in ks] + [grid.sites[s].cost for s in sites], dtype=float
    )
    # each demand served by exactly one of its options
    row_of = {d: r for r, d in enumerate(sorted(want))}
    eq_r = [row_of[inst.options[k].demand] for k in ks]
    a_eq = coo_matrix((np.ones(len(ks)), (eq_r, range(len(ks)))), shape=(len(want), n)).tocsr()
    # an option at a site only with the site built; the site's load within its capacity
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    r = 0
    at_site: dict[int, list[int]] = {}
    for j, s in site_of.items():
        rows += [r, r]
        cols += [j, col_of_site[s]]
        vals += [1.0, -1.0]
        r += 1
        at_site.setdefault(s, []).append(j)
    for s in sites:
        for j in at_site[s]:
            rows.append(r)
            cols.append(j)
            vals.append(float(grid.options[ks[j]].units))
        rows.append(r)
        cols.append(col_of_site[s])
        vals.append(-float(max(grid.sites[s].cap, 0)))
        r += 1
    # the site covers: so many of the sites that alone serve a cluster are built
    by_demand: dict[int, list] = {}
    for k in ks:
        by_demand.setdefault(inst.options[k].demand, []).append(grid.options[k])
    only, units = sites_alone(by_demand)
    caps = {s: grid.sites[s].cap for s in sites}
    rhs = [0.0] * r
    for cover, weights, least in site_covers(only, units, caps) if only else []:
        for s, w in zip(cover, weights, strict=True):
            rows.append(r)
            cols.append(col_of_site[s])
            vals.append(-float(w))
        rhs.append(-float(least))
        r += 1
    a_ub = coo_matrix((vals, (rows, cols)), shape=(r, n)).tocsr() if r else None
    res = linprog(
        cost,
        A_ub=a_ub,
        b_ub=np.array(rhs) if r else None,
        A_eq=a_eq,
        b_eq=np.ones(len(want)),
        bounds=(0.0, 1.0),
        method="highs",
        options={"time_limit": max(0.1, float(time_limit_s))},
    )
    if res.status != 0 or not math.isfinite(res.fun):
        return None
    return float(math.ceil(res.fun - 1e-6 * max(1.0, abs(res.fun))))
