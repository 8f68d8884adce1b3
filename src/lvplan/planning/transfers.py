"""The transfer (feeder split) as a measure of the plan: candidates, linear terms, model hooks.

**What a transfer is here.** The line ``r`` into a subtree of an LV feeder is opened and the
subtree is fed by a new LV cable from the LV busbar of the *same* transformer to the line's far
end (a new LV feeder: :meth:`lvplan.changes.Changes.transfer` with ``to_bus`` the transformer's
LV bus). A neighbouring transformer's busbar is not offered. Route = straight line x the
profile's detour factor, at most the profile's longest supply radius (the reach of an LV cable
the planner lays; the change itself accepts any length). Cost: the catalogue's ``[transfer]``
entry (cable per km plus an LV outgoing cubicle); the cable is the cheapest of its cables with
room for the subtree's base current plus every demand that could connect inside it, else the
largest.

**Candidates** (:func:`offer_transfers`): a subtree whose root line lies at or below an LV line
:func:`lvplan.planning.candidates.prune_upgrades` found some plan may need reinforced (its
current, or the voltage beyond it), that holds the bus of some connection option (a transfer
moves new load), in an area of one transformer, whose subtree in the planner's radial tree is
the part the change moves (a meshed area is left out where they differ), whose buses all keep
their voltage at the base once moved, and whose base current the new cable carries.

**Pruning, and what it may lose** (a heuristic, not a dominance argument; ``inst.stats`` counts
``transfers_pruned``):

* a split whose cost (at least: the route at the cheapest cable per km, plus the cubicle) is
  not below what it could plausibly save, every needed line above it at its dearest upgrade
  plus one new substation its demands could otherwise use (the dearest of their cheapest), is
  not offered. Lost: a split that saves more than that, by the voltage it gives the rest of the
  feeder (other branches' upgrades), by avoiding two or more sites, or by serving a demand no
  other measure can (the plan serves the most kW first);
* the rest are ranked by the cheapest upgrades of the needed lines above minus that cost, and at
  most :data:`MAX_PER_FEEDER` are kept per feeder (the area's head line), never two nested in
  one area (a twin's path would cross a line the other opens). Lost: the splits below those of
  a feeder, and those nested in a kept one, even where one would have been optimal.

**The linear model** (:func:`grid_terms`, :func:`add_model`; no existing coefficient changes):

* a boolean ``tau`` per transfer (the upgrade's ``y``), its cost in the objective;
* the new cable is a line element of its own (:func:`cable_key`): capacity its rating at the
  profile's limit less the subtree's base current (the base current of ``r``), drop coefficient
  from its impedance, no upgrades;
* each option inside the subtree has a *twin* (``Option.via``): the same connection, its path
  the lines inside the subtree plus the new cable, allowed only with the transfer
  (``x_twin <= tau``); the original only without it (``x_orig <= 1 - tau``);
* a twin's terminal and the subtree's leaves (with the transfer) hold
  ``drop(root) + drop(cable) + (drop(b) - drop(far end)) <= margin'(b)``, where ``margin'`` is
  the base margin plus the base drop from the busbar to the far end (the subtree's existing load
  no longer flows through the lines above ``r``) less the new cable's base drop (taken at
  ``sqrt(3) |Z| I_base / (0.95 V)``, an upper bound);
* **conservative on purpose**: the lines above ``r`` are *not* credited with the subtree's base
  load they lose (they keep their capacity; only the new load moved to twins leaves them), the
  other buses of the feeder are not credited with the voltage they gain, and the subtree's
  leaves also keep their constraints without the transfer. The AC check
  (:mod:`lvplan.planning.verify`) judges the real state, as for every other measure.

**The greedy** (:mod:`lvplan.planning.greedy`) takes a twin like any option, its cost including
the transfer when not built yet; a transfer is not built under connections it took already inside
the subtree (they would have to move), and once built, options inside the subtree connect only
as twins (:func:`split_leaf_slack` holds the subtree's leaves). Its choice is myopic as for
every measure: a later demand inside a split subtree has the new cable's room left, not the
lines above.

**The AC check**: a broken limit on a new cable (named ``transfer of line r`` by
:mod:`lvplan.changes.apply`) lowers that cable's capacity in the model; an AC cut on an LV line
above a subtree lists the transfer as a relief when its base current covers what the cut needs
(:func:`relieving_splits`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lvplan.locate import bus_lonlat, distance_m
from lvplan.model.catalogue import cable_types
from lvplan.planning.measures import LV_CABLE_KINDS, MeasureKind

if TYPE_CHECKING:
    from lvplan.model.network import Network
    from lvplan.planning.candidates import Instance
    from lvplan.planning.linear import Cuts, LinearGrid

#: transfers kept per LV feeder (the area's head line), best ranked first
MAX_PER_FEEDER = 2
#: the key of a transfer's new cable among the model's line elements (apart from every line id
#: and every other element key)
_CABLE_KEY = 5 << 50


def cable_key(line: int) -> int:
    """The new cable of the transfer opening ``line``, as a line element of the model."""
    return _CABLE_KEY + line


def line_label(key: int) -> str:
    """A line element of the model as a message names it: ``line 12``, or the new cable of a
    transfer (its key is no line of the network: ``line 5629499534213131`` was shown)."""
    if key >= _CABLE_KEY:
        return f"the new cable of the transfer opening line {key - _CABLE_KEY}"
    return f"line {key}"


@dataclass(frozen=True)
class FeederSplit:
    """A transfer on offer: the line it opens and the subtree beyond it."""

    line: int
    area: int
    far_bus: int
    buses: frozenset[int]
    base_ka: float  # the subtree's base current (the current of ``line`` at the base)
    shift_pu: float  # what every subtree bus's voltage margin gains at the base (may be < 0)


@dataclass
class SplitTerm:
    """One transfer in the linear model (indices as in :class:`LinearGrid`)."""

    upgrade: int
    line: int
    area: int
    far_bus: int
    cable: int  # cable_key(line)
    buses: frozenset[int]
    leaf_rows: list[int]  # rows of AreaGrid.leaves inside the subtree
    leaf_margin: list[int]  # their margins with the transfer (voltage units)
    far_cols: list[int]  # AreaGrid.line_pos of the lines from the busbar to the far end
    shift: int = 0


@dataclass
class _Cand:
    score: float
    bus: int
    line: int
    feeder: int
    buses: set[int] = field(default_factory=set)


def offer_transfers(network: Network, inst: Instance) -> int:
    """Add the transfers worth offering to ``inst`` (upgrades of kind ``transfer``, their
    :class:`FeederSplit` in ``inst.transfers``, a twin per option inside each subtree); returns
    how many."""
    from lvplan.changes.resolve import far_end

    meas, crit = inst.measures, inst.criteria
    if meas is None or not inst.needed_lines:
        return 0
    try:
        xm = meas.cable_measure(MeasureKind.TRANSFER)
    except Exception:  # a catalogue without the entry: nothing to offer
        return 0
    reach = max(crit.supply_radius_m.values(), default=0.0)
    if reach <= 0 or not xm.cables:
        return 0
    topo = network.topology
    blon, blat = bus_lonlat(network)
    cables = cable_types()
    tan = math.tan(math.acos(inst.pf))
    lim = crit.line_max_loading_percent / 100.0
    # the cheapest upgrade of each needed line (what a split may save), and each bus's options
    cheapest: dict[int, float] = {}
    dearest: dict[int, float] = {}
    for up in inst.upgrades:
        if up.kind in LV_CABLE_KINDS:
            cheapest[up.element] = min(cheapest.get(up.element, math.inf), up.cost_cny)
            dearest[up.element] = max(dearest.get(up.element, 0.0), up.cost_cny)
    site_cny: dict[int, float] = {}  # demand -> its cheapest new substation
    for o in inst.options:
        if o.site is not None:
            cny = inst.sites[o.site].cost_cny
            site_cny[o.demand] = min(site_cny.get(o.demand, math.inf), cny)
    kw_at: dict[int, dict[int, float]] = {}  # bus -> demand -> kW
    for o in inst.options:
        if o.bus is not None and o.site is None and o.via is None:
            kw_at.setdefault(o.bus, {})[o.demand] = inst.demands[o.demand].design_kw
    detour = crit.detour_factor
    per_km = min(
        meas.cable_cost_cny(MeasureKind.TRANSFER, n, 1.0) - xm.fixed_cny for n in xm.cables
    )
    made = pruned = 0
    new_opts = []
    for a, tree in sorted(inst.areas.items()):
        if not 0 <= a < len(topo.areas) or len(topo.areas[a].trafos) != 1:
            continue
        # buses in tree order; each bus's subtree is a contiguous run of the preorder
        order: list[int] = []
        stack = [tree.root]
        while stack:
            u = stack.pop()
            order.append(u)
            stack.extend(reversed(tree.children.get(u, [])))
        pos = {b: i for i, b in enumerate(order)}
        size = dict.fromkeys(order, 1)
        for b in reversed(order):
            if b in tree.parent:
                size[tree.parent[b][1]] += size[b]
        # what a split below each bus saves: the needed lines on its path, by their cheapest
        saves: dict[int, float] = {tree.root: 0.0}
        most: dict[int, float] = {tree.root: 0.0}  # the needed lines above, at their dearest
        feeder: dict[int, int] = {}
        for b in order[1:]:
            line, above = tree.parent[b]
            more = cheapest.get(line, 0.0) if line in inst.needed_lines else 0.0
            saves[b] = saves[above] + more
            most[b] = most[above] + (dearest.get(line, 0.0) if line in inst.needed_lines else 0)
            feeder[b] = feeder.get(above, line) if above != tree.root else line
        cands: list[_Cand] = []
        rb = network.bus_row(tree.root)
        for b in order[1:]:
            line = tree.parent[b][0]
            if saves[b] <= 0 or line not in inst.line_data:
                continue
            sub = order[pos[b] : pos[b] + size[b]]
            if not any(x in kw_at for x in sub):
                continue
            fr = network.bus_row(b)
            route = float(distance_m(blon[rb], blat[rb], blon[fr], blat[fr])) * detour
            if not route <= reach:  # out of reach, or no coordinates
                continue
            est = xm.fixed_cny + max(route, 1.0) / 1000.0 * per_km  # at most its cost
            site = max((site_cny.get(i, 0.0) for x in sub for i in kw_at.get(x, {})), default=0.0)
            if est >= most[b] + site:  # dearer than all it could plausibly save
                pruned += 1
                continue
            cands.append(_Cand(saves[b] - est, b, line, feeder[b], set(sub)))
        cands.sort(key=lambda c: (-c.score, c.line))
        kept: list[_Cand] = []
        per_feeder: dict[int, int] = {}
        for c in cands:
            if per_feeder.get(c.feeder, 0) >= MAX_PER_FEEDER or any(
                c.bus in k.buses or k.bus in c.buses for k in kept
            ):
                pruned += 1
                continue
            split, up = _split(network, inst, tree, c, blon, blat, rb, reach, xm, cables, tan, lim)
            if split is None or up is None:
                pruned += 1
                continue
            end, moved = far_end(network, c.line)
            if end != c.bus or set(moved) != c.buses:  # a mesh: the change moves another part
                pruned += 1
                continue
            kept.append(c)
            per_feeder[c.feeder] = per_feeder.get(c.feeder, 0) + 1
            inst.transfers[c.line] = split
            inst.upgrades.append(up)
            made += 1
            for o in inst.options:
                if o.via is None and o.site is None and o.bus in c.buses:
                    new_opts.append(dataclasses.replace(o, via=c.line))
    inst.options.extend(new_opts)
    inst.stats["transfers"] = made
    inst.stats["transfers_pruned"] = pruned
    inst.stats["transfer_twins"] = len(new_opts)
    inst.stats["upgrades"] = len(inst.upgrades)
    return made


def _split(network, inst, tree, c: _Cand, blon, blat, rb, reach, xm, cables, tan, lim):
    """The transfer of candidate ``c`` (its :class:`FeederSplit` and upgrade), or (None, None)
    when it cannot be offered: out of reach, no coordinates, its cable too small for the
    subtree's base current, or a subtree bus below its voltage minimum once moved."""
    from lvplan.planning.candidates import Upgrade

    fr = network.bus_row(c.bus)
    route = float(distance_m(blon[rb], blat[rb], blon[fr], blat[fr])) * inst.criteria.detour_factor
    if not math.isfinite(route) or route > reach:
        return None, None
    route = max(route, 1.0)
    vn = tree.vn_kv
    vpu = inst.criteria.lv_min_voltage_v / (vn * 1000.0)
    base_ka = inst.line_data[c.line][3]
    demands: dict[int, float] = {}
    for o in inst.options:
        if o.bus in c.buses and o.site is None and o.via is None:
            demands[o.demand] = inst.demands[o.demand].design_kw
    new_ka = sum(demands.values()) / (math.sqrt(3) * vn * vpu * inst.pf * 1000.0)
    km = route / 1000.0
    opts = sorted((inst.measures.cable_cost_cny(MeasureKind.TRANSFER, n, km), n) for n in xm.cables)
    fit = [(cost, n) for cost, n in opts if cables[n].max_i_ka * lim >= base_ka + new_ka]
    cost, name = fit[0] if fit else max(opts, key=lambda cn: cables[cn[1]].max_i_ka)
    ct = cables[name]
    r, x = ct.r_ohm_per_km * km, ct.x_ohm_per_km * km
    if ct.max_i_ka * lim < base_ka:
        return None, None
    if tree.root not in tree.margin_pu or c.bus not in tree.margin_pu:
        return None, None
    d_new = math.sqrt(3) * base_ka * math.hypot(r, x) / (vn * 0.95)
    shift = tree.margin_pu[tree.root] - tree.margin_pu[c.bus] - d_new
    if min((tree.margin_pu[b] for b in c.buses if b in tree.margin_pu), default=0.0) + shift < 0:
        return None, None
    up = Upgrade(
        MeasureKind.TRANSFER,
        c.line,
        float(cost),
        cable=name,
        capacity=float(ct.max_i_ka),
        r=r,
        x=x,
        to_bus=int(tree.root),
        length_m=route,
    )
    split = FeederSplit(c.line, tree.area, c.bus, frozenset(c.buses), base_ka, shift)
    return split, up


