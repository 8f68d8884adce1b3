"""``lvplan.plan``: the cheapest AC-verified set of reinforcements for a forecast demand.

1. Candidates (:mod:`lvplan.planning.candidates`): connection options, sites, upgrades.
2. The greedy plan (eDisGo style, the comparison and the optimiser's hint): demands in file order
   (by year first when years are given); each takes the cheapest way to connect it given every
   earlier choice, which may add measures (one small CP-SAT solve per demand, earlier choices
   fixed, so the greedy and the optimal plan share one model).
3. The optimal plan: every demand at once (:mod:`lvplan.planning.model`), from the greedy hint.
4. Each plan is checked by an exact AC load flow (:mod:`lvplan.planning.verify`); while the AC
   state breaks a limit the linear model accepted, the model is tightened there and solved
   again. A plan is returned only once it has passed; the optimal plan is never reported
   dearer than the verified greedy one (if it were, the greedy plan is the answer).
5. Years (:mod:`lvplan.planning.years`): a transformer or LV cable measure is built in the
   first year whose demands need it in the linear model; where that cannot be shown, and for
   every other measure, in the first year a demand that uses it arrives.

Where each step lives: the candidates' screen in :mod:`lvplan.planning.plan_candidates`; the AC
rounds (the verification loop and the state its rounds share) in :mod:`lvplan.planning.rounds`;
the greedy's passes in :mod:`lvplan.planning.greedy_rounds`; the optimal rounds (their patch,
repair, neighbourhood search and bounds) in :mod:`lvplan.planning.optimal_rounds`; which demands
need each measure, and from when, in :mod:`lvplan.planning.measure_users`. This module holds the
plan's types, :func:`plan`, and :func:`plan_network`, which runs those steps in turn.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lvplan.changes.resolve import tap_step_percent
from lvplan.criteria import Criteria
from lvplan.errors import InputError
from lvplan.kinds import ElementRef
from lvplan.model.network import Network, as_network
from lvplan.planning.candidates import Instance, left_out_for_voltage, service_length_m
from lvplan.planning.demand import DemandSet, read_demand
from lvplan.planning.greedy import Greedy
from lvplan.planning.linear import KW_UNIT, Cuts, LinearGrid, MvResponse, load_units
from lvplan.planning.measure_users import (
    MeasureUsers,
    ac_found,
    first_year,
    measure_users,
    over_at_base,
)
from lvplan.planning.measures import (
    MV_CABLE_KINDS,
    N1_KINDS,
    TRAFO_KINDS,
    MeasureKind,
    Measures,
    load_measures,
    tap_cost_cny,
)
from lvplan.planning.model import Solution
from lvplan.planning.n1measures import N1Offers
from lvplan.planning.n1plan import FAILS_ALREADY, demands_needing_n1, n1_demands
from lvplan.planning.parts import split
from lvplan.planning.verify import base_margin_map, solution_changes, worse_elsewhere
from lvplan.planning.year_check import YearCheck, check_years, tap_changes
from lvplan.planning.years import measure_years, year_note

METHODS = ("optimal", "greedy")


@dataclass
class Measure:
    """One measure of a plan, with why it was taken."""

    kind: str
    element: str  # ElementRef "trafo 3", "line 40"; a new substation's name "new substation S2"
    before: str
    after: str
    cost_cny: float
    year: int | None
    demands: list[str]  # the demands whose connection loads it
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Assignment:
    demand: str
    design_kw: float
    year: int | None
    connection: str  # "bus 12" or the new substation's name
    bus: int | None
    transformer: str
    cable: str
    length_m: float
    cable_cost_cny: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class PlanRound:
    method: str
    round: int
    cost_cny: float
    status: str
    broken: int
    notes: list[str]


@dataclass
class Plan:
    """A verified plan (``measures``, ``assignments``) and how it was found."""

    network: str
    method: str
    measures: list[Measure]
    assignments: list[Assignment]
    unserved: list[dict[str, Any]]
    cost_cny: float
    status: str
    objective: float
    bound: float
    gap: float
    ac_rounds: int
    runtime_s: float
    greedy_cost_cny: float | None
    greedy_served_kw: float | None
    optimal_cost_cny: float | None
    solution: Solution = field(repr=False)
    instance: Instance = field(repr=False)
    history: list[PlanRound] = field(default_factory=list, repr=False)
    discount_rate: float = 0.0
    #: which plan stands: "greedy" (the verified greedy plan: --method greedy, or no optimal
    #: plan verified in time, or none cheaper after the AC cuts), "optimal", or, for a plan by
    #: MV islands whose groups differ, "greedy and optimal" (each group's in ``parts``)
    plan_from: str = "greedy"
    changes: Any = field(default=None, repr=False)
    #: the off-load taps the check of the years moved: unit -> (before, after, year)
    #: (:mod:`lvplan.planning.year_check`; their measures are in ``measures``, their changes
    #: first in ``changes``)
    taps: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    #: N-1 of the plan (None: no demand of an area class with full N-1)
    n1: dict[str, Any] | None = None
    #: "time_limit" when the rounds stopped at the deadline (the plan is the best one that had
    #: passed the AC check by then); None when they ran to their end
    stopped: str | None = None
    stop_note: str = ""
    #: the elements outside a limit before the plan, outside its own LV networks, that it
    #: moves further out (:func:`lvplan.planning.verify.worse_elsewhere`; summary.json's
    #: ``pre_existing_elsewhere``)
    worse_elsewhere: list[dict[str, Any]] = field(default_factory=list)
    #: what the plan was made from (``plan`` sets it; summary.json's ``criteria`` and
    #: ``inputs``): the profile with its overrides, the catalogue, the demand, the settings
    inputs: dict[str, Any] | None = field(default=None, repr=False)
    #: each year but the last checked in AC (:mod:`lvplan.planning.year_check`;
    #: summary.json's ``years_checked``; empty for a plan of one year)
    years_checked: dict[str, Any] = field(default_factory=dict)

    def over_time_limit_s(self) -> float | None:
        """How far the plan ran past its ``--time-limit`` (0.0 within it; None: no limit
        recorded). The greedy plan's AC rounds make the first verified plan: past the limit they
        go on while each breaks fewer limits than the rounds before it (its passes too), and
        end with withdrawals when one does not, so a large input can run past the limit: this
        says by how much."""
        limit = ((self.inputs or {}).get("inputs") or {}).get("time_limit_s")
        if not isinstance(limit, int | float) or not math.isfinite(limit):
            return None
        return round(max(0.0, self.runtime_s - float(limit)), 2)

    def _rows_cents(self) -> list[tuple[str, str, int]]:
        """(kind, year, cost in whole fen) of each row of plan.csv and each service cable of
        assignment.csv: every total of the summary is a sum of these, in integers, so that
        each adds up to the cent to the files' rows (the total was the solver's unrounded
        cost: 0.03 CNY off its rows on the district, 0.16 on a city; found by review)."""
        # a row without a year in a plan with years (a measure no demand uses) is the first
        # year's; "none" only where no row has one (no demand has a year)
        given = [
            y
            for y in [m.year for m in self.measures] + [a.year for a in self.assignments]
            if y is not None
        ]
        first = str(min(given)) if given else "none"
        out = [
            (m.kind, first if m.year is None else str(m.year), round(m.cost_cny * 100))
            for m in self.measures
        ]
        kind = MeasureKind.SERVICE_CABLE.value
        out += [
            (kind, first if a.year is None else str(a.year), round(a.cable_cost_cny * 100))
            for a in self.assignments
        ]
        return out

    def total_cost_cny(self) -> float:
        """The plan's cost as its files give it: the measures' plus the service cables'."""
        return sum(c for _, _, c in self._rows_cents()) / 100

    def cost_by_kind(self) -> dict[str, float]:
        out: dict[str, int] = {}
        for kind, _, c in self._rows_cents():
            out[kind] = out.get(kind, 0) + c
        if not out.get(MeasureKind.SERVICE_CABLE.value):  # (no cable: no entry)
            out.pop(MeasureKind.SERVICE_CABLE.value, None)
        return {k: v / 100 for k, v in sorted(out.items())}

    def cost_by_year(self) -> dict[str, float]:
        out: dict[str, int] = {}
        for _, year, c in self._rows_cents():
            out[year] = out.get(year, 0) + c
        return {k: v / 100 for k, v in sorted(out.items())}

    def present_value_cny(self) -> float:
        """Costs discounted to the first year at ``discount_rate`` (undated: the first year)."""
        years = [int(y) for y in self.cost_by_year() if y != "none"]
        y0 = min(years) if years else 0
        pv = 0.0
        for y, c in self.cost_by_year().items():
            t = 0 if y == "none" else int(y) - y0
            pv += c / (1.0 + self.discount_rate) ** t
        return round(pv, 2)

    def add_taps(
        self, taps: dict[int, tuple[int, int, int]], measures: list[Measure], each_cny: float
    ) -> None:
        """The off-load taps the check of the years moved (:mod:`lvplan.planning.year_check`),
        added in one place: their measures, their cost, and their changes, made before the
        plan's measures (a unit laid beside one takes its tap)."""
        if not taps:
            return
        self.measures += measures
        self.cost_cny += len(taps) * each_cny
        self.changes = tap_changes(taps) + self.changes
        self.taps = {**self.taps, **taps}

    def summary(self) -> dict[str, Any]:
        served = len(self.assignments)
        return {
            "network": self.network,
            "method": self.method,
            "total_cost_cny": self.total_cost_cny(),
            "cost_by_kind_cny": self.cost_by_kind(),
            "cost_by_year_cny": self.cost_by_year(),
            "discount_rate": self.discount_rate,
            "present_value_cny": self.present_value_cny(),
            "demands": served + len(self.unserved),
            "demands_served": served,
            "design_kw_served": round(sum(a.design_kw for a in self.assignments), 1),
            "demands_unserved": len(self.unserved),
            "measures": len(self.measures),
            "new_substations": sum(m.kind == MeasureKind.NEW_SUBSTATION for m in self.measures),
            "solver": {
                "status": self.status,
                # with a budget: design kW served and the most any plan within it serves
                "objective_unit": "design_kw" if self.method == "budget" else "cny",
                "objective": _r(self.objective),
                # (never above the plan's cost: the model's costs are whole CNY per measure,
                # so its bound could pass the cost by the rounding; 1 CNY was seen)
                "best_bound": _r(
                    self.bound
                    if self.method == "budget" or not math.isfinite(self.bound)
                    else min(self.bound, self.cost_cny)
                ),
                "gap": _r(self.gap, 6),
                "bound_by": self.solution.bounds.get("bound_by"),
                "bounds": {
                    k: (_r(v) if isinstance(v, float) else v)
                    for k, v in self.solution.bounds.items()
                    if k != "bound_by"
                },
                "parts": self.solution.parts,
            },
            "ac_rounds": self.ac_rounds,
            **({"years_checked": self.years_checked} if self.years_checked else {}),
            # left out of the decision by the criteria, and made worse: said, not repaired
            "pre_existing_elsewhere": self.worse_elsewhere,
            "stopped": self.stopped,
            **({"stop_note": self.stop_note} if self.stopped else {}),
            "runtime_s": round(self.runtime_s, 2),
            "over_time_limit_s": self.over_time_limit_s(),
            "greedy_cost_cny": _r(self.greedy_cost_cny),
            "greedy_design_kw_served": _r(self.greedy_served_kw, 1),
            "optimal_cost_cny": _r(self.optimal_cost_cny),
            "plan_from": self.plan_from,
            "candidates": dict(self.instance.stats, pruned_by_cap=self.instance.pruned_by_cap),
            "rounds": [dict(r.__dict__, cost_cny=_r(r.cost_cny)) for r in self.history],
            **({"n1": self.n1} if self.n1 is not None else {}),
            **(self.inputs or {}),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "measures": [m.to_dict() for m in self.measures],
            "assignments": [a.to_dict() for a in self.assignments],
            "unserved": self.unserved,
        }


