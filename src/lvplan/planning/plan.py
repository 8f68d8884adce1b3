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
"""

from __future__ import annotations

import copy
import dataclasses
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lvplan.criteria import Criteria
from lvplan.errors import InputError
from lvplan.kinds import ElementRef
from lvplan.model.network import Network
from lvplan.planning import candidates, interrupt
from lvplan.planning.candidates import (
    Instance,
    Site,
    build_instance,
    left_out_for_voltage,
    prune_upgrades,
    withhold_ties,
)
from lvplan.planning.demand import DemandSet, read_demand
from lvplan.planning.greedy import Greedy
from lvplan.planning.linear import (
    KW_UNIT,
    Cuts,
    LinearGrid,
    MvResponse,
    load_units,
    mv_response,
)
from lvplan.planning.measures import (
    LV_CABLE_KINDS,
    MV_CABLE_KINDS,
    N1_KINDS,
    TRAFO_KINDS,
    MeasureKind,
    Measures,
    load_measures,
)
from lvplan.planning.mipbound import CutPool
from lvplan.planning.model import PlanModel, Solution, solve_by_parts
from lvplan.planning.n1measures import N1Offers
from lvplan.planning.n1plan import (
    FAILS_ALREADY,
    MAX_CUTS_PER_CONTINGENCY,
    check_plan_n1,
    demands_needing_n1,
    n1_demands,
)
from lvplan.planning.parts import split
from lvplan.planning.polish import polish
from lvplan.planning.repair import MAX_TOUCHED_SHARE, repair, snapshot, touched
from lvplan.planning.sitebound import sites_bound
from lvplan.planning.transfers import offer_transfers
from lvplan.planning.verify import (
    base_margin_map,
    check_plan,
    solution_changes,
    tighten,
    worse_elsewhere,
)
from lvplan.planning.withdraw import withdraw_unverified
from lvplan.planning.years import measure_years, year_note

MAX_ROUNDS = 8
#: More rounds for a plan with N-1 demands: a round whose N-1 check teaches cuts (and may build
#: ties, move units) starts the normal state's tightening again. 6: on the urban district with
#: class A, the greedy that puts a larger measure in place of its own (planning/greedy.py)
#: settles in round 13, serving 229 of 300; with 4 (12 rounds) it did not settle, and planned
#: again without new ties and moves served 183.
MAX_N1_ROUNDS = 6
#: A method's N-1 checks that offer new ties and moved transformers (the cuts they lift stay;
#: later checks add only reinforcement and withdrawals, which end the rounds). Counted in N-1
#: checks, not in rounds: how many rounds the normal state takes first (a cut that settles a
#: limit in one round instead of two) must not take the offers away. Measured on the urban
#: district with class A (bench_plan.py --area-class A): 2 checks serve 179 of 300, 3 serve
#: 230, 4 serve 228; the old rule (the first 6 rounds) served 223, then 179 once a pair's cut
#: took one round less.
N1_OFFER_CHECKS = 3
#: Elements of a failing contingency cut per round when the plan is made again without new ties
#: and moves: as the plan made them before those measures existed.
N1_CUTS_WITHOUT_MEASURES = 5
METHODS = ("optimal", "greedy")
#: the measures whose AC cuts date them by the demands they counted (an LV element relieved)
LV_RELIEF_KINDS = (*LV_CABLE_KINDS, *TRAFO_KINDS)
#: the rounds of the greedy plan made again without new ties and moved transformers
AGAIN = "greedy (again, without new ties and moves)"
#: An optimal round is started only when CP-SAT gets at least this long and the round's AC
#: check (as long as the last one took) still ends by the deadline (``--time-limit``).
MIN_SOLVE_S = 5.0
#: ... and at least this long on a small model (at most :data:`SMALL_MODEL_OPTIONS` connection
#: options and as many upgrades), which CP-SAT proves in well under a second: at
#: ``--time-limit 5`` the 4-demand hand instance returned the greedy plan, its optimum unsought
SMALL_SOLVE_S = 1.0
SMALL_MODEL_OPTIONS = 300
#: The first optimal round's share of the time left (a later one: half). A plan from the
#: relaxation's neighbourhood uses the linear model's room to the last kW and often breaks a
#: limit or two in AC by a fraction of a per cent: the share leaves the next round time to
#: repair it, and the neighbourhood search after it (:data:`POLISH_MIN_S`) time to pay: with
#: 0.65 instead of 0.75, seed 1's first round found the same plan (41,550,855 CNY) and the
#: search after it took it from 41.53 M to 41.43 M CNY; with 0.5 the first round found only
#: 48.63 M (bench_plan.py --time-limit 60).
FIRST_SHARE = 0.65
#: ... and of a plan whose rounds never go on from a plan that passed (a city's groups, whose
#: time left is the next group's; a budget; N-1 demands): as before the neighbourhood search
FIRST_SHARE_ALONE = 0.75
#: The repair's share of a round's time (:mod:`lvplan.planning.repair`).
REPAIR_SHARE = 0.3
#: An optimal plan that passed the AC check with at least this long left, and not proved
#: optimal, starts another round: the search goes on from it, and the cheapest plan that passed
#: stands (a plan repaired greedily keeps measures its moved demands no longer need; CP-SAT
#: from it finds them in seconds, and the time would otherwise go unused). With less, the
#: round is a neighbourhood search (below): on seed 1 a whole round with 13 s left (its model,
#: HiGHS's threads and CP-SAT, whose presolve of the whole model takes seconds) found nothing,
#: where the neighbourhood search found a plan 0.1 M CNY cheaper.
GO_ON_S = 20.0
#: ... a plan by parts (planning/parts.py), which the neighbourhood search does not take: its
#: summary reports each part's cost and bound, and each part has its own search
GO_ON_PARTS_S = 10.0
#: ... and that round's share of the time left
GO_ON_SHARE = 0.85
#: With less than :data:`GO_ON_S` left (but this much), the round that goes on from a plan that
#: passed is a large-neighbourhood search from it (planning/polish.py), each cheaper plan checked
#: in AC as it is found: on the district, seed 1's plan passed with 6 s left, which went unused.
#: (With as long again as the last model of the whole grid took to make: the search makes one.)
POLISH_MIN_S = 3.0
#: ... which leaves this long for the plan's result (its outputs made: 0.7 s on the district)
RESULT_S = 1.0
#: The plans a round that starts from a repaired plan (or an alternative) keeps as its own
#: alternatives: the others it had in hand, should its start break in AC too
ALTERNATIVES_KEPT = 2
#: A round that starts from a repaired plan with less time than this for its search takes the
#: repaired plan as it is (on the district a search of a few seconds from it found nothing
#: cheaper, and its model took 4.4 s to make: the time a second repair needed)
SEARCH_MIN_S = 10.0
#: ... and a round for the repair alone is started with at least this long left (once one
#: has run: as long as it took; its model and repair took 3.3-4.3 s on the district, and a
#: second started with 2 s of this left ended the 60 s plan at 62.7-63.1 s)
REPAIR_MIN_S = 2.0
#: A city group's (``bound_only``) optimal rounds are run only with at least this long left:
#: with less, CP-SAT on one core kept the greedy hint and proved 0 on every 40,000-bus group
#: of the city (its model, HiGHS's copy and the relaxation take ~20 s of it). The group then
#: keeps its verified greedy plan and takes the relaxation's bound alone
#: (:meth:`PlanModel.relaxation_bound`) in the time it has left (a bound round given at least
#: 15 s, past the group's time, bounded every group of the city, gap 34.8 %, but the groups'
#: overruns added up: 895.6 s of the 900, and 937 s with the city's deadline as the only stop).
#: Since a group's round searches the greedy plan's neighbourhoods (its first within a second
#: of its start), 10 s was tried: 12 of the 13,000-transformer city's 45 groups had kept their
#: greedy plans at 30 s, 9 with 12-24 s unused, but at 10 s the groups that searched took the
#: later groups' time (group 28: 39 s given against 53 s, its plan 9.3 % dearer), and the city
#: came to 2,819,413,789 CNY against 2,813,996,216, gap 29.0 % against 27.2 %, 752.8 s wall
#: against 734.8 s. Kept at 30 s.
SEARCH_WORTH_S = 30.0
#: ... for a group of at least this many buses (a smaller group's CP-SAT proves its optimum in
#: a second or two: groups 36-45 of the city, 1,000-1,400 buses)
SEARCH_SKIP_MIN_BUSES = 10_000
#: The longest the sites' bound (:mod:`lvplan.planning.sitebound`) runs for a city group with
#: no bound of its own and no time for the relaxation (its linear program takes under a
#: second on a 40,000-bus group)
SITES_BOUND_S = 10.0


class _OutOfTime(Exception):
    """The next round of the verification loop cannot end by the deadline."""


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
    changes: Any = field(default=None, repr=False)
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
        out = [
            (m.kind, "none" if m.year is None else str(m.year), round(m.cost_cny * 100))
            for m in self.measures
        ]
        kind = MeasureKind.SERVICE_CABLE.value
        out += [
            (kind, "none" if a.year is None else str(a.year), round(a.cable_cost_cny * 100))
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
            # left out of the decision by the criteria, and made worse: said, not repaired
            "pre_existing_elsewhere": self.worse_elsewhere,
            "stopped": self.stopped,
            **({"stop_note": self.stop_note} if self.stopped else {}),
            "runtime_s": round(self.runtime_s, 2),
            "over_time_limit_s": self.over_time_limit_s(),
            "greedy_cost_cny": _r(self.greedy_cost_cny),
            "greedy_design_kw_served": _r(self.greedy_served_kw, 1),
            "optimal_cost_cny": _r(self.optimal_cost_cny),
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


#: The share of the time limit the greedy's rounds with N-1 measures on offer (new ties, moved
#: units) may take before the plan is made again without them, as when they do not settle: on
#: the district with class A (60 s) they were unsettled after 14 rounds (79 s), and the rounds
#: without them took 30 s more (110 s in all; 67 s with this share)
OFFERS_SHARE = 0.5


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
    its own ``time_limit_s`` is its share)."""
    t0 = time.perf_counter() if t0 is None else t0
    deadline = t0 + time_limit_s
    check_s = [0.0]  # how long the last round's AC check (and N-1 check) took
    over_s = [0.0]  # how far the last CP-SAT solve ran past the time it was given (its model)
    model_s = [0.0]  # how long the last plan model of the whole grid took to make
    stopped: list[str] = []  # why the rounds stopped at the deadline
    # past ``deadline`` (a city group's: the city's, its own is a share) the greedy's rounds
    # go on only while they settle; then what breaks limits is withdrawn (``verified``)
    greedy_until = t0 + hard_limit_s if hard_limit_s is not None else deadline
    cut_short: list[str] = []  # the greedy passes whose rounds the time limit cut short
    order = sorted(
        range(len(ds.demands)),
        key=lambda i: (ds.demands[i].year if ds.demands[i].year is not None else 0, i),
    )
    inst = build_instance(
        network, ds.demands, crit, meas, other_feeder_ties=candidates.OTHER_FEEDER_TIES
    )
    mv: MvResponse | None = None
    if any(s.tie_of is not None for s in inst.sites):
        # the screen runs on the candidates without any tie (it leaves them aside), so that
        # its 10 kV response is the plan's when no tie is kept (on a 40,000-bus group of the
        # city, the response with every tie took 4.1 s and the screen 6.3 s)
        bare = dataclasses.replace(inst, stats=dict(inst.stats))
        withhold_ties(bare, ())
        mv = mv_response(network, bare)
        short = _left_out(bare, mv, order) | _radial_n1(network, bare, crit)
        dropped = withhold_ties(inst, short)
        if len(inst.sites) != len(bare.sites):
            mv = None  # (the ties kept: their rows and columns)
        say(
            f"ties to other feeders: {inst.stats['other_feeder_ties']} offered for the "
            f"{len(short)} demands a plan without them leaves out ({dropped} left out)"
        )
    radial = _drop_radial_n1(network, inst, crit)
    if radial:
        say(
            f"N-1: {radial} options of N-1 demands at new sites tied to the source busbar left "
            "out (a radial feeder of its own: no tie restores it)"
        )
    if site_tag:
        inst.sites = [dataclasses.replace(s, name=_tagged(inst, s, site_tag)) for s in inst.sites]
    say(
        f"candidates: {inst.stats['options']} connection options, {inst.stats['sites']} sites, "
        f"{inst.stats['upgrades']} upgrades; {len(inst.unservable)} demands unservable"
    )
    if mv is None:
        mv = mv_response(network, inst)
    pruned = prune_upgrades(inst, mv)
    say(f"upgrades: {len(inst.upgrades)} kept, {pruned} that no plan can need dropped")
    if offer_transfers(network, inst):
        say(
            f"transfers (feeder splits): {inst.stats['transfers']} offered "
            f"({inst.stats['transfer_twins']} twin options), "
            f"{inst.stats['transfers_pruned']} candidates left out"
        )
    base = base_margin_map(network, crit)
    parts = split(network, inst)
    if len(parts) > 1:
        say(
            f"parts: {len(parts)} independent parts (largest {len(parts[0].options)} options, "
            f"{len(parts[0].demands)} demands)"
        )
    cuts = Cuts()
    history: list[PlanRound] = []
    needs = n1_demands(inst, crit)  # demands whose area class has full N-1
    n1_judged: dict[str, list[str]] = {}
    offers = N1Offers(network, inst) if needs else None  # new ties, moved transformers
    n1_cuts = MAX_CUTS_PER_CONTINGENCY  # elements of a failing contingency cut per round
    if needs:
        say(f"N-1: {len(needs)} demands of an area class with full N-1")

    withdrawn: dict[int, str] = {}  # demands withdrawn so that the plan passes AC, and why
    # held by an AC check and its tightening: the optimiser's probe (below) runs them on its
    # diving thread, and may still run when the round's own check starts (a search that
    # proved its plan returns without waiting for that thread)
    ac_lock = threading.Lock()
    passed: dict[tuple, Any] = {}  # the evaluation of each plan that passed, by its choices
    refused_plans: set[tuple] = set()  # ... and the choices of each a round's check refused
    # the last plan a neighbourhood search's check refused: (its choices, evaluation, broken)
    refused: list[tuple[tuple, Any, Any] | None] = [None]

    def past_offers() -> bool:
        return time.perf_counter() >= t0 + OFFERS_SHARE * time_limit_s

    def choices(sol: Solution) -> tuple:
        return (tuple(sorted(sol.chosen)), tuple(sorted(sol.upgrades)), tuple(sorted(sol.sites)))

    def verified(solve: Callable[[], Solution], name: str) -> tuple[Solution, Any, int]:
        broken: list[Any]
        # (a greedy plan that does not settle is made to pass by withdrawals: not with a
        # budget, nor with N-1 measures on offer, whose plan is made again without them first)
        withdraws = budget_cny is None and offers is None
        timed_out = False  # (the time limit ended the rounds)
        counts: list[int] = []  # the limits each round broke
        rounds = MAX_ROUNDS + (MAX_N1_ROUNDS if needs else 0)
        n1_checks = [0]
        # the optimal rounds go on from a plan that passed while a search has time (below):
        # the cheapest plan that passed stands
        best: tuple[Solution, Any, int] | None = None
        # (not a city group's: its worker's time is the next group's)
        go_on = name == "optimal" and budget_cny is None and not needs and not bound_only
        for rnd in range(1, rounds + 1):
            interrupt.check()  # (a Ctrl-C Python lost: planning/interrupt.py)
            try:
                sol = solve()
            except _OutOfTime as exc:
                history.append(PlanRound(name, rnd, math.nan, "stopped", 0, [str(exc)]))
                if best is not None:
                    return best
                raise
            if sol.status not in ("optimal", "feasible"):
                history.append(PlanRound(name, rnd, math.nan, sol.status, 0, []))
                raise InputError(f"plan: the {name} model has no solution ({sol.status})")
            known = passed.get(choices(sol))  # the same changes passed already (a solve
            t_check = time.perf_counter()
            if known is not None:  # that kept its hint): not checked a second time
                (ev, n1_judged[name]), broken = known, []
            else:
                with ac_lock:  # (a probe still running on the diving thread: see probe)
                    ev, broken = check_plan(network, inst, sol, base)
                interrupt.check()
            with ac_lock:
                notes = tighten(network, inst, sol, ev, broken, cuts) if broken else []
            if known is not None:
                notes = (
                    ["patched greedily where the AC check broke the last plan: passed its check"]
                    if sol.bounds.get("plan_by") == "patch"
                    else [
                        "the same changes as a plan that passed the AC check: not evaluated again"
                    ]
                )
            if not broken and needs and known is None:  # now the 10 kV loops' N-1
                # new ties and moves are offered in the first rounds; later failures are
                # reinforced or withdrawn as before, so the rounds end
                offer = offers if n1_checks[0] < N1_OFFER_CHECKS else None
                n1_checks[0] += 1
                failing, more, judged = check_plan_n1(
                    network, inst, sol, needs, cuts, offer, n1_cuts
                )
                broken = list(failing)
                notes += more
                n1_judged[name] = judged
            if known is None:
                check_s[0] = time.perf_counter() - t_check
            history.append(PlanRound(name, rnd, sol.cost_cny, sol.status, len(broken), notes))
            if broken:
                refused_plans.add(choices(sol))
            say(
                f"{name} round {rnd}: {sol.cost_cny:,.0f} CNY, {sol.status}, "
                f"{_n(len(broken), 'limit')} broken in AC ({time.perf_counter() - t0:.1f} s)"
                + "".join(f"\n    {n}" for n in notes[:40])
            )
            if broken and name == "greedy" and offers is not None and past_offers():
                # the rounds with new ties and moves have not settled in their share of the
                # time: the plan made again without them (below), whose rounds settle sooner
                # (the district with class A: 14 rounds, 79 s, unsettled, and then 7 more)
                raise InputError(
                    f"plan: the greedy plan with new ties and moves still breaks limits in the "
                    f"AC check after {OFFERS_SHARE:.0%} of the time limit ({rnd} rounds)"
                )
            if (
                broken
                and withdraws
                and name.startswith("greedy")
                and rnd < rounds
                and len(broken) >= min(counts, default=math.inf)
                and time.perf_counter() >= greedy_until
            ):
                # past the time limit (a city group: the city's) and no fewer limits broken
                # than in an earlier round: the demands that break limits are withdrawn now, not
                # after the last round (3,000 demands on the district, --time-limit 60: 8
                # rounds, 81, 16, 23, 5, 10, 8, 11 and 8 limits, and two more greedy passes ran
                # to 182 s). Rounds that still settle go on: 5,000 demands on sz-futian with 2 s,
                # each pass cut after its first round, served 23 (withdrawn for 10 kV feeder
                # heads at 226 %), against 1,033 when they settle (5 AC rounds a group)
                cut_short.append(
                    f"{name} after {_n(rnd, 'round')}, the connections that broke limits withdrawn"
                )
                timed_out = True
                say(
                    f"{name}: past the time limit after {_n(rnd, 'round')} with limits still "
                    "broken: the connections that break them are withdrawn"
                )
                break
            counts.append(len(broken))
            if not broken:
                passed[choices(sol)] = (ev, n1_judged.get(name, []))
                if best is not None and not _improves(inst, sol, best[0]):
                    return best
                best = (sol, ev, rnd)
                left = deadline - time.perf_counter() - check_s[0] - over_s[0]
                # (a plan by parts goes on by parts, as before the neighbourhood search)
                at_least = POLISH_MIN_S + RESULT_S if len(parts) <= 1 else GO_ON_PARTS_S
                if not (go_on and sol.status == "feasible" and left >= at_least):
                    return best
                say(
                    f"{name}: the plan passed with {left:.0f} s left: the search goes on from it"
                    + (" (a neighbourhood search)" if left < GO_ON_S and len(parts) <= 1 else "")
                )
        if best is not None:  # (a later round's plan broke limits to the last round)
            return best
        # a verified plan all the same; with N-1 measures on offer, first the plan made again
        # without them (below), and only that one withdraws
        if name.startswith("greedy") and withdraws:
            sol, ev, why, counts = withdraw_unverified(
                network,
                inst,
                sol,
                broken,
                base,
                ev=ev,
                n1_check=(lambda s: check_plan_n1(network, inst, s, needs, cuts, None, n1_cuts)[0])
                if needs
                else None,
                n1_demands=needs,
                say=say,
                cause="the time limit ended the AC rounds"
                if timed_out
                else "the AC rounds did not converge",
            )
            withdrawn.update(why)
            for r, n_broken in enumerate(counts):  # one round per AC evaluation
                last = r == len(counts) - 1
                history.append(
                    PlanRound(
                        f"{name} (withdrawal)",
                        rounds + 1 + r,
                        sol.cost_cny if last else math.nan,
                        sol.status,
                        n_broken,
                        [f"{len(why)} demands withdrawn so that the plan passes"] if last else [],
                    )
                )
            return sol, ev, len(history)
        raise InputError(
            f"plan: the {name} plan still breaks limits in the AC check after {rounds} "
            "rounds; no plan is returned"
        )

    kept: list[int] = []  # the N-1 measures (ties, moves) the greedy's rounds have built
    # sites the greedy does not take: first the places tied to other feeders (its plan takes
    # the nearest tie's; they are offered for the demands it would leave out: see below)
    ties = frozenset(s.id for s in inst.sites if s.tie_of is not None)
    skip: list[frozenset[int]] = [ties]

    def greedy() -> Solution:
        grid = LinearGrid(inst, mv, cuts)
        out = Greedy(grid, tuple(kept), skip[0]).run(order, budget_cny)
        if budget_cny is not None:
            # with a budget, the order decides what it buys (on one order of the district's
            # demands, 10 M CNY bought 63 where 5 M bought 105): the demands also by cost per
            # kW, and the plan that serves more design kW (or as much for less) is the greedy one
            probe = Greedy(grid, tuple(kept))
            dense = Greedy(grid, tuple(kept)).run(probe.by_cost_per_kw(order), budget_cny)
            if _improves(inst, dense, out):
                out = dense
        # a later round keeps them (unless withdrawn): with them undone, the contingency they
        # restored would fail again, and the rounds would go back and forth
        kept[:] = [u for u in out.upgrades if inst.upgrades[u].kind in N1_KINDS]
        return out

    try:
        g_sol, g_ev, _g_rounds = verified(greedy, "greedy")
    except InputError as exc:
        if offers is None:
            raise
        # the rounds with new ties and moves did not settle: plan again with feeder
        # reinforcement and withdrawals alone, as the plan was made before those measures
        say(f"{exc}; planned again without new ties and moved transformers")
        offers, cuts, kept[:], n1_cuts = None, Cuts(), [], N1_CUTS_WITHOUT_MEASURES
        # (its rounds named apart from the first attempt's in the summary's rounds)
        g_sol, g_ev, _g_rounds = verified(greedy, AGAIN)
        if AGAIN in n1_judged:
            n1_judged["greedy"] = n1_judged.pop(AGAIN)
    between = frozenset(s.id for s in inst.sites if s.between)
    servable = [i for i in range(len(inst.demands)) if i not in inst.unservable]

    def take_if_better(solve: Callable[[], Solution], name: str, before: tuple) -> None:
        """A greedy pass's verified plan stands if it serves more design kW (or as much for
        less) than the one standing; otherwise ``before`` (the cuts, kept N-1 measures, cut
        count and withdrawals of the plan standing) is put back."""
        nonlocal g_sol, g_ev, _g_rounds, cuts, n1_cuts
        try:
            out = verified(solve, name)
        except InputError as exc:
            say(f"{exc}; the greedy plan before stands")
            out = None
        if out is not None and _improves(inst, out[0], g_sol):
            g_sol, g_ev, _g_rounds = out
            return
        cuts, kept[:], n1_cuts, first_withdrawn = before
        withdrawn.clear()
        withdrawn.update(first_withdrawn)

    def again(skipped: frozenset[int], name: str, why: str) -> None:
        """The greedy once more from the start, its own rounds and cuts, without the sites
        ``skipped``; its plan stands if it serves more design kW (or as much for less), with
        its cuts (the optimiser keeps every site)."""
        nonlocal cuts
        say(
            f"greedy: {sum(not g_sol.served[i] for i in servable)} demands it could serve left "
            f"out: again from the start {why}"
        )
        before = (cuts, list(kept), n1_cuts, dict(withdrawn))
        skip[0], cuts, kept[:] = skipped, Cuts(), []
        withdrawn.clear()  # (the reasons are the plan's that stands)
        take_if_better(greedy, name, before)
        skip[0] = frozenset()

    def lacking() -> bool:
        return budget_cny is None and not needs and not all(g_sol.served[i] for i in servable)

    if between & set(g_sol.sites) and lacking():
        # the greedy left demands it could serve (the 10 kV voltage room spent by those before
        # them: the order of its choices, and the AC cuts its rounds found, decide): without
        # the sites between two clusters (as it planned before they were offered)
        again(
            between | ties,
            "greedy (founded sites only)",
            f"without the {len(between)} sites between two clusters",
        )
    if ties and lacking():
        # ... and then, on top of the plan that stands (its connections, measures and cuts
        # kept), the demands it left out connected where they fit with every site, the places
        # tied to other feeders too: the plan before took the nearest tie's only
        stands = g_sol
        can = set(servable)
        left = [i for i in order if i in can and not stands.served[i]]
        say(
            f"greedy: {len(left)} demands it could serve left out: connected on top of its "
            "plan, with the ties to other feeders"
        )

        def on_top() -> Solution:
            grid = LinearGrid(inst, mv, cuts)
            # (None: the AC check's new cuts leave a held option no room: the plan as it was)
            return Greedy(grid, tuple(stands.upgrades)).extend(list(stands.chosen), left) or stands

        take_if_better(
            on_top,
            "greedy (ties to other feeders)",
            (copy.deepcopy(cuts), list(kept), n1_cuts, dict(withdrawn)),
        )
    _greedy_rounds = [len(history)]
    sol, ev = g_sol, g_ev
    greedy_kept = True  # the plan returned is the verified greedy one
    opt_cost = None
    # --method greedy with --budget: the budget greedy's plan alone, unless it is over the budget
    # (its N-1 measures kept, or its rounded costs): the optimal rounds then look for one within
    if method == "optimal" or (budget_cny is not None and g_sol.cost_cny > budget_cny):
        last = [g_sol]  # each round starts from the newest plan (the greedy first)
        #: the plans the rounds had in hand beside the one they took (alternatives, repaired
        #: plans): the last chance when no round has time to repair the newest (below)
        in_hand: list[Solution] = []
        bounded: list[Solution | None] = [None]  # the round that proved the most
        #: ... and for each set of demands served (a bound is for the demands its round served)
        by_served: dict[tuple[bool, ...], Solution] = {}
        prev_cuts: list[Cuts | None] = [None]  # the cuts the last round was solved under
        memo: dict[int, Solution] = {}  # by part: its last solution
        repair_s = [REPAIR_MIN_S]  # how long the last round for a repair alone took
        focus: list[set[int] | None] = [None]  # the demands the last greedy patch moved
        # the residual-capacity inequalities found so far: the next round's bound thread starts
        # from them, made again from its own model's rows (planning/mipbound.py CutPool)
        pool = CutPool()

        def probe(s: Solution) -> dict[str, int]:
            """The AC check of a plan the optimiser is still improving on (the relaxation
            neighbourhood's first, planning/mipbound.py MipBound._probed, on the diving thread
            while this one waits for it; or a neighbourhood's plan ``passes`` refused, whose
            check is not run again): what its cuts would take off each line's and
            transformer's room, in load units, by the name of the element's drop in the model
            (``DL``/``DT``). The cuts themselves are not kept: the round's own check decides."""
            with ac_lock:  # (the round's own check waits for it: planning/verify.py)
                had = refused[0]
                if had is not None and had[0] == choices(s):
                    ev, broken = had[1], had[2]
                    refused[0] = None  # (its evaluation holds a network: read once)
                else:
                    ev, broken = check_plan(network, inst, s, base)
                if not broken:
                    return {}
                more = copy.deepcopy(cuts)
                tighten(network, inst, s, ev, broken, more, offer=False)
            less: dict[str, int] = {}
            for tag, now, was in (
                ("DL", more.line_kw, cuts.line_kw),
                ("DT", more.trafo_kw, cuts.trafo_kw),
            ):
                for e, kw in now.items():
                    if kw > was.get(e, 0.0):
                        less[f"{tag}{e}"] = math.ceil((kw - was.get(e, 0.0)) / KW_UNIT)
            return less

        def passes(s: Solution) -> bool:
            """A neighbourhood search's plan checked in AC as it is found (recorded as passed:
            the round's own check does not evaluate it again)."""
            with ac_lock:
                ev, broken = check_plan(network, inst, s, base)
            if broken:
                refused[0] = (choices(s), ev, broken)  # (probe reads it: the room it lacked)
                return False
            passed[choices(s)] = (ev, [])
            return True

        def polished(left: float) -> Solution:
            """The plan that passed last, made cheaper by a large-neighbourhood search in the
            ``left`` seconds (too few for a round's search: planning/polish.py)."""
            t_p = time.perf_counter()
            timings: dict[str, float] = {}
            out = polish(
                LinearGrid(inst, mv, cuts),
                last[0],
                time_limit_s=left - RESULT_S,
                workers=workers,
                seed=len(history),
                accept=passes,
                shortfall=probe,
                timings=timings,
                focus=focus[0],
            )
            focus[0] = None
            # (a plan solved by parts made no model of the whole grid before: the next search
            # counts this one's)
            model_s[0] = max(model_s[0], timings.get("model_s", 0.0))
            over_s[0] = max(0.0, time.perf_counter() - t_p - (left - RESULT_S))
            if out is None:
                raise _OutOfTime(
                    f"a neighbourhood search of {left:.1f} s found no cheaper plan than the one "
                    "that passed"
                )
            b = bounded[0]  # (it serves what the plan that passed serves)
            if b is not None and _same_served(inst, b, out):
                out = dataclasses.replace(
                    out,
                    bound=min(b.bound, out.objective),
                    gap=max(0.0, out.objective - b.bound) / max(abs(out.objective), 1e-9),
                    bounds=dict(b.bounds, plan_by="polish", from_round="an earlier round's bound"),
                )
            last[0] = out
            return out

        small = max(len(inst.options), len(inst.upgrades)) <= SMALL_MODEL_OPTIONS
        min_solve = SMALL_SOLVE_S if small else MIN_SOLVE_S

        def optimal() -> Solution:
            # the time CP-SAT may take: what is left once this round's AC check (as long as the
            # last one) and the model's making (as the last solve's overrun) are set aside
            now = time.perf_counter()
            # (rounds that may go on from a plan that passed: not a city's groups, a budget or
            # N-1 demands)
            polishes = budget_cny is None and not needs and not bound_only
            # (a city group's round searches its hint's neighbourhoods, each plan checked as
            # it is found, but never goes on from a plan that passed: its time left is the
            # next group's)
            searches = budget_cny is None and not needs
            left = deadline - now - check_s[0] - over_s[0]
            if (
                polishes
                and len(parts) <= 1
                and last[0] is not g_sol
                and choices(last[0]) not in passed
                and deadline - now > check_s[0] + RESULT_S + 0.5
            ):
                # the last plan broke a few limits: first patched greedily where the new cuts
                # bear (0.2 s), checked in AC as it is; passed, it is the round's plan and the
                # search goes on from it. Only if it fails is the CP-SAT repair made (its model
                # takes 3 s on the district, its round 8 s: seed 1's 60 s ended with two such
                # rounds, each plan 0.6-1.0 % over one limit, and the greedy plan returned)
                grid_now = LinearGrid(inst, mv, cuts)
                quick, patched_who = _patched(grid_now, prev_cuts[0], cuts, last[0])
                if quick is not None and _better(inst, quick, g_sol) and passes(quick):
                    # (the search from it sets the demands it moved free first, with their
                    # rivals: the greedy placed them one at a time; seed 1: 39.87 M CNY to
                    # 39.57-39.59 M in the 11-13 s left, where the search's own draws found
                    # 39.79 M)
                    focus[0] = patched_who
                    prev_cuts[0] = snapshot(cuts)
                    say(
                        f"optimal: the last plan patched where the AC check broke it: "
                        f"{quick.cost_cny:,.0f} CNY, passed"
                    )
                    out = dataclasses.replace(quick, seconds=time.perf_counter() - now)
                    out.bounds = {"plan_by": "patch"}
                    b = bounded[0]
                    if b is not None and _same_served(inst, b, out):
                        out = dataclasses.replace(
                            out,
                            bound=min(b.bound, out.objective),
                            gap=max(0.0, out.objective - b.bound) / max(abs(out.objective), 1e-9),
                            bounds=dict(
                                b.bounds, plan_by="patch", from_round="an earlier round's bound"
                            ),
                        )
                    last[0] = out
                    return out
            # (not a plan by parts: its summary reports each part's cost and bound, which a
            # search of the whole grid's model would void; each part has its own search)
            if (
                last[0] is not g_sol
                and choices(last[0]) in passed
                and left < GO_ON_S
                and len(parts) <= 1
            ):
                if left - RESULT_S < POLISH_MIN_S + model_s[0]:  # (its model is made first)
                    raise _OutOfTime(f"{left:.1f} s left: too little for a neighbourhood search")
                return polished(left)
            focus[0] = None  # (a round of its own: a later search's focus is its own patch's)
            # a plan that broke a few limits is repaired without a search (below), which needs
            # only seconds: a round for that alone when a search has no time
            repairable = last[0] is not g_sol and choices(last[0]) not in passed
            if left < min_solve and not (repairable and left + over_s[0] >= repair_s[0]):
                raise _OutOfTime(
                    f"stopped at the time limit ({time_limit_s:g} s): "
                    f"{max(deadline - now, 0.0):.1f} s left, a round needs {min_solve:g} s of "
                    f"CP-SAT + {check_s[0]:.1f} s of AC check + {over_s[0]:.1f} s to make the model"
                )
            grid = LinearGrid(inst, mv, cuts)
            before, prev_cuts[0] = prev_cuts[0], snapshot(cuts)
            # the first round takes most of the time; a later one repairs a few limits
            if len(history) <= _greedy_rounds[0]:
                # (a plan whose rounds never go on from a plan that passed keeps the share
                # they were measured with: a city's groups, a budget, N-1 demands)
                share = FIRST_SHARE if polishes else FIRST_SHARE_ALONE
            elif choices(last[0]) in passed:  # going on from a plan that passed: the time
                share = GO_ON_SHARE  # left, but the AC check's (its plan stands if it fails)
            else:
                share = 0.5
            given = max(min_solve, share * left)
            if len(parts) > 1 and budget_cny is None:
                out = solve_by_parts(
                    grid,
                    parts,
                    last[0],
                    time_limit_s=given,
                    workers=workers,
                    memo=memo,
                    fallback=g_sol,
                )
            else:
                t_m = time.perf_counter()
                made = PlanModel(grid, budget_cny=budget_cny)
                model_s[0] = time.perf_counter() - t_m
                mdl: PlanModel | None = made
                fits = budget_cny is None or last[0].cost_cny <= budget_cny
                if fits and not made.hint(last[0]) and last[0] is not g_sol:
                    # the newest plan broke a limit the AC check has since cut (a plan from
                    # the relaxation's neighbourhood uses the room to the last kW): start
                    # from it repaired where the new cuts bear (planning/repair.py), or from
                    # the verified greedy plan where that is better
                    t_rep = time.perf_counter()
                    # ... or from one of its alternatives (planning/model.py Solution) that fits
                    # them, when it costs less than the repair: the relaxation neighbourhood's
                    # last plan may break a limit whose repair is dear, where the plan it found
                    # before it did not use that room (seed 1 of the district). (Checked first:
                    # the repair spends the model.)
                    fit = [made.hint(a) for a in last[0].alternatives]
                    spare = [a for a, ok in zip(last[0].alternatives, fit, strict=True) if ok]

                    def repaired(
                        sol: Solution, model: PlanModel | None
                    ) -> tuple[Solution | None, int]:
                        """``sol`` repaired, and how many demands it connected anew."""
                        who = touched(grid, before, cuts, sol) if before is not None else None
                        if who is None:  # (none touched: the measures alone, chosen again)
                            return None, 0
                        # (at most what the time limit leaves once the AC check is set aside;
                        # in a round for the repair alone, a second: it starts from its
                        # greedy repair, and the time goes to the next AC check)
                        cap_s = deadline - time.perf_counter() - check_s[0] - 1.0
                        if given < SEARCH_MIN_S:
                            cap_s = min(cap_s, 1.0)
                        got = repair(
                            grid,
                            sol,
                            who,
                            time_limit_s=max(0.1, min(REPAIR_SHARE * given, cap_s)),
                            workers=workers,
                            model=model,  # (spent: a search below makes its own)
                        )
                        return got, len(who)

                    fixed, moved = repaired(last[0], made)
                    # the alternatives that do not fit the cuts either, repaired as well while
                    # the time allows (each makes a model: as long as the round's took)
                    for a, ok in zip(last[0].alternatives, fit, strict=True):
                        spent_s = time.perf_counter() - t_rep
                        if ok or deadline - time.perf_counter() - check_s[0] < 2 * spent_s:
                            continue
                        again, _ = repaired(a, None)
                        if again is not None:
                            spare.append(again)
                    hand = sorted(
                        ([fixed] if fixed is not None else []) + spare,
                        key=lambda a: (-_served_kw(inst, a), a.cost_cny),
                    )
                    in_hand.extend(hand)
                    start = hand[0] if hand and _better(inst, hand[0], g_sol) else g_sol
                    began = (
                        "verified greedy plan"
                        if start is g_sol
                        else "repaired plan"
                        if start is fixed
                        else "alternative"
                    )
                    if start is not g_sol:  # (the others, should this one break in AC too)
                        others = [a for a in hand if a is not start][:ALTERNATIVES_KEPT]
                        start = dataclasses.replace(start, alternatives=others)
                    given = max(min_solve, given - (time.perf_counter() - t_rep))
                    say(
                        "optimal: the last plan no longer fits the cuts; "
                        + (
                            f"{moved} demands connected anew: {fixed.cost_cny:,.0f} CNY"
                            if fixed is not None
                            else "no repair"
                        )
                        + (
                            f"; {len(spare)} of its alternatives fit them or were repaired: "
                            + ", ".join(f"{a.cost_cny:,.0f}" for a in spare)
                            + " CNY"
                            if spare
                            else ""
                        )
                        + f"; the round starts from the {began}"
                    )
                    if start is not g_sol and given < SEARCH_MIN_S:
                        # too little time for a search to pay (making the model with its
                        # threads takes seconds): the repaired plan is the round's, and the
                        # time goes to its AC check and, if needed, one more repair
                        mdl = None
                    else:
                        mdl = PlanModel(grid, budget_cny=budget_cny)
                        if not mdl.hint(start) and start is not g_sol:
                            mdl = PlanModel(grid, budget_cny=budget_cny)
                            mdl.hint(g_sol)
                if mdl is not None and left < min_solve:  # (a round for a repair alone)
                    raise _OutOfTime(
                        f"stopped at the time limit ({time_limit_s:g} s): {max(left, 0.0):.1f} s "
                        f"left, too little for a search, and no repaired plan to check instead"
                    )
                if mdl is None:
                    out = dataclasses.replace(start, status="feasible", seconds=0.0)
                    # (the next such round is started only with as long left as this one took)
                    repair_s[0] = max(REPAIR_MIN_S, time.perf_counter() - now)
                else:
                    out = mdl.solve(
                        time_limit_s=given,
                        workers=workers,
                        mip_bound=mip_bound,
                        bound_only=bound_only,
                        pool=pool,
                        probe=probe,
                        # (a round too short for the relaxation's neighbourhood searches its
                        # hint's neighbourhoods, each plan checked in AC as it is found)
                        accept=passes if searches and len(parts) <= 1 else None,
                        seed=len(history),
                        # (... for the time left: no AC check of its plan follows, nor a
                        # repair; but its last plan's, as found, and the round's end: on seed 2
                        # the plan took 0.9 s after the search to return)
                        search_s=deadline - time.perf_counter() - 2 * RESULT_S - check_s[0],
                    )
                    if budget_cny is None and mdl.served_proven is not None:
                        # the demands served are the most design kW any plan serves: every
                        # one with an option, or the first stage proved it (summary.json;
                        # with a budget, its kW bound is served_units_bound)
                        out.bounds["served_proven"] = mdl.served_proven
            if out.bounds.get("plan_by") != "neighbourhoods":  # (that search took the time left)
                over_s[0] = max(0.0, time.perf_counter() - now - given)
            rel_cny, carried = (
                out.bounds.get("relaxation_strengthened"),
                out.bounds.get("relaxation_carried"),
            )
            if rel_cny is not None and carried:
                say(
                    f"optimal: the relaxation with {carried} inequalities carried from earlier "
                    f"rounds and {out.bounds.get('relaxation_rounds', 0)} rounds more: "
                    f"{rel_cny:,.0f} CNY"
                )
            if out.status in ("optimal", "feasible"):
                # each round's model only adds cuts to the one before: a bound stays a bound
                if math.isfinite(out.bound):
                    key = tuple(out.served)
                    had = by_served.get(key)
                    if had is None or out.bound > had.bound:
                        by_served[key] = out
                b = bounded[0]
                if math.isfinite(out.bound) and (b is None or out.bound > b.bound):
                    bounded[0] = out
                elif b is not None and _same_served(inst, b, out):
                    out = dataclasses.replace(
                        out,
                        bound=min(b.bound, out.objective),
                        gap=max(0.0, out.objective - b.bound) / max(abs(out.objective), 1e-9),
                        bounds=dict(b.bounds, from_round="an earlier round's bound"),
                    )
                last[0] = out
            return out

        room_s = deadline - time.perf_counter() - check_s[0] - over_s[0]
        try:
            if (
                bound_only
                and budget_cny is None
                and not needs
                and room_s < SEARCH_WORTH_S
                and len(network.pp.bus) >= SEARCH_SKIP_MIN_BUSES
            ):
                raise _OutOfTime(
                    f"{max(room_s, 0.0):.1f} s left: too little for a search on one core "
                    f"(at least {SEARCH_WORTH_S:g} s); the relaxation's bound alone"
                )
            o_sol, o_ev, _o_rounds = verified(optimal, "optimal")
        except _OutOfTime as exc:  # the best plan that passed: the verified greedy one
            if budget_cny is not None and g_sol.cost_cny > budget_cny:
                raise InputError(
                    f"--budget: no AC-verified plan within {budget_cny:,.0f} CNY was found ({exc})"
                ) from None
            # ... unless an alternative of the last round's plan (one the round found before
            # it, or repaired to its cuts) passes the AC check as it is: a check takes 0.4 s on
            # the district where a round for a repair takes 8 s (seed 1: its repairs broke one
            # limit each, 0.6-1.0 % over, and the 60 s ended with 39.75 M CNY plans in hand and
            # the greedy plan's 46.64 M returned)
            spare: Solution | None = None
            tried: list[tuple[Solution, int]] = []
            if budget_cny is None and not needs and last[0] is not g_sol:
                # ... and each of them, and the last plan itself, patched greedily where the
                # newest cuts bear (as a repair starts, planning/repair.py; 0.2 s with its grid,
                # where the repair's CP-SAT model takes 3 s to make)
                grid_now = LinearGrid(inst, mv, cuts)
                seen = set(refused_plans)
                alts = []
                for a in [last[0], *last[0].alternatives, *in_hand]:
                    time_left = deadline - time.perf_counter() - RESULT_S - check_s[0]
                    p = _patched(grid_now, prev_cuts[0], cuts, a)[0] if time_left > 0.5 else None
                    for b in (a, p):
                        if b is not None and choices(b) not in seen:
                            seen.add(choices(b))
                            alts.append(b)

                def check(a: Solution) -> tuple[Any, list]:
                    with ac_lock:
                        return check_plan(network, inst, a, base)

                until = deadline - RESULT_S
                spare, o_ev, tried = _first_passing(inst, alts, g_sol, check, until, check_s[0])
            for a, n_broken in tried:  # (each an AC check of the plan as it is)
                rnd_a = len(history) + 1
                history.append(
                    PlanRound("optimal (alternative)", rnd_a, a.cost_cny, a.status, n_broken, [])
                )
            if spare is not None:
                o_sol = spare
                passed[choices(o_sol)] = (o_ev, [])
                stopped.append(
                    f"{exc}; an alternative of the last plan ({o_sol.cost_cny:,.0f} CNY) passed "
                    "the AC check and is returned"
                )
                say(stopped[-1])
            else:
                stopped.append(f"{exc}; the verified greedy plan is returned")
                say(stopped[-1])
                o_sol = None
        except InputError as exc:  # no verified optimum: the verified greedy plan stands
            if budget_cny is not None and g_sol.cost_cny > budget_cny:
                raise InputError(
                    f"--budget: no AC-verified plan within {budget_cny:,.0f} CNY was found ({exc})"
                ) from None
            say(f"{exc}; the verified greedy plan is returned")
            o_sol = None
        b = bounded[0]
        t_b = time.perf_counter()
        cap_s = deadline - t_b
        if hard_limit_s is not None:
            cap_s = min(cap_s, t0 + hard_limit_s - t_b)
        if (
            o_sol is None
            and b is None
            and bound_only
            and budget_cny is None
            and not needs
            and cap_s >= 1.0
        ):
            # no round proved a bound (none ran, or it stopped): the relaxation's, for the
            # demands the verified greedy plan serves, so that the group counts more than 0
            # (with no time for it, the sites' bound below)
            lb, info = PlanModel(LinearGrid(inst, mv, cuts)).relaxation_bound(
                g_sol, time_limit_s=cap_s, pool=pool
            )
            _note_bound(
                history,
                say,
                "the relaxation's bound for the greedy plan's demands: "
                + (f"{lb:,.0f} CNY" if lb is not None else f"none ({info['highs_status']})")
                + f" in {time.perf_counter() - t_b:.1f} s",
            )
            if lb is not None and math.isfinite(lb):
                sol = _with_bound(g_sol, lb, info)
        elif (
            o_sol is None and b is not None and budget_cny is None and _same_served(inst, b, g_sol)
        ):
            # stopped or failed: a round's bound is for these demands, and for every later model
            sol = _with_bound(g_sol, b.bound, b.bounds)
        if o_sol is not None:
            opt_cost = o_sol.cost_cny
            if _better(inst, o_sol, g_sol) or budget_cny is not None:
                sol, ev = o_sol, o_ev
                greedy_kept = False
            else:
                say("the verified greedy plan is as good after the AC cuts: kept")
                if _same_served(inst, o_sol, g_sol):
                    # the optimiser's bound is for serving these demands: it bounds this plan
                    sol = dataclasses.replace(
                        g_sol,
                        bound=o_sol.bound,
                        gap=max(0.0, g_sol.cost_cny - o_sol.bound) / max(g_sol.cost_cny, 1e-9),
                        bounds=o_sol.bounds,
                    )
    if method == "optimal" and budget_cny is None:
        # whichever plan stands, the most any round proved for the demands it serves (a plan a
        # repair round took as it was, or the greedy plan, has no bound of its own)
        proved = by_served.get(tuple(sol.served))
        if proved is not None and not (math.isfinite(sol.bound) and sol.bound >= proved.bound):
            sol = _with_bound(sol, proved.bound, proved.bounds)
        if (
            bound_only
            and not needs
            and sol.status != "optimal"
            and sol.bounds.get("bound_by") in ("cp_sat", None)  # (a relaxation's holds it)
            and (hard_limit_s is None or time.perf_counter() < t0 + hard_limit_s)
        ):
            # a city group with no bound (no time for its relaxation, or none found in it),
            # or with CP-SAT's, which proves little in seconds on one core (group 37 of the
            # city: 6.2 M CNY where the relaxation gives 24.3 M): at least the sites' bound
            # (planning/sitebound.py: a linear program of the connections and new substations)
            t_s = time.perf_counter()
            served_s = {inst.options[k].demand for k in sol.chosen}
            sb = sites_bound(LinearGrid(inst, mv, cuts), served_s, time_limit_s=SITES_BOUND_S)
            secs = round(time.perf_counter() - t_s, 2)
            _note_bound(
                history,
                say,
                "the sites' bound for the plan's demands: "
                + (f"{sb:,.0f} CNY" if sb is not None else "none")
                + f" in {secs:.1f} s",
            )
            if sb is not None and not (math.isfinite(sol.bound) and sol.bound >= sb):
                sol = _with_bound(
                    sol, sb, dict(sol.bounds, sites=sb, sites_s=secs, bound_by="sites")
                )
    result = _result(
        network, inst, sol, ev, method if budget_cny is None else "budget", cuts, mv=mv
    )
    if budget_cny is not None:
        # the objective is the design kW served, and the bound the most any plan within the
        # budget serves (the cost's bound, which the rounds compare, says nothing of that)
        top = sol.bounds.get("served_units_bound")
        got = sum(load_units(inst.demands[inst.options[k].demand].design_kw) for k in sol.chosen)
        result.objective = _served_kw(inst, sol)
        result.bound = math.nan if top is None else top * KW_UNIT
        result.gap = math.nan if top is None else (top - got) / top if top else 0.0
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
    result.ac_rounds = sum(1 for h in history if h.status != "stopped")  # evaluated rounds
    result.runtime_s = time.perf_counter() - t0
    result.greedy_cost_cny = g_sol.cost_cny
    result.greedy_served_kw = _served_kw(inst, g_sol)
    result.optimal_cost_cny = opt_cost
    result.history = history
    result.discount_rate = discount_rate
    if cut_short:  # (said first: the optimal rounds' stop, if any, follows it)
        stopped.insert(0, "the greedy was cut short at the time limit: " + "; ".join(cut_short))
    if stopped:
        result.stopped, result.stop_note = "time_limit", "; ".join(stopped)
    if needs:
        served = {inst.options[k].demand for k in sol.chosen}
        result.n1 = {
            "demands_full_n1": len(needs),
            "served": len(needs & served),
            "contingencies_passed": n1_judged.get("greedy" if greedy_kept else "optimal", []),
        }
    return result


