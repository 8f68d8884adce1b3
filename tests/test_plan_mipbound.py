"""The MIP bound beside CP-SAT (planning/mipbound.py): the CP-SAT model written as a MIP must be
the same problem (same optimum), its bound must never pass a plan, and the plan reports it.

Exactness is shown three ways: random small CP-SAT models with every constraint form the plan
model uses (enforced linear constraints with negated literals, implications, clauses, at most
one, exactly one, a max of booleans), each solved to optimality by CP-SAT and by HiGHS on the
written MIP; the hand instance of test_plan.py; and sz-futian's 30 bundled demands.
"""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any

import pytest
from ortools.math_opt.python import mathopt
from ortools.sat.python import cp_model
from test_plan import HAND_CSV, OPTIMUM_CNY, _two_transformers

import lvplan
from lvplan.model.network import Network
from lvplan.planning.candidates import build_instance, prune_upgrades
from lvplan.planning.demand import read_demand
from lvplan.planning.linear import Cuts, LinearGrid, load_units, mv_response
from lvplan.planning.measures import load_measures
from lvplan.planning.mipbound import MipBound, _message, to_mip
from lvplan.planning.model import PlanModel


def _highs_optimum(proto) -> float:
    mo = to_mip(proto)
    assert mo is not None
    res = mathopt.solve(mo, mathopt.SolverType.HIGHS)
    assert res.termination.reason == mathopt.TerminationReason.OPTIMAL
    return res.objective_value()


def _cp_optimum(m: cp_model.CpModel) -> float | None:
    s = cp_model.CpSolver()
    s.parameters.num_workers = 1
    st = s.solve(m)
    if st == cp_model.INFEASIBLE:
        return None
    assert st == cp_model.OPTIMAL
    return s.objective_value


def _random_model(rng: random.Random) -> cp_model.CpModel:
    m = cp_model.CpModel()
    b = [m.new_bool_var(f"b{i}") for i in range(8)]
    v = [m.new_int_var(rng.randint(-5, 0), rng.randint(3, 30), f"v{i}") for i in range(4)]
    for _ in range(6):  # enforced linear constraints, some by negated literals, some two-sided
        terms = [rng.randint(-4, 6) * x for x in rng.sample(v + b, 3)]
        lo, hi = rng.randint(-10, 5), rng.randint(5, 40)
        ct = m.add_linear_constraint(sum(terms), lo, hi)
        lits = [rng.choice(b) for _ in range(rng.randint(0, 2))]
        ct.only_enforce_if([x if rng.random() < 0.5 else x.Not() for x in lits])
    m.add(3 * b[6].Not() + 2 * b[7] - v[0] <= rng.randint(0, 6))  # a negation inside a sum
    m.add_implication(b[0], b[1])
    m.add_bool_or([b[2], b[3].Not(), b[4]])
    m.add_at_most_one(b[5:8])
    m.add_exactly_one(b[1:4])
    used = m.new_bool_var("used")
    m.add_max_equality(used, b[4:7])
    cost = [rng.randint(1, 20) for _ in b] + [rng.randint(0, 5) for _ in v]
    m.minimize(sum(c * x for c, x in zip(cost, b + v, strict=True)) + 7 * used)
    return m


def test_the_written_mip_has_cp_sats_optimum_on_random_models():
    rng = random.Random(20261130)
    solved = 0
    for _ in range(40):
        m = _random_model(rng)
        cp = _cp_optimum(m)
        mo = to_mip(m.proto)
        assert mo is not None
        res = mathopt.solve(mo, mathopt.SolverType.HIGHS)
        if cp is None:
            assert res.termination.reason == mathopt.TerminationReason.INFEASIBLE
            continue
        solved += 1
        assert res.objective_value() == pytest.approx(cp, abs=1e-6)
    assert solved >= 20  # most of them are feasible: the comparison is not vacuous


def test_a_model_it_cannot_write_exactly_is_refused():
    m = cp_model.CpModel()
    x, y, z = (m.new_int_var(0, 5, n) for n in "xyz")
    m.add_multiplication_equality(z, [x, y])
    m.minimize(z)
    assert to_mip(m.proto) is None
    m2 = cp_model.CpModel()
    a = m2.new_int_var(0, 5, "a")
    m2.maximize(a)  # CP-SAT stores a maximisation negated: the bound would be of the negation
    assert to_mip(m2.proto) is None


