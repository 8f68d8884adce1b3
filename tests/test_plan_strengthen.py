"""The residual-capacity inequalities (planning/strengthen.py) and the HiGHS threads that use
them (planning/mipbound.py): every inequality separated holds at every plan, it asks the whole
upgrade for connections held whole, and on sz-futian's 30 demands it raises the relaxation
towards the optimum without passing it."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
from ortools.math_opt.python import mathopt
from test_plan_mipbound import _cost_model, _values

import lvplan
from lvplan.planning.mipbound import MipBound, Relaxation, _add, to_mip
from lvplan.planning.strengthen import (
    CapacityRow,
    capacity_row,
    forced_upgrades,
    rebuild,
    separate,
    site_covers,
)

FUTIAN_CSV = Path(__file__).resolve().parents[1] / "studies/demand/sz-futian-30.csv"


def test_a_held_connection_asks_the_whole_upgrade():
    """Two demands of 8 units on a transformer with room 10, an upgrade to 50: connected whole,
    the relaxation builds 6/40 = 0.15 of the upgrade. The inequality with S = both demands asks
    16 <= 10 + 6 y: all of it."""
    row = capacity_row("trafo", [(0, 0, 8), (1, 1, 8)], 10, [([2], 50)])
    assert row is not None
    found = separate([row], [1.0, 1.0, 0.15])
    assert len(found) == 1
    ineq = found[0]
    assert sorted(ineq.lhs) == [(0, 8), (1, 8)]
    assert ineq.rhs == 10 and ineq.ups == [(2, 6)]
    assert ineq.violation([1.0, 1.0, 0.15]) == pytest.approx(16 - 10 - 6 * 0.15)
    assert ineq.violation([1.0, 1.0, 1.0]) == pytest.approx(0.0)
    # nothing to cut where the upgrade is paid in full, or where the load fits as it stands
    assert separate([row], [1.0, 1.0, 1.0]) == []
    assert separate([row], [1.0, 0.0, 0.0]) == []


def test_a_row_that_cannot_be_valid_or_useful_is_not_made():
    assert capacity_row("cut", [(0, 0, 5), (1, 1, -2)], 3, [([2], None)]) is None  # negative
    assert capacity_row("line", [(0, 0, 5)], 3, []) is None  # nothing to build
    row = capacity_row("trafo", [(0, 0, 5)], -4, [([1], 9)])  # over its limit already
    assert row is not None and row.base == 0


def _plans(row: CapacityRow, n_vars: int):
    """Every integer point of one capacity: each demand one of its options or none, at most one
    upgrade (a cut's relief: any of them), within the capacity as built."""
    demands = sorted(row.terms)
    # what may be built: nothing, one rung of a ladder, or of a cut's relief any one of its
    # upgrades (the tightest point) or all of them
    builds: list[tuple[list[int], int | None]] = [([], 0)]
    for js, cap in row.ups:
        builds.append((js, cap))
        if cap is None and len(js) > 1:
            builds += [([j], None) for j in js]
    for pick in itertools.product(*[[None, *row.terms[i]] for i in demands]):
        for js, cap in builds:
            vals = [0.0] * n_vars
            load = 0
            for p in pick:
                if p is not None:
                    vals[p[0]] = 1.0
                    load += p[1]
            room = row.base
            for j in js:
                vals[j] = 1.0
            if js:
                room = max(room, cap) if cap is not None else load
            if load <= room:
                yield vals


def _random_capacity(rng: random.Random, n_dem: int, *, most_relief: int):
    """A random capacity's terms: each demand one or two options of different loads (up to 12
    units), then either a cut's relief (1 to ``most_relief`` upgrades, any of which lifts it;
    three times in ten) or a ladder of 1-3 upgrades (room up to 40). (options, ups, variables)"""
    options, j = [], 0
    for i in range(n_dem):
        a = rng.randint(1, 12)
        for _k in range(rng.randint(1, 2)):
            options.append((i, j, a if rng.random() < 0.5 else rng.randint(1, a)))
            j += 1
    if rng.random() < 0.3:  # an AC cut: any relief lifts it
        ups = [([j + r for r in range(rng.randint(1, most_relief))], None)]
    else:
        ups = [([j + r], rng.randint(1, 40)) for r in range(rng.randint(1, 3))]
    return options, ups, j + sum(len(js) for js, _ in ups)


def test_every_separated_inequality_holds_at_every_plan():
    """Random capacities (options of different loads, a ladder of upgrades or a cut's relief,
    room from none to most), random fractional points: each inequality separated holds at
    every integer point of its capacity. Some points must be cut (else the test shows
    nothing)."""
    rng = random.Random(11)
    cut_any = 0
    for _ in range(300):
        options, ups, n_vars = _random_capacity(rng, rng.randint(1, 4), most_relief=2)
        row = capacity_row("r", options, rng.randint(0, 15), ups)
        if row is None:
            continue
        point = [rng.random() for _ in range(n_vars)]
        found = separate([row], point)
        for ineq in found:
            assert ineq.violation(point) > 0
            cut_any += 1
            for vals in _plans(row, n_vars):
                assert ineq.violation(vals) <= 1e-9, (row, ineq, vals)
    assert cut_any > 30


def test_strengthening_raises_sz_futians_relaxation_without_passing_the_optimum(tmp_path, cn):
    """sz-futian's 30 demands: the relaxation 5.23 M CNY, with the rounds of inequalities
    5.65 M, the optimum 7.42 M (a fifth of the gap closed; before the sites between two
    clusters, candidates._merged_sites, the optimum was 9.64 M, the relaxation 9.14 M and three
    quarters of that gap closed: the relaxation shares a site between the demands of two, as it
    shares an upgrade); the bounding thread with the strengthened relaxation proves the
    optimum."""
    net = lvplan.load_network("sz-futian")
    mdl = _cost_model(net, FUTIAN_CSV.read_text(), tmp_path, cn)
    _vals, opt = _values(mdl.m)
    mo = to_mip(mdl.m.proto)
    assert mo is not None
    xs = list(mo.variables())
    for v in xs:
        v.integer = False
    values = []
    for _ in range(4):
        res = mathopt.solve(mo, mathopt.SolverType.HIGHS)
        values.append(res.objective_value())
        found = separate(mdl.capacity_rows, list(res.variable_values(xs)))
        if not found:
            break
        _add(mo, found)
    assert values == sorted(values)
    assert values[0] < 0.96 * opt  # the relaxation as written: 5.23 M
    assert values[0] + 0.15 * (opt - values[0]) < values[-1] <= opt + 1e-6
    rel = Relaxation(mdl.capacity_rows)
    mb = MipBound(mdl.m.clone().proto, 60.0, relaxation=rel).start()
    assert opt * (1 - 2e-4) <= mb.result(wait_s=30.0) <= opt  # (HiGHS's gap tolerance)
    assert rel.rounds >= 1 and rel.value is not None and rel.value > values[0]


def test_the_neighbourhood_from_an_incumbent_returns_only_a_cheaper_plan(tmp_path, cn):
    """Started from the optimum, the search holds what it and the relaxation agree on and finds
    nothing cheaper (so returns no plan); started from the best plan that also builds a
    needless upgrade (dearer), it returns a cheaper plan, never below the optimum."""
    from ortools.sat.python import cp_model

    net = lvplan.load_network("sz-futian")
    mdl = _cost_model(net, FUTIAN_CSV.read_text(), tmp_path, cn)
    vals, opt = _values(mdl.m)
    dive = [v.index for v in (*mdl.x.values(), *mdl.z.values())]
    proto = mdl.m.clone().proto
    mb = MipBound(proto, 30.0, dive_vars=dive, incumbent=vals).start()
    mb.result()
    assert mb.dive_values is None and mb.dive_status.startswith(("optimal", "feasible"))
    spare = next(u for u, v in sorted(mdl.y.items()) if not vals[v.index])
    dearer = mdl.m.clone()
    dearer.add(mdl.y[spare] == 1)
    s = cp_model.CpSolver()
    s.parameters.num_workers = 1
    assert s.solve(dearer) == cp_model.OPTIMAL
    start = [s.value(dearer.get_int_var_from_proto_index(i)) for i in range(len(vals))]
    assert s.objective_value > opt + 1000.0
    mb = MipBound(proto, 30.0, dive_vars=dive, incumbent=start).start()
    mb.result()
    assert mb.dive_objective is not None, mb.dive_status
    assert opt - 1e-6 <= mb.dive_objective < s.objective_value - 1000.0


def test_a_groups_bound_is_the_strengthened_relaxation_alone(tmp_path, cn):
    """``lp_only`` (a city group's worker): no MIP solve, the bound is the relaxation after its
    rounds of inequalities: above the relaxation as written, at most the optimum."""
    net = lvplan.load_network("sz-futian")
    mdl = _cost_model(net, FUTIAN_CSV.read_text(), tmp_path, cn)
    _vals, opt = _values(mdl.m)
    rel = Relaxation(mdl.capacity_rows)
    mb = MipBound(mdl.m.clone().proto, 60.0, relaxation=rel, lp_only=True).start()
    bound = mb.result()
    assert mb.status == "relaxation only"
    assert rel.rounds >= 1 and rel.value is not None
    assert rel.value * (1 - 2e-6) <= bound <= rel.value  # (less the solver's tolerance)
    assert 5.4e6 < bound <= opt  # (as written 5.23 M, optimum 7.42 M)
    assert mb.seconds < 60.0  # (its deadline: no MIP solve after the rounds)


def _dearer_start(tmp_path, cn):
    """sz-futian's model, its optimum, the diving thread's variables, and a start for it: the
    best plan that also builds a needless upgrade (its values and cost)."""
    net = lvplan.load_network("sz-futian")
    mdl = _cost_model(net, FUTIAN_CSV.read_text(), tmp_path, cn)
    vals, opt = _values(mdl.m)
    dive = [v.index for v in (*mdl.x.values(), *mdl.z.values())]
    spare = next(u for u, v in sorted(mdl.y.items()) if not vals[v.index])
    start_model = mdl.m.clone()
    start_model.add(mdl.y[spare] == 1)
    start, start_cost = _values(start_model)
    return mdl, opt, dive, start, start_cost


def test_a_neighbourhood_searched_whole_is_searched_again_around_the_strengthened_relaxation(
    tmp_path, cn
):
    """sz-futian, both threads as a plan runs them: the first neighbourhood is searched whole
    long before the deadline, so the diving thread searches again once the bounding thread has
    strengthened the relaxation; its plan is never below the optimum, and the bound thread's
    bound never above it."""
    mdl, opt, dive, start, start_cost = _dearer_start(tmp_path, cn)
    proto = mdl.m.clone().proto
    rel = Relaxation(mdl.capacity_rows)
    diver = MipBound(proto, 40.0, dive_vars=dive, relaxation=rel, incumbent=start).start()
    bound = MipBound(proto, 40.0, relaxation=rel).start()
    assert opt * (1 - 2e-4) <= bound.result() <= opt
    diver.result()
    assert "; strengthened: " in diver.dive_status, diver.dive_status
    assert diver.dive_objective is not None
    assert opt - 1e-6 <= diver.dive_objective < start_cost


def test_a_carried_inequality_is_made_again_from_the_new_rows_and_holds_there():
    """The cut pool carries (row name, demand set) from one verification round's model to the
    next (mipbound.CutPool). Made again from the same row, an inequality is the one separated;
    made from the row as a later round tightens it (less room, an upgrade banned, an option
    gone, the variables renumbered) it is that row's own: it holds at every plan of the new row
    and still cuts the old fractional point. A row that is gone, or demands that can no longer
    load it past its room, give nothing."""
    row = capacity_row("trafo 7", [(0, 0, 8), (1, 1, 8), (2, 2, 5)], 10, [([3], 50), ([4], 30)])
    assert row is not None
    point = [1.0, 1.0, 0.0, 0.1, 0.05]
    (found,) = separate([row], point)
    assert found.key == ("trafo 7", (0, 1))
    (again,) = rebuild([row], [found.key])
    assert (sorted(again.lhs), again.rhs, sorted(again.ups)) == (
        sorted(found.lhs),
        found.rhs,
        sorted(found.ups),
    )
    # the next round: room 4 (an AC cut), the 30-unit upgrade banned, variables renumbered
    tight = capacity_row("trafo 7", [(0, 5, 8), (1, 6, 8), (2, 7, 5)], 4, [([8], 50)])
    assert tight is not None
    (made,) = rebuild([tight], [found.key])
    assert sorted(made.lhs) == [(5, 8), (6, 8)]
    assert made.rhs == 4 and made.ups == [(8, 12)]  # min(50 - 4, 16 - 4)
    for vals in _plans(tight, 9):
        assert made.violation(vals) <= 1e-9
    assert made.violation([0.0] * 5 + [1.0, 1.0, 0.0, 0.1]) > 0
    # demand 1 no longer has an option there: 8 units cannot pass room 10 -> nothing
    fewer = capacity_row("trafo 7", [(0, 0, 8), (2, 2, 5)], 10, [([3], 50)])
    assert fewer is not None and rebuild([fewer], [found.key]) == []
    assert rebuild([tight], [("trafo 8", (0, 1))]) == []


def test_carried_inequalities_hold_at_every_plan_of_random_later_rows():
    """Random rows (demands with one or two options of different loads, a ladder of upgrades or
    a cut's relief) and points: each inequality separated, made again from a random change of
    its row (room lowered or raised, upgrades dropped, options lost, loads changed), holds at
    every plan of the new row."""
    rng = random.Random(5)
    checked = 0
    for _ in range(300):
        options, ups, n_vars = _random_capacity(rng, rng.randint(2, 4), most_relief=3)
        relief = ups[0][1] is None
        row = capacity_row("r", options, rng.randint(0, 10), ups)
        if row is None:
            continue
        for ineq in separate([row], [rng.random() for _ in range(n_vars)]):
            kept = [
                (i, jj, max(0, c + rng.randint(-2, 2)))
                for i, jj, c in options
                if rng.random() < 0.8
            ]
            if relief:
                later_ups = [([jj for jj in ups[0][0] if rng.random() < 0.7], None)]
                later_ups = [u for u in later_ups if u[0]]
            else:
                later_ups = [u for u in ups if rng.random() < 0.7]
            later = capacity_row("r", kept, max(0, row.base + rng.randint(-5, 3)), later_ups)
            if later is None:
                continue
            for made in rebuild([later], [ineq.key]):
                checked += 1
                for vals in _plans(later, n_vars):
                    assert made.violation(vals) <= 1e-9, (later, made, vals)
    assert checked > 50


def test_the_pool_carries_a_models_rounds_to_the_next():
    """CutPool: keys once each (a key found again is renewed), the newest kept past its
    size."""
    from lvplan.planning.mipbound import CutPool
    from lvplan.planning.strengthen import Inequality

    pool = CutPool(most=3)
    cuts = [Inequality([(0, 1)], 0, [], f"line {n}", (n,)) for n in range(5)]
    pool.add(cuts[:2])
    pool.add(cuts[:1])  # found again: renewed, not doubled
    assert pool.keys() == [("line 1", (1,)), ("line 0", (0,))]
    pool.add(cuts[2:])
    assert len(pool) == 3
    assert pool.keys() == [("line 2", (2,)), ("line 3", (3,)), ("line 4", (4,))]


def test_a_later_models_relaxation_starts_from_the_pool(tmp_path, cn):
    """sz-futian: the bounding thread's rounds put their inequalities in the pool; a second
    model's thread (the same rows) makes them all again before its first relaxation, which
    then starts at least where the first one's rounds ended, and never above the optimum."""
    from lvplan.planning.mipbound import CutPool

    net = lvplan.load_network("sz-futian")
    mdl = _cost_model(net, FUTIAN_CSV.read_text(), tmp_path, cn)
    _vals, opt = _values(mdl.m)
    pool = CutPool()
    first = Relaxation(mdl.capacity_rows, pool)
    MipBound(mdl.m.clone().proto, 60.0, relaxation=first, lp_only=True).start().result()
    assert first.rounds >= 1 and first.carried == 0 and len(pool) == len(first.cuts) > 0
    second = Relaxation(mdl.capacity_rows, pool)
    mb = MipBound(mdl.m.clone().proto, 60.0, relaxation=second, lp_only=True).start()
    bound = mb.result()
    assert second.carried == len(first.cuts)
    assert second.value is not None and first.value is not None
    assert second.value >= first.value - 1e-6 * abs(first.value)
    assert bound is not None and bound <= opt + 1e-6


def test_site_covers_count_the_sites_a_cluster_needs():
    """Three demands of 40 at sites {1, 2} and one of 30 at {2, 3}, caps 70 / 60 / 100: the
    cluster {1, 2} holds 120 in its two sites only (2); the union {1, 2, 3} holds 150 in two
    of its largest (100 + 70); {2, 3} alone (30) needs one, which is no cover."""
    only = {0: frozenset({1, 2}), 1: frozenset({1, 2}), 2: frozenset({1, 2}), 3: frozenset({2, 3})}
    units = {0: 40, 1: 40, 2: 40, 3: 30}
    caps = {1: 70, 2: 60, 3: 100}
    assert site_covers(only, units, caps) == [((1, 2), (1, 1), 2), ((1, 2, 3), (1, 1, 1), 2)]
    # a cluster that its sites cannot hold is left to the model's own rows ({1, 2}: 180 in
    # 130); the union's 210 takes all three
    assert site_covers(only, {0: 60, 1: 60, 2: 60, 3: 30}, caps) == [((1, 2, 3), (1, 1, 1), 3)]
    assert site_covers({0: frozenset({1})}, {0: 40}, {1: 50}) == []


def test_a_site_cover_counts_a_site_of_two_units_twice():
    """A place offered with one unit (60) and with two (120, ``Site.units``), for 100 of load:
    the largest site alone holds it, so the count of sites gave no cover, and the relaxation
    built the two-unit site at 0.83. Weighted by units, ``z1 + 2 z2 >= 2``: the two-unit site
    whole (or, with a third site, the single and that)."""
    only = {0: frozenset({1, 2}), 1: frozenset({1, 2})}
    assert site_covers(only, {0: 50, 1: 50}, {1: 60, 2: 120}) == [((1, 2), (1, 2), 2)]
    assert 2 * (100 / 120) < 2  # (the relaxation's point, cut)
    # a site whose cuts took some of its room: the weights round up (valid, weaker)
    assert site_covers(only, {0: 50, 1: 50}, {1: 55, 2: 120}) == [((1, 2), (1, 3), 2)]


def test_every_site_cover_holds_at_every_plan_that_serves_its_demands():
    """Random clusters (demands at one to three of five sites, loads 5-60, caps 40-100): every
    set of sites built that can hold its demands (each demand whole at one of its sites, by
    brute force) meets every cover; and some covers cut the relaxation's point (one site
    filled, the rest in fractions), or the test shows nothing."""
    rng = random.Random(5)
    cutting = 0
    for _ in range(150):
        n_sites = 5
        caps = {s: rng.randint(40, 100) for s in range(n_sites)}
        only = {
            d: frozenset(rng.sample(range(n_sites), rng.randint(1, 3)))
            for d in range(rng.randint(2, 5))
        }
        units = {d: rng.randint(5, 60) for d in only}
        covers = site_covers(only, units, caps)
        for built in itertools.product((0, 1), repeat=n_sites):
            if not _packs(only, units, caps, built):
                continue
            for sites, weights, least in covers:
                got = sum(w * built[s] for s, w in zip(sites, weights, strict=True))
                assert got >= least, (only, units, caps, built)
        # the relaxation's cheapest point for a cover: each site at its share of the load
        for sites, weights, least in covers:
            load = sum(units[d] for d, t in only.items() if t <= set(sites))
            best = max(w / caps[s] for s, w in zip(sites, weights, strict=True))
            if load * best < least - 1e-9:
                cutting += 1
    assert cutting > 10


def _packs(only, units, caps, built) -> bool:
    """Whether the sites ``built`` hold every demand whole at one of its sites."""
    demands = list(only)

    def place(i: int, room: dict[int, int]) -> bool:
        if i == len(demands):
            return True
        d = demands[i]
        for s in only[d]:
            if built[s] and room[s] >= units[d]:
                room[s] -= units[d]
                if place(i + 1, room):
                    return True
                room[s] += units[d]
        return False

    return place(0, {s: caps[s] for s in caps})


def test_every_forced_upgrade_holds_at_every_plan_that_serves_its_demands():
    """Random capacities; some demands must be served, some of them with an option elsewhere
    (off the row): at every integer point of the row that serves them, some upgrade each forced
    row names is built. The rows found must be many, and some must leave out a rung too small
    for the least load (or the test shows nothing)."""
    rng = random.Random(7)
    found = narrower = 0
    for _ in range(400):
        options, ups, n_vars = _random_capacity(rng, rng.randint(1, 4), most_relief=2)
        row = capacity_row("r", options, rng.randint(0, 20), ups)
        if row is None:
            continue
        served = [i for i in row.terms if rng.random() < 0.7]
        # a demand with an option off the row (a variable the row does not hold) may take
        # it: its load here may be 0
        options = {
            i: frozenset(j for j, _ in row.terms[i])
            | ({10_000 + i} if rng.random() < 0.3 else set())
            for i in row.terms
        }
        forced = forced_upgrades([row], served, options)
        if not forced:
            continue
        ((name, holds),) = forced
        assert name == "r"
        found += 1
        narrower += len(holds) < sum(len(js) for js, _ in row.ups)
        for vals in _plans(row, n_vars):
            if any(
                10_000 + i not in options[i] and not any(vals[j] for j, _ in row.terms[i])
                for i in served
            ):
                continue  # a demand that must be served is not
            assert any(vals[j] for j in holds), (row, served, options, vals)
    assert found > 40 and narrower > 5
    # an option counted twice on a row is still one option: a demand with one off the row
    # never counts, however many entries its others make
    row = CapacityRow("r", {0: [(0, 5), (0, 5)]}, 3, [([1], 10)])
    assert forced_upgrades([row], [0], {0: frozenset({0, 9})}) == []
    assert forced_upgrades([row], [0], {0: frozenset({0})}) == [("r", [1])]


def test_the_first_plans_ac_check_tightens_the_rows_of_the_next_search(tmp_path, cn):
    """sz-futian, both threads as a plan runs them, with a probe in place of the AC check that
    finds the first plan's most loaded capacity one unit short: the probe is called once, with
    the first plan; the plan that stands meets the tightened row (taken even when dearer than
    the first, which broke it), and is never below the optimum."""
    mdl, opt, dive, start, start_cost = _dearer_start(tmp_path, cn)
    proto = mdl.m.clone().proto
    rows = {ci: proto.constraints[ci].linear for ci in mdl.capacity_cts.values()}

    def activity(ci: int, values: list[int]) -> int:
        lin = rows[ci]
        return sum(c * values[v] for v, c in zip(lin.vars, lin.coeffs, strict=True))

    calls: list[tuple[int, int, int]] = []

    def probe(values: list[int]) -> dict[int, int]:
        ci = max(rows, key=lambda i: activity(i, values))
        room = int(rows[ci].domain[1])
        obj = proto.objective
        cost = obj.offset + sum(c * values[v] for v, c in zip(obj.vars, obj.coeffs, strict=True))
        calls.append((ci, activity(ci, values), cost))
        return {ci: room - activity(ci, values) + 1}

    rel = Relaxation(mdl.capacity_rows)
    diver = MipBound(
        proto, 40.0, dive_vars=dive, relaxation=rel, incumbent=start, probe=probe
    ).start()
    bound = MipBound(proto, 40.0, relaxation=rel).start()
    assert bound.result() <= opt  # (the bound thread's model is not tightened)
    diver.result()
    assert len(calls) == 1 and diver.probe_status == "1 capacities tightened"
    ci, was, first_cost = calls[0]
    assert was > 0 and opt - 1e-6 <= first_cost < start_cost  # (the first search's plan)
    assert diver.dive_values is not None and diver.dive_objective is not None, diver.dive_status
    assert activity(ci, diver.dive_values) <= was - 1
    assert opt - 1e-6 <= diver.dive_objective
