"""What plan.csv and unserved.csv say of each measure and each unserved demand: true, and as
it was found (the AC check, the budget, a contingency that fails already)."""

from __future__ import annotations

import re

import pytest

from lvplan.planning import plan as plan_mod
from lvplan.planning.linear import Cuts
from lvplan.planning.plan import plan as make_plan


@pytest.fixture(scope="module")
def hand_opt(hand, hand_csv, cn):
    return make_plan(hand, hand_csv, criteria=cn, time_limit_s=10)


def test_a_transformer_measure_the_ac_check_found_says_so(hand, hand_opt):
    """A unit whose capacity the AC check cut (T1 loaded 100.5 % in a round's plan) names the
    AC check and the loading it found, and keeps its first user's year (2026): its need is not
    dated by the linear model."""
    p = hand_opt
    cuts = Cuts(trafo_kw={0: 12.0}, found={"trafo 0": 100.5})
    out = plan_mod._result(hand, p.instance, p.solution, None, "optimal", cuts)
    (m,) = out.measures
    assert m.reason.startswith(
        "transformer loading (found by the AC check: 100.50 % loaded in an earlier round's plan, "
        "limit 100 %; the model's capacity cut by 12 kW): 0 kVA-equivalent at the base + 360 kW"
    ), m.reason
    assert m.year == 2026 and "built in 2026, its first demand's year" in m.reason
    # without the cut: the linear model's own reason, dated by need
    (m,) = plan_mod._result(hand, p.instance, p.solution, None, "optimal", Cuts()).measures
    assert m.reason.startswith("transformer loading: 0 kVA-equivalent"), m.reason


def test_a_budget_plans_unserved_say_the_budget(hand, hand_csv, cn):
    """160,000 CNY buys T1's 400 kVA swap for a and b (and c fits T2): d is left out by the
    budget, not by the network. It fits the network as it is with its 1,000 CNY cable; beside
    the plan, on T1 it needs the 500 kVA unit in the 400's place (+30,000 + 1,000)."""
    p = make_plan(hand, hand_csv, criteria=cn, budget_cny=160_000.0, time_limit_s=10)
    assert [u["demand"] for u in p.unserved] == ["d"]
    assert p.unserved[0]["reason"] == (
        "left out within the budget of 160,000 CNY (0 CNY of it unspent): its cheapest fit "
        "costs 1,000 CNY on the network as it is, 31,000 CNY beside this plan"
    )


def test_the_greedy_made_again_without_new_ties_is_named_apart(cn, tmp_path, monkeypatch):
    """With one round, the radial network's greedy plan (N-1 fails: no restoring tie) does not
    settle with new ties on offer and is made again without them: its rounds are named so,
    not "greedy round 1" a second time."""
    from test_plan_n1_measures import _demand, _radial

    from lvplan.model.network import Network
    from lvplan.planning import rounds as rounds_mod

    monkeypatch.setattr(rounds_mod, "MAX_ROUNDS", 1)
    monkeypatch.setattr(rounds_mod, "MAX_N1_ROUNDS", 0)
    net = Network(_radial(), name="radial", source="test")
    p = make_plan(net, _demand(tmp_path, 3), criteria=cn, method="greedy", time_limit_s=10)
    names = [(h.method, h.round) for h in p.history]
    assert names[:2] == [("greedy", 1), ("greedy (again, without new ties and moves)", 1)], names
    assert len(set(names)) == len(names)


def test_cli_words(capsys, tmp_path, hand_json):
    """One measure, not "1 measures"; the budget named; an unserved demand's design kW to
    0.1 kW (a shop's 170 kW x 0.7 is 118.99999999999999 in floating point)."""
    import csv

    from lvplan.cli import main

    demand = tmp_path / "d.csv"
    demand.write_text(
        "id,kw,category,bus,lon,lat\n"
        "a,150,generic,1,,\n"
        "b,150,generic,1,,\n"
        f"far,170,shop,,{114.0 + 0.05},22.5\n",
        encoding="utf-8",
    )
    out = tmp_path / "o"
    args = ["plan", str(hand_json), "--demand", str(demand), "--profile", "cn"]
    assert main([*args, "--out", str(out), "--method", "greedy", "--budget", "1000000"]) == 0
    text = capsys.readouterr().out
    assert "CNY (of a budget of 1,000,000 CNY) for 2 of 3 demands" in text, text
    assert "; 1 measure, 0 new substations\n" in text, text
    rows = list(csv.DictReader((out / "unserved.csv").open(encoding="utf-8")))
    assert [(r["demand"], r["design_kw"]) for r in rows] == [("far", "119.0")]


