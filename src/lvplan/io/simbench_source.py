"""SimBench grids as planning networks: the high-load study case and an OLTC-set MV busbar."""

from __future__ import annotations

import warnings

import numpy as np
import pandapower as pp

from lvplan.errors import InputError, PowerFlowError
from lvplan.powerflow.ac import NUMBA_MIN_BUSES

MV_BUSBAR_TARGET_PU = 1.03


def check_code(code: str) -> None:
    """Refuse (one line) a code that is not one of SimBench's, without loading anything."""
    try:
        import simbench as sb
    except ImportError:  # pragma: no cover - a dependency
        raise InputError("the simbench package is not installed") from None
    known = sb.collect_all_simbench_codes()
    if code not in known:  # (before: IndexError tracebacks, or SimBench's own lines first)
        raise InputError(
            f"unknown SimBench code {code!r}: not one of SimBench's {len(known)} codes "
            "(e.g. 1-LV-urban6--0-sw, 1-MV-urban--0-sw; simbench.collect_all_simbench_codes())"
        )


def load_simbench(code: str, *, study_case: str = "hL"):
    """SimBench grid ``code`` with study case ``study_case`` applied.

    Loads and static generators are scaled by the study case factors, the slack voltage set to the
    case's value, and the HV/MV transformers' taps moved, as an on-load tap changer would, until
    their MV busbar sits as near 1.03 pu as the tap step allows.
    """
    import simbench as sb

    check_code(code)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            net = sb.get_simbench_net(code)
        except (ValueError, KeyError, FileNotFoundError) as exc:
            raise InputError(f"unknown SimBench code {code!r}: {exc}") from None
    if "loadcases" not in net or study_case not in net.loadcases.index:
        raise InputError(f"SimBench {code}: no study case {study_case!r}")
    lc = net.loadcases.loc[study_case]
    net.load["p_mw"] *= float(lc["pload"])
    net.load["q_mvar"] *= float(lc["qload"])
    if len(net.sgen):
        kind = net.sgen["type"].astype(str)
        factor = np.where(
            kind.str.contains("Wind|WP", regex=True),
            float(lc["Wind_p"]),
            np.where(kind.str.contains("PV"), float(lc["PV_p"]), float(lc["RES_p"])),
        )
        net.sgen["p_mw"] *= factor
    net.ext_grid["vm_pu"] = float(lc["Slack_vm"])
    _set_oltc_taps(net)
    for tab in list(net.keys()):
        if tab.startswith("res_"):
            net[tab] = net[tab].iloc[0:0]
    _canonical_columns(net)
    return net


def _canonical_columns(net) -> None:
    """Put each table's columns in one order: pandapower's own first, in its order, then the
    ones simbench adds (``subnet``, ``voltLvl``, ...) sorted. simbench adds them in the order of
    a set of strings, which changes with Python's hash seed from one process to the next: the
    same grid then had another fingerprint in every process, and a second server (or a restart)
    was refused by a register bound to the first."""
    import pandas as pd

    empty = pp.create_empty_network()
    for tab in list(net.keys()):
        df = net[tab]
        if tab.startswith("_") or not isinstance(df, pd.DataFrame):
            continue
        own = [c for c in empty[tab].columns if c in df.columns] if tab in empty else []
        rest = sorted((c for c in df.columns if c not in own), key=str)
        if list(df.columns) != own + rest:
            net[tab] = df[own + rest]


def _set_oltc_taps(net, target_pu: float = MV_BUSBAR_TARGET_PU) -> None:
    hvmv = net.trafo.index[(net.trafo.vn_hv_kv > 35) & (net.trafo.vn_lv_kv <= 35)]
    if len(hvmv) == 0:
        return
    net.trafo.loc[hvmv, "tap_changer_type"] = "Ratio"
    for _ in range(8):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pp.runpp(
                    net,
                    calculate_voltage_angles=True,
                    init="auto",
                    numba=len(net.bus) >= NUMBA_MIN_BUSES,
                )
        except pp.LoadflowNotConverged:
            raise PowerFlowError("SimBench base case did not converge while setting taps") from None
        vm = net.res_bus.vm_pu.loc[net.trafo.loc[hvmv, "lv_bus"]].to_numpy()
        step = net.trafo.loc[hvmv, "tap_step_percent"].to_numpy() / 100.0
        sign = np.where(net.trafo.loc[hvmv, "tap_side"].to_numpy() == "hv", 1.0, -1.0)
        move = np.round((vm - target_pu) / step) * sign
        if not np.any(move):
            return
        pos = net.trafo.loc[hvmv, "tap_pos"].to_numpy() + move
        net.trafo.loc[hvmv, "tap_pos"] = np.clip(
            pos, net.trafo.loc[hvmv, "tap_min"], net.trafo.loc[hvmv, "tap_max"]
        )
