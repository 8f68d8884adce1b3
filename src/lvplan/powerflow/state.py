"""GridState: the quantities the criteria judge, aligned with the pandapower tables."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LiveMasks:
    """Which rows of net.bus/line/trafo are in service and energised (fed from a slack)."""

    bus: np.ndarray
    line: np.ndarray
    trafo: np.ndarray


@dataclass(frozen=True)
class GridState:
    """Bus voltages (pu of vn_kv) and branch loadings (%) in the row order of net.bus/line/trafo.

    NaN marks an element that is out of service or not energised.
    """

    vm_pu: np.ndarray
    line_loading_percent: np.ndarray
    trafo_loading_percent: np.ndarray
    engine: str  # "pandapower" or "fast"