def _patched(
    grid: LinearGrid, before: Cuts | None, cuts: Cuts, sol: Solution
) -> tuple[Solution | None, set[int]]:
    """``sol`` with the demands the cuts added since ``before`` bear on connected again
    greedily, every other connection and every measure of it kept (the greedy half of
    :func:`lvplan.planning.repair.repair`, no CP-SAT model), and those demands (positions in
    ``Instance.demands``); None and no demand when none is touched, too many are, or one does
    not fit."""
    if before is None:
        return None, set()
    who = touched(grid, before, cuts, sol)
    inst = grid.inst
    served = {inst.options[k].demand for k in sol.chosen}
    if not who or len(who) > MAX_TOUCHED_SHARE * max(len(served), 1):
        return None, set()
    moved = who & served
    out = Greedy(grid, keep=tuple(sol.upgrades)).complete(
        [k for k in sol.chosen if inst.options[k].demand not in who],
        sorted(moved, key=lambda i: (inst.demands[i].year or 0, i)),
    )
    return out, (moved if out is not None else set())


def _first_passing(
    inst: Instance,
    alternatives: list[Solution],
    than: Solution,
    check: Callable[[Solution], tuple[Any, list]],
    until: float,
    check_s: float,
) -> tuple[Solution | None, Any, list[tuple[Solution, int]]]:
    """The best of ``alternatives`` (the most design kW, then the least cost) better than
    ``than`` (the verified greedy plan) that
    passes ``check`` (the AC check: its evaluation and the limits broken), each checked while
    one more check (as long as ``check_s``, the last one) ends by ``until``
    (``time.perf_counter``): (it or None, its evaluation, every check made with the limits it
    found broken)."""
    tried: list[tuple[Solution, int]] = []
    for a in sorted(alternatives, key=lambda a: (-_served_kw(inst, a), a.cost_cny)):
        if not _better(inst, a, than):
            continue
        if time.perf_counter() + check_s > until:
            break
        ev, broken = check(a)
        tried.append((a, len(broken)))
        if not broken:
            return a, ev, tried
    return None, None, tried


