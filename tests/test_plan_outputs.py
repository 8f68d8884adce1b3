"""The files of a plan (``write_plan``): their columns, the cost identity, the reinforced network
in a plain pandapower load flow, the offline map, and an output folder that cannot be written."""

from __future__ import annotations

import copy
import json
import math
import re

import numpy as np
import pandapower as pp
import pandas as pd
import pytest

from lvplan.errors import InputError
from lvplan.planning.measures import MeasureKind
from lvplan.planning.outputs import (
    ASSIGNMENT_COLUMNS,
    FILES,
    PLAN_COLUMNS,
    UNSERVED_COLUMNS,
    plan_html,
    reinforced_json,
    write_plan,
)
from lvplan.planning.plan import plan as make_plan
from lvplan.planning.synth_demand import synth_demand

#: the lowest LV voltage of the profile (380 V - 7 %)
MIN_LV_V = 353.4
#: a demand id a spreadsheet would run as a formula, and that would end folium's JS template
ODD_ID = "=X1`${1}"


@pytest.fixture(scope="module")
def planned(sz, cn, tmp_path_factory):
    """30 synthetic demands on sz-futian, plus one too big for LV (unserved) and one odd id."""
    d = tmp_path_factory.mktemp("plan")
    csv = synth_demand(sz, count=30, seed=1, criteria=cn).to_csv()
    csv += "BIG1,3000,shop,114.0455729,22.5461674,2028\n"
    csv += f"{ODD_ID},60,shop,114.0579,22.5463,2029\n"
    (d / "demand.csv").write_text(csv, encoding="utf-8")
    before = pp.to_json(sz.pp)
    p = make_plan(sz, d / "demand.csv", time_limit_s=10)
    paths = write_plan(p, sz, d / "out")
    assert pp.to_json(sz.pp) == before  # the network handed in is not touched
    return p, d / "out", paths


def _csv(path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, dtype=str)


def test_files_exist_with_their_columns(planned):
    p, out, paths = planned
    assert [x.name for x in paths] == list(FILES)
    assert sorted(x.name for x in out.iterdir()) == sorted(FILES)  # no temporary left
    plan_t = _csv(out / "plan.csv")
    assert tuple(plan_t.columns) == PLAN_COLUMNS and len(plan_t) == len(p.measures)
    assign = _csv(out / "assignment.csv")
    assert tuple(assign.columns) == ASSIGNMENT_COLUMNS and len(assign) == len(p.assignments)
    uns = _csv(out / "unserved.csv")
    assert tuple(uns.columns) == UNSERVED_COLUMNS
    assert list(uns.demand) == ["BIG1"] and "HV supply" in uns.reason[0]
    assert json.loads((out / "summary.json").read_text(encoding="utf-8")) == p.summary()
    # the why of each measure, and the demands it was built for
    for row, m in zip(plan_t.itertuples(), p.measures, strict=True):
        assert (row.measure, row.element, row.reason) == (m.kind, m.element, m.reason)
        # (a formula cell is neutralised at the cell's start: an odd id within the list is not
        # its start since line 17's repair lists every demand of T4's LV network)
        assert row.reason and row.demands == safe(";".join(m.demands))
    assert "'" + ODD_ID in set(assign.demand)  # a formula cell is neutralised


def test_a_measures_demands_read_back_whatever_their_ids_hold():
    """plan.csv joined a measure's demands by a space, and ids may hold spaces: ``Shop 1``
    beside ``Shop`` and ``1`` read ``Shop 1 Shop 1`` (found by review). Now by ``;``, which an
    id may not hold (the demand file refuses it: test_planning_inputs)."""
    import csv
    import io
    import types

    from lvplan.planning.outputs import plan_csv
    from lvplan.planning.plan import Measure

    ids = ["Shop 1", "Shop", "1", "new substation S1.1", 'x"y, z']
    m = Measure("transformer_swap", "trafo 3", "250 kVA", "400 kVA", 1.0, None, ids, "why")
    (row,) = csv.DictReader(io.StringIO(plan_csv(types.SimpleNamespace(measures=[m]))))
    assert row["demands"].split(";") == ids


def safe(text: str) -> str:
    return "'" + text if text.startswith("=") else text