def _n(count: int, noun: str) -> str:
    """ "1 limit", "2 limits" (a noun whose plural takes an s)."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _r(x: float | None, nd: int = 2) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), nd)


def plan(
    network: Network,
    demand: DemandSet | Any,
    *,
    criteria: Criteria | str | None = None,
    method: str = "optimal",
    time_limit_s: float = 60.0,
    budget_cny: float | None = None,
    measures: Measures | None = None,
    workers: int = 2,
    discount_rate: float = 0.0,
    progress: Callable[[str], None] | None = None,
    scheduler: str | None = None,
    work_dir: str | Path | None = None,
    resume: bool = False,
    by_island: bool = True,
) -> Plan:
    """The cheapest plan (``method="optimal"``) or the greedy one that serves ``demand`` (a
    :class:`DemandSet`, a CSV path or a DataFrame) within the profile, AC-verified.

    Where the demands fall on more than one group of MV islands
    (:mod:`lvplan.planning.islands`), each group is planned on its own sub-network, on
    ``workers`` local processes or the Dask scheduler at ``scheduler``
    (:mod:`lvplan.planning.groups`); with ``work_dir`` each finished group is kept there, and
    ``resume`` reuses those of an interrupted run with the same inputs. With one group (or a
    budget, which couples every demand, or ``by_island=False``), the whole network is one
    plan and ``workers`` are CP-SAT's search workers."""
    from lvplan.decision import resolve_criteria

    if method not in METHODS:
        raise InputError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if not (math.isfinite(time_limit_s) and time_limit_s > 0):
        raise InputError(f"--time-limit must be a positive number of seconds, got {time_limit_s}")
    if budget_cny is not None and not (math.isfinite(budget_cny) and budget_cny >= 0):
        raise InputError(f"--budget must be a non-negative number of CNY, got {budget_cny}")
    if not (math.isfinite(discount_rate) and 0 <= discount_rate < 1):
        raise InputError(f"--discount-rate must be in [0, 1), got {discount_rate}")
    if scheduler is not None:  # refused always, whether or not the plan comes to use it
        from lvplan.workers import check_scheduler_address

        check_scheduler_address(scheduler)
    network = as_network(network)
    t0 = time.perf_counter()
    say = progress or (lambda _m: None)
    crit = resolve_criteria(criteria)
    meas = measures or load_measures()
    ds = demand if isinstance(demand, DemandSet) else read_demand(demand, network, crit)
    inputs = plan_inputs(
        crit,
        meas,
        ds,
        method=method,
        budget_cny=budget_cny,
        time_limit_s=time_limit_s,
        discount_rate=discount_rate,
        workers=workers,
        scheduler=scheduler,
    )
    whole = ""  # why the network is planned as one, though split by island was asked
    if by_island and budget_cny is not None:
        whole = "--budget couples every demand: the whole network is planned as one"
    elif by_island and demands_needing_n1(ds.demands, crit):
        # a 10 kV loop's tie may join two MV islands (each fed from its own source, the tie
        # open): its N-1 restoration is only seen on the network with both
        whole = "N-1 demands: their loops' ties may join MV islands, so one plan of the network"
    if whole:
        say(whole)
    elif by_island:
        from lvplan.planning import islands
        from lvplan.planning.groups import plan_by_groups

        groups = islands.island_groups(
            network,
            ds.demands,
            crit.detour_factor,
            max_group_buses=islands.MAX_GROUP_BUSES,
            max_group_demands=islands.MAX_GROUP_DEMANDS,
        )
        if len(groups) > 1:
            capped = sum(len(g.capped) for g in groups)
            say(
                f"islands: {len(groups)} groups of MV islands (largest {len(groups[0].islands)} "
                f"islands, {groups[0].buses.size} buses, {len(groups[0].demands)} demands); "
                f"{capped} demands keep only their own group's options (group size caps)"
            )
            out = plan_by_groups(
                network,
                ds,
                groups,
                crit,
                meas,
                method=method,
                time_limit_s=time_limit_s,
                workers=workers,
                discount_rate=discount_rate,
                say=say,
                scheduler=scheduler,
                work_dir=None if work_dir is None else Path(work_dir),
                resume=resume,
                t0=t0,
            )
            out.inputs = inputs
            return out
    if resume:  # planned in one piece: no finished group is kept, so none can be resumed
        raise InputError(
            f"--resume {work_dir}: no interrupted plan there to take up ("
            + (whole.split(":")[0] if whole else f"{network.name}'s demands fall in one group")
            + ": the network is planned in one piece, which keeps no finished groups); "
            "plan it with --out"
        )
    out = plan_network(
        network,
        ds,
        crit,
        meas,
        method=method,
        time_limit_s=time_limit_s,
        budget_cny=budget_cny,
        workers=workers,
        discount_rate=discount_rate,
        say=say,
        t0=t0,
    )
    out.inputs = inputs
    return out