def _with_bound(sol: Solution, lb: float, bounds: dict[str, Any]) -> Solution:
    """``sol`` bounded by ``lb`` (never above its cost), its gap, and where the bound is from."""
    return dataclasses.replace(
        sol,
        bound=min(lb, sol.cost_cny),
        gap=max(0.0, sol.cost_cny - lb) / max(sol.cost_cny, 1e-9),
        bounds=bounds,
    )


def _note_bound(history: list[PlanRound], say: Callable[[str], None], note: str) -> None:
    """A bound found after the rounds, as a round of its own in the history, and said."""
    history.append(PlanRound("bound", len(history) + 1, math.nan, "stopped", 0, [note]))
    say(note)


def _left_out(inst: Instance, mv: MvResponse, order: list[int]) -> set[int]:
    """The demands that the greedy plan leaves out on the candidates ``inst`` (those without
    the places' ties to other feeders), on the linear model alone (no AC check): the screen
    for which ties are offered (:func:`lvplan.planning.candidates.withhold_ties`). Like the
    plan's greedy, it also tries without the sites between two clusters, and takes the plan
    that serves more."""
    grid = LinearGrid(inst, mv, Cuts())
    between = frozenset(s.id for s in inst.sites if s.between)
    sol = Greedy(grid).run(order, None)
    servable = [i for i in range(len(inst.demands)) if i not in inst.unservable]
    if not all(sol.served[i] for i in servable) and between:
        founded = Greedy(grid, (), between).run(order, None)
        if _improves(inst, founded, sol):
            sol = founded
    return {i for i in servable if not sol.served[i]}


