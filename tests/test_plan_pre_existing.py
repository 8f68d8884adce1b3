"""The criteria's pre-existing rule in the plan: a limit broken before the plan, in the LV network a
demand is connected to, must be repaired by the plan, as ``check`` and tests/reference.py have it
(sz-futian: line 17, T4's main cable, 103.3 % at the base; trafo 6, T7, 104.9 %).

Before, a demand at bus 26 (T4 school, on the sibling branch of line 17) was planned at 0 CNY
with nothing built: line 17 went from 103.25 % to 103.83 % (the area's voltage sags), while
``lvplan check`` answers ``does_not_fit`` for the same connection (found by a hostile test)."""

from __future__ import annotations

import pytest
from reference import Reference
from test_plan import _new_violations
from test_plan_mipbound import _cost_model

import lvplan
from lvplan.kinds import ElementRef
from lvplan.planning.model import Solution
from lvplan.planning.plan import plan as make_plan
from lvplan.planning.verify import base_margin_map, check_plan, own_elements


@pytest.fixture(scope="module")
def sz():
    return lvplan.load_network("sz-futian")


@pytest.mark.parametrize("method", ["optimal", "greedy"])
def test_a_connection_beside_a_line_over_its_limit_is_planned_with_that_line_reinforced(
    tmp_path, sz, cn, method
):
    """Bus 26 is on line 17's sibling branch: its load does not pass line 17, but lowers the
    area's voltage, and line 17's existing load draws more current. The AC check finds line
    17 broken in the connection's own LV network and the plan reinforces it."""
    csv = tmp_path / "d.csv"
    csv.write_text("id,kw,category,bus\nX1,115,shop,26\n")
    p = make_plan(sz, csv, criteria=cn, method=method, time_limit_s=10)
    assert [a.demand for a in p.assignments] == ["X1"]
    assert [str(m.element) for m in p.measures] == ["line 17"]
    assert p.cost_cny == pytest.approx(108_500.0)
    assert _new_violations(p, sz, cn) == set()
    # the connection without it is refused by the judge and by check, as before the plan
    assert Reference(sz.pp, cn).decide(26, 115 * 0.7) == "does_not_fit"
    assert lvplan.check(sz, bus=26, kw=115, category="shop").decision == "does_not_fit"


def test_a_connection_whose_lv_network_has_a_bus_below_its_band_is_planned_only_lifting_it(
    tmp_path, sz
):
    """With the minimum at 379 V, bus 25 (T4 hot-pot lane, 378.9 V) is below it at the base:
    a connection in T4's LV network (X1 at bus 26) is planned only with a measure that lifts it.
    Until 2026-12-06 none did in the linear model (an upgrade's lower impedance counted only
    for the new load) and X1 was left out; now line 17's parallel cable gives today's load
    back enough: X1 is served, and in AC bus 25 is within its band after the plan."""
    import pandapower as pp

    from lvplan.planning.outputs import reinforced_json

    crit = lvplan.load_criteria("cn", lv_min_voltage_v=379.0)
    csv = tmp_path / "d.csv"
    csv.write_text("id,kw,category,bus\nX1,20,shop,26\nX2,20,shop,44\n")
    p = make_plan(sz, csv, criteria=crit, time_limit_s=10)
    assert sorted(a.demand for a in p.assignments) == ["X1", "X2"]
    assert "line 17" in [str(m.element) for m in p.measures]
    assert Reference(sz.pp, crit).decide(26, 20 * 0.7) == "does_not_fit"
    assert _new_violations(p, sz, crit) == set()
    net = pp.from_json_string(reinforced_json(p, sz))
    pp.runpp(net)
    assert net.res_bus.vm_pu[25] * 400 >= 379.0
    inst = p.instance
    (k,) = [k for k, o in enumerate(inst.options) if inst.demands[o.demand].id == "X1"]
    _ev, broken = check_plan(
        sz, inst, Solution.of(inst, [k], [], [], "x"), base_margin_map(sz, crit)
    )
    assert "bus 25" in {b.element for b in broken}  # (without the measure: refused in AC)


def test_a_connection_beyond_the_broken_line_or_under_the_broken_transformer_repairs_it(
    tmp_path, sz, cn
):
    """Bus 24 lies beyond line 17 and bus 44 under trafo 6: connecting there loads the
    element over its limit, so the plan reinforces it, and the judge finds the connections'
    LV networks within every limit afterwards."""
    csv = tmp_path / "d.csv"
    csv.write_text("id,kw,category,bus\nY1,60,shop,24\nY2,60,shop,44\n")
    p = make_plan(sz, csv, criteria=cn, time_limit_s=10)
    assert sorted(a.demand for a in p.assignments) == ["Y1", "Y2"]
    built = {str(m.element): m for m in p.measures}
    assert "line 17" in built and "trafo 6" in built
    assert "103.3 % at the base" in built["line 17"].reason
    assert _new_violations(p, sz, cn) == set()