def _sha256(obj: Any) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def plan_inputs(
    crit: Criteria,
    meas: Measures,
    ds: DemandSet,
    **settings: Any,
) -> dict[str, Any]:
    """summary.json's record of what a plan was made from: ``criteria`` (the full profile, its
    ``overridden`` names the ``--set`` values, as ``lvplan hosting`` writes it) and ``inputs``:
    the demand (its source, count and the sha256 of its validated rows), the catalogue (its
    source, the sha256 of its entries and the entries) and the settings given."""
    entries = meas.to_dict()
    rows = [d.to_dict() for d in ds.demands]
    return {
        "criteria": crit.to_dict(),
        "inputs": {
            "demand": {"source": ds.source, "demands": len(rows), "sha256": _sha256(rows)},
            "catalogue": {"source": meas.source, "sha256": _sha256(entries), "entries": entries},
            **settings,
        },
    }


def plan_network(
    network: Network,
    ds: DemandSet,
    crit: Criteria,
    meas: Measures,
    *,
    method: str,
    time_limit_s: float,
    budget_cny: float | None = None,
    workers: int = 2,
    discount_rate: float = 0.0,
    say: Callable[[str], None] = lambda _m: None,
    t0: float | None = None,
    site_tag: str = "",
    mip_bound: bool = True,
    bound_only: bool = False,
    hard_limit_s: float | None = None,
) -> Plan:
    """The plan of one network (the whole of it: no split by island); ``site_tag`` goes into
    the names of its new substations (``new substation S<tag>.<n>``) so that the plans of
    several groups name theirs apart. ``mip_bound``: HiGHS bounds the optimum beside CP-SAT
    (:mod:`lvplan.planning.mipbound`). ``bound_only``: that bound is the strengthened
    relaxation's alone, with no plan searched beside the search of the plan: a city's groups,
    as each group's worker has one core and its search its share of the deadline (a search
    of the greedy plan's neighbourhoods, each plan checked in AC as found, that never goes on
    from a plan that passed). ``hard_limit_s``
    (seconds from ``t0``): nothing more is started past it (a city group: the city's deadline;
    its own ``time_limit_s`` is its share).

    The candidates (:mod:`lvplan.planning.plan_candidates`), then the verified greedy plan
    (:mod:`lvplan.planning.greedy_rounds`), then the optimal rounds from it
    (:mod:`lvplan.planning.optimal_rounds`), each plan through the AC rounds
    (:mod:`lvplan.planning.rounds`), and the plan that stands as a :class:`Plan`."""
    # (the rounds' modules import this one's types and helpers)
    from lvplan.planning.greedy_rounds import GreedyRounds
    from lvplan.planning.optimal_rounds import OptimalRounds
    from lvplan.planning.plan_candidates import plan_candidates
    from lvplan.planning.rounds import Rounds

    t0 = time.perf_counter() if t0 is None else t0
    deadline = t0 + time_limit_s
    order = sorted(
        range(len(ds.demands)),
        key=lambda i: (ds.demands[i].year if ds.demands[i].year is not None else 0, i),
    )
    inst, mv = plan_candidates(network, ds, crit, meas, order, say, site_tag)
    base = base_margin_map(network, crit)
    parts = split(network, inst)
    if len(parts) > 1:
        say(
            f"parts: {len(parts)} independent parts (largest {len(parts[0].options)} options, "
            f"{len(parts[0].demands)} demands)"
        )
    needs = n1_demands(inst, crit)  # demands whose area class has full N-1
    offers = N1Offers(network, inst) if needs else None  # new ties, moved transformers
    if needs:
        say(f"N-1: {len(needs)} demands of an area class with full N-1")
    r = Rounds(
        network,
        inst,
        mv,
        base,
        parts,
        order,
        say,
        t0=t0,
        time_limit_s=time_limit_s,
        deadline=deadline,
        greedy_until=t0 + hard_limit_s if hard_limit_s is not None else deadline,
        budget_cny=budget_cny,
        needs=needs,
        offers=offers,
    )
    greedy = GreedyRounds(r)
    greedy.run()
    # the check of each year but the last (planning/year_check.py) comes after the rounds:
    # their deadline leaves it the time of as many AC checks (on the district, 2 x 0.9 s: the
    # plans of seed 3 took 59.6 s of the minute before this)
    years = {d.year for d in inst.demands if d.year is not None}
    if len(years) > 1:
        r.deadline -= (len(years) - 1) * r.check_s
    g_sol = greedy.sol
    sol, ev = g_sol, greedy.ev
    greedy_kept = True  # the plan returned is the verified greedy one
    opt_cost = None
    opt: OptimalRounds | None = None
    # --method greedy with --budget: the budget greedy's plan alone, unless it is over the budget
    # (its N-1 measures kept, or its rounded costs): the optimal rounds then look for one within
    if method == "optimal" or (budget_cny is not None and g_sol.cost_cny > budget_cny):
        opt = OptimalRounds(r, g_sol, greedy.ev, workers, mip_bound, bound_only, hard_limit_s)
        sol, ev, greedy_kept, opt_cost = opt.run()
    if opt is not None and method == "optimal" and budget_cny is None:
        sol = opt.final_bound(sol)
    result = _result(
        network,
        inst,
        sol,
        ev,
        method if budget_cny is None else "budget",
        r.cuts,
        mv=mv,
        budget_cny=budget_cny,
    )
    if budget_cny is not None:
        # the objective is the design kW served, and the bound the most any plan within the
        # budget serves (the cost's bound, which the rounds compare, says nothing of that)
        top = sol.bounds.get("served_units_bound")
        got = sum(load_units(inst.demands[inst.options[k].demand].design_kw) for k in sol.chosen)
        result.objective = _served_kw(inst, sol)
        result.bound = math.nan if top is None else top * KW_UNIT
        result.gap = math.nan if top is None else (top - got) / top if top else 0.0
    _unserved_reasons(result, inst, mv, r.cuts, sol, r.withdrawn, budget_cny)
    result.ac_rounds = sum(1 for h in r.history if h.status != "stopped")  # evaluated rounds
    result.runtime_s = time.perf_counter() - t0
    result.greedy_cost_cny = g_sol.cost_cny
    result.greedy_served_kw = _served_kw(inst, g_sol)
    result.optimal_cost_cny = opt_cost
    result.plan_from = "greedy" if greedy_kept else "optimal"
    result.history = r.history
    result.discount_rate = discount_rate
    stopped = r.stopped
    if r.cut_short:  # (said first: the optimal rounds' stop, if any, follows it)
        stopped.insert(0, "the greedy was cut short at the time limit: " + "; ".join(r.cut_short))
    if stopped:
        result.stopped, result.stop_note = "time_limit", "; ".join(stopped)
    if needs:
        served = {inst.options[k].demand for k in sol.chosen}
        result.n1 = {
            "demands_full_n1": len(needs),
            "served": len(needs & served),
            "contingencies_passed": r.n1_judged.get("greedy" if greedy_kept else "optimal", []),
        }
    return result


