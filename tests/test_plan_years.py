"""Each year of a dated plan checked in AC (planning/year_check.py): a measure dated later than
its first demand, by the linear model, is brought forward where the year before it breaks a
limit in AC; a year that holds moves nothing."""

from __future__ import annotations

import io

import pandapower as pp
import pandas as pd
import pytest

import lvplan.planning.plan as plan_mod
from lvplan.model.network import Network
from lvplan.planning.plan import plan as make_plan
from lvplan.planning.years import Dated


def _one_unit(parallel: int = 1) -> Network:
    """One 200 kVA unit (a row of ``parallel`` of them) on a 10 kV bus, its LV board bus 1."""
    net = pp.create_empty_network()
    mv = pp.create_bus(net, 10.0, name="MV", geodata=(114.0, 22.5))
    lv = pp.create_bus(net, 0.4, name="T1 LV", geodata=(114.0, 22.5))
    pp.create_ext_grid(net, mv, vm_pu=1.0)
    pp.create_transformer_from_parameters(
        net, mv, lv, sn_mva=0.2, vn_hv_kv=10.0, vn_lv_kv=0.4, vk_percent=4.0, vkr_percent=1.3,
        pfe_kw=0.0, i0_percent=0.0, shift_degree=150.0, name="T1", parallel=parallel,
    )  # fmt: skip
    return Network(net, name="one unit", source="test")


def _dated_late(monkeypatch, year: int) -> None:
    """The linear model's dating, wrong on purpose: every measure it dates, in ``year``."""
    real = plan_mod.measure_years

    def late(*a, **k):
        return {u: Dated(year, "capacity") for u in real(*a, **k)}

    monkeypatch.setattr(plan_mod, "measure_years", late)


@pytest.mark.parametrize("method", ["optimal", "greedy"])
def test_a_swap_dated_too_late_is_brought_forward_by_the_ac_check_of_its_year(
    monkeypatch, cn, method
):
    """190 kW in 2026 and 30 kW in 2029 on a 200 kVA unit: the 2026 demand alone puts it at
    about 106 %, so the swap is needed in 2026. Dated 2029 (the linear model's word, made wrong
    here), the AC check of 2026 breaks the unit and brings the swap forward."""
    _dated_late(monkeypatch, 2029)
    csv = "id,kw,category,bus,year\nearly,190,generic,1,2026\nlate,30,generic,1,2029\n"
    p = make_plan(_one_unit(), pd.read_csv(io.StringIO(csv)), criteria=cn, method=method,
                  time_limit_s=10)  # fmt: skip
    [m] = p.measures
    assert m.kind == "transformer_swap" and m.year == 2026
    assert "brought forward to 2026: the AC check of 2026 broke a limit without it" in m.reason
    s = p.summary()
    assert s["years_checked"] == {
        "years": [2026],
        "measures_brought_forward": 1,
        "taps_moved": 0,
        "broken": {},
    }
    assert s["cost_by_year_cny"] == {"2026": pytest.approx(m.cost_cny), "2029": 0.0}


SMALL_THEN_BIG = "id,kw,category,bus,year\nsmall,30,generic,1,2026\nbig,190,generic,1,2029\n"


def _small_then_big(monkeypatch, cn):
    """30 kW in 2026 and 190 kW in 2029, every measure dated 2029: the plan and its swap."""
    _dated_late(monkeypatch, 2029)
    p = make_plan(_one_unit(), pd.read_csv(io.StringIO(SMALL_THEN_BIG)), criteria=cn,
                  time_limit_s=10)  # fmt: skip
    [m] = p.measures
    return p, m


def test_a_year_that_holds_moves_nothing(monkeypatch, cn):
    """30 kW in 2026 and 190 kW in 2029: the swap is needed in 2029 only; dated 2029, the
    check of 2026 holds and it stays there."""
    p, m = _small_then_big(monkeypatch, cn)
    assert m.year == 2029 and "brought forward" not in m.reason
    assert p.summary()["years_checked"] == {
        "years": [2026],
        "measures_brought_forward": 0,
        "taps_moved": 0,
        "broken": {},
    }


def test_every_year_but_the_last_is_checked_and_one_year_is_not(cn):
    csv = "id,kw,category,bus,year\nearly,190,generic,1,2026\nlate,30,generic,1,2029\n"
    p = make_plan(_one_unit(), pd.read_csv(io.StringIO(csv)), criteria=cn, time_limit_s=10)
    [m] = p.measures
    assert m.year == 2026 and "brought forward" not in m.reason
    assert p.summary()["years_checked"]["years"] == [2026]
    one = csv.replace("2029", "2026")
    p = make_plan(_one_unit(), pd.read_csv(io.StringIO(one)), criteria=cn, time_limit_s=10)
    assert "years_checked" not in p.summary()