def test_costs_add_up_to_the_summary_total(planned):
    """To the cent: the total, its breakdowns by kind and by year, and the files' rows (the
    total was the solver's unrounded cost, a few fen off its rows: found by review)."""
    _p, out, _ = planned
    fen = [round(c * 100) for c in pd.read_csv(out / "plan.csv").cost_cny]
    fen += [round(c * 100) for c in pd.read_csv(out / "assignment.csv").cable_cost_cny]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    total = round(summary["total_cost_cny"] * 100)
    assert sum(fen) == total
    assert sum(round(v * 100) for v in summary["cost_by_kind_cny"].values()) == total
    assert sum(round(v * 100) for v in summary["cost_by_year_cny"].values()) == total
    assert summary["present_value_cny"] == summary["total_cost_cny"]  # (undated: one year)
    assert summary["total_cost_cny"] > 0 and summary["new_substations"] >= 1


@pytest.fixture(scope="module")
def reinforced(planned):
    _p, out, _ = planned
    net = pp.from_json(str(out / "reinforced.json"))
    pp.runpp(net)
    return net


def test_reinforced_has_every_served_demand_as_a_load(planned, sz, reinforced):
    p, _, _ = planned
    net = reinforced
    new = net.load.loc[~net.load.index.isin(sz.pp.load.index)]
    assert sorted(new.name) == sorted(a.demand for a in p.assignments)
    kw = {a.demand: a.design_kw for a in p.assignments}
    for _, row in new.iterrows():
        assert row.p_mw == pytest.approx(kw[row["name"]] / 1000.0)
    assert len(net.load) == len(sz.pp.load) + len(p.assignments)


def test_reinforced_transformers_have_their_new_rating(planned, sz, reinforced):
    p, _, _ = planned
    net, inst = reinforced, p.instance
    ups = [inst.upgrades[u] for u in p.solution.upgrades]
    trafo_ups = [u for u in ups if u.kind != MeasureKind.LV_CABLE_REPLACE]
    trafo_ups = [u for u in trafo_ups if u.kind != MeasureKind.LV_CABLE_PARALLEL]
    assert trafo_ups  # the fixture's plan reinforces transformers
    for u in trafo_ups:
        row = sz.pp.trafo.loc[u.element]
        if u.kind == MeasureKind.TRANSFORMER_SWAP:
            assert net.trafo.at[u.element, "sn_mva"] == pytest.approx(u.rated_kva / 1000)
        else:
            same = net.trafo[(net.trafo.hv_bus == row.hv_bus) & (net.trafo.lv_bus == row.lv_bus)]
            assert sorted(same.sn_mva * 1000) == sorted([row.sn_mva * 1000, u.rated_kva])
    units = sum(inst.sites[s].units for s in p.solution.sites)  # (a site may hold two)
    assert len(net.trafo) == len(sz.pp.trafo) + units + sum(
        u.kind == MeasureKind.TRANSFORMER_PARALLEL for u in ups
    )


def _overloads(net) -> dict[str, float]:
    """Every LV bus below MIN_LV_V and every line or transformer above 100 %, by element."""
    out = {}
    lv = net.bus.index[(net.bus.vn_kv < 1.0) & net.bus.in_service.astype(bool)]
    v = net.res_bus.vm_pu.loc[lv] * net.bus.vn_kv.loc[lv] * 1000.0
    for b, x in v[v < MIN_LV_V].items():
        out[f"bus {b}"] = MIN_LV_V - float(x)
    for table in ("line", "trafo"):
        ld = net[f"res_{table}"].loading_percent
        for i, x in ld[ld > 100.0].items():
            out[f"{table} {i}"] = float(x) - 100.0
    return out


def test_reinforced_runs_in_pandapower_within_the_limits(sz_pristine, reinforced):
    """The plan is AC-verified: pandapower's own load flow of reinforced.json keeps every LV
    voltage (>= 353.4 V) and every loading (<= 100 %). sz-futian breaks two limits before the
    plan (line 17 at 103 %, trafo 6 at 105 %), each in an LV network the plan connects demands
    to, so the plan repairs both (the criteria's pre-existing rule, verify.py). Before, line 17
    stayed over (103.0 %): no new load flowed through it."""
    net = reinforced
    assert net.converged
    assert not np.isnan(net.res_bus.vm_pu[net.bus.in_service.astype(bool)]).any()
    base = copy.deepcopy(sz_pristine)
    pp.runpp(base)
    before, after = _overloads(base), _overloads(net)
    assert set(after) <= set(before), sorted(set(after) - set(before))
    for el, excess in after.items():
        assert excess <= before[el] + 1e-6, el
    assert set(before) == {"line 17", "trafo 6"}
    assert set(after) == set()


