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
    assert s["years_checked"] == {"years": [2026], "measures_brought_forward": 1, "broken": {}}
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

    def also_over(network, inst, sol, base):
        ev, broken = real(network, inst, sol, base)
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
        "broken": {"2026": ["bus 'early terminal' (max)", "bus 1 (max)"]},
    }


def test_a_year_with_no_ac_solution_is_said_and_the_plan_kept(monkeypatch, cn):
    """A year's AC load flow without a solution raised out of the check of the years, and the
    whole plan was lost with it (review helper-80). It is a broken year like any other: the
    moves are tried, and it is said."""
    import lvplan.planning.year_check as yc
    from lvplan.errors import NotConverged

    real = yc.check_plan

    def diverges(network, inst, sol, base):
        if len(sol.chosen) == 1:  # (2026: one demand connected)
            raise NotConverged("AC load flow did not converge")
        return real(network, inst, sol, base)

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

    a = {"years": [2026, 2027], "measures_brought_forward": 1, "broken": {}}
    b = {"years": [2027, 2028], "measures_brought_forward": 2, "broken": {"2027": ["bus 4 (max)"]}}
    c = {"years": [2027], "measures_brought_forward": 0, "broken": {"2027": ["bus 1 (max)"]}}
    assert joined_years([a, {}, b, c]) == {
        "years": [2026, 2027, 2028],
        "measures_brought_forward": 3,
        "broken": {"2027": ["bus 1 (max)", "bus 4 (max)"]},
    }
    assert joined_years([{}, {}]) == {}
