"""The hosting capacity of every bus of one LV area, all buses at once (pure numpy).

An :class:`AreaProblem` is a self-contained, picklable description of one LV area (the buses
below 1 kV fed by one or more transformers), cut out of pandapower's own admittance model:

* ``Y_LL`` and ``Y_LR`` (sparse): the exact AC equations of the area with its roots (the MV
  sides of its transformers) as boundary, ``V_L = Y_LL^-1 (conj(S_L / V_L) - Y_LR V_R)``
  (solved with the dense inverse in a small area, a sparse LU in a large one:
  :class:`lvplan.powerflow.area_lu.AreaSolver`);
* the judged branches (LV lines and the transformers) as rows of ``Yf``/``Yt`` (sparse);
* the root voltages' response to the power the area draws (the base-case Jacobian of the MV
  network, see :mod:`lvplan.hosting.outside`);
* the K limits *outside* the area that a load here moves most (MV voltages, MV lines, other LV
  areas), each as a margin and its linear change per unit of power drawn at the roots.

:func:`solve_area` answers, for every bus ``k`` of the area, the largest extra load ``x_k``
(design kW at the given power factor) whose smallest margin is at least ``safety``: one scenario
per bus, all scenarios solved together as matrix products, searched by vectorised
Illinois regula falsi from a linear first estimate. Each evaluation is an exact AC solve of the
area (implicit Z-bus, tolerance 1e-9 pu on a step) with its roots moved by the linear MV response.
A large area (sparse LU) whose loads sit on few of its buses iterates on those buses alone and
takes every other bus's voltage from the converged currents (:meth:`_Solver._run_reduced`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from lvplan.powerflow.area_lu import AreaSolver
from lvplan.powerflow.capacity import apply_safety, search, smallest

_TOL_V = 1e-9
_MAX_IT = 300
#: A sparse area whose buses with a base injection are at most this fraction of its buses
#: iterates on those alone (:meth:`_Solver._run_reduced`).
REDUCED_MAX_FRACTION = 0.25
#: There, a bus whose base injection is below this (pu) carries the base load flow's mismatch,
#: not a load: it is held as the constant current it draws in the base case (its change with
#: the voltage, below RESIDUAL_PU x 0.1 pu, is far below the solve's tolerance).
RESIDUAL_PU = 1e-9


@dataclass
class AreaProblem:
    label: int  # engine LV area label
    buses: np.ndarray  # pandapower bus ids answered (int64)
    bus_pos: np.ndarray  # position in L of each answered bus
    base_mva: float
    Y_LL: sp.csc_matrix  # (nL, nL)
    Y_LR: sp.csr_matrix  # (nL, nR)
    S0: np.ndarray  # (nL,) base net injection, pu
    V0_L: np.ndarray
    V0_R: np.ndarray
    S_export0: np.ndarray  # (nR,) base power drawn from each root
    Y_root: np.ndarray  # (nbnd, nL + nR): current leaving each root through its boundary branch
    root_loc: np.ndarray  # (nbnd,) local column of the root end of each boundary branch
    root_of_bnd: np.ndarray  # (nR, nbnd) 0/1: which root each boundary branch belongs to
    sens_R: np.ndarray  # (2 nR, nR) complex: dV_R per unit P, Q drawn at each root
    vmin: np.ndarray  # (nL,) pu, -inf where not judged
    vmax: np.ndarray  # (nL,) pu, +inf where not judged
    bus_labels: list[str]  # "bus 12" per L position
    Yf_j: sp.csr_matrix  # (nj, nL + nR) judged branches
    Yt_j: sp.csr_matrix
    kf_j: np.ndarray  # percent loading per pu current, from side
    kt_j: np.ndarray
    lim_j: np.ndarray  # percent limit
    branch_kinds: list[str]  # "line" | "transformer"
    branch_labels: list[str]  # "line 40" | "trafo 3"
    out_m: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (K,) outside margins
    out_c: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (K, 2 nR)
    out_kinds: list[str] = field(default_factory=list)
    out_labels: list[str] = field(default_factory=list)
    blocked: tuple[str, str] | None = None  # (element, name) of a pre-existing violation
    _solver: Any = field(default=None, repr=False, compare=False)  # built on use, not pickled

    @property
    def nL(self) -> int:
        return int(self.V0_L.size)

    def solver(self) -> AreaSolver:
        """The area's linear solve (dense inverse or sparse LU), built once per process."""
        if self._solver is None:
            self._solver = AreaSolver(self.Y_LL, self.Y_LR)
        return self._solver

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_solver"] = None  # a SuperLU factor does not pickle; the worker factors again
        return state