def test_map_is_offline_and_draws_each_new_substation(planned):
    p, out, _ = planned
    page = (out / "plan.html").read_text(encoding="utf-8")
    assert "cdn.jsdelivr" not in page and "<script src=" not in page
    assert "L.Map" in page or "L.map" in page  # Leaflet's code itself
    sites = [m for m in p.measures if m.kind == MeasureKind.NEW_SUBSTATION]
    assert page.count('class=\\"lvplan-site\\"') == len(sites) >= 1
    assert "lvplan-legend" in page and "lvplan-title" in page
    assert f"{p.summary()['total_cost_cny']:,.0f} CNY" in page
    assert "${1}" not in page and "=X1&#96;&#36;{1}" in page  # a demand id stays text


def test_map_at_city_scale_thins_markers_and_lines(planned, sz, monkeypatch):
    import lvplan.planning.outputs as outputs

    p, _, _ = planned
    full = plan_html(p, sz)
    monkeypatch.setattr(outputs, "MAP_MAX_DEMANDS", 10)
    small = plan_html(p, sz)
    needy = {d for m in p.measures for d in m.demands}
    served_lines = sum(a.demand in needy for a in p.assignments)
    assert "served demands shown" in small and "served demands shown" not in full
    assert f"of {len(p.assignments)} served demands shown" in small
    lines = re.compile(r'"color": "#4d4d4d"')
    assert len(lines.findall(full)) == len(p.assignments)
    assert len(lines.findall(small)) == served_lines


def test_unserved_demands_at_one_place_are_one_marker(planned, sz, monkeypatch):
    """20,000 demands at one bus were 20,000 markers (36 s of the 35 s run and 1 GB, the map
    alone): the unserved at one place are one marker, its popup listing the first ten."""
    import dataclasses

    import lvplan.planning.outputs as outputs

    p, _, _ = planned
    here = p.assignments[0].demand
    many = [
        {"demand": here, "position": 0, "design_kw": 12.5, "reason": f"reason {n}"}
        for n in range(30)
    ]
    page = plan_html(dataclasses.replace(p, unserved=many), sz)
    assert page.count("30 demands here not served (375 kW)") == 1
    # at city scale the legend says so: 30 of 30 unserved in one marker
    monkeypatch.setattr(outputs, "MAP_MAX_DEMANDS", 10)
    small = plan_html(dataclasses.replace(p, unserved=many), sz)
    assert "30 of 30 unserved in 1 marker (one per place" in small
    assert "reason 9" in page and "reason 10" not in page and "+20 more (unserved.csv)" in page


def test_unwritable_out_raises_one_line_and_writes_nothing(planned, sz, tmp_path):
    p, _, _ = planned
    blocker = tmp_path / "a file"
    blocker.write_text("x", encoding="utf-8")
    for out in (blocker, blocker / "out"):
        with pytest.raises(InputError) as exc:
            write_plan(p, sz, out)
        assert "\n" not in str(exc.value) and str(out) in str(exc.value)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a file"]


def test_a_failed_write_leaves_the_folder_as_it_was(planned, sz, tmp_path, monkeypatch):
    import lvplan.planning.outputs as outputs

    p, _, _ = planned
    out = tmp_path / "out"
    out.mkdir()
    (out / "plan.csv").write_text("old", encoding="utf-8")
    real = outputs.write_text_atomic

    def full_disk(path, text):
        if path.name == "plan.html":
            raise OSError(28, "No space left on device", str(path))
        real(path, text)

    monkeypatch.setattr(outputs, "write_text_atomic", full_disk)
    with pytest.raises(InputError, match=r"--out .*: cannot write it: No space left on device$"):
        write_plan(p, sz, out)
    assert sorted(x.name for x in out.iterdir()) == ["plan.csv"]
    assert (out / "plan.csv").read_text(encoding="utf-8") == "old"


