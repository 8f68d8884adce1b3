"""The AC load flow of a network changed in a few places, on the base's factorised Jacobian:
the *compensation* method (a low-rank update, Woodbury's identity).

A change adds admittance ``dY`` among a few buses (the ends of the branches it adds, replaces
or opens, and any new buses). The power it adds at those buses, ``dS = diag(V) conj(dY V)``,
depends only on their voltages, so the Jacobian of the changed model differs from the base's
only in the rows and columns of those buses (and has new ones for new buses):

    J' = A0 + P B Qᵀ,   A0 = [[J0, 0], [0, I]],   B = (J' - A0) on the affected rows x columns.

With ``J0`` factored once for the base, ``J'⁻¹ F = y - Z (I + Qᵀ Z)⁻¹ Qᵀ y`` where ``y = A0⁻¹ F``
and ``Z = A0⁻¹ P B`` (one solve with a handful of right-hand sides per evaluation; ``Qᵀ``
picks the affected columns). Iterating
with ``J'`` at the base point (chord steps, one LU solve each) from the base voltages converges
to pandapower's tolerance in a few steps for a local change; the caller falls back to a full
Newton-Raphson when it does not.
"""

from __future__ import annotations

import numpy as np

from lvplan.errors import PowerFlowError
from lvplan.powerflow.branch import Stamp
from lvplan.powerflow.sparse_lu import SparseLU

#: chord steps before the caller's full Newton-Raphson takes over
MAX_STEPS = 12