def _cost_model(network: Network, csv_text: str, tmp_path, crit) -> PlanModel:
    path = tmp_path / "demand.csv"
    path.write_text(csv_text, encoding="utf-8")
    ds = read_demand(path, network, crit)
    inst = build_instance(network, ds.demands, crit, load_measures())
    mv = mv_response(network, inst)
    prune_upgrades(inst, mv)
    mdl = PlanModel(LinearGrid(inst, mv, Cuts()))
    everyone = sum(load_units(inst.demands[i].design_kw) for i in mdl.served)
    mdl.m.add(mdl.served_units >= everyone)
    mdl.m.minimize(mdl.cost)
    return mdl


def test_the_plan_model_written_as_a_mip_has_the_hand_optimum(tmp_path, cn):
    """The hand instance's optimum (test_plan.py: T1 to 500 kVA and d on bus 1, 191,000 CNY),
    from the plan model by CP-SAT and from the same model written as a MIP by HiGHS, and the
    threaded bound returns it too."""
    hand = Network(_two_transformers(), name="two transformers", source="test")
    mdl = _cost_model(hand, HAND_CSV, tmp_path, cn)
    cp = _cp_optimum(mdl.m)
    assert cp == pytest.approx(OPTIMUM_CNY, abs=1.0)
    assert _highs_optimum(mdl.m.proto) == pytest.approx(cp, abs=1e-6)
    mb = MipBound(mdl.m.clone().proto, 20.0).start()
    assert mb.result() == pytest.approx(cp, abs=1.0)
    assert mb.status == "optimal"


def test_sz_futian_model_written_as_a_mip_has_the_same_optimum(tmp_path, cn):
    net = lvplan.load_network("sz-futian")
    from pathlib import Path

    csv = (Path(__file__).resolve().parents[1] / "studies/demand/sz-futian-30.csv").read_text()
    mdl = _cost_model(net, csv, tmp_path, cn)
    cp = _cp_optimum(mdl.m)
    assert cp is not None and cp > 1e6
    assert _highs_optimum(mdl.m.proto) == pytest.approx(cp, rel=1e-9)


def test_the_rows_a_bound_holds_out_only_define_what_the_voltage_limits_read(tmp_path, cn):
    """On sz-futian's 30 demands: the definitions held out with the voltage limits
    (``voltage_defs``) each define a drop (an element's, a bus's, a 10 kV bus's) that no other
    row reads, so holding them out relaxes nothing else; and HiGHS's optimum of the model with
    them held out is CP-SAT's (the district's voltage limits do not bind its optimum here, so
    a bound is lost neither way)."""
    net = lvplan.load_network("sz-futian")
    from pathlib import Path

    csv = (Path(__file__).resolve().parents[1] / "studies/demand/sz-futian-30.csv").read_text()
    mdl = _cost_model(net, csv, tmp_path, cn)
    proto = _message(mdl.m.proto)
    held = set(mdl.bound_held_out)
    assert mdl.voltage_defs  # (and no row both a limit and a definition:)
    assert len(held) == len(mdl.voltage_rows) + len(mdl.voltage_defs)
    defined = set()
    for ci in mdl.voltage_defs:
        c = proto.constraints[ci]
        assert c.WhichOneof("constraint") == "linear"
        names = {proto.variables[v].name for v in c.linear.vars}
        drops = {n for n in names if n[:2] in ("DL", "DT", "MV") or n[:1] == "W"}
        assert drops, names  # (never a capacity, a load's definition or a cut)
        defined |= {v for v in c.linear.vars if proto.variables[v].name in drops}
    for ci, c in enumerate(proto.constraints):
        if ci in held or c.WhichOneof("constraint") != "linear":
            continue
        assert defined.isdisjoint(c.linear.vars), proto.variables[c.linear.vars[0]].name
    cp = _cp_optimum(mdl.m)
    mo = to_mip(proto, held_out=held)
    res = mathopt.solve(mo, mathopt.SolverType.HIGHS)
    assert res.objective_value() == pytest.approx(cp, rel=1e-9)


