"""The exact AC load flow (FastEngine.exact) and reservations that move the base, against
pandapower's own load flow with the same loads added.

pandapower's tolerance for the reference is 1e-9 (RUNPP_OPTIONS); two converged solutions of the
same equations differ by about that much, so the bounds below are 1e-8 pu and 1e-5 % (the band
that sends a check to the exact load flow is 5e-4 pu and 0.2 %).
"""

from __future__ import annotations

import numpy as np
import pandapower.networks as pn
import pytest

import lvplan
from lvplan.decision import LOADING_BAND_PERCENT, VOLTAGE_BAND_PU
from lvplan.model.network import ExtraLoad, Network
from lvplan.powerflow.fast import FastEngineDiverged, ServiceCable
from lvplan.powerflow.state import GridState

TAN = float(np.tan(np.arccos(0.9)))


def _diff(a: GridState, b: GridState) -> tuple[float, float]:
    ok = np.isfinite(b.vm_pu)
    assert np.array_equal(ok, np.isfinite(a.vm_pu))
    dv = float(np.max(np.abs(a.vm_pu[ok] - b.vm_pu[ok])))
    dl = 0.0
    for x, y in (
        (a.line_loading_percent, b.line_loading_percent),
        (a.trafo_loading_percent, b.trafo_loading_percent),
    ):
        m = np.isfinite(y)
        assert np.array_equal(m, np.isfinite(x))
        dl = max(dl, float(np.max(np.abs(x[m] - y[m]), initial=0.0)))
    return dv, dl


def _lv(network: Network) -> np.ndarray:
    net = network.pp
    return net.bus.index[(net.bus.vn_kv < 1) & network.live.bus].to_numpy()


def _exact_state(network: Network, loads) -> tuple[GridState, int]:
    eng = network.fast_engine()
    res = eng.exact([(b, p, q, None) for b, p, q in loads])
    return eng._state(res.V), res.iterations


@pytest.mark.parametrize(
    "make, n, max_kw",
    [
        (lambda: lvplan.load_network("simbench-urban"), 30, 60.0),
        (
            lambda: Network(pn.example_multivoltage(), name="mv", source="pandapower.networks"),
            8,
            10.0,
        ),
        (
            lambda: Network(
                pn.lv_schutterwald(), name="schutterwald", source="pandapower.networks"
            ),
            30,
            60.0,
        ),
    ],
    ids=["urban", "example_multivoltage", "lv_schutterwald"],
)
def test_exact_load_flow_equals_pandapower(make, n, max_kw):
    """``n`` loads at once, from the base (a cold start): the same state as pandapower's. The
    multivoltage example has a voltage-controlled generator, an extended ward, a three-winding
    transformer and an impedance element, which pandapower's internal model carries."""
    network = make()
    rng = np.random.default_rng(4)
    lv = _lv(network)
    kws = rng.uniform(max_kw / 10, max_kw, n)
    loads = [
        (int(b), float(k) / 1000, float(k) * TAN / 1000)
        for b, k in zip(rng.choice(lv, n), kws, strict=True)
    ]
    exact, iterations = _exact_state(network, loads)
    ac = network.run_ac_with([ExtraLoad(b, p, q) for b, p, q in loads]).state
    dv, dl = _diff(exact, ac)
    assert dv < 1e-8 and dl < 1e-5, (dv, dl)
    assert iterations >= 2  # a real solve, not the base handed back


def test_exact_with_a_service_cable_equals_pandapower(urban):
    from lvplan.decision import _service_cable, choose_service_cable

    eng = urban.fast_engine()
    bus = int(_lv(urban)[500])
    cable = choose_service_cable(120.0, 120.0 * TAN, 180.0)
    sc = _service_cable(urban, bus, cable)
    assert isinstance(sc, ServiceCable)
    got = eng.exact_state(bus, 0.12, 0.12 * TAN, sc, None)
    ac = urban.run_ac_with(
        [
            ExtraLoad(
                bus,
                0.12,
                0.12 * TAN,
                cable.length_m / 1000,
                cable.r_ohm_per_km,
                cable.x_ohm_per_km,
                cable.max_i_ka,
            )
        ]
    )
    dv, dl = _diff(got.state, ac.state)
    assert dv < 1e-8 and dl < 1e-5
    assert got.customer_vm_pu == pytest.approx(ac.customer_vm_pu, abs=1e-8)
    assert got.cable_loading_percent == pytest.approx(ac.cable_loading_percent, abs=1e-5)
    assert ac.customer_vm_pu < urban.base_state().vm_pu[urban.bus_row(bus)] - 1e-3


