"""The one LV area model: an LV area cut out of pandapower's admittance model.

An LV area is the set of buses below 1 kV that one or more transformers feed (the fast engine's
``lv_label``). Its model is the rows of ``Ybus`` at its buses ``L``: ``Y_LL`` on the area's own
columns and ``Y_LR`` on its *roots* ``R`` (the buses outside it that these rows touch: the MV
sides of its transformers), so that ``V_L = Y_LL^-1 (I_L - Y_LR V_R)``; and its *boundary
branches*, the branch rows joining a root to the area, through which it draws its power.

Both users take the area from here: the fast engine (one load at a time, ``check``) and the
hosting preparation (every bus at once, the map and ``/v1/capacity/buses``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from lvplan.powerflow.area_lu import AreaSolver


class AreaUnsupported(Exception):
    """The area cannot be modelled on its own (the message says why); callers fall back to
    the full AC load flow."""


@dataclass
class AreaCut:
    L: np.ndarray  # internal bus indices of the area (sorted; slack buses excluded)
    R: np.ndarray  # its roots (sorted)
    Y_LL: sp.csc_matrix  # (nL, nL)
    Y_LR: sp.csr_matrix  # (nL, nR)
    bnd_rows: np.ndarray  # branch rows joining a root and the area (ascending)
    bnd_root_is_from: np.ndarray  # the root is the branch's from bus
    bnd_root_pos: np.ndarray  # position in R of each boundary row's root
    solver: AreaSolver  # V_L = Y_LL^-1 (I_L - Y_LR V_R): dense inverse or sparse LU by size


def cut_area(
    Ybus: sp.csr_matrix,
    f_bus: np.ndarray,
    t_bus: np.ndarray,
    L_all: np.ndarray,
    *,
    ref: np.ndarray,
    pv: np.ndarray,
    incidence: tuple[np.ndarray, np.ndarray] | None = None,
) -> AreaCut:
    """The model of the area whose buses are ``L_all`` (internal indices). A slack bus inside
    the area holds its voltage: it becomes one of the roots. Raises :class:`AreaUnsupported`
    for an area that is only a slack, has a voltage-controlled bus, no supply or a singular
    ``Y_LL``.

    ``incidence`` (:func:`branch_incidence`): the branches at each bus, so that only the
    area's own rows and branches are read. Without it every branch of the network is scanned
    (and a column of ``Ybus`` selected over all its buses): the same model, at a cost that
    grows with the network per area (a million-bus map cut 13,000 areas that way)."""
    L = np.sort(np.asarray(L_all, np.int64))
    L = L[~np.isin(L, ref)]
    if L.size == 0:
        raise AreaUnsupported("the LV area is only a slack bus")
    if np.isin(L, pv).any():
        raise AreaUnsupported("a voltage-controlled bus lies inside the LV area")
    rows = Ybus[L]
    R = np.setdiff1d(np.unique(rows.indices), L)
    if R.size == 0:
        raise AreaUnsupported("the LV area has no supply")
    if incidence is None:
        n = Ybus.shape[0]
        inL = np.zeros(n, bool)
        inL[L] = True
        inR = np.zeros(n, bool)
        inR[R] = True
        fwd = inR[f_bus] & inL[t_bus]
        bwd = inL[f_bus] & inR[t_bus]
        bnd = np.flatnonzero(fwd | bwd)
        root_is_from = fwd[bnd]
        Y_LL, Y_LR = rows[:, L].tocsc(), rows[:, R].tocsr()
    else:
        # every branch with an end in L is at one of L's buses: the boundary is among them
        cand = np.unique(_gather(*incidence, L))
        f, t = f_bus[cand], t_bus[cand]
        fwd = np.isin(f, R) & np.isin(t, L)
        bwd = np.isin(f, L) & np.isin(t, R)
        keep = fwd | bwd
        bnd, root_is_from = cand[keep], fwd[keep]
        Y_LL, Y_LR = _columns(rows, L).tocsc(), _columns(rows, R).tocsr()
    root = np.where(root_is_from, f_bus[bnd], t_bus[bnd])
    try:
        solver = AreaSolver(Y_LL, Y_LR)
    except (np.linalg.LinAlgError, RuntimeError) as exc:  # RuntimeError: SuperLU singular
        raise AreaUnsupported("the LV area's admittance matrix is singular") from exc
    return AreaCut(
        L=L,
        R=R,
        Y_LL=Y_LL,
        Y_LR=Y_LR,
        bnd_rows=bnd,
        bnd_root_is_from=root_is_from,
        bnd_root_pos=np.searchsorted(R, root),
        solver=solver,
    )


def branch_incidence(f_bus: np.ndarray, t_bus: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The branch rows at each of ``n`` buses, as (pointers, rows): bus ``b``'s are
    ``rows[ptr[b]:ptr[b + 1]]``."""
    ends = np.concatenate([f_bus, t_bus]).astype(np.int64)
    rows = np.concatenate([np.arange(f_bus.size), np.arange(t_bus.size)])
    order = np.argsort(ends, kind="stable")
    ptr = np.searchsorted(ends[order], np.arange(n + 1))
    return ptr, rows[order]


def _gather(ptr: np.ndarray, values: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``values[ptr[k]:ptr[k + 1]]`` for every ``k`` of ``keys``, concatenated."""
    lo, hi = ptr[keys], ptr[keys + 1]
    size = hi - lo
    if not size.sum():
        return np.zeros(0, values.dtype)
    start = np.repeat(lo - np.r_[0, np.cumsum(size)[:-1]], size)
    return values[start + np.arange(int(size.sum()))]


def _columns(rows: sp.csr_matrix, cols: np.ndarray) -> sp.csr_matrix:
    """``rows[:, cols]`` for ascending ``cols``, without an array as long as ``rows`` is wide
    (the entries, their order and explicit zeros as SciPy's selection gives them)."""
    coo = rows.tocoo()
    at = np.searchsorted(cols, coo.col)
    hit = at < cols.size
    hit[hit] = cols[at[hit]] == coo.col[hit]
    return sp.csr_matrix((coo.data[hit], (coo.row[hit], at[hit])), shape=(rows.shape[0], cols.size))