@dataclass
class AreaResult:
    buses: np.ndarray
    hosting_kw: np.ndarray
    binding_kind: list[str]
    binding_element: list[str]
    evaluations: int  # scenario solves spent


class _Solver:
    def __init__(self, p: AreaProblem, tan_phi: float):
        self.p = p
        self.tan = tan_phi
        self.nL = p.nL
        self.nR = p.V0_R.size
        # candidate labels: buses (low side, high side), branches, outside limits
        self.kinds = (
            ["voltage"] * (2 * self.nL) + list(p.branch_kinds) + list(p.out_kinds) + ["voltage"]
        )
        self.m0: np.ndarray | None = None
        # base injections where there are any (most buses of a large area carry none)
        self._nz = np.flatnonzero(p.S0 != 0)
        self._S0nz = p.S0[self._nz][:, None]
        # the loads; what is left at the other buses is the base case's mismatch (round-off)
        self._loaded = np.flatnonzero(np.abs(p.S0) > RESIDUAL_PU)
        # the boundary branches' rows of Y_root, on the columns they use
        used = np.flatnonzero(np.any(p.Y_root != 0, axis=0))
        self._yl = used[used < self.nL]
        self._yr = used[used >= self.nL] - self.nL
        self._Y_root = p.Y_root[:, np.concatenate([self._yl, self._yr + self.nL])]
        self._root_r = p.root_loc - self.nL
        # the judged branches' rows, split into the area's and the roots' columns
        self._YfL, self._YfR = p.Yf_j[:, : self.nL], p.Yf_j[:, self.nL :]
        self._YtL, self._YtR = p.Yt_j[:, : self.nL], p.Yt_j[:, self.nL :]
        # a large area with few loads iterates on its loaded buses alone (see _run_reduced)
        self._P = np.union1d(self._loaded, self._yl)
        lu = p.solver()
        self.reduced = (not lu.dense) and self._P.size <= REDUCED_MAX_FRACTION * self.nL
        self.labels = (
            list(p.bus_labels) * 2 + list(p.branch_labels) + list(p.out_labels) + ["collapse"]
        )

    def run(
        self,
        k: np.ndarray,
        x_kw: np.ndarray,
        V_start: np.ndarray | None = None,
        start_cols: np.ndarray | None = None,
    ):
        """Exact area solve for loads ``x_kw`` at positions ``k``: (V, V_R, d_export, ok).
        ``V_start``: voltages to start from, one column per scenario, or with ``start_cols``
        the columns of ``V_start`` to use."""
        if self.reduced:
            return self._run_reduced(k, x_kw, V_start, start_cols)
        if V_start is not None and start_cols is not None:
            V_start = V_start[:, start_cols]
        p = self.p
        nS = k.size
        s_load = x_kw * (1.0 + 1j * self.tan) / 1000.0 / p.base_mva
        V = np.repeat(p.V0_L[:, None], nS, axis=1) if V_start is None else V_start.copy()
        VR = np.repeat(p.V0_R[:, None], nS, axis=1)
        d = np.zeros((self.nR, nS), complex)
        ok = np.zeros(nS, bool)
        lu = p.solver()
        # the scenarios still iterating, compacted (copied only when some finish)
        cols = np.arange(nS)
        Vw, VRw, kw, sw = V, VR.copy(), k.copy(), s_load
        term = lu.root_term(VRw)
        nz = self._nz
        for _ in range(_MAX_IT):
            if cols.size == 0:
                break
            j = np.arange(cols.size)
            I = np.zeros_like(Vw)
            I[nz] = np.conj(self._S0nz / Vw[nz])
            I[kw, j] -= np.conj(sw / Vw[kw, j])
            Vn = lu.step(I, term)
            # power leaving each root through its boundary branches (only their columns)
            sub = np.vstack([Vn[self._yl], VRw[self._yr]])
            s_b = VRw[self._root_r] * np.conj(self._Y_root @ sub)
            da = p.root_of_bnd @ s_b - p.S_export0[:, None]
            w = np.empty((2 * self.nR, cols.size))
            w[0::2] = da.real
            w[1::2] = da.imag
            VRn = p.V0_R[:, None] + p.sens_R.T @ w
            err = np.abs(Vn - Vw).max(axis=0) + np.abs(VRn - VRw).max(axis=0)
            bad = ~np.isfinite(err) | (np.abs(Vn).min(axis=0) < 0.3)
            done = (err < _TOL_V) & ~bad
            fin = done | bad
            if fin.any():
                c = cols[fin]
                V[:, c] = np.where(bad[fin][None, :], np.nan, Vn[:, fin])
                VR[:, c] = VRn[:, fin]
                d[:, c] = da[:, fin]
                ok[cols[done]] = True
                keep = ~fin
                cols = cols[keep]
                Vw, VRw, kw, sw = Vn[:, keep], VRn[:, keep], kw[keep], sw[keep]
                term = lu.root_term(VRw)
            else:
                Vw, VRw = Vn, VRn
                term = lu.root_term(VRw)
        if cols.size:  # not converged in _MAX_IT steps: the last iterate, not ok
            V[:, cols] = Vw
            VR[:, cols] = VRw
        return V, VR, d, ok

    def _run_reduced(self, k, x_kw, V_start=None, start_cols=None):
        """:meth:`run` iterating on the buses that carry a current alone: ``P`` (every loaded
        bus, the boundary branches' LV ends) and the new load's bus ``k``. With
        ``Z = inv(Y_LL)``, ``M = -Z Y_LR`` and the currents ``I_o`` of the other buses

            V_P = M_P V_R + Z_PP I_P + Z_Pk i_k + (Z I_o)_P,   V_k = (the same, row k)

        is the same fixed point on |P| + 1 unknowns per scenario instead of nL. The other buses
        draw only the base load flow's mismatch (round-off): ``I_o`` is held at its base value,
        the fixed point found, every bus's voltage taken from it (one sparse solve), ``I_o``
        taken at those voltages and the fixed point found again (a step or two; what is left
        of ``I_o``'s change is ~1e-9 smaller again)."""
        p = self.p
        nS, nL, P = k.size, self.nL, self._P
        cols = np.arange(nS)
        s_load = x_kw * (1.0 + 1j * self.tan) / 1000.0 / p.base_mva
        lu = p.solver()
        S_o = p.S0.copy()
        S_o[P] = 0.0
        if V_start is None:
            VP0, Vk0 = np.repeat(p.V0_L[P][:, None], nS, axis=1), p.V0_L[k]
        elif start_cols is None:
            VP0, Vk0 = V_start[P], V_start[k, cols]
        else:
            VP0, Vk0 = V_start[np.ix_(P, start_cols)], V_start[k, start_cols]
        VR = np.repeat(p.V0_R[:, None], nS, axis=1)
        # the other buses' currents at the base voltages: the same for every scenario
        I_o = np.empty((nL, nS), complex, order="F")
        I_o[:] = np.conj(S_o / p.V0_L)[:, None]
        v_o = lu.z(I_o[:, 0])
        VP, Vk, VR, d, ok, bad = self._iterate_P(k, s_load, VP0, Vk0, VR, v_o[P][:, None], v_o[k])
        for again in (True, False):
            I = np.array(I_o, order="F")
            with np.errstate(invalid="ignore", divide="ignore"):
                I[P] = np.conj(p.S0[P][:, None] / VP)
                I[k, cols] -= np.conj(s_load / Vk)
                V = lu.voltages(I, VR)
                bad |= ~np.isfinite(V).all(axis=0) | (np.abs(V).min(axis=0) < 0.3)
                if not again:
                    break
                # the other buses' currents at these voltages, and the fixed point again
                I_o = np.conj(S_o[:, None] / V)
            I_o[:, bad] = 0.0
            v_o = lu.z(I_o)
            VP, Vk, VR, d, ok, bad = self._iterate_P(
                k, s_load, VP, Vk, VR, v_o[P], v_o[k, cols], bad=bad
            )
        ok = ok & ~bad
        V[:, bad] = np.nan
        return V, VR, d, ok

    def _iterate_P(self, k, s_load, VP0, Vk0, VR0, vP_o, vk_o, bad=None):
        """The fixed point on ``P`` and ``k`` (see :meth:`_run_reduced`): (V_P, V_k, V_R,
        d_export, ok, bad); ``vP_o``, ``vk_o``: the voltage the other buses' currents make."""
        p = self.p
        nS, P = k.size, self._P
        ZcP, ZPr, zdiag, M = p.solver().columns(P)
        Z_PP, M_P = ZcP[P], M[P]
        S0P = p.S0[P][:, None]
        ypos = np.searchsorted(P, self._yl)  # the boundary columns' rows of V_P
        VP_out, Vk_out, VR = VP0.copy(), Vk0.copy(), VR0.copy()
        d = np.zeros((self.nR, nS), complex)
        ok = np.zeros(nS, bool)
        bad_all = np.zeros(nS, bool) if bad is None else bad.copy()
        cols = np.flatnonzero(~bad_all)
        vP_o = np.broadcast_to(vP_o, (P.size, nS))[:, cols]
        vk_o = np.broadcast_to(vk_o, (nS,))[cols]
        VPw, Vkw, VRw, sw = VP_out[:, cols], Vk_out[cols], VR[:, cols], s_load[cols]
        kc = k[cols]
        ZPk, ZkP, zkk, Mk = ZPr[kc].T, ZcP[kc], zdiag[kc], M[kc]
        for _ in range(_MAX_IT):
            if cols.size == 0:
                break
            IP = np.conj(S0P / VPw)
            ik = -np.conj(sw / Vkw)
            VPn = M_P @ VRw + Z_PP @ IP + ZPk * ik + vP_o
            Vkn = np.einsum("sr,rs->s", Mk, VRw) + np.einsum("sp,ps->s", ZkP, IP) + zkk * ik + vk_o
            sub = np.vstack([VPn[ypos], VRw[self._yr]])
            s_b = VRw[self._root_r] * np.conj(self._Y_root @ sub)
            da = p.root_of_bnd @ s_b - p.S_export0[:, None]
            w = np.empty((2 * self.nR, cols.size))
            w[0::2] = da.real
            w[1::2] = da.imag
            VRn = p.V0_R[:, None] + p.sens_R.T @ w
            err = np.maximum(
                np.abs(VPn - VPw).max(axis=0, initial=0.0), np.abs(Vkn - Vkw)
            ) + np.abs(VRn - VRw).max(axis=0)
            low = np.minimum(np.abs(VPn).min(axis=0, initial=np.inf), np.abs(Vkn))
            bad = ~np.isfinite(err) | (low < 0.3)
            done = (err < _TOL_V) & ~bad
            fin = done | bad
            if fin.any():
                c = cols[fin]
                VP_out[:, c], Vk_out[c] = VPn[:, fin], Vkn[fin]
                VR[:, c], d[:, c] = VRn[:, fin], da[:, fin]
                ok[cols[done]] = True
                bad_all[cols[bad]] = True
                keep = ~fin
                cols = cols[keep]
                VPw, Vkw, VRw, sw = VPn[:, keep], Vkn[keep], VRn[:, keep], sw[keep]
                ZPk, ZkP, zkk, Mk = ZPk[:, keep], ZkP[keep], zkk[keep], Mk[keep]
                vP_o, vk_o = vP_o[:, keep], vk_o[keep]
            else:
                VPw, Vkw, VRw = VPn, Vkn, VRn
        if cols.size:  # not converged in _MAX_IT steps: the last iterate, not ok
            VP_out[:, cols], Vk_out[cols], VR[:, cols] = VPw, Vkw, VRw
        return VP_out, Vk_out, VR, d, ok, bad_all

    def margins(self, V, VR, d, ok):
        """The smallest margin (less the safety) of each scenario, and which limit it is."""
        p = self.p
        nL, nS = self.nL, V.shape[1]
        nj, nk = p.lim_j.size, p.out_m.size
        allm = np.empty((2 * nL + nj + nk, nS))  # filled in place: it is the largest array
        vm = np.abs(V)
        np.subtract(vm, p.vmin[:, None], out=allm[:nL])
        np.subtract(p.vmax[:, None], vm, out=allm[nL : 2 * nL])
        if nj:
            load = np.abs(self._YfL @ V + self._YfR @ VR)
            load *= p.kf_j[:, None]
            other = np.abs(self._YtL @ V + self._YtR @ VR)
            other *= p.kt_j[:, None]
            np.maximum(load, other, out=load)
            np.subtract(p.lim_j[:, None], load, out=load)
            np.divide(load, 100.0, out=allm[2 * nL : 2 * nL + nj])
        if nk:
            w = np.empty((2 * self.nR, nS))
            w[0::2] = d.real
            w[1::2] = d.imag
            allm[2 * nL + nj :] = p.out_m[:, None] + p.out_c @ w
        if self.m0 is None:  # the first call is the base case
            self.m0 = np.where(np.isnan(allm[:, :1]), np.inf, allm[:, :1])
        apply_safety(allm, self.m0)
        allm[:, ~ok] = np.nan
        return allm


