"""A verified plan when the AC rounds do not converge: withdraw the connections that break it.

The verification loop (:meth:`lvplan.planning.rounds.Rounds.verified`) tightens the model where
the AC state breaks a limit and solves again, up to ``MAX_ROUNDS`` times. When the last round still
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

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from lvplan.kinds import BindingKind
from lvplan.model.network import Network
from lvplan.planning.candidates import Instance
from lvplan.planning.measures import LV_CABLE_KINDS, TRAFO_KINDS, MeasureKind
from lvplan.planning.model import Solution
from lvplan.planning.verify import Broken, _position, area_buses, check_plan, terminal_name

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
    network: Network, inst: Instance, sol: Solution, broken: list[Broken], ev_net: Any = None
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
        site = _site_named(site_by_name, b.name)
        if site is not None:
            for k in at_site.get(site, []):
                out.setdefault(inst.options[k].demand, what)
            continue
        if b.base_margin is not None and b.base_margin < 0:
            # broken before the plan, in the LV network of a connection: the connections there
            # (those elsewhere only add to what they add; the base's excess is not theirs)
            lv_net = set(area_buses(network, _as_base(network, ev_net, b).element))
            for k in sol.chosen:
                if inst.options[k].site is None and inst.options[k].bus in lv_net:
                    out.setdefault(inst.options[k].demand, what)
            continue
        rest.append(_as_base(network, ev_net, b))
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
    ev: Any = None,
    n1_check: Callable[[Solution], list[Any]] | None = None,
    n1_demands: set[int] = frozenset(),  # type: ignore[assignment]
    say: Callable[[str], None] = lambda _m: None,
    cause: str = "the AC rounds did not converge",
) -> tuple[Solution, Any, dict[int, str], list[int]]:
    """The plan ``sol`` (which breaks ``broken`` in AC) with the connections that break limits
    withdrawn until it passes: (solution, its evaluation, demand -> why it was withdrawn, the
    limits broken at each AC evaluation made, the last 0). ``ev`` is ``sol``'s evaluation;
    ``n1_check`` judges the N-1 contingencies of a solution whose normal state passes
    (failures, or an empty list). ``cause``: why the rounds ended, said in each reason."""
    why: dict[int, str] = {}
    rounds: list[int] = []

    def judge(plan: Solution) -> tuple[Any, list]:
        """The AC check of ``plan``, then its N-1 check once the normal state passes."""
        ev_p, broken_p = check_plan(network, inst, plan, base)
        if not broken_p and n1_check is not None:
            broken_p = n1_check(plan)
        return ev_p, broken_p

    for _ in range(WITHDRAW_ROUNDS):
        n1_failed = bool(broken) and not isinstance(broken[0], Broken)
        if n1_failed:
            served = {inst.options[k].demand for k in sol.chosen}
            out = dict.fromkeys(served & n1_demands, "an N-1 contingency of its feeder fails")
        else:
            out = implicated(network, inst, sol, broken, None if ev is None else ev.net)
        out = {i: w for i, w in out.items() if i not in why}
        if not out:
            break
        why.update(out)
        sol = without(inst, sol, set(out))
        ev, broken = judge(sol)
        rounds.append(len(broken))
        say(
            f"withdrawn {len(out)} demand{'' if len(out) == 1 else 's'}; {len(broken)} "
            f"limit{'' if len(broken) == 1 else 's'} broken in AC"
        )
        if not broken:
            sol, ev = _idle_dropped(inst, sol, ev, judge, say)
            return sol, ev, _texts(why, cause), rounds
    # nothing left to trace, or the rounds ran out: the MV islands of the limits still broken
    # go back to the base case (their connections withdrawn, their measures not built): islands
    # are independent in the AC load flow, so the rest of the plan stands as it passed there
    if broken and isinstance(broken[0], Broken) and ev is not None:
        isl = _islands_of(network, inst, sol, ev, broken)
        if isl:
            back, what = _island_back(network, inst, sol, isl)
            gone = {inst.options[k].demand for k in sol.chosen} - {
                inst.options[k].demand for k in back.chosen
            }
            for i in gone:
                why.setdefault(i, what)
            ev2, broken2 = judge(back)
            rounds.append(len(broken2))
            say(
                f"{len(isl)} MV island{'' if len(isl) == 1 else 's'} back to the base case; "
                f"{len(broken2)} limit{'' if len(broken2) == 1 else 's'} broken"
            )
            if not broken2:
                back, ev2 = _idle_dropped(inst, back, ev2, judge, say)
                return back, ev2, _texts(why, cause), rounds
            sol = back
    # every connection withdrawn
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
    return empty, ev, _texts(why, cause), rounds


def _idle_dropped(
    inst: Instance,
    sol: Solution,
    ev: Any,
    judge: Callable[[Solution], tuple[Any, list]],
    say: Callable[[str], None],
) -> tuple[Solution, Any]:
    """``sol`` without the measures of LV networks no connection is left in (transformer swaps
    and parallels, LV cables, feeder splits), where it then passes the AC check as well; else
    ``sol`` as it is. Withdrawals keep their plan's measures, so every demand of one LV network
    withdrawn left its measures built for nobody: a probe (2026-12-08, the 10 kV source at
    1.07 pu) paid 837,809 CNY for 19 of them, which raised that network's over-voltage from
    419.5 to 425.8 V."""
    used = {inst.bus_area.get(b) for k in sol.chosen if (b := inst.options[k].bus) is not None}
    area_of_line = {
        line: a for a, tree in inst.areas.items() for line, _parent in tree.parent.values()
    }
    area_of_trafo = {tree.trafo: a for a, tree in inst.areas.items()}
    idle = []
    for u in sol.upgrades:
        up = inst.upgrades[u]
        if up.kind in TRAFO_KINDS:
            a = area_of_trafo.get(up.element)
        elif up.kind in LV_CABLE_KINDS:
            a = area_of_line.get(up.element)
        elif up.kind == MeasureKind.TRANSFER and up.element in inst.transfers:
            a = inst.transfers[up.element].area
        else:
            continue
        if a is not None and a not in used:
            idle.append(u)
    if not idle:
        return sol, ev
    kept = [u for u in sol.upgrades if u not in set(idle)]
    trimmed = Solution.of(inst, list(sol.chosen), kept, list(sol.sites), sol.status)
    ev_t, broken = judge(trimmed)
    if broken:
        return sol, ev
    say(f"{len(idle)} measure{'' if len(idle) == 1 else 's'} no connection is left to use dropped")
    return trimmed, ev_t


def _as_base(network: Network, ev_net: Any, b: Broken) -> Broken:
    """A limit of an element the plan added beside an existing one (a parallel transformer or
    cable: the same buses) judged as that existing element's, whose margin the base knows."""
    comp, _, ident = b.element.partition(" ")
    if comp not in ("line", "trafo") or not ident.isdigit() or ev_net is None:
        return b
    idx, base = int(ident), network.pp[comp]
    if idx in base.index or idx not in ev_net[comp].index:
        return b
    cols = ("from_bus", "to_bus") if comp == "line" else ("hv_bus", "lv_bus")
    ends = {int(ev_net[comp].at[idx, c]) for c in cols}
    same = base.index[
        base[cols[0]].isin(ends).to_numpy() & base[cols[1]].isin(ends).to_numpy()
    ].tolist()
    if not same:
        return b
    # named by the existing element (the new one's id is the planned network's, not the one it
    # gets in reinforced.json of a city) and by its own name there
    what = "parallel unit" if comp == "trafo" else "parallel cable"
    return dataclasses.replace(b, element=f"{comp} {same[0]}", name=f"its {what} {b.name}".strip())