def test_a_plan_reports_both_bounds_and_never_a_bound_above_its_cost(tmp_path, cn):
    """With the MIP bound on, a solve proven optimal by CP-SAT stops HiGHS and says CP-SAT
    proved it; the reported bound is at most the plan's cost."""
    hand = Network(_two_transformers(), name="two transformers", source="test")
    mdl = _cost_model(hand, HAND_CSV, tmp_path, cn)
    mdl.m.clear_objective()  # solve() sets its own
    sol = mdl.solve(time_limit_s=15.0, workers=1, mip_bound=True)
    assert sol.status == "optimal"
    assert sol.bounds["bound_by"] == "cp_sat"
    assert sol.bound <= sol.objective + 1e-6
    assert sol.cost_cny == pytest.approx(OPTIMUM_CNY, abs=1e-6)
    assert math.isfinite(sol.bounds["cp_sat"])


def _values(m: cp_model.CpModel) -> tuple[list[int], float]:
    """Every variable's value at CP-SAT's optimum of ``m``, and that optimum."""
    s = cp_model.CpSolver()
    s.parameters.num_workers = 1
    assert s.solve(m) == cp_model.OPTIMAL
    vals = [s.value(m.get_int_var_from_proto_index(i)) for i in range(len(m.proto.variables))]
    return vals, s.objective_value


def test_the_relaxation_neighbourhood_finds_a_plan_of_the_model(tmp_path, cn):
    """On sz-futian's 30 demands: the relaxation's value bounds the optimum from below, the
    neighbourhood's plan costs no less than the optimum, and it is a plan of the one model
    (CP-SAT with every variable fixed to it agrees on its cost)."""
    net = lvplan.load_network("sz-futian")
    from pathlib import Path

    csv = (Path(__file__).resolve().parents[1] / "studies/demand/sz-futian-30.csv").read_text()
    mdl = _cost_model(net, csv, tmp_path, cn)
    _vals, cp = _values(mdl.m)
    dive = [v.index for v in (*mdl.x.values(), *mdl.z.values())]
    mb = MipBound(mdl.m.clone().proto, 30.0, dive_vars=dive).start()
    bound = mb.result()
    assert mb.lp_bound is not None and mb.lp_bound <= cp + 1e-6
    assert bound == mb.lp_bound  # a neighbourhood thread bounds by the relaxation alone
    assert mb.dive_values is not None and mb.dive_objective is not None, mb.dive_status
    assert mb.dive_objective >= cp - 1e-6
    check = mdl.m.clone()
    for i, v in enumerate(mb.dive_values):
        check.add_hint(check.get_int_var_from_proto_index(i), v)
    s = cp_model.CpSolver()
    s.parameters.fix_variables_to_their_hinted_value = True
    s.parameters.num_workers = 1
    assert s.solve(check) in (cp_model.OPTIMAL, cp_model.FEASIBLE)
    assert s.objective_value == pytest.approx(mb.dive_objective, abs=1.0)


def test_a_cheaper_neighbourhood_plan_is_taken_only_once_checked(tmp_path, cn):
    """The plan found beside CP-SAT replaces CP-SAT's when it costs less and CP-SAT, every
    variable fixed to it, finds it a plan of the model; values that break the model (nothing
    connected, at a cost below the optimum) are rejected and CP-SAT's plan stands."""
    from lvplan.planning.model import Solution

    hand = Network(_two_transformers(), name="two transformers", source="test")
    mdl = _cost_model(hand, HAND_CSV, tmp_path, cn)
    vals, cp = _values(mdl.m)
    assert cp == pytest.approx(OPTIMUM_CNY, abs=1.0)
    inst = mdl.inst
    worse = Solution.of(inst, [], [], [], "feasible", objective=cp + 5000.0, bound=cp - 10.0,
                        gap=0.0, seconds=0.0)  # fmt: skip
    mb = MipBound(mdl.m.clone().proto, 1.0)  # not started: its plan is set by hand
    mb.dive_values, mb.dive_objective, mb.dive_status = vals, cp, "feasible"
    got = mdl._dived(mb, worse, 0.0)
    assert got.bounds["plan_by"] == "highs_dive"
    assert got.cost_cny == pytest.approx(OPTIMUM_CNY, abs=1e-6)
    assert got.objective == pytest.approx(cp, abs=1e-6)
    assert got.bound == pytest.approx(cp - 10.0)
    assert sorted(got.chosen) == sorted(k for k, v in mdl.x.items() if vals[v.index])
    mb.dive_values, mb.dive_objective = [0] * len(vals), 0.0
    worse.bounds = {}
    kept = mdl._dived(mb, worse, 0.0)
    assert kept is worse
    assert kept.bounds["dive_status"].startswith("rejected")