def test_the_ac_check_counts_a_broken_limit_in_a_connections_own_lv_network(tmp_path, sz, cn):
    """A connection beyond line 17 with nothing built: line 17 was over its limit before, so
    elsewhere it would be the base's; in the connection's own LV network it is broken."""
    mdl = _cost_model(sz, "id,kw,category,bus\nY1,60,shop,24\n", tmp_path, cn)
    inst = mdl.inst
    (k,) = [k for k, o in enumerate(inst.options) if o.bus == 24]
    bare = Solution.of(inst, [k], [], [], "feasible")
    own = own_elements(sz, inst, bare)
    assert ElementRef("line", 17) in own and ElementRef("trafo", 6) not in own
    base = base_margin_map(sz, cn)
    _ev, broken = check_plan(sz, inst, bare, base)
    assert "line 17" in {b.element for b in broken}
    assert all(b.element != "trafo 6" for b in broken)  # (T7's: not this connection's)
    _ev, nothing = check_plan(sz, inst, Solution.of(inst, [], [], [], "feasible"), base)
    assert nothing == []


@pytest.mark.parametrize("method", ["greedy", "optimal"])
def test_line_17_is_built_for_the_demand_of_its_own_lv_network_only(tmp_path, sz, cn, method):
    """B1 (bus 12, T2's LV network on the same 10 kV feeder) and X1 (bus 26, beside line 17):
    line 17's repair is X1's alone, and the plan costs B1's plan + line 17's 108,500 CNY. (The
    sensitivity cut made first held every option of the feeder that lowers line 17's margin
    at all: the repair was listed as B1's, and would have been B1's to pay alone.)"""
    one, both = tmp_path / "b.csv", tmp_path / "ab.csv"
    one.write_text("id,kw,category,bus\nB1,60,shop,12\n")
    both.write_text("id,kw,category,bus\nB1,60,shop,12\nX1,115,shop,26\n")
    alone = make_plan(sz, one, criteria=cn, method=method, time_limit_s=10)
    p = make_plan(sz, both, criteria=cn, method=method, time_limit_s=10)
    line17 = [m for m in p.measures if str(m.element) == "line 17"]
    assert [m.demands for m in line17] == [["X1"]]
    assert p.cost_cny == pytest.approx(alone.cost_cny + 108_500.0)
    assert _new_violations(p, sz, cn) == set()


def test_a_limit_broken_before_the_plan_cuts_the_options_of_its_lv_network_only(tmp_path, sz, cn):
    """T4's busbar over its maximum before the plan, raised: the cut holds the options at T4's
    buses (each 1 pu against 0.5), none elsewhere (a sensitivity cut found no option that
    lowers an over-voltage: it cut nothing, and the same plan came back)."""
    from lvplan.kinds import BindingKind
    from lvplan.planning.linear import Cuts
    from lvplan.planning.verify import Broken, tighten

    mdl = _cost_model(sz, "id,kw,category,bus\nY1,60,shop,24\nB1,60,shop,12\n", tmp_path, cn)
    inst = mdl.inst
    at = {o.bus: k for k, o in enumerate(inst.options)}
    sol = Solution.of(inst, [at[24], at[12]], [], [], "feasible")
    ev, _broken = check_plan(sz, inst, sol, base_margin_map(sz, cn))
    over = Broken(BindingKind.VOLTAGE, "bus 22", "T4 LV board", "max", -0.003, -0.002)
    cuts = Cuts()
    notes = tighten(sz, inst, sol, ev, [over], cuts)
    ((coefs, rhs),) = cuts.linear
    assert coefs == {at[24]: 1.0} and rhs == 0.5 and cuts.relief == [()]
    assert "broken before the plan" in notes[-1]


def test_a_limit_broken_before_the_plan_withdraws_the_connections_of_its_lv_network(
    tmp_path, sz, cn
):
    """Line 17 left over its limit: the connections withdrawn for it are those in T4's LV
    network (Y1), not B1 on the same feeder, whose load only adds to line 17's current (the
    withdrawal by sensitivities covered twice the whole excess, mostly the base's: every
    connection that lowers the margin at all)."""
    from lvplan.planning.withdraw import implicated

    mdl = _cost_model(sz, "id,kw,category,bus\nY1,60,shop,26\nB1,60,shop,12\n", tmp_path, cn)
    inst = mdl.inst
    at = {o.bus: k for k, o in enumerate(inst.options)}
    sol = Solution.of(inst, [at[26], at[12]], [], [], "feasible")
    ev, broken = check_plan(sz, inst, sol, base_margin_map(sz, cn))
    (b17,) = [b for b in broken if b.element == "line 17"]
    assert b17.base_margin is not None and b17.base_margin < 0
    out = implicated(sz, inst, sol, [b17], ev.net)
    assert {inst.demands[i].id for i in out} == {"Y1"}