def _radial_n1(network: Network, inst: Instance, crit: Criteria) -> set[int]:
    """The demands of an area class with full N-1 that a new site tied to the source busbar
    reaches: such a site's tie is a new radial feeder, whose loss cuts it off with no tie to
    restore it (the N-1 check withdraws it), so its place's ties to other feeders, whose loops
    may restore it, are kept for them (before, only the linear screen kept them, and a 200 kW
    class-A demand beside the busbar was left unserved)."""
    needs = n1_demands(inst, crit)
    if not needs:
        return set()
    on_busbar = _radial_sites(network, inst)
    return {o.demand for o in inst.options if o.site in on_busbar and o.demand in needs}


def _drop_radial_n1(network: Network, inst: Instance, crit: Criteria) -> int:
    """Leave out the options of N-1 demands at new sites tied to the source busbar, where the
    demand keeps another option, and return how many. Such a site's tie is a radial feeder of
    its own: its loss cuts the site off with nothing to restore it, so the N-1 check withdrew
    each such site the plan took, a few dozen a round (sz-futian, 160 of 300 demands of class
    A+, A or B: 21 and 30 sites in two rounds of 10-90 s each, and no optimal plan in 120 s).
    The place stays for them tied to other feeders, whose loops may restore it
    (:func:`_radial_n1` keeps those ties). Left out with them: such a site restored by a new
    tie of its own, which the N-1 check offers only once the site is built."""
    needs = n1_demands(inst, crit)
    on_busbar = _radial_sites(network, inst) if needs else set()
    if not on_busbar:
        return 0
    # the N-1 demands with an option elsewhere: only theirs are left out
    elsewhere = {o.demand for o in inst.options if o.demand in needs and o.site not in on_busbar}
    keep = [o for o in inst.options if not (o.site in on_busbar and o.demand in elsewhere)]
    for i in {o.demand for o in inst.options if o.site in on_busbar and o.demand in elsewhere}:
        inst.left_out[i] = (
            "its options at new sites tied to the source busbar were left out (a radial "
            "feeder of its own: no tie restores it for the N-1 its area class requires)"
        )
    dropped = len(inst.options) - len(keep)
    inst.options = keep
    inst.stats["options"] = len(keep)
    return dropped