def test_the_search_keeps_the_plans_it_found_before_its_last(tmp_path):
    """HiGHS writes every improving plan of a search to the file ``_improving_file`` sets, and
    ``_read_improving`` reads back the last few, in the order found, each every column's value:
    on a knapsack of 60 items and 5 capacities, the last read is HiGHS's final plan, each
    earlier one is a plan of the model (within every capacity) worth less than the next, and a
    block cut short (HiGHS stopped while writing it) is left out, as is one with a value that
    is not a number."""
    from lvplan.planning.mipbound import _improving_file, _read_improving

    rng = random.Random(1)
    m = mathopt.Model()
    xs = [m.add_binary_variable(name=f"x{i}") for i in range(60)]
    v = [rng.randint(5, 50) for _ in xs]
    rows = [[rng.randint(1, 30) for _ in xs] for _ in range(5)]
    for w in rows:
        m.add_linear_constraint(sum(wi * x for wi, x in zip(w, xs, strict=True)) <= 300)
    m.maximize(sum(vi * x for vi, x in zip(v, xs, strict=True)))
    params = mathopt.SolveParameters()
    saved = _improving_file(params, tmp_path)
    res = mathopt.solve(m, mathopt.SolverType.HIGHS, params=params)
    assert res.termination.reason == mathopt.TerminationReason.OPTIMAL
    final = [round(x) for x in res.variable_values(xs)]
    plans = _read_improving(saved, len(xs), 3)
    assert len(plans) == 3, saved.read_text()[:500]
    assert plans[-1] == final
    worth = [sum(vi * p for vi, p in zip(v, plan, strict=True)) for plan in plans]
    assert worth[0] < worth[1] < worth[2] == pytest.approx(res.objective_value())
    for plan in plans:
        for w in rows:
            assert sum(wi * p for wi, p in zip(w, plan, strict=True)) <= 300
    text = saved.read_text()
    cut = text[: text.rindex("Objective ")] + text[text.rindex("Objective ") :][:30]
    saved.write_text(cut)
    assert _read_improving(saved, len(xs), 3) == plans[:2]
    assert _read_improving(saved, len(xs), 1) == []  # (only the block cut short was asked for)
    saved.write_text(text.replace("x3 0\n", "x3 nan\n").replace("x3 1\n", "x3 nan\n"))
    assert _read_improving(saved, len(xs), 3) == []
    saved.unlink()


def test_the_dive_plans_alternatives_are_checked_as_it_is(tmp_path, cn):
    """The plans the neighbourhood search found before its last go with the plan it returns
    (``Solution.alternatives``) once CP-SAT, every decision fixed, finds each a plan of the
    model costing less than CP-SAT's own: on the hand instance, the second-best plan is kept at
    its cost, and values that break the model (nothing connected) are dropped."""
    hand = Network(_two_transformers(), name="two transformers", source="test")
    mdl = _cost_model(hand, HAND_CSV, tmp_path, cn)
    vals, cp = _values(mdl.m)
    second = _cost_model(hand, HAND_CSV, tmp_path, cn)  # (the same model, variable by variable)
    second.m.add(second.cost >= round(cp) + 1)
    vals2, cp2 = _values(second.m)
    assert cp2 > cp + 1.0
    from lvplan.planning.model import Solution

    worse = Solution.of(mdl.inst, [], [], [], "feasible", objective=cp2 + 5000.0,
                        bound=cp - 10.0, gap=0.0, seconds=0.0)  # fmt: skip
    mb = MipBound(mdl.m.clone().proto, 1.0)  # not started: its plans are set by hand
    mb.dive_values, mb.dive_objective, mb.dive_status = vals, cp, "feasible"
    mb.dive_alternatives = [[0] * len(vals), vals2]
    got = mdl._dived(mb, worse, 0.0)
    assert got.objective == pytest.approx(cp, abs=1e-6)
    assert [a.objective for a in got.alternatives] == [pytest.approx(cp2, abs=1e-6)]
    assert got.alternatives[0].cost_cny == pytest.approx(cp2, abs=1e-6)
    assert sorted(got.alternatives[0].chosen) == sorted(
        k for k, v in mdl.x.items() if vals2[v.index]
    )
    assert got.bounds["dive_alternatives"] == [round(cp2)]
    # an alternative no cheaper than CP-SAT's plan is not kept
    worse2 = dataclasses.replace(worse, objective=cp2 - 1.0, bounds={})
    assert mdl._dived(mb, worse2, 0.0).alternatives == []


