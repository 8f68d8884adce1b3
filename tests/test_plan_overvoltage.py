"""The plan's over-voltage pruning (planning/candidates.py ``prune_upgrades``): a cable
upgrade that would lift a bus beyond it above the profile's maximum voltage in every plan is
dropped and counted (``upgrades_raising_voltage``); one that would not is kept.

The feeder: a 400 kVA unit at 1.02 pu on its 10 kV side; line 0 (100 m of NAYY 4x50) from
its LV board to bus A; from A, line 1 (200 m of 4x50) to bus B, where 44 kW of PV feed in,
and line 2 (50 m of 4x150) to bus C and its 125 kW load. Line 0 carries C's load less B's
PV, 97 % of its rating, and drops 0.037 pu; B sits 0.0045 pu below the maximum (406.6 V,
1.0165 pu). A 10 kW demand at C needs line 0 reinforced; but a stiffer line 0 lifts A and B
by most of its drop, and B above its maximum (pandapower: 1.038-1.041 pu with each of line 0's
upgrades), so the demand cannot be served at all.
"""

from __future__ import annotations

import copy

import pandapower as pp
import pytest
from reference import Reference

from lvplan.model.network import Network
from lvplan.planning.candidates import build_instance, prune_upgrades
from lvplan.planning.demand import read_demand
from lvplan.planning.linear import mv_response
from lvplan.planning.measures import MeasureKind, load_measures
from lvplan.planning.outputs import reinforced_json
from lvplan.planning.plan import plan as make_plan

LON0, LAT0 = 114.05, 22.54
B, C = 3, 4


def _feeder(pv_kw: float, load_c_kw: float) -> pp.pandapowerNet:
    net = pp.create_empty_network()
    mv = pp.create_bus(net, 10.0, name="MV", geodata=(LON0, LAT0))
    root = pp.create_bus(net, 0.4, name="T1 LV", geodata=(LON0, LAT0))
    a = pp.create_bus(net, 0.4, name="A", geodata=(LON0 + 0.001, LAT0))
    b = pp.create_bus(net, 0.4, name="B", geodata=(LON0 + 0.003, LAT0))
    c = pp.create_bus(net, 0.4, name="C", geodata=(LON0 + 0.001, LAT0 + 0.0005))
    assert (b, c) == (B, C)
    pp.create_ext_grid(net, mv, vm_pu=1.02)
    pp.create_transformer_from_parameters(
        net, mv, root, sn_mva=0.4, vn_hv_kv=10.0, vn_lv_kv=0.4, vk_percent=4.0,
        vkr_percent=1.0, pfe_kw=0.0, i0_percent=0.0, shift_degree=150.0, name="T1",
    )  # fmt: skip
    pp.create_line(net, root, a, 0.1, "NAYY 4x50 SE", name="root-A")
    pp.create_line(net, a, b, 0.2, "NAYY 4x50 SE", name="A-B")
    pp.create_line(net, a, c, 0.05, "NAYY 4x150 SE", name="A-C")
    pp.create_load(net, c, p_mw=load_c_kw / 1000, q_mvar=load_c_kw / 1000 * 0.329, name="C")
    if pv_kw:
        pp.create_sgen(net, b, p_mw=pv_kw / 1000, name="B PV")
    return net


@pytest.fixture(scope="module")
def demand(tmp_path_factory):
    p = tmp_path_factory.mktemp("ov") / "demand.csv"
    p.write_text(f"id,kw,category,bus\nd1,10,generic,{C}\n", encoding="utf-8")
    return p


def _pruned(pp_net, demand, cn):
    """(every upgrade of line 0 before pruning, the instance after)."""
    net = Network(pp_net, name="ov", source="test")
    ds = read_demand(demand, net, cn)
    inst = build_instance(net, ds.demands, cn, load_measures())
    line0 = [u for u in inst.upgrades if u.element == 0 and u.kind.value.startswith("lv_cable")]
    prune_upgrades(inst, mv_response(net, inst))
    return line0, inst


def _with(pp_net, up) -> pp.pandapowerNet:
    """``pp_net`` with line 0 as the upgrade makes it and the 10 kW demand at C, in pandapower."""
    n = copy.deepcopy(pp_net)
    km = float(n.line.at[0, "length_km"])
    n.line.loc[0, ["r_ohm_per_km", "x_ohm_per_km"]] = [up.r / km, up.x / km]
    n.line.loc[0, ["max_i_ka", "parallel", "df"]] = [up.capacity, 1, 1.0]
    pp.create_load(n, C, p_mw=0.010, q_mvar=0.010 * 0.4843, name="d1")
    return n


