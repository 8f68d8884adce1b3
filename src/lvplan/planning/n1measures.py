"""The N-1 measures a plan may take besides feeder reinforcement: a new normally-open tie
between two 10 kV feeders, and a 10/0.4 kV transformer moved to another feeder.

Both are offered by :mod:`lvplan.planning.n1plan` as *relief* of the cuts a contingency teaches
(:class:`lvplan.planning.linear.Cuts`: a cut holds while none of its relief upgrades is built),
so the optimiser's relief constraints and the greedy's cheapest relief choose among
reinforcement, a new tie and a move by cost, and the AC + N-1 check of the next round judges
what was built. Each is an :class:`~lvplan.planning.candidates.Upgrade` of a kind in
:data:`~lvplan.planning.measures.N1_KINDS`, made once per instance and found again by its
buses, and becomes a network change (:class:`lvplan.changes.NewTie`,
:class:`lvplan.changes.MoveTransformer`).

**A new tie** is offered for a contingency with no restoring tie, with no load-flow solution,
or whose every option breaks an emergency limit: from a bus of its cut-off part to the nearest
10 kV bus of each of the ``MAX_TIES`` nearest other feeders whose head sections have room for
the cut-off load within the emergency limit (:func:`room_kva` at least what the lost section
carries at the design peak: a screening, the contingency's load flow decides); route =
distance x the detour factor 1.3, within the 3 km reach of a new 10 kV cable. Left out: the
feeders its existing options already close onto (they failed) and the source busbar (a cable
from the busbar would be a new feeder, not a tie). Feeders of another MV island are allowed
where the two buses have one nominal voltage: the tie is open in normal operation, so the
islands stay apart, and after the contingency the cut-off part is fed through the tie alone
(its own source is gone), so two sources never run in parallel; the contingency's load flow
judges the voltage it then gets.

**A moved transformer** is offered for a 10 kV line over its emergency loading limit in the
best option: a unit whose load flows through that line once the option has switched (the buses
beyond it: the cut-off part and what the tie joins to it) and whose design-peak loading is at
least ``MOVE_MARGIN`` times what the line carries beyond its limit, moved to the nearest bus of
a feeder that is neither the contingency's nor one its options close onto, whose heads have
room for the unit's load and whose own contingencies pass. Moving a unit changes the normal
state and the target feeder's N-1: the next round's AC check judges the first, and
:mod:`lvplan.planning.n1plan` the second (a move whose target then fails N-1 is withdrawn).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import networkx as nx
import numpy as np

from lvplan.changes.spec import DETOUR_FACTOR, MAX_TIE_LENGTH_M
from lvplan.locate import bus_lonlat, distance_m
from lvplan.model.catalogue import rated_class
from lvplan.model.network import Network
from lvplan.model.topology import LV_MAX_KV, unfed
from lvplan.n1.contingency import Contingency, N1Topology, Option
from lvplan.planning.candidates import Instance, Upgrade
from lvplan.planning.measures import N1_KINDS, MeasureKind

#: New ties offered per contingency: to the nearest bus of each of this many other feeders.
MAX_TIES = 3
#: Moves offered per overloaded element (the units nearest a feeder with room).
MAX_MOVES = 3
#: A unit is moved only if its load covers what the element carries beyond its limit this
#: many times over (the transfer also carries the cable's losses and the new loads' growth).
MOVE_MARGIN = 1.5


class N1Offers:
    """The N-1 measures of one plan instance: made on first offer, found again by their
    buses, so that a round's cuts name the same upgrades as the last round's."""

    def __init__(self, network: Network, inst: Instance):
        self.network = network
        self.inst = inst
        net = network.pp
        lon, lat = bus_lonlat(network)
        vn = net.bus.vn_kv.to_numpy(float)
        meas = inst.measures
        # (the buses a new cable may start or end at: those the catalogue's N-1 cables are
        # rated for, by measure kind; a bus no cable of a kind serves gets none of that kind)
        self.cable_of: dict[tuple[MeasureKind, float], str | None] = {}
        for v in np.unique(vn[vn >= LV_MAX_KV]).tolist():
            for kind in N1_KINDS:
                rated = () if meas is None else rated_class(meas.cable_measure(kind).cables, v)
                self.cable_of[(kind, v)] = rated[0] if rated else None
        served = np.array(
            [any(self.cable_of.get((k, v)) for k in N1_KINDS) for v in vn.tolist()], dtype=bool
        )
        ok = (vn >= LV_MAX_KV) & served & np.isfinite(lon) & np.isfinite(lat)
        ok &= net.bus.in_service.to_numpy(bool)
        self.ids = net.bus.index.to_numpy()[ok].astype(np.int64)
        self.lon, self.lat, self.vn = lon[ok], lat[ok], vn[ok]
        self.row = {int(b): i for i, b in enumerate(self.ids.tolist())}
        self.trafos = set(net.trafo.index.tolist())
        self._made: dict[tuple[MeasureKind, int, int], int] = {}
        for u, up in enumerate(inst.upgrades):
            if up.kind == MeasureKind.MV_TIE_NEW:
                ends = sorted((up.element, up.to_bus))
                self._made[(up.kind, ends[0], ends[1])] = u
            elif up.kind == MeasureKind.TRANSFORMER_MOVE:
                self._made[(up.kind, up.element, up.to_bus)] = u

    # -- where a new cable may go --------------------------------------------------------------
    def _nearest(
        self, starts: list[int], feeder_of: dict[int, str], avoid: set[str]
    ) -> list[tuple[float, int, int, str]]:
        """(route m, start bus, end bus, feeder) to the nearest bus of each other feeder, from
        the nearest of ``starts``, nearest first, within the reach of a new cable."""
        starts = [b for b in starts if b in self.row]
        if not starts:
            return []
        feeder = np.array([feeder_of.get(int(b), "") for b in self.ids.tolist()], dtype=object)
        best: dict[str, tuple[float, int, int]] = {}
        for s in starts:
            r = self.row[s]
            same_vn = np.abs(self.vn - self.vn[r]) < 1e-9
            d = distance_m(self.lon[r], self.lat[r], self.lon, self.lat) * DETOUR_FACTOR
            for j in np.flatnonzero(same_vn & (d <= MAX_TIE_LENGTH_M)).tolist():
                f = str(feeder[j])
                if not f or f in avoid or f == "busbar" or unfed(f):
                    continue
                if f not in best or d[j] < best[f][0]:
                    best[f] = (float(d[j]), s, int(self.ids[j]))
        return sorted((m, a, b, f) for f, (m, a, b) in best.items())

    def _upgrade(self, kind: MeasureKind, element: int, to_bus: int, route_m: float) -> int | None:
        key = (kind, element, to_bus)
        if kind == MeasureKind.MV_TIE_NEW:  # a tie joins two buses, whichever end it starts
            key = (kind, min(element, to_bus), max(element, to_bus))
        if key in self._made:
            return self._made[key]
        meas = self.inst.measures
        assert meas is not None
        cable = self.cable_of.get((kind, float(self.vn[self.row[to_bus]])))
        if cable is None:  # (no cable of this kind rated for the bus's network: none offered)
            return None
        length_m = max(route_m, 1.0)
        cost = meas.cable_cost_cny(kind, cable, length_m / 1000.0)
        self.inst.upgrades.append(
            Upgrade(kind, element, cost, cable=cable, to_bus=to_bus, length_m=length_m)
        )
        u = len(self.inst.upgrades) - 1
        self._made[key] = u
        return u

    # -- the offers ----------------------------------------------------------------------------
    def ties(
        self, planned: Network, topo: N1Topology, c: Contingency, limit_percent: float
    ) -> tuple[int, ...]:
        """New ties that give contingency ``c`` (of the planned network ``topo``) another
        restoring option: from its cut-off part to the nearest other feeders whose heads have
        room for the cut-off load (what the lost section carries at the design peak) within the
        emergency limit ``limit_percent``, leaving out those its options already close onto."""
        if not c.cut_off:
            return ()
        avoid = {c.feeder} | {f for o in c.options if o.tie is not None for f in o.tie.feeders}
        need = max((_flow_kva(planned, ln) for ln in c.lost_lines), default=0.0)
        near = [
            x
            for x in self._nearest(sorted(c.cut_off), topo.mv.feeder_of, avoid)
            if room_kva(planned, topo, x[3], limit_percent) >= need
        ]
        made = (self._upgrade(MeasureKind.MV_TIE_NEW, a, b, m) for m, a, b, _f in near[:MAX_TIES])
        return tuple(u for u in made if u is not None)

    def moves(
        self,
        planned: Network,
        topo: N1Topology,
        c: Contingency,
        option: Option,
        element: str,
        need_kva: float,
        feeder_ok: Callable[[str], bool],
        limit_percent: float,
    ) -> tuple[int, ...]:
        """Units whose load flows through the 10 kV line ``element`` in ``option`` of ``c``
        (those beyond it once the option has switched) carrying at least ``need_kva`` x
        ``MOVE_MARGIN`` at the planned network's design peak, each moved to the nearest bus of
        a feeder whose heads have room for it (within ``limit_percent``) and whose own
        contingencies pass (``feeder_ok``), the nearest first."""
        if not math.isfinite(need_kva) or need_kva <= 0:
            return ()
        beyond = _beyond(topo, c, option, element)
        if not beyond:
            return ()
        tr = planned.pp.trafo
        st = planned.base_state()
        avoid = {c.feeder} | {f for o in c.options if o.tie is not None for f in o.tie.feeders}
        found: list[tuple[float, int, int]] = []
        for pos, (t, hv) in enumerate(zip(tr.index.tolist(), tr.hv_bus.tolist(), strict=True)):
            if int(hv) not in beyond or t not in self.trafos:
                continue
            if not bool(tr.at[t, "in_service"]) or float(tr.at[t, "vn_lv_kv"]) >= LV_MAX_KV:
                continue
            ld = float(st.trafo_loading_percent[pos])
            kva = ld / 100.0 * float(tr.at[t, "sn_mva"]) * 1000.0 if math.isfinite(ld) else 0.0
            if kva < MOVE_MARGIN * need_kva:
                continue
            for m, _a, b, f in self._nearest([int(hv)], topo.mv.feeder_of, avoid):
                if room_kva(planned, topo, f, limit_percent) >= kva and feeder_ok(f):
                    found.append((m, int(t), b))
                    break
        found.sort()
        move = MeasureKind.TRANSFORMER_MOVE
        made = (self._upgrade(move, t, b, m) for m, t, b in found[:MAX_MOVES])
        return tuple(u for u in made if u is not None)


def _beyond(topo: N1Topology, c: Contingency, option: Option, element: str) -> set[int]:
    """The MV buses fed through line ``element`` once ``option`` of ``c`` has switched (the
    lost lines open, the tie closed): those that lose their path to the busbar without it,
    among the feeders the option joins."""
    comp, _, ident = element.partition(" ")
    if comp != "line" or not ident.isdigit():
        return set()
    mv = topo.mv
    feeders = {c.feeder} | (set(option.tie.feeders) if option.tie is not None else set())
    nodes = set(mv.busbar)
    for f in feeders:
        nodes |= set(mv.buses.get(f, ()))
    g = nx.MultiGraph()
    g.add_nodes_from(nodes)
    gone = {("line", ln) for ln in c.lost_lines} | {("line", int(ident))}
    for a, b, key in mv.graph.subgraph(nodes).edges(keys=True):
        if key not in gone:
            g.add_edge(a, b, key=key)
    if option.tie is not None:
        a, b = option.tie.ends
        if a in nodes and b in nodes:
            g.add_edge(a, b, key=("tie", 0))
    fed: set[int] = set()
    for s in mv.busbar:
        if s in g and s not in fed:
            fed |= nx.node_connected_component(g, s)
    return {b for b in nodes if b not in fed}


def _flow_kva(planned: Network, line: int) -> float:
    """What 10 kV line ``line`` carries at the planned network's design peak (kVA)."""
    net = planned.pp
    if line not in net.line.index:
        return 0.0
    ld = float(planned.base_state().line_loading_percent[net.line.index.get_loc(line)])
    return ld / 100.0 * element_rating_kva(net, f"line {line}") if math.isfinite(ld) else 0.0


