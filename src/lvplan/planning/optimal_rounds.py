"""The optimal plan's rounds (:func:`lvplan.planning.plan.plan_network`, after the greedy).

Every demand at once (:mod:`lvplan.planning.model`), from the verified greedy plan, each round's
plan checked in AC (:meth:`lvplan.planning.rounds.Rounds.verified`). A round
(:meth:`OptimalRounds.optimal`) is one of:

- a CP-SAT search of the whole grid's model (or of each independent part), from the newest plan;
- where the newest plan broke a few limits: that plan patched greedily where the new cuts bear
  (:func:`_patched`), or repaired by a small CP-SAT model (:mod:`lvplan.planning.repair`), or one
  of its alternatives, as the next round's start (or, with no time for a search, its plan);
- with too little time left for a search from a plan that passed: a large-neighbourhood search
  from it (:mod:`lvplan.planning.polish`).

When the time runs out, the plans in hand are checked as they are (:func:`_first_passing`);
the verified greedy plan stands when none passes. Each round's bound is kept for the demands it
served; a city group with no bound of its own takes the relaxation's, or the sites' bound
(:mod:`lvplan.planning.sitebound`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lvplan.errors import InputError
from lvplan.planning.candidates import Instance
from lvplan.planning.greedy import Greedy
from lvplan.planning.linear import Cuts, LinearGrid
from lvplan.planning.mipbound import CutPool
from lvplan.planning.model import PlanModel, Solution, solve_by_parts
from lvplan.planning.plan import PlanRound, _better, _same_served, _served_kw
from lvplan.planning.polish import polish
from lvplan.planning.repair import MAX_TOUCHED_SHARE, repair, snapshot, touched
from lvplan.planning.rounds import Rounds, _OutOfTime, choices
from lvplan.planning.sitebound import sites_bound

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


@dataclass
class OptimalRounds:
    """The optimal plan's rounds over the rounds ``r``, from the verified greedy plan
    ``g_sol`` (its evaluation ``g_ev``), and what they carry from one round to the next."""

    r: Rounds
    g_sol: Solution
    g_ev: Any
    workers: int
    #: HiGHS bounds the optimum beside CP-SAT (:mod:`lvplan.planning.mipbound`)
    mip_bound: bool
    #: a city group's: the strengthened relaxation's bound alone, no plan searched beside
    bound_only: bool
    #: seconds from ``r.t0``: nothing more is started past it (a city group: the city's deadline)
    hard_limit_s: float | None
    #: each round starts from the newest plan (the greedy first)
    last: Solution = field(init=False)
    #: the plans the rounds had in hand beside the one they took (alternatives, repaired
    #: plans): the last chance when no round has time to repair the newest (_stopped)
    in_hand: list[Solution] = field(default_factory=list)
    #: the round that proved the most
    bounded: Solution | None = None
    #: ... and for each set of demands served (a bound is for the demands its round served)
    by_served: dict[tuple[bool, ...], Solution] = field(default_factory=dict)
    #: the cuts the last round was solved under
    prev_cuts: Cuts | None = None
    #: by part: its last solution
    memo: dict[int, Solution] = field(default_factory=dict)
    #: how long the last round for a repair alone took
    repair_s: float = field(init=False)
    #: the demands the last greedy patch moved
    focus: set[int] | None = None
    #: the residual-capacity inequalities found so far: the next round's bound thread starts
    #: from them, made again from its own model's rows (planning/mipbound.py CutPool)
    pool: CutPool = field(default_factory=CutPool)
    #: how far the last CP-SAT solve ran past the time it was given (its model)
    over_s: float = 0.0
    #: how long the last plan model of the whole grid took to make
    model_s: float = 0.0
    #: the rounds of the history before the first optimal one (the greedy's)
    greedy_rounds: int = field(init=False)
    #: the least time a CP-SAT round is started with (:data:`SMALL_SOLVE_S` on a small model)
    min_solve_s: float = field(init=False)

    def __post_init__(self) -> None:
        self.last = self.g_sol
        self.repair_s = REPAIR_MIN_S
        self.greedy_rounds = len(self.r.history)
        inst = self.r.inst
        small = max(len(inst.options), len(inst.upgrades)) <= SMALL_MODEL_OPTIONS
        self.min_solve_s = SMALL_SOLVE_S if small else MIN_SOLVE_S

    def run(self) -> tuple[Solution, Any, bool, float | None]:
        """The optimal rounds, and the plan that stands after them: (the plan, its evaluation,
        whether it is the verified greedy one, the optimal plan's cost or None)."""
        r = self.r
        g_sol, budget_cny = self.g_sol, r.budget_cny
        sol, ev = g_sol, self.g_ev
        greedy_kept = True  # the plan returned is the verified greedy one
        opt_cost = None
        o_sol: Solution | None
        o_ev: Any = None
        room_s = r.deadline - time.perf_counter() - r.check_s - self.over_s
        try:
            if (
                self.bound_only
                and budget_cny is None
                and not r.needs
                and room_s < SEARCH_WORTH_S
                and len(r.network.pp.bus) >= SEARCH_SKIP_MIN_BUSES
            ):
                raise _OutOfTime(
                    f"{max(room_s, 0.0):.1f} s left: too little for a search on one core "
                    f"(at least {SEARCH_WORTH_S:g} s); the relaxation's bound alone"
                )
            o_sol, o_ev, _o_rounds = r.verified(self.optimal, "optimal", self._goes_on)
        except _OutOfTime as exc:  # the best plan that passed: the verified greedy one
            o_sol, o_ev = self._stopped(exc)
        except InputError as exc:  # no verified optimum: the verified greedy plan stands
            if budget_cny is not None and g_sol.cost_cny > budget_cny:
                raise InputError(
                    f"--budget: no AC-verified plan within {budget_cny:,.0f} CNY was found ({exc})"
                ) from None
            r.say(f"{exc}; the verified greedy plan is returned")
            o_sol = None
        sol = self._greedy_bounded(o_sol, sol)
        if o_sol is not None:
            opt_cost = o_sol.cost_cny
            if _better(r.inst, o_sol, g_sol) or budget_cny is not None:
                sol, ev = o_sol, o_ev
                greedy_kept = False
            else:
                r.say("the verified greedy plan is as good after the AC cuts: kept")
                if _same_served(r.inst, o_sol, g_sol):
                    # the optimiser's bound is for serving these demands: it bounds this plan
                    sol = dataclasses.replace(
                        g_sol,
                        bound=o_sol.bound,
                        gap=max(0.0, g_sol.cost_cny - o_sol.bound) / max(g_sol.cost_cny, 1e-9),
                        bounds=o_sol.bounds,
                    )
        return sol, ev, greedy_kept, opt_cost

    def _goes_on(self, sol: Solution) -> bool:
        """Whether the rounds go on from ``sol``, an optimal plan that passed, while a search
        has time (the cheapest plan that passed stands), and if so, said."""
        r = self.r
        # (not a city group's: its worker's time is the next group's)
        go_on = r.budget_cny is None and not r.needs and not self.bound_only
        left = r.deadline - time.perf_counter() - r.check_s - self.over_s
        # (a plan by parts goes on by parts, as before the neighbourhood search)
        at_least = POLISH_MIN_S + RESULT_S if len(r.parts) <= 1 else GO_ON_PARTS_S
        if not (go_on and sol.status == "feasible" and left >= at_least):
            return False
        r.say(
            f"optimal: the plan passed with {left:.0f} s left: the search goes on from it"
            + (" (a neighbourhood search)" if left < GO_ON_S and len(r.parts) <= 1 else "")
        )
        return True

    def optimal(self) -> Solution:
        """One optimal round's plan (before its AC check): the last plan patched, a
        neighbourhood search, or a CP-SAT search (from a repaired plan where the last one broke
        limits); :class:`_OutOfTime` where the round cannot end by the deadline."""
        r = self.r
        # the time CP-SAT may take: what is left once this round's AC check (as long as the
        # last one) and the model's making (as the last solve's overrun) are set aside
        now = time.perf_counter()
        # (rounds that may go on from a plan that passed: not a city's groups, a budget or
        # N-1 demands)
        polishes = r.budget_cny is None and not r.needs and not self.bound_only
        # (a city group's round searches its hint's neighbourhoods, each plan checked as
        # it is found, but never goes on from a plan that passed: its time left is the
        # next group's)
        searches = r.budget_cny is None and not r.needs
        left = r.deadline - now - r.check_s - self.over_s
        if (
            polishes
            and len(r.parts) <= 1
            and self.last is not self.g_sol
            and choices(self.last) not in r.passed
            and r.deadline - now > r.check_s + RESULT_S + 0.5
        ):
            # the last plan broke a few limits: first patched greedily where the new cuts
            # bear (0.2 s), checked in AC as it is; passed, it is the round's plan and the
            # search goes on from it. Only if it fails is the CP-SAT repair made (its model
            # takes 3 s on the district, its round 8 s: seed 1's 60 s ended with two such
            # rounds, each plan 0.6-1.0 % over one limit, and the greedy plan returned)
            quick = self._patch(now)
            if quick is not None:
                return quick
        # (not a plan by parts: its summary reports each part's cost and bound, which a
        # search of the whole grid's model would void; each part has its own search)
        if (
            self.last is not self.g_sol
            and choices(self.last) in r.passed
            and left < GO_ON_S
            and len(r.parts) <= 1
        ):
            if left - RESULT_S < POLISH_MIN_S + self.model_s:  # (its model is made first)
                raise _OutOfTime(f"{left:.1f} s left: too little for a neighbourhood search")
            return self.polished(left)
        self.focus = None  # (a round of its own: a later search's focus is its own patch's)
        # a plan that broke a few limits is repaired without a search (below), which needs
        # only seconds: a round for that alone when a search has no time
        repairable = self.last is not self.g_sol and choices(self.last) not in r.passed
        if left < self.min_solve_s and not (repairable and left + self.over_s >= self.repair_s):
            raise _OutOfTime(
                f"stopped at the time limit ({r.time_limit_s:g} s): "
                f"{max(r.deadline - now, 0.0):.1f} s left, a round needs {self.min_solve_s:g} s "
                f"of CP-SAT + {r.check_s:.1f} s of AC check + {self.over_s:.1f} s to make the "
                "model"
            )
        grid = LinearGrid(r.inst, r.mv, r.cuts)
        before, self.prev_cuts = self.prev_cuts, snapshot(r.cuts)
        # the first round takes most of the time; a later one repairs a few limits
        if len(r.history) <= self.greedy_rounds:
            # (a plan whose rounds never go on from a plan that passed keeps the share
            # they were measured with: a city's groups, a budget, N-1 demands)
            share = FIRST_SHARE if polishes else FIRST_SHARE_ALONE
        elif choices(self.last) in r.passed:  # going on from a plan that passed: the time
            share = GO_ON_SHARE  # left, but the AC check's (its plan stands if it fails)
        else:
            share = 0.5
        given = max(self.min_solve_s, share * left)
        if len(r.parts) > 1 and r.budget_cny is None:
            out = solve_by_parts(
                grid,
                r.parts,
                self.last,
                time_limit_s=given,
                workers=self.workers,
                memo=self.memo,
                fallback=self.g_sol,
            )
        else:
            out, given = self._solved(grid, before, given, left, now, searches)
        return self._taken(out, now, given)

    def _patch(self, now: float) -> Solution | None:
        """The last plan, which broke a few limits, patched greedily where the new cuts bear
        (:func:`_patched`), when that passes its AC check: the round's plan (None: it does
        not)."""
        r = self.r
        grid_now = LinearGrid(r.inst, r.mv, r.cuts)
        quick, patched_who = _patched(grid_now, self.prev_cuts, r.cuts, self.last)
        if quick is not None and _better(r.inst, quick, self.g_sol) and r.passes(quick):
            # (the search from it sets the demands it moved free first, with their
            # rivals: the greedy placed them one at a time; seed 1: 39.87 M CNY to
            # 39.57-39.59 M in the 11-13 s left, where the search's own draws found
            # 39.79 M)
            self.focus = patched_who
            self.prev_cuts = snapshot(r.cuts)
            r.say(
                f"optimal: the last plan patched where the AC check broke it: "
                f"{quick.cost_cny:,.0f} CNY, passed"
            )
            out = dataclasses.replace(quick, seconds=time.perf_counter() - now)
            out.bounds = {"plan_by": "patch"}
            out = self._earlier_bound(out, plan_by="patch")
            self.last = out
            return out
        return None

    def _earlier_bound(self, out: Solution, **extra: str) -> Solution:
        """``out`` with the best bound an earlier round proved, where that round served the same
        demands (each round's model only adds cuts to the one before: a bound stays a bound);
        ``extra`` is said in its ``bounds`` (``plan_by``)."""
        b = self.bounded
        if b is None or not _same_served(self.r.inst, b, out):
            return out
        return dataclasses.replace(
            out,
            bound=min(b.bound, out.objective),
            gap=max(0.0, out.objective - b.bound) / max(abs(out.objective), 1e-9),
            bounds=dict(b.bounds, **extra, from_round="an earlier round's bound"),
        )

    def polished(self, left: float) -> Solution:
        """The plan that passed last, made cheaper by a large-neighbourhood search in the
        ``left`` seconds (too few for a round's search: planning/polish.py)."""
        r = self.r
        t_p = time.perf_counter()
        timings: dict[str, float] = {}
        out = polish(
            LinearGrid(r.inst, r.mv, r.cuts),
            self.last,
            time_limit_s=left - RESULT_S,
            workers=self.workers,
            seed=len(r.history),
            accept=r.passes,
            shortfall=r.probe,
            timings=timings,
            focus=self.focus,
        )
        self.focus = None
        # (a plan solved by parts made no model of the whole grid before: the next search
        # counts this one's)
        self.model_s = max(self.model_s, timings.get("model_s", 0.0))
        self.over_s = max(0.0, time.perf_counter() - t_p - (left - RESULT_S))
        if out is None:
            raise _OutOfTime(
                f"a neighbourhood search of {left:.1f} s found no cheaper plan than the one "
                "that passed"
            )
        out = self._earlier_bound(out, plan_by="polish")  # (it serves what that plan serves)
        self.last = out
        return out

    def _solved(
        self,
        grid: LinearGrid,
        before: Cuts | None,
        given: float,
        left: float,
        now: float,
        searches: bool,
    ) -> tuple[Solution, float]:
        """A round's plan of the whole grid's model: CP-SAT's search from the newest plan (or
        from it repaired, where it no longer fits the cuts), or the repaired plan as it is;
        and the time the search was given."""
        r = self.r
        budget_cny = r.budget_cny
        t_m = time.perf_counter()
        made = PlanModel(grid, budget_cny=budget_cny)
        self.model_s = time.perf_counter() - t_m
        mdl = made
        fits = budget_cny is None or self.last.cost_cny <= budget_cny
        if fits and not made.hint(self.last) and self.last is not self.g_sol:
            start, searched, given = self._repair_start(grid, made, before, given)
            if searched is None:
                out = dataclasses.replace(start, status="feasible", seconds=0.0)
                # (the next such round is started only with as long left as this one took)
                self.repair_s = max(REPAIR_MIN_S, time.perf_counter() - now)
                return out, given
            mdl = searched
        if left < self.min_solve_s:  # (a round for a repair alone)
            raise _OutOfTime(
                f"stopped at the time limit ({r.time_limit_s:g} s): {max(left, 0.0):.1f} s "
                f"left, too little for a search, and no repaired plan to check instead"
            )
        out = mdl.solve(
            time_limit_s=given,
            workers=self.workers,
            mip_bound=self.mip_bound,
            bound_only=self.bound_only,
            pool=self.pool,
            probe=r.probe,
            # (a round too short for the relaxation's neighbourhood searches its
            # hint's neighbourhoods, each plan checked in AC as it is found)
            accept=r.passes if searches and len(r.parts) <= 1 else None,
            seed=len(r.history),
            # (... for the time left: no AC check of its plan follows, nor a
            # repair; but its last plan's, as found, and the round's end: on seed 2
            # the plan took 0.9 s after the search to return)
            search_s=r.deadline - time.perf_counter() - 2 * RESULT_S - r.check_s,
        )
        if budget_cny is None and mdl.served_proven is not None:
            # the demands served are the most design kW any plan serves: every
            # one with an option, or the first stage proved it (summary.json;
            # with a budget, its kW bound is served_units_bound)
            out.bounds["served_proven"] = mdl.served_proven
        return out, given

    def _repair_start(
        self, grid: LinearGrid, made: PlanModel, before: Cuts | None, given: float
    ) -> tuple[Solution, PlanModel | None, float]:
        """The round's start when the newest plan no longer fits the cuts, the model to search
        from it (None: too little time for a search to pay, the start is the round's plan) and
        the time left for the search."""
        r = self.r
        inst, g_sol, last = r.inst, self.g_sol, self.last
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
        fit = [made.hint(a) for a in last.alternatives]
        spare = [a for a, ok in zip(last.alternatives, fit, strict=True) if ok]
        fixed, moved = self._repaired(grid, before, given, last, made)
        # the alternatives that do not fit the cuts either, repaired as well while
        # the time allows (each makes a model: as long as the round's took)
        for a, ok in zip(last.alternatives, fit, strict=True):
            spent_s = time.perf_counter() - t_rep
            if ok or r.deadline - time.perf_counter() - r.check_s < 2 * spent_s:
                continue
            again, _ = self._repaired(grid, before, given, a, None)
            if again is not None:
                spare.append(again)
        hand = sorted(
            ([fixed] if fixed is not None else []) + spare,
            key=lambda a: (-_served_kw(inst, a), a.cost_cny),
        )
        self.in_hand.extend(hand)
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
        given = max(self.min_solve_s, given - (time.perf_counter() - t_rep))
        r.say(
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
        mdl: PlanModel | None
        if start is not g_sol and given < SEARCH_MIN_S:
            # too little time for a search to pay (making the model with its
            # threads takes seconds): the repaired plan is the round's, and the
            # time goes to its AC check and, if needed, one more repair
            mdl = None
        else:
            mdl = PlanModel(grid, budget_cny=r.budget_cny)
            if not mdl.hint(start) and start is not g_sol:
                mdl = PlanModel(grid, budget_cny=r.budget_cny)
                mdl.hint(g_sol)
        return start, mdl, given

    def _repaired(
        self,
        grid: LinearGrid,
        before: Cuts | None,
        given: float,
        sol: Solution,
        model: PlanModel | None,
    ) -> tuple[Solution | None, int]:
        """``sol`` repaired, and how many demands it connected anew."""
        r = self.r
        who = touched(grid, before, r.cuts, sol) if before is not None else None
        if who is None:  # (none touched: the measures alone, chosen again)
            return None, 0
        # (at most what the time limit leaves once the AC check is set aside;
        # in a round for the repair alone, a second: it starts from its
        # greedy repair, and the time goes to the next AC check)
        cap_s = r.deadline - time.perf_counter() - r.check_s - 1.0
        if given < SEARCH_MIN_S:
            cap_s = min(cap_s, 1.0)
        got = repair(
            grid,
            sol,
            who,
            time_limit_s=max(0.1, min(REPAIR_SHARE * given, cap_s)),
            workers=self.workers,
            model=model,  # (spent: a search below makes its own)
        )
        return got, len(who)

    def _taken(self, out: Solution, now: float, given: float) -> Solution:
        """A round's plan from its search, its time overrun and bound kept: the newest plan."""
        r = self.r
        if out.bounds.get("plan_by") != "neighbourhoods":  # (that search took the time left)
            self.over_s = max(0.0, time.perf_counter() - now - given)
        rel_cny, carried = (
            out.bounds.get("relaxation_strengthened"),
            out.bounds.get("relaxation_carried"),
        )
        if rel_cny is not None and carried:
            r.say(
                f"optimal: the relaxation with {carried} inequalities carried from earlier "
                f"rounds and {out.bounds.get('relaxation_rounds', 0)} rounds more: "
                f"{rel_cny:,.0f} CNY"
            )
        if out.status in ("optimal", "feasible"):
            # each round's model only adds cuts to the one before: a bound stays a bound
            if math.isfinite(out.bound):
                key = tuple(out.served)
                had = self.by_served.get(key)
                if had is None or out.bound > had.bound:
                    self.by_served[key] = out
            b = self.bounded
            if math.isfinite(out.bound) and (b is None or out.bound > b.bound):
                self.bounded = out
            else:
                out = self._earlier_bound(out)
            self.last = out
        return out

    def _stopped(self, exc: _OutOfTime) -> tuple[Solution | None, Any]:
        """The rounds stopped at the time limit: an alternative of the last round's plan that
        passes the AC check as it is (and its evaluation), or None: the verified greedy plan
        stands. Either way said, and noted as why the rounds stopped."""
        r = self.r
        g_sol, budget_cny = self.g_sol, r.budget_cny
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
        o_ev: Any = None
        tried: list[tuple[Solution, int]] = []
        if budget_cny is None and not r.needs and self.last is not g_sol:
            # ... and each of them, and the last plan itself, patched greedily where the
            # newest cuts bear (as a repair starts, planning/repair.py; 0.2 s with its grid,
            # where the repair's CP-SAT model takes 3 s to make)
            grid_now = LinearGrid(r.inst, r.mv, r.cuts)
            seen = set(r.refused_plans)
            alts = []
            for a in [self.last, *self.last.alternatives, *self.in_hand]:
                time_left = r.deadline - time.perf_counter() - RESULT_S - r.check_s
                p = _patched(grid_now, self.prev_cuts, r.cuts, a)[0] if time_left > 0.5 else None
                for b in (a, p):
                    if b is not None and choices(b) not in seen:
                        seen.add(choices(b))
                        alts.append(b)
            until = r.deadline - RESULT_S
            spare, o_ev, tried = _first_passing(r.inst, alts, g_sol, r.checked, until, r.check_s)
        for a, n_broken in tried:  # (each an AC check of the plan as it is)
            rnd_a = len(r.history) + 1
            r.history.append(
                PlanRound("optimal (alternative)", rnd_a, a.cost_cny, a.status, n_broken, [])
            )
        if spare is not None:
            r.passed[choices(spare)] = (o_ev, [])
            r.stopped.append(
                f"{exc}; an alternative of the last plan ({spare.cost_cny:,.0f} CNY) passed "
                "the AC check and is returned"
            )
            r.say(r.stopped[-1])
            return spare, o_ev
        r.stopped.append(f"{exc}; the verified greedy plan is returned")
        r.say(r.stopped[-1])
        return None, o_ev

    def _greedy_bounded(self, o_sol: Solution | None, sol: Solution) -> Solution:
        """With no optimal plan, the verified greedy plan with a bound for the demands it
        serves where one is had: a round's, or for a city group with none, the relaxation's."""
        r = self.r
        g_sol, budget_cny = self.g_sol, r.budget_cny
        b = self.bounded
        t_b = time.perf_counter()
        cap_s = r.deadline - t_b
        if self.hard_limit_s is not None:
            cap_s = min(cap_s, r.t0 + self.hard_limit_s - t_b)
        if (
            o_sol is None
            and b is None
            and self.bound_only
            and budget_cny is None
            and not r.needs
            and cap_s >= 1.0
        ):
            # no round proved a bound (none ran, or it stopped): the relaxation's, for the
            # demands the verified greedy plan serves, so that the group counts more than 0
            # (with no time for it, the sites' bound: final_bound)
            lb, info = PlanModel(LinearGrid(r.inst, r.mv, r.cuts)).relaxation_bound(
                g_sol, time_limit_s=cap_s, pool=self.pool
            )
            _note_bound(
                r.history,
                r.say,
                "the relaxation's bound for the greedy plan's demands: "
                + (f"{lb:,.0f} CNY" if lb is not None else f"none ({info['highs_status']})")
                + f" in {time.perf_counter() - t_b:.1f} s",
            )
            if lb is not None and math.isfinite(lb):
                sol = _with_bound(g_sol, lb, info)
        elif (
            o_sol is None
            and b is not None
            and budget_cny is None
            and _same_served(r.inst, b, g_sol)
        ):
            # stopped or failed: a round's bound is for these demands, and for every later model
            sol = _with_bound(g_sol, b.bound, b.bounds)
        return sol

    def final_bound(self, sol: Solution) -> Solution:
        """``sol``, the plan that stands, with the most any round proved for the demands it
        serves, and for a city group with no bound (or CP-SAT's), at least the sites' bound."""
        r = self.r
        # whichever plan stands, the most any round proved for the demands it serves (a plan a
        # repair round took as it was, or the greedy plan, has no bound of its own)
        proved = self.by_served.get(tuple(sol.served))
        if proved is not None and not (math.isfinite(sol.bound) and sol.bound >= proved.bound):
            sol = _with_bound(sol, proved.bound, proved.bounds)
        if (
            self.bound_only
            and not r.needs
            and sol.status != "optimal"
            and sol.bounds.get("bound_by") in ("cp_sat", None)  # (a relaxation's holds it)
            and (self.hard_limit_s is None or time.perf_counter() < r.t0 + self.hard_limit_s)
        ):
            # a city group with no bound (no time for its relaxation, or none found in it),
            # or with CP-SAT's, which proves little in seconds on one core (group 37 of the
            # city: 6.2 M CNY where the relaxation gives 24.3 M): at least the sites' bound
            # (planning/sitebound.py: a linear program of the connections and new substations)
            t_s = time.perf_counter()
            served_s = {r.inst.options[k].demand for k in sol.chosen}
            sb = sites_bound(LinearGrid(r.inst, r.mv, r.cuts), served_s, time_limit_s=SITES_BOUND_S)
            secs = round(time.perf_counter() - t_s, 2)
            _note_bound(
                r.history,
                r.say,
                "the sites' bound for the plan's demands: "
                + (f"{sb:,.0f} CNY" if sb is not None else "none")
                + f" in {secs:.1f} s",
            )
            if sb is not None and not (math.isfinite(sol.bound) and sol.bound >= sb):
                sol = _with_bound(
                    sol, sb, dict(sol.bounds, sites=sb, sites_s=secs, bound_by="sites")
                )
        return sol


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
