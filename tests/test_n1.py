"""N-1 on 10 kV hand-in-hand loops (issue 14): criteria as data, contingencies from the
topology, the check with N-1 against an independent judge (pandapower with the switches set,
tests/reference.py), the hand-built loop, SimBench feeders, reservations, profiles without N-1."""

from __future__ import annotations

import copy
import math

import numpy as np
import pandapower as pp
import pandas.testing as pd_testing
import pytest
from reference import N1Reference, Reference, n1_options

import lvplan
from lvplan.changes import Changes
from lvplan.criteria import load_criteria
from lvplan.errors import InputError
from lvplan.evaluation import evaluate
from lvplan.n1.assess import n1_context
from lvplan.n1.contingency import find_contingencies
from lvplan.n1.feeders import feeder_n1


# -- 1. criteria as data ------------------------------------------------------------------------
def test_cn_holds_n1_per_area_class_with_sources():
    c = load_criteria("cn")
    assert c.n1_by_area_class == {
        "A+": "full",
        "A": "full",
        "B": "full",
        "C": "pass_rate",
        "D": "none",
        "E": "none",
    }
    assert (c.n1_level("A"), c.n1_level("B"), c.n1_level("C"), c.n1_level("D")) == (
        "full",
        "full",
        "pass_rate",
        "none",
    )
    assert c.n1_level(None) == "unknown"  # no class given, none assumed by default
    assert load_criteria("cn", n1_default_area_class="B").n1_level(None) == "full"
    d = c.to_dict()
    assert d["n1_line_max_loading_percent"] == 100.0 and d["n1_mv_min_voltage_pu"] == 0.93
    assert d["n1_screening_rule"] == "k/(k+1)"
    assert d["n1_pass_rate_target_percent"] == 80.0  # class C's target
    assert "(U" in d["n1_sources"]["pass_rate_target_percent"]
    for key in ("by_area_class", "line_max_percent", "trafo_max_percent", "mv_voltage"):
        src = d["n1_sources"][key]
        assert "(U)" in src or "(V" in src  # every value says verified or assumed
    em = c.emergency()
    assert em.line_max_loading_percent == c.n1_line_max_loading_percent
    assert em.mv_min_voltage_pu == c.n1_mv_min_voltage_pu


def test_en50160_has_no_n1_rule():
    e = load_criteria("en50160")
    assert not e.has_n1 and e.n1_level("A") == "none"
    assert not any(k.startswith("n1_") for k in e.to_dict())


def test_bad_n1_overrides_are_refused():
    with pytest.raises(InputError, match="n1_default_area_class"):
        load_criteria("cn", n1_default_area_class="Z")
    with pytest.raises(InputError, match="n1_mv_min_voltage_pu"):
        load_criteria("cn", n1_mv_min_voltage_pu=1.2)
    with pytest.raises(InputError, match="n1_line_max_loading_percent"):
        load_criteria("cn", n1_line_max_loading_percent=0)
    with pytest.raises(InputError, match="n1_pass_rate_target_percent"):
        load_criteria("cn", n1_pass_rate_target_percent=120)


# -- 2. contingencies from the topology ---------------------------------------------------------
def test_sz_futian_loop_contingencies(sz):
    top = find_contingencies(sz.pp)
    assert set(top.feeders) == {"F1", "F2"}
    f1, f2 = top.feeders["F1"], top.feeders["F2"]
    assert f1.partners == ("F2",) and f2.partners == ("F1",)
    assert f1.heads == (0,) and f2.heads == (21,)
    (c1,) = f1.contingencies
    assert c1.line == 0 and len(c1.cut_off) == 4  # the four ring main units of F1
    (opt,) = c1.options
    assert opt.tie is not None and opt.tie.switches == (1,) and opt.tie.line == 41
    assert opt.changes == Changes().open_line(0).set_switch(1, True)
    assert [c.id for c in top.relevant("F1")] == ["loss of line 0 (F1)", "loss of line 21 (F2)"]


def _without_tie(pp_net):
    net = copy.deepcopy(pp_net)
    net.switch = net.switch.drop(index=[1])
    net.line.at[41, "in_service"] = False
    return net


def _closed_ring(pp_net):
    net = copy.deepcopy(pp_net)
    net.switch.at[1, "closed"] = True
    return net


def test_no_restoring_tie_is_reported_never_a_pass(sz_pristine):
    net = lvplan.Network(_without_tie(sz_pristine), name="no tie", source="test")
    top = find_contingencies(net.pp)
    assert all(not c.options for f in top.feeders.values() for c in f.contingencies)
    d = lvplan.check(net, bus="T3 LV board", kw=10, area_class="A")
    assert d.decision == "does_not_fit"
    assert d.binding is not None and d.binding.kind == "n1_transfer"
    assert "no restoring tie" in d.binding.element_name
    statuses = {c["status"] for c in d.to_dict()["n1"]["contingencies"]}
    assert statuses == {"no_restoring_tie"}
    assert d.headroom_kw == 0.0
    fs = feeder_n1(net, load_criteria("cn"))
    assert all(not f.ok and f.margin == -math.inf for f in fs)