def test_a_repair_built_too_small_is_lifted_by_a_larger_one_only(tmp_path, sz, cn):
    """Line 17 reinforced and still over in AC: the cut on T4's options is lifted by line 17's
    larger reinforcements (room for the excess on the one built), not left without a lift,
    which closed T4 for good."""
    from lvplan.planning.measures import LINE_KINDS
    from lvplan.planning.verify import SAFE_LOADING, _larger

    mdl = _cost_model(sz, "id,kw,category,bus\nY1,60,shop,24\n", tmp_path, cn)
    inst = mdl.inst
    ups = sorted(
        (u for u, up in enumerate(inst.upgrades) if up.element == 17 and up.kind in LINE_KINDS),
        key=lambda u: inst.upgrades[u].capacity,
    )
    assert len(ups) >= 2
    (k,) = [k for k, o in enumerate(inst.options) if o.bus == 24]
    small = ups[0]
    sol = Solution.of(inst, [k], [small], [], "feasible")
    lift = _larger(inst, sol, False, 17, 0.05)
    need = inst.upgrades[small].capacity * (1.0 + 0.05 + SAFE_LOADING)
    want = [u for u in ups[1:] if inst.upgrades[u].capacity >= need]
    assert list(lift) == want and want and small not in lift
    assert _larger(inst, Solution.of(inst, [k], [], [], "feasible"), False, 17, 0.05) == ()


def test_an_n1_section_beyond_every_upgrade_is_lifted_by_the_largest(tmp_path, sz, cn):
    """An N-1 cut on a section so far over that no upgrade has room for the round's whole load
    (sz-futian's line 26 at 200.7 % after a transfer; its parallel cable doubles it) held the
    section as it is for good: the loop's N-1 demands were refused (40 of sz-futian's mixed
    300). With ``or_largest`` (the N-1 cuts) it is lifted by the largest upgrades; other cuts
    keep no relief."""
    from lvplan.planning.measures import LINE_KINDS
    from lvplan.planning.verify import _relief

    mdl = _cost_model(sz, "id,kw,category,bus\nY1,60,shop,24\n", tmp_path, cn)
    inst = mdl.inst
    ups = [u for u, up in enumerate(inst.upgrades) if up.element == 17 and up.kind in LINE_KINDS]
    top = max(inst.upgrades[u].capacity for u in ups)
    sol = Solution.of(inst, [], [], [], "feasible")
    excess = 50.0  # 5,000 % over: beyond every upgrade
    assert _relief(inst, sol, False, 17, excess, times=1.0) == ()
    lift = _relief(inst, sol, False, 17, excess, times=1.0, or_largest=True)
    assert lift and {inst.upgrades[u].capacity for u in lift} == {top}
    fits = _relief(inst, sol, False, 17, 0.01, times=1.0, or_largest=True)
    assert set(fits) == set(_relief(inst, sol, False, 17, 0.01, times=1.0)) and len(fits) > 1


def test_a_plan_says_which_limits_broken_elsewhere_before_it_it_makes_worse(tmp_path, sz, cn):
    """Two demands on T1's and T5's busbars: their areas hold no broken limit, so the plan
    repairs nothing, but their load lowers the 10 kV voltage, and line 17 (T4, 103.25 % at the
    base) and T7 (104.88 %) carry more. The criteria leave both out of the decision; the plan
    lists them (summary.json ``pre_existing_elsewhere``) with the values before and after, each
    after as the AC evaluation of the plan has it; nothing of its own areas is listed."""
    from lvplan.evaluation import evaluate

    csv = tmp_path / "d.csv"
    csv.write_text("id,kw,category,bus\nX1,160,shop,3\nX2,160,shop,28\n")
    p = make_plan(sz, csv, criteria=cn, method="greedy", time_limit_s=10)
    assert len(p.assignments) == 2
    worse = {w["element"]: w for w in p.summary()["pre_existing_elsewhere"]}
    assert set(worse) == {"line 17", "trafo 6"}
    st, base = evaluate(sz, p.changes, cn).state, sz.base_state()
    # (each group's load flow is the whole network's: planning/islands.py keeps the F1-F2
    # tie's charging in F1's group, without which line 17 read 103.2531 % before the plan)
    assert worse["line 17"]["before"] == pytest.approx(base.line_loading_percent[17], abs=1e-4)
    assert worse["line 17"]["before"] == pytest.approx(103.2516, abs=1e-4)
    assert worse["line 17"]["after"] == pytest.approx(st.line_loading_percent[17], abs=1e-4)
    assert worse["trafo 6"]["before"] == pytest.approx(base.trafo_loading_percent[6], abs=1e-4)
    assert worse["trafo 6"]["after"] == pytest.approx(st.trafo_loading_percent[6], abs=1e-4)
    assert all(w["after"] > w["before"] and w["limit"] == 100.0 for w in worse.values())
    own = {str(e) for e in own_elements(sz, p.instance, p.solution)}
    assert not own & set(worse)
    # a plan that connects nothing makes nothing worse
    none = tmp_path / "none.csv"
    none.write_text("id,kw,category,bus\nH1,5000,shop,3\n")  # (an HV customer: unserved)
    assert make_plan(sz, none, criteria=cn, method="greedy").worse_elsewhere == []
