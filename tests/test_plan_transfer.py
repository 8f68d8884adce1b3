"""The transfer (feeder split) in the plan: offered, chosen where it is the cheapest relief, and
not where it is dearer.

Two hand-built feeders of one 400 kVA unit (profile ``cn``: loading limit 100 %, pf 0.9, v_min
353.4 V, detour 1.3, longest supply radius 500 m; costs from planning/measures.toml and
model/catalogue.toml). The feeder runs east and back west in a U, so its far end D lies 100 m
due north of the transformer (route 100 x 1.3 = 130 m) but 500 m away along the cable::

    D (0, +100 m) ----200 m---- C (+200 m, +100 m)
                                |100 m
    T LV (0, 0) --100 m-- A --100 m-- B (+200 m, 0)

**Split cheaper** (``_u_feeder(thin_all=True)``): every section is thin (0.142 kA). Demand X,
100 kW generic at D (by bus), design current 100 / (0.9 x sqrt(3) x 0.3534) = 181.5 A > 142 A
on each of the four sections. Without a split each must be replaced or doubled by 4x185 (the
cheapest that carries it; 1,550,000 CNY/km, replace and parallel cost the same):
500 m x 1,550 = **775,000 CNY**. The split opens section C-D and feeds D by 130 m of new cable
from the LV busbar; its cable is the cheapest of the catalogue's ``[transfer]`` cables with room
for 181.5 A (4x185, 375 A): 30,000 (cubicle) + 130 m x 1,550 = **231,500 CNY**, the optimum
(and the greedy's choice: it too compares the twin with the upgrades).

**Split dearer** (``_u_feeder(thin_all=False)``): only the 20 m head section T-A is thin, the
rest 4x240-like (430 A). With X by bus at D no split is even offered: the cheapest (below the
head section, route 20 x 1.3 = 26 m) costs 30,000 + 26 x 1,550 = 70,300 CNY, more than all it
could save (the head section at its dearest upgrade, 20 m of 4x240: 36,000; X has no new
substation to avoid). With X by lon/lat at D's point it may also go to a new substation, so
the split is offered (it could save one); the plan replaces (or doubles) the head section all
the same: 20 m x 1,550 = 31,000 CNY, plus X's service cable, 1 m of 4x95 (181.5 A; 1,000 CNY/m)
= **32,000 CNY**, against 70,300 + 1,000 with the split.
"""

from __future__ import annotations

import csv
import io
import math

import pandapower as pp
import pytest
from reference import Reference

from lvplan.locate import EARTH_RADIUS_M
from lvplan.model.network import Network
from lvplan.planning.candidates import build_instance, prune_upgrades
from lvplan.planning.demand import read_demand
from lvplan.planning.linear import mv_response
from lvplan.planning.measures import MeasureKind, load_measures
from lvplan.planning.outputs import plan_csv, reinforced_json
from lvplan.planning.plan import plan as make_plan
from lvplan.planning.transfers import offer_transfers

LON0, LAT0 = 114.0, 22.5


def _dlon(m: float) -> float:
    return math.degrees(m / (EARTH_RADIUS_M * math.cos(math.radians(LAT0))))


def _dlat(m: float) -> float:
    return math.degrees(m / EARTH_RADIUS_M)


CNY_PER_M_185 = 1_550.0
CUBICLE_CNY = 30_000.0
SPLIT_CNY = CUBICLE_CNY + 130.0 * CNY_PER_M_185  # 231,500
UPSTREAM_CNY = 500.0 * CNY_PER_M_185  # 775,000
HEAD_CNY = 20.0 * CNY_PER_M_185  # 31,000