def test_a_round_starts_from_the_plans_alternative_that_fits_the_new_cuts(
    tmp_path, cn, monkeypatch
):
    """The hand instance: the first round's plan (the optimum, T1 swapped to 500 kVA, 191,000
    CNY) carries an alternative (the best plan without that swap) and is made to break in AC;
    its cut bans that swap (a change the repair cannot place: no repair). The round after
    starts from the alternative, which fits the cut, not from the verified greedy plan
    (277,000 CNY), and that plan, checked in AC, is returned."""
    from test_plan import GREEDY_CNY

    from lvplan.planning import plan as plan_mod
    from lvplan.planning import rounds as rounds_mod
    from lvplan.planning.model import Solution

    hand = Network(_two_transformers(), name="two transformers", source="test")
    csv = tmp_path / "demand.csv"
    csv.write_text(HAND_CSV, encoding="utf-8")
    real_solve = PlanModel.solve
    calls = {"solve": 0}
    hinted: list[Solution] = []
    swaps: dict[str, Any] = {}

    def solve(self, **kw):
        calls["solve"] += 1
        if calls["solve"] == 1:
            out = real_solve(self, **kw)
            assert out.cost_cny == pytest.approx(OPTIMUM_CNY, abs=1.0)
            (u,) = out.upgrades
            # the best plan without that swap (a model of the round's grid, all served)
            other = PlanModel(self.grid)
            other.m.add(other.y[u] == 0)
            other.m.add(sum(other.served.values()) == len(other.served))
            other.m.minimize(other.cost)
            s = cp_model.CpSolver()
            s.parameters.num_workers = 1
            assert s.solve(other.m) == cp_model.OPTIMAL
            alt = Solution.of(
                self.inst,
                [k for k, v in other.x.items() if s.value(v)],
                [w for w, v in other.y.items() if s.value(v)],
                [z for z, v in other.z.items() if s.value(v)],
                "feasible",
            )
            swaps.update(taken=u, alt=alt)
            assert OPTIMUM_CNY < alt.cost_cny < GREEDY_CNY - 1.0, alt.cost_cny
            return dataclasses.replace(out, alternatives=[alt])
        hinted.append(self.hinted)  # (the search finds nothing better than its start)
        return dataclasses.replace(self.hinted, status="feasible", bound=math.nan, gap=math.nan)

    _rig_rounds(monkeypatch, solve, lambda sol: swaps.get("taken") in sol.upgrades)
    real_tighten = rounds_mod.tighten

    def tighten(network, inst, sol, ev, broken, cuts):
        if broken == ["a limit the test says is broken"]:
            cuts.banned.add(swaps["taken"])  # (that swap no longer offered)
            return ["(the test's limit)"]
        return real_tighten(network, inst, sol, ev, broken, cuts)

    monkeypatch.setattr(rounds_mod, "tighten", tighten)
    p = plan_mod.plan(hand, csv, criteria=cn, time_limit_s=30)
    alt = swaps["alt"]
    assert hinted and sorted(hinted[0].chosen) == sorted(alt.chosen)
    assert sorted(hinted[0].upgrades) == sorted(alt.upgrades)
    assert p.summary()["total_cost_cny"] == pytest.approx(alt.cost_cny, abs=1.0)