def _islands_of(
    network: Network, inst: Instance, sol: Solution, ev: Any, broken: list[Broken]
) -> set[int]:
    """The MV islands (:func:`lvplan.model.topology.mv_islands`) the broken limits lie in: an
    existing element's buses, a demand's terminal or a new substation by the bus it hangs on."""
    from lvplan.model.topology import mv_islands

    isl = mv_islands(network.pp)
    pp = ev.net
    by_name = {terminal_name(inst.demands[inst.options[k].demand].id): k for k in sol.chosen}
    out: set[int] = set()

    def add_bus(b: int) -> None:
        if b in isl.index:
            out.add(int(isl[b]))

    for b in broken:
        if b.name in by_name:
            o = inst.options[by_name[b.name]]
            add_bus(int(o.bus) if o.bus is not None else int(inst.sites[o.site].mv_bus))  # type: ignore[index]
            continue
        sid = _site_named({st.name: st.id for st in inst.sites}, b.name)
        site = None if sid is None else inst.sites[sid]
        if site is not None:
            add_bus(int(site.mv_bus))
            continue
        comp, _, ident = b.element.partition(" ")
        if not ident.isdigit():
            continue
        idx = int(ident)
        cols = {"bus": (), "line": ("from_bus", "to_bus"), "trafo": ("hv_bus", "lv_bus")}.get(comp)
        if cols is None:
            continue
        if comp == "bus":
            add_bus(idx)
        elif idx in pp[comp].index:
            for c in cols:
                add_bus(int(pp[comp].at[idx, c]))
    slack = {int(b) for b in network.pp.ext_grid.bus}
    return out - slack


