"""What a load in one LV area does outside it: the MV network's linear response.

The MV/HV part of the network (every bus at or above 1 kV) is cut out of pandapower's ``Ybus``
with each LV area replaced by the power it draws at its roots. One sparse LU of that network's
Newton-Raphson Jacobian at the base case gives, per root bus, the voltage change of every MV bus
per MW and per Mvar drawn there; from it follow the change of

* every MV bus voltage (against the MV limits),
* every MV line and HV/MV transformer loading,
* every other LV area, through its root voltage: each area is summarised by its limit that a root
  voltage drop brings closest to violation (margin and gain, measured by an exact area solve).

For each area the K limits that its extra load reaches first become linear constraints
``margin + c . [dP_r, dQ_r]`` in its :class:`AreaProblem`; the exact area solve supplies the
power really drawn at the roots, losses included.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from lvplan.powerflow.capacity import SAFETY_ABS, SAFETY_REL
from lvplan.powerflow.response import LinearResponse

#: Outside limits kept per area.
K_OUTSIDE = 8
#: :meth:`OutsideModel.secant_gains`: chord Newton steps allowed, and the mismatch (pu) that
#: counts as converged (the reference load flow's tolerance)
SECANT_MAX_STEPS = 30
SECANT_TOL_PU = 1e-9
_BATCH_ROOTS = 64


@dataclass
class AreaSummary:
    """The limit of an LV area that a drop of its root voltage reaches first."""

    root: int  # internal bus
    margin: float  # pu or fraction
    gain: float  # margin change per pu of root voltage rise (positive: falls when root falls)
    kind: str
    label: str


class OutsideModel:
    def __init__(self, eng, vmin_int: np.ndarray, vmax_int: np.ndarray, bus_label_int, branch_info):
        """``branch_info``: (kind[], label[], kf, kt, lim_percent, judged mask) per ppci branch."""
        self.eng = eng
        n = eng.n
        lv = eng.base_kv < 1.0
        mv = ~lv
        self.mv_ids = np.flatnonzero(mv)
        self.pos = np.full(n, -1, np.int64)
        self.pos[self.mv_ids] = np.arange(self.mv_ids.size)
        f, t = eng.f_bus, eng.t_bus
        touch = lv[f] | lv[t]
        nbr = f.size
        rows = np.flatnonzero(touch)
        Cf = sp.csr_matrix((np.ones(rows.size), (rows, f[rows])), shape=(nbr, n))
        Ct = sp.csr_matrix((np.ones(rows.size), (rows, t[rows])), shape=(nbr, n))
        Y = (eng.Ybus - Cf.T @ eng.Yf - Ct.T @ eng.Yt).tocsr()
        self.Ymv = Y[self.mv_ids][:, self.mv_ids].tocsr()
        self.V0 = eng.V0[self.mv_ids]
        ref = self.pos[eng.ref]
        pv = self.pos[eng.pv]
        pq = self.pos[eng.pq]
        self.ref, self.pv, self.pq = ref[ref >= 0], pv[pv >= 0], pq[pq >= 0]
        self.ok = self.mv_ids.size > 0 and self.ref.size > 0
        # MV islands (parts fed by different slacks): a load in one does not move another
        if self.mv_ids.size:
            pattern = self.Ymv.copy()
            pattern.data = np.ones(pattern.data.size)
            _, self.island = connected_components(pattern, directed=False)
        else:
            self.island = np.zeros(0, np.int64)
        self._response = LinearResponse(self.Ymv, self.V0, self.pv, self.pq)
        # judged MV limits
        vmin_m, vmax_m = vmin_int[self.mv_ids], vmax_int[self.mv_ids]
        self.vb = np.flatnonzero(np.isfinite(vmin_m) | np.isfinite(vmax_m))
        vm0 = np.abs(self.V0[self.vb])
        self.vb_mlo = vm0 - vmin_m[self.vb]
        self.vb_mhi = vmax_m[self.vb] - vm0
        self.vb_labels = [bus_label_int[int(self.mv_ids[i])] for i in self.vb]
        kinds, labels, kf, kt, lim, judged = branch_info
        mvb = np.flatnonzero(~touch & judged)
        self.br = mvb
        self.br_from = self.pos[f[mvb]]
        Yf = eng.Yf[mvb][:, self.mv_ids]
        Yt = eng.Yt[mvb][:, self.mv_ids]
        self.Yf_m, self.Yt_m = Yf.tocsr(), Yt.tocsr()
        If0, It0 = self.Yf_m @ self.V0, self.Yt_m @ self.V0
        self.uf = np.conj(If0) / np.where(np.abs(If0) > 0, np.abs(If0), 1.0)
        self.ut = np.conj(It0) / np.where(np.abs(It0) > 0, np.abs(It0), 1.0)
        self.kf, self.kt = kf[mvb], kt[mvb]
        self.m_f = (lim[mvb] - np.abs(If0) * self.kf) / 100.0
        self.m_t = (lim[mvb] - np.abs(It0) * self.kt) / 100.0
        self.br_kinds = [kinds[i] for i in mvb]
        self.br_labels = [labels[i] for i in mvb]
        self.summaries: list[AreaSummary] = []

    def sensitivities(self, roots: np.ndarray) -> np.ndarray:
        """dV of every MV bus (n_mv, 2 len(roots)): per P and Q drawn at each root, interleaved
        (an LV slack root, outside this model, does not move)."""
        if not self.ok:
            return np.zeros((self.mv_ids.size, 2 * roots.size), complex)
        return self._response.drawn(self.pos[roots])

    def envelopes(self, areas: list[tuple[int, np.ndarray]], tan_phi: float):
        """For each (area index, roots): (margins K, coefficients K x 2nR, kinds, labels, sens_R).

        Areas are taken island by island (MV parts fed by different slacks do not interact),
        so the work grows with the areas times the size of their own MV island.
        """
        results: dict[int, tuple] = {}
        summ = self.summaries
        s_root = np.array([s.root for s in summ], dtype=np.int64)
        s_pos = self.pos[s_root] if s_root.size else np.zeros(0, np.int64)
        s_m = np.array([s.margin for s in summ])
        s_g = np.array([s.gain for s in summ])
        if self.island.size:
            s_isl = np.where(s_pos >= 0, self.island[np.maximum(s_pos, 0)], -1)
        else:
            s_isl = np.full(s_pos.size, -1)
        nb, nbr = self.vb.size, self.br.size
        vb_isl = self.island[self.vb]
        br_isl = self.island[self.br_from]
        v_abs = np.abs(self.V0)

        def flush(batch: list[tuple[int, np.ndarray]], key: int) -> None:
            roots = np.unique(np.concatenate([r for _, r in batch]))
            dV = self.sensitivities(roots)  # (nm, 2B)
            col = {int(r): j for j, r in enumerate(roots)}
            dvm = (np.conj(self.V0)[:, None] * dV).real / v_abs[:, None]
            if key == -2:  # roots in several islands: every limit
                vs, bs, ss = np.arange(nb), np.arange(nbr), np.arange(s_root.size)
            else:
                vs = np.flatnonzero(vb_isl == key)
                bs = np.flatnonzero(br_isl == key)
                ss = np.flatnonzero(s_isl == key)
            ss = ss[s_pos[ss] >= 0]  # areas under an LV slack do not move with the MV
            glob = np.concatenate(
                [vs, nb + vs, 2 * nb + bs, 2 * nb + nbr + bs, 2 * (nb + nbr) + ss]
            )
            # margins' change per unit drawn, one row per outside limit, columns as dV
            dvb = dvm[self.vb[vs]]
            C = [dvb, -dvb]
            M = [self.vb_mlo[vs], self.vb_mhi[vs]]
            if bs.size:
                dv_f = self.Yf_m[bs] @ dV
                dv_t = self.Yt_m[bs] @ dV
                C.append(-(self.uf[bs, None] * dv_f).real * self.kf[bs, None] / 100.0)
                C.append(-(self.ut[bs, None] * dv_t).real * self.kt[bs, None] / 100.0)
                M += [self.m_f[bs], self.m_t[bs]]
            n_fixed = sum(m.size for m in M)
            if ss.size:
                C.append(s_g[ss, None] * dvm[s_pos[ss]])
                M.append(s_m[ss])
            Call = np.vstack(C) if C else np.zeros((0, dV.shape[1]))
            Mall = np.concatenate(M) if M else np.zeros(0)
            own_row = {int(a): n_fixed + k for k, a in enumerate(self._summary_area[ss])}
            for ai, roots_a in batch:
                cols = np.array([[2 * col[int(r)], 2 * col[int(r)] + 1] for r in roots_a]).ravel()
                Ca = Call[:, cols]  # (nc, 2 nR)
                cu = Ca[:, 0::2] + tan_phi * Ca[:, 1::2]  # per unit P drawn at each root
                with np.errstate(divide="ignore", invalid="ignore"):
                    lim = np.where(cu < 0, Mall[:, None] / -cu, np.inf).min(axis=1)
                lim[Mall < 0] = np.inf  # already violated: a pre-existing violation, skipped
                if ai in own_row:
                    lim[own_row[ai]] = np.inf
                kk = min(K_OUTSIDE, lim.size)
                top = np.argpartition(lim, kk - 1)[:kk] if kk else np.zeros(0, np.int64)
                top = top[np.isfinite(lim[top])]
                kinds, labels = [], []
                for c in top:
                    kd, lb = self._describe(int(glob[c]))
                    kinds.append(kd)
                    labels.append(lb)
                sens = np.zeros((cols.size, roots_a.size), complex)
                for i, r in enumerate(roots_a):
                    if self.pos[r] >= 0:
                        sens[:, i] = dV[self.pos[r], cols]
                results[ai] = (Mall[top].copy(), Ca[top].copy(), kinds, labels, sens)

        by_key: dict[int, list[tuple[int, np.ndarray]]] = {}
        for ai, roots_a in areas:
            p = self.pos[roots_a]
            isl = np.unique(self.island[p[p >= 0]])
            key = -1 if isl.size == 0 else (int(isl[0]) if isl.size == 1 else -2)
            by_key.setdefault(key, []).append((ai, roots_a))
        for key, group in by_key.items():
            batch: list[tuple[int, np.ndarray]] = []
            n_roots = 0
            for item in group:
                batch.append(item)
                n_roots += item[1].size
                if n_roots >= _BATCH_ROOTS:
                    flush(batch, key)
                    batch, n_roots = [], 0
            if batch:
                flush(batch, key)
        return results

    def secant_gains(self, draws: list[tuple[np.ndarray, complex]]) -> np.ndarray:
        """How far the linear response under-states what a load does outside its area: for
        each (roots (internal buses), power drawn (pu), shared equally by the roots), the
        largest ratio, over the MV buses' voltage magnitudes and the judged MV branches'
        currents that move by at least a hundredth of the most-moved one, of their change in
        the MV load flow with that power drawn to the change the linear response predicts; at
        least 1. NaN where the MV load flow (chord Newton steps on the base Jacobian) does not
        converge. Batched: one multi-column solve per step for up to 64 draws."""
        out = np.ones(len(draws))
        if not self.ok or not draws:
            return out
        with np.errstate(all="ignore"):  # (a diverging column is NaN, not a warning)
            self._secant_gains(draws, out)
        return out

    def _secant_gains(self, draws: list[tuple[np.ndarray, complex]], out: np.ndarray) -> None:
        resp = self._response
        lu = resp.factor()
        pvpq, pq = resp.pvpq, self.pq
        npvpq = pvpq.size
        V0 = self.V0
        S0 = V0 * np.conj(self.Ymv @ V0)
        Va0, Vm0 = np.angle(V0), np.abs(V0)
        I0f, I0t = self.Yf_m @ V0, self.Yt_m @ V0
        for lo in range(0, len(draws), _BATCH_ROOTS):
            cols = range(lo, min(lo + _BATCH_ROOTS, len(draws)))
            dS = np.zeros((V0.size, len(cols)), complex)
            for j, i in enumerate(cols):
                roots, s = draws[i]
                at = self.pos[np.asarray(roots, np.int64)]
                at = at[at >= 0]
                if at.size:
                    np.add.at(dS[:, j], at, -s / at.size)  # drawn: a negative injection
            dx = lu.solve(np.r_[dS[pvpq].real, dS[pq].imag])
            dva = np.zeros(dS.shape)
            dvm = np.zeros(dS.shape)
            dva[pvpq], dvm[pq] = dx[:npvpq], dx[npvpq:]
            dV_lin = V0[:, None] * (dvm / Vm0[:, None] + 1j * dva)
            Va, Vm = Va0[:, None] + dva, Vm0[:, None] + dvm
            done = np.zeros(len(cols), bool)
            V = Vm * np.exp(1j * Va)
            for _ in range(SECANT_MAX_STEPS):
                mis = V * np.conj(self.Ymv @ V) - (S0[:, None] + dS)
                F = np.r_[mis[pvpq].real, mis[pq].imag]
                nf = np.max(np.abs(F), axis=0, initial=0.0)
                done = np.isfinite(nf) & (nf < SECANT_TOL_PU)
                if done.all() or not np.isfinite(nf).all() or (nf > 1e3).any():
                    break
                step = lu.solve(F)
                Va[pvpq] -= step[:npvpq]
                Vm[pq] -= step[npvpq:]
                V = Vm * np.exp(1j * Va)
            lin_v = np.abs(dvm)
            true_v = np.abs(np.abs(V) - Vm0[:, None])
            # signed: how much each judged MV branch's current magnitude rises, by the rows'
            # own linearisation (d|I| = Re(conj(I0)/|I0| dI)) and in the load flow; the same
            # in fractions of the branch's limit (k_br) for the row check below
            d_lin = np.r_[
                (self.uf[:, None] * (self.Yf_m @ dV_lin)).real,
                (self.ut[:, None] * (self.Yt_m @ dV_lin)).real,
            ]
            d_true = np.r_[
                np.abs(self.Yf_m @ V) - np.abs(I0f)[:, None],
                np.abs(self.Yt_m @ V) - np.abs(I0t)[:, None],
            ]
            lin_i, true_i = np.abs(d_lin), np.abs(d_true)
            k_br = (np.r_[self.kf, self.kt] / 100.0)[:, None]
            rise_lin, rise_true = d_lin * k_br, d_true * k_br
            for j, i in enumerate(cols):
                if not done[j]:
                    out[i] = np.nan
                    continue
                g = 1.0
                for lin, true in ((lin_v[:, j], true_v[:, j]), (lin_i[:, j], true_i[:, j])):
                    top = float(np.max(lin, initial=0.0))
                    if top <= 1e-12:
                        continue
                    moved = lin >= 0.01 * top
                    g = max(g, float(np.max(true[moved] / lin[moved])))
                # every judged row on the secant must over-state what the load flow does: a
                # voltage that moves more than g times its linear move, or a branch whose
                # loading rises beyond g times what its row says (a row that says it falls,
                # where the load reverses a generator's export: the map was 4 times what
                # fits; review, 2026-12-07) is not bounded by any secant: NaN (full AC)
                tv = true_v[self.vb, j]
                if (tv > g * lin_v[self.vb, j] + SAFETY_ABS + SAFETY_REL * tv).any():
                    out[i] = np.nan
                    continue
                rt, rl = rise_true[:, j], rise_lin[:, j]
                over = (rt > 0) & (rt > g * rl + SAFETY_ABS + SAFETY_REL * np.abs(rt))
                out[i] = np.nan if over.any() else g

    _summary_area: np.ndarray = np.zeros(0, np.int64)

    def _describe(self, c: int) -> tuple[str, str]:
        nb = self.vb.size
        if c < 2 * nb:
            return "voltage", self.vb_labels[c % nb]
        c -= 2 * nb
        nbr = self.br.size
        if c < 2 * nbr:
            return self.br_kinds[c % nbr], self.br_labels[c % nbr]
        c -= 2 * nbr
        s = self.summaries[c]
        return s.kind, s.label