def _weak_tie(pp_net, ohm_per_km: float):
    """sz-futian with its tie cable (line 41, 0.6 km) of ``ohm_per_km`` resistance and
    reactance: too weak to carry F1's cut-off part at 20 ohm/km, only just at 15."""
    net = copy.deepcopy(pp_net)
    net.line.at[41, "r_ohm_per_km"] = ohm_per_km
    net.line.at[41, "x_ohm_per_km"] = ohm_per_km
    return net


def test_contingency_without_a_solution_is_not_assessable(sz_pristine, tmp_path):
    """A contingency whose load flow has no solution (the tie cannot carry the cut-off part:
    pandapower does not converge either) makes a check that fits in the normal state
    ``not_assessable``, never ``fits``; a normal-state ``does_not_fit`` stays so. inspect and
    the map count the feeder as failing: its buses get 0."""
    from reference import OPTS

    pp_net = _weak_tie(sz_pristine, 20.0)
    ref = copy.deepcopy(pp_net)
    ref.line.at[0, "in_service"] = False
    ref.switch.at[1, "closed"] = True
    with pytest.raises(pp.LoadflowNotConverged):
        pp.runpp(ref, **OPTS)
    net = lvplan.Network(pp_net, name="weak tie", source="test")
    d = lvplan.check(net, bus="T3 LV board", kw=10, area_class="A")
    assert d.decision == "not_assessable" and d.headroom_kw is None
    assert d.reason is not None and d.reason.startswith("N-1: loss of line 0 (F1): no solution")
    sect = d.to_dict()["n1"]["contingencies"]
    assert sect[0]["status"] == "not_assessable" and sect[0]["fails_already"]
    plain = lvplan.check(net, bus="T3 LV board", kw=10)
    assert plain.decision == "fits"  # the normal state is fine
    over = lvplan.check(net, bus=16, kw=199, area_class="A")
    assert over.decision == "does_not_fit"  # the normal state's verdict, N-1 cannot lift it
    cn = load_criteria("cn")
    fs = {f.feeder: f for f in feeder_n1(net, cn)}
    assert not fs["F1"].ok and fs["F1"].margin == -math.inf
    assert fs["F1"].failing[0].status == "not_assessable"
    r = lvplan.hosting_capacity(net, criteria=cn, n1=True)
    assert (r.table.hosting_kw_n1 == 0).all()
    assert r.table.binding_n1.str.startswith("n1_transfer after loss of line 0 (F1)").any()
    assert r.n1_pass_rate is not None and r.n1_pass_rate["feeders_passing"] < 2


def test_load_that_leaves_the_contingency_without_a_solution(sz_pristine):
    """The tie at 15 ohm/km carries F1's cut-off part as it is (the contingency passes
    without a new load, pandapower converges: its lowest MV voltage is 0.57 pu, judged here
    against a 0.5 pu limit so that only the solution is in question) but not with 150 kW more
    at T3 (F1): pandapower with the switches set does not converge, and the check is
    ``not_assessable``, never ``fits``; 1 kW fits, and pandapower converges.

    (Between about 60 and 120 kW the exact load flow, started from the contingency's state,
    still finds a solution with MV voltages of 0.52-0.57 pu that pandapower's own start does
    not reach: the check says ``fits`` there against this 0.5 pu limit. With the profile's
    emergency band, 0.93 pu, such a state fails long before.)"""
    from reference import OPTS

    pp_net = _weak_tie(sz_pristine, 15.0)
    crit = load_criteria(
        "cn",
        n1_mv_min_voltage_pu=0.5,
        n1_line_max_loading_percent=1000.0,
        n1_trafo_max_loading_percent=1000.0,
    )  # only the load flow's solution is in question
    net = lvplan.Network(pp_net, name="weak tie", source="test")
    bus = net.resolve_bus("T3 LV board")
    pf = crit.new_customer_pf
    for kw, want in ((1.0, "fits"), (150.0, "not_assessable")):
        d = lvplan.check(net, bus=bus, kw=kw, criteria=crit, area_class="A")
        assert d.decision == want, (kw, d.to_dict()["n1"])
        ref = copy.deepcopy(pp_net)
        ref.line.at[0, "in_service"] = False
        ref.switch.at[1, "closed"] = True
        p = d.design_kw / 1000.0
        pp.create_load(ref, bus, p_mw=p, q_mvar=p * math.tan(math.acos(pf)))
        if want == "fits":
            pp.runpp(ref, **OPTS)
            assert ref.converged
        else:
            with pytest.raises(pp.LoadflowNotConverged):
                pp.runpp(ref, **OPTS)


def test_closed_ring_loses_nothing(sz_pristine, cn):
    """F1 and F2 closed into one ring: one feeder fed at both ends, whose head sections can
    each be lost with nothing to switch; checked against the reference."""
    pp_net = _closed_ring(sz_pristine)
    net = lvplan.Network(pp_net, name="ring", source="test")
    top = find_contingencies(net.pp)
    (f,) = top.feeders.values()
    assert f.heads == (0, 21) and not f.ties
    for c in f.contingencies:
        assert not c.cut_off and [o.name for o in c.options] == ["no transfer needed"]
    crit = load_criteria("cn", n1_line_max_loading_percent=39.0)
    ref = Reference(pp_net, crit)
    n1 = N1Reference(pp_net, crit, n1_options(top, f.name))
    for bus, kw in ((16, 40.0), (16, 150.0), (30, 100.0)):
        d = lvplan.check(net, bus=bus, kw=kw, criteria=crit, area_class="A")
        assert d.n1 is not None and d.n1["applied"]
        assert d.decision == n1.decide(ref, bus, kw), (bus, kw)