def _rig_rounds(monkeypatch, solve, breaks) -> None:
    """The plan's rounds with ``solve`` in place of ``PlanModel.solve``, and the AC check made to
    find a limit broken whenever ``breaks(plan)`` (its cut: none)."""
    from lvplan.planning import rounds as rounds_mod

    real_check, real_tighten = rounds_mod.check_plan, rounds_mod.tighten

    def check(network, inst, sol, base):
        ev, broken = real_check(network, inst, sol, base)
        return (ev, ["a limit the test says is broken"]) if breaks(sol) else (ev, broken)

    def tighten(network, inst, sol, ev, broken, cuts):
        if broken == ["a limit the test says is broken"]:
            return ["(the test's limit)"]
        return real_tighten(network, inst, sol, ev, broken, cuts)

    monkeypatch.setattr(PlanModel, "solve", solve)
    monkeypatch.setattr(rounds_mod, "check_plan", check)
    monkeypatch.setattr(rounds_mod, "tighten", tighten)


def test_a_failed_later_round_keeps_the_greedy_plan_with_the_bound_proved_before(
    tmp_path, cn, monkeypatch
):
    """The hand instance: the first optimal round's plan (191,000 CNY, proven optimal) is made
    to break a limit in AC, and the second round finds nothing (status unknown). The verified
    greedy plan (277,000 CNY) is returned, and it keeps the first round's bound: every later
    model only adds cuts, so 191,000 CNY still bounds it (gap 86,000 / 277,000)."""
    from test_plan import GREEDY_CNY

    from lvplan.planning import model as model_mod
    from lvplan.planning import plan as plan_mod

    hand = Network(_two_transformers(), name="two transformers", source="test")
    csv = tmp_path / "demand.csv"
    csv.write_text(HAND_CSV, encoding="utf-8")
    real_solve = PlanModel.solve
    calls = {"solve": 0, "broken": 0}

    def solve(self, **kw):
        calls["solve"] += 1
        if calls["solve"] == 1:
            return real_solve(self, **kw)
        return PlanModel._failed_solution("unknown", 0.0)

    def breaks(sol) -> bool:
        if abs(sol.cost_cny - OPTIMUM_CNY) < 1.0 and not calls["broken"]:
            calls["broken"] += 1
            return True
        return False

    _rig_rounds(monkeypatch, solve, breaks)
    # (CP-SAT's search of the round: with a bound beside it, a round this short would search
    # neighbourhoods instead, and its refused plan would never be the round's)
    monkeypatch.setattr(model_mod, "MIP_BOUND_MIN_S", 1e9)
    p = plan_mod.plan(hand, csv, criteria=cn, time_limit_s=20)
    assert calls == {"solve": 2, "broken": 1}
    s = p.summary()
    assert s["total_cost_cny"] == pytest.approx(GREEDY_CNY, abs=1.0)
    assert s["solver"]["best_bound"] == pytest.approx(OPTIMUM_CNY, abs=1.0)
    assert s["solver"]["gap"] == pytest.approx((GREEDY_CNY - OPTIMUM_CNY) / GREEDY_CNY, abs=1e-4)


def test_the_plan_returned_gets_the_bound_proved_for_the_demands_it_serves(
    tmp_path, cn, monkeypatch
):
    """Bounds are kept by the set of demands each round served: round 1 proves 191,000 CNY for
    all three demands (its plan made to break a limit), round 2 returns a plan of two demands
    with a higher bound (the round that "proved the most", made to break too), round 3 the
    greedy plan's choices with no bound of its own (as a repair round's plan). The plan returned
    serves all three: its bound is round 1's, not none and not round 2's."""
    import dataclasses as dc
    import math

    from test_plan import GREEDY_CNY

    from lvplan.planning import plan as plan_mod
    from lvplan.planning.model import Solution

    hand = Network(_two_transformers(), name="two transformers", source="test")
    csv = tmp_path / "demand.csv"
    csv.write_text(HAND_CSV, encoding="utf-8")
    real_solve = PlanModel.solve
    calls = {"solve": 0}
    greedy: list[Solution] = []

    def solve(self, **kw):
        calls["solve"] += 1
        if calls["solve"] == 1:
            greedy.append(self.hinted)
            return real_solve(self, **kw)
        g = greedy[0]
        if calls["solve"] == 2:  # two of the three demands, a higher bound
            two = Solution.of(self.inst, g.chosen[:2], g.upgrades, g.sites, "feasible")
            return dc.replace(two, bound=250_000.0, gap=0.0)
        return dc.replace(g, status="feasible", bound=math.nan, gap=math.nan)

    _rig_rounds(monkeypatch, solve, lambda sol: calls["solve"] in (1, 2))
    p = plan_mod.plan(hand, csv, criteria=cn, time_limit_s=30)
    assert calls["solve"] >= 3  # (a fourth goes on from the plan that passed: the same plan)
    s = p.summary()
    assert s["total_cost_cny"] == pytest.approx(GREEDY_CNY, abs=1.0)
    assert s["solver"]["best_bound"] == pytest.approx(OPTIMUM_CNY, abs=1.0)


