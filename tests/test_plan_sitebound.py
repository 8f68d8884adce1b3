"""The sites' bound (planning/sitebound.py): the linear relaxation of the connections and new
substations alone, a bound for a city group with no time for its whole model's relaxation."""

from __future__ import annotations

import dataclasses
import math

import pytest
from ortools.sat.python import cp_model
from test_plan import DLON, EAST_M, HAND_CSV, LAT0, LON0, OPTIMUM_CNY

from lvplan.planning.candidates import build_instance
from lvplan.planning.demand import read_demand
from lvplan.planning.greedy import Greedy
from lvplan.planning.linear import Cuts, LinearGrid, mv_response
from lvplan.planning.measures import load_measures
from lvplan.planning.model import PlanModel
from lvplan.planning.sitebound import sites_bound

#: two demands about 2.2 km north of the transformers, beyond every supply radius: only a new
#: substation serves them
FAR_CSV = (
    HAND_CSV
    + f"e,120,generic,,{LON0},{LAT0 + 0.02},2027\n"
    + f"f,80,generic,,{LON0 + 0.0003},{LAT0 + 0.02},2027\n"
)


def plan_group(net, csv, cn, *, time_limit_s: float, bound_only: bool = True, hard_limit_s=None):
    """``plan_network`` on ``net`` and the demand file ``csv`` as a city group's worker calls it
    (``bound_only``), the hand instance's catalogue, one worker."""
    from lvplan.planning.plan import plan_network

    return plan_network(
        net,
        read_demand(csv, net, cn),
        cn,
        load_measures(),
        method="optimal",
        time_limit_s=time_limit_s,
        workers=1,
        bound_only=bound_only,
        hard_limit_s=hard_limit_s,
    )


def _grid(net, path, cn, units_max: int | None = None) -> LinearGrid:
    """The model's terms; ``units_max``: the catalogue's most units per site (None: its own)."""
    ds = read_demand(path, net, cn)
    meas = load_measures()
    if units_max is not None:
        one = dataclasses.replace(meas.new_substation, units_max=units_max)
        meas = dataclasses.replace(meas, new_substation=one)
    inst = build_instance(net, ds.demands, cn, meas)
    return LinearGrid(inst, mv_response(net, inst), Cuts())


def test_the_sites_bound_pays_the_one_site_and_the_cheapest_cables(hand, cn, tmp_path):
    """e and f reach one site only: every plan builds it and lays their service cables; d's
    cheapest cable is 1 m to T1 (1,000 CNY); a, b and c sit on their buses. The bound is that
    sum exactly (less the solver's tolerance, rounded up), and never more than the relaxation
    of the whole model."""
    path = tmp_path / "far.csv"
    path.write_text(FAR_CSV, encoding="utf-8")
    grid = _grid(hand, path, cn)
    inst = grid.inst
    ids = [d.id for d in inst.demands]
    site_opts = {k: o for k, o in enumerate(inst.options) if o.site is not None}
    far = {ids.index("e"), ids.index("f")}
    assert {o.demand for o in site_opts.values()} >= far
    # e and f have no option but the site's (so the bound must pay for it)
    assert all(o.site is not None for o in inst.options if o.demand in far)
    sites = {o.site for o in site_opts.values() if o.demand in far}
    assert len(sites) == 1
    (s,) = sites
    want = (
        grid.sites[s].cost
        + sum(grid.options[k].cost for k, o in site_opts.items() if o.demand in far)
        + 1_000
    )
    everyone = range(len(inst.demands))
    got = sites_bound(grid, everyone)
    assert got == pytest.approx(want, rel=2e-6) and got <= want
    assert grid.sites[s].cost > 400_000  # (the site is what the bound is about)
    # the bound of the whole model's relaxation holds these rows and more
    order = sorted(everyone, key=lambda i: (inst.demands[i].year or 0, i))
    plan = Greedy(grid).run(order, None)
    assert all(plan.served)
    rel, _info = PlanModel(grid).relaxation_bound(plan, time_limit_s=30.0)
    assert rel is not None and got <= rel + 1.0
    assert rel <= plan.cost_cny + 1.0


