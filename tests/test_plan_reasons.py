"""What plan.csv and unserved.csv say of each measure and each unserved demand: true, and as
it was found (the AC check, the budget, a contingency that fails already)."""

from __future__ import annotations

import pytest

from lvplan.planning import plan as plan_mod
from lvplan.planning.linear import Cuts
from lvplan.planning.plan import plan as make_plan


@pytest.fixture(scope="module")
def hand_opt(hand, hand_csv, cn):
    return make_plan(hand, hand_csv, criteria=cn, time_limit_s=10)


def test_a_transformer_measure_the_ac_check_found_says_so(hand, hand_opt):
    """A unit whose capacity the AC check cut (T1 loaded 100.5 % in a round's plan) names the
    AC check and the loading it found, and keeps its first user's year (2026): its need is not
    dated by the linear model."""
    p = hand_opt
    cuts = Cuts(trafo_kw={0: 12.0}, found={"trafo 0": 100.5})
    out = plan_mod._result(hand, p.instance, p.solution, None, "optimal", cuts)
    (m,) = out.measures
    assert m.reason.startswith(
        "transformer loading (found by the AC check: 100.50 % loaded in an earlier round's plan, "
        "limit 100 %; the model's capacity cut by 12 kW): 0 kVA-equivalent at the base + 360 kW"
    ), m.reason
    assert m.year == 2026 and "built in 2026, its first demand's year" in m.reason
    # without the cut: the linear model's own reason, dated by need
    (m,) = plan_mod._result(hand, p.instance, p.solution, None, "optimal", Cuts()).measures
    assert m.reason.startswith("transformer loading: 0 kVA-equivalent"), m.reason