def test_exact_reports_a_load_with_no_solution(sz):
    eng = sz.fast_engine()
    with pytest.raises(FastEngineDiverged):
        eng.exact([(int(_lv(sz)[-1]), 50.0, 20.0, None)])


def test_reservations_move_the_base_exactly_and_release_restores_it(urban):
    """Forty approvals one by one (each warm-started from its own check, as the desk does),
    then ten withdrawals: the base is pandapower's with the same loads, every time checked."""
    net = lvplan.load_network("simbench-urban")
    pristine = net.base_state()
    eng = net.fast_engine()
    rng = np.random.default_rng(8)
    lv = _lv(net)
    loads = {}
    for k, (b, kw) in enumerate(zip(rng.choice(lv, 40), rng.uniform(10, 120, 40), strict=True)):
        e = ExtraLoad(int(b), float(kw) / 1000, float(kw) * TAN / 1000)
        eng.solve(e.bus, e.p_mw, e.q_mvar)  # the check before the approval
        assert net.reserve({f"a{k}": e}) == "exact"
        loads[f"a{k}"] = e
    assert net.base_state().engine == "newton"
    ref = Network(net.pp, name="ref", source="test")
    dv, dl = _diff(net.base_state(), ref.run_ac_with(list(loads.values())).state)
    assert dv < 1e-8 and dl < 1e-5, (dv, dl)
    gone = [f"a{k}" for k in range(0, 40, 4)]
    assert net.release(gone) == "exact"
    kept = [e for k, e in loads.items() if k not in gone]
    dv, dl = _diff(net.base_state(), ref.run_ac_with(kept).state)
    assert dv < 1e-8 and dl < 1e-5, (dv, dl)
    net.release([k for k in loads if k not in gone])
    dv, dl = _diff(net.base_state(), pristine)
    assert dv < 1e-8 and dl < 1e-5
    assert net.reserved == {}


def test_the_fast_engine_stays_inside_the_band_after_many_reservations(urban):
    """The fast path keeps the linear response of the pristine base; 60 reservations later
    (5 MW) its difference from pandapower must still be a small part of the band that sends a
    case to the exact load flow."""
    net = lvplan.load_network("simbench-urban")
    rng = np.random.default_rng(21)
    lv = _lv(net)
    loads = {
        f"r{k}": ExtraLoad(int(b), float(kw) / 1000, float(kw) * TAN / 1000)
        for k, (b, kw) in enumerate(zip(rng.choice(lv, 60), rng.uniform(40, 120, 60), strict=True))
    }
    for key, e in loads.items():
        net.reserve({key: e})
    eng = net.fast_engine()
    assert eng.relinearisations >= 1  # the base drifted past RELINEARISE_DRIFT_PU
    worst_v = worst_l = 0.0
    for b in rng.choice(lv, 6):
        fast = eng.solve(int(b), 0.08, 0.08 * TAN).state
        ac = net.run_ac_with([ExtraLoad(int(b), 0.08, 0.08 * TAN)]).state
        dv, dl = _diff(fast, ac)
        worst_v, worst_l = max(worst_v, dv), max(worst_l, dl)
    assert worst_v < 0.1 * VOLTAGE_BAND_PU, worst_v
    assert worst_l < 0.1 * LOADING_BAND_PERCENT, worst_l