# -- 3. the check: agreement with pandapower with the switches set ------------------------------
def _capacity(d) -> float:
    """The design kW the check says fit at the bus (its boundary)."""
    if d.decision == "fits":
        return d.design_kw + d.headroom_kw
    return d.headroom_kw


def test_check_with_n1_agrees_with_pandapower_sz_futian(sz, sz_pristine):
    """Emergency line limit 39 % (the head sections carry about 38.6 % after a transfer):
    N-1 binds first at most buses. Every tested (bus, kW) at least 2 kW from the boundary
    agrees with the independent judge; N-1 never gives a false fits, near the boundary too."""
    crit = load_criteria("cn", n1_line_max_loading_percent=39.0)
    top = find_contingencies(sz.pp)
    ref = Reference(sz_pristine, crit)
    refs = {f: N1Reference(sz_pristine, crit, n1_options(top, f)) for f in ("F1", "F2")}
    lv = [int(b) for b in sz.pp.bus.index[sz.pp.bus.vn_kv < 1]]
    tested = n1_bound = 0
    for bus in lv[::2]:
        probe = lvplan.check(sz, bus=bus, kw=1.0, criteria=crit, area_class="A")
        cap = _capacity(probe)
        feeder = probe.feeder
        for kw in (cap - 6.0, cap + 6.0, cap - 1.0, cap + 1.0, 60.0):
            if kw <= 0.5:
                continue
            d = lvplan.check(sz, bus=bus, kw=kw, criteria=crit, area_class="A")
            want = refs[feeder].decide(ref, bus, kw)
            assert not (d.decision == "fits" and want != "fits"), (bus, kw, d.to_dict()["n1"])
            if abs(kw - cap) >= 2.0:
                assert d.decision == want, (bus, kw, cap)
                tested += 1
            if d.binding is not None and d.binding.kind == "n1_transfer":
                n1_bound += 1
                assert d.binding.contingency and d.binding.unit == "%"
                assert d.binding.value > 39.0
    assert tested >= 40 and n1_bound >= 20


def test_n1_section_and_json(sz):
    d = lvplan.check(sz, bus="T3 LV board", kw=50, area_class="A")
    n1 = d.to_dict()["n1"]
    assert n1["applied"] and n1["feeder"] == "F1" and n1["partners"] == ["F2"]
    assert [c["status"] for c in n1["contingencies"]] == ["pass", "pass"]
    for c in n1["contingencies"]:
        assert c["worst_margin"]["value"] < c["worst_margin"]["limit"]
        assert c["option"] == "close switch 1 (F1 - F2)"
    sc = n1["screening"]["F1"]
    assert sc["ties"] == 1 and sc["screening_limit_percent"] == 50.0
    assert sc["within"] == (sc["head_loading_percent"] <= 50.0)
    # no area class: N-1 not judged, said so; the answer is today's
    plain = lvplan.check(sz, bus="T3 LV board", kw=50)
    assert plain.n1 == {
        "applied": False,
        "level": "unknown",
        "area_class": None,
        "reason": "the application names no area class (N-1 is judged for classes A+, A, B)",
    }
    assert plain.decision == d.decision and plain.headroom_kw == d.headroom_kw


@pytest.mark.parametrize(
    "profile,area_class", [("en50160", "A"), ("cn", "C"), ("cn", "D"), ("cn", None)]
)
def test_without_n1_the_answer_is_unchanged(sz, profile, area_class):
    crit = load_criteria(profile)
    d = lvplan.check(sz, bus=16, kw=120, criteria=crit, area_class=area_class)
    before = lvplan.check(sz, bus=16, kw=120, criteria=crit)
    a, b = d.to_dict(), before.to_dict()
    a.pop("n1", None), b.pop("n1", None)
    assert a == b
    if profile == "en50160":
        assert "n1" not in d.to_dict()


# -- the hand-built loop ------------------------------------------------------------------------
def _hand_loop():
    """Two 10 kV cable feeders F1, F2 from one busbar (ext_grid, 1.00 pu), 1 km each
    (0.1 + j0.08 ohm/km, no capacitance, 100 A), tied by a 0.5 km cable of the same type with
    a normally-open switch at A2. Each feeds one 1250 kVA 10/0.4 kV unit (uk 6 %, ur 1 %, no
    iron losses) with 700 kW at pf 0.9 on its LV board (L1, L2)."""
    net = pp.create_empty_network(name="hand loop")
    bb = pp.create_bus(net, 10.0, name="busbar")
    pp.create_ext_grid(net, bb, vm_pu=1.0)
    a1 = pp.create_bus(net, 10.0, name="A1")
    a2 = pp.create_bus(net, 10.0, name="A2")
    l1 = pp.create_bus(net, 0.4, name="L1")
    l2 = pp.create_bus(net, 0.4, name="L2")
    kw = dict(r_ohm_per_km=0.1, x_ohm_per_km=0.08, c_nf_per_km=0.0, max_i_ka=0.1)
    pp.create_line_from_parameters(net, bb, a1, 1.0, name="F1", **kw)
    pp.create_line_from_parameters(net, bb, a2, 1.0, name="F2", **kw)
    tie = pp.create_line_from_parameters(net, a1, a2, 0.5, name="tie", **kw)
    pp.create_switch(net, a2, tie, et="l", closed=False, name="open point")
    for hv, lv, n in ((a1, l1, "T1"), (a2, l2, "T2")):
        pp.create_transformer_from_parameters(
            net, hv, lv, sn_mva=1.25, vn_hv_kv=10.0, vn_lv_kv=0.4, vkr_percent=1.0,
            vk_percent=6.0, pfe_kw=0.0, i0_percent=0.0, name=n,
        )  # fmt: skip
    q = 0.7 * math.tan(math.acos(0.9))
    pp.create_load(net, l1, p_mw=0.7, q_mvar=q)
    pp.create_load(net, l2, p_mw=0.7, q_mvar=q)
    return net