# -- the linear model -------------------------------------------------------------------------


def grid_terms(grid: LinearGrid, cuts: Cuts) -> None:
    """The transfers' terms in ``grid``: each new cable as a line element, each transfer's
    :class:`SplitTerm` in ``grid.splits`` (by upgrade), and every twin's path and margin (its
    ``via`` the transfer's upgrade; -2 when the transfer is no longer offered)."""
    from lvplan.planning.linear import KW_UNIT, V_UNIT, Element, ceil_int

    inst = grid.inst
    grid.splits = {}
    if not inst.transfers:
        return
    crit = inst.criteria
    tan = math.tan(math.acos(inst.pf))
    lim = crit.line_max_loading_percent / 100.0
    of_line: dict[int, int] = {}
    for u, up in enumerate(inst.upgrades):
        if up.kind != MeasureKind.TRANSFER or u in cuts.banned:
            continue
        sp: FeederSplit = inst.transfers[up.element]
        tree = inst.areas[sp.area]
        ag = grid.areas.get(sp.area)
        if ag is None:
            continue
        vn = tree.vn_kv
        vpu = crit.lv_min_voltage_v / (vn * 1000.0)
        to_u = inst.pf * math.sqrt(3) * vn * vpu * 1000.0 / KW_UNIT
        k0 = KW_UNIT * 1e-3 / (vn * vn * vpu) / V_UNIT
        ck = cable_key(sp.line)
        cut = cuts.line_kw.get(ck, 0.0) / KW_UNIT
        grid.lines[ck] = Element(
            math.floor((up.capacity * lim - sp.base_ka) * to_u - cut),
            ceil_int((up.r + up.x * tan) * k0),
            [],
            [],
            [],
        )
        shift = math.floor(sp.shift_pu / V_UNIT)
        rows = [i for i, b in enumerate(ag.leaves) if b in sp.buses]
        grid.splits[u] = SplitTerm(
            u,
            sp.line,
            sp.area,
            sp.far_bus,
            ck,
            sp.buses,
            rows,
            [int(ag.leaf_margin[i]) + shift for i in rows],
            [ag.line_pos[ln] for ln in tree.path(sp.far_bus)],
            shift,
        )
        of_line[sp.line] = u
    for k, o in enumerate(inst.options):
        if o.via is None:
            continue
        ot = grid.options[k]
        u = of_line.get(o.via, -2)
        if u < 0:
            grid.options[k] = dataclasses.replace(ot, via=-2)
            continue
        st = grid.splits[u]
        inner = inst.areas[st.area].path(o.bus)  # type: ignore[arg-type]
        inner = inner[: inner.index(st.line)]
        grid.options[k] = dataclasses.replace(
            ot, path=[*inner, st.cable], margin=ot.margin + st.shift, via=u
        )


