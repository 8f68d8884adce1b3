"""pandapower ``impedance`` elements inside the 10 kV network, under N-1 (review, 2026-12-07).

Judging through impedances (validation, the live mask) made each one's MV ends a source busbar
at first: a reactor inside feeder F1 cut it in two, N-1 lost F1's head, and a class A check
that breaks F2's emergency rating after F1's head is lost said ``fits``. Now an impedance is a
source only on the slack side (an upstream network's equivalent), any other between MV buses
is part of its feeder, and a feeder reached from the busbar only through one has no head that
lvplan can lose: its N-1 is not judged, so never ``fits``.

The networks: sz-futian with F2's head cable (line 21) rated 0.195 kA, so that taking all of
F1 over after F1's head (line 0) is lost is just past its emergency limit; then one element
changed. The independent N-1 judge (``tests/reference.py``) is given the contingencies by hand:
F1's head lost and tie switch 1 closed, F2's head lost and the same tie closed.
"""

from __future__ import annotations

import copy

import pandapower as pp
import pytest
from reference import N1Reference, Reference

import lvplan
from lvplan.model.network import Network

BY_HAND = [[(0, (1,))], [(21, (1,))]]


def _sz(tight: bool = True):
    net = copy.deepcopy(lvplan.load_network("sz-futian").pp)
    for t in [k for k in net if k.startswith("res_")]:
        net[t] = net[t].iloc[0:0]
    if tight:
        net.line.at[21, "max_i_ka"] = 0.195
    return net


def _as_impedance(net, line: int, scale: float = 1.0) -> int:
    """MV line ``line`` replaced by an impedance element of ``scale`` times its impedance."""
    f, t = int(net.line.at[line, "from_bus"]), int(net.line.at[line, "to_bus"])
    zb = float(net.bus.vn_kv.at[f]) ** 2 / 1.0
    r = net.line.at[line, "r_ohm_per_km"] * net.line.at[line, "length_km"] / zb * scale
    x = net.line.at[line, "x_ohm_per_km"] * net.line.at[line, "length_km"] / zb * scale
    net.line.at[line, "in_service"] = False
    return pp.create_impedance(net, f, t, rft_pu=r, xft_pu=x, sn_mva=1.0)


@pytest.mark.parametrize("where", ["line 6 as an impedance", "an impedance from MV bus 2 to LV"])
def test_an_impedance_inside_a_feeder_keeps_its_n1_as_the_judge_says(where, cn):
    net = _sz()
    if where.startswith("line 6"):
        _as_impedance(net, 6)  # (the same impedance: the network is electrically the same)
    else:
        pp.create_impedance(net, 2, 13, rft_pu=5.0, xft_pu=20.0, sn_mva=1.0)
    given = copy.deepcopy(net)
    network = Network(net, name="imp", source="test")
    ref, n1 = Reference(given, cn), N1Reference(given, cn, BY_HAND)
    for bus in (3, 10):
        d = lvplan.check(network, bus=bus, kw=100, criteria=cn, area_class="A")
        assert d.feeder == "F1" and len(d.n1["contingencies"]) == 2
        assert d.decision.value == n1.decide(ref, bus, d.design_kw) == "does_not_fit"
    # (at bus 3 it fits in the normal state: N-1 decides, as the judge says; it was `fits`)
    assert ref.decide(3, d.design_kw) == "fits"