def test_hand_loop_binds_on_n1_first():
    """The transfer limit, by hand. F1's head section is lost and the tie closes: F2's head
    section (100 A at 10 kV: |S| <= sqrt(3) x 10 kV x 0.1 kA = 1.7321 MVA at the busbar,
    1.00 pu) carries both units, A1's through the tie.

    Unit T2, 700 kW + j339 kvar (777.8 kVA = 0.622 pu of 1.25 MVA): LV voltage
    1 - (0.01 x 0.56 + 0.0592 x 0.271)/V = 0.976 pu, current 0.622/0.976 = 0.637 pu, losses
    0.637^2 x (0.01 + j0.0592) x 1.25 MVA = 5.1 kW + j30.0 kvar. Unit T1 with x kW more at
    pf 0.9 likewise (at x = 116: 0.968 pu, 8.6 kW + j51.0 kvar). Cable losses, 3 I^2 R: F2
    (1 km, ~100 A) 3.0 kW + j2.4 kvar, the tie (0.5 km, ~53 A) 0.4 kW + j0.3 kvar.
    |S_F2| = |(1400 + x + 17.1) + j(678 + 0.484 x + 83.7)| kVA = 1732.1 kVA gives
    x = 116.4 kW (the script in the issue-14 notes iterates these voltages; the MV drop,
    under 0.3 %, is neglected).

    Without N-1 the bus takes far more (the unit reaches 100 % near 400 kW; the binding
    limit is over 250 kW): N-1 binds first, on F2's head section, after the loss of F1's.
    """
    pp_net = _hand_loop()
    net = lvplan.Network(pp_net, name="hand loop", source="test")
    cn = load_criteria("cn")
    plain = lvplan.check(net, bus="L1", kw=1.0)
    assert _capacity(plain) > 250.0
    d = lvplan.check(net, bus="L1", kw=1.0, area_class="A")
    cap = _capacity(d)
    assert abs(cap - 116.4) <= 1.5, cap
    over = lvplan.check(net, bus="L1", kw=cap + 2.0, area_class="A")
    assert over.decision == "does_not_fit"
    b = over.binding
    assert b is not None and b.kind == "n1_transfer" and b.element == "line 1"
    assert b.element_name == "F2" and b.value > 100.0
    assert b.contingency == "loss of line 0 (F1), close switch 0 (F1 - F2)"
    # the independent judge: pandapower with F1 opened and the tie closed
    top = find_contingencies(net.pp)
    ref, n1 = Reference(pp_net, cn), N1Reference(pp_net, cn, n1_options(top, "F1"))
    l1 = net.resolve_bus("L1")
    assert n1.decide(ref, l1, cap) == "fits"
    assert n1.decide(ref, l1, cap + 2.0) == "does_not_fit"
    assert lvplan.check(net, bus="L1", kw=cap, area_class="A").decision == "fits"


# -- SimBench -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def comm():
    """SimBench 1-MV-comm--0-no_sw: a feeder fed from the busbar at two points (meshed), a
    feeder with no tie, radial feeders with one and two ties."""
    return lvplan.load_network("simbench:1-MV-comm--0-no_sw")


def test_simbench_comm_contingencies_found_and_checked(comm):
    cn = load_criteria("cn")
    top = find_contingencies(comm.pp)
    kinds = {
        name: [("ring" if not c.cut_off else len(c.options)) for c in f.contingencies]
        for name, f in top.feeders.items()
    }
    assert kinds["MV4.101 Line 19"] == ["ring", "ring"]  # two head sections, nothing cut off
    assert kinds["MV4.101 Line 2"] == [0]  # no restoring tie
    assert kinds["MV4.101 Line 52"] == [2]
    fs = {f.feeder: f for f in feeder_n1(comm, cn)}
    assert fs["MV4.101 Line 2"].failing[0].status == "no_restoring_tie"
    # each contingency's verdict (as the network stands) agrees with pandapower
    for name, f in top.feeders.items():
        for c, out in zip(f.contingencies, fs[name].contingencies, strict=True):
            opts = [(c.line, o.tie.switches if o.tie else ()) for o in c.options]
            want = N1Reference(comm.pp, cn, [opts]).passes_without_load()
            assert (out.status == "pass") == want, (name, c.id, out.status)
    assert {n for n, f in fs.items() if not f.ok} == {
        "MV4.101 Line 2",
        "MV4.101 Line 29",
        "MV4.101 Line 52",
    }


