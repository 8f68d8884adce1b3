"""The LV topology kept as arrays (lvplan.model.topology.Topology): its areas and the paths a
decision reports are those of the networkx graph of the whole LV network, ties included."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pandapower as pp
import pytest

from lvplan.model.topology import build_topology


def _meshed_lv_net(seed: int):
    """Two transformer areas on one MV bus, each a random meshed LV grid with parallel lines,
    closed and open bus-bus switches, a line behind an open line switch, an out-of-service
    line, a bus of its own and bus indices out of order."""
    rng = np.random.default_rng(seed)
    net = pp.create_empty_network()
    mv = pp.create_bus(net, vn_kv=10.0, index=5000)
    pp.create_ext_grid(net, mv)
    for area in range(2):
        ids = rng.permutation(40) + 100 * (area + 1)  # indices out of order
        buses = [pp.create_bus(net, vn_kv=0.4, index=int(i)) for i in ids]
        pp.create_transformer(net, mv, buses[0], std_type="0.4 MVA 10/0.4 kV")
        for k in range(1, len(buses)):  # a spanning tree, then chords and parallels
            j = int(rng.integers(0, k))
            pp.create_line(net, buses[j], buses[k], 0.05, "NAYY 4x150 SE")
        for _ in range(25):
            a, b = (int(x) for x in rng.choice(buses, 2, replace=False))
            pp.create_line(net, a, b, 0.05, "NAYY 4x150 SE")
        for _ in range(6):
            a, b = (int(x) for x in rng.choice(buses, 2, replace=False))
            pp.create_switch(net, a, b, et="b", closed=bool(rng.integers(0, 2)))
        off = pp.create_line(net, buses[1], buses[2], 0.05, "NAYY 4x150 SE", in_service=False)
        cut = pp.create_line(net, buses[3], buses[4], 0.05, "NAYY 4x150 SE")
        pp.create_switch(net, buses[3], cut, et="l", closed=False)
        assert off >= 0
    pp.create_bus(net, vn_kv=0.4, index=9999)  # a bus alone: an area of its own
    return net


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_path_lines_are_the_whole_graphs_shortest_paths(seed):
    net = _meshed_lv_net(seed)
    topo = build_topology(net)
    assert topo._whole is None  # checks never build the networkx graph
    paths = {b: topo.path_lines(b) for b in topo.bus_area}
    g = topo.lv_graph
    assert len(topo.areas) == 3
    assert [len(a.buses) for a in topo.areas] == [40, 40, 1]
    for bus, got in paths.items():
        area = topo.area_of(bus)
        if not area.trafos:
            assert got == []
            continue
        start = int(net.trafo.at[area.trafos[0], "lv_bus"])
        nodes = nx.shortest_path(g, start, bus)
        want = []
        for a, b in itertools.pairwise(nodes):
            keys = [k for k in g[a][b] if k[0] == "line"]
            if keys:
                want.append(int(keys[0][1]))
        assert got == want, bus
    # the graph itself: every closed, in-service edge, and nothing behind an open switch
    lines = {k[1] for _, _, k in g.edges(keys=True) if k[0] == "line"}
    opened = set(net.switch.element[(net.switch.et == "l") & ~net.switch.closed])
    assert lines == set(net.line.index[net.line.in_service]) - opened
    assert sorted(lines) == sorted(x for a in topo.areas for x in a.lines)


def _winding_cases() -> list[tuple[str, str, int, str]]:
    import pandapower.networks as pn

    net = pn.example_multivoltage()  # two transformers and a three-winding one
    out = []
    for name, et in (("trafo", "t"), ("trafo3w", "t3")):
        cols = ("hv_bus", "mv_bus", "lv_bus") if et == "t3" else ("hv_bus", "lv_bus")
        out += [(name, et, int(i), c) for i in net[name].index for c in cols]
    return out


@pytest.mark.parametrize(("name", "et", "row", "end"), _winding_cases())
def test_supplied_buses_are_pandapowers_with_a_transformer_side_switched_out(name, et, row, end):
    """A transformer (or one winding of a three-winding one) switched out at one side feeds
    nothing through it, as pandapower's own topology says: the supplied buses are
    ``pandapower.topology.unsupplied_buses``' complement. Before, the topology followed only
    line switches: each of these 7 cases counted buses as supplied that pandapower leaves
    unsupplied (a check on the island was then not assessable: its base had NaN voltages)."""
    import pandapower.networks as pn
    import pandapower.topology as top

    from lvplan.model.topology import energized_buses

    net = pn.example_multivoltage()
    pp.create_switch(net, int(net[name].at[row, end]), row, et=et, closed=False)
    theirs = set(net.bus.index[net.bus.in_service.astype(bool)]) - set(top.unsupplied_buses(net))
    ours = set(energized_buses(net).tolist())
    assert ours == theirs
    assert len(theirs) < len(net.bus)  # (the switch cut something off)