def _unserved_reasons(
    result: Plan,
    inst: Instance,
    mv: MvResponse,
    cuts: Cuts,
    sol: Solution,
    withdrawn: dict[int, str],
    budget_cny: float | None,
) -> None:
    """Each unserved demand of ``result`` with why: withdrawn so that the greedy plan passes
    AC, or what the greedy finds for it beside the plan (with a budget: that it fits the
    network as it is, and what its cheapest fit costs there and beside the plan)."""
    # the plan built in once, for every unserved (none: no grid made, 0.4 s on the district)
    why = Greedy(LinearGrid(inst, mv, cuts)) if result.unserved else None
    alone = None
    if budget_cny is not None and why is not None:
        alone = Greedy(LinearGrid(inst, mv, cuts))
    for u in result.unserved:
        if u["reason"] is None and u["position"] in withdrawn:  # the greedy plan's, kept
            u["reason"] = withdrawn[u["position"]]
        if u["reason"] is None and why is not None:
            text = why.explain(sol, u["position"])
            reason = text if text.startswith("an option fits") else "no option fits: " + text
            if u["position"] in inst.left_out:
                reason += f"; {inst.left_out[u['position']]}"
            first = None if alone is None else alone.cheapest_fit(u["position"])
            if budget_cny is not None and first is not None:
                # it fits the network as it is: the budget left it out (what the plan's own
                # connections leave for it says why it was not added at the end)
                now = why.cheapest_fit(u["position"])
                reason = (
                    f"left out within the budget of {budget_cny:,.0f} CNY "
                    f"({max(budget_cny - sol.cost_cny, 0.0):,.0f} CNY of it unspent): its "
                    f"cheapest fit costs {first:,.0f} CNY on the network as it is, "
                    + (
                        f"{now:,.0f} CNY beside this plan"
                        if now is not None
                        else f"and none fits beside this plan ({text})"
                    )
                )
            left_out = left_out_for_voltage(inst, u["position"])
            if left_out:  # said plainly: the greedy names such a line only as overloaded
                reason += "; " + left_out
            u["reason"] = reason
        del u["position"]