def test_a_move_that_mends_nothing_is_taken_back(monkeypatch, cn):
    """A year broken by what no measure mends (here: every check of 2026 made to say a bus is
    over its maximum) keeps its measures' years, and is said."""
    import lvplan.planning.year_check as yc
    from lvplan.planning.verify import Broken

    real = yc.check_plan

    def also_over(network, inst, sol, base, **kw):
        ev, broken = real(network, inst, sol, base, **kw)
        if len(sol.chosen) == 1:  # (2026: one demand connected)
            broken = [
                *broken,
                Broken("voltage", "bus 1", "T1 LV", "max", -0.01, 0.02),
                Broken("voltage", "bus 99", "early terminal", "max", -0.01, None),
            ]
        return ev, broken

    monkeypatch.setattr(yc, "check_plan", also_over)
    p, m = _small_then_big(monkeypatch, cn)
    assert m.year == 2029 and "brought forward" not in m.reason
    # an element of the network by its index; one the year's changes made by its name (its
    # index is the year's own network's: "bus 49" was T8's clinic in reinforced.json, for
    # D0023's terminal; probe helper-78)
    assert p.summary()["years_checked"] == {
        "years": [2026],
        "measures_brought_forward": 0,
        "taps_moved": 0,
        "broken": {"2026": ["bus 'early terminal' (max)", "bus 1 (max)"]},
    }


def test_a_year_with_no_ac_solution_is_said_and_the_plan_kept(monkeypatch, cn):
    """A year's AC load flow without a solution raised out of the check of the years, and the
    whole plan was lost with it (review helper-80). It is a broken year like any other: the
    moves are tried, and it is said."""
    import lvplan.planning.year_check as yc
    from lvplan.errors import NotConverged

    real = yc.check_plan

    def diverges(network, inst, sol, base, **kw):
        if len(sol.chosen) == 1:  # (2026: one demand connected)
            raise NotConverged("AC load flow did not converge")
        return real(network, inst, sol, base, **kw)

    monkeypatch.setattr(yc, "check_plan", diverges)
    p, m = _small_then_big(monkeypatch, cn)
    assert m.year == 2029 and p.measures
    assert p.summary()["years_checked"]["broken"] == {"2026": [yc.NO_SOLUTION]}


def test_the_cli_says_what_the_check_of_the_years_brought_forward(monkeypatch, tmp_path, capsys):
    from lvplan.cli import main

    _dated_late(monkeypatch, 2029)
    net = tmp_path / "one.json"
    pp.to_json(_one_unit().pp, str(net))
    demand = tmp_path / "d.csv"
    demand.write_text("id,kw,category,bus,year\nearly,190,generic,1,2026\nlate,30,generic,1,2029\n")
    out = tmp_path / "plan"
    args = ["plan", str(net), "--demand", str(demand), "--out", str(out), "--time-limit", "10"]
    assert main(args) == 0
    said = capsys.readouterr().out
    assert "years: 1 measure brought forward by the AC check of 2026 (see the reasons" in said
    assert "brought forward to 2026" in (out / "plan.csv").read_text(encoding="utf-8")


def test_the_groups_checks_of_the_years_join_into_one():
    from lvplan.planning.year_check import joined_years

    a = {"years": [2026, 2027], "measures_brought_forward": 1, "taps_moved": 2, "broken": {}}
    b = {"years": [2027, 2028], "measures_brought_forward": 2, "broken": {"2027": ["bus 4 (max)"]}}
    c = {"years": [2027], "measures_brought_forward": 0, "broken": {"2027": ["bus 1 (max)"]}}
    assert joined_years([a, {}, b, c]) == {
        "years": [2026, 2027, 2028],
        "measures_brought_forward": 3,
        "taps_moved": 2,
        "broken": {"2027": ["bus 1 (max)", "bus 4 (max)"]},
    }
    assert joined_years([{}, {}]) == {}