def test_a_maximisation_is_bounded_through_its_negation():
    """A budget's first stage (the most kW) is a maximisation, which CP-SAT stores negated: it
    is written only when asked (``negated``), and HiGHS's bound is the negation's: the least of
    -(2x + 3y + 4z) with 3x + 2y + 4z <= 5 is -5 (y and x), so at most 5 can be served."""
    m = cp_model.CpModel()
    x, y, z = (m.new_bool_var(n) for n in "xyz")
    m.add(3 * x + 2 * y + 4 * z <= 5)
    m.maximize(2 * x + 3 * y + 4 * z)
    assert to_mip(m.proto) is None  # (a maximisation is not taken for a minimisation)
    mo = to_mip(m.proto, negated=True)
    res = mathopt.solve(mo, mathopt.SolverType.HIGHS)
    assert res.objective_value() == pytest.approx(-5.0)
    b = MipBound(m.proto, 10.0, negated=True).start()
    assert b.result() == -5.0
    assert MipBound(m.proto, 10.0).start().result() is None  # not written, no bound


def test_a_round_of_inequalities_counts_as_a_gain_by_the_relaxations_size_not_its_sign():
    """The separation rounds stop when a round raises the relaxation by less than
    SEPARATE_MIN_GAIN of it; a budget model's relaxation is a negated kW, below zero, where
    "value times (1 + gain)" lies below the value and any round counted as a gain."""
    from lvplan.planning.mipbound import SEPARATE_MIN_GAIN, _gained

    step = 0.5 * SEPARATE_MIN_GAIN * 10_000.0  # half the least gain on a value of size 10,000
    assert not _gained(10_000.0, 10_000.0 + step)
    assert not _gained(-10_000.0, -10_000.0 + step)  # was a gain: -10,000 * 1.0005 < -9,997.5
    assert _gained(10_000.0, 10_000.0 + 3 * step)
    assert _gained(-10_000.0, -10_000.0 + 3 * step)
    assert not _gained(-10_000.0, -10_000.0 - step)  # a lower relaxation is never a gain


def test_a_city_group_without_time_for_a_search_takes_the_relaxations_bound(
    hand, hand_csv, cn, monkeypatch
):
    """A large city group (``bound_only``; the hand instance counted as one) with less than
    SEARCH_WORTH_S left after its greedy plan runs no CP-SAT search: it keeps its verified
    greedy plan (277,000 CNY) and takes the relaxation's bound for the demands it serves, which
    never passes the optimum (191,000 CNY, test_plan.py) and is more than the 0 such a group
    counted before; with no time left before the city's deadline, it starts nothing."""
    from test_plan_sitebound import plan_group

    from lvplan.planning import optimal_rounds
    from lvplan.planning.optimal_rounds import SEARCH_WORTH_S
    from lvplan.planning.plan import Plan

    monkeypatch.setattr(optimal_rounds, "SEARCH_SKIP_MIN_BUSES", 0)

    def group(hard_limit_s: float | None) -> Plan:
        return plan_group(
            hand, hand_csv, cn, time_limit_s=SEARCH_WORTH_S / 2, hard_limit_s=hard_limit_s
        )

    p = group(None)
    assert p.cost_cny == pytest.approx(277_000.0, abs=1.0)  # the greedy plan, verified
    assert p.optimal_cost_cny is None  # no search ran
    assert [h.method for h in p.history][-1] == "bound"
    assert p.stopped == "time_limit"
    assert p.solution.bounds["bound_by"] == "relaxation"
    assert 0.0 < p.bound <= OPTIMUM_CNY
    assert p.gap == pytest.approx((p.cost_cny - p.bound) / p.cost_cny)
    assert p.summary()["solver"]["best_bound"] == pytest.approx(p.bound)
    late = group(0.0)  # the city's deadline already passed
    assert late.cost_cny == pytest.approx(277_000.0, abs=1.0)
    assert "bound" not in [h.method for h in late.history]
    assert math.isnan(late.bound)