def _same_served(inst: Instance, a: Solution, b: Solution) -> bool:
    """Whether two plans serve the same demands: a bound of one then bounds the other (the
    cost stage's bound is for the demands it was held to serve; the same design kW from other
    demands is another problem)."""
    return a.served == b.served


def _n1_measure(net, up, held: list[str], users: list[int], demands) -> Measure:
    """A new tie or a moved transformer as a measure of the plan; its "why" names the
    contingencies whose cuts it lifted."""
    users = sorted(set(users))
    route = f"{up.length_m:.0f} m of {up.cable}"
    if up.kind == MeasureKind.MV_TIE_NEW:
        el = f"new tie bus {up.element} - bus {up.to_bus}"
        before, after = "", f"{route}, normally open switch at bus {up.to_bus}"
        what = "a new normally-open tie"
    else:
        el = ElementRef("trafo", up.element)
        before = f"hv bus {int(net.trafo.at[up.element, 'hv_bus'])}"
        after = f"hv from bus {up.to_bus} by {route}"
        what = "moved to another feeder"
    return Measure(
        up.kind.value,
        el,
        before,
        after,
        round(up.cost_cny, 2),
        first_year(demands, users),
        [demands[i].id for i in users],
        f"{what} (N-1): " + ("; ".join(held) or "restores a contingency"),
    )


