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

    def __getstate__(self) -> dict:
        """Pickled without its factor (KLU's does not pickle) and pattern: both made again
        on first use."""
        out = dict(self.__dict__)
        out["_lu"] = None
        out["_like"] = None
        out["_pattern"] = None  # made again from Ybus on first use
        return out

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

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

    def _positions(self) -> tuple[np.ndarray, np.ndarray]:
        """Each bus's position among pvpq (its angle, its P equation) and pq (its magnitude,
        its Q equation); -1 where it has none."""
        pq_pos = np.full(self.V0.size, -1, np.int64)
        pq_pos[self.pq] = np.arange(self.pq.size)
        pvpq_pos = np.full(self.V0.size, -1, np.int64)
        pvpq_pos[self.pvpq] = np.arange(self.pvpq.size)
        return pvpq_pos, pq_pos

    def functionals_drawn(self, functionals, buses: np.ndarray) -> np.ndarray:
        """How a few linear functionals of the state move per unit P, then Q, drawn at each
        of many buses, interleaved as :meth:`drawn`: (m, 2 len(buses)). ``functionals``: a
        sparse (m, npvpq + npq) matrix, each row the functional's weights on the angles (pvpq
        order) then the magnitudes (pq order). One transposed solve per functional instead
        of one solve per drawing bus (the optimiser watches a few elements and loads many)."""
        import scipy.sparse as sp

        F = sp.csr_matrix(functionals)
        buses = np.asarray(buses, dtype=np.int64)
        out = np.zeros((F.shape[0], 2 * buses.size))
        if self.V0.size == 0 or F.shape[0] == 0 or buses.size == 0:
            return out
        npvpq = self.pvpq.size
        pvpq_pos, pq_pos = self._positions()
        ok = buses >= 0
        p_at = np.where(ok, pvpq_pos[np.maximum(buses, 0)], -1)
        q_at = np.where(ok, pq_pos[np.maximum(buses, 0)], -1)
        has_p, has_q = np.flatnonzero(p_at >= 0), np.flatnonzero(q_at >= 0)
        for lo in range(0, F.shape[0], 128):  # a bounded dense right-hand side
            rows = np.arange(lo, min(lo + 128, F.shape[0]))
            rhs = F[rows].toarray().T
            if not rhs.any():
                continue
            y = self.factor().solve(rhs, transpose=True)  # the functional through J^-1
            # drawing = a negative injection
            out[np.ix_(rows, 2 * has_p)] = -y[p_at[has_p]].T
            out[np.ix_(rows, 2 * has_q + 1)] = -y[npvpq + q_at[has_q]].T
        return out

    def magnitude_drawn(self, observed: np.ndarray, buses: np.ndarray) -> np.ndarray:
        """d|V| (len(observed), 2 len(buses)) of a few observed buses per unit P, then Q,
        drawn at each of many buses (:meth:`functionals_drawn`). A held or absent observed bus
        (not PQ, or a negative index) does not move."""
        import scipy.sparse as sp

        observed = np.asarray(observed, dtype=np.int64)
        _pvpq_pos, pq_pos = self._positions()
        at = np.where(observed >= 0, pq_pos[np.maximum(observed, 0)], -1)
        rows = np.flatnonzero(at >= 0)
        F = sp.csr_matrix(
            (np.ones(rows.size), (rows, self.pvpq.size + at[rows])),
            shape=(observed.size, self.pvpq.size + self.pq.size),
        )
        return self.functionals_drawn(F, buses)

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