def _cheap_or_dear(drop_max: int, cap: int):
    """Two demands, each served by a cheap option (1) or a dear one (3); the cheap ones each
    add 5 to a drop (bounded from below only, as in the plan model) that the limit ``cap``
    holds. Returns the model, the cheap and the dear options, the drop and the limit's index."""
    m = cp_model.CpModel()
    cheap = [m.new_bool_var(f"a{i}") for i in range(2)]
    dear = [m.new_bool_var(f"b{i}") for i in range(2)]
    for a, b in zip(cheap, dear, strict=True):
        m.add_exactly_one(a, b)
    drop = m.new_int_var(0, drop_max, "W")
    m.add(drop >= 5 * cheap[0] + 5 * cheap[1])
    limit = m.add(drop <= cap).index
    m.minimize(sum(cheap) + 3 * sum(dear))
    return m, cheap, dear, drop, limit


def test_only_the_voltage_limits_a_neighbourhood_plan_breaks_come_back():
    """Two demands, each served by a cheap option (1) or a dear one (3); the cheap ones each
    add 5 to a drop that a held-out limit caps at 7, so the optimum is 4, not 2. A second
    held-out limit (the dear ones add 4 each, capped at 8) never binds. Each drop is bounded
    from below only, as in the plan model. The neighbourhood's first plan (2) breaks the
    first limit; that limit alone is put back, the search runs again, and finds 4 (the plan
    it starts from costs 6)."""
    m, cheap, dear, drop, tight = _cheap_or_dear(10, 7)
    other = m.new_int_var(0, 10, "V")  # (a drop the dear options add: 8 at the start)
    m.add(other >= 4 * dear[0] + 4 * dear[1])
    loose = m.add(other <= 8).index
    n = len(m.proto.variables)
    start = [0] * n
    for b in dear:
        start[b.index] = 1
    decisions = [v.index for v in (*cheap, *dear)]
    mb = MipBound(
        m.proto,
        12.0,
        dive_vars=decisions,
        incumbent=start,
        voltage_rows=[tight, loose],
        decisions=decisions,
    ).start()
    mb.result()
    assert "1 voltage limit broken: again with them" in mb.dive_status, mb.dive_status
    assert mb.dive_objective == pytest.approx(4.0)
    vals = mb.dive_values
    assert vals is not None and vals[drop.index] <= 7
    assert sum(vals[a.index] for a in cheap) == 1
    assert mb._free.tolist() == [False, True]  # (the other limit stayed out)


def test_a_plan_whose_voltage_limits_cannot_be_read_in_time_goes_to_the_check(monkeypatch):
    """The neighbourhood's plan is read against the voltage limits held out by a small HiGHS
    solve; on a busy machine that solve ran out of time at the deadline, every limit was taken
    as broken and the plan (seed 1 of the district: 40.5 M CNY against the greedy plan's 46.6 M)
    dropped. It now goes to the caller, whose CP-SAT check holds every limit
    (PlanModel._fixed): here the plan (2) breaks none, and the search has no time for another."""
    m, cheap, dear, _drop, limit = _cheap_or_dear(20, 12)  # (the limit never binds)
    start = [0] * len(m.proto.variables)
    for b in dear:
        start[b.index] = 1
    decisions = [v.index for v in (*cheap, *dear)]
    monkeypatch.setattr(MipBound, "_least", lambda *a, **k: None)
    mb = MipBound(
        m.proto,  # (5 s: the search ends 4 s before, with under 2 s left for another)
        5.0,
        dive_vars=decisions,
        incumbent=start,
        voltage_rows=[limit],
        decisions=decisions,
    ).start()
    mb.result()
    status = mb.dive_status
    assert "1 voltage limit not read in the time: again with them (no time left)" in status
    assert "its plan unchecked: to CP-SAT's check" in status
    assert mb.dive_objective == pytest.approx(2.0)
    vals = mb.dive_values
    assert vals is not None and sum(vals[a.index] for a in cheap) == 2
