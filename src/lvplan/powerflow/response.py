"""The linear response of a converged AC operating point: one sparse LU of the Newton-Raphson
Jacobian, then the voltage change of every bus per unit of P and Q drawn at given buses.

Shared by the check's fast engine (the whole network) and the hosting map's MV model (the MV
part, LV areas replaced by what they draw).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pandapower.pypower.dSbus_dV import dSbus_dV
from scipy.sparse.linalg import splu


class LinearResponse:
    def __init__(self, Ybus, V0: np.ndarray, pv: np.ndarray, pq: np.ndarray):
        self.Ybus, self.V0, self.pv, self.pq = Ybus, V0, pv, pq
        self.pvpq = np.r_[pv, pq]
        self._lu = None

    def factor(self):
        """The LU of the Jacobian (computed on first use)."""
        if self._lu is None:
            pvpq, pq = self.pvpq, self.pq
            dVm, dVa = dSbus_dV(self.Ybus, self.V0)
            J = sp.vstack(
                [
                    sp.hstack([dVa[pvpq][:, pvpq].real, dVm[pvpq][:, pq].real]),
                    sp.hstack([dVa[pq][:, pvpq].imag, dVm[pq][:, pq].imag]),
                ]
            ).tocsc()
            self._lu = splu(J)
        return self._lu

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