def test_the_sites_bound_of_the_hand_instance_never_passes_its_optimum(hand, hand_csv, cn):
    grid = _grid(hand, hand_csv, cn)
    n = len(grid.inst.demands)
    got = sites_bound(grid, range(n))
    assert got == pytest.approx(1_000.0, abs=0.5)  # d's metre of cable: no site pays
    assert got <= OPTIMUM_CNY
    assert sites_bound(grid, []) == 0.0
    assert sites_bound(grid, [n + 5]) is None  # a demand with no option: nothing to bound


def test_a_city_group_with_no_relaxation_in_its_time_takes_the_sites_bound(
    hand, hand_csv, cn, monkeypatch
):
    """A city group (``bound_only``) past its time whose relaxation gives nothing (no time
    left, as on 23 of the 45 groups of the 13,000-transformer city) takes the sites' bound for
    the demands its verified greedy plan serves, and says so (``bound_by: sites``)."""
    from lvplan.planning import optimal_rounds
    from lvplan.planning.optimal_rounds import SEARCH_WORTH_S

    monkeypatch.setattr(optimal_rounds, "SEARCH_SKIP_MIN_BUSES", 0)
    monkeypatch.setattr(
        PlanModel,
        "relaxation_bound",
        lambda self, sol, **kw: (None, {"highs_status": "no time left"}),
    )
    p = plan_group(hand, hand_csv, cn, time_limit_s=SEARCH_WORTH_S / 2)
    assert p.cost_cny == pytest.approx(277_000.0, abs=1.0)  # the verified greedy plan
    assert p.solution.bounds["bound_by"] == "sites"
    assert p.bound == pytest.approx(1_000.0, abs=0.5)
    assert p.gap == pytest.approx((p.cost_cny - p.bound) / p.cost_cny)
    assert "the sites' bound" in p.history[-1].notes[0]
    assert p.summary()["solver"]["bound_by"] == "sites"
    assert not math.isnan(p.summary()["solver"]["best_bound"])


def test_a_city_groups_weak_cp_sat_bound_is_raised_to_the_sites_bound(
    hand, hand_csv, cn, monkeypatch
):
    """A city group whose CP-SAT search kept its hint and proved 0 (as on one core in seconds)
    ends with the sites' bound for the demands its plan serves, the CP-SAT figure kept beside
    it; a plain plan (not a city group's) keeps what CP-SAT proved."""
    import dataclasses

    def kept_the_hint(self, **kw):
        return dataclasses.replace(
            self.hinted,
            status="feasible",
            bound=0.0,
            gap=1.0,
            bounds={"cp_sat": 0.0, "bound_by": "cp_sat"},
        )

    monkeypatch.setattr(PlanModel, "solve", kept_the_hint)

    def run(bound_only: bool):
        return plan_group(hand, hand_csv, cn, time_limit_s=60.0, bound_only=bound_only)

    p = run(True)
    assert p.optimal_cost_cny == pytest.approx(277_000.0, abs=1.0)  # a search ran, kept it
    assert p.solution.bounds["bound_by"] == "sites"
    assert p.solution.bounds["cp_sat"] == 0.0
    assert p.bound == pytest.approx(1_000.0, abs=0.5)
    plain = run(False)
    assert plain.solution.bounds["bound_by"] == "cp_sat" and plain.bound == 0.0


#: four 200 kW demands 2.2 km north, two pairs 160 m apart: a site founded at each pair and one
#: between them that reaches all four; their 800 kW needs two 630 kVA sites
CLUSTER_CSV = HAND_CSV + "".join(
    f"{n},200,generic,,{LON0 + DLON * x_m / EAST_M},{LAT0 + 0.02},2027\n"
    for n, x_m in zip("efgh", (0, 40, 160, 200), strict=True)
)


