"""The linear response of a converged AC operating point: one sparse LU of the Newton-Raphson
Jacobian, then the voltage change of every bus per unit of P and Q drawn at given buses.

Shared by the check's fast engine (the whole network) and the hosting map's MV model (the MV
part, LV areas replaced by what they draw).
"""

from __future__ import annotations

import numpy as np

from lvplan.powerflow.jacobian import JacobianPattern
from lvplan.powerflow.sparse_lu import SparseLU


class LinearResponse:
    """``pattern``: the Jacobian's pattern, when the caller keeps one; ``like``: an earlier
    response of the same network whose factorisation this one reuses (KLU keeps its symbolic
    analysis, so only the numbers are factored again)."""

    def __init__(
        self,
        Ybus,
        V0: np.ndarray,
        pv: np.ndarray,
        pq: np.ndarray,
        *,
        pattern: JacobianPattern | None = None,
        like: LinearResponse | None = None,
    ):
        self.Ybus, self.V0, self.pv, self.pq = Ybus, V0, pv, pq
        self.pvpq = np.r_[pv, pq]
        self._pattern = pattern
        self._like = like
        self._lu: SparseLU | None = None

    @property
    def pattern(self) -> JacobianPattern:
        if self._pattern is None:
            self._pattern = JacobianPattern(self.Ybus, self.pv, self.pq)
        return self._pattern

    def factor(self) -> SparseLU:
        """The LU of the Jacobian at V0 (computed on first use)."""
        if self._lu is None:
            values = self.pattern.values(self.V0)
            like = self._like._lu if self._like is not None else None
            if like is not None and like.pattern is self.pattern:
                self._lu = like.refactored(values)
            else:
                self._lu = SparseLU.of(self.pattern, values)
            self._like = None
        return self._lu

    def magnitude_drawn(self, observed: np.ndarray, buses: np.ndarray) -> np.ndarray:
        """d|V| (len(observed), 2 len(buses)) of a few observed buses per unit P, then Q,
        drawn at each of many buses, interleaved as :meth:`drawn`; one transposed solve per
        observed bus instead of one solve per drawing bus. A held or absent observed bus
        (not PQ, or a negative index) does not move."""
        observed = np.asarray(observed, dtype=np.int64)
        buses = np.asarray(buses, dtype=np.int64)
        out = np.zeros((observed.size, 2 * buses.size))
        if self.V0.size == 0 or observed.size == 0 or buses.size == 0:
            return out
        npvpq = self.pvpq.size
        pq_pos = np.full(self.V0.size, -1, np.int64)
        pq_pos[self.pq] = np.arange(self.pq.size)
        pvpq_pos = np.full(self.V0.size, -1, np.int64)
        pvpq_pos[self.pvpq] = np.arange(npvpq)
        rows = np.flatnonzero((observed >= 0) & (pq_pos[np.maximum(observed, 0)] >= 0))
        if rows.size == 0:
            return out
        ok = buses >= 0
        p_at = np.where(ok, pvpq_pos[np.maximum(buses, 0)], -1)
        q_at = np.where(ok, pq_pos[np.maximum(buses, 0)], -1)
        has_p, has_q = np.flatnonzero(p_at >= 0), np.flatnonzero(q_at >= 0)
        for lo in range(0, rows.size, 128):  # a bounded dense right-hand side
            part = rows[lo : lo + 128]
            rhs = np.zeros((npvpq + self.pq.size, part.size))
            rhs[npvpq + pq_pos[observed[part]], np.arange(part.size)] = 1.0
            y = self.factor().solve(rhs, transpose=True)  # row r of J^-1 per observed bus
            # drawing = a negative injection
            out[np.ix_(part, 2 * has_p)] = -y[p_at[has_p]].T
            out[np.ix_(part, 2 * has_q + 1)] = -y[npvpq + q_at[has_q]].T
        return out

    def drawn(self, buses: np.ndarray) -> np.ndarray:
        """dV (n, 2 len(buses)): per unit P, then Q, drawn at each bus, interleaved. A bus
        with a held voltage (slack; or a negative index: not in this model) does not move."""
        n = self.V0.size
        buses = np.asarray(buses, dtype=np.int64)
        if n == 0 or buses.size == 0:
            return np.zeros((n, 2 * buses.size), complex)
        npvpq = self.pvpq.size
        rhs = np.zeros((npvpq + self.pq.size, 2 * buses.size))
        for j, b in enumerate(buses):
            if b < 0:
                continue
            rhs[np.flatnonzero(self.pvpq == b), 2 * j] = -1.0  # drawing = negative injection
            rhs[npvpq + np.flatnonzero(self.pq == b), 2 * j + 1] = -1.0
        x = self.factor().solve(rhs)
        dva = np.zeros((n, 2 * buses.size))
        dvm = np.zeros((n, 2 * buses.size))
        dva[self.pvpq] = x[:npvpq]
        dvm[self.pq] = x[npvpq:]
        return self.V0[:, None] * (dvm / np.abs(self.V0)[:, None] + 1j * dva)