def solve_area(p: AreaProblem, *, pf: float = 0.9, max_kw: float = 1000.0) -> AreaResult:
    """Hosting capacity (design kW at ``pf``) of every answered bus of one area: one scenario
    per bus, all searched together by :func:`lvplan.powerflow.capacity.search`."""
    n = p.buses.size
    if p.blocked is not None:
        return AreaResult(p.buses, np.zeros(n), ["pre_existing"] * n, [p.blocked[0]] * n, 0)
    tan = float(np.tan(np.arccos(pf)))
    s = _Solver(p, tan)
    k = p.bus_pos.astype(np.int64)
    Vlast = np.repeat(p.V0_L[:, None], n, axis=1)

    def evaluate(idx: np.ndarray, xs: np.ndarray) -> np.ndarray:
        V, VR, d, ok = s.run(k[idx], xs, Vlast, idx)
        allm = s.margins(V, VR, d, ok)
        fin = np.flatnonzero(np.isfinite(V).all(axis=0))
        if s.reduced:  # it starts from its buses P and the load's own bus alone
            Vlast[np.ix_(s._P, idx[fin])] = V[s._P][:, fin]
            Vlast[k[idx[fin]], idx[fin]] = V[k[idx[fin]], fin]
        else:
            Vlast[:, idx[fin]] = V[:, fin]
        return allm

    # base margins (the same for every bus): nothing fits where they are already below zero
    V, VR, d, ok = s.run(k[:1], np.zeros(1))
    m0 = s.margins(V, VR, d, ok)
    g0, w0 = smallest(m0)
    if g0[0] < 0:
        kind, label = s.kinds[w0[0]], s.labels[w0[0]]
        return AreaResult(p.buses, np.zeros(n), [kind] * n, [label] * n, 1)
    found = search(evaluate, m0, n, max_kw=max_kw)
    kinds, labels = [], []
    for b in found.binding.tolist():
        if b < 0:
            kinds.append("cap")
            labels.append("")
        else:
            kinds.append(s.kinds[b])
            labels.append(s.labels[b])
    return AreaResult(p.buses, found.kw, kinds, labels, found.evaluations + 1)