def _transfer_measure(
    net, inst: Instance, up, users: list[int], fed: list[int], held: list[str], year: int | None
) -> Measure:
    """A transfer (feeder split) as a measure of the plan: the line it opens, the new cable,
    and why: the new load it takes off the lines above (``fed``: the demands it feeds), or
    the AC cuts it lifts (``users``: those too, the demands the cuts counted)."""
    demands = inst.demands
    sp = inst.transfers.get(up.element)
    far = sp.far_bus if sp is not None else "?"
    above = inst.areas[sp.area].path(sp.far_bus)[1:] if sp is not None else []
    # (the new load it feeds: the cuts' demands upstream of it are not moved by it; review,
    # 2026-12-08: they were counted in this kW)
    kw = sum(demands[i].design_kw for i in fed)
    why = (
        f"feeder split: {kw:.0f} kW of new design load fed by a new LV feeder instead of "
        f"through line {up.element}"
        + (f" and the {len(above)} section(s) above it" if above else "")
        + (f" (its {sp.base_ka * 1000:.0f} A of existing load moved with it)" if sp else "")
    )
    if held:
        why += "; lifts: " + "; ".join(held)
    return Measure(
        MeasureKind.TRANSFER.value,
        ElementRef("line", up.element),
        f"line {up.element} ({line_type(net, up.element)}) in service",
        f"line {up.element} open; bus {far} fed by {up.length_m:.0f} m of {up.cable} from "
        f"bus {up.to_bus} (the transformer's LV busbar)",
        round(up.cost_cny, 2),
        year,
        [demands[i].id for i in users],
        why,
    )


def _served_kw(inst: Instance, sol: Solution) -> float:
    return sum(inst.demands[inst.options[k].demand].design_kw for k in sol.chosen)


def _improves(inst: Instance, a: Solution, b: Solution) -> bool:
    """``a`` serves more design kW than ``b``, or as much for less cost."""
    ka, kb = _served_kw(inst, a), _served_kw(inst, b)
    if abs(ka - kb) > 1e-6:
        return ka > kb
    return a.cost_cny < b.cost_cny - 0.5


def _better(inst: Instance, a: Solution, b: Solution) -> bool:
    """``a`` serves more design kW than ``b``, or as much for no more cost."""
    ka, kb = _served_kw(inst, a), _served_kw(inst, b)
    if abs(ka - kb) > 1e-6:
        return ka > kb
    return a.cost_cny <= b.cost_cny + 1e-6