def _island_back(
    network: Network, inst: Instance, sol: Solution, islands: set[int]
) -> tuple[Solution, str]:
    """``sol`` without its connections, measures and new substations in ``islands``."""
    from lvplan.model.topology import mv_islands

    isl = mv_islands(network.pp)
    net = network.pp

    def inside(bus: int | None) -> bool:
        return bus is not None and bus in isl.index and int(isl[bus]) in islands

    def at(k: int) -> int | None:
        o = inst.options[k]
        return o.bus if o.bus is not None else inst.sites[o.site].mv_bus  # type: ignore[index]

    chosen = [k for k in sol.chosen if not inside(at(k))]
    ups = []
    for u in sol.upgrades:
        up = inst.upgrades[u]
        is_t = up.kind in (MeasureKind.TRANSFORMER_SWAP, MeasureKind.TRANSFORMER_PARALLEL)
        table, col = (net.trafo, "hv_bus") if is_t else (net.line, "from_bus")
        if up.element in table.index and inside(int(table.at[up.element, col])):
            continue
        ups.append(u)
    used = {inst.options[k].site for k in chosen}
    sites = [x for x in sol.sites if x in used and not inside(inst.sites[x].mv_bus)]
    what = (
        "the limits it broke could not be traced to single connections: its MV island "
        f"({', '.join(f'bus {i}' for i in sorted(islands)[:3])}"
        f"{', ...' if len(islands) > 3 else ''}) is left as it is"
    )
    return Solution.of(inst, sorted(chosen), sorted(ups), sorted(sites), sol.status), what


def _site_named(site_by_name: dict[str, int], name: str) -> int | None:
    """The site an element of the planned network belongs to by its name (its transformer,
    "<site> unit 2", "<site> LV board", "<site> 10 kV", "<site> tie"): the longest site name
    it starts with ("new substation S2 (tie to F1) unit 2" is not S2's), or None."""
    hits = [s for s in site_by_name if name == s or name.startswith(s + " ")]
    return site_by_name[max(hits, key=len)] if hits else None


def _what(b: Broken) -> str:
    el = f"{b.element} ({b.name})" if b.name else b.element
    if b.kind == BindingKind.VOLTAGE:
        side = "below its minimum" if b.side == "min" else "above its maximum"
        return f"with its connection the voltage of {el} was {side} by {-b.margin:.4f} pu"
    return f"with its connection the loading of {el} was over its limit by {-b.margin * 100:.2f} %"


def _texts(why: dict[int, str], cause: str) -> dict[int, str]:
    return {i: f"withdrawn ({cause}): {w}" for i, w in why.items()}