def test_voltage_dependent_loads_reserve_through_pandapower():
    net = pn.create_kerber_landnetz_kabel_2()
    net.load["const_z_p_percent"] = 50.0
    net.load["const_z_q_percent"] = 50.0
    network = Network(net, name="k", source="pandapower.networks")
    bus = int(_lv(network)[-1])
    e = ExtraLoad(bus, 0.01, 0.004)
    assert network.reserve({"x": e}) == "pandapower"
    ref = Network(net, name="ref", source="test")
    dv, dl = _diff(network.base_state(), ref.run_ac_with([e]).state)
    assert dv < 1e-12 and dl < 1e-10
    d = lvplan.check(network, bus=bus, kw=5, headroom=False)
    assert d.engine == "pandapower"


def test_near_limit_decisions_are_exact(urban, urban_pristine, cn):
    """A check within the band of its limit is decided by the exact load flow, whose state is
    pandapower's (a false fits there would be a few watts away, not a band away)."""
    from reference import Reference

    ref = Reference(urban_pristine, cn)
    bus = int(_lv(urban)[2000])
    h = lvplan.check(urban, bus=bus, kw=1.0, criteria=cn).headroom_kw
    assert h is not None and 5 < h < 999
    for kw in (h + 1.0 - 0.05, h + 1.0 + 0.05):
        d = lvplan.check(urban, bus=bus, kw=kw, criteria=cn, headroom=False)
        assert d.engine == "newton"
        assert d.decision == ref.decide(bus, d.design_kw)  # the independent AC judge agrees
        p = d.design_kw / 1000
        ac = urban.run_ac_with([ExtraLoad(bus, p, d.design_kvar / 1000)]).state
        st = urban.fast_engine().exact_state(bus, p, d.design_kvar / 1000, None, None).state
        dv, dl = _diff(st, ac)
        assert dv < 1e-8 and dl < 1e-5


def test_jacobian_pattern_equals_pandapowers_jacobian(urban):
    """The fixed-pattern Jacobian against pandapower's dSbus_dV at a point away from the base."""
    import scipy.sparse as sp
    from pandapower.pypower.dSbus_dV import dSbus_dV

    from lvplan.powerflow.jacobian import JacobianPattern

    eng = urban.fast_engine()
    V = eng.V0 * 1.01 * np.exp(0.02j)
    pvpq, pq = np.r_[eng.pv, eng.pq], eng.pq
    dVm, dVa = dSbus_dV(eng.Ybus, V)
    ref = sp.vstack(
        [
            sp.hstack([dVa[pvpq][:, pvpq].real, dVm[pvpq][:, pq].real]),
            sp.hstack([dVa[pq][:, pvpq].imag, dVm[pq][:, pq].imag]),
        ]
    ).tocsc()
    got = JacobianPattern(eng.Ybus, eng.pv, eng.pq).csc(V)
    assert got.shape == ref.shape
    assert abs(got - ref).max() < 1e-9 * abs(ref).max()


def test_klu_and_superlu_agree_and_a_refactor_leaves_the_old_factor_alone(urban):
    from lvplan.powerflow.jacobian import JacobianPattern
    from lvplan.powerflow.sparse_lu import SparseLU, default_backend

    eng = urban.fast_engine()
    pattern = JacobianPattern(eng.Ybus, eng.pv, eng.pq)
    b = np.random.default_rng(0).standard_normal((pattern.shape[0], 3))
    v1, v2 = pattern.values(eng.V0), pattern.values(eng.V0 * 0.97 * np.exp(0.05j))
    slu = SparseLU.of(pattern, v1, backend="superlu")
    x1 = slu.solve(b)
    assert np.abs(x1 - SparseLU.of(pattern, v2, backend="superlu").solve(b)).max() > 1e-6
    if default_backend() != "klu":
        pytest.skip("kvxopt (KLU) is not installed")
    klu = SparseLU.of(pattern, v1, backend="klu")
    assert np.abs(klu.solve(b) - x1).max() < 1e-9 * np.abs(x1).max()
    klu2 = klu.refactored(v2)
    assert np.abs(klu.solve(b[:, 0]) - x1[:, 0]).max() < 1e-9 * np.abs(x1).max()
    x2 = SparseLU.of(pattern, v2, backend="superlu").solve(b)
    assert np.abs(klu2.solve(b) - x2).max() < 1e-9 * np.abs(x2).max()