def test_an_upgrade_lifting_a_bus_over_its_maximum_is_pruned(demand, cn):
    base = _feeder(pv_kw=44.0, load_c_kw=125.0)
    line0, inst = _pruned(base, demand, cn)
    parallel = [u for u in line0 if u.kind == MeasureKind.LV_CABLE_PARALLEL]
    assert len(parallel) == 2 and len(line0) == 4
    assert inst.stats["upgrades_raising_voltage"] == 2
    kept = {(u.kind, u.cable) for u in inst.upgrades}
    assert not {(u.kind, u.cable) for u in parallel} & kept
    # the replacements are kept: their reactance is about the old cable's, so the rule's lower
    # bound of the rise (k = min(1 - r1/r0, 1 - x1/x0)) is small; the AC check refuses them
    assert {(u.kind, u.cable) for u in line0 if u not in parallel} <= kept
    # the independent judge: with each of line 0's upgrades, B is above its maximum
    ref = Reference(base, cn)
    assert ("bus", B) not in ref.base
    for up in line0:
        assert ("bus", B) in Reference(_with(base, up), cn).base, up


def test_the_plan_on_that_feeder_verifies_and_serves_nothing_it_cannot(demand, cn):
    net = Network(_feeder(pv_kw=44.0, load_c_kw=125.0), name="ov", source="test")
    before = Reference(net.pp, cn).base
    for method in ("greedy", "optimal"):
        p = make_plan(net, demand, criteria=cn, method=method, time_limit_s=20)
        assert p.measures == [] and p.assignments == []
        assert [u["demand"] for u in p.unserved] == ["d1"]
        after = Reference(pp.from_json_string(reinforced_json(p, net)), cn).base
        assert after - before == set()


def test_without_the_pv_nothing_is_pruned_for_voltage_and_the_demand_is_served(demand, cn):
    """The same feeder without B's PV (and 80 kW at C, line 0 at 90 %): B sits low, no
    upgrade lifts it over its maximum, line 0's parallel cables are kept, and the plan serves
    the demand with one of line 0's upgrades, verified by the independent judge."""
    base = _feeder(pv_kw=0.0, load_c_kw=80.0)
    line0, inst = _pruned(base, demand, cn)
    assert inst.stats["upgrades_raising_voltage"] == 0
    assert {(u.kind, u.cable) for u in line0} <= {(u.kind, u.cable) for u in inst.upgrades}
    net = Network(base, name="ov", source="test")
    p = make_plan(net, demand, criteria=cn, method="optimal", time_limit_s=20)
    assert [a.demand for a in p.assignments] == ["d1"]
    assert [(m.kind, str(m.element)) for m in p.measures] in (
        [("lv_cable_replace", "line 0")],
        [("lv_cable_parallel", "line 0")],
    )
    before = Reference(net.pp, cn).base
    after = Reference(pp.from_json_string(reinforced_json(p, net)), cn).base
    assert after - before == set()


def test_the_reason_names_the_upgrades_left_out_for_over_voltage(demand, cn, tmp_path):
    """d1 is unserved because line 0's parallel cables were dropped by the over-voltage rule
    (and its replacements refused by the AC check). Before, the reason a user saw in
    unserved.csv, plan.html and the summary was 'line 0 would be overloaded even with the
    largest measure', as if no measure were big enough; it now says which upgrades were left
    out and why, with the maximum voltage."""
    from lvplan.planning.outputs import write_plan

    net = Network(_feeder(pv_kw=44.0, load_c_kw=125.0), name="ov", source="test")
    for method in ("greedy", "optimal"):
        p = make_plan(net, demand, criteria=cn, method=method, time_limit_s=20)
        (u,) = p.unserved
        assert u["reason"].endswith(
            "; line 0 on its way to the transformer: 2 of its upgrades were left out because "
            f"each would lift the voltage of a bus beyond it above the {cn.lv_max_voltage_v:g} V "
            "maximum in every plan"
        ), u["reason"]
        write_plan(p, net, tmp_path / method)
        assert (
            "left out because each would lift" in (tmp_path / method / "unserved.csv").read_text()
        )
        assert "left out because each would lift" in (tmp_path / method / "plan.html").read_text()
    # without the PV nothing is left out, and no such words where a demand is refused
    big = tmp_path / "big.csv"
    big.write_text(f"id,kw,category,bus\nd9,190,generic,{C}\n", encoding="utf-8")
    p = make_plan(
        Network(_feeder(pv_kw=0.0, load_c_kw=80.0), name="ov", source="test"),
        big, criteria=cn, method="greedy", time_limit_s=20,
    )  # fmt: skip
    assert all("left out because" not in v["reason"] for v in p.unserved)