def test_class_c_pass_rate_counted_feeders_and_contingencies(comm):
    """The class C target (cn: 80 % of feeders, U) against the district's pass rate: of the
    8 feeders with a head section, 5 pass (Line 2 has no restoring tie, Lines 29 and 52 break
    an emergency limit); of the 9 contingencies (Line 19 has two head sections) 6 pass."""
    from lvplan.inspect import render, summarise
    from lvplan.n1.feeders import pass_rate

    cn = load_criteria("cn")
    fs = feeder_n1(comm, cn)
    r = pass_rate({f.feeder: f.contingencies for f in fs}, cn)
    assert (r.feeders, r.feeders_passing, r.contingencies, r.contingencies_passing) == (8, 5, 9, 6)
    assert r.feeder_percent == 62.5 and round(r.contingency_percent or 0, 1) == 66.7
    assert r.target_percent == 80.0 and r.meets_target is False and r.classes == ("C",)
    assert pass_rate({f.feeder: f.contingencies for f in fs}, cn).to_dict()["meets_target"] is False
    low = load_criteria("cn", n1_pass_rate_target_percent=60)
    assert pass_rate({f.feeder: f.contingencies for f in fs}, low).meets_target is True
    s = summarise(comm, cn)
    assert s.to_dict()["n1_pass_rate"]["feeder_pass_rate_percent"] == 62.5
    assert "N-1 pass rate: 5 of 8 feeders (62.5 %), 6 of 9 contingencies" in render(s)


def test_class_c_check_says_what_it_does(sz):
    """A class C application: the decision is the normal state's, and the n1 section says
    that N-1 is a district target, with the target."""
    d = lvplan.check(sz, bus=16, kw=120, area_class="C")
    n1 = d.to_dict()["n1"]
    assert not n1["applied"] and n1["level"] == "pass_rate"
    assert n1["pass_rate_target_percent"] == 80.0
    assert "district pass-rate target" in n1["reason"] and "80 %" in n1["reason"]


def test_urban_district_n1_check_agrees(urban, urban_pristine):
    """The SimBench urban district (open rings, 10 feeders, 11 ties): contingencies found for
    every feeder; checks with N-1 at buses of a feeder that passes N-1 agree with pandapower
    with the switches set."""
    cn = load_criteria("cn")
    top = n1_context(urban, cn).topology
    assert len(top.feeders) == 11
    assert all(c.options for f in top.feeders.values() for c in f.contingencies)
    fs = {f.feeder: f for f in feeder_n1(urban, cn)}
    ok = sorted(n for n, f in fs.items() if f.ok and not any(not fs[p].ok for p in f.partners))
    failing = sorted(n for n, f in fs.items() if not f.ok)
    assert ok and failing
    ref = Reference(urban_pristine, cn)
    topo = urban.topology
    lv = urban.pp.bus.index[(urban.pp.bus.vn_kv < 1) & urban.live.bus].to_numpy()
    rng = np.random.default_rng(3)
    seen = {"fits": 0, "n1": 0}
    for feeder in (ok[0], failing[0]):
        buses = [
            int(b) for b in lv if topo.trafo_feeder.get(topo.area_of(int(b)).trafos[0]) == feeder
        ]
        n1 = N1Reference(urban_pristine, cn, n1_options(top, feeder))
        for bus in rng.choice(buses, 2, replace=False):
            d = lvplan.check(urban, bus=int(bus), kw=30.0, area_class="A")
            want = n1.decide(ref, int(bus), 30.0)
            assert d.decision == want, (feeder, bus, d.to_dict()["n1"])
            seen["fits"] += d.decision == "fits"
            seen["n1"] += d.binding is not None and d.binding.kind == "n1_transfer"
    assert seen["n1"] >= 1


# -- reservations -------------------------------------------------------------------------------
def test_contingency_states_follow_reservations(sz_pristine):
    """A reservation moves the contingency states as it moves the base: a check after it
    equals the check on a network that has the load in its tables."""
    crit = load_criteria("cn", n1_line_max_loading_percent=39.0)
    net = lvplan.Network(copy.deepcopy(sz_pristine), name="sz", source="test")
    first = lvplan.check(net, bus=30, kw=10, criteria=crit, area_class="A")
    assert first.decision == "fits"
    from lvplan.model.network import ExtraLoad

    net.reserve({"app1": ExtraLoad(13, 0.02, 0.0097)})
    after = lvplan.check(net, bus=30, kw=10, criteria=crit, area_class="A")
    loaded = copy.deepcopy(sz_pristine)
    pp.create_load(loaded, 13, p_mw=0.02, q_mvar=0.0097)
    fresh = lvplan.check(
        lvplan.Network(loaded, name="sz", source="test"),
        bus=30,
        kw=10,
        criteria=crit,
        area_class="A",
    )
    assert after.decision == fresh.decision
    a = [c["worst_margin"]["value"] for c in after.to_dict()["n1"]["contingencies"]]
    b = [c["worst_margin"]["value"] for c in fresh.to_dict()["n1"]["contingencies"]]
    c0 = [c["worst_margin"]["value"] for c in first.to_dict()["n1"]["contingencies"]]
    assert np.allclose(a, b, atol=1e-3) and not np.allclose(a, c0, atol=1e-3)
    assert abs(after.headroom_kw - fresh.headroom_kw) <= 0.2


