"""The HiGHS threads beside CP-SAT (planning/mipbound.py): what stop() does, the label of a bound
the strengthened relaxation gave, no second search after a stop (probes from a review)."""

from __future__ import annotations

import random
import time

from ortools.sat.python import cp_model

from lvplan.planning.mipbound import MipBound, Relaxation


def _hard_proto(seed: int = 3):
    """A covering MIP that HiGHS does not close in 30 s (150 booleans, 100 rows of 40)."""
    rng = random.Random(seed)
    m = cp_model.CpModel()
    x = [m.new_bool_var(f"x{i}") for i in range(150)]
    for _ in range(100):
        idx = rng.sample(range(150), 40)
        m.add(sum(rng.randint(1, 30) * x[i] for i in idx) >= rng.randint(100, 300))
    m.minimize(sum(rng.randint(1, 100) * v for v in x))
    return m.clone().proto


def test_stop_returns_at_once_and_the_thread_ends_by_its_deadline():
    """CP-SAT proved its plan optimal: ``stop()`` must not hold the plan up. MathOpt's HiGHS
    ignores the SolveInterrupter (OR-Tools 9.15), so the solve running goes on to its own
    time limit: the thread ends by its deadline (here 6 s), not later."""
    t0 = time.perf_counter()
    mb = MipBound(_hard_proto(), 6.0, relaxation=Relaxation([])).start()
    time.sleep(1.0)
    t = time.perf_counter()
    mb.stop()
    assert time.perf_counter() - t < 0.5
    mb._thread.join(20.0)
    assert not mb._thread.is_alive()
    assert time.perf_counter() - t0 < 6.0 + 3.0


def test_a_bound_the_relaxation_gave_is_not_labelled_highs():
    """The bounding thread's MIP solve failed (or ran out of time below the strengthened
    relaxation, or was still running at the wait's end): its bound is the strengthened
    relaxation's (``lp_bound``), and ``bound_by`` must say so, not ``highs``."""
    from lvplan.planning.model import PlanModel

    mb = MipBound(_hard_proto(), 1.0)  # not started: its outcome is set by hand
    mb.lp_bound = mb.bound = 100.0
    mb.status = "failed: RuntimeError: boom"
    bounds: dict = {"cp_sat": 50.0, "bound_by": "cp_sat"}
    assert PlanModel._mip_bound(mb, bounds, 50.0, 200.0) == 100.0
    assert bounds["bound_by"] == "relaxation", bounds


def test_a_stopped_diver_does_not_start_its_second_neighbourhood():
    """CP-SAT proved its plan optimal and stopped both threads: the diving thread must not then
    start a second HiGHS search (around the strengthened relaxation) that runs to its deadline
    (HiGHS does not heed the interrupter)."""
    m = cp_model.CpModel()
    x = [m.new_bool_var(f"x{i}") for i in range(3)]
    m.add(x[0] + x[1] + x[2] >= 2)
    m.minimize(3 * x[0] + 2 * x[1] + 4 * x[2])
    rel = Relaxation([])
    rel.values, rel.value, rel.rounds = [1.0, 1.0, 0.0], 5.0, 1
    rel.done.set()
    mb = MipBound(m.clone().proto, 30.0, dive_vars=[0, 1, 2], relaxation=rel)
    mb._stopped.set()  # stop() came while the first search ran
    mb.start()
    mb._thread.join(20.0)
    assert "strengthened" not in mb.dive_status, mb.dive_status


