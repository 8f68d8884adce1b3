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
    ):
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
