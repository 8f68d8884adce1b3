"""The repair of a plan the AC check broke (planning/repair.py): only the demands the new cuts
bear on are connected anew; every other demand keeps its connection."""

from __future__ import annotations

from pathlib import Path

import pytest
from ortools.sat.python import cp_model

import lvplan
from lvplan.planning.candidates import build_instance, prune_upgrades
from lvplan.planning.demand import read_demand
from lvplan.planning.linear import Cuts, LinearGrid, mv_response
from lvplan.planning.measures import load_measures
from lvplan.planning.model import PlanModel, Solution
from lvplan.planning.repair import repair, snapshot, touched

CSV = Path(__file__).resolve().parents[1] / "studies/demand/sz-futian-30.csv"


@pytest.fixture(scope="module")
def sz_case(cn):
    net = lvplan.load_network("sz-futian")
    inst = build_instance(net, read_demand(CSV, net, cn).demands, cn, load_measures())
    mv = mv_response(net, inst)
    prune_upgrades(inst, mv)
    cuts = Cuts()
    grid = LinearGrid(inst, mv, cuts)
    mdl = PlanModel(grid)
    for sv in mdl.served.values():
        mdl.m.add(sv == 1)
    mdl.m.minimize(mdl.cost)
    s = cp_model.CpSolver()
    s.parameters.num_workers = 1
    s.parameters.max_time_in_seconds = 20
    assert s.solve(mdl.m) in (cp_model.OPTIMAL, cp_model.FEASIBLE)
    sol = Solution.of(
        inst,
        [k for k, v in mdl.x.items() if s.value(v)],
        [u for u, v in mdl.y.items() if s.value(v)],
        [z for z, v in mdl.z.items() if s.value(v)],
        "feasible",
    )
    return inst, mv, cuts, grid, sol


def test_touched_names_the_demands_a_new_cut_bears_on(sz_case):
    inst, _mv, cuts, grid, sol = sz_case
    before = snapshot(cuts)
    after = snapshot(cuts)
    area_opts = [k for k in sol.chosen if grid.options[k].area is not None and grid.options[k].path]
    k = area_opts[0]
    line = grid.options[k].path[-1]  # the line into its bus: this option's own
    after.line_kw[line] = 5.0
    got = touched(grid, before, after, sol)
    want = {inst.options[j].demand for j in sol.chosen if line in grid.options[j].path}
    assert got == want and inst.options[k].demand in got
    assert touched(grid, before, snapshot(before), sol) == set()  # nothing new: nothing touched
    after.mv_factor = 1.5
    assert touched(grid, before, after, sol) is None  # the whole 10 kV scaled: not placeable


def test_a_cut_a_measure_lifts_touches_no_demand(sz_case):
    """A new linear cut with relief (a 10 kV section, lifted by reinforcing it) counts every
    option whose load crosses the section: every demand was "touched", the repair (the whole
    plan again) was given up and the round started from the greedy plan (the district, seed 2:
    45.99 M CNY where the broken plan was 37.68 M). The repair chooses the measures again, so
    such a cut is met by building its relief, and touches no demand; one without relief
    touches the demands it counts."""
    inst, _mv, cuts, grid, sol = sz_case
    before = snapshot(cuts)
    counted = {k: 0.01 for k in sol.chosen}
    lifted = snapshot(cuts)
    lifted.add_linear(counted, 0.0, "line 0 (a 10 kV section)", relief=(0,))
    assert touched(grid, before, lifted, sol) == set()
    held = snapshot(cuts)
    held.add_linear(counted, 0.0, "line 0 (a 10 kV section)")
    assert touched(grid, before, held, sol) == {inst.options[k].demand for k in sol.chosen}


def test_repair_reconnects_only_the_touched_demand(sz_case):
    """A cut that forbids one chosen connection (as the AC check's cut on a service cable
    does): the repaired plan serves every demand, connects that one elsewhere, keeps every
    other connection, and fits the tightened model (CP-SAT completes it as a hint)."""
    inst, mv, cuts, _grid, sol = sz_case
    before = snapshot(cuts)
    after = snapshot(cuts)
    k = sol.chosen[0]
    after.add_linear({k: 1.0}, 0.5, "test: this connection forbidden")
    tight = LinearGrid(inst, mv, after)
    assert not PlanModel(tight).hint(sol)  # the plan no longer fits
    who = touched(tight, before, after, sol)
    d = inst.options[k].demand
    assert who == {d}
    fixed = repair(tight, sol, who, time_limit_s=10.0, workers=1)
    assert fixed is not None
    assert k not in fixed.chosen
    assert {inst.options[j].demand for j in fixed.chosen} == {
        inst.options[j].demand for j in sol.chosen
    }
    assert set(sol.chosen) - {k} <= set(fixed.chosen)
    assert PlanModel(tight).hint(fixed)


