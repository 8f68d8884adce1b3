"""The relaxation held by HiGHS between the rounds of inequalities (planning/warmlp.py) against
MathOpt's relaxation solved afresh: the same value at every round, rows held out included."""

from __future__ import annotations

import random
import time

import pytest
from ortools.math_opt.python import mathopt
from test_plan_mipbound import _cost_model, _random_model
from test_plan_strengthen import FUTIAN_CSV

import lvplan
from lvplan.planning.mipbound import _add, to_mip
from lvplan.planning.strengthen import Inequality, separate
from lvplan.planning.warmlp import WarmLp


def _fresh(mo) -> float | None:
    """MathOpt's relaxation of ``mo``, solved afresh (its variables made continuous, then put
    back)."""
    xs = list(mo.variables())
    for v in xs:
        v.integer = False
    try:
        res = mathopt.solve(mo, mathopt.SolverType.HIGHS)
    finally:
        for v in xs:
            v.integer = True
    if res.termination.reason != mathopt.TerminationReason.OPTIMAL:
        return None
    return res.objective_value()


def test_the_warm_relaxation_has_mathopts_value_on_random_models():
    """Random models with enforced rows, some held out (written free): the same relaxation,
    and the same again after a random inequality added to both."""
    rng = random.Random(5)
    compared = [0, 0]  # models, and models with the row added
    for _ in range(120):
        m = _random_model(rng)
        held = {i for i in range(len(m.proto.constraints)) if rng.random() < 0.2}
        loose: list = []
        mo = to_mip(m.proto, held_out=held, loose=loose)
        if mo is None:
            continue
        mo.objective.offset = rng.choice([0.0, 5.0, -12.5])  # (the value includes it)
        want = _fresh(mo)
        lp = WarmLp(mo)
        got = lp.solve(time.perf_counter() + 30.0)
        if want is None:
            assert got is None
            continue
        assert got is not None
        assert got[0] == pytest.approx(want, abs=1e-6)
        assert len(got[1]) == len(list(mo.variables()))
        compared[0] += 1
        # an inequality on two of the booleans (indices 0-7): x_a + x_b <= 1 + y_c
        a, b, c = rng.sample(range(8), 3)
        ineq = Inequality(lhs=[(a, 1), (b, 1)], rhs=1, ups=[(c, 1)])
        _add(mo, [ineq])
        lp.add([ineq])
        want2, got2 = _fresh(mo), lp.solve(time.perf_counter() + 30.0)
        if want2 is None:
            assert got2 is None
            continue
        assert got2 is not None and got2[0] == pytest.approx(want2, abs=1e-6)
        assert got2[0] >= got[0] - 1e-6  # a row more: never a lower minimum
        compared[1] += 1
    assert compared[0] >= 20 and compared[1] >= 15


def test_rounds_on_the_warm_relaxation_follow_the_fresh_ones(tmp_path, cn):
    """sz-futian's model: three rounds, each one's inequalities (separated at the warm
    relaxation's values) added to both; the values agree to the cent each round, and rise."""
    net = lvplan.load_network("sz-futian")
    mdl = _cost_model(net, FUTIAN_CSV.read_text(), tmp_path, cn)
    mo = to_mip(mdl.m.proto)
    assert mo is not None
    lp = WarmLp(mo)
    seen = []
    for _ in range(3):
        got = lp.solve(time.perf_counter() + 60.0)
        want = _fresh(mo)
        assert got is not None and want is not None
        assert got[0] == pytest.approx(want, abs=0.01)
        seen.append(got[0])
        found = separate(mdl.capacity_rows, got[1])
        if not found:
            break
        _add(mo, found)
        lp.add(found)
    assert len(seen) >= 2 and seen[-1] > seen[0] + 1.0


def test_no_time_left_is_no_value(tmp_path, cn):
    net = lvplan.load_network("sz-futian")
    mdl = _cost_model(net, FUTIAN_CSV.read_text(), tmp_path, cn)
    mo = to_mip(mdl.m.proto)
    assert WarmLp(mo).solve(time.perf_counter() - 1.0) is None