def holds(p: AreaProblem, kw: np.ndarray, *, pf: float = 0.9) -> np.ndarray:
    """Whether each answered bus's load ``kw`` keeps every limit of ``p`` with the search's
    safety: one solve of every scenario at once (no search)."""
    n = p.buses.size
    if n == 0:
        return np.zeros(0, bool)
    s = _Solver(p, float(np.tan(np.arccos(pf))))
    k = p.bus_pos.astype(np.int64)
    V, VR, d, ok = s.run(k[:1], np.zeros(1))
    s.margins(V, VR, d, ok)  # (the base: the safety is measured from it)
    V, VR, d, ok = s.run(k, np.asarray(kw, float))
    g, _ = smallest(s.margins(V, VR, d, ok))  # (with the safety)
    return np.asarray(ok, bool) & (g >= 0)


def root_gain_summary(p: AreaProblem, root: int):
    """The area's limit that a drop of its root voltage reaches first, for the outside model.

    Solved exactly twice with the roots held: at their base voltage and 0.1 % lower; the gain of
    each margin is its change per pu of root voltage.
    """
    from dataclasses import replace

    from lvplan.hosting.outside import AreaSummary

    eps = 1e-3
    held = replace(p, sens_R=np.zeros_like(p.sens_R), out_m=np.zeros(0), out_c=np.zeros((0, 0)))
    low = replace(held, V0_R=p.V0_R * (1.0 - eps))
    ms = []
    for q in (held, low):
        s = _Solver(q, 0.0)
        V, VR, _d, ok = s.run(np.zeros(1, np.int64), np.zeros(1))
        if not ok[0]:
            return AreaSummary(root, np.inf, 0.0, "voltage", "")
        vm = np.abs(V[:, 0])
        m = [vm - q.vmin]
        if q.lim_j.size:
            full = np.concatenate([V[:, 0], VR[:, 0]])
            load = np.maximum(np.abs(q.Yf_j @ full) * q.kf_j, np.abs(q.Yt_j @ full) * q.kt_j)
            m.append((q.lim_j - load) / 100.0)
        ms.append(np.concatenate(m))
    m0, m1 = ms
    with np.errstate(invalid="ignore"):  # unjudged buses: inf - inf
        gain = (m0 - m1) / (eps * float(np.mean(np.abs(p.V0_R))))
    ok = np.isfinite(m0) & (m0 >= 0) & (gain > 0)
    if not ok.any():
        return AreaSummary(root, np.inf, 0.0, "voltage", "")
    ratio = np.where(ok, m0 / np.where(gain > 0, gain, 1.0), np.inf)
    i = int(np.argmin(ratio))
    nL = p.nL
    kind = "voltage" if i < nL else p.branch_kinds[i - nL]
    label = p.bus_labels[i] if i < nL else p.branch_labels[i - nL]
    return AreaSummary(root, float(m0[i]), float(gain[i]), kind, label)
