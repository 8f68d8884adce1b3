"""The neighbourhood search from a plan that passed (planning/polish.py), on sz-futian's 30 demands:
it returns only a cheaper plan of the same model serving the same demands, never one below the
optimum, and only one its caller's check accepted."""

from __future__ import annotations

import time
from pathlib import Path

from ortools.sat.python import cp_model
from test_plan_mipbound import _cost_model, _values

import lvplan
from lvplan.planning.model import PlanModel, Solution
from lvplan.planning.polish import polish

FUTIAN_CSV = Path(__file__).resolve().parents[1] / "studies/demand/sz-futian-30.csv"


def _plan_of(mdl: PlanModel, vals: list[int]) -> Solution:
    return Solution.of(
        mdl.inst,
        [k for k, v in mdl.x.items() if vals[v.index]],
        [u for u, v in mdl.y.items() if vals[v.index]],
        [s for s, v in mdl.z.items() if vals[v.index]],
        "feasible",
    )


def _dear_plan(tmp_path, cn) -> tuple[PlanModel, float, Solution]:
    """sz-futian's model, its optimum, and a dearer plan of it: the best that also builds two
    upgrades no demand needs and connects one demand by its dearest other option that fits."""
    net = lvplan.load_network("sz-futian")
    mdl = _cost_model(net, FUTIAN_CSV.read_text(), tmp_path, cn)
    vals, opt = _values(mdl.m)
    dear = mdl.m.clone()
    spare: dict[object, int] = {}  # (one upgrade per element: the others exclude it)
    for u, v in sorted(mdl.y.items()):
        el = mdl.inst.upgrades[u].element
        if not vals[v.index] and len(spare) < 2 and el not in spare:
            spare[el] = u
    for u in spare.values():
        dear.add(mdl.y[u] == 1)
    for k in sorted(  # the dearest other connection of a demand that the model allows
        (k for k in mdl.x if not vals[mdl.x[k].index]),
        key=lambda k: -mdl.inst.options[k].cable_cost_cny,
    ):
        trial = dear.clone()
        trial.add(mdl.x[k] == 1)
        s = cp_model.CpSolver()
        s.parameters.num_workers = 1
        if s.solve(trial) == cp_model.OPTIMAL:
            dvals, _ = _values(trial)
            return mdl, opt, _plan_of(mdl, dvals)
    raise AssertionError("no other connection fits sz-futian's model")


def test_the_neighbourhood_search_returns_a_cheaper_plan_of_the_same_model(tmp_path, cn):
    mdl, opt, start = _dear_plan(tmp_path, cn)
    assert start.cost_cny > opt + 1.0
    seen: list[float] = []

    def accept(s: Solution) -> bool:
        seen.append(s.cost_cny)
        return True

    out = polish(mdl.grid, start, time_limit_s=8.0, workers=2, accept=accept)
    assert out is not None
    assert opt - 1.0 <= out.cost_cny < start.cost_cny - 1.0
    assert out.served == start.served
    assert out.cost_cny in seen  # the plan returned is one the check accepted
    assert PlanModel(mdl.grid).hint(out)  # ... and a plan of the one linear model


def test_a_plan_the_check_refuses_is_never_returned_nor_searched_on_from(tmp_path, cn):
    mdl, _opt, start = _dear_plan(tmp_path, cn)
    refused: list[float] = []

    def accept(s: Solution) -> bool:
        refused.append(s.cost_cny)
        return False

    t0 = time.perf_counter()
    assert polish(mdl.grid, start, time_limit_s=4.0, workers=2, accept=accept) is None
    assert time.perf_counter() - t0 < 4.0 + 1.0  # (within its time, as the round counts on)
    assert refused, "no cheaper plan was offered to the check"
    # each neighbourhood starts from the plan that stands: none was taken
    assert all(c < start.cost_cny for c in refused)


def test_no_time_no_plan(tmp_path, cn):
    mdl, _opt, start = _dear_plan(tmp_path, cn)
    assert polish(mdl.grid, start, time_limit_s=0.0, workers=1) is None
