"""The linear solve inside an LV area's implicit Z-bus iteration, dense or sparse by size.

The area's AC equations with its roots held are ``Y_LL V_L + Y_LR V_R = conj(S_L / V_L)``;
every Z-bus step solves them for ``V_L`` with the currents on the right fixed:
``V_L = Y_LL^-1 (I_L - Y_LR V_R)``. Small areas keep ``Z = inv(Y_LL)`` and ``M = -Z Y_LR``
(a dense product is the fastest there); larger ones keep a sparse LU of ``Y_LL`` (SuperLU with
a minimum-degree ordering: a radial area factors without fill, so a step costs O(n) per
scenario instead of O(n^2), and the inverse's O(n^3) is never paid). Many scenarios at once
(the map) are solved with KLU when kvxopt is installed (3x faster than SuperLU there: 15 vs 44 ms
for 1,812 scenarios of 906 buses), one vector with SuperLU (less call overhead).

Measured per step on one core (one scenario / as many scenarios as buses): 43 buses 1.2 / 12 us
dense, 3.1 / 16 us sparse; 128 buses 3.2 / 280 us dense, 4.1 / 180 us sparse; 293 buses 28 us /
5.0 ms dense, 12 us / 0.46 ms sparse; 906 buses 167 us / 21 ms (200 scenarios) dense, 14 us /
1.5 ms sparse. Both give the same voltages to round-off (tests/test_hosting.py compares them
on a 906-bus area to 1e-10 pu).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from lvplan.powerflow.sparse_lu import _klu, _kv

#: Areas of at most this many buses are solved with the dense inverse, larger ones sparse.
DENSE_MAX_BUSES = 100
#: The dense inverses kept at once, in bytes, over every area of the process (the least
#: recently used one is dropped and computed again when next needed: 0.3 ms for 78 buses; the
#: same numbers, as the same LAPACK call on the same matrix). At a million buses every area's
#: inverse would hold about 0.75 GB.
DENSE_KEEP_BYTES = 256 * 2**20


class _DenseKept:
    """The dense inverses held, least recently used first, up to :data:`DENSE_KEEP_BYTES`."""

    def __init__(self) -> None:
        self._held: OrderedDict[int, tuple[weakref.ref, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.RLock()  # a solver's death (weakref callback) may come inside

    def used(self, solver: AreaSolver, nbytes: int) -> None:
        with self._lock:
            key = id(solver)
            hit = self._held.get(key)
            if hit is not None and hit[0]() is solver:
                self._held.move_to_end(key)
                return
            if hit is not None:  # a dead solver's id, reused
                self._bytes -= hit[1]
            self._held[key] = (weakref.ref(solver, self._gone(key)), nbytes)
            self._bytes += nbytes
            while self._bytes > DENSE_KEEP_BYTES and len(self._held) > 1:
                _, (ref, size) = self._held.popitem(last=False)
                self._bytes -= size
                old = ref()
                if old is not None:
                    old._ZM = None

    def _gone(self, key: int):
        def drop(ref: weakref.ref) -> None:
            with self._lock:
                hit = self._held.get(key)
                if hit is not None and hit[0] is ref:
                    del self._held[key]
                    self._bytes -= hit[1]

        return drop

    @property
    def nbytes(self) -> int:
        return self._bytes


_KEPT = _DenseKept()


class AreaSolver:
    """``V_L = Y_LL^-1 (I_L - Y_LR V_R)`` for one area (``I_L``, ``V_R``: vectors or columns).

    Raises ``numpy.linalg.LinAlgError`` when ``Y_LL`` is singular. ``dense`` forces a method
    (default: by :data:`DENSE_MAX_BUSES`)."""

    def __init__(
        self, Y_LL: Any, Y_LR: Any, *, dense: bool | None = None, backend: str | None = None
    ):
        self.Y_LL = Y_LL = sp.csc_matrix(Y_LL, dtype=complex)
        self.Y_LR = sp.csr_matrix(Y_LR, dtype=complex)
        self._root_rows = np.flatnonzero(np.diff(self.Y_LR.indptr))  # buses joined to a root
        self._Y_LR_rows = self.Y_LR[self._root_rows]
        self.n = int(Y_LL.shape[0])
        self.dense = self.n <= DENSE_MAX_BUSES if dense is None else bool(dense)
        #: (Z, M) of a dense area, while kept (:data:`DENSE_KEEP_BYTES`)
        self._ZM: tuple[np.ndarray, np.ndarray] | None = None
        self._lu: Any = None
        self.backend = "dense" if self.dense else "superlu"
        self._kron: dict[bytes, tuple[np.ndarray, ...]] = {}
        self._want = backend
        if self.dense:
            self._inverse()  # raises LinAlgError now when Y_LL is singular
        else:
            self._factorise()

    def _inverse(self) -> tuple[np.ndarray, np.ndarray]:
        """``(Z, M)``: ``Z = inv(Y_LL)``, ``M = -Z Y_LR`` (a dense area), computed when not
        kept. Callers hold the pair while they use it (another thread may drop it here)."""
        zm = self._ZM
        if zm is None:
            Z = np.linalg.inv(self.Y_LL.toarray())
            zm = (Z, -Z @ self.Y_LR.toarray())
            self._ZM = zm
        _KEPT.used(self, zm[0].nbytes + zm[1].nbytes)
        return zm

    @property
    def Z(self) -> np.ndarray | None:
        """``inv(Y_LL)`` of a dense area (None: sparse)."""
        return self._inverse()[0] if self.dense else None

    @property
    def M(self) -> np.ndarray | None:
        """``-Z Y_LR`` of a dense area (None: sparse)."""
        return self._inverse()[1] if self.dense else None

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the sparse factors (SuperLU and KLU objects do not pickle): they
        are computed again on unpickling."""
        out = dict(self.__dict__)
        for key in ("_lu", "_A", "_sym", "_num"):
            out.pop(key, None)
        out["_ZM"] = None  # a dense area's inverse: made again when used (cheaper than bytes)
        out["_kron"] = {}
        return out

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lu = None
        if not self.dense:
            self._factorise()

    def _factorise(self) -> None:
        """The sparse factors of ``Y_LL``: SuperLU, and KLU where kvxopt is installed."""
        Y_LL, backend = self.Y_LL, self._want
        try:
            self._lu = splu(
                Y_LL,
                permc_spec="MMD_AT_PLUS_A",
                diag_pivot_thresh=0.1,
                options={"SymmetricMode": True},
            )
        except RuntimeError as exc:  # "Factor is exactly singular"
            raise np.linalg.LinAlgError(str(exc)) from None
        if _klu is not None and backend != "superlu":
            coo = Y_LL.tocoo()
            self._A = _kv.spmatrix(
                _kv.matrix(coo.data),
                _kv.matrix(coo.row.astype(int)),
                _kv.matrix(coo.col.astype(int)),
                Y_LL.shape,
            )
            try:
                self._sym = _klu.symbolic(self._A)
                self._num = _klu.numeric(self._A, self._sym)
                self.backend = "klu"
            except ArithmeticError as exc:
                raise np.linalg.LinAlgError(str(exc)) from None

    def root_term(self, V_R: np.ndarray) -> np.ndarray:
        """What the roots contribute, in the form :meth:`step` takes (dense: ``M V_R``;
        sparse: ``-Y_LR V_R`` on the few rows joined to a root): computed once per root
        voltage. Its columns are the scenarios' (``term[:, cols]`` selects some)."""
        if self.dense:
            return self._inverse()[1] @ V_R
        return -(self._Y_LR_rows @ V_R)

    def step(self, I: np.ndarray, term: np.ndarray) -> np.ndarray:
        """``V_L`` for currents ``I`` injected at the area's buses and ``term`` from
        :meth:`root_term`."""
        if self.dense:
            return term + self._inverse()[0] @ I
        X = np.array(I, dtype=complex, order="F")  # the layout the sparse solvers take
        X[self._root_rows] += term
        return self.solve(X)

    def z(self, I: np.ndarray) -> np.ndarray:
        """``Z I = Y_LL^-1 I``."""
        if self.dense:
            return self._inverse()[0] @ I
        return self.solve(I)

    def solve(self, B: np.ndarray, trans: str = "N") -> np.ndarray:
        """``Y_LL^-1 B`` (``trans="T"``: ``Y_LL^-T B``) with the sparse factor."""
        B = np.asarray(B, dtype=complex)
        if self.backend != "klu" or (B.ndim == 1 and trans == "N"):
            return self._lu.solve(B, trans=trans)  # SuperLU: less overhead for one vector
        X = _kv.matrix(np.asfortranarray(B.reshape(self.n, -1)))
        _klu.solve(self._A, self._sym, self._num, X, trans=trans)
        return np.asarray(X).reshape(B.shape)  # a view of kvxopt's column-major result

    def voltages(self, I: np.ndarray, V_R: np.ndarray) -> np.ndarray:
        return self.step(I, self.root_term(V_R))

    def columns(self, P: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(Z[:, P], Z[P, :].T, diag(Z), M)`` with ``Z = inv(Y_LL)``, ``M = -Z Y_LR``: what an
        iteration on the buses ``P`` alone needs (``P`` with every nonzero injection, the
        voltage at any bus is ``M V_R + Z[:, P] I_P`` plus the column of a new load). Cached."""
        key = np.asarray(P, np.int64).tobytes()
        hit = self._kron.get(key)
        if hit is not None:
            return hit  # type: ignore[return-value]
        n, m = self.n, P.size
        if self.dense:
            Z, M_ = self._inverse()
            out = (Z[:, P], Z[P, :].T.copy(), np.diag(Z).copy(), M_)
        else:
            E = np.zeros((n, m), complex)
            E[P, np.arange(m)] = 1.0
            ZP = self.solve(E)
            ZPt = self.solve(E, trans="T")
            diag = np.empty(n, complex)
            for lo in range(0, n, 256):
                c = np.arange(lo, min(n, lo + 256))
                B = np.zeros((n, c.size), complex)
                B[c, np.arange(c.size)] = 1.0
                diag[c] = self.solve(B)[c, np.arange(c.size)]
            M = self.solve(-self.Y_LR.toarray())
            out = (ZP, ZPt, diag, M)
        self._kron[key] = out
        return out
