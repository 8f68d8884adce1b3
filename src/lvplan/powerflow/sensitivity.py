"""How every margin moves per kW of a new load: the linear model the optimiser plans with.

At the base operating point the Newton-Raphson Jacobian's response (``LinearResponse``, one
factorisation shared with the fast engine) gives the complex voltage change of every bus per
unit of P and Q drawn at a bus. From it:

* a bus voltage magnitude moves by ``Re(conj(V) dV) / |V|``;
* a branch current magnitude by ``Re(conj(I) dI) / |I|`` with ``dI = Yf dV`` (or ``Yt``), and
  its loading by that times the branch's rating factor, on the side that carries the larger
  loading at the base (the one ``GridState`` reports);

in the order and units of :meth:`Limits.margins` (pu for voltages, fraction of 100 % for
loadings), per kW of design load at power factor ``pf`` (lagging). Exact to first order; the
optimiser's AC verification loop corrects what the second order leaves.
"""

from __future__ import annotations

import math

import numpy as np

from lvplan.criteria import Criteria
from lvplan.criteria.judge import Limits


def margin_sensitivity(network, criteria: Criteria, buses, pf: float | None = None) -> np.ndarray:
    """``d margin / d kW`` (len(buses) x number of margins) of a balanced load at each bus."""
    eng = network.fast_engine()
    limits = Limits(network.pp, criteria)
    pf_val = criteria.new_customer_pf if pf is None else float(pf)
    tan_phi = math.tan(math.acos(pf_val))
    ib = eng.bus_lookup[np.asarray(buses, np.int64)]
    dV2 = eng._response.drawn(ib)
    dV = (dV2[:, 0::2] + tan_phi * dV2[:, 1::2]) / (1000.0 * eng.baseMVA)  # per kW drawn
    V = eng._response.V0
    # bus voltage magnitudes, in pandapower's bus order
    dvm_int = np.real(np.conj(V)[:, None] * dV) / np.abs(V)[:, None]
    nb = eng._pp_bus_idx.size
    dvm = np.zeros((nb, dV.shape[1]))
    ok = eng._pp_bus_ok
    dvm[ok] = dvm_int[eng._pp_bus_idx[ok]]
    parts = [dvm, -dvm]
    I_f, I_t = eng.Yf @ V, eng.Yt @ V
    dI_f, dI_t = eng.Yf @ dV, eng.Yt @ dV

    def d_loading(rows: np.ndarray, kf: np.ndarray, kt: np.ndarray) -> np.ndarray:
        r = np.maximum(rows, 0)
        af, at = np.abs(I_f[r]), np.abs(I_t[r])
        with np.errstate(invalid="ignore", divide="ignore"):
            df = np.real(np.conj(I_f[r])[:, None] * dI_f[r]) / af[:, None] * kf[:, None]
            dt = np.real(np.conj(I_t[r])[:, None] * dI_t[r]) / at[:, None] * kt[:, None]
        use_f = (af * kf >= at * kt)[:, None]
        out = np.where(use_f, df, dt)
        out[rows < 0] = 0.0
        return np.nan_to_num(out)

    if len(eng.line_rows):
        parts.append(-d_loading(eng.line_rows, eng._line_kf, eng._line_kt) / 100.0)
    else:
        parts.append(np.zeros((0, dV.shape[1])))
    if len(eng.trafo_rows):
        parts.append(-d_loading(eng.trafo_rows, eng._trafo_kf, eng._trafo_kt) / 100.0)
    else:
        parts.append(np.zeros((0, dV.shape[1])))
    out = np.concatenate(parts, axis=0).T
    assert out.shape[1] == len(limits.margin_labels())
    return out


