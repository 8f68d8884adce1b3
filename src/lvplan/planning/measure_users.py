"""Which demands need each measure of a plan, and from which year (for
:func:`lvplan.planning.plan._result`).

A measure is for the demands that load its element: those whose connections' paths run through
it, those the AC cuts it lifts counted (an LV element the AC check found broken off the new
load's paths; a 10 kV section or an N-1 measure, with the limits those cuts held), every demand
connected in an LV network whose line or transformer was over its limit before the plan, and,
for a 10 kV section held in the normal state, the demands whose load flows through it. Its year
is the first of theirs (a 10 kV section's: never later than the first year a cut it lifts
breaks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lvplan.planning.candidates import Instance
from lvplan.planning.linear import Cuts
from lvplan.planning.measures import (
    LV_CABLE_KINDS,
    MV_CABLE_KINDS,
    N1_KINDS,
    TRAFO_KINDS,
    MeasureKind,
)
from lvplan.planning.model import Solution

#: the measures whose AC cuts date them by the demands they counted (an LV element relieved)
LV_RELIEF_KINDS = (*LV_CABLE_KINDS, *TRAFO_KINDS)


@dataclass
class MeasureUsers:
    """Which demands (positions in ``Instance.demands``) load each element of a plan, by the
    element's index, and what the AC cuts its measures lift held: a measure's "why" and year."""

    trafo: dict[int, list[int]] = field(default_factory=dict)
    line: dict[int, list[int]] = field(default_factory=dict)
    site: dict[int, list[int]] = field(default_factory=dict)
    #: a transfer's line -> the demands of its twins (the new load it feeds)
    xfer: dict[int, list[int]] = field(default_factory=dict)
    #: a transfer's line -> the demands the AC cuts it lifts counted (they need it and date
    #: it, but it does not feed them)
    xfer_cut: dict[int, list[int]] = field(default_factory=dict)
    #: an N-1 measure -> the demands its cuts counted
    n1: dict[int, list[int]] = field(default_factory=dict)
    #: a measure (upgrade) -> the limits its cuts held (the normal state, or an N-1 contingency)
    held_by: dict[int, list[str]] = field(default_factory=dict)
    #: a 10 kV measure's cuts
    lifted: dict[int, list[tuple[dict[int, float], float]]] = field(default_factory=dict)
    #: a 10 kV section: the first year a cut it lifts breaks
    mv_year: dict[int, int] = field(default_factory=dict)


def measure_users(
    net, inst: Instance, sol: Solution, cuts: Cuts | None, chosen_by_demand: dict[int, int]
) -> MeasureUsers:
    """The demands that load each element of the plan ``sol``: on their connections' paths,
    counted by the AC cuts its measures lift, in an LV network over its limit before the plan,
    and below a 10 kV section held in the normal state."""
    users = MeasureUsers()
    # which demands load each element
    for i, k in chosen_by_demand.items():
        o = inst.options[k]
        if o.site is not None:
            users.site.setdefault(o.site, []).append(i)
            continue
        a = inst.bus_area.get(o.bus) if o.bus is not None else None
        if a is None or o.bus is None:
            continue
        users.trafo.setdefault(inst.areas[a].trafo, []).append(i)
        path = inst.areas[a].path(o.bus)
        if o.via is not None:  # a transfer's twin: fed by its new cable, inside the subtree
            users.xfer.setdefault(o.via, []).append(i)
            path = path[: path.index(o.via)]
        for line in path:
            users.line.setdefault(line, []).append(i)
    _cut_users(inst, sol, cuts, users)
    _pre_existing_users(inst, chosen_by_demand, users)
    users.line = {ln: sorted(set(ids)) for ln, ids in users.line.items()}
    _mv_section_users(net, inst, sol, chosen_by_demand, users)
    return users


def _cut_users(inst: Instance, sol: Solution, cuts: Cuts | None, users: MeasureUsers) -> None:
    """The demands the AC cuts that the plan's measures lift counted, and the limits they
    held, into ``users``."""
    # a 10 kV section: the demands its AC cuts counted (those whose load it carries), and the
    # limits they held (the normal state, or an N-1 contingency)
    chosen = set(sol.chosen)
    held_by = users.held_by
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
                users.n1.setdefault(u, []).extend(needing)
                if what not in held_by.setdefault(u, []):
                    held_by[u].append(what)
            elif inst.upgrades[u].kind == MeasureKind.TRANSFER and u in sol.upgrades:
                if what not in held_by.setdefault(u, []):
                    held_by[u].append(what)
                # the demands the cut counted need it too, and date it: a split that lifts an
                # AC cut on a line above it was dated by its twins alone (review, 2026-12-08:
                # a later twin left the line over its limit in the years between)
                ids = users.xfer_cut.setdefault(inst.upgrades[u].element, [])
                ids += sorted({inst.options[k].demand for k in coefs if k in chosen} - set(ids))
            elif inst.upgrades[u].kind in LV_RELIEF_KINDS and u in sol.upgrades:
                # an LV line or transformer the AC check found broken off the new load's paths
                # (its existing load draws more current at the lower voltage; or it was over
                # its limit before, in a connection's own LV network): the demands its cut
                # counted need it, and date it
                up = inst.upgrades[u]
                ids = (users.trafo if up.kind in TRAFO_KINDS else users.line).setdefault(
                    up.element, []
                )
                new = {inst.options[k].demand for k in coefs if k in chosen}
                ids += sorted(new - set(ids))
            elif inst.upgrades[u].kind in MV_CABLE_KINDS and u in sol.upgrades:
                users.line.setdefault(inst.upgrades[u].element, []).extend(needing)
                users.lifted.setdefault(u, []).append((coefs, _rhs))
                if what not in held_by.setdefault(u, []):
                    held_by[u].append(what)


def _pre_existing_users(
    inst: Instance, chosen_by_demand: dict[int, int], users: MeasureUsers
) -> None:
    """Every demand connected in the LV network of a line or transformer over its limit before
    the plan, into ``users``."""
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
            users.trafo[t] = sorted(set(users.trafo.get(t, [])) | set(by_area[a]))
        for line, _parent in tree.parent.values():
            if over_at_base(inst, line) is not None:
                users.line[line] = sorted(set(users.line.get(line, [])) | set(by_area[a]))


def _mv_section_users(
    net, inst: Instance, sol: Solution, chosen_by_demand: dict[int, int], users: MeasureUsers
) -> None:
    """The demands whose load flows through each 10 kV section held in the normal state, and
    the first year a cut it lifts breaks, into ``users``."""
    # a 10 kV section held in the normal state: the served demands whose load flows through it
    # (downstream of it in the radial 10 kV topology, its open switches open), not every
    # demand its cut's sensitivities counted (on the district, the same 205 for each section)
    normal = {
        u
        for u, names in users.held_by.items()
        if inst.upgrades[u].kind in MV_CABLE_KINDS and not any(n.startswith("N-1") for n in names)
    }
    if normal:
        below = _downstream(net, {inst.upgrades[u].element for u in normal})
        for u in normal:
            ln = inst.upgrades[u].element
            # never later than the first year a cut it lifts is broken without it (a load
            # elsewhere on the busbar counts in the cut, not among the demands it carries)
            broke = [
                y for c in users.lifted.get(u, []) if (y := _cut_year(inst, sol, *c)) is not None
            ]
            if broke:
                users.mv_year[ln] = min(broke)
            carried = [
                i
                for i in sorted(chosen_by_demand)
                if _mv_bus(net, inst, i, chosen_by_demand) in below.get(ln, set())
            ]
            if carried:  # (none: a ring, or no new load below it; its cut's demands stand)
                users.line[ln] = carried


def first_year(demands, ids: list[int]) -> int | None:
    """The first year a demand of ``ids`` arrives (a demand without a year in a file that gives
    years was read as there from its first year: planning/demand.py); None: none has one."""
    ys = [y for y in (demands[i].year for i in ids) if y is not None]
    return min(ys) if ys else None


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


def over_at_base(inst: Instance, line: int) -> float | None:
    """An LV line's loading at the base (%) when it is over the profile's limit there, else
    None."""
    _r, _x, imax_ka, base_ka, _vn = inst.line_data.get(line, (0.0,) * 5)
    pct = 100.0 * base_ka / imax_ka if imax_ka > 0 else 0.0
    return pct if pct > inst.criteria.line_max_loading_percent else None


def ac_found(cuts: Cuts | None, element: str, u: int, limit: float) -> str:
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