def test_a_cost_stage_that_finds_nothing_returns_the_most_served_stages_plan(
    tmp_path, cn, monkeypatch
):
    """No hint, so the solve first serves the most kW (stage 1), then minimises the cost of
    serving those (stage 2). When stage 2 finds nothing in its time, its start, stage 1's plan
    (complete, and a plan of stage 2), is the answer, not a failure (a city group whose
    greedy hint did not fit kept no plan and no bound this way)."""
    from test_plan import HAND_CSV, _two_transformers
    from test_plan_mipbound import _cost_model

    from lvplan.model.network import Network
    from lvplan.planning.model import PlanModel

    hand = Network(_two_transformers(), name="two transformers", source="test")
    mdl = _cost_model(hand, HAND_CSV, tmp_path, cn)
    mdl.m.clear_objective()
    real_run = PlanModel._run
    calls = []

    def run(self, time_limit_s, workers, gap):
        solver, status = real_run(self, time_limit_s, workers, gap)
        calls.append(status)
        return (solver, cp_model.UNKNOWN) if len(calls) == 2 else (solver, status)

    monkeypatch.setattr(PlanModel, "_run", run)
    sol = mdl.solve(time_limit_s=8.0, workers=1)
    assert len(calls) == 2
    assert sol.status == "feasible" and sol.from_hint
    assert all(sol.served) and sol.cost_cny > 0
    assert sorted(sol.chosen) == sorted(k for k, v in mdl.x.items() if mdl._hint_values()[v.index])


def _voltage_proto(d_max: int):
    """Two connections of one demand: the cheap one (cost 1) drops 10 units of voltage, the
    dear one (cost 3) none; a voltage limit ``d <= d_max`` when the cheap one is used (a big-M
    row, as the plan model writes them). Returns the proto, the limit's index, the decisions."""
    m = cp_model.CpModel()
    cheap, dear = m.new_bool_var("cheap"), m.new_bool_var("dear")
    d = m.new_int_var(0, 10, "d")
    m.add(cheap + dear == 1)
    m.add(d == 10 * cheap)
    row = m.add(d <= d_max).only_enforce_if(cheap).index
    m.minimize(cheap + 3 * dear)
    m.add_hint(cheap, 0)
    m.add_hint(dear, 1)
    m.add_hint(d, 0)
    proto = m.clone().proto
    return proto, row, [cheap.index, dear.index]


def test_to_mip_writes_held_out_rows_free_and_restore_puts_them_back():
    from ortools.math_opt.python import mathopt

    from lvplan.planning.mipbound import restore, to_mip

    proto, row, _ = _voltage_proto(5)
    loose: list = []
    mo = to_mip(proto, held_out=[row], loose=loose)
    assert mo is not None and len(loose) == 1
    assert loose[0][0].upper_bound == float("inf")
    free = mathopt.solve(mo, mathopt.SolverType.HIGHS)
    assert round(free.objective_value()) == 1  # the cheap connection: its limit held out
    restore(loose)
    held = mathopt.solve(mo, mathopt.SolverType.HIGHS)
    assert round(held.objective_value()) == 3  # with the limit: the dear one


def test_the_diver_never_keeps_a_plan_that_breaks_a_held_out_voltage_limit():
    """The HiGHS threads hold the voltage limits out: the diving thread's plan that breaks one
    is dropped, and the neighbourhood searched again with the limits."""
    proto, row, decisions = _voltage_proto(5)
    inc = [0, 1, 0]  # the dear connection: a plan of the model
    mb = MipBound(
        proto,
        20.0,
        dive_vars=decisions,
        incumbent=inc,
        voltage_rows=[row],
        decisions=decisions,
    ).start()
    mb.result()
    assert mb.dive_values is None and mb.dive_objective is None, mb.dive_status
    assert "voltage limit broken" in mb.dive_status
    assert mb.lp_bound is not None and mb.lp_bound <= 3  # a bound of the model still
    # the limit loose enough for the cheap connection: its plan is kept
    proto, row, decisions = _voltage_proto(10)
    mb = MipBound(
        proto, 20.0, dive_vars=decisions, incumbent=inc, voltage_rows=[row], decisions=decisions
    ).start()
    mb.result()
    assert mb.dive_objective == 1 and mb.dive_values is not None
    assert "voltage" not in mb.dive_status