def add_model(pm: Any, opts: list[int], drop_at: dict[int, Any]) -> None:
    """The transfers' constraints in the CP-SAT model ``pm`` (:class:`PlanModel`), for its
    options ``opts``: ``tau`` per transfer, twins only with it, originals only without it, and
    the voltage of twins' terminals and of the subtree's leaves through the new cable."""
    grid, m, inst = pm.grid, pm.m, pm.inst
    splits: dict[int, SplitTerm] = getattr(grid, "splits", {})
    if not splits:
        return
    ot = grid.options
    twins: dict[int, list[int]] = {}
    by_bus: dict[int, list[int]] = {}  # originals by bus
    for k in opts:
        o = ot[k]
        if o.via >= 0:
            twins.setdefault(o.via, []).append(k)
        elif o.via == -2:
            m.add(pm.x[k] == 0)
        elif o.site is None and (b := inst.options[k].bus) is not None:
            by_bus.setdefault(b, []).append(k)
    live = set(twins) | {u for u in pm.y if u in splits}
    for u in sorted(live):
        st = splits[u]
        if u not in pm.y:
            pm.y[u] = m.new_bool_var(f"y{u}")
        tau = pm.y[u]
        for k in twins.get(u, []):
            m.add_implication(pm.x[k], tau)
        for b in st.buses:
            for k in by_bus.get(b, []):
                m.add_implication(tau, pm.x[k].Not())
        tree = inst.areas[st.area]
        if tree.root not in drop_at or st.far_bus not in drop_at:
            continue
        base = drop_at[tree.root] + pm.drop_line.get(st.cable, 0) - drop_at[st.far_bus]
        for k in twins.get(u, []):
            b = inst.options[k].bus
            if b in drop_at:
                row = base + drop_at[b] + ot[k].cable_drop <= ot[k].margin
                pm.voltage_rows.append(m.add(row).only_enforce_if(pm.x[k]).index)
        ag = grid.areas[st.area]
        for i, margin in zip(st.leaf_rows, st.leaf_margin, strict=True):
            leaf = ag.leaves[i]
            if leaf in drop_at:
                row = base + drop_at[leaf] <= margin
                pm.voltage_rows.append(m.add(row).only_enforce_if(tau).index)


