"""The plan's linear physics (planning/linear.py): the 10 kV drop's scaling.

Each 10 kV sensitivity is only 1.6-4.8 voltage units (1e-7 pu) per load unit (0.1 kW), so
rounding each up on its own overstated a sum of them by up to a whole unit per load unit (by a
quarter on the urban district). The coefficients are kept ``MV_SUB`` times finer and the sum is
rounded up once: never below the exact linear drop, and above it by at most one voltage unit plus
one ``1/MV_SUB`` per load unit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ortools.sat.python import cp_model

import lvplan
from lvplan.planning.candidates import build_instance, prune_upgrades
from lvplan.planning.demand import read_demand
from lvplan.planning.greedy import Greedy
from lvplan.planning.linear import (
    KW_UNIT,
    MV_SUB,
    V_UNIT,
    Cuts,
    LinearGrid,
    mv_response,
    mv_units,
)
from lvplan.planning.measures import load_measures
from lvplan.planning.model import PlanModel

CSV = Path(__file__).resolve().parents[1] / "studies/demand/sz-futian-30.csv"


@pytest.fixture(scope="module")
def futian(cn):
    net = lvplan.load_network("sz-futian")
    ds = read_demand(CSV, net, cn)
    inst = build_instance(net, ds.demands, cn, load_measures())
    mv = mv_response(net, inst)
    prune_upgrades(inst, mv)
    return inst, mv


def test_mv_units_rounds_up_once():
    assert mv_units(0) == 0
    assert mv_units(1) == 1
    assert mv_units(MV_SUB) == 1
    assert mv_units(MV_SUB + 1) == 2
    assert mv_units(np.array([0, 99, 100, 101, 250])).tolist() == [0, 1, 1, 2, 3]


def test_the_10kv_drop_is_never_below_the_exact_one_and_at_most_one_unit_per_100_above(futian):
    inst, mv = futian
    grid = LinearGrid(inst, mv, Cuts())
    exact = mv.pu_per_kw * KW_UNIT / V_UNIT  # voltage units per load unit
    assert (exact > 0).any() and exact.max() < 100  # (a real 10 kV response)
    rng = np.random.default_rng(7)
    per_entry_worse = 0
    for _ in range(200):
        src = rng.integers(0, 20_000, size=exact.shape[1]) * (rng.random(exact.shape[1]) < 0.4)
        true = exact @ src
        got = mv_units(grid.mv @ src)
        assert (got >= true - 1e-6).all()
        assert (got <= true + src.sum() / MV_SUB + 1).all()
        # each coefficient rounded up on its own (the former scaling) breaks the second bound
        coarse = np.where(exact > 0, np.ceil(exact - 1e-9), 0) @ src
        per_entry_worse += int((coarse > true + src.sum() / MV_SUB + 1).any())
    assert per_entry_worse > 150


def test_the_greedy_and_the_model_read_the_same_10kv_drop(futian):
    """The greedy's drop at every 10 kV row with its plan's loads is the fine sum rounded up, and
    the model, held at the greedy's plan, admits the same drop at every row it models and none
    smaller."""
    inst, mv = futian
    grid = LinearGrid(inst, mv, Cuts())
    order = sorted(range(len(inst.demands)), key=lambda i: (inst.demands[i].year or 0, i))
    gr = Greedy(grid)
    sol = gr.run(order, None)
    assert sum(sol.served) >= 25
    src = gr.st.src
    assert src.sum() > 0
    want = mv_units(grid.mv @ src)
    for row in range(len(want)):
        assert gr._drop(row, -1, 0) == want[row]
    mdl = PlanModel(grid)
    chosen = set(sol.chosen)
    for k, x in mdl.x.items():
        mdl.m.add(x == int(k in chosen))
    drops = {
        int(v.name[2:]): v
        for v in (mdl.m.get_int_var_from_proto_index(i) for i in range(len(mdl.m.proto.variables)))
        if v.name.startswith("MV")
    }
    assert drops
    mdl.m.minimize(sum(drops.values()))
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = 30.0
    solver.parameters.num_workers = 1
    assert solver.solve(mdl.m) == cp_model.OPTIMAL
    for row, v in drops.items():
        assert solver.value(v) == want[row], row