def test_repair_in_the_rounds_model_whose_hint_failed_is_the_same_repair(sz_case):
    """The optimal round hands the repair the model it made (its hint, the broken plan, did not
    fit): the repair clears that hint and gives the plan a model of its own gives, a plan of
    the tightened model that no longer uses the forbidden connection."""
    inst, mv, cuts, _grid, sol = sz_case
    before, after = snapshot(cuts), snapshot(cuts)
    k = sol.chosen[0]
    after.add_linear({k: 1.0}, 0.5, "test: this connection forbidden")
    tight = LinearGrid(inst, mv, after)
    made = PlanModel(tight)
    assert not made.hint(sol)  # the round's model, with the broken plan's choices as its hint
    who = touched(tight, before, after, sol)
    own = repair(tight, sol, who, time_limit_s=10.0, workers=1)
    reused = repair(tight, sol, who, time_limit_s=10.0, workers=1, model=made)
    assert own is not None and reused is not None
    assert k not in reused.chosen and PlanModel(tight).hint(reused)
    assert reused.cost_cny == pytest.approx(own.cost_cny)
    assert sum(reused.served) == sum(sol.served)
    # with no time for CP-SAT, the greedy repair made in that model stands
    again = PlanModel(tight)
    assert not again.hint(sol)
    quick = repair(tight, sol, who, time_limit_s=1e-6, workers=1, model=again)
    assert quick is not None and k not in quick.chosen and PlanModel(tight).hint(quick)


def test_repair_declines_the_whole_plan(sz_case):
    _inst, _mv, _cuts, grid, sol = sz_case
    everyone = {grid.inst.options[k].demand for k in sol.chosen}
    assert repair(grid, sol, everyone, time_limit_s=5.0, workers=1) is None


def test_a_repair_with_no_demand_touched_builds_the_relief_of_the_new_cut(sz_case):
    """A new cut that a measure lifts touches no demand (test above): the repair keeps every
    connection and chooses the measures again, so the plan comes back with the cut's relief
    built (a review found the empty set taken for "nothing to repair": the round then started
    from the greedy plan)."""
    inst, mv, cuts, _grid, sol = sz_case
    after = snapshot(cuts)
    from lvplan.planning.candidates import element_key
    from lvplan.planning.measures import MeasureKind

    held = {element_key(inst.upgrades[u]) for u in sol.upgrades}
    relief = next(
        u
        for u, up in enumerate(inst.upgrades)
        if element_key(up) not in held and up.kind == MeasureKind.LV_CABLE_PARALLEL
    )
    after.add_linear({k: 1.0 for k in sol.chosen}, 0.5, "a 10 kV section", relief=(relief,))
    tight = LinearGrid(inst, mv, after)
    assert touched(tight, snapshot(cuts), after, sol) == set()
    got = repair(tight, sol, set(), time_limit_s=5.0, workers=1)
    assert got is not None and sorted(got.chosen) == sorted(sol.chosen)
    assert relief in got.upgrades and got.served == sol.served


def test_the_greedy_repair_alone_keeps_the_plan_and_fits(sz_case):
    """The repair's first step (``Greedy.complete``), which stands when CP-SAT finds nothing in
    its time: every held option as it was, the touched demand connected elsewhere, a plan of
    the tightened model; and None when a held option no longer fits."""
    from lvplan.planning.greedy import Greedy

    inst, mv, cuts, _grid, sol = sz_case
    after = snapshot(cuts)
    k = sol.chosen[0]
    after.add_linear({k: 1.0}, 0.5, "test: this connection forbidden")
    tight = LinearGrid(inst, mv, after)
    d = inst.options[k].demand
    held = [j for j in sol.chosen if j != k]
    got = Greedy(tight, keep=tuple(sol.upgrades)).complete(held, [d])
    assert got is not None
    assert set(held) <= set(got.chosen) and k not in got.chosen
    assert sum(got.served) == sum(sol.served)
    assert PlanModel(tight).hint(got)
    # held as it is, the forbidden connection does not fit: no plan
    assert Greedy(tight, keep=tuple(sol.upgrades)).complete(sol.chosen, []) is None


