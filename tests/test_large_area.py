"""A large LV area (issue 10): the sparse area solve against the dense one and against pandapower.

``ieee_european_lv_asymmetric``: one transformer area of 906 LV buses (55 of them loaded), above
``DENSE_MAX_BUSES``, so the fast engine and the map solve it with a sparse LU of ``Y_LL`` and the
map iterates on its loaded buses alone (``_Solver._run_reduced``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandapower.networks as pn
import pytest
from test_hosting import assert_contract

import lvplan
from lvplan.hosting import hosting_capacity
from lvplan.hosting.area import _Solver
from lvplan.hosting.build import prepare
from lvplan.model.network import ExtraLoad, Network
from lvplan.powerflow.area_lu import DENSE_MAX_BUSES, AreaSolver

TAN = float(np.tan(np.arccos(0.9)))


@pytest.fixture(scope="module")
def ieee():
    net = Network(pn.ieee_european_lv_asymmetric(), name="ieee-eu-lv", source="pandapower")
    net.base_state()
    return net


@pytest.fixture(scope="module")
def en():
    return lvplan.load_criteria("en50160", lv_policy_max_kw=5000)


def _buses(net: Network, n: int = 6) -> list[int]:
    lv = net.pp.bus.index[(net.pp.bus.vn_kv < 1) & net.live.bus].to_numpy()
    return [int(b) for b in np.random.default_rng(4).choice(lv, n, replace=False)]


def test_engine_sparse_and_dense_area_solutions_agree(ieee):
    eng = ieee.fast_engine()
    for b in _buses(ieee):
        _ib, a, k = eng._locate(b)
        assert a.L.size > DENSE_MAX_BUSES and not a.solver.dense
        dense = replace(a, solver=AreaSolver(a.solver.Y_LL, a.solver.Y_LR, dense=True))
        V_R = eng.V0[a.R] * (1 - 2e-3)  # roots moved, as by the MV response
        s = complex(0.08, 0.08 * TAN) / eng.baseMVA
        V_s, vc_s, _ = eng._solve_area(a, V_R, k, s, None, eng.V0[a.L])
        V_d, vc_d, _ = eng._solve_area(dense, V_R, k, s, None, eng.V0[a.L])
        assert np.max(np.abs(V_s - V_d)) < 1e-10
        assert abs(vc_s - vc_d) < 1e-10


def test_engine_on_the_large_area_matches_pandapower(ieee):
    eng = ieee.fast_engine()
    for b in _buses(ieee, 3):
        p = 0.05
        res = eng.solve(b, p, p * TAN, remember=False)
        ac = ieee.run_ac_with([ExtraLoad(b, p, p * TAN)]).state
        ok = np.isfinite(ac.vm_pu)
        # the fast engine: the area exact, the MV side by the linear response (README: 5.3e-6)
        assert np.max(np.abs(res.state.vm_pu[ok] - ac.vm_pu[ok])) < 1e-6
        for f in ("line_loading_percent", "trafo_loading_percent"):
            assert np.nanmax(np.abs(getattr(res.state, f) - getattr(ac, f))) < 1e-3


def test_map_reduced_sparse_and_dense_area_solves_agree(ieee, en, monkeypatch):
    """The three iterations reach the same fixed point: converged tightly (the map's own
    tolerance, 1e-9 pu on a step, leaves them up to ~1e-9 apart), they agree to 1e-10 pu."""
    import lvplan.hosting.area as area_mod

    monkeypatch.setattr(area_mod, "_TOL_V", 1e-13)
    prep = prepare(ieee, en, pf=0.9)
    (p,) = prep.problems
    s = _Solver(p, TAN)
    assert s.reduced and s._P.size < 0.1 * p.nL
    k = p.bus_pos[:: max(1, p.bus_pos.size // 40)]
    x = np.linspace(5.0, 150.0, k.size)
    V_r, VR_r, d_r, ok_r = s.run(k, x)
    s.reduced = False  # the iteration on every bus, sparse LU
    V_s, _VR_s, _d_s, ok_s = s.run(k, x)
    dense = replace(p, _solver=AreaSolver(p.Y_LL, p.Y_LR, dense=True))
    V_d, VR_d, d_d, ok_d = _Solver(dense, TAN).run(k, x)
    assert ok_r.all() and ok_s.all() and ok_d.all()
    for V in (V_s, V_d):
        assert np.max(np.abs(V_r - V)) < 1e-10
    assert np.max(np.abs(V_s - V_d)) < 1e-10
    assert np.max(np.abs(VR_r - VR_d)) < 1e-10 and np.max(np.abs(d_r - d_d)) < 1e-10


def test_map_contract_on_the_large_area(ieee, en):
    df = hosting_capacity(ieee, criteria=en).table
    assert len(df) == 906 and (df.hosting_kw > 0).all()
    untouched = pn.ieee_european_lv_asymmetric()  # a copy lvplan never held
    assert assert_contract(untouched, en, df, n=8, seed=2) == 8