def test_thinning_keeps_unserved_and_measured_demands(monkeypatch):
    from types import SimpleNamespace

    import lvplan.planning.outputs as outputs

    monkeypatch.setattr(outputs, "MAP_MAX_DEMANDS", 100)
    plan = SimpleNamespace(
        assignments=[SimpleNamespace(demand=f"D{i}") for i in range(1000)],
        unserved=[{"demand": "U"}] * 10,
    )
    needy = {f"D{i}" for i in range(0, 1000, 25)}  # 40 demands a measure was built for
    shown = outputs._shown_demands(plan, needy, large=True)  # type: ignore[arg-type]
    assert needy <= shown and 90 <= len(shown) + 10 <= 100
    assert len(outputs._shown_demands(plan, needy, large=False)) == 1000  # type: ignore[arg-type]


def test_map_of_a_city_draws_measures_by_cell(planned, sz, monkeypatch):
    """Above MAP_MAX_MEASURES the measures are one circle per cell, their count and cost in its
    tooltip (every measure in exactly one cell), and no marker or line per measure."""
    import lvplan.planning.outputs as outputs

    p, _, _ = planned
    assert len(p.measures) >= 2
    monkeypatch.setattr(outputs, "MAP_MAX_MEASURES", 1)
    page = plan_html(p, sz)
    assert "measures drawn as one circle per" in page
    assert 'class=\\"lvplan-site\\"' not in page and 'class=\\"lvplan-upgrade\\"' not in page
    counts = [int(n) for n in re.findall(r"(\d+) measures, [\d,]+ CNY, for \d+ demands", page)]
    assert sum(counts) == len(p.measures)
    cells = {
        (
            math.floor(q[0] / outputs.MAP_CELL_DEG),
            math.floor(q[1] / outputs.MAP_CELL_DEG),
        )
        for m in p.measures
        if (q := outputs._measure_place(m, sz, outputs._Places.of(p, sz))) is not None
    }
    assert len(counts) == len(cells)
    costs = [
        float(c.replace(",", "")) for c in re.findall(r"\d+ measures, ([\d,]+) CNY, for", page)
    ]
    assert sum(costs) == pytest.approx(sum(m.cost_cny for m in p.measures), abs=len(costs))


def test_a_swapped_row_of_two_units_is_built_as_costed(cn):
    """A 10/0.4 kV row of ``parallel`` 2 (two 200 kVA units) and 350 kW of demands: the plan
    swaps it for one 500 kVA unit (190,000 CNY), and reinforced.json holds one 500 kVA unit,
    not two (review, 2026-12-08: 1,000 kVA built where 500 was costed)."""
    import io

    from test_plan_years import _one_unit

    network = _one_unit(parallel=2)
    csv = "id,kw,category,bus\na,200,generic,1\nb,150,generic,1\n"
    p = make_plan(network, pd.read_csv(io.StringIO(csv)), criteria=cn, time_limit_s=10)
    [m] = p.measures
    assert (m.kind, m.before, m.after) == ("transformer_swap", "400 kVA", "500 kVA")
    r = pp.from_json_string(reinforced_json(p, network))
    assert r.trafo.loc[0, ["sn_mva", "parallel", "df"]].tolist() == [0.5, 1, 1.0]
    pp.runpp(r)
    # 350 kW at pf 0.9 on one 500 kVA unit (on two it read about 40 %)
    assert 75.0 < r.res_trafo.loading_percent.at[0] < 85.0


def test_reinforced_json_holds_the_loads_the_network_has_reserved(sz, cn):
    """A Network holding a register's approvals (reserved loads) is planned with them counted;
    reinforced.json had them left out, so it was not the state the plan was checked in."""
    import io

    from lvplan.model.network import ExtraLoad, Network

    net = Network(copy.deepcopy(sz.pp), name="sz reserved", source="test")
    net.reserve({"APP-1": ExtraLoad(13, 0.06, 0.02)})
    csv = "id,kw,category,bus\nd1,20,generic,16\n"
    p = make_plan(net, pd.read_csv(io.StringIO(csv)), criteria=cn, time_limit_s=5)
    r = pp.from_json_string(reinforced_json(p, net))
    held = r.load[r.load.name == "reserved APP-1"]
    assert held[["bus", "p_mw", "q_mvar"]].values.tolist() == [[13, 0.06, 0.02]]
    assert (r.load.name == "d1").sum() == 1
    assert len(r.load) == len(sz.pp.load) + 2