def test_repair_returns_the_greedy_repair_when_cp_sat_has_no_time(sz_case):
    inst, mv, cuts, _grid, sol = sz_case
    before, after = snapshot(cuts), snapshot(cuts)
    k = sol.chosen[0]
    after.add_linear({k: 1.0}, 0.5, "test: this connection forbidden")
    tight = LinearGrid(inst, mv, after)
    who = touched(tight, before, after, sol)
    fixed = repair(tight, sol, who, time_limit_s=1e-6, workers=1)
    assert fixed is not None and k not in fixed.chosen
    assert PlanModel(tight).hint(fixed)


def test_a_most_kw_stage_that_serves_no_more_keeps_the_hints_demands_and_plan(sz_case):
    """One demand can no longer be served (a cut forbids each of its options); the hint serves
    every other. The most-kW stage finds no more kW, so the cost stage serves exactly the
    hint's demands, starts from the hint, and never returns a dearer plan than it (with no
    time for a search, the hint itself); its bound is for those demands."""
    inst, mv, cuts, _grid, sol = sz_case
    after = snapshot(cuts)
    k = sol.chosen[0]
    d = inst.options[k].demand
    mine = [j for j, o in enumerate(inst.options) if o.demand == d]
    after.add_linear(dict.fromkeys(mine, 1.0), 0.5, "test: this demand forbidden")
    tight = LinearGrid(inst, mv, after)
    rest = Solution.of(
        inst, [j for j in sol.chosen if j != k], list(sol.upgrades), list(sol.sites), "feasible"
    )
    mdl = PlanModel(tight)
    assert mdl.hint(rest)
    out = mdl.solve(time_limit_s=4.0, workers=1)
    assert out.status in ("optimal", "feasible")
    assert out.served == rest.served
    assert out.cost_cny <= rest.cost_cny + 1.0
    assert out.bound <= out.cost_cny + 1.0


def test_a_plan_patched_greedily_moves_only_the_demands_a_new_cut_bears_on(sz_case):
    """The optimiser's quick repair (optimal_rounds._patched): a tightened line moves the
    demands whose connection crosses it, greedily, every other connection and measure kept;
    with nothing new, nothing to patch."""
    from lvplan.planning.optimal_rounds import _patched

    inst, _mv, cuts, grid, sol = sz_case
    before = snapshot(cuts)
    area_opts = [k for k in sol.chosen if grid.options[k].area is not None and grid.options[k].path]
    k = area_opts[0]
    line = grid.options[k].path[-1]
    after = snapshot(cuts)
    after.line_kw[line] = 1e6  # (the line has no room left at all)
    tight = LinearGrid(inst, _mv, after)
    moved = touched(tight, before, after, sol)
    assert moved
    got, said = _patched(tight, before, after, sol)
    assert got is not None and got.served == sol.served
    assert said == moved  # (the demands the search after it sets free first)
    kept = [j for j in sol.chosen if inst.options[j].demand not in moved]
    assert set(kept) <= set(got.chosen)
    assert set(sol.upgrades) <= set(got.upgrades)
    for j in got.chosen:  # the moved demands no longer cross the line
        if inst.options[j].demand in moved:
            assert line not in tight.options[j].path
    assert _patched(grid, before, snapshot(before), sol) == (None, set())
    assert _patched(grid, None, after, sol) == (None, set())


