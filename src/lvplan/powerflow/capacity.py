"""The one capacity search: the largest extra load at a bus that keeps every limit.

Used for every bus of an LV area at once (the map, ``/v1/capacity/buses``:
:func:`lvplan.hosting.area.solve_area`) and for one bus (``check``'s ``headroom_kw``, and the
full-AC fallback of the map). The caller supplies ``evaluate(idx, x)``: the margins of every
judged limit (rows) for scenario ``idx[j]`` with ``x[j]`` kW more (columns), already less the
safety of :func:`apply_safety`, NaN columns where no solution exists at that load.

**The safety rule** (the one rule of lvplan; margins in pu for voltages and in fractions of the
rating for loadings): a limit counts as kept when its margin is at least
``SAFETY_ABS + SAFETY_REL x |margin moved since the start|``. The fast solves are exact to
1e-9 pu; what the rule covers is the linear MV response of the area model (measured below
1e-8 pu at 200 kW) and round-off. The decision of a check does not use it: a check is judged on
the exact AC state, with the AC load flow deciding near a limit.

**The search.** Every evaluation gives every limit's margin, so the search predicts where each
limit is crossed rather than where their minimum is (which has kinks where the binding limit
changes): while no upper bracket exists, each limit's margin is extrapolated linearly from the
newest two points and the nearest crossing is tried; once bracketed, the limit violated at the
upper end is interpolated between the ends and probed on both sides of its crossing, so a good
prediction closes the bracket in one round. It ends when the bracket is narrower than
``max(tol_kw, tol_rel x upper end)``; the answer is the fitting end, floored to ``STEP_KW``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SAFETY_ABS = 1e-6
SAFETY_REL = 1e-3
STEP_KW = 0.1
#: The map's tolerance: the bracket narrower than max(TOL_KW, TOL_REL x upper end).
TOL_KW = 0.1
TOL_REL = 0.002
#: The margin given to a scenario with no solution at its load (it counts as not fitting).
DIVERGED = -1.0
MAX_ROUNDS = 60

Evaluate = Callable[[np.ndarray, np.ndarray], np.ndarray]


def apply_safety(m: np.ndarray, m0: np.ndarray) -> np.ndarray:
    """Margins ``m`` (limits x scenarios) less the safety, in place; ``m0`` (limits x 1): the
    margins at the start. Limits that are not judged (+inf) or have no value stay +inf."""
    m[np.isnan(m)] = np.inf
    with np.errstate(invalid="ignore"):
        moved = np.subtract(m, m0)
        np.abs(moved, out=moved)
        moved[~np.isfinite(m)] = 0.0
    moved *= SAFETY_REL
    moved += SAFETY_ABS
    m -= moved
    return m


@dataclass
class Capacity:
    """What :func:`search` found for each scenario."""

    kw: np.ndarray  # the largest fitting extra kW, floored to STEP_KW (max_kw: none binds)
    binding: np.ndarray  # row of the limit broken at the failing end; -1 at the cap
    evaluations: int


def smallest(allm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The smallest margin of each scenario and its row. ``allm`` has the safety applied, so
    NaN only fills whole columns (no solution): those give ``DIVERGED`` and the row one past the
    last (callers label it as a collapse)."""
    nrow, ncol = allm.shape
    if nrow == 0:
        return np.full(ncol, np.inf), np.zeros(ncol, np.int64)
    which = np.argmin(allm, axis=0)  # NaN wins argmin: a diverged column points at a NaN
    g = allm[which, np.arange(ncol)]
    bad = np.isnan(g)
    return np.where(bad, DIVERGED, g), np.where(bad, nrow, which)


