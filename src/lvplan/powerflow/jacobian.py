"""The Newton-Raphson Jacobian of the polar power-flow equations, with a fixed sparsity pattern.

The same matrix pandapower's ``newtonpf`` builds from ``dSbus_dV`` (rows: P at PV and PQ buses,
then Q at PQ buses; columns: angles at PV and PQ buses, then magnitudes at PQ buses), but its
pattern is worked out once from ``Ybus`` so that a new operating point only recomputes the
values, in the pattern's column-major order: a refactorisation then costs a few milliseconds
(KLU keeps its symbolic analysis). ``tests/test_exact.py`` compares it with pandapower's.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


class JacobianPattern:
    def __init__(self, Ybus, pv: np.ndarray, pq: np.ndarray):
        n = Ybus.shape[0]
        Y = sp.coo_matrix(Ybus)
        # every Ybus entry plus the diagonal (its own terms even where Ybus has none)
        diag = np.arange(n)
        self.r = np.r_[Y.row, diag].astype(np.int64)
        self.c = np.r_[Y.col, diag].astype(np.int64)
        self.y = np.r_[Y.data, np.zeros(n, complex)]
        self.is_diag = np.r_[np.zeros(Y.nnz, bool), np.ones(n, bool)]
        self.Ybus = sp.csr_matrix(Ybus)
        pvpq = np.r_[pv, pq].astype(np.int64)
        npvpq, npq = pvpq.size, len(pq)
        self.shape = (npvpq + npq, npvpq + npq)
        p_row = np.full(n, -1, np.int64)
        p_row[pvpq] = np.arange(npvpq)
        q_row = np.full(n, -1, np.int64)
        q_row[np.asarray(pq, np.int64)] = npvpq + np.arange(npq)
        # the four blocks: (which rows, which columns, real/imag, dVa/dVm)
        rows, cols, pick = [], [], []
        for row_of, col_of, part in (
            (p_row, p_row, 0),  # dP/dVa: Re dS/dVa
            (p_row, q_row, 1),  # dP/dVm: Re dS/dVm
            (q_row, p_row, 2),  # dQ/dVa: Im dS/dVa
            (q_row, q_row, 3),  # dQ/dVm: Im dS/dVm
        ):
            keep = np.flatnonzero((row_of[self.r] >= 0) & (col_of[self.c] >= 0))
            rows.append(row_of[self.r[keep]])
            cols.append(col_of[self.c[keep]])
            pick.append(part * len(self.r) + keep)
        rows_a, cols_a, pick_a = np.concatenate(rows), np.concatenate(cols), np.concatenate(pick)
        # one slot per (row, column), column-major as CSC and KLU store it; a diagonal entry
        # of Ybus and the added diagonal terms share their slot
        key = cols_a * self.shape[0] + rows_a
        slots, slot_of = np.unique(key, return_inverse=True)
        # positions and slots kept in 32 bits where they fit (exact: they are counts): the
        # pattern lives as long as the island's factor, and at a million buses the 64-bit
        # copies held about 0.3 GB
        idx = np.int32 if max(4 * len(self.r), self.shape[0] + 1) < 2**31 else np.int64
        self.r, self.c = self.r.astype(idx), self.c.astype(idx)
        self.slot_of = slot_of.astype(idx)
        self.pick = pick_a.astype(idx)
        self.nnz = slots.size
        self.rows = (slots % self.shape[0]).astype(idx)
        counts = np.bincount(slots // self.shape[0], minlength=self.shape[1])
        self.indptr = np.r_[0, np.cumsum(counts)].astype(idx)

    @property
    def cols(self) -> np.ndarray:
        """The column of every slot (the pattern keeps the CSC ``indptr``)."""
        return np.repeat(np.arange(self.shape[1]), np.diff(self.indptr))

    def with_ybus(self, Ybus) -> JacobianPattern:
        """The same pattern for another ``Ybus`` of exactly the same structure (a network whose
        branches changed their values only): no new analysis, and a factor of this pattern can
        be refactored with the new values."""
        out = object.__new__(JacobianPattern)
        out.__dict__.update(self.__dict__)
        Y = sp.coo_matrix(Ybus)
        out.y = np.r_[Y.data, np.zeros(Ybus.shape[0], complex)]
        out.Ybus = sp.csr_matrix(Ybus)
        return out

    def values(self, V: np.ndarray) -> np.ndarray:
        """The Jacobian's nonzeros at ``V``, in the pattern's order."""
        I = self.Ybus @ V
        Vn = V / np.abs(V)
        r, c, y = self.r, self.c, self.y
        dvm = V[r] * np.conj(y * Vn[c])
        dva = 1j * V[r] * np.conj(-y * V[c])
        d = self.is_diag
        dvm[d] += np.conj(I[r[d]]) * Vn[r[d]]
        dva[d] += 1j * V[r[d]] * np.conj(I[r[d]])
        parts = np.concatenate([dva.real, dvm.real, dva.imag, dvm.imag])
        return np.bincount(self.slot_of, weights=parts[self.pick], minlength=self.nnz)

    def csc(self, V: np.ndarray) -> sp.csc_matrix:
        return sp.csc_matrix((self.values(V), self.rows, self.indptr), shape=self.shape)