def test_the_first_alternative_that_passes_is_the_cheapest_in_time(sz_case):
    """optimal_rounds._first_passing: cheapest first, none as dear as the greedy plan, each
    checked while one more check ends in time."""
    import dataclasses
    import time

    from lvplan.planning.optimal_rounds import _first_passing

    inst, _mv, _cuts, _grid, sol = sz_case
    dear = dataclasses.replace(sol, cost_cny=sol.cost_cny + 300.0)
    mid = dataclasses.replace(sol, cost_cny=sol.cost_cny + 200.0)
    cheap = dataclasses.replace(sol, cost_cny=sol.cost_cny + 100.0)
    greedy = dataclasses.replace(sol, cost_cny=sol.cost_cny + 250.0)
    seen = []

    def check(a):
        seen.append(a.cost_cny)
        return "ev", ([] if a is mid else ["broken"])

    far = time.perf_counter() + 60
    got, ev, tried = _first_passing(inst, [dear, mid, cheap], greedy, check, far, 0.1)
    assert got is mid and ev == "ev"
    assert seen == [cheap.cost_cny, mid.cost_cny]  # (dear is not better than the greedy plan)
    assert [(a.cost_cny, n) for a, n in tried] == [(cheap.cost_cny, 1), (mid.cost_cny, 0)]
    seen.clear()
    got, _ev, tried = _first_passing(inst, [mid, cheap], greedy, check, time.perf_counter(), 0.1)
    assert got is None and tried == [] and seen == []  # (no time for a check)
    # one that serves less comes after every one that serves more, however cheap (the review)
    fewer = dataclasses.replace(sol, chosen=sol.chosen[1:], cost_cny=sol.cost_cny - 1e6)
    seen.clear()
    got, _ev, _tried = _first_passing(inst, [fewer, mid], fewer, check, far, 0.1)
    assert got is mid and seen == [mid.cost_cny]


def test_a_round_that_broke_a_limit_is_patched_and_the_search_frees_what_the_patch_moved(
    monkeypatch, cn
):
    """The optimal rounds' wiring of the quick repair: the first optimal round's plan breaks a
    transformer's limit in AC (here made to, by 0.5 % on its most loaded transformer); the next
    round is the greedy patch (``_patched``), which passes its own AC check and becomes the
    plan; the neighbourhood search after it (``polish``) is given the demands the patch moved
    as its focus, once. The plan returned passes the real AC check."""
    from lvplan.kinds import BindingKind
    from lvplan.planning import optimal_rounds
    from lvplan.planning import plan as plan_mod
    from lvplan.planning import rounds as rounds_mod
    from lvplan.planning.parts import Part
    from lvplan.planning.verify import Broken, check_plan

    made: dict[str, object] = {}
    real_check, real_patched = rounds_mod.check_plan, optimal_rounds._patched
    real_polish = optimal_rounds.polish
    real_split = plan_mod.split
    fields = ("demands", "options", "feeders")

    def check(network, inst, sol, base):
        ev, broken = real_check(network, inst, sol, base)
        if "broke" in made or broken or not sol.bounds:  # (not the greedy plan: no bounds)
            return ev, broken
        # the plan's most loaded transformer, 0.5 % over its limit
        m = ev.margins()
        trafos = [
            p for p in range(len(m)) if ev.limits.margin_label(p)[0] == BindingKind.TRANSFORMER
        ]
        p = min(trafos, key=lambda q: m[q])
        kind, el, side = ev.limits.margin_label(p)
        made["broke"] = str(el)
        return ev, [Broken(kind, str(el), "", side, -0.005, base.get((el, side)))]

    def patched(grid, before, after, sol):
        got, moved = real_patched(grid, before, after, sol)
        made.setdefault("moved", []).append(set(moved) if got is not None else None)
        return got, moved

    def polish(*args, **kw):
        made.setdefault("focus", []).append(kw.get("focus"))
        return real_polish(*args, **kw)

    def one_part(network, inst, **kw):  # (the patch is for a plan of the whole grid)
        ps = real_split(network, inst, **kw)
        return [Part(*(tuple(sorted({x for p in ps for x in getattr(p, f)})) for f in fields))]

    monkeypatch.setattr(rounds_mod, "check_plan", check)
    monkeypatch.setattr(optimal_rounds, "_patched", patched)
    monkeypatch.setattr(optimal_rounds, "polish", polish)
    monkeypatch.setattr(plan_mod, "split", one_part)
    monkeypatch.setattr(optimal_rounds, "GO_ON_S", 1e9)  # (every round after a pass is a search)
    net = lvplan.load_network("sz-futian")
    p = plan_mod.plan(net, CSV, criteria=cn, time_limit_s=30, workers=2, by_island=False)
    assert "broke" in made
    moved = made["moved"][0]
    assert moved, made  # the patch moved the demands on the transformer it broke
    assert made["focus"][0] == moved  # ... and the search after it freed them first
    assert all(f is None for f in made["focus"][1:])  # (once)
    assert any("patched greedily" in " ".join(r.notes) for r in p.history), [
        (r.method, r.status, r.notes) for r in p.history
    ]
    # the plan returned passes the real AC check
    _ev, broken = check_plan(net, p.instance, p.solution, plan_mod.base_margin_map(net, cn))
    assert broken == []
