"""The AC reference: pandapower's Newton-Raphson load flow with fixed, documented options."""

from __future__ import annotations

import warnings

import numpy as np
import pandapower as pp

from lvplan.errors import NotConverged, PowerFlowError
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

#: From this many buses on, pandapower's load flow runs with numba (``runpp(numba=True)``); below
#: it, without. Both are the same Newton-Raphson on the same equations to the same tolerance
#: (states agree to ~1e-12, tests/test_cold.py), but numba compiles pandapower's kernels on the
#: first load flow of every process: ~5 s, where a load flow of a 50-bus network takes 40 ms
#: without numba (16 ms with) and one of 10,000 buses 0.2 s (0.08 s with). A process that runs
#: few load flows (one CLI check, an inspection, a hosting run's base case) never earns the
#: compilation back on a small network.
NUMBA_MIN_BUSES = 5000
#: A net marked with this key (an MV island of a city: :class:`lvplan.model.islands.
#: IslandStates`) runs with numba whatever its size: a process that prepares hundreds of
#: islands earns the compilation back (a 1,300-bus island: 25 against 36-40 ms of CPU a load
#: flow once compiled; the compilation about 2.5-5 s once).
NUMBA_KEY = "_lvplan_numba"


def runpp_options(net) -> dict:
    """``RUNPP_OPTIONS`` plus the ``numba`` choice for ``net`` (see ``NUMBA_MIN_BUSES`` and
    ``NUMBA_KEY``)."""
    numba = len(net.bus) >= NUMBA_MIN_BUSES or bool(net.get(NUMBA_KEY, False))
    return {**RUNPP_OPTIONS, "numba": numba}


def run_ac(net, live: LiveMasks) -> GridState:
    """Run pandapower on ``net`` (which it writes results into) and return the judged quantities.

    Raises PowerFlowError when the load flow does not converge or an energised bus has NaN voltage.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pp.runpp(net, **runpp_options(net))
    except pp.LoadflowNotConverged:
        raise NotConverged("AC load flow did not converge") from None
    except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
        raise PowerFlowError(f"AC load flow failed: {exc}") from None
    except UserWarning as exc:  # pandapower's refusals: one, a net nothing supplies, is a
        if "reference bus" not in str(exc):  # load flow that cannot run; the rest are data
            # that validation let pass and pandapower refuses (an ideal phase shifter given
            # both tap steps: a traceback, exit 1, before; probe, 2026-12-07): bad input
            from lvplan.errors import InputError

            text = " ".join(str(exc).split())
            raise InputError(f"invalid network: pandapower refuses its data: {text}") from None
        raise PowerFlowError(f"AC load flow failed: {exc}") from None
    if not net.converged:
        raise NotConverged("AC load flow did not converge")
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