def _u_feeder(thin_all: bool) -> pp.pandapowerNet:
    net = pp.create_empty_network()
    mv = pp.create_bus(net, 10.0, name="MV", geodata=(LON0, LAT0))
    pp.create_ext_grid(net, mv, vm_pu=1.0)
    head = 100.0 if thin_all else 20.0
    pts = {
        "T LV": (0.0, 0.0),
        "A": (head, 0.0),
        "B": (head + 100.0 if thin_all else 220.0, 0.0),
        "C": (head + 100.0 if thin_all else 220.0, 100.0),
        "D": (0.0, 100.0),
    }
    bus = {
        n: pp.create_bus(net, 0.4, name=n, geodata=(LON0 + _dlon(x), LAT0 + _dlat(y)))
        for n, (x, y) in pts.items()
    }
    pp.create_transformer_from_parameters(
        net, mv, bus["T LV"], sn_mva=0.4, vn_hv_kv=10.0, vn_lv_kv=0.4, vk_percent=4.0,
        vkr_percent=1.0, pfe_kw=0.0, i0_percent=0.0, shift_degree=150.0, name="T",
    )  # fmt: skip
    for a, b in (("T LV", "A"), ("A", "B"), ("B", "C"), ("C", "D")):
        (xa, ya), (xb, yb) = pts[a], pts[b]
        km = math.hypot(xb - xa, yb - ya) / 1000.0
        thin = thin_all or a == "T LV"
        pp.create_line_from_parameters(
            net, bus[a], bus[b], length_km=km, r_ohm_per_km=0.642 if thin else 0.090,
            x_ohm_per_km=0.083 if thin else 0.077, c_nf_per_km=0.0,
            max_i_ka=0.142 if thin else 0.430, name=f"{a}-{b}",
        )  # fmt: skip
    assert bus["D"] == 5
    return net


DEMAND = "id,kw,category,bus,year\nX,100,generic,5,2027\n"


