"""An independent full-network AC evaluation of a connection under profile `cn`.

Written from the profile's text only, on pandapower's result tables, without any lvplan code
beyond the profile's numbers: the judge the tests hold `lvplan.check` to.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandapower as pp
import pandapower.topology as top

OPTS = dict(
    algorithm="nr",
    calculate_voltage_angles=True,
    init="auto",
    tolerance_mva=1e-9,
    trafo_model="t",
    trafo_loading="current",
)


def _violations(net, crit) -> set[tuple[str, int]]:
    out: set[tuple[str, int]] = set()
    vn = net.bus.vn_kv
    volts = net.res_bus.vm_pu * vn * 1000.0
    for b in net.bus.index:
        v, pu = volts.at[b], net.res_bus.vm_pu.at[b]
        if np.isnan(pu):
            continue
        if vn.at[b] < 1.0:
            if v < crit.lv_min_voltage_v or v > crit.lv_max_voltage_v:
                out.add(("bus", int(b)))
        elif vn.at[b] <= 35.0 and (pu < crit.mv_min_voltage_pu or pu > crit.mv_max_voltage_pu):
            out.add(("bus", int(b)))
    for name, lim in (
        ("line", crit.line_max_loading_percent),
        ("trafo", crit.trafo_max_loading_percent),
        ("trafo3w", crit.trafo_max_loading_percent),  # (lvplan refuses MV/LV ones)
    ):
        if f"res_{name}" not in net or net[f"res_{name}"].empty:
            continue
        res = net[f"res_{name}"].loading_percent
        for i in res.index[res > lim]:
            out.add((name, int(i)))
    return out


class Reference:
    def __init__(self, pp_net, crit):
        import copy

        self.net = copy.deepcopy(pp_net)
        self.crit = crit
        pp.runpp(self.net, **OPTS)
        self.base = _violations(self.net, crit)
        g = top.create_nxgraph(self.net, include_trafos=False, respect_switches=True)
        lv = [b for b in self.net.bus.index if self.net.bus.vn_kv.at[b] < 1.0]
        self.lv_graph = g.subgraph(lv)

    def own(self, bus: int) -> set[tuple[str, int]]:
        comp = nx.node_connected_component(self.lv_graph, bus)
        net = self.net
        lines = net.line.index[net.line.from_bus.isin(comp) & net.line.to_bus.isin(comp)]
        trafos = net.trafo.index[net.trafo.lv_bus.isin(comp)]
        return (
            {("bus", int(b)) for b in comp}
            | {("line", int(i)) for i in lines}
            | {("trafo", int(i)) for i in trafos}
        )

    def decide(self, bus: int, design_kw: float, pf: float = 0.9) -> str:
        own = self.own(bus)
        if self.base & own:
            return "does_not_fit"
        p = design_kw / 1000.0
        idx = pp.create_load(self.net, bus, p_mw=p, q_mvar=p * np.tan(np.arccos(pf)))
        try:
            pp.runpp(self.net, **OPTS)
            if not self.net.converged:
                return "not_assessable"
            after = _violations(self.net, self.crit) - (self.base - own)
        except pp.LoadflowNotConverged:
            return "not_assessable"
        finally:
            self.net.load.drop(index=[idx], inplace=True)
        return "does_not_fit" if after else "fits"


# -- N-1 (issue 14) ----------------------------------------------------------------------------
# Written from the profile's N-1 text: after a head section is lost and a tie closed, the MV
# network (buses 1-35 kV, lines between MV buses, units with an MV secondary) must stay within
# the emergency limits. A contingency passes when one of its options does; one whose every
# option already fails without the new load fails whatever the load; one with no option (no
# restoring tie) never passes. The contingencies (which line is lost, which switches close)
# are given by the caller, as lvplan found them: this judge only switches, solves and judges.


def _n1_violations(net, crit) -> set[tuple[str, int]]:
    out: set[tuple[str, int]] = set()
    vn = net.bus.vn_kv
    mv = (vn >= 1.0) & (vn <= 35.0)
    for b in net.bus.index[mv]:
        pu = net.res_bus.vm_pu.at[b]
        if np.isnan(pu) or not crit.n1_mv_min_voltage_pu <= pu <= crit.n1_mv_max_voltage_pu:
            out.add(("bus", int(b)))
    mv_ids = set(net.bus.index[mv])
    lines = net.line.index[net.line.from_bus.isin(mv_ids) & net.line.to_bus.isin(mv_ids)]
    ll = net.res_line.loading_percent
    for i in lines:
        if ll.at[i] > crit.n1_line_max_loading_percent:
            out.add(("line", int(i)))
    tl = net.res_trafo.loading_percent
    for i in net.trafo.index[net.trafo.vn_lv_kv >= 1.0]:
        if tl.at[i] > crit.n1_trafo_max_loading_percent:
            out.add(("trafo", int(i)))
    return out


class N1Reference:
    """``contingencies``: for each contingency, its options as (line lost, switches closed);
    the line lost may be a tuple of lines (a section lost whole); an empty list is a
    contingency with no restoring tie."""

    def __init__(self, pp_net, crit, contingencies: list[list[tuple[int, tuple[int, ...]]]]):
        import copy

        self.net = copy.deepcopy(pp_net)
        self.crit = crit
        self.contingencies = contingencies
        self._before: dict[tuple[int, tuple[int, ...]], bool] = {}

    def _option_ok(self, option: tuple[int, tuple[int, ...]], load) -> bool:
        net = self.net
        line, switches = option
        lines = line if isinstance(line, tuple) else (line,)  # a section of several lines
        closed = {s: bool(net.switch.at[s, "closed"]) for s in switches}
        net.line.loc[list(lines), "in_service"] = False
        for s in switches:
            net.switch.at[s, "closed"] = True
        idx = None
        if load is not None:
            bus, p, q = load
            idx = pp.create_load(net, bus, p_mw=p, q_mvar=q)
        try:
            pp.runpp(net, **OPTS)
            return bool(net.converged) and not _n1_violations(net, self.crit)
        except pp.LoadflowNotConverged:
            return False
        finally:
            net.line.loc[list(lines), "in_service"] = True
            for s, c in closed.items():
                net.switch.at[s, "closed"] = c
            if idx is not None:
                net.load.drop(index=[idx], inplace=True)

    def passes(self, bus: int, design_kw: float, pf: float = 0.9) -> bool:
        p = design_kw / 1000.0
        load = (bus, p, p * np.tan(np.arccos(pf)))
        for options in self.contingencies:
            if not options:
                return False
            before = []
            for o in options:
                if o not in self._before:
                    self._before[o] = self._option_ok(o, None)
                before.append(self._before[o])
            if not any(before):
                return False
            if not any(self._option_ok(o, load) for o in options):
                return False
        return True

    def passes_without_load(self) -> bool:
        """Whether every contingency passes as the network stands."""
        return all(
            options and any(self._option_ok(o, None) for o in options)
            for options in self.contingencies
        )

    def decide(self, normal: Reference, bus: int, design_kw: float, pf: float = 0.9) -> str:
        """The decision with N-1: the normal-state decision, then the contingencies."""
        d = normal.decide(bus, design_kw, pf)
        if d != "fits":
            return d
        return "fits" if self.passes(bus, design_kw, pf) else "does_not_fit"


def n1_options(topology, feeder: str) -> list[list[tuple[int, tuple[int, ...]]]]:
    """The relevant contingencies of ``feeder`` in :class:`N1Reference`'s form, read from
    lvplan's :class:`~lvplan.n1.contingency.N1Topology` (what lvplan says to switch)."""
    out = []
    for c in topology.relevant(feeder):
        # a section lost whole (a head and the cable laid beside it), all its lines out
        lost = tuple(c.lost_lines) if len(c.lost_lines) > 1 else c.line
        out.append([(lost, o.tie.switches if o.tie else ()) for o in c.options])
    return out