def _radial_sites(network: Network, inst: Instance) -> set[int]:
    """The sites tied to the source busbar (a new radial feeder each)."""
    from lvplan.model.topology import mv_bus_feeders

    feeder_of = mv_bus_feeders(network.pp)
    return {s.id for s in inst.sites if feeder_of.get(s.mv_bus, "busbar") == "busbar"}


def _tagged(inst: Instance, s: Site, tag: str) -> str:
    """A site's name with a city group's tag: ``new substation S<tag>.<n>``, and a tie to
    another feeder named after its place's site."""
    if s.tie_of is None:
        return f"new substation S{tag}.{s.id + 1}"
    base = inst.sites[s.tie_of]
    return f"new substation S{tag}.{base.id + 1}{s.name[len(base.name) :]}"


def _same_served(inst: Instance, a: Solution, b: Solution) -> bool:
    """Whether two plans serve the same demands: a bound of one then bounds the other (the
    cost stage's bound is for the demands it was held to serve; the same design kW from other
    demands is another problem)."""
    return a.served == b.served


def _n1_measure(net, up, held: list[str], users: list[int], demands) -> Measure:
    """A new tie or a moved transformer as a measure of the plan; its "why" names the
    contingencies whose cuts it lifted."""
    users = sorted(set(users))
    ys = [y for y in (demands[i].year for i in users) if y is not None]
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
        min(ys) if ys else None,
        [demands[i].id for i in users],
        f"{what} (N-1): " + ("; ".join(held) or "restores a contingency"),
    )