def room_kva(planned: Network, topo: N1Topology, feeder: str, limit_percent: float) -> float:
    """What ``feeder``'s head sections can take on beyond their load at the design peak
    before the emergency limit ``limit_percent`` (kVA; 0 for a feeder with no heads)."""
    f = topo.feeders.get(feeder)
    if f is None:
        return 0.0
    net = planned.pp
    total = 0.0
    for h in f.heads:
        rating = element_rating_kva(net, f"line {h}")
        if math.isfinite(rating):
            total += rating * limit_percent / 100.0 - _flow_kva(planned, h)
    return max(total, 0.0)


def element_rating_kva(net, element: str) -> float:
    """The rating (kVA) of a 10 kV line or an HV/MV unit named ``"line N"`` / ``"trafo N"``
    in pandapower tables ``net`` (NaN for anything else)."""
    comp, _, ident = element.partition(" ")
    if not ident.isdigit():
        return math.nan
    i = int(ident)
    if comp == "line" and i in net.line.index:
        r = net.line.loc[i]
        vn = float(net.bus.at[int(r.from_bus), "vn_kv"])
        return math.sqrt(3) * vn * float(r.max_i_ka) * float(r.df) * float(r.parallel) * 1000.0
    if comp == "trafo" and i in net.trafo.index:
        return float(net.trafo.at[i, "sn_mva"]) * 1000.0
    return math.nan