def _upgrade_measure(
    net, inst: Instance, u: int, users: MeasureUsers, cuts: Cuts | None, dated: dict
) -> Measure:
    """A transformer or cable measure (upgrade ``u``) of the plan, with why and its year."""
    demands = inst.demands
    lim_t = inst.criteria.trafo_max_loading_percent
    lim_l = inst.criteria.line_max_loading_percent
    up = inst.upgrades[u]
    if up.kind in (MeasureKind.TRANSFORMER_SWAP, MeasureKind.TRANSFORMER_PARALLEL):
        ids = users.trafo.get(up.element, [])
        before = f"{inst.trafo_kva[up.element]:g} kVA"
        if up.units > 1:  # (a row of parallel units: 2 x 630 kVA)
            before = f"{up.units} x {inst.trafo_kva[up.element] / up.units:g} kVA"
        after = f"{up.rated_kva} kVA" if up.units == 1 else f"{up.units} x {up.rated_kva} kVA"
        if up.kind == MeasureKind.TRANSFORMER_PARALLEL:
            after = f"{inst.trafo_kva[up.element]:g} + {up.rated_kva} kVA"
        kw = sum(demands[i].design_kw for i in ids)
        reason = (
            f"transformer loading{ac_found(cuts, f'trafo {up.element}', u, lim_t)}: "
            f"{inst.trafo_base_kva[up.element]:.0f} kVA-equivalent at the base + {kw:.0f} kW "
            f"of new design load on {before}"
        )
        if not ids:
            reason = (
                "transformer loading (found by the AC check): its existing load draws more "
                "current at the lower voltage the new connections bring"
            )
        el = ElementRef("trafo", up.element)
    else:
        ids = users.line.get(up.element, [])
        before = line_type(net, up.element)
        after = (
            up.cable
            if up.kind in (MeasureKind.LV_CABLE_REPLACE, MeasureKind.MV_CABLE_REPLACE)
            else f"{before} + {up.cable}"
        )
        kw = sum(demands[i].design_kw for i in ids)
        reason = f"line loading or voltage drop: {kw:.0f} kW of new design load beyond it"
        found = ac_found(cuts, f"line {up.element}", u, lim_l)
        if found:
            reason = f"line loading{found}: {kw:.0f} kW of new design load beyond it"
        if (at_base := over_at_base(inst, up.element)) is not None:
            reason = (
                f"line loading: {at_base:.1f} % at the base, over its "
                f"{lim_l:g} % limit before the plan, in the LV network of the demands "
                f"listed ({kw:.0f} kW of new design load): repaired before they connect"
            )
        if up.kind in MV_CABLE_KINDS:
            names = users.held_by.get(u, [])
            reason = (
                f"{inst.mv} feeder section loading (found by the AC check): {kw:.0f} kW of new "
                "design load it carries; " + "; ".join(names)
            ).rstrip("; ")
            if names and all(n.endswith(f"({FAILS_ALREADY})") for n in names):
                # not the new load's doing: the class's N-1 needs the contingency restored
                classes = sorted({demands[i].area_class for i in ids} - {""})
                which = f" ({', '.join(classes)})" if classes else ""
                reason = (
                    "N-1 that the network lacks already, restored for the demands of an area "
                    f"class with full N-1{which}; {kw:.0f} kW of their new design load on the "
                    "loop: " + "; ".join(names)
                )
        elif not ids:
            reason = (
                "line loading (found by the AC check): its existing load draws more current "
                "at the lower voltage the new connections bring"
            )
        el = ElementRef("line", up.element)
    year = first_year(demands, ids)
    if up.kind in MV_CABLE_KINDS and up.element in users.mv_year:
        mv_year = users.mv_year[up.element]
        year = mv_year if year is None else min(year, mv_year)
    if u in dated:
        reason += "; " + year_note(dated[u], year)
        year = dated[u].year
    return Measure(
        up.kind.value,
        el,
        before,
        after,
        round(up.cost_cny, 2),
        year,
        [demands[i].id for i in ids],
        reason,
    )