def _transfer_measure(
    net, inst: Instance, up, users: list[int], held: list[str], year: int | None
) -> Measure:
    """A transfer (feeder split) as a measure of the plan: the line it opens, the new cable,
    and why: the new load it takes off the lines above, or the AC cuts it lifts."""
    demands = inst.demands
    sp = inst.transfers.get(up.element)
    far = sp.far_bus if sp is not None else "?"
    above = inst.areas[sp.area].path(sp.far_bus)[1:] if sp is not None else []
    kw = sum(demands[i].design_kw for i in users)
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


def _downstream(net, lines: set[int]) -> dict[int, set[int]]:
    """For each 10 kV line, the buses of the 10 kV network (and above) that lose their supply
    without it: those whose load flows through it in the radial topology (closed switches,
    in-service branches; a cable laid beside it counted with it). Empty where the network
    stays connected without it (a closed ring)."""
    import networkx as nx

    from lvplan.model.topology import LV_MAX_KV, _closed_branch_graph, _slack_buses

    ids, _pos, _on, ra, rb = _closed_branch_graph(net)
    mv = set(net.bus.index[net.bus.vn_kv >= LV_MAX_KV].tolist())
    g = nx.Graph()
    g.add_nodes_from(mv)
    g.add_edges_from(
        (int(a), int(b))
        for a, b in zip(ids[ra].tolist(), ids[rb].tolist(), strict=True)
        if a in mv and b in mv and a != b
    )
    sources = [b for b in _slack_buses(net) if b in g]
    out: dict[int, set[int]] = {}
    for ln in lines:
        if ln not in net.line.index:
            continue
        a, b = int(net.line.at[ln, "from_bus"]), int(net.line.at[ln, "to_bus"])
        if not g.has_edge(a, b):
            out[ln] = set()
            continue
        g.remove_edge(a, b)  # (put back below: one graph for every section)
        fed: set[int] = set()
        for src in sources:
            if src not in fed:
                fed |= nx.node_connected_component(g, src)
        g.add_edge(a, b)
        out[ln] = set(g.nodes) - fed
    return out