@pytest.fixture(scope="module")
def demand_csv(tmp_path_factory):
    p = tmp_path_factory.mktemp("xfer") / "demand.csv"
    p.write_text(DEMAND, encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def u_thin():
    return Network(_u_feeder(True), name="U feeder, thin", source="test")


@pytest.fixture(scope="module")
def u_head():
    return Network(_u_feeder(False), name="U feeder, thin head", source="test")


@pytest.fixture(scope="module")
def thin_plans(u_thin, demand_csv, cn):
    return {
        m: make_plan(u_thin, demand_csv, criteria=cn, method=m, time_limit_s=10)
        for m in ("optimal", "greedy")
    }


@pytest.fixture(scope="module")
def head_plans(u_head, cn, tmp_path_factory):
    located = tmp_path_factory.mktemp("xfer") / "located.csv"
    located.write_text(
        f"id,kw,category,lon,lat,year\nX,100,generic,{LON0},{LAT0 + _dlat(100.0)},2027\n",
        encoding="utf-8",
    )
    return {
        m: make_plan(u_head, located, criteria=cn, method=m, time_limit_s=10)
        for m in ("optimal", "greedy")
    }


def _new_violations(plan, network, crit) -> set:
    before = Reference(network.pp, crit).base
    after = Reference(pp.from_json_string(reinforced_json(plan, network)), crit).base
    return after - before


def test_the_split_is_offered_below_the_needed_sections(u_thin, demand_csv, cn):
    inst = build_instance(u_thin, read_demand(demand_csv, u_thin, cn).demands, cn, load_measures())
    prune_upgrades(inst, mv_response(u_thin, inst))
    assert inst.needed_lines == {0, 1, 2, 3}
    assert offer_transfers(u_thin, inst) == 1
    (up,) = [u for u in inst.upgrades if u.kind == MeasureKind.TRANSFER]
    # the deepest section (C-D, line 3): it takes the load off all four; the others are nested
    assert (up.element, up.to_bus, up.cable) == (3, 1, "YJV22-0.6/1kV 4x185")
    assert up.length_m == pytest.approx(130.0, abs=1e-6)
    assert round(up.cost_cny) == SPLIT_CNY
    sp = inst.transfers[3]
    assert (sp.far_bus, sp.buses) == (5, frozenset({5}))
    assert sp.base_ka == pytest.approx(0.0, abs=1e-9)  # no existing load beyond it
    twins = [o for o in inst.options if o.via is not None]
    assert [(o.bus, o.via) for o in twins] == [(5, 3)]
    assert inst.stats["transfers_pruned"] == 3


def test_a_split_cheaper_than_the_upstream_cables_is_chosen(thin_plans, u_thin, cn):
    for method, p in thin_plans.items():
        assert [a.demand for a in p.assignments] == ["X"], method
        assert [(m.kind, str(m.element)) for m in p.measures] == [("transfer", "line 3")], method
        assert round(p.cost_cny) == SPLIT_CNY, method
        assert p.cost_cny < UPSTREAM_CNY
        assert not _new_violations(p, u_thin, cn), method
    opt = thin_plans["optimal"]
    assert opt.status == "optimal"
    assert opt.summary()["cost_by_kind_cny"]["transfer"] == pytest.approx(SPLIT_CNY, abs=1)


def test_the_transfer_row_of_plan_csv(thin_plans):
    rows = list(csv.DictReader(io.StringIO(plan_csv(thin_plans["optimal"]))))
    assert len(rows) == 1
    r = rows[0]
    assert (r["measure"], r["element"], r["year"], r["demands"]) == (
        "transfer",
        "line 3",
        "2027",
        "X",
    )
    assert float(r["cost_cny"]) == pytest.approx(SPLIT_CNY, abs=0.01)
    assert r["before"] == "line 3 (line) in service"
    assert r["after"].startswith(
        "line 3 open; bus 5 fed by 130 m of YJV22-0.6/1kV 4x185 from bus 1"
    )
    assert r["reason"].startswith("feeder split: 100 kW of new design load")
    assert "3 section(s) above it" in r["reason"]


def test_reinforced_json_has_the_line_open_and_the_new_cable(thin_plans, u_thin):
    net = pp.from_json_string(reinforced_json(thin_plans["optimal"], u_thin))
    assert not bool(net.line.at[3, "in_service"])
    new = net.line[net.line.name == "transfer of line 3"]
    assert len(new) == 1
    assert (int(new.from_bus.iloc[0]), int(new.to_bus.iloc[0])) == (1, 5)
    assert float(new.length_km.iloc[0]) == pytest.approx(0.13, abs=1e-9)
    pp.runpp(net)
    assert float(net.res_bus.vm_pu.at[5]) > 353.4 / 400.0
    assert float(net.res_line.loading_percent.at[int(new.index[0])]) < 100.0


def test_a_split_dearer_than_all_it_could_save_is_not_offered(u_head, demand_csv, cn):
    inst = build_instance(u_head, read_demand(demand_csv, u_head, cn).demands, cn, load_measures())
    prune_upgrades(inst, mv_response(u_head, inst))
    assert inst.needed_lines == {0}
    assert offer_transfers(u_head, inst) == 0
    assert inst.stats["transfers_pruned"] == 4  # each line at or below the head section


def test_a_split_dearer_than_the_head_section_is_not_chosen(head_plans, u_head, cn):
    for method, p in head_plans.items():
        assert [a.demand for a in p.assignments] == ["X"], method
        assert p.assignments[0].bus == 5
        kinds = sorted((m.kind, str(m.element)) for m in p.measures)
        assert kinds in ([("lv_cable_parallel", "line 0")], [("lv_cable_replace", "line 0")])
        assert round(p.cost_cny) == HEAD_CNY + 1_000, method
        assert not _new_violations(p, u_head, cn), method
    inst = head_plans["optimal"].instance
    offered = [u for u in inst.upgrades if u.kind == MeasureKind.TRANSFER]
    assert [(u.element, round(u.cost_cny)) for u in offered] == [(0, 70_300)]  # not taken


def test_greedy_never_cheaper_than_optimal(thin_plans, head_plans):
    for plans in (thin_plans, head_plans):
        assert plans["greedy"].cost_cny >= plans["optimal"].cost_cny - 1e-6


def test_plan_html_draws_the_new_feeder(thin_plans, u_thin):
    from lvplan.planning.outputs import plan_html

    html = plan_html(thin_plans["optimal"], u_thin)
    assert "feeder split: line 3 opened, bus 5 fed from bus 1: 130 m" in html
    legend = html[html.index('id="lvplan-legend"') :]
    assert "border-top:4px dashed #c51b7d" in legend  # the split's dashed line has its key
    assert "feeder split: new LV feeder, the line into the subtree opened" in legend


def test_an_ac_cut_on_a_line_above_lists_the_split_as_relief(cn, tmp_path):
    """With 50 kW (pf 0.95) already at D, the subtree of line 3 carries its base current
    (about 87 A at D's low voltage): a split takes that off sections 0-2 (counted at 90 %,
    ``RELIEF_SHARE``), so it relieves a cut on one of them that needs up to 78 A, not one that
    needs more, and none on a line outside its path."""
    from lvplan.planning.model import Solution
    from lvplan.planning.transfers import RELIEF_SHARE, relieving_splits

    raw = _u_feeder(True)
    pp.create_load(raw, 5, p_mw=0.05, q_mvar=0.05 * math.tan(math.acos(0.95)), name="existing")
    net = Network(raw, name="U feeder with load", source="test")
    d = tmp_path / "d.csv"
    d.write_text(DEMAND, encoding="utf-8")
    inst = build_instance(net, read_demand(d, net, cn).demands, cn, load_measures())
    prune_upgrades(inst, mv_response(net, inst))
    assert offer_transfers(net, inst) == 1
    sp = inst.transfers[3]
    ka = float(net.base_state().line_loading_percent[0]) / 100.0 * 0.142
    assert sp.base_ka == pytest.approx(ka, rel=1e-3)  # the base current of the line above
    assert 0.080 < sp.base_ka < 0.095
    # what the busbar to D drops at the base is gained at D, less the new cable's own drop
    assert sp.shift_pu > 0.0
    (u,) = [k for k, up in enumerate(inst.upgrades) if up.kind == MeasureKind.TRANSFER]
    none = Solution.of(inst, [], [], [], "feasible")
    share = RELIEF_SHARE * sp.base_ka
    assert relieving_splits(inst, none, 0, share - 1e-6) == [u]
    assert relieving_splits(inst, none, 2, share - 1e-6) == [u]
    assert relieving_splits(inst, none, 0, share + 1e-6) == []
    built = Solution.of(inst, [], [u], [], "feasible")
    assert relieving_splits(inst, built, 0, 0.0) == []  # built already: its cut holds


def test_a_split_is_built_by_the_first_year_that_needs_it(u_thin, cn, tmp_path):
    """Two demands at D, 60 kW in 2029 and 60 kW in 2026 (218 A together, within the 4x185's
    375 A): one split serves both, built in 2026, nothing before and nothing undone."""
    d = tmp_path / "years.csv"
    d.write_text("id,kw,category,bus,year\nlate,60,generic,5,2029\nearly,60,generic,5,2026\n")
    for method in ("optimal", "greedy"):
        p = make_plan(u_thin, d, criteria=cn, method=method, time_limit_s=10)
        assert sorted(a.demand for a in p.assignments) == ["early", "late"]
        (m,) = p.measures
        assert (m.kind, m.year, sorted(m.demands)) == ("transfer", 2026, ["early", "late"])
        assert round(m.cost_cny) == SPLIT_CNY
        by_year = p.summary()["cost_by_year_cny"]
        assert by_year["2026"] == pytest.approx(SPLIT_CNY, abs=1)
        assert by_year.get("2029", 0.0) == 0.0  # the late demand's service: none (by bus)
        assert not _new_violations(p, u_thin, cn)


def test_a_twin_that_avoids_the_overloaded_lines_forces_no_upgrade_on_them(u_thin, demand_csv, cn):
    """X's option at bus 5 alone overfills lines 0-3 (the thin U); its transfer twin reaches
    the bus by a new cable off them. Served, X forces no upgrade of those lines (it may take
    the twin), and the model's optimum is the same with the inequalities as without; counted
    on its original option alone, the four lines would be forced (what a count of a demand's
    options that missed the twin would add, cutting off the optimum)."""
    from ortools.sat.python import cp_model

    from lvplan.planning.linear import Cuts, LinearGrid
    from lvplan.planning.model import PlanModel
    from lvplan.planning.strengthen import forced_upgrades

    inst = build_instance(u_thin, read_demand(demand_csv, u_thin, cn).demands, cn, load_measures())
    mv = mv_response(u_thin, inst)
    prune_upgrades(inst, mv)
    offer_transfers(u_thin, inst)
    grid = LinearGrid(inst, mv, Cuts())
    assert any(o.via >= 0 for o in grid.options)  # (a twin is offered)
    costs = []
    for strengthen in (False, True):
        pm = PlanModel(grid)
        for sv in pm.served.values():
            pm.m.add(sv == 1)
        if strengthen:
            pm._must_serve(list(pm.served))
        pm.m.minimize(pm.cost)
        solver = cp_model.CpSolver()
        assert solver.solve(pm.m) == cp_model.OPTIMAL
        costs.append(solver.objective_value)
    assert pm.forced == []
    assert costs[0] == costs[1] == pytest.approx(231_500.0)
    lines = [r for r in pm.capacity_rows if r.name.startswith("line")]
    assert len(lines) == 4 and all(r.most(0) > r.base for r in lines)
    original = {0: frozenset(j for r in lines for j, _ in r.terms[0])}
    assert len(original[0]) == 1
    assert sorted(n for n, _ in forced_upgrades(lines, [0], original)) == [
        "line 0",
        "line 1",
        "line 2",
        "line 3",
    ]


def test_a_split_that_lifts_an_ac_cut_is_dated_by_the_demands_the_cut_counted(cn, tmp_path):
    """A split lifts an AC cut on the line above it (verify._relief offers it): the demands the
    cut counted need it too. It was dated by its twins alone: an upstream demand of 2026 and a
    twin of 2029 built it in 2029, leaving the line over its limit in 2026-2028 (review,
    2026-12-08)."""
    from lvplan.planning.linear import Cuts
    from lvplan.planning.measure_users import measure_users
    from lvplan.planning.model import Solution

    net = Network(_u_feeder(True), name="U feeder", source="test")
    d = tmp_path / "d.csv"
    d.write_text("id,kw,category,bus,year\ntwin,60,generic,5,2029\nup,60,generic,2,2026\n")
    inst = build_instance(net, read_demand(d, net, cn).demands, cn, load_measures())
    prune_upgrades(inst, mv_response(net, inst))
    assert offer_transfers(net, inst) == 1
    (u,) = [k for k, up in enumerate(inst.upgrades) if up.kind == MeasureKind.TRANSFER]
    pos = {dm.id: i for i, dm in enumerate(inst.demands)}
    (k_up,) = [
        k
        for k, o in enumerate(inst.options)
        if o.demand == pos["up"] and o.bus == 2 and o.via is None
    ]
    (k_twin,) = [
        k for k, o in enumerate(inst.options) if o.demand == pos["twin"] and o.via is not None
    ]
    cuts = Cuts()
    line0 = int(net.pp.line.index[0])
    cuts.add_linear({k_up: 0.5, k_twin: 0.5}, 0.6, f"line {line0}", relief=(u,))
    sol = Solution.of(inst, [k_up, k_twin], [u], [], "feasible")
    users = measure_users(net, inst, sol, cuts, {pos["up"]: k_up, pos["twin"]: k_twin})
    el = inst.upgrades[u].element
    assert users.xfer[el] == [pos["twin"]]
    assert sorted(users.xfer_cut[el]) == sorted([pos["up"], pos["twin"]])
    assert users.held_by[u] == [f"line {line0}"]
    # dated by both, and both need it; its kW is the new load it feeds, the twin's alone (the
    # upstream demand's 60 kW was counted in it: review, 2026-12-08)
    from lvplan.planning.measure_users import first_year
    from lvplan.planning.plan import _transfer_measure

    ids = sorted({*users.xfer[el], *users.xfer_cut[el]})
    m = _transfer_measure(net.pp, inst, inst.upgrades[u], ids, users.xfer[el],
                          users.held_by[u], first_year(inst.demands, ids))  # fmt: skip
    assert m.year == 2026 and sorted(m.demands) == ["twin", "up"]
    assert m.reason.startswith("feeder split: 60 kW of new design load")