def voltage_drop_per_kw(network, observed_buses, load_buses, pf: float) -> np.ndarray:
    """The fall of the voltage magnitude (pu per kW of load at power factor ``pf``) at each of
    ``observed_buses`` for a load at each of ``load_buses``: (len(load_buses),
    len(observed_buses)), the negative of the voltage columns of :func:`margin_sensitivity`,
    by one transposed solve per observed bus (the optimiser observes a few 10 kV buses and
    draws at many LV ones)."""
    eng = network.fast_engine()
    tan_phi = math.tan(math.acos(float(pf)))
    obs = eng.bus_lookup[np.asarray(observed_buses, np.int64)]
    ib = eng.bus_lookup[np.asarray(load_buses, np.int64)]
    d = eng._response.magnitude_drawn(obs, ib)  # (observed, 2 loads)
    dvm = (d[:, 0::2] + tan_phi * d[:, 1::2]) / (1000.0 * eng.baseMVA)
    return -dvm.T


def margin_sensitivity_of(
    network, criteria: Criteria, positions, buses, pf: float | None = None
) -> np.ndarray:
    """``margin_sensitivity(network, criteria, buses)[:, positions]`` for a few margins and
    many buses, by one transposed solve per margin: each margin (a bus voltage, a branch's
    loading on the side the base loads more) is a linear functional of the angles and
    magnitudes, taken through the Jacobian once."""
    import scipy.sparse as sp

    eng = network.fast_engine()
    resp = eng._response
    pf_val = criteria.new_customer_pf if pf is None else float(pf)
    tan_phi = math.tan(math.acos(pf_val))
    nb = eng._pp_bus_idx.size
    nl, nt = len(eng.line_rows), len(eng.trafo_rows)
    V = resp.V0
    pvpq_pos, pq_pos = resp._positions()
    npvpq = resp.pvpq.size
    rows, cols, vals = [], [], []
    sign = np.zeros(len(positions))
    I_f, I_t = eng.Yf @ V, eng.Yt @ V
    for j, p in enumerate(int(x) for x in positions):
        if p < 2 * nb:  # a bus voltage: vm - vmin, or vmax - vm
            b = p % nb
            i = int(eng._pp_bus_idx[b]) if eng._pp_bus_ok[b] else -1
            if i >= 0 and pq_pos[i] >= 0:
                rows.append(j)
                cols.append(npvpq + pq_pos[i])
                vals.append(1.0)
            sign[j] = 1.0 if p < nb else -1.0
            continue
        if p < 2 * nb + nl:
            r, kf, kt = eng.line_rows[p - 2 * nb], eng._line_kf, eng._line_kt
            k = p - 2 * nb
        elif p < 2 * nb + nl + nt:
            r, kf, kt = eng.trafo_rows[p - 2 * nb - nl], eng._trafo_kf, eng._trafo_kt
            k = p - 2 * nb - nl
        else:
            raise IndexError(f"margin position {p} out of range")
        sign[j] = -0.01  # loading margin: (limit - loading) / 100
        if r < 0:
            continue
        use_f = abs(I_f[r]) * kf[k] >= abs(I_t[r]) * kt[k]
        Irow, I0, kk = (eng.Yf, I_f[r], kf[k]) if use_f else (eng.Yt, I_t[r], kt[k])
        if abs(I0) == 0:
            continue
        c = np.conj(I0) / abs(I0)
        y = Irow.getrow(r).tocoo()
        for i, yv in zip(y.col.tolist(), y.data.tolist(), strict=True):
            w = c * yv * V[i]  # d|I| = Re(w (dvm / |V| + j dva))
            if pvpq_pos[i] >= 0:
                rows.append(j)
                cols.append(pvpq_pos[i])
                vals.append(-float(np.imag(w)) * kk)
            if pq_pos[i] >= 0:
                rows.append(j)
                cols.append(npvpq + pq_pos[i])
                vals.append(float(np.real(w)) / abs(V[i]) * kk)
    F = sp.csr_matrix((vals, (rows, cols)), shape=(len(positions), npvpq + resp.pq.size))
    ib = eng.bus_lookup[np.asarray(buses, np.int64)]
    d = resp.functionals_drawn(F, ib)
    per_kw = (d[:, 0::2] + tan_phi * d[:, 1::2]) / (1000.0 * eng.baseMVA)
    return (per_kw * sign[:, None]).T