def _result(
    network: Network,
    inst: Instance,
    sol: Solution,
    ev,
    method: str,
    cuts: Cuts | None = None,
    *,
    mv: MvResponse | None = None,
    check_each_year: bool = True,
    budget_cny: float | None = None,
) -> Plan:
    """The plan ``sol`` as the user gets it: its measures with why and when, its connections
    and what it leaves unserved. ``check_each_year``: each year of the plan checked in AC
    (:mod:`lvplan.planning.year_check`); a city's joined plan does not (its groups did, each on
    its own MV islands, and their measures' years stand)."""
    net = network.pp
    demands = inst.demands
    chosen_by_demand = {inst.options[k].demand: k for k in sol.chosen}
    users = measure_users(net, inst, sol, cuts, chosen_by_demand)
    # the transformer and LV cable measures: dated by the first year that needs them
    loading = {
        u: users.trafo.get(inst.upgrades[u].element, [])
        if inst.upgrades[u].kind in TRAFO_KINDS
        else users.line.get(inst.upgrades[u].element, [])
        for u in sol.upgrades
    }
    dated = measure_years(inst, sol, loading, mv, cuts)
    measures: list[Measure] = []
    for u in sorted(sol.upgrades):
        up = inst.upgrades[u]
        if up.kind in N1_KINDS:
            measures.append(
                _n1_measure(net, up, users.held_by.get(u, []), users.n1.get(u, []), demands)
            )
            continue
        if up.kind == MeasureKind.TRANSFER:
            fed = sorted(set(users.xfer.get(up.element, [])))
            ids = sorted({*fed, *users.xfer_cut.get(up.element, [])})
            measures.append(
                _transfer_measure(
                    net, inst, up, ids, fed, users.held_by.get(u, []), first_year(demands, ids)
                )
            )
            continue
        measures.append(_upgrade_measure(net, inst, u, users, cuts, dated))
    for s in sorted(sol.sites):
        site = inst.sites[s]
        ids = users.site.get(s, [])
        measures.append(
            Measure(
                MeasureKind.NEW_SUBSTATION.value,
                site.name,
                "",
                f"{site_kva(site)} at ({site.lon:.5f}, {site.lat:.5f}), "
                f"{site.tie_m:.0f} m tie of {site.tie_cable} to bus {site.mv_bus}",
                round(site.cost_cny, 2),
                first_year(demands, ids),
                [demands[i].id for i in ids],
                "no existing supply within reach has room (or it is cheaper than reinforcing)",
            )
        )
    # each year of the plan checked in AC (planning/year_check.py); a measure it brings
    # forward says so
    keys = [*sorted(sol.upgrades), *[-1 - s for s in sorted(sol.sites)]]
    postponed = {
        i
        for i, u in enumerate(keys)
        if u in dated
        and (since := first_year(demands, loading[u])) is not None
        and (dated[u].year or since) > since
    }
    years = [m.year for m in measures]
    room = None if budget_cny is None else budget_cny - sol.cost_cny
    checked = (
        check_years(network, inst, sol, keys, years, postponed, tap_room_cny=room)
        if check_each_year
        else YearCheck()
    )
    for y, places in checked.forward.items():
        for i in places:
            m = measures[i]
            m.reason += f"; brought forward to {y}: the AC check of {y} broke a limit without it"
            m.year = y
    # a measure no demand uses (kept after withdrawals, or found by the AC check alone) is the
    # plan's first year's, in plan.csv as in the costs by year (plan.csv left it blank)
    assignments = _assignments(inst, chosen_by_demand)
    given = [y for y in [*(m.year for m in measures), *(a.year for a in assignments)] if y]
    for m in measures:
        if m.year is None and given:
            m.year = min(given)
    unserved = []
    served = set(chosen_by_demand)
    for i, d in enumerate(demands):
        if i in served:
            continue
        unserved.append(
            {
                "demand": d.id,
                "design_kw": round(d.design_kw, 1),  # (as design_kw_served: 0.1 kW)
                "reason": inst.unservable.get(i),
                "position": i,
            }
        )
    out = Plan(
        worse_elsewhere=[] if ev is None else worse_elsewhere(network, inst, sol, ev),
        network=network.name,
        method=method,
        measures=measures,
        assignments=assignments,
        unserved=unserved,
        cost_cny=sol.cost_cny,
        status=sol.status,
        objective=sol.objective,
        bound=sol.bound,
        gap=sol.gap,
        ac_rounds=0,
        runtime_s=0.0,
        greedy_cost_cny=None,
        greedy_served_kw=None,
        optimal_cost_cny=None,
        solution=sol,
        instance=inst,
        changes=solution_changes(inst, sol),
        years_checked=checked.to_dict() if checked.years else {},
    )
    out.add_taps(
        checked.taps,
        tap_measures(net, inst, checked.taps, checked.tap_mended),
        tap_cost_cny(inst.measures),
    )
    return out


def tap_measures(
    net, inst: Instance, taps: dict[int, tuple[int, int, int]], mended: dict[int, list[str]]
) -> list[Measure]:
    """The off-load taps the check of the years moved, as measures of the plan."""
    out = []
    for t, (was, pos, year) in sorted(taps.items()):
        steps = abs(pos - was)
        pct = steps * tap_step_percent(net.trafo.loc[t])
        out.append(
            Measure(
                MeasureKind.TRANSFORMER_TAP.value,
                ElementRef("trafo", t),
                f"tap {was}",
                f"tap {pos}: its LV side about {pct:g} % lower",
                round(tap_cost_cny(inst.measures), 2),
                year,
                [],
                f"the AC check of {year}, its load not yet come, put "
                + ", ".join(mended.get(t, [])[:4])
                + " over the maximum voltage (the 10 kV source high); the off-load tap brings "
                "it back, and every later year holds with it",
            )
        )
    return out


def _assignments(inst: Instance, chosen_by_demand: dict[int, int]) -> list[Assignment]:
    """The plan's connections, one a served demand, in the demands' order."""
    demands = inst.demands
    assignments = []
    for i in sorted(chosen_by_demand):
        k = chosen_by_demand[i]
        o = inst.options[k]
        d = demands[i]
        if o.site is not None:
            conn, tr = inst.sites[o.site].name, inst.sites[o.site].name
        else:
            a = inst.bus_area.get(o.bus) if o.bus is not None else None
            conn = f"bus {o.bus}"
            tr = f"trafo {inst.areas[a].trafo}" if a is not None else ""
        assignments.append(
            Assignment(
                d.id,
                d.design_kw,
                d.year,
                conn,
                o.bus,
                tr,
                o.cable,
                round(service_length_m(o.route_m) if o.cable else o.route_m, 1),
                round(o.cable_cost_cny, 2),
            )
        )
    return assignments


def site_kva(site: Any) -> str:
    """A new substation's units as plan.csv and plan.html say them: "630 kVA", "2 x 630 kVA"."""
    if site.units > 1:
        return f"{site.units} x {site.rated_kva // site.units} kVA"
    return f"{site.rated_kva} kVA"


def line_type(net, idx: int) -> str:
    """A line's ``std_type`` as the plan shows it ("before"), or "line" where it has none: a
    network read from CSV or JSON holds NaN or None there, which printed as "line 900 (nan)"."""
    t = net.line.at[idx, "std_type"] if "std_type" in net.line.columns else None
    return t.strip() if isinstance(t, str) and t.strip() else "line"