# -- the map ------------------------------------------------------------------------------------
def _feeder_of(network, bus: int) -> str | None:
    area = network.topology.area_of(bus)
    return network.topology.trafo_feeder.get(area.trafos[0]) if area and area.trafos else None


def test_n1_map_agrees_with_pandapower_sz_futian(sz, sz_pristine):
    """hosting_kw_n1 at a bus fits in pandapower with the contingencies switched, and
    hosting_kw_n1 + max(1 kW, 1 %) does not, where N-1 binds; it never exceeds hosting_kw,
    and the check agrees with it."""
    crit = load_criteria("cn", n1_line_max_loading_percent=39.0)
    r = lvplan.hosting_capacity(sz, criteria=crit, n1=True)
    df = r.table
    assert list(df.columns[-2:]) == ["hosting_kw_n1", "binding_n1"]
    assert (df.hosting_kw_n1 <= df.hosting_kw).all()
    lowered = df[df.hosting_kw_n1 < df.hosting_kw]
    assert len(lowered) >= 20
    assert lowered.binding_n1.str.startswith("n1_transfer line").all()
    same = df[df.hosting_kw_n1 == df.hosting_kw]
    assert (same.binding_n1 == same.binding_kind).all()
    top = find_contingencies(sz.pp)
    ref = Reference(sz_pristine, crit)
    refs = {f: N1Reference(sz_pristine, crit, n1_options(top, f)) for f in ("F1", "F2")}
    for row in lowered.sample(6, random_state=1).itertuples():
        bus, x = int(row.bus), float(row.hosting_kw_n1)
        n1 = refs[_feeder_of(sz, bus)]
        assert x > 0 and n1.decide(ref, bus, x) == "fits", (bus, x)
        assert n1.decide(ref, bus, x + max(1.0, 0.01 * x)) == "does_not_fit", (bus, x)
        d = lvplan.check(sz, bus=bus, kw=x, criteria=crit, area_class="A")
        assert d.decision == "fits"
        over = lvplan.check(sz, bus=bus, kw=x + 1.0, criteria=crit, area_class="A")
        assert over.binding is not None and over.binding.kind == "n1_transfer"


def test_n1_map_outputs_show_feeders_failing_already(sz, tmp_path):
    """Emergency limit 38 %: both head sections carry about 38.8 % after a transfer with no
    new load, so the loop fails N-1 already: every bus has hosting_kw_n1 = 0 and
    transformers.csv names the feeders and by how much they fail."""
    import json

    import pandas as pd

    from lvplan.cli import main

    rc = main(
        ["hosting", "sz-futian", "--n1", "--no-maps", "--out", str(tmp_path),
         "--set", "n1_line_max_loading_percent=38"]
    )  # fmt: skip
    assert rc == 0
    df = pd.read_csv(tmp_path / "hosting.csv")
    assert (df.hosting_kw_n1 == 0).all() and df.binding_n1.str.startswith("n1_transfer").all()
    tr = pd.read_csv(tmp_path / "transformers.csv")
    assert set(tr.feeder) == {"F1", "F2"} and (tr.feeder_n1 == "fails").all()
    worst = tr.set_index("feeder").feeder_n1_worst.to_dict()
    assert worst["F1"].startswith("line 21 38.") and "after loss of line 0 (F1)" in worst["F1"]
    assert (tr.min_hosting_kw_n1 == 0).all()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["n1"]["feeders_failing"] == ["F1", "F2"]
    pr = summary["n1"]["pass_rate"]
    assert (pr["feeders"], pr["feeders_passing"], pr["contingencies_passing"]) == (2, 0, 0)
    assert pr["meets_target"] is False and pr["target_percent"] == 80.0
    assert summary["stats"]["n1_s"] > 0
    # without --n1 the files are today's
    plain = tmp_path / "plain"
    assert main(["hosting", "sz-futian", "--no-maps", "--out", str(plain)]) == 0
    assert "hosting_kw_n1" not in pd.read_csv(plain / "hosting.csv").columns
    assert "feeder_n1" not in pd.read_csv(plain / "transformers.csv").columns
    assert "n1" not in json.loads((plain / "summary.json").read_text())


def test_location_check_judges_n1_for_its_area_class(sz):
    """A location application names its area class: N-1 is judged at its candidates (with
    their service cables); with no class named, the supply radius of the default class is
    used and N-1 is not judged."""
    from lvplan.locate import check_location

    crit = load_criteria("cn", n1_line_max_loading_percent=39.0)
    d = check_location(
        sz, lon=114.0590, lat=22.5415, kw=120, category="shop", criteria=crit, area_class="A"
    )
    assert d.n1 is not None and d.n1["applied"] and d.decision == "does_not_fit"
    assert d.binding is not None and d.binding.kind == "n1_transfer"
    assert all(
        a["binding"] and a["binding"]["kind"] == "n1_transfer" for a in d.location["alternatives"]
    )
    plain = check_location(sz, lon=114.0590, lat=22.5415, kw=120, category="shop", criteria=crit)
    assert plain.n1 is not None and not plain.n1["applied"]
    assert plain.decision == "fits"