def _two_feeders():
    """A 110/10 kV unit feeds two 10 kV feeders: the thin one of test_plan's _thin_feeder
    (line 0, 30 A, to T1 with 200 kW) and a stout one (line 1, 300 A, to T2)."""
    import math

    import pandapower as pp

    lon, lat = 114.0, 22.5
    net = pp.create_empty_network()
    hv = pp.create_bus(net, 110.0, name="HV", geodata=(lon, lat))
    bb = pp.create_bus(net, 10.0, name="10 kV busbar", geodata=(lon, lat))
    pp.create_ext_grid(net, hv, vm_pu=1.0)
    pp.create_transformer_from_parameters(
        net, hv, bb, sn_mva=20.0, vn_hv_kv=110.0, vn_lv_kv=10.3, vk_percent=12.0,
        vkr_percent=0.5, pfe_kw=0.0, i0_percent=0.0, shift_degree=0.0, name="HV/MV",
    )  # fmt: skip
    for n, (dlat, amps) in enumerate(((0.004, 0.030), (-0.004, 0.300))):
        mv = pp.create_bus(net, 10.0, name=f"RMU {n + 1}", geodata=(lon, lat + dlat))
        lv = pp.create_bus(net, 0.4, name=f"T{n + 1} LV", geodata=(lon, lat + dlat))
        pp.create_line_from_parameters(
            net, bb, mv, length_km=0.5, r_ohm_per_km=0.25, x_ohm_per_km=0.1, c_nf_per_km=300.0,
            max_i_ka=amps, name=f"feeder {n + 1}",
        )  # fmt: skip
        pp.create_transformer_from_parameters(
            net, mv, lv, sn_mva=0.63, vn_hv_kv=10.0, vn_lv_kv=0.4, vk_percent=4.5,
            vkr_percent=1.0, pfe_kw=0.0, i0_percent=0.0, shift_degree=150.0, name=f"T{n + 1}",
        )  # fmt: skip
        pp.create_load(net, lv, p_mw=0.2, q_mvar=0.2 * math.tan(math.acos(0.95)))
    return net


def test_a_10kv_section_names_the_demands_whose_load_it_carries(tmp_path, cn):
    """The thin feeder's section is reinforced for b1 and b2 (on T1, downstream of it); c on
    T2 lowers the busbar's voltage a little (so its cut counted it too) but its load flows
    through the other feeder: the measure names b1 and b2, and their 300 kW."""
    from lvplan.model.network import Network

    net = Network(_two_feeders(), name="two feeders", source="test")
    lv1, lv2 = 3, 5
    demand = tmp_path / "d.csv"
    demand.write_text(
        "id,kw,category,bus,year\n"
        f"c,120,generic,{lv2},2026\nb1,150,generic,{lv1},2027\nb2,150,generic,{lv1},2028\n",
        encoding="utf-8",
    )
    p = make_plan(net, demand, criteria=cn, method="greedy", time_limit_s=10)
    assert sorted(a.demand for a in p.assignments) == ["b1", "b2", "c"]
    (m,) = [m for m in p.measures if m.kind.startswith("mv_cable")]
    assert str(m.element) == "line 0"
    assert m.demands == ["b1", "b2"], m
    assert "300 kW of new design load it carries" in m.reason and m.year == 2027, m


def test_a_contingency_that_fails_already_is_not_blamed_on_the_new_load(cn, tmp_path):
    """test_plan_n1's loop with 270 kW on each unit: a lost head puts both feeders' 568 kVA
    (about 32 A) on the other, over its 30 A, before any new load. A 10 kW class A demand
    (class A requires full N-1) gets both heads reinforced; each reason says the contingency
    fails already, not that the demand's load broke it."""
    import math

    from test_plan_n1 import _loop, _transfer_loading

    from lvplan.model.network import Network

    raw = _loop()
    raw.load["p_mw"] = 0.27
    raw.load["q_mvar"] = 0.27 * math.tan(math.acos(0.95))
    assert _transfer_loading(raw) > 100.0  # fails already
    net = Network(raw, name="loop, loaded", source="test")
    demand = tmp_path / "d.csv"
    demand.write_text("id,kw,category,bus,area_class\nx,10,generic,3,A\n", encoding="utf-8")
    p = make_plan(net, demand, criteria=cn, method="greedy", time_limit_s=10)
    assert [a.demand for a in p.assignments] == ["x"]
    mv = [m for m in p.measures if m.kind.startswith("mv_cable")]
    assert mv
    for m in mv:
        assert m.reason.startswith(
            "N-1 that the network lacks already, restored for the demands of an area class with "
            "full N-1 (A); 10 kW of their new design load on the loop: N-1 loss of line"
        ), m.reason
        assert "(the contingency fails already without the new load)" in m.reason, m.reason


def test_a_reason_names_a_sites_tie_start_by_its_own_name(sz, cn):
    """The 10 kV source at 0.93 pu: a new site's 10 kV end below its minimum is cut at the
    existing bus its tie starts from, and the reasons named that bus with the site's name,
    "bus 14 (new substation S2 10 kV)" for T3's RMU, with no site built (probe helper-78)."""
    import copy
    import io

    import pandas as pd

    from lvplan.model.network import Network
    from lvplan.planning.synth_demand import synth_demand

    net = copy.deepcopy(sz.pp)
    net.ext_grid["vm_pu"] = 0.93
    low = Network(net, name="sz low source", source="test")
    text = synth_demand(sz, count=30, seed=1, criteria=cn).to_csv()
    frame = pd.read_csv(io.StringIO(text))
    p = make_plan(low, frame, criteria=cn, time_limit_s=10, budget_cny=1e9)
    said = " ".join(u["reason"] for u in p.unserved)
    assert "bus 14 (T3 RMU)" in said
    built = {m.element for m in p.measures if m.kind == "new_substation"}
    named = set(re.findall(r"\((new substation S[\d.]+) 10 kV\)", said))
    assert named <= built, named
