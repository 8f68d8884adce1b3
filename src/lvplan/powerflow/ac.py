"""The AC reference: pandapower's Newton-Raphson load flow with fixed, documented options."""

from __future__ import annotations

import warnings

import numpy as np
import pandapower as pp

from lvplan.errors import PowerFlowError
from lvplan.powerflow.state import GridState, LiveMasks

#: The options of every reference load flow lvplan runs (echoed in results as ``engine``).
RUNPP_OPTIONS: dict = {
    "algorithm": "nr",
    "calculate_voltage_angles": True,
    "init": "auto",
    "max_iteration": 30,
    "tolerance_mva": 1e-9,
    "trafo_model": "t",
    "trafo_loading": "current",
    "check_connectivity": True,
}


def run_ac(net, live: LiveMasks) -> GridState:
    """Run pandapower on ``net`` (which it writes results into) and return the judged quantities.

    Raises PowerFlowError when the load flow does not converge or an energised bus has NaN voltage.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pp.runpp(net, **RUNPP_OPTIONS)
    except pp.LoadflowNotConverged:
        raise PowerFlowError("AC load flow did not converge") from None
    except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
        raise PowerFlowError(f"AC load flow failed: {exc}") from None
    if not net.converged:
        raise PowerFlowError("AC load flow did not converge")
    vm = net.res_bus.vm_pu.to_numpy(dtype=float).copy()
    if not np.isfinite(vm[live.bus]).all():
        raise PowerFlowError("AC load flow returned NaN voltages at energised buses")
    line = (
        net.res_line.loading_percent.to_numpy(dtype=float).copy() if len(net.line) else np.zeros(0)
    )
    trafo = (
        net.res_trafo.loading_percent.to_numpy(dtype=float).copy()
        if len(net.trafo)
        else np.zeros(0)
    )
    if not (np.isfinite(line[live.line]).all() and np.isfinite(trafo[live.trafo]).all()):
        raise PowerFlowError("AC load flow returned NaN branch loadings")
    vm[~live.bus] = np.nan
    line[~live.line] = np.nan
    trafo[~live.trafo] = np.nan
    return GridState(vm, line, trafo, engine="pandapower")