def test_open_line_change_matches_pandapower(sz_pristine):
    """``open_line`` through ``evaluate`` (the stamps path: no switch changes) on the closed
    ring, and as a contingency's switching changes, give pandapower's state."""
    from reference import OPTS

    ring = _closed_ring(sz_pristine)
    net = lvplan.Network(ring, name="ring", source="test")
    for ch, line_out, closed in (
        (Changes().open_line(0), 0, ()),
        (Changes().open_line("F2"), 21, ()),
    ):
        ev = evaluate(net, ch)
        assert ev.state.engine == "newton"
        ref = copy.deepcopy(ring)
        ref.line.at[line_out, "in_service"] = False
        for s in closed:
            ref.switch.at[s, "closed"] = True
        pp.runpp(ref, **OPTS)
        assert np.nanmax(np.abs(ev.state.vm_pu - ref.res_bus.vm_pu.to_numpy())) < 1e-6
        got = ev.state.line_loading_percent
        want = ref.res_line.loading_percent.to_numpy()
        ok = ~np.isnan(got)
        assert np.isnan(got[line_out]) and np.allclose(got[ok], want[ok], atol=0.01)
    with pytest.raises(InputError, match="open_line"):
        evaluate(net, Changes().open_line(999))


def test_n1_never_mutates_the_callers_net(sz_pristine):
    """The option networks share no table with the caller's net: after N-1 checks, a
    reservation (followed by the options) and an N-1 map, the caller's tables are as given."""
    from lvplan.model.network import ExtraLoad

    given = copy.deepcopy(sz_pristine)
    kept = copy.deepcopy(given)
    net = lvplan.Network(given, name="sz", source="test")
    crit = load_criteria("cn", n1_line_max_loading_percent=39.0)
    lvplan.check(net, bus=30, kw=10, criteria=crit, area_class="A")
    net.reserve({"a": ExtraLoad(13, 0.02, 0.0097)})
    lvplan.check(net, bus=30, kw=10, criteria=crit, area_class="A")
    lvplan.hosting_capacity(net, criteria=crit, n1=True)
    for table in ("bus", "line", "load", "trafo", "switch", "ext_grid"):
        pd_testing.assert_frame_equal(given[table], kept[table])


# -- the options' states without pandapower -----------------------------------------------------
def _pandapower_state(pp_net, line: int, switches: tuple[int, ...]):
    from reference import OPTS

    ref = copy.deepcopy(pp_net)
    ref.line.at[line, "in_service"] = False
    for s in switches:
        ref.switch.at[s, "closed"] = True
    pp.runpp(ref, **OPTS)
    return ref


@pytest.mark.parametrize("which", ["sz", "comm", "urban"])
def test_option_states_by_the_switched_model_equal_pandapower(which, sz, comm, urban):
    """Every contingency option's state without a new load comes from the switched model
    (``evaluation.switched_state``: head section's stamp removed, a line tie's stamp moved from
    pandapower's auxiliary bus to the switch's bus, a bus-bus tie's buses fused; Newton from
    the base): ``engine == "newton"``, no pandapower run, and equal to pandapower's load flow
    of the switched tables (the urban district's bus-bus ties and two of its line ties)."""
    from lvplan.evaluation import switched_state

    net = {"sz": sz, "comm": comm, "urban": urban}[which]
    ctx = n1_context(net, load_criteria("cn"))
    opts = [
        (c.line, o)
        for f in ctx.topology.feeders.values()
        for c in f.contingencies
        for o in c.options
        if o.tie is not None
    ]
    if which == "urban":
        bus_ties = [x for x in opts if x[1].tie.line is None]
        assert len(bus_ties) == 4  # the reserve line's two bus-bus ties, two options each
        opts = bus_ties + [x for x in opts if x[1].tie.line is not None][:2]
    assert opts
    for line, o in opts:
        st = switched_state(net, o.changes)
        assert st.engine == "newton"
        assert ctx.state(o).engine == "newton"
        ref = _pandapower_state(net.pp, line, o.tie.switches)
        vm = ref.res_bus.vm_pu.to_numpy(float)
        ok = np.isfinite(st.vm_pu)
        assert (ok == np.isfinite(vm)).all()
        assert np.max(np.abs(st.vm_pu[ok] - vm[ok])) < 1e-8
        got, want = st.line_loading_percent, ref.res_line.loading_percent.to_numpy(float)
        live = np.isfinite(got)
        assert np.isnan(got[net.pp.line.index.get_loc(line)])
        if o.tie.line is not None:  # the tie cable now carries the cut-off part
            k = net.pp.line.index.get_loc(o.tie.line)
            assert live[k] and got[k] > 1.0
        assert np.max(np.abs(got[live] - want[live])) < 1e-5
        tg, tw = st.trafo_loading_percent, ref.res_trafo.loading_percent.to_numpy(float)
        tl = np.isfinite(tg)
        assert np.max(np.abs(tg[tl] - tw[tl])) < 1e-5


