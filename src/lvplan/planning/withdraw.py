"""A verified plan when the AC rounds do not converge: withdraw the connections that break it.

The verification loop (:func:`lvplan.planning.plan.plan_network`) tightens the model where the
AC state breaks a limit and solves again, up to ``MAX_ROUNDS`` times. When the last round still
breaks limits (the cuts chase each other: one tightening moves the load elsewhere, which breaks
the next element), the plan of that round is not returned as it is: the demands whose
connections break the limits are withdrawn from it, and what stays is checked again by the same
AC evaluation, until it passes. Each withdrawn demand is unserved with the limit it broke.

Which demands a broken limit withdraws:

- a demand's own terminal bus or service cable: that demand;
- a new substation's LV board, transformer or 10 kV end: the demands connected there;
- any other limit (an LV or 10 kV bus, line or transformer of the existing network): the
  connected demands whose load lowers that margin (the margin sensitivities at the base,
  :func:`lvplan.powerflow.sensitivity.margin_sensitivity_of`), largest contribution first,
  until the contributions withdrawn cover twice the amount by which it was exceeded;
- an N-1 contingency that fails: every connected demand of an area class with full N-1.

The measures of the plan are kept (a measure that no connection needs any more still stands,
priced; a new substation left without a connection is not built). If a limit is broken that
no connected demand lowers, or the rounds run out, every connection is withdrawn: the plan
that builds nothing adds no violation to the base case, so a verified plan always exists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from lvplan.kinds import BindingKind
from lvplan.model.network import Network
from lvplan.planning.candidates import Instance
from lvplan.planning.model import Solution
from lvplan.planning.verify import Broken, _position, check_plan, terminal_name

#: withdrawal rounds (each one AC evaluation) before every connection is withdrawn
WITHDRAW_ROUNDS = 4
#: the contributions withdrawn cover this many times the amount a margin was exceeded by
COVER = 2.0


def without(inst: Instance, sol: Solution, demands: set[int]) -> Solution:
    """``sol`` with the connections of ``demands`` withdrawn: its measures kept, a new
    substation no connection uses any more left out."""
    chosen = [k for k in sol.chosen if inst.options[k].demand not in demands]
    used = {inst.options[k].site for k in chosen}
    sites = [s for s in sol.sites if s in used]
    return Solution.of(inst, sorted(chosen), sorted(sol.upgrades), sorted(sites), sol.status)


def implicated(
    network: Network, inst: Instance, sol: Solution, broken: list[Broken]
) -> dict[int, str]:
    """Demand (position) -> the broken limit its connection is withdrawn for (see the module
    docstring); empty when no connected demand lowers any of them."""
    from lvplan.criteria.judge import Limits
    from lvplan.powerflow.sensitivity import margin_sensitivity_of

    by_terminal = {terminal_name(inst.demands[inst.options[k].demand].id): k for k in sol.chosen}
    site_by_name = {s.name: s.id for s in inst.sites}
    at_site: dict[int, list[int]] = {}
    for k in sol.chosen:
        s = inst.options[k].site
        if s is not None:
            at_site.setdefault(s, []).append(k)
    out: dict[int, str] = {}
    rest: list[Broken] = []
    for b in broken:
        what = _what(b)
        if b.name in by_terminal:
            out.setdefault(inst.options[by_terminal[b.name]].demand, what)
            continue
        site = next(
            (
                sid
                for sname, sid in site_by_name.items()
                if b.name == sname or b.name.startswith(sname + " ")
            ),
            None,
        )
        if site is not None:
            for k in at_site.get(site, []):
                out.setdefault(inst.options[k].demand, what)
            continue
        rest.append(b)
    if not rest or not sol.chosen:
        return out
    lim = Limits(network.pp, inst.criteria)
    cols = [_position(lim, b) for b in rest]
    known = [j for j, c in enumerate(cols) if c is not None]
    if not known:
        return out
    chosen = list(sol.chosen)
    at = [
        int(inst.options[k].bus)  # type: ignore[arg-type]
        if inst.options[k].bus is not None
        else int(inst.sites[inst.options[k].site].mv_bus)  # type: ignore[index]
        for k in chosen
    ]
    buses = sorted(set(at))
    row = {b: i for i, b in enumerate(buses)}
    sens = margin_sensitivity_of(network, inst.criteria, [cols[j] for j in known], buses)
    for jj, j in enumerate(known):
        b = rest[j]
        what = _what(b)
        contrib = np.array(
            [
                -sens[row[at[n]], jj] * inst.demands[inst.options[k].demand].design_kw
                for n, k in enumerate(chosen)
            ]
        )
        need = COVER * -b.margin
        got = 0.0
        for n in np.argsort(-contrib, kind="stable").tolist():
            if contrib[n] <= 0 or got >= need:
                break
            out.setdefault(inst.options[chosen[n]].demand, what)
            got += float(contrib[n])
    return out


def withdraw_unverified(
    network: Network,
    inst: Instance,
    sol: Solution,
    broken: list[Any],
    base: dict,
    *,
    n1_check: Callable[[Solution], list[Any]] | None = None,
    n1_demands: set[int] = frozenset(),  # type: ignore[assignment]
    say: Callable[[str], None] = lambda _m: None,
) -> tuple[Solution, Any, dict[int, str], list[int]]:
    """The plan ``sol`` (which breaks ``broken`` in AC) with the connections that break limits
    withdrawn until it passes: (solution, its evaluation, demand -> why it was withdrawn, the
    limits broken at each AC evaluation made, the last 0). ``n1_check`` judges the N-1
    contingencies of a solution whose normal state passes (failures, or an empty list)."""
    why: dict[int, str] = {}
    rounds: list[int] = []
    ev: Any = None
    for _ in range(WITHDRAW_ROUNDS):
        n1_failed = bool(broken) and not isinstance(broken[0], Broken)
        if n1_failed:
            served = {inst.options[k].demand for k in sol.chosen}
            out = dict.fromkeys(served & n1_demands, "an N-1 contingency of its feeder fails")
        else:
            out = implicated(network, inst, sol, broken)
        out = {i: w for i, w in out.items() if i not in why}
        if not out:
            break
        why.update(out)
        sol = without(inst, sol, set(out))
        ev, broken = check_plan(network, inst, sol, base)
        if not broken and n1_check is not None:
            broken = n1_check(sol)
        rounds.append(len(broken))
        say(f"withdrawn {len(out)} demands; {len(broken)} limits broken in AC")
        if not broken:
            return sol, ev, _texts(why), rounds
    # nothing left to trace, or the rounds ran out: every connection withdrawn
    for k in sol.chosen:
        why.setdefault(
            inst.options[k].demand,
            "no broken limit could be traced to single connections: every connection withdrawn",
        )
    empty = Solution.of(inst, [], [], [], sol.status)
    ev, broken = check_plan(network, inst, empty, base)
    rounds.append(len(broken))
    if broken:  # cannot happen: the plan without changes is the base case
        raise AssertionError(f"the plan that builds nothing breaks {len(broken)} limits")
    say(f"every connection withdrawn ({len(why)} demands)")
    return empty, ev, _texts(why), rounds


def _what(b: Broken) -> str:
    el = f"{b.element} ({b.name})" if b.name else b.element
    if b.kind == BindingKind.VOLTAGE:
        side = "below its minimum" if b.side == "min" else "above its maximum"
        return f"with its connection the voltage of {el} was {side} by {-b.margin:.4f} pu"
    return f"with its connection the loading of {el} was over its limit by {-b.margin:.2%}"


def _texts(why: dict[int, str]) -> dict[int, str]:
    return {i: f"withdrawn (the AC rounds did not converge): {w}" for i, w in why.items()}