def _cut_year(inst: Instance, sol: Solution, coefs: dict[int, float], rhs: float) -> int | None:
    """The first year in which the plan's connections of the demands up to it break the linear
    cut ``sum coefs <= rhs`` (None: never, or a demand without a year)."""
    by_year: dict[int, float] = {}
    for k in sol.chosen:
        if k in coefs:
            y = inst.demands[inst.options[k].demand].year
            if y is None:
                return None
            by_year[y] = by_year.get(y, 0.0) + coefs[k]
    used = 0.0
    for y in sorted(by_year):
        used += by_year[y]
        if used > rhs:
            return y
    return None


def _mv_bus(net, inst: Instance, i: int, chosen_by_demand: dict[int, int]) -> int | None:
    """The 10 kV bus demand ``i``'s load is drawn from in the plan: its area's transformer's
    high-voltage bus, or its new substation's tie bus."""
    o = inst.options[chosen_by_demand[i]]
    if o.site is not None:
        return inst.sites[o.site].mv_bus
    a = inst.bus_area.get(o.bus) if o.bus is not None else None
    return None if a is None else int(net.trafo.at[inst.areas[a].trafo, "hv_bus"])


def _over_at_base(inst: Instance, line: int) -> float | None:
    """An LV line's loading at the base (%) when it is over the profile's limit there, else
    None."""
    _r, _x, imax_ka, base_ka, _vn = inst.line_data.get(line, (0.0,) * 5)
    pct = 100.0 * base_ka / imax_ka if imax_ka > 0 else 0.0
    return pct if pct > inst.criteria.line_max_loading_percent else None


def _ac_found(cuts: Cuts | None, element: str, u: int, limit: float) -> str:
    """ " (found by the AC check: ...)" where the AC check cut the capacity of ``element`` (or
    of upgrade ``u`` itself) and the model then needed the measure; "" where it did not."""
    if cuts is None:
        return ""
    kind, _, ident = element.partition(" ")
    held = (
        cuts.trafo_kw.get(int(ident), 0.0) if kind == "trafo" else cuts.line_kw.get(int(ident), 0.0)
    )
    held += cuts.upgrade_kw.get(u, 0.0)
    if held <= 0:
        return ""
    pct = cuts.found.get(element)
    at = (
        "" if pct is None else f": {pct:.2f} % loaded in an earlier round's plan, limit {limit:g} %"
    )
    return f" (found by the AC check{at}; the model's capacity cut by {held:,.0f} kW)"