def test_a_cluster_only_sites_serve_pays_for_the_two_sites_it_needs(
    hand, cn, tmp_path, monkeypatch
):
    """With one unit per site, every plan serving e-h builds two of the three far sites (each
    about 5.5 M CNY); the relaxation, with no site cover, fills the site between them and builds
    fractions of the other two. With the covers (planning/strengthen.py) both the whole
    relaxation and the sites' bound pay at least the two cheapest sites, and neither passes the
    model's optimum for the demands (CP-SAT, proven): the covers cut off no plan of it. (With
    sites of two units, the test below.)"""
    from lvplan.planning import model as model_module
    from lvplan.planning import sitebound as sitebound_module

    path = tmp_path / "cluster.csv"
    path.write_text(CLUSTER_CSV, encoding="utf-8")
    grid = _grid(hand, path, cn, units_max=1)
    inst = grid.inst
    ids = [d.id for d in inst.demands]
    far = {ids.index(n) for n in "efgh"}
    assert all(o.site is not None for o in inst.options if o.demand in far)
    far_sites = sorted({o.site for o in inst.options if o.demand in far})
    assert len(far_sites) == 3
    two = sum(sorted(grid.sites[s].cost for s in far_sites)[:2])
    assert two > 10_000_000
    everyone = range(len(inst.demands))
    order = sorted(everyone, key=lambda i: (inst.demands[i].year or 0, i))
    plan = Greedy(grid).run(order, None)
    assert all(plan.served) and len([s for s in plan.sites if s in far_sites]) == 2

    def bounds() -> tuple[float, float, PlanModel]:
        mdl = PlanModel(grid)
        rel, _info = mdl.relaxation_bound(plan, time_limit_s=30.0)
        got = sites_bound(grid, everyone)
        assert rel is not None and got is not None
        return rel, got, mdl

    rel, got, mdl = bounds()
    assert mdl.site_covers == [(tuple(far_sites), 2)]
    assert two <= got <= rel + 1.0
    opt = PlanModel(grid)
    for sv in opt.served.values():
        opt.m.add(sv == 1)
    opt.m.minimize(opt.cost)  # (the model alone: no cover in it)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 2
    assert solver.solve(opt.m) == cp_model.OPTIMAL
    assert rel <= solver.objective_value + 1.0 <= plan.cost_cny + 2.0
    assert solver.objective_value >= two
    # without the covers the relaxation builds fractions of a second site: less than two
    monkeypatch.setattr(model_module, "site_covers", lambda *a: [])
    monkeypatch.setattr(sitebound_module, "site_covers", lambda *a: [])
    rel0, got0, mdl0 = bounds()
    assert mdl0.site_covers == []
    assert rel0 < two - 500_000 and got0 < two - 500_000


def test_the_covers_weighted_by_units_cut_off_no_plan(hand, cn, tmp_path):
    """The same cluster with the built-in catalogue: its site between the two is also offered
    with two units on one tie (one site for e-h). The cover counts that site twice; the
    relaxation and the sites' bound stay at or below the model's proven optimum, which now
    builds the one site of two units, cheaper than two sites."""
    path = tmp_path / "cluster.csv"
    path.write_text(CLUSTER_CSV, encoding="utf-8")
    grid = _grid(hand, path, cn)
    inst = grid.inst
    ids = [d.id for d in inst.demands]
    far = {ids.index(n) for n in "efgh"}
    far_sites = sorted({o.site for o in inst.options if o.demand in far})
    twins = [s for s in far_sites if inst.sites[s].units == 2]
    assert len(far_sites) == 4 and len(twins) == 1
    two = sum(sorted(grid.sites[s].cost for s in far_sites if s not in twins)[:2])
    assert grid.sites[twins[0]].cost < two
    mdl = PlanModel(grid)
    order = sorted(range(len(inst.demands)), key=lambda i: (inst.demands[i].year or 0, i))
    plan = Greedy(grid).run(order, None)
    rel, _info = mdl.relaxation_bound(plan, time_limit_s=30.0)
    got = sites_bound(grid, range(len(inst.demands)))
    assert rel is not None and got is not None
    ((cover, _n),) = mdl.site_covers
    assert set(cover) == set(far_sites)
    opt = PlanModel(grid)
    for sv in opt.served.values():
        opt.m.add(sv == 1)
    opt.m.minimize(opt.cost)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 2
    assert solver.solve(opt.m) == cp_model.OPTIMAL
    assert max(rel, got) <= solver.objective_value + 1.0
    built = [s for s in far_sites if solver.value(opt.z[s])]
    assert built == twins
