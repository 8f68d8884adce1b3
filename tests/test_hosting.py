"""Hosting capacity (issue 3): the accuracy contract against an independent full-AC judge,
consistency with `check`, and the hand-worked feeder.

Contract: at every tested bus, adding `hosting_kw` fits in pandapower's full AC load flow (as
judged by tests/reference.py, which uses no lvplan code), and adding
`hosting_kw + max(1 kW, 1 %)` does not (unless the value is the cap).
"""

from __future__ import annotations

import numpy as np
import pandapower as pp
import pytest
from reference import Reference
from test_agreement import HELD_OUT
from test_hand_feeder import binding_kw

import lvplan
from lvplan.hosting import COLUMNS, hosting_capacity
from lvplan.model.network import Network


def _margin(h: float) -> float:
    return max(1.0, 0.01 * h)


def assert_contract(pp_net, crit, df, n: int | None = None, seed: int = 3) -> int:
    """The two-sided contract at ``n`` sampled buses (all when None); returns buses checked.
    ``pp_net`` is the network as given (a copy lvplan never held, not ``network.pp``)."""
    ref = Reference(pp_net, crit)
    rows = df if n is None or n >= len(df) else df.sample(n, random_state=seed)
    for r in rows.itertuples(index=False):
        h = float(r.hosting_kw)
        if h > 0:
            assert ref.decide(int(r.bus), h) == "fits", f"overestimate at bus {r.bus}: {h} kW"
        if r.binding_kind != "cap":
            assert ref.decide(int(r.bus), h + _margin(h)) != "fits", (
                f"not tight at bus {r.bus}: {h} kW + {_margin(h):.2f} still fits ({r.binding_kind})"
            )
    return len(rows)


@pytest.fixture(scope="module")
def sz_map(sz, cn):
    return hosting_capacity(sz, criteria=cn).table


@pytest.fixture(scope="module")
def urban_map(urban, cn):
    """The district's map, made once for the contract and the check below. In this process:
    local worker processes give the same table, frame for frame
    (test_hosting_run.py::test_local_processes_give_the_same_table), and starting two cost
    more than the 2 s the map takes."""
    return hosting_capacity(urban, criteria=cn).table


def test_table_has_the_documented_columns_and_every_lv_bus(sz, sz_map):
    assert list(sz_map.columns) == COLUMNS
    lv = sz.pp.bus.index[sz.pp.bus.vn_kv < 1]
    assert sorted(sz_map.bus) == sorted(lv)
    assert sz_map.bus.is_unique
    assert sz_map.lon.notna().all() and sz_map.lat.notna().all()


def test_contract_at_every_bus_of_the_district(sz_pristine, cn, sz_map):
    assert assert_contract(sz_pristine, cn, sz_map) == 41


def test_pre_existing_rule_and_binding_elements(sz_map):
    by_name = sz_map.set_index("name")
    # T4 has an overloaded cable (line 17, 103 %) and T7 an overloaded transformer (104.9 %)
    t4 = sz_map[sz_map.transformer.str.startswith("T4")]
    assert len(t4) == 5 and (t4.hosting_kw == 0).all()
    assert set(t4.binding_kind) == {"pre_existing"} and set(t4.binding_element) == {"line 17"}
    t7 = sz_map[sz_map.transformer.str.startswith("T7")]
    assert (t7.hosting_kw == 0).all() and set(t7.binding_element) == {"trafo 6"}
    # the towers behind T3 sit on a nearly full cable: a few kW only, the cable binds
    assert by_name.at["T3 tower A", "binding_element"] == "line 11"
    assert 3.0 < by_name.at["T3 tower A", "hosting_kw"] < 6.0
    # the LV board of T8 is limited by its transformer, a long way above the far buses
    assert by_name.at["T8 LV board", "binding_kind"] == "transformer"
    assert by_name.at["T8 LV board", "hosting_kw"] > by_name.at["T8 clinic", "hosting_kw"] + 100