def test_a_feeder_behind_a_reactor_at_its_head_is_never_fits_under_n1(cn, tmp_path):
    """F1's head cable replaced by an impedance: no line of lvplan's to lose at F1's head, so
    N-1 there is not judged: a class A check that fits in the normal state is
    ``not_assessable`` (it was ``fits``, F1's buses counted as the source busbar, while losing
    the reactor and closing the tie overloads line 21); the map's ``hosting_kw_n1`` is 0."""
    net = _sz()
    imp = _as_impedance(net, 0)
    given = copy.deepcopy(net)
    network = Network(net, name="head", source="test")
    d = lvplan.check(network, bus=3, kw=100, criteria=cn, area_class="A")
    assert Reference(given, cn).decide(3, d.design_kw) == "fits"
    assert d.decision.value == "not_assessable" and d.headroom_kw is None
    assert d.reason.startswith("N-1 cannot be judged: the customer's transformer is on a 10 kV")
    lost = copy.deepcopy(given)
    pp.create_load(lost, 3, p_mw=d.design_kw / 1000, q_mvar=d.design_kvar / 1000)
    lost.impedance.at[imp, "in_service"] = False
    lost.switch.at[1, "closed"] = True
    pp.runpp(lost)
    assert lost.res_line.loading_percent.at[21] > 100.0  # (what `fits` would have hidden)
    plain = lvplan.check(network, bus=3, kw=100, criteria=cn)  # (no area class: no N-1)
    assert plain.decision.value == "fits"
    f = tmp_path / "head.json"
    pp.to_json(given, str(f))
    from lvplan.cli import main

    assert main(["hosting", str(f), "--n1", "--no-maps", "--out", str(tmp_path / "m")]) == 0
    rows = (tmp_path / "m" / "hosting.csv").read_text(encoding="utf-8").splitlines()
    at3 = next(r for r in rows if r.startswith("3,"))
    assert at3.endswith(",0.0,n1_not_judged (no source busbar found for its 10 kV group)")


def test_an_upstream_equivalent_is_the_source_and_a_tie_beside_a_reactor_is_a_tie(cn):
    """The slack moved behind an impedance (an upstream network's equivalent): F1 and F2 keep
    their heads and contingencies. A new tie from T2's ring main unit (bus 9, beyond the
    reactor of line 6) is accepted (it was refused: 'bus 9 is on the source busbar')."""
    net = _sz(tight=False)
    eg = net.ext_grid.index[0]
    old = int(net.ext_grid.at[eg, "bus"])
    up = pp.create_bus(net, 10.0, name="upstream")
    net.ext_grid.at[eg, "bus"] = up
    pp.create_impedance(net, up, old, rft_pu=0.001, xft_pu=0.005, sn_mva=1.0)
    _as_impedance(net, 6)
    network = Network(net, name="up", source="test")
    d = lvplan.check(network, bus=3, kw=30, criteria=cn, area_class="A")
    assert d.feeder == "F1" and len(d.n1["contingencies"]) == 2
    tie = lvplan.check(network, bus=15, kw=50, criteria=cn, changes=lvplan.Changes().new_tie(9, 41))
    assert tie.decision.value in ("fits", "does_not_fit")
    from lvplan.inspect import render, summarise  # (inspect names them: it did not)

    said = summarise(network, cn)
    assert said.counts["impedances"] == {"in_service": 2}
    assert "impedance elements: 2 in service (an upstream network's equivalent" in render(said)


def test_a_plan_withdraws_n1_demands_on_a_group_behind_a_reactor(cn, tmp_path):
    """The plan judges N-1 as the check does: a class A demand on F1 behind its head reactor
    is withdrawn, with the reason (it would be served with no contingency judged); a demand
    there without N-1 (class C) is served; a class A demand on F2 is withdrawn too, as F2's
    only tie leads into F1, which restores nothing (the check's rule, `_supplied`)."""
    net = _sz(tight=False)
    _as_impedance(net, 0)
    network = Network(net, name="head", source="test")
    d = tmp_path / "d.csv"
    d.write_text(
        "id,kw,category,bus,area_class\nA1,60,shop,4,A\nC1,50,shop,5,C\nA2,40,shop,30,A\n",
        encoding="utf-8",
    )
    p = lvplan.plan(network, d, criteria=cn, time_limit_s=20)
    why = {u["demand"]: u["reason"] for u in p.unserved}
    assert "A1" in why and "not judged (no source busbar found for its 10 kV group)" in why["A1"]
    assert {a.demand for a in p.assignments} == {"C1"}
    assert "loss of line 21 (F2): no restoring tie" in why["A2"]