def _dS_dV(dY: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pypower's ``dSbus_dV`` (dense): derivatives of ``diag(V) conj(dY V)``."""
    Ib = dY @ V
    Vn = V / np.abs(V)
    dVm = np.diag(V) @ np.conj(dY @ np.diag(Vn)) + np.diag(np.conj(Ib) * Vn)
    dVa = 1j * np.diag(V) @ np.conj(np.diag(Ib) - dY @ np.diag(V))
    return dVm, dVa


class Compensation:
    """The changed model around a base: ``n0`` old buses (``Y0``, its Jacobian's ``lu`` at
    ``V_lin``, PV/PQ sets), new PQ buses (their starting voltages ``V_new``), and stamps added
    (``plus``) or removed (``minus``)."""

    def __init__(
        self,
        Y0,
        lu: SparseLU,
        V_lin: np.ndarray,
        pv: np.ndarray,
        pq: np.ndarray,
        V_new: np.ndarray,
        plus: list[Stamp],
        minus: list[Stamp],
    ):
        self.Y0 = Y0
        self.lu = lu
        n0 = Y0.shape[0]
        n_new = len(V_new)
        self.n0, self.n = n0, n0 + n_new
        self.pv, self.pq = np.asarray(pv, np.int64), np.asarray(pq, np.int64)
        self.pvpq = np.r_[self.pv, self.pq]
        self.new = np.arange(n0, self.n)
        # unknown positions: the base's order [Va(pv, pq), Vm(pq)], then [Va(new), Vm(new)]
        npvpq, npq = self.pvpq.size, self.pq.size
        self.n_old_x = npvpq + npq
        self.pos_va = np.full(self.n, -1, np.int64)
        self.pos_vm = np.full(self.n, -1, np.int64)
        self.pos_va[self.pvpq] = np.arange(npvpq)
        self.pos_vm[self.pq] = npvpq + np.arange(npq)
        self.pos_va[self.new] = self.n_old_x + np.arange(n_new)
        self.pos_vm[self.new] = self.n_old_x + n_new + np.arange(n_new)
        self.size = self.n_old_x + 2 * n_new
        # the affected buses and the admittance the stamps add among them
        touched = sorted({b for s in plus + minus for b in (s.f, s.t)} | set(self.new.tolist()))
        self.buses = np.array(touched, np.int64)
        where = {b: k for k, b in enumerate(touched)}
        dY = np.zeros((len(touched), len(touched)), complex)
        for sign, group in ((1.0, plus), (-1.0, minus)):
            for s in group:
                idx = [where[s.f], where[s.t]]
                dY[np.ix_(idx, idx)] += sign * s.Y
        self.dY = dY
        # new buses are linearised where the warm start puts them (a unit's phase shift
        # included): the Jacobian's angle terms depend on it
        self.V_lin = np.r_[V_lin, np.asarray(V_new, complex)]
        self._prepare()

    # -- the low-rank update of the Jacobian at V_lin --------------------------------------------
    def _prepare(self) -> None:
        b = self.buses
        Vs = self.V_lin[b]
        dVm, dVa = _dS_dV(self.dY, Vs)
        rows: list[int] = []
        cols: list[int] = []
        row_of: list[tuple[int, str]] = []  # (local bus, "P"|"Q")
        col_of: list[tuple[int, str]] = []
        for k, bus in enumerate(b):
            if self.pos_va[bus] >= 0:
                rows.append(int(self.pos_va[bus]))
                row_of.append((k, "P"))
                cols.append(int(self.pos_va[bus]))
                col_of.append((k, "a"))
            if self.pos_vm[bus] >= 0:
                rows.append(int(self.pos_vm[bus]))
                row_of.append((k, "Q"))
                cols.append(int(self.pos_vm[bus]))
                col_of.append((k, "m"))
        B = np.zeros((len(rows), len(cols)))
        for i, (ki, part) in enumerate(row_of):
            for j, (kj, var) in enumerate(col_of):
                d = dVa[ki, kj] if var == "a" else dVm[ki, kj]
                B[i, j] = d.real if part == "P" else d.imag
        rows_a = np.array(rows, np.int64)
        cols_a = np.array(cols, np.int64)
        for i, r in enumerate(rows):
            if r >= self.n_old_x:  # A0 holds 1 on a new unknown's diagonal
                j = cols.index(r)
                B[i, j] -= 1.0
        P = np.zeros((self.size, len(rows)))
        P[rows_a, np.arange(len(rows))] = 1.0
        # Z = A0⁻¹ P B is kept as its two factors: G = A0⁻¹ P (tall, r columns) and B, so a
        # solve is two matrix-vector products (a tall product with B costs a BLAS call that,
        # multi-threaded on a busy machine, took 12 ms where these take 0.1 ms)
        self.G = np.ascontiguousarray(self._a0_solve(P))
        self.B = B
        self.cols = cols_a
        self.W = np.eye(len(cols)) + self.G[cols_a] @ B

    def _a0_solve(self, b: np.ndarray) -> np.ndarray:
        out = np.array(b, dtype=float, copy=True)
        m = self.n_old_x
        if m:
            out[:m] = self.lu.solve(b[:m])
        return out  # the new unknowns: A0 is the identity there

    def solve(self, F: np.ndarray) -> np.ndarray:
        y = self._a0_solve(F)
        if self.cols.size == 0:
            return y
        return y - self.G @ (self.B @ np.linalg.solve(self.W, y[self.cols]))

    # -- the changed model ------------------------------------------------------------------------
    def injections(self, V: np.ndarray) -> np.ndarray:
        """``V conj(Y' V)`` of the changed model."""
        I = np.zeros(self.n, complex)
        I[: self.n0] = self.Y0 @ V[: self.n0]
        I[self.buses] += self.dY @ V[self.buses]
        return V * np.conj(I)

    def run(self, S: np.ndarray, V0: np.ndarray, tol: float) -> tuple[np.ndarray, int]:
        """Chord steps with the changed Jacobian at the base point; raises PowerFlowError
        when they do not reach ``tol`` within MAX_STEPS (the caller then runs Newton)."""
        V = np.asarray(V0, complex).copy()
        Va, Vm = np.angle(V), np.abs(V)
        old_va, old_vm = self.pvpq, self.pq
        new = self.new

        def mismatch(V: np.ndarray) -> tuple[np.ndarray, float]:
            mis = self.injections(V) - S
            F = np.r_[mis[old_va].real, mis[old_vm].imag, mis[new].real, mis[new].imag]
            nf = float(np.max(np.abs(F), initial=0.0))
            return F, (nf if np.isfinite(nf) else np.inf)

        F, nf = mismatch(V)
        for it in range(MAX_STEPS + 1):
            if nf < tol:
                return V, it
            if it == MAX_STEPS or nf > 1e3:
                break
            dx = self.solve(F)
            n_old = self.n_old_x
            Va[old_va] -= dx[: old_va.size]
            Vm[old_vm] -= dx[old_va.size : n_old]
            Va[new] -= dx[n_old : n_old + new.size]
            Vm[new] -= dx[n_old + new.size :]
            V = Vm * np.exp(1j * Va)
            F, nf = mismatch(V)
        raise PowerFlowError("the compensation steps did not converge")