def _result(
    network: Network,
    inst: Instance,
    sol: Solution,
    ev,
    method: str,
    cuts: Cuts | None = None,
    *,
    mv: MvResponse | None = None,
) -> Plan:
    net = network.pp
    demands = inst.demands
    chosen_by_demand = {inst.options[k].demand: k for k in sol.chosen}
    # which demands load each element
    users_trafo: dict[int, list[int]] = {}
    users_line: dict[int, list[int]] = {}
    users_site: dict[int, list[int]] = {}
    users_xfer: dict[int, list[int]] = {}  # a transfer's line -> the demands of its twins
    for i, k in chosen_by_demand.items():
        o = inst.options[k]
        if o.site is not None:
            users_site.setdefault(o.site, []).append(i)
            continue
        a = inst.bus_area.get(o.bus) if o.bus is not None else None
        if a is None or o.bus is None:
            continue
        users_trafo.setdefault(inst.areas[a].trafo, []).append(i)
        path = inst.areas[a].path(o.bus)
        if o.via is not None:  # a transfer's twin: fed by its new cable, inside the subtree
            users_xfer.setdefault(o.via, []).append(i)
            path = path[: path.index(o.via)]
        for line in path:
            users_line.setdefault(line, []).append(i)
    # a 10 kV section: the demands its AC cuts counted (those whose load it carries), and the
    # limits they held (the normal state, or an N-1 contingency)
    chosen = set(sol.chosen)
    held_by: dict[int, list[str]] = {}
    users_n1: dict[int, list[int]] = {}  # an N-1 measure -> the demands its cuts counted
    lifted: dict[int, list[tuple[dict[int, float], float]]] = {}  # a 10 kV measure's cuts
    built = set(sol.upgrades)
    for (coefs, _rhs), lift, what, when in zip(
        cuts.linear if cuts else [],
        cuts.relief if cuts else [],
        cuts.linear_names if cuts else [],
        cuts.when if cuts else [],
        strict=True,
    ):
        if not any(u in built for u in lift):  # (every use below is of a measure built)
            continue
        # the demands a 10 kV measure that lifts the cut is for: those its cut counted, and of
        # an N-1 cut (which counts the loop's whole load) those whose class requires N-1 there
        needing = [inst.options[k].demand for k in coefs if k in chosen and (not when or k in when)]
        for u in lift:
            if inst.upgrades[u].kind in N1_KINDS and u in sol.upgrades:
                users_n1.setdefault(u, []).extend(needing)
                if what not in held_by.setdefault(u, []):
                    held_by[u].append(what)
            elif inst.upgrades[u].kind == MeasureKind.TRANSFER and u in sol.upgrades:
                if what not in held_by.setdefault(u, []):
                    held_by[u].append(what)
            elif inst.upgrades[u].kind in LV_RELIEF_KINDS and u in sol.upgrades:
                # an LV line or transformer the AC check found broken off the new load's paths
                # (its existing load draws more current at the lower voltage; or it was over
                # its limit before, in a connection's own LV network): the demands its cut
                # counted need it, and date it
                up = inst.upgrades[u]
                ids = (users_trafo if up.kind in TRAFO_KINDS else users_line).setdefault(
                    up.element, []
                )
                new = {inst.options[k].demand for k in coefs if k in chosen}
                ids += sorted(new - set(ids))
            elif inst.upgrades[u].kind in MV_CABLE_KINDS and u in sol.upgrades:
                users_line.setdefault(inst.upgrades[u].element, []).extend(needing)
                lifted.setdefault(u, []).append((coefs, _rhs))
                if what not in held_by.setdefault(u, []):
                    held_by[u].append(what)
    # an LV line or transformer over its limit before the plan: every demand connected in its
    # LV network needs it (the pre-existing rule: repaired before the first connection there)
    by_area: dict[int, list[int]] = {}
    for i, k in chosen_by_demand.items():
        o = inst.options[k]
        if o.site is None and o.bus is not None and (a := inst.bus_area.get(o.bus)) is not None:
            by_area.setdefault(a, []).append(i)
    for a, tree in inst.areas.items():
        if a not in by_area:
            continue
        t = tree.trafo
        if inst.trafo_base_kva.get(t, 0.0) > inst.trafo_kva.get(t, math.inf) * (
            inst.criteria.trafo_max_loading_percent / 100.0
        ):
            users_trafo[t] = sorted(set(users_trafo.get(t, [])) | set(by_area[a]))
        for line, _parent in tree.parent.values():
            if _over_at_base(inst, line) is not None:
                users_line[line] = sorted(set(users_line.get(line, [])) | set(by_area[a]))
    users_line = {ln: sorted(set(ids)) for ln, ids in users_line.items()}
    # a 10 kV section held in the normal state: the served demands whose load flows through it
    # (downstream of it in the radial 10 kV topology, its open switches open), not every
    # demand its cut's sensitivities counted (on the district, the same 205 for each section)
    mv_year: dict[int, int] = {}  # a 10 kV section: the first year a cut it lifts breaks
    normal = {
        u
        for u, names in held_by.items()
        if inst.upgrades[u].kind in MV_CABLE_KINDS and not any(n.startswith("N-1") for n in names)
    }
    if normal:
        below = _downstream(net, {inst.upgrades[u].element for u in normal})
        for u in normal:
            ln = inst.upgrades[u].element
            # never later than the first year a cut it lifts is broken without it (a load
            # elsewhere on the busbar counts in the cut, not among the demands it carries)
            broke = [y for c in lifted.get(u, []) if (y := _cut_year(inst, sol, *c)) is not None]
            if broke:
                mv_year[ln] = min(broke)
            carried = [
                i
                for i in sorted(chosen_by_demand)
                if _mv_bus(net, inst, i, chosen_by_demand) in below.get(ln, set())
            ]
            if carried:  # (none: a ring, or no new load below it; its cut's demands stand)
                users_line[ln] = carried

    def first_year(ids: list[int]) -> int | None:
        ys = [y for y in (demands[i].year for i in ids) if y is not None]
        return min(ys) if ys else None

    # the transformer and LV cable measures: dated by the first year that needs them
    dated = measure_years(
        inst,
        sol,
        {
            u: users_trafo.get(inst.upgrades[u].element, [])
            if inst.upgrades[u].kind
            in (MeasureKind.TRANSFORMER_SWAP, MeasureKind.TRANSFORMER_PARALLEL)
            else users_line.get(inst.upgrades[u].element, [])
            for u in sol.upgrades
        },
        mv,
        cuts,
    )
    lim_t = inst.criteria.trafo_max_loading_percent
    lim_l = inst.criteria.line_max_loading_percent
    measures: list[Measure] = []
    for u in sorted(sol.upgrades):
        up = inst.upgrades[u]
        if up.kind in N1_KINDS:
            measures.append(_n1_measure(net, up, held_by.get(u, []), users_n1.get(u, []), demands))
            continue
        if up.kind == MeasureKind.TRANSFER:
            users = sorted(set(users_xfer.get(up.element, [])))
            measures.append(
                _transfer_measure(net, inst, up, users, held_by.get(u, []), first_year(users))
            )
            continue
        if up.kind in (MeasureKind.TRANSFORMER_SWAP, MeasureKind.TRANSFORMER_PARALLEL):
            users = users_trafo.get(up.element, [])
            before = f"{inst.trafo_kva[up.element]:g} kVA"
            after = (
                f"{up.rated_kva} kVA"
                if up.kind == MeasureKind.TRANSFORMER_SWAP
                else f"{inst.trafo_kva[up.element]:g} + {up.rated_kva} kVA"
            )
            kw = sum(demands[i].design_kw for i in users)
            reason = (
                f"transformer loading{_ac_found(cuts, f'trafo {up.element}', u, lim_t)}: "
                f"{inst.trafo_base_kva[up.element]:.0f} kVA-equivalent at the base + {kw:.0f} kW "
                f"of new design load on {before}"
            )
            if not users:
                reason = (
                    "transformer loading (found by the AC check): its existing load draws more "
                    "current at the lower voltage the new connections bring"
                )
            el = ElementRef("trafo", up.element)
        else:
            users = users_line.get(up.element, [])
            before = line_type(net, up.element)
            after = (
                up.cable
                if up.kind in (MeasureKind.LV_CABLE_REPLACE, MeasureKind.MV_CABLE_REPLACE)
                else f"{before} + {up.cable}"
            )
            kw = sum(demands[i].design_kw for i in users)
            reason = f"line loading or voltage drop: {kw:.0f} kW of new design load beyond it"
            found = _ac_found(cuts, f"line {up.element}", u, lim_l)
            if found:
                reason = f"line loading{found}: {kw:.0f} kW of new design load beyond it"
            if (at_base := _over_at_base(inst, up.element)) is not None:
                reason = (
                    f"line loading: {at_base:.1f} % at the base, over its "
                    f"{lim_l:g} % limit before the plan, in the LV network of the demands "
                    f"listed ({kw:.0f} kW of new design load): repaired before they connect"
                )
            if up.kind in MV_CABLE_KINDS:
                names = held_by.get(u, [])
                reason = (
                    f"{inst.mv} feeder section loading (found by the AC check): {kw:.0f} kW of new "
                    "design load it carries; " + "; ".join(names)
                ).rstrip("; ")
                if names and all(n.endswith(f"({FAILS_ALREADY})") for n in names):
                    # not the new load's doing: the class's N-1 needs the contingency restored
                    classes = sorted({demands[i].area_class for i in users} - {""})
                    which = f" ({', '.join(classes)})" if classes else ""
                    reason = (
                        "N-1 that the network lacks already, restored for the demands of an area "
                        f"class with full N-1{which}; {kw:.0f} kW of their new design load on the "
                        "loop: " + "; ".join(names)
                    )
            elif not users:
                reason = (
                    "line loading (found by the AC check): its existing load draws more current "
                    "at the lower voltage the new connections bring"
                )
            el = ElementRef("line", up.element)
        year = first_year(users)
        if up.kind in MV_CABLE_KINDS and up.element in mv_year:
            year = mv_year[up.element] if year is None else min(year, mv_year[up.element])
        if u in dated:
            reason += "; " + year_note(dated[u], year)
            year = dated[u].year
        measures.append(
            Measure(
                up.kind.value,
                el,
                before,
                after,
                round(up.cost_cny, 2),
                year,
                [demands[i].id for i in users],
                reason,
            )
        )
    for s in sorted(sol.sites):
        site = inst.sites[s]
        users = users_site.get(s, [])
        measures.append(
            Measure(
                MeasureKind.NEW_SUBSTATION.value,
                site.name,
                "",
                f"{site_kva(site)} at ({site.lon:.5f}, {site.lat:.5f}), "
                f"{site.tie_m:.0f} m tie of {site.tie_cable} to bus {site.mv_bus}",
                round(site.cost_cny, 2),
                first_year(users),
                [demands[i].id for i in users],
                "no existing supply within reach has room (or it is cheaper than reinforcing)",
            )
        )
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
                round(o.route_m, 1),
                round(o.cable_cost_cny, 2),
            )
        )
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
    return Plan(
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
    )


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
