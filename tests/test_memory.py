"""What a city-scale server keeps (issue 12): the dense area inverses under one budget for the
process, computed again to the same bits when needed; islands without pandapower's result
tables; the Jacobian's pattern in 32-bit positions, the same matrix."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import scipy.sparse as sp

from lvplan.powerflow import area_lu
from lvplan.powerflow.area_lu import AreaSolver
from lvplan.powerflow.jacobian import JacobianPattern


def _area(n: int, seed: int) -> tuple[sp.csc_matrix, sp.csr_matrix]:
    """A radial area of ``n`` buses on one root: a random tree of cables."""
    rng = np.random.default_rng(seed)
    y = 1.0 / complex(0.2, 0.08)
    rows, cols, vals = [], [], []
    Y_LR = np.zeros((n, 1), complex)
    for k in range(n):
        parent = int(rng.integers(-1, k)) if k else -1
        yk = y * rng.uniform(0.5, 2.0)
        rows += [k]
        cols += [k]
        vals += [yk]
        if parent >= 0:
            rows += [parent, k, parent]
            cols += [parent, parent, k]
            vals += [yk, -yk, -yk]
        else:
            Y_LR[k, 0] -= yk
    return sp.csc_matrix((vals, (rows, cols)), shape=(n, n)), sp.csr_matrix(Y_LR)


def test_dense_inverses_are_kept_within_the_budget_and_come_back_the_same(monkeypatch):
    gc.collect()
    one = 40 * 40 * 16 + 40 * 16  # Z and M of a 40-bus area
    # room for two: the oldest go first (other tests' areas too, computed again when used)
    monkeypatch.setattr(area_lu, "DENSE_KEEP_BYTES", 2 * one)
    rng = np.random.default_rng(7)
    solvers = [AreaSolver(*_area(40, s)) for s in range(5)]
    assert all(s.dense for s in solvers)
    I = rng.normal(size=40) + 1j * rng.normal(size=40)
    V_R = np.array([1.0 + 0.0j])
    first = [s.step(I, s.root_term(V_R)) for s in solvers]
    assert area_lu._KEPT.nbytes == 2 * one
    held = [s._ZM is not None for s in solvers]
    assert held == [False, False, False, True, True]  # the two used last
    again = [s.step(I, s.root_term(V_R)) for s in solvers]
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a, b)  # the same bits: the same LAPACK call on the same matrix
    # and the same as a solve of the equations themselves
    for s, v in zip(solvers, first, strict=True):
        assert np.allclose(s.Y_LL @ v + s.Y_LR @ V_R, I, atol=1e-9)
    del solvers
    gc.collect()
    assert area_lu._KEPT.nbytes <= 2 * one  # dead solvers leave the budget


def test_a_singular_dense_area_is_refused_when_built():
    Y = sp.csc_matrix(np.zeros((3, 3), complex))
    with pytest.raises(np.linalg.LinAlgError):
        AreaSolver(Y, sp.csr_matrix(np.zeros((3, 1), complex)))


def test_the_jacobian_pattern_in_32_bits_is_the_same_matrix():
    Y, _ = _area(60, 3)
    Ybus = sp.bmat([[sp.csc_matrix(np.array([[5.0 - 2j]])), None], [None, Y]]).tocsr()
    pv, pq = np.zeros(0, np.int64), np.arange(1, 61)
    pat = JacobianPattern(Ybus, pv, pq)
    assert pat.slot_of.dtype == np.int32 and pat.rows.dtype == np.int32
    V = 1.0 + 0.01 * np.random.default_rng(1).normal(size=61) * (1 + 1j)
    J = pat.csc(V).toarray()

    # the Jacobian of S = V conj(Ybus V) by finite differences of the angles and magnitudes
    def S(va, vm):
        Vx = vm * np.exp(1j * va)
        return Vx * np.conj(Ybus @ Vx)

    va, vm = np.angle(V), np.abs(V)
    h = 1e-7
    cols = []
    for k in pq:
        d = np.zeros(61)
        d[k] = h
        cols.append((S(va + d, vm) - S(va - d, vm)) / (2 * h))
    for k in pq:
        d = np.zeros(61)
        d[k] = h
        cols.append((S(va, vm + d) - S(va, vm - d)) / (2 * h))
    D = np.array(cols).T
    want = np.vstack([D[pq].real, D[pq].imag])
    assert np.allclose(J, want, atol=1e-5)
    assert np.array_equal(np.repeat(np.arange(J.shape[1]), np.diff(pat.indptr)), pat.cols)


def test_prepared_islands_hold_no_result_tables_and_run_pandapower_again():
    import lvplan

    net = lvplan.load_network("sz-futian")
    assert net.prepare_islands() == "prepared"
    for island in net.islands().nets.values():
        base = island.base_state()
        res = [k for k in island.pp if k.startswith("res_") and len(island.pp[k])]
        assert res == []
        again = island.run_ac_with([]).state  # pandapower writes them again
        assert np.allclose(again.vm_pu, base.vm_pu, atol=1e-9, equal_nan=True)
        assert len(island.pp.res_bus) == len(island.pp.bus)


def test_the_islands_of_a_city_run_pandapower_with_numba_and_the_same_state(monkeypatch):
    import lvplan
    from lvplan.model import islands as islands_mod
    from lvplan.powerflow.ac import NUMBA_KEY, runpp_options

    plain = lvplan.load_network("sz-futian")
    assert plain.prepare_islands() == "prepared"
    monkeypatch.setattr(islands_mod, "NUMBA_CITY_BUSES", 10)  # a "city" of sz-futian's size
    city = lvplan.load_network("sz-futian")
    assert city.prepare_islands() == "prepared"
    for key, island in city.islands().nets.items():
        assert island.pp[NUMBA_KEY] and runpp_options(island.pp)["numba"]
        other = plain.islands().nets[key]
        assert not runpp_options(other.pp)["numba"]
        a, b = island.base_state(), other.base_state()
        assert np.allclose(a.vm_pu, b.vm_pu, atol=1e-10, equal_nan=True)
        assert np.allclose(
            a.line_loading_percent, b.line_loading_percent, atol=1e-7, equal_nan=True
        )
