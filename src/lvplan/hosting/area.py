"""The hosting capacity of every bus of one LV area, all buses at once (pure numpy).

An :class:`AreaProblem` is a self-contained, picklable description of one LV area (the buses
below 1 kV fed by one or more transformers), cut out of pandapower's own admittance model:

* ``Z = inv(Y_LL)`` and ``M = -Z Y_LR``: the exact AC equations of the area with its roots (the
  MV sides of its transformers) as boundary, ``V_L = M V_R + Z conj(S_L / V_L)``;
* the judged branches (LV lines and the transformers) as rows of ``Yf``/``Yt``;
* the root voltages' response to the power the area draws (the base-case Jacobian of the MV
  network, see :mod:`lvplan.hosting.outside`);
* the K limits *outside* the area that a load here moves most (MV voltages, MV lines, other LV
  areas), each as a margin and its linear change per unit of power drawn at the roots.

:func:`solve_area` answers, for every bus ``k`` of the area, the largest extra load ``x_k``
(design kW at the given power factor) whose smallest margin is at least ``safety``: one scenario
per bus, all scenarios solved together as matrix products, searched by vectorised
Illinois regula falsi from a linear first estimate. Each evaluation is an exact AC solve of the
area (implicit Z-bus, tolerance 1e-10 pu) with its roots moved by the linear MV response.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: A limit counts as kept when its margin (pu for voltages, fraction of the rating for
#: loadings) stays above SAFETY_ABS + SAFETY_REL x (how far the load moved that margin). The
#: area solve is exact; what is approximated is the MV response (linear, from the base-case
#: Jacobian), whose error grows with the change: measured below 1e-8 pu at 200 kW.
SAFETY_ABS = 1e-6
SAFETY_REL = 1e-3
STEP_KW = 0.1
TOL_KW = 0.05
_TOL_V = 1e-10
_MAX_IT = 300
_DIVERGED = -1.0


@dataclass
class AreaProblem:
    label: int  # engine LV area label
    buses: np.ndarray  # pandapower bus ids answered (int64)
    bus_pos: np.ndarray  # position in L of each answered bus
    base_mva: float
    Z: np.ndarray  # (nL, nL)
    M: np.ndarray  # (nL, nR)
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
    Yf_j: np.ndarray  # (nj, nL + nR) judged branches
    Yt_j: np.ndarray
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

    @property
    def nL(self) -> int:
        return int(self.V0_L.size)


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
        self.labels = (
            list(p.bus_labels) * 2 + list(p.branch_labels) + list(p.out_labels) + ["collapse"]
        )

    def run(self, k: np.ndarray, x_kw: np.ndarray, V_start: np.ndarray | None = None):
        """Exact area solve for loads ``x_kw`` at positions ``k``: (V, V_R, d_export, ok)."""
        p = self.p
        nS = k.size
        s_load = x_kw * (1.0 + 1j * self.tan) / 1000.0 / p.base_mva
        V = np.repeat(p.V0_L[:, None], nS, axis=1) if V_start is None else V_start.copy()
        VR = np.repeat(p.V0_R[:, None], nS, axis=1)
        MVR = p.M @ VR
        S0 = p.S0[:, None]
        d = np.zeros((self.nR, nS), complex)
        ok = np.zeros(nS, bool)
        active = np.ones(nS, bool)
        for _ in range(_MAX_IT):
            a = np.flatnonzero(active)
            if a.size == 0:
                break
            Va = V[:, a]
            I = np.conj(S0 / Va)
            I[k[a], np.arange(a.size)] -= np.conj(s_load[a] / Va[k[a], np.arange(a.size)])
            Vn = MVR[:, a] + p.Z @ I
            full = np.vstack([Vn, VR[:, a]])
            s_b = full[p.root_loc] * np.conj(p.Y_root @ full)
            da = p.root_of_bnd @ s_b - p.S_export0[:, None]
            w = np.empty((2 * self.nR, a.size))
            w[0::2] = da.real
            w[1::2] = da.imag
            VRn = p.V0_R[:, None] + p.sens_R.T @ w
            err = np.max(np.abs(Vn - Va), axis=0) + np.max(np.abs(VRn - VR[:, a]), axis=0)
            V[:, a] = Vn
            VR[:, a] = VRn
            MVR[:, a] = p.M @ VRn
            d[:, a] = da
            bad = ~np.isfinite(err) | (np.abs(Vn).min(axis=0) < 0.3)
            done = (err < _TOL_V) & ~bad
            ok[a[done]] = True
            active[a[done | bad]] = False
            V[:, a[bad]] = np.nan
        return V, VR, d, ok

    def margins(self, V, VR, d, ok):
        """The smallest margin (less the safety) of each scenario, and which limit it is."""
        p = self.p
        vm = np.abs(V)
        cand = [vm - p.vmin[:, None], p.vmax[:, None] - vm]
        if p.lim_j.size:
            full = np.vstack([V, VR])
            load = np.maximum(
                np.abs(p.Yf_j @ full) * p.kf_j[:, None], np.abs(p.Yt_j @ full) * p.kt_j[:, None]
            )
            cand.append((p.lim_j[:, None] - load) / 100.0)
        if p.out_m.size:
            w = np.empty((2 * self.nR, V.shape[1]))
            w[0::2] = d.real
            w[1::2] = d.imag
            cand.append(p.out_m[:, None] + p.out_c @ w)
        allm = np.vstack(cand)
        allm = np.where(np.isnan(allm), np.inf, allm)
        if self.m0 is None:  # the first call is the base case
            self.m0 = allm[:, :1].copy()
        with np.errstate(invalid="ignore"):
            moved = np.where(np.isfinite(allm), np.abs(allm - self.m0), 0.0)
        allm = allm - (SAFETY_ABS + SAFETY_REL * moved)
        which = np.argmin(allm, axis=0)
        g = allm[which, np.arange(allm.shape[1])]
        g[~ok] = _DIVERGED
        which[~ok] = len(self.kinds) - 1
        return g, which


def solve_area(p: AreaProblem, *, pf: float = 0.9, max_kw: float = 1000.0) -> AreaResult:
    """Hosting capacity (design kW at ``pf``) of every answered bus of one area."""
    n = p.buses.size
    if p.blocked is not None:
        return AreaResult(p.buses, np.zeros(n), ["pre_existing"] * n, [p.blocked[0]] * n, 0)
    tan = float(np.tan(np.arccos(pf)))
    s = _Solver(p, tan)
    k = p.bus_pos.astype(np.int64)
    evals = 0

    def evaluate(idx: np.ndarray, x: np.ndarray, V_start=None):
        nonlocal evals
        evals += idx.size
        V, VR, d, ok = s.run(k[idx], x, V_start)
        g, which = s.margins(V, VR, d, ok)
        return g, which, V

    # base margins (the same for every bus): nothing fits where they are already below zero
    g0, w0, _ = evaluate(np.arange(1), np.zeros(1))
    if g0[0] < 0:
        kind, label = s.kinds[w0[0]], s.labels[w0[0]]
        return AreaResult(p.buses, np.zeros(n), [kind] * n, [label] * n, evals)
    lo = np.zeros(n)
    g_lo = np.full(n, g0[0])
    hi = np.full(n, np.inf)
    g_hi = np.full(n, np.nan)
    w_hi = np.full(n, -1)
    side = np.zeros(n, np.int64)  # which end moved last (Illinois): +1 lo, -1 hi
    # a linear first estimate from a small load at every bus
    every = np.arange(n)
    x1 = np.full(n, min(10.0, max_kw))
    g1, w1, Vlast = evaluate(every, x1)
    _update(lo, g_lo, hi, g_hi, w_hi, side, every, x1, g1, w1)
    slope = np.where(g1 < g0[0], (g0[0] - g1) / x1, np.nan)  # margin lost per kW
    Vlast = np.where(np.isfinite(Vlast), Vlast, p.V0_L[:, None])
    for _round in range(80):
        open_ = np.flatnonzero(((hi - lo) > TOL_KW) & (lo < max_kw))
        if open_.size == 0:
            break
        lo_o, hi_o, sl = lo[open_], hi[open_], slope[open_]
        # no upper bracket yet: extrapolate the margin linearly (2 % beyond), within the cap
        reach = np.where(np.isfinite(sl) & (sl > 0), g_lo[open_] / np.where(sl > 0, sl, 1), 50.0)
        ext = np.minimum(max_kw, np.maximum(lo_o + 1.02 * reach, lo_o * 1.05 + 1.0))
        # bracketed: Illinois regula falsi, kept 2 % inside the bracket
        gl, gh = g_lo[open_], g_hi[open_]
        with np.errstate(invalid="ignore", divide="ignore"):
            t = lo_o + (hi_o - lo_o) * gl / (gl - gh)
        width = np.where(np.isfinite(hi_o), hi_o - lo_o, 0.0)
        t = np.where(np.isfinite(t), t, lo_o + 0.5 * width)
        rf = np.clip(t, lo_o + 0.02 * width, np.where(np.isfinite(hi_o), hi_o - 0.02 * width, lo_o))
        x = np.where(np.isinf(hi_o), ext, rf)
        g, w, V = evaluate(open_, x, Vlast[:, open_])
        fin = np.isfinite(V).all(axis=0)
        Vlast[:, open_[fin]] = V[:, fin]
        _update(lo, g_lo, hi, g_hi, w_hi, side, open_, x, g, w)
        unbr = np.isinf(hi[open_]) & (g < g0[0]) & (x > 0)
        slope[open_[unbr]] = (g0[0] - g[unbr]) / x[unbr]
    hosting = np.floor(np.minimum(lo, max_kw) / STEP_KW + 1e-9) * STEP_KW
    kinds, labels = [], []
    for b in range(n):
        if lo[b] >= max_kw:
            kinds.append("cap")
            labels.append("")
        elif w_hi[b] >= 0:
            kinds.append(s.kinds[w_hi[b]])
            labels.append(s.labels[w_hi[b]])
        else:  # pragma: no cover - every open bus ends bracketed
            kinds.append("unknown")
            labels.append("")
    return AreaResult(p.buses, np.round(hosting, 1), kinds, labels, evals)


def _update(lo, g_lo, hi, g_hi, w_hi, side, idx, x, g, w):
    """Move the bracket ends; halve the stale end's margin when one end moves twice (Illinois)."""
    fit = g >= 0
    for j, b in enumerate(idx):
        if fit[j]:
            if x[j] > lo[b]:
                lo[b], g_lo[b] = x[j], g[j]
                if side[b] == 1 and np.isfinite(hi[b]):
                    g_hi[b] /= 2
                side[b] = 1
        elif x[j] < hi[b]:
            hi[b], g_hi[b], w_hi[b] = x[j], g[j], w[j]
            if side[b] == -1:
                g_lo[b] /= 2
            side[b] = -1


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