def test_limits_outside_the_area_bind_and_hold(sz, sz_pristine, sz_map):
    """MV voltages and other areas' buses are limits too: tighten them until they bind."""
    base = sz.base_state()
    vn = sz.pp.bus.vn_kv.to_numpy()
    mv_min = float(np.nanmin(base.vm_pu[vn > 1]))
    crit = lvplan.load_criteria("cn", mv_min_voltage_pu=round(mv_min - 0.0003, 6))
    df = hosting_capacity(sz, criteria=crit).table
    mv_bound = df[
        (df.binding_kind == "voltage")
        & df.binding_element.isin([f"bus {b}" for b in sz.pp.bus.index[vn > 1]])
    ]
    assert len(mv_bound) >= 3
    assert (df.hosting_kw <= sz_map.hosting_kw + 1e-9).all()
    assert_contract(sz_pristine, crit, df)
    lv_min = float(np.nanmin(base.vm_pu[vn < 1] * vn[vn < 1] * 1000.0))
    crit2 = lvplan.load_criteria("cn", lv_min_voltage_v=round(lv_min - 0.05, 3))
    df2 = hosting_capacity(sz, criteria=crit2).table
    # the weakest bus (in T4's area) now limits buses of other areas on the same feeder
    foreign = df2[
        (df2.binding_kind == "voltage")
        & ~df2.transformer.str.startswith("T4")
        & (df2.binding_element == "bus 25")
    ]
    assert len(foreign) >= 2
    assert_contract(sz_pristine, crit2, df2)


def test_contract_holds_for_large_loads(sz, sz_pristine):
    crit = lvplan.load_criteria(
        "cn", trafo_max_loading_percent=300, line_max_loading_percent=400, lv_min_voltage_v=330
    )
    df = hosting_capacity(sz, criteria=crit, max_kw=2000).table
    assert df.hosting_kw.max() > 1000
    assert assert_contract(sz_pristine, crit, df) == 41


def test_cap_and_power_factor(sz, cn, sz_map):
    capped = hosting_capacity(sz, criteria=cn, max_kw=5).table
    free = sz_map.hosting_kw >= 5
    assert (capped.hosting_kw[free] == 5).all()
    assert (capped.binding_kind[free] == "cap").all()
    unity = hosting_capacity(sz, criteria=cn, pf=1.0).table
    # a unity-pf load draws less current and drops less voltage for the same kW
    open_ = sz_map.hosting_kw > 0
    assert (unity.hosting_kw[open_] > sz_map.hosting_kw[open_]).all()


def test_hand_feeder_value():
    net = pp.create_empty_network()
    b0, b1, b2 = (pp.create_bus(net, 0.4, name=f"bus {i}") for i in range(3))
    pp.create_ext_grid(net, b0, vm_pu=1.0)
    pp.create_line_from_parameters(net, b0, b1, 0.3, 0.090, 0.077, 0.0, 0.430)
    pp.create_line_from_parameters(net, b1, b2, 0.4, 0.148, 0.080, 0.0, 0.330)
    df = hosting_capacity(Network(net, name="hand feeder", source="test")).table.set_index("bus")
    # the paper's 145.77 kW, found from below within the search tolerance (0.2 %) and safety
    assert binding_kw() - 0.5 <= df.at[2, "hosting_kw"] <= binding_kw()
    assert df.at[2, "binding_kind"] == "voltage" and df.at[2, "binding_element"] == "bus 2"
    assert df.at[0, "binding_kind"] == "cap"  # the slack bus itself