# -- the greedy ---------------------------------------------------------------------------------


def split_leaf_slack(
    grid: LinearGrid, area: int, d: np.ndarray, d_t: int, built_ups: set[int], cable_drop: dict
) -> int:
    """The least voltage slack (the 10 kV term left out) over the subtree leaves of the
    transfers built in ``area`` (``d``: the area's line drops, ``d_t`` its transformer's,
    ``cable_drop``: each new cable's drop)."""
    worst = 1 << 62
    ag = grid.areas[area]
    for u in built_ups:
        st = grid.splits.get(u)
        if st is None or st.area != area or not st.leaf_rows:
            continue
        far = int(sum(int(d[c]) for c in st.far_cols))
        full = ag.leaf_paths[st.leaf_rows] @ d
        slack = np.array(st.leaf_margin) - (full - far) - d_t - cable_drop.get(st.cable, 0)
        worst = min(worst, int(slack.min()))
    return worst


# -- the AC check -------------------------------------------------------------------------------

#: the share of a subtree's base current a transfer is counted to take off the lines above it
#: when it relieves an AC cut (the currents of the subtree and of the rest are not quite in
#: phase, so the line keeps a little more than the difference of their magnitudes)
RELIEF_SHARE = 0.9


def relieving_splits(inst: Instance, sol: Any, line: int, need_ka: float) -> list[int]:
    """The transfers (upgrade indices) that take at least ``need_ka`` of base current off LV
    ``line`` (their subtree lies beyond it), none of them built in ``sol`` already."""
    if not inst.transfers:
        return []
    built = set(sol.upgrades)
    out = []
    for u, up in enumerate(inst.upgrades):
        if up.kind != MeasureKind.TRANSFER:
            continue
        sp: FeederSplit = inst.transfers[up.element]
        if u in built or RELIEF_SHARE * sp.base_ka < need_ka:
            continue
        if line == sp.line or line in inst.areas[sp.area].path(sp.far_bus):
            out.append(u)
    return out