def search(
    evaluate: Evaluate,
    m0: np.ndarray,
    n: int,
    *,
    max_kw: float,
    tol_kw: float = TOL_KW,
    tol_rel: float = TOL_REL,
    known: tuple[np.ndarray, np.ndarray] | None = None,
    secant: bool = False,
) -> Capacity:
    """The capacity of ``n`` scenarios whose margins at 0 kW more are ``m0`` (limits x 1, the
    same start for all, safety applied and at least 0).

    ``known``: (kW more, margins) of one point per scenario the caller already has (e.g. an
    application's own state; a point below 0 kW only gives the slopes); without it the search
    starts with a small load (10 kW) to learn every limit's slope. ``secant`` (for one
    scenario, whose solves run one after another): one probe per round, at the crossing that
    the newest two points predict, just below it after a point that failed and just above it
    after one that fitted; the two probes of the map's bracketed rounds are both spent at once,
    which pays only when many scenarios share each round's matrix products."""
    lo, hi = np.zeros(n), np.full(n, np.inf)
    m_lo = np.repeat(m0, n, axis=1)
    m_hi = np.full_like(m_lo, np.nan)
    w_hi = np.full(n, -1)
    px, pm = np.zeros(n), m_lo.copy()  # the two newest points, for extrapolation
    qx, qm = np.zeros(n), m_lo.copy()
    newest_fit = np.zeros(n, bool)
    evals = 0

    def absorb(idx: np.ndarray, xs: np.ndarray, allm: np.ndarray) -> None:
        g, which = smallest(allm)
        # each scenario's points in x order, so its newest point is last: one appears at most a
        # few times per round, so apply the first points of all at once, then the second
        pos = np.empty(xs.size, np.int64)
        pos[np.argsort(xs, kind="stable")] = np.arange(xs.size)
        by = np.lexsort((pos, idx))
        ib = idx[by]
        new = np.r_[True, ib[1:] != ib[:-1]]
        start = np.maximum.accumulate(np.where(new, np.arange(ib.size), 0))
        rank = np.empty(xs.size, np.int64)
        rank[by] = np.arange(ib.size) - start
        for r in range(int(rank.max(initial=-1)) + 1):
            J = np.flatnonzero(rank == r)  # distinct scenarios
            bj, x, gj = idx[J], xs[J], g[J]
            up = (gj >= 0) & (x > lo[bj])
            lo[bj[up]] = x[up]
            m_lo[:, bj[up]] = allm[:, J[up]]
            dn = (gj < 0) & (x < hi[bj]) & (x > 0)
            hi[bj[dn]] = x[dn]
            m_hi[:, bj[dn]] = np.where(gj[dn] > DIVERGED, allm[:, J[dn]], np.nan)
            w_hi[bj[dn]] = which[J[dn]]
            sh = (gj > DIVERGED) & (np.isinf(hi[bj]) | secant) & (x != 0)
            bs = bj[sh]
            newest_fit[bj] = gj >= 0
            px[bs], pm[:, bs] = qx[bs], qm[:, bs]
            qx[bs], qm[:, bs] = x[sh], allm[:, J[sh]]

    first = known is None
    if known is not None:
        kx = np.asarray(known[0], float)
        absorb(np.arange(n), kx, np.asarray(known[1], float).copy())
    for _round in range(MAX_ROUNDS):
        tol = np.maximum(tol_kw, tol_rel * np.where(np.isfinite(hi), hi, lo))
        open_ = np.flatnonzero(((hi - lo) > tol) & (lo < max_kw))
        if open_.size == 0:
            break
        cols_b: list[np.ndarray] = []
        cols_x: list[np.ndarray] = []
        if first:
            cols_b.append(open_)
            cols_x.append(np.full(open_.size, min(10.0, max_kw)))
            first = False
        elif secant:
            o = open_
            c = _crossing(px[o], pm[:, o], qx[o], qm[:, o])
            inside = np.isfinite(c) & (c > lo[o]) & (c < hi[o])
            t = _interpolate(lo[o], m_lo[:, o], hi[o], m_hi[:, o])
            ahead = np.where(np.isfinite(c), 1.01 * lo[o] + 0.2, 2.0 * lo[o] + 50.0)
            t = np.where(inside, c, np.where(np.isfinite(hi[o]), t, ahead))
            d = 0.3 * tol[o]
            x = np.where(newest_fit[o], t + d, t - d)
            x = np.where(x <= lo[o], t + d, x)
            fin = np.isfinite(hi[o])
            w = np.where(fin, hi[o] - lo[o], np.inf)
            top = np.where(fin, np.minimum(hi[o] - 0.01 * np.where(fin, w, 0.0), max_kw), max_kw)
            x = np.clip(x, lo[o] + np.minimum(0.01 * w, d), top)
            cols_b.append(o)
            cols_x.append(x)
        else:
            unb = open_[np.isinf(hi[open_])]
            if unb.size:
                c = _crossing(px[unb], pm[:, unb], qx[unb], qm[:, unb])
                x = np.where(np.isfinite(c), qx[unb] + 1.003 * (c - qx[unb]), 2.0 * qx[unb] + 50.0)
                x = np.minimum(max_kw, np.maximum(x, qx[unb] * 1.01 + 0.2))
                cols_b.append(unb)
                cols_x.append(x)
            br = open_[np.isfinite(hi[open_])]
            if br.size:
                t = _interpolate(lo[br], m_lo[:, br], hi[br], m_hi[:, br])
                w = hi[br] - lo[br]
                d = np.minimum(0.3 * tol[br], 0.25 * w)
                for x in (t - d, t + d):
                    cols_b.append(br)
                    cols_x.append(np.clip(x, lo[br] + 0.01 * w, hi[br] - 0.01 * w))
        idx = np.concatenate(cols_b)
        xs = np.concatenate(cols_x)
        evals += idx.size
        absorb(idx, xs, evaluate(idx, xs))
    kw = np.round(np.floor(np.minimum(lo, max_kw) / STEP_KW + 1e-9) * STEP_KW, 1)
    binding = np.where(lo >= max_kw, -1, w_hi)
    return Capacity(kw, binding, evals)


def _crossing(px, pm, qx, qm) -> np.ndarray:
    """The nearest crossing of zero of any limit, each margin extrapolated linearly through
    two points (inf where no margin falls)."""
    with np.errstate(invalid="ignore", divide="ignore"):  # in place: (limits x buses) arrays
        slope = np.subtract(pm, qm)
        slope /= (qx - px)[None, :]  # margin lost per kW
        mask = slope > 0
        mask &= np.isfinite(qm)
        cross = np.divide(qm, slope, out=np.full_like(slope, np.inf), where=mask)
    return qx + np.min(cross, axis=0, initial=np.inf)


def _interpolate(lo, m_lo, hi, m_hi) -> np.ndarray:
    """Where the limit violated at ``hi`` crosses zero, interpolated linearly from ``lo``."""
    mid = 0.5 * (lo + hi)
    if m_lo.shape[0] == 0:
        return mid
    cols = np.arange(lo.size)
    safe_hi = np.where(np.isfinite(m_hi), m_hi, np.inf)
    c = np.argmin(safe_hi, axis=0)
    a, b = m_lo[c, cols], m_hi[c, cols]
    with np.errstate(invalid="ignore", divide="ignore"):
        t = lo + (hi - lo) * a / (a - b)
    ok = np.isfinite(t) & (a >= 0) & (b < 0)
    return np.where(ok, t, mid)