# -- the register: applications by bus carry their area class -----------------------------------
def test_register_bus_applications_carry_their_area_class(tmp_path):
    """A bus application with ``area_class`` is judged with N-1 where the class requires it
    (the desk, the service and check-batch pass it to the check); without one, as before; an
    unknown class is refused naming the field, and nothing is recorded."""
    from lvplan.cli import main
    from lvplan.register.desk import Desk
    from lvplan.register.store import open_backend

    crit = load_criteria("cn", n1_line_max_loading_percent=39.0)
    net = lvplan.load_network("sz-futian")
    desk = Desk(net, open_backend(tmp_path / "r.db"), crit)
    a, _ = desk.apply({"id": "n1", "bus": "T3 LV board", "kw": 150, "area_class": "A"})
    assert a.status == "rejected" and a.decision["binding"]["kind"] == "n1_transfer"
    assert a.request["area_class"] == "A" and a.decision["n1"]["applied"]
    c, _ = desk.apply({"id": "c", "bus": "T3 LV board", "kw": 150, "area_class": "C"})
    assert c.status == "approved" and c.decision["n1"]["level"] == "pass_rate"
    with pytest.raises(InputError) as exc:
        desk.apply({"id": "z", "bus": 15, "kw": 10, "area_class": "Z"})
    assert str(exc.value).startswith("area_class: unknown area class 'Z'")
    assert [x.id for x in desk.register.all()] == ["n1", "c"]
    assert desk.check({"bus": 15, "kw": 10, "area_class": "B"})["n1"]["applied"]
    queue = tmp_path / "q.csv"
    queue.write_text("id,bus,kw,area_class\nb1,T3 LV board,150,A\nb2,T3 LV board,150,\n")
    out = tmp_path / "d.csv"
    argv = ["check-batch", "sz-futian", str(queue), "--register", str(tmp_path / "b.db")]
    argv += ["--out", str(out), "--set", "n1_line_max_loading_percent=39"]
    assert main(argv) == 0
    import csv

    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["status"] for r in rows] == ["rejected", "approved"]


# -- sections between switches (n1_contingencies = "sections") ----------------------------------
def test_sections_between_switches_found_and_judged_as_pandapower(urban, urban_pristine):
    """With ``n1_contingencies = "sections"`` every section switched at both ends is lost in
    turn too: 136 contingencies on the urban district (11 head sections, 125 single-line
    sections), none on sz-futian or comm beyond their heads (no switches modelled there: each
    feeder is one section with unswitched ends). On feeder Line 31, each section's cut-off part
    is what pandapower leaves without supply when the line is out (no tie closed), and each
    contingency's verdict equals pandapower's with the switches set."""
    from reference import OPTS

    crit = load_criteria("cn", n1_contingencies="sections")
    top = n1_context(urban, crit).topology
    assert sum(len(f.contingencies) for f in top.feeders.values()) == 136
    assert top.sections_skipped == 0
    assert len(n1_context(urban, load_criteria("cn")).topology.ties) == len(top.ties)
    sz_top = find_contingencies(lvplan.load_network("sz-futian").pp, sections=True)
    assert sum(len(f.contingencies) for f in sz_top.feeders.values()) == 2
    assert sz_top.sections_skipped == 2
    name = "MV3.101 Line 31"
    fs = {f.feeder: f for f in feeder_n1(urban, crit)}
    conts = top.feeders[name].contingencies
    assert len(conts) == 10 and sum(len(c.lost_lines) == 1 for c in conts) == 10
    mv = urban_pristine.bus.index[
        (urban_pristine.bus.vn_kv > 1) & (urban_pristine.bus.vn_kv <= 35)
    ].to_numpy()
    for c, out in zip(conts, fs[name].contingencies, strict=True):
        ref = copy.deepcopy(urban_pristine)
        ref.line.at[c.line, "in_service"] = False
        pp.runpp(ref, **OPTS)
        dead = {int(b) for b in mv if not np.isfinite(ref.res_bus.vm_pu.at[b])}
        assert dead == set(c.cut_off), c.id
        opts = [(c.line, o.tie.switches if o.tie else ()) for o in c.options]
        want = N1Reference(urban_pristine, crit, [opts]).passes_without_load()
        assert (out.status == "pass") == want, (c.id, out.status)
    pr = load_criteria("cn", n1_contingencies="heads")
    assert len(n1_context(urban, pr).topology.feeders[name].contingencies) == 1


def test_bad_n1_contingencies_value_is_refused():
    with pytest.raises(InputError, match="n1_contingencies"):
        load_criteria("cn", n1_contingencies="everything")


@pytest.mark.slow
def test_sections_check_agrees_with_pandapower(urban, urban_pristine):
    """Checks with section contingencies at buses of the Line 12 loop agree with pandapower
    with the switches set (every relevant section's options, ~64)."""
    crit = load_criteria("cn", n1_contingencies="sections")
    top = n1_context(urban, crit).topology
    ref = Reference(urban_pristine, crit)
    topo = urban.topology
    feeder = "MV3.101 Line 12"
    n1 = N1Reference(urban_pristine, crit, n1_options(top, feeder))
    lv = urban.pp.bus.index[(urban.pp.bus.vn_kv < 1) & urban.live.bus].to_numpy()
    buses = [int(b) for b in lv if topo.trafo_feeder.get(topo.area_of(int(b)).trafos[0]) == feeder]
    rng = np.random.default_rng(5)
    for bus in rng.choice(buses, 2, replace=False):
        for kw in (20.0, 150.0):
            d = lvplan.check(urban, bus=int(bus), kw=kw, criteria=crit, area_class="A")
            assert d.decision == n1.decide(ref, int(bus), d.design_kw), (bus, kw)