@pytest.mark.parametrize("negative_step", [False, True])
def test_a_light_year_over_the_maximum_gets_an_off_load_tap(sz, cn, negative_step):
    """The 10 kV source at 1.07 pu: with its load not yet come, 2027 put two new customers'
    terminals (D0023's at 407.6 V) and T3's buses over the 406.6 V maximum, the parallel unit
    built for that year's demands raising them, and the plan was returned with a warning
    (probe helper-78). The unit's off-load tap is moved a step in that year: every year, with
    its demands and the measures and taps built by then, passes the judge, and the taps are in
    plan.csv, in the cost and in reinforced.json."""
    import copy

    from reference import Reference

    from lvplan.changes.apply import apply_changes
    from lvplan.planning.model import Solution
    from lvplan.planning.outputs import reinforced_json
    from lvplan.planning.synth_demand import synth_demand
    from lvplan.planning.verify import solution_changes
    from lvplan.planning.year_check import tap_changes

    net = copy.deepcopy(sz.pp)
    net.ext_grid["vm_pu"] = 1.07
    if negative_step:  # (the same units written with a negative step: it read as no changer,
        # its tap as neutral, and no tap was moved; review helper-83)
        net.trafo["tap_step_percent"] *= -1
        net.trafo["tap_pos"] *= -1
    down = -1 if negative_step else 1
    high = Network(net, name="sz high source", source="test")
    text = synth_demand(sz, count=30, seed=1, criteria=cn).to_csv()
    p = make_plan(high, pd.read_csv(io.StringIO(text)), criteria=cn, time_limit_s=15)
    assert p.taps and p.summary()["years_checked"]["broken"] == {}
    assert p.summary()["years_checked"]["taps_moved"] == len(p.taps)
    taps = [m for m in p.measures if m.kind == "transformer_tap"]
    assert sorted(int(m.element.index) for m in taps) == sorted(p.taps)
    for m in taps:
        was, pos, year = p.taps[int(m.element.index)]
        assert (m.before, m.year, pos) == (f"tap {was}", year, was + down)
        assert m.after == f"tap {pos}: its LV side about 2.5 % lower"
        assert m.cost_cny == 3000.0 and "over the maximum voltage" in m.reason
    cables = sum(a.cable_cost_cny for a in p.assignments)
    assert p.cost_cny == pytest.approx(sum(m.cost_cny for m in p.measures) + cables, abs=0.05)
    reinforced = pp.from_json_string(reinforced_json(p, high))
    for t, (_was, pos, _y) in p.taps.items():
        assert reinforced.trafo.at[t, "tap_pos"] == pos
        assert reinforced.trafo.at[t, "tap_step_percent"] == net.trafo.at[t, "tap_step_percent"]
    # with --budget, a tap only within what the plan leaves of it (it went 4,589 CNY over)
    from lvplan.planning.year_check import check_years

    keys = [*sorted(p.solution.upgrades), *[-1 - s for s in sorted(p.solution.sites)]]
    dated = [m.year for m in p.measures if m.kind != "transformer_tap"]
    for room, n in ((0.0, 0), (3000.0, 1)):
        again = check_years(high, p.instance, p.solution, keys, list(dated), set(), room)
        assert len(again.taps) == n and again.broken, room
    # every year, judged: its demands, its measures and taps, nothing new broken, nothing
    # broken in a connection's own LV network but a bus over its maximum before, not raised
    base = Reference(net, cn)
    inst, sol = p.instance, p.solution
    keys = [*sorted(sol.upgrades), *[-1 - s for s in sorted(sol.sites)]]
    dated = [m.year for m in p.measures if m.kind != "transformer_tap"]
    built = dict(zip(keys, dated, strict=True))
    years = sorted({d.year for d in inst.demands})
    assert len(years) == 3
    for y in years:
        chosen = [k for k in sol.chosen if inst.demands[inst.options[k].demand].year <= y]
        ups = [u for u in sol.upgrades if built[u] <= y]
        sites = [s for s in sol.sites if built[-1 - s] <= y]
        state = Solution.of(inst, chosen, ups, sites, "x")
        ch = tap_changes({t: v for t, v in p.taps.items() if v[2] <= y})
        made, _ = apply_changes(net, (ch + solution_changes(inst, state)).resolve(high))
        judge = Reference(made, cn)
        assert judge.base - base.base == set(), y
        own = set().union(*(judge.own(inst.options[k].bus) for k in chosen
                            if inst.options[k].bus is not None))  # fmt: skip
        vm, vm0 = judge.net.res_bus.vm_pu, base.net.res_bus.vm_pu
        kept = {("bus", b) for kind, b in judge.base & base.base
                if kind == "bus" and vm.at[b] <= vm0.at[b] + 1e-6}  # fmt: skip
        assert (judge.base & own) - kept == set(), y
