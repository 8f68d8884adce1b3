"""The verified greedy plan (:func:`lvplan.planning.plan.plan_network`'s first plan).

The greedy (:mod:`lvplan.planning.greedy`; eDisGo style, the comparison and the optimiser's
hint) connects the demands in order, each the cheapest way given every earlier choice, and its
plan goes through the AC rounds (:meth:`lvplan.planning.rounds.Rounds.verified`). Where it
leaves out demands it could serve, it is made again: from the start without the sites between
two clusters, and on top of the plan that stands with the places tied to other feeders. A pass
stands if it serves more design kW (or as much for less) than the plan before it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lvplan.errors import InputError
from lvplan.planning.greedy import Greedy
from lvplan.planning.linear import Cuts, LinearGrid
from lvplan.planning.measures import N1_KINDS
from lvplan.planning.model import Solution
from lvplan.planning.plan import _improves
from lvplan.planning.rounds import Rounds

#: Elements of a failing contingency cut per round when the plan is made again without new ties
#: and moves: as the plan made them before those measures existed.
N1_CUTS_WITHOUT_MEASURES = 5
#: the rounds of the greedy plan made again without new ties and moved transformers
AGAIN = "greedy (again, without new ties and moves)"


@dataclass
class GreedyRounds:
    """The greedy's passes over the rounds ``r``, and the verified plan that stands (``sol``,
    its evaluation ``ev``)."""

    r: Rounds
    #: the N-1 measures (ties, moves) the greedy's rounds have built
    kept: list[int] = field(default_factory=list)
    #: sites the greedy does not take: first the places tied to other feeders (its plan takes
    #: the nearest tie's; they are offered for the demands it would leave out: see run)
    skip: frozenset[int] = frozenset()
    sol: Solution = field(init=False)
    ev: Any = field(init=False)

    def greedy(self) -> Solution:
        r = self.r
        inst, budget_cny = r.inst, r.budget_cny
        grid = LinearGrid(inst, r.mv, r.cuts)
        out = Greedy(grid, tuple(self.kept), self.skip).run(r.order, budget_cny)
        if budget_cny is not None:
            # with a budget, the order decides what it buys (on one order of the district's
            # demands, 10 M CNY bought 63 where 5 M bought 105): the demands also by cost per
            # kW, and the plan that serves more design kW (or as much for less) is the greedy one
            probe = Greedy(grid, tuple(self.kept))
            dense = Greedy(grid, tuple(self.kept)).run(probe.by_cost_per_kw(r.order), budget_cny)
            if _improves(inst, dense, out):
                out = dense
        # a later round keeps them (unless withdrawn): with them undone, the contingency they
        # restored would fail again, and the rounds would go back and forth
        self.kept[:] = [u for u in out.upgrades if inst.upgrades[u].kind in N1_KINDS]
        return out

    def run(self) -> None:
        """The verified greedy plan: the first pass, made again without new ties and moves
        where its rounds do not settle with them; then, where it leaves out demands it could
        serve, again without the sites between two clusters, and on top of the plan that stands
        with the ties to other feeders."""
        r = self.r
        inst = r.inst
        ties = frozenset(s.id for s in inst.sites if s.tie_of is not None)
        self.skip = ties
        try:
            self.sol, self.ev, _rounds = r.verified(self.greedy, "greedy")
        except InputError as exc:
            if r.offers is None:
                raise
            # the rounds with new ties and moves did not settle: plan again with feeder
            # reinforcement and withdrawals alone, as the plan was made before those measures
            r.say(f"{exc}; planned again without new ties and moved transformers")
            r.offers, r.cuts, self.kept[:], r.n1_cuts = None, Cuts(), [], N1_CUTS_WITHOUT_MEASURES
            # (its rounds named apart from the first attempt's in the summary's rounds)
            self.sol, self.ev, _rounds = r.verified(self.greedy, AGAIN)
            if AGAIN in r.n1_judged:
                r.n1_judged["greedy"] = r.n1_judged.pop(AGAIN)
        between = frozenset(s.id for s in inst.sites if s.between)
        servable = [i for i in range(len(inst.demands)) if i not in inst.unservable]
        if between & set(self.sol.sites) and self._lacking(servable):
            # the greedy left demands it could serve (the 10 kV voltage room spent by those
            # before them: the order of its choices, and the AC cuts its rounds found, decide):
            # without the sites between two clusters (as it planned before they were offered)
            self._again(
                servable,
                between | ties,
                "greedy (founded sites only)",
                f"without the {len(between)} sites between two clusters",
            )
        if ties and self._lacking(servable):
            # ... and then, on top of the plan that stands (its connections, measures and cuts
            # kept), the demands it left out connected where they fit with every site, the
            # places tied to other feeders too: the plan before took the nearest tie's only
            self._on_top(servable)

    def _lacking(self, servable: list[int]) -> bool:
        r = self.r
        return (
            r.budget_cny is None and not r.needs and not all(self.sol.served[i] for i in servable)
        )

    def _take_if_better(self, solve: Callable[[], Solution], name: str, before: tuple) -> None:
        """A greedy pass's verified plan stands if it serves more design kW (or as much for
        less) than the one standing; otherwise ``before`` (the cuts, kept N-1 measures, cut
        count and withdrawals of the plan standing) is put back."""
        r = self.r
        try:
            out = r.verified(solve, name)
        except InputError as exc:
            r.say(f"{exc}; the greedy plan before stands")
            out = None
        if out is not None and _improves(r.inst, out[0], self.sol):
            self.sol, self.ev, _rounds = out
            return
        r.cuts, self.kept[:], r.n1_cuts, first_withdrawn = before
        r.withdrawn.clear()
        r.withdrawn.update(first_withdrawn)

    def _again(self, servable: list[int], skipped: frozenset[int], name: str, why: str) -> None:
        """The greedy once more from the start, its own rounds and cuts, without the sites
        ``skipped``; its plan stands if it serves more design kW (or as much for less), with
        its cuts (the optimiser keeps every site)."""
        r = self.r
        r.say(
            f"greedy: {sum(not self.sol.served[i] for i in servable)} demands it could serve "
            f"left out: again from the start {why}"
        )
        before = (r.cuts, list(self.kept), r.n1_cuts, dict(r.withdrawn))
        self.skip, r.cuts, self.kept[:] = skipped, Cuts(), []
        r.withdrawn.clear()  # (the reasons are the plan's that stands)
        self._take_if_better(self.greedy, name, before)
        self.skip = frozenset()

    def _on_top(self, servable: list[int]) -> None:
        """The demands the plan that stands leaves out, connected on top of it (its
        connections, measures and cuts kept) where they fit with every site."""
        r = self.r
        stands = self.sol
        can = set(servable)
        left = [i for i in r.order if i in can and not stands.served[i]]
        r.say(
            f"greedy: {len(left)} demands it could serve left out: connected on top of its "
            "plan, with the ties to other feeders"
        )

        def on_top() -> Solution:
            grid = LinearGrid(r.inst, r.mv, r.cuts)
            # (None: the AC check's new cuts leave a held option no room: the plan as it was)
            return Greedy(grid, tuple(stands.upgrades)).extend(list(stands.chosen), left) or stands

        self._take_if_better(
            on_top,
            "greedy (ties to other feeders)",
            (copy.deepcopy(r.cuts), list(self.kept), r.n1_cuts, dict(r.withdrawn)),
        )
