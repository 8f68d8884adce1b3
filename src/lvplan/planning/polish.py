"""A plan that passed the AC check, made cheaper in the seconds left: a large-neighbourhood search.

When an optimal round's plan passes with too little time left for another round (a model,
HiGHS's two threads and CP-SAT: :data:`lvplan.planning.optimal_rounds.GO_ON_S`), those seconds
went unused. CP-SAT on the whole model from the plan found nothing cheaper in 6 s on the SimBench
district (seed 1: its presolve of the 33,618-variable model alone takes seconds). Here one model
of the plan's grid is made, the demands the plan serves are held served, and, in turn, the
demands of a few areas are set free while every other demand keeps its connection (its
variable's domain fixed to 1, then given back): CP-SAT's presolve takes the model down to a
couple of thousand variables in about a second, and it searches every measure and site again
with those demands' connections. A cheaper plan found is the next neighbourhood's start.

The neighbourhoods take three kinds in turn: the demands connected in a few areas (or new
substations' sites) drawn at random (three at first, one more after each such neighbourhood
solved whole, one fewer after one that was not); the demands with a connection option in one
area drawn at random (the demands that compete for its room), at most :data:`MOST_FREE`; and a
new substation the plan builds, to be done without (:func:`closing`: its demands and those
connected where they could go instead; new substations are most of a plan's cost, 58 % of
seed 2's). Measured from seed 1's verified plan (41,530,105 CNY), 2-s neighbourhoods of the
first two kinds on 2 cores: 41.37-41.52 M CNY in 15 s over six draws, 41.50-41.53 M in 6 s.

:func:`neighbourhoods` is also a round's whole search when the round is too short for the
relaxation's neighbourhood (:meth:`lvplan.planning.model.PlanModel._by_neighbourhoods`).

A plan found here is a plan of the same linear model; the caller's AC check (``accept``) judges
each cheaper one as it is found, and only one that passes is kept and searched on from. On seed
1 a plan found this way broke a line's loading by a fraction of a per cent; judged only at the
end, it was thrown away with the 0.1 M CNY it saved and no time to repair it.

A plan the check refuses is repaired in place, given the check's answer as room (``shortfall``):
the rows of the elements it found short are tightened below that plan's load there
(:func:`take_room`), and the same neighbourhood is searched again. On seed 2 (the whole round a
search of neighbourhoods) the refused plans had come back in later draws, and the plans were
5.7-17.7 % below greedy; with the repair, 17.1-17.8 % in 7 of 7 runs (2026-12-05), but 9.6-17.7
% in 9 runs the next day: the rival groups and new substations were drawn with replacement, so
some of a plan's substations went untried in the round while others came up twice. They are
now drawn without (:class:`Draws`: each once before any again): 18.0-20.2 % in 7 of 7.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ortools.sat.python import cp_model

from lvplan.planning import interrupt
from lvplan.planning.measures import LV_CABLE_KINDS, TRAFO_KINDS, MeasureKind

if TYPE_CHECKING:
    from lvplan.planning.linear import LinearGrid
    from lvplan.planning.model import PlanModel, Solution

#: the longest CP-SAT searches one neighbourhood (its presolve takes about a second of it)
NEIGHBOURHOOD_S = 2.0
#: ... doubled, up to this, after a neighbourhood in which CP-SAT found no plan at all (not
#: even its hint: a large model's presolve took the time; a city group of 36,000 buses), and
#: halved again, down to it, after one solved whole in under half its time
NEIGHBOURHOOD_MAX_S = 8.0
#: a neighbourhood is started only with at least this long left
MIN_NEIGHBOURHOOD_S = 0.8
#: the most demands one neighbourhood of the second kind sets free
MOST_FREE = 25
#: areas (or sites) whose demands one neighbourhood of the first kind sets free
AREAS_FREED = 3
#: the most demands a neighbourhood of the third kind (a new substation done without) sets free
MOST_FREE_CLOSING = 50
#: the most demands the first neighbourhood after a greedy patch sets free (the demands it moved
#: and their rivals)
MOST_FREE_FOCUS = 50
#: the most times in a row one neighbourhood is searched again after the AC check refused its
#: plan, the rows it found short tightened (``shortfall``)
MOST_AGAIN = 2


def polish(
    grid: LinearGrid,
    sol: Solution,
    *,
    time_limit_s: float,
    workers: int,
    seed: int = 0,
    accept: Callable[[Solution], bool] | None = None,
    shortfall: Callable[[Solution], dict[str, int]] | None = None,
    timings: dict[str, float] | None = None,
    focus: set[int] | None = None,
) -> Solution | None:
    """The cheapest plan of ``grid``'s model serving the demands ``sol`` serves that the
    neighbourhoods found within ``time_limit_s`` (making the model included), or None when
    none costs less than ``sol`` (or ``sol`` does not fit the model). ``accept``: a cheaper
    plan is taken (and searched on from) only if it says so (the caller's AC check: a plan that
    uses the linear model's room to the last kW may break a limit in AC, and the seconds left
    would not repair it); ``shortfall``: see :func:`neighbourhoods`. ``timings``: ``model_s``
    is set to how long its model took to make (the one step its time limit does not bound).
    ``focus``: see :func:`neighbourhoods`."""
    from lvplan.planning.model import PlanModel

    t0 = time.perf_counter()
    inst = grid.inst
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
    best, _ = neighbourhoods(
        mdl,
        sol,
        time_limit_s=time_limit_s - (time.perf_counter() - t0),
        workers=workers,
        seed=seed,
        accept=accept,
        shortfall=shortfall,
        focus=focus,
    )
    return None if best is sol else best


def neighbourhoods(
    mdl: PlanModel,
    sol: Solution,
    *,
    time_limit_s: float,
    workers: int,
    seed: int = 0,
    accept: Callable[[Solution], bool] | None = None,
    whole_first: bool = False,
    shortfall: Callable[[Solution], dict[str, int]] | None = None,
    focus: set[int] | None = None,
) -> tuple[Solution, bool]:
    """The neighbourhoods searched from ``sol`` on ``mdl`` for ``time_limit_s``: a model that
    serves exactly the demands ``sol`` serves, minimises the cost and is hinted with ``sol``
    complete. Returns the cheapest plan found that ``accept`` took (``sol`` when none), and
    whether it is the model's optimum (a neighbourhood that held no connection was solved to
    optimality from it). ``whole_first``: the first neighbourhood holds nothing (a model
    CP-SAT solves whole in :data:`NEIGHBOURHOOD_S` is then proved at once: sz-futian's).
    ``shortfall``: for a cheaper plan ``accept`` refused, the load units to take off the room
    of each line and transformer its AC check found short, by the name of the element's drop
    (:attr:`PlanModel.capacity_cts`, as ``probe`` gives them to :meth:`PlanModel.solve`):
    those rows of ``mdl`` are tightened for the rest of the search, and the same neighbourhood
    is searched again, at most :data:`MOST_AGAIN` times in a row (a restriction of the model:
    its plans are still the model's, but its optimum no longer proves the model's).
    ``focus``: demands (positions in ``Instance.demands``) that the first neighbourhood sets
    free with their rivals (the demands with an option where they have one), at most
    :data:`MOST_FREE_FOCUS`: those a greedy patch just connected again
    (``optimal_rounds._patched``)."""
    from lvplan.planning.model import Solution

    t0 = time.perf_counter()
    inst, ot, m = mdl.grid.inst, mdl.grid.options, mdl.m
    served = {inst.options[k].demand for k in sol.chosen}

    def group(k: int) -> tuple[str, int]:
        o = ot[k]
        return (
            ("site", o.site) if o.site is not None else ("area", -1 if o.area is None else o.area)
        )

    competing: dict[tuple[str, int], set[int]] = {}  # the demands with an option in each group
    for k in mdl.x:
        if inst.options[k].demand in served:
            competing.setdefault(group(k), set()).add(inst.options[k].demand)
    rivals = sorted(competing)
    groups_of: dict[int, set[tuple[str, int]]] = {}  # each demand's groups with an option
    for k in mdl.x:
        groups_of.setdefault(inst.options[k].demand, set()).add(group(k))

    def connected_now(plan: Solution) -> dict[tuple[str, int], set[int]]:
        """The demands ``plan`` connects in each group."""
        out: dict[tuple[str, int], set[int]] = {}
        for k in plan.chosen:
            out.setdefault(group(k), set()).add(inst.options[k].demand)
        return out

    lv_ups = lv_upgrades(mdl)
    rng = random.Random(seed)
    draws = {"rival": Draws(rng), "site": Draws(rng)}
    best = sol
    turn = 0
    areas = AREAS_FREED  # (grows while its neighbourhoods are solved whole, shrinks when not)
    first = whole_first
    again: set[int] | None = None  # a neighbourhood to search again, its rows tightened
    focus_most = MOST_FREE_FOCUS  # (halved while the focus's neighbourhood is not solved whole)
    nb_s = NEIGHBOURHOOD_S  # (doubled after a neighbourhood with no plan at all)
    tries = 0  # (searches of it so far in a row)
    tightened = False
    # the longest AC check of a plan found so far (``accept``, and ``shortfall`` after it): the
    # search stops that long before its time limit, so that the check of its last plan ends
    # by it (on seed 1 the round ended 1-2 s after its search's limit: 58.9-59.7 s of 60)
    check_s = 0.0
    while True:
        left = time_limit_s - (time.perf_counter() - t0) - check_s
        if left < MIN_NEIGHBOURHOOD_S:
            break
        if again is not None:
            free, kind, again = again, -2, None
            tries += 1
        else:
            tries = 0
            now = connected_now(best)
            sites = sorted(g for g in now if g[0] == "site")
            kind = -1 if first else -3 if focus else turn % 3
            if kind == -1:  # (the whole model, once)
                free = set(served)
            elif kind == -3:  # (the demands a patch moved, with their rivals)
                free = around((focus or set()) & served, groups_of, competing, rng, most=focus_most)
            elif kind == 0:
                drawn = rng.sample(sorted(now), min(areas, len(now)))
                free = set().union(*(now[g] for g in drawn))
            elif kind == 1 or not sites:
                free = set(competing[draws["rival"].pick(rivals)])
                if len(free) > MOST_FREE:
                    free = set(rng.sample(sorted(free), MOST_FREE))
            else:  # a new substation the plan builds, to be done without
                free = closing(now, draws["site"].pick(sites), groups_of, rng)
            first = False
            turn += kind >= 0
        held = [mdl.x[k].index for k in best.chosen if inst.options[k].demand not in free]
        domains = m.proto.variables
        # the LV measures of the areas where no demand set free has an option stay as the
        # plan builds them: their load does not change (a city group of 36,000 buses: with
        # its 24,476 upgrades free, CP-SAT on one core proved no neighbourhood of 2-10
        # demands in 4 s)
        # (not once a refused plan's rows were tightened: they may cut the plan kept off where
        # it stands, and another measure there is the way out; nor for the whole model, whose
        # optimum is then claimed)
        fixed: list[tuple[int, int]] = []
        if not served <= free and not tightened:
            reach = {ot[k].area for k in mdl.x if inst.options[k].demand in free}
            built = set(best.upgrades)
            fixed = [(v, int(u in built)) for u, v, a in lv_ups if a not in reach]
        fixed = [(v, b) for v, b in fixed if len(domains[v].domain) == 2]  # ([lo, hi])
        saved = [(domains[v].domain[0], domains[v].domain[1]) for v, _ in fixed]
        for v in held:  # (a Boolean's domain is [0, 1]: held to [1, 1], then given back)
            domains[v].domain[0] = 1
        for v, b in fixed:
            domains[v].domain[0] = domains[v].domain[1] = b
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = min(nb_s, left)
        solver.parameters.num_workers = max(1, workers)
        try:
            status = interrupt.solve(solver, m)
        finally:
            for v in held:
                domains[v].domain[0] = 0
            for (v, _), (lo, hi) in zip(fixed, saved, strict=True):
                domains[v].domain[0], domains[v].domain[1] = lo, hi
        if kind != -1 and status == cp_model.UNKNOWN and solver.wall_time >= nb_s - 0.05:
            nb_s = min(2 * nb_s, NEIGHBOURHOOD_MAX_S)
        elif status == cp_model.OPTIMAL and solver.wall_time < nb_s / 2:
            nb_s = max(NEIGHBOURHOOD_S, nb_s / 2)  # (back as neighbourhoods solve quickly)
        if kind == -3:  # (not solved whole: once more, half as many rivals set free)
            focus_most //= 2
            if status == cp_model.OPTIMAL or focus is None or focus_most <= len(focus):
                focus = None
        if kind == 0:  # (solved whole: a larger one next time; else a smaller)
            areas = areas + 1 if status == cp_model.OPTIMAL else max(AREAS_FREED, areas - 1)
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
        if found.cost_cny < best.cost_cny - 0.5:
            t_check = time.perf_counter()
            if accept is None or accept(found):
                best = found
                mdl.rehint(solver)  # the next neighbourhood starts from it
            elif shortfall is not None and tries < MOST_AGAIN:
                values = list(solver.response_proto.solution)
                try:
                    less = shortfall(found)
                except Exception:  # (a failed check costs the search its tightening only)
                    less = {}
                if take_room(mdl, less, values):
                    tightened, again = True, free
            check_s = max(check_s, time.perf_counter() - t_check)
        if whole:
            # the optimum of the model as it stands (its rows tightened or not): nothing
            # cheaper is left to find. Refused, it is searched again with its rows tightened,
            # or, once they were, the search goes on from the plan kept
            settled = best is found or found.cost_cny >= best.cost_cny - 0.5
            if settled or not tightened:
                return best, settled and not tightened
    return best, False


class Draws:
    """Draws without replacement: each of the groups (the new substations of a plan) is drawn
    once before any is drawn again. With replacement, a round of the neighbourhood search
    left some of a plan's substations untried while others came up twice: on the district's
    seed 2 (60 s, its one optimal round the search from the greedy plan) 9.6-17.7 % below
    greedy in 9 runs; drawn without, 18.0-20.2 % in 7."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.seen: set = set()

    def pick(self, among: list):
        left = [g for g in among if g not in self.seen]
        if not left:  # (each drawn once: a new cycle)
            self.seen.clear()
            left = list(among)
        got = self.rng.choice(left)
        self.seen.add(got)
        return got


def take_room(mdl: PlanModel, less: dict[str, int], values: list[int]) -> int:
    """For each line and transformer named in ``less`` (by its drop's name, ``DL``/``DT``, a
    row of :attr:`PlanModel.capacity_cts`): its new load limited to what the refused plan
    (``values``: every variable's) puts there less the load units in ``less``, only while the
    element is built as that plan builds it (the same upgrade, or none). The AC check judged
    that state alone: the room it found is below that plan's load there. How many limits were
    added, each one cutting the refused plan off.

    A capacity row is ``load - what the upgrade adds <= room``. Taking the refused plan's
    spare room off the row itself (as this did first) held every other state to it too: a
    plan that loads an element it upgraded takes its unused upgrade room off the element as
    it is, which may leave the plan kept so far, or even no new load there at all, outside the
    model (a model with no plan for the rest of the search). Tightening by the units alone (as
    the diving thread does with its first plan, which fills the rows to the last kW) let a
    refused plan with room to spare there come back the same on seed 2, three times in a row.
    The limit never goes below no new load: a connection elsewhere stays possible."""
    m = mdl.m
    ys = {v.index for v in mdl.y.values()}
    n = 0
    for name, units in less.items():
        ci = mdl.capacity_cts.get(name)
        if ci is None or units <= 0:
            continue
        row = m.proto.constraints[ci].linear  # load - what upgrades add <= room
        load_terms = [(v, c) for v, c in zip(row.vars, row.coeffs, strict=True) if v not in ys]
        load = sum(c * values[v] for v, c in load_terms)
        if load <= 0:  # (the refused plan loads nothing here: nothing of its own to take off)
            continue
        built = [
            m.get_bool_var_from_proto_index(v)
            if values[v]
            else m.get_bool_var_from_proto_index(v).Not()
            for v in row.vars
            if v in ys
        ]
        expr = sum(c * m.get_int_var_from_proto_index(v) for v, c in load_terms)
        ct = m.add(expr <= max(0, load - units))
        if built:
            ct.only_enforce_if(built)
        n += 1
    return n


def lv_upgrades(mdl: PlanModel) -> list[tuple[int, int, int]]:
    """(upgrade, its variable's index, its area) for each upgrade of ``mdl`` of a transformer
    or an LV line of a loaded area (a transfer: of the line it opens); the others (10 kV
    cables, new ties, moved units) are in no area."""
    g = mdl.grid
    of_trafo = {ag.trafo: a for a, ag in g.areas.items()}
    of_line = {ln: a for a, ag in g.areas.items() for ln in ag.lines}
    out = []
    for u, v in mdl.y.items():
        up = g.inst.upgrades[u]
        if up.kind in TRAFO_KINDS:
            a = of_trafo.get(up.element)
        elif up.kind in LV_CABLE_KINDS or up.kind == MeasureKind.TRANSFER:
            a = of_line.get(up.element)
        else:
            a = None
        if a is not None:
            out.append((u, v.index, a))
    return out


def around(
    focus: set[int],
    groups_of: dict[int, set[tuple[str, int]]],
    competing: dict[tuple[str, int], set[int]],
    rng: random.Random,
    *,
    most: int = MOST_FREE_FOCUS,
) -> set[int]:
    """``focus`` and, at most ``most`` in all (drawn with ``rng``), the demands that have an
    option in a group where one of ``focus`` has one (``groups_of``: each demand's groups;
    ``competing``: each group's demands): those whose room they take."""
    near = set().union(*(competing.get(g, set()) for i in focus for g in groups_of.get(i, ())))
    return _with_drawn(focus, near, most, rng)


def closing(
    now: dict[tuple[str, int], set[int]],
    site: tuple[str, int],
    groups_of: dict[int, set[tuple[str, int]]],
    rng: random.Random,
    *,
    most: int = MOST_FREE_CLOSING,
) -> set[int]:
    """The demands a neighbourhood sets free to do without the new substation ``site``: those
    connected there (``now``: the demands connected in each group), and, at most ``most`` in
    all (drawn with ``rng``), those connected in the other groups where they have an option
    (``groups_of``: each demand's groups), whose room they would take."""
    own = set(now[site])
    near = set().union(*(now.get(g, set()) for i in own for g in groups_of.get(i, ()) if g != site))
    return _with_drawn(own, near, most, rng)


def _with_drawn(core: set[int], near: set[int], most: int, rng: random.Random) -> set[int]:
    """``core`` and as many of ``near`` (drawn with ``rng``) as keep the whole at ``most``."""
    near = near - core
    room = max(0, most - len(core))
    if len(near) > room:
        near = set(rng.sample(sorted(near), room))
    return core | near
