"""MV islands (lvplan.model.topology.mv_islands): the unit a PostgreSQL register locks. Islands
must be electrically independent: a load in one moves nothing in another."""

from __future__ import annotations

import copy

import numpy as np
import pandapower as pp
from reference import OPTS

from lvplan.model.topology import mv_islands


def _substation(net, hv: int, name: str) -> list[int]:
    """An HV/MV transformer from ``hv`` to a 10 kV busbar with one feeder and one LV area."""
    mv = pp.create_bus(net, 10.0, name=f"{name} busbar")
    far = pp.create_bus(net, 10.0, name=f"{name} far")
    lv = pp.create_bus(net, 0.4, name=f"{name} LV")
    pp.create_transformer(net, hv, mv, "25 MVA 110/20 kV")
    pp.create_line(net, mv, far, 2.0, "NA2XS2Y 1x185 RM/25 12/20 kV")
    pp.create_transformer(net, far, lv, "0.4 MVA 20/0.4 kV")
    pp.create_load(net, lv, p_mw=0.1)
    return [mv, far, lv]


def test_substations_fed_from_the_slack_are_islands_and_an_hv_line_joins_them():
    """Two substations straight on the 110 kV slack bus: two islands. The same two, one of them
    behind a 110 kV line: the line couples them (its current carries both), so one island,
    with the HV bus beyond the slack in it."""
    net = pp.create_empty_network()
    slack = pp.create_bus(net, 110.0)
    pp.create_ext_grid(net, slack)
    a = _substation(net, slack, "A")
    b = _substation(net, slack, "B")
    isl = mv_islands(net)
    assert isl[slack] == slack  # a slack bus is its own island
    assert {int(isl[x]) for x in a} == {min(a)} and {int(isl[x]) for x in b} == {min(b)}

    hv_far = pp.create_bus(net, 110.0)
    pp.create_line(net, slack, hv_far, 10.0, "149-AL1/24-ST1A 110.0")
    c = _substation(net, hv_far, "C")
    d = _substation(net, hv_far, "D")
    isl = mv_islands(net)
    assert len({int(isl[x]) for x in [hv_far, *c, *d]}) == 1
    assert int(isl[c[0]]) != int(isl[a[0]])  # A and B are still islands of their own


def test_a_bus_switched_onto_the_slack_is_part_of_it(sz):
    """sz-futian: its 10 kV slack busbar feeds two feeders, each an island of its own."""
    isl = mv_islands(sz.pp)
    lv = sz.pp.bus.index[sz.pp.bus.vn_kv < 1]
    assert sorted(isl[lv].unique().tolist()) == [2, 27]
    net = copy.deepcopy(sz.pp)
    tie = pp.create_bus(net, 10.0)
    pp.create_switch(net, 0, tie, et="b", closed=True)  # a second section of the slack busbar
    x = pp.create_bus(net, 10.0)
    pp.create_line(net, tie, x, 1.0, "NA2XS2Y 1x185 RM/25 12/20 kV")
    isl2 = mv_islands(net)
    assert int(isl2[tie]) == tie and int(isl2[x]) == x  # not joined to the other feeders
    assert int(isl2[15]) == 2 and int(isl2[31]) == 27


def test_a_load_in_one_island_moves_nothing_in_another(sz):
    """pandapower's AC load flow with 150 kW more in island 2 of sz-futian: every voltage and
    every branch current of island 27 is unchanged (to round-off)."""
    isl = mv_islands(sz.pp)
    net = copy.deepcopy(sz.pp)
    pp.runpp(net, **OPTS)
    vm0 = net.res_bus.vm_pu.copy()
    va0 = net.res_bus.va_degree.copy()
    i0 = net.res_line.i_ka.copy()
    pp.create_load(net, 15, p_mw=0.15, q_mvar=0.05)
    pp.runpp(net, **OPTS)
    other = isl.index[isl == 27]
    here = isl.index[isl == 2]
    assert np.max(np.abs(net.res_bus.vm_pu[other] - vm0[other])) < 1e-9
    assert np.max(np.abs(net.res_bus.va_degree[other] - va0[other])) < 1e-7
    lines = net.line.index[net.line.from_bus.isin(other)]
    assert np.max(np.abs(net.res_line.i_ka[lines] - i0[lines])) < 1e-9
    assert np.max(np.abs(net.res_bus.vm_pu[here] - vm0[here])) > 1e-3  # it did move its own