def test_an_lv_slack_bus_is_closed_by_a_limit_its_network_broke_before(cn):
    """The hand feeder with its far line rated below its base current: every bus of that LV
    network is closed by the pre-existing rule, the slack bus too (it was given the cap,
    1000 kW, where check and the judge say nothing fits: probe, 2026-12-08)."""
    net = pp.create_empty_network()
    b0, b1, b2 = (pp.create_bus(net, 0.4, name=f"bus {i}") for i in range(3))
    pp.create_ext_grid(net, b0, vm_pu=1.0)
    pp.create_line_from_parameters(net, b0, b1, 0.3, 0.090, 0.077, 0.0, 0.430)
    pp.create_line_from_parameters(net, b1, b2, 0.4, 0.148, 0.080, 0.0, 0.330)
    pp.create_load(net, b2, p_mw=0.2, q_mvar=0.05)  # (about 0.31 kA on a line rated 0.25)
    net.line.at[1, "max_i_ka"] = 0.25
    network = Network(net, name="hand feeder over", source="test")
    df = hosting_capacity(network, criteria=cn).table.set_index("bus")
    assert df.hosting_kw.tolist() == [0.0, 0.0, 0.0]
    assert set(df.binding_kind) == {"pre_existing"} and set(df.binding_element) == {"line 1"}
    assert lvplan.check(network, bus=b0, kw=10, criteria=cn).decision.value == "does_not_fit"


@pytest.mark.parametrize("name", sorted(HELD_OUT))
def test_contract_on_held_out_grids(name, cn):
    network, pristine = HELD_OUT[name]()
    df = hosting_capacity(network, criteria=cn).table
    lv = network.pp.bus.index[(network.pp.bus.vn_kv < 1) & network.live.bus]
    assert len(df) == len(lv)
    assert assert_contract(pristine, cn, df, n=20) == 20


def test_contract_on_the_urban_district(urban_map, urban_pristine, cn):
    df = urban_map
    assert len(df) == 10314
    assert df.hosting_kw.between(0, 1000).all()
    assert assert_contract(urban_pristine, cn, df, n=25) == 25


def test_consistent_with_check(sz, urban, cn, sz_map, urban_map):
    """check(kw = hosting) fits and check(kw = hosting + margin) does not, by check's own path
    (fast engine, full AC near a limit). The LV policy limit is lifted: it answers hv_required
    above 160 kW whatever the network can carry."""
    crit = lvplan.load_criteria("cn", lv_policy_max_kw=5000)
    for network, df, n in ((sz, sz_map, 41), (urban, urban_map, 12)):
        rows = df[df.hosting_kw > 0].sample(min(n, int((df.hosting_kw > 0).sum())), random_state=5)
        for r in rows.itertuples(index=False):
            h = float(r.hosting_kw)
            kw = dict(category="generic", pf=0.9, criteria=crit, headroom=False)
            assert lvplan.check(network, bus=int(r.bus), kw=h, **kw).decision == "fits"
            after = lvplan.check(network, bus=int(r.bus), kw=h + _margin(h), **kw)
            assert after.decision == "does_not_fit"
            assert after.binding.kind == r.binding_kind


def test_fast_engine_area_solve_matches_pandapower_at_the_limit(sz, cn, sz_map):
    """The per-area solver's own state at the hosting value against pandapower's, at 5 buses."""
    from lvplan.hosting.area import _Solver
    from lvplan.hosting.build import prepare
    from lvplan.model.network import ExtraLoad

    prep = prepare(sz, cn, pf=0.9)
    tan = float(np.tan(np.arccos(0.9)))
    checked = 0
    for p in prep.problems:
        if p.blocked is not None:
            continue
        s = _Solver(p, tan)
        b = int(p.buses[-1])
        h = float(sz_map.set_index("bus").at[b, "hosting_kw"])
        V, _VR, _d, ok = s.run(p.bus_pos[-1:], np.array([h]))
        assert ok[0]
        ac = sz.run_ac_with([ExtraLoad(b, h / 1000.0, h * tan / 1000.0)]).state
        vm_fast = np.abs(V[p.bus_pos, 0])
        vm_ac = ac.vm_pu[[sz.bus_row(int(x)) for x in p.buses]]
        assert np.max(np.abs(vm_fast - vm_ac)) < 1e-6
        checked += 1
    assert checked == 6
