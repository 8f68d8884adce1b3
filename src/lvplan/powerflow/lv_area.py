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
) -> AreaCut:
    """The model of the area whose buses are ``L_all`` (internal indices). A slack bus inside
    the area holds its voltage: it becomes one of the roots. Raises :class:`AreaUnsupported`
    for an area that is only a slack, has a voltage-controlled bus, no supply or a singular
    ``Y_LL``."""
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
    n = Ybus.shape[0]
    inL = np.zeros(n, bool)
    inL[L] = True
    inR = np.zeros(n, bool)
    inR[R] = True
    fwd = inR[f_bus] & inL[t_bus]
    bwd = inL[f_bus] & inR[t_bus]
    bnd = np.flatnonzero(fwd | bwd)
    root_is_from = fwd[bnd]
    root = np.where(root_is_from, f_bus[bnd], t_bus[bnd])
    Y_LL, Y_LR = rows[:, L].tocsc(), rows[:, R].tocsr()
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
