"""Network validation: rules return issues; ``assert_valid`` raises one ``InvalidNetwork``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lvplan.errors import InvalidNetwork, ValidationIssue
from lvplan.model.topology import energized_buses

REQUIRED_COLUMNS = {
    "bus": ("vn_kv", "in_service"),
    "line": ("from_bus", "to_bus", "length_km", "r_ohm_per_km", "x_ohm_per_km", "max_i_ka"),
    "trafo": ("hv_bus", "lv_bus", "sn_mva", "vn_hv_kv", "vn_lv_kv", "vk_percent"),
    "load": ("bus", "p_mw", "q_mvar"),
    "ext_grid": ("bus", "vm_pu"),
}


def _num(s: pd.Series) -> np.ndarray:
    return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float)


def _first(element: str, mask: np.ndarray, index: pd.Index, field: str, msg: str):
    return [ValidationIssue(element, int(i), field, msg) for i in index[mask]]


def validate_network(net) -> list[ValidationIssue]:
    """Every problem that makes the network unusable for a load-flow based check."""
    issues: list[ValidationIssue] = []
    for element, cols in REQUIRED_COLUMNS.items():
        if element not in net:
            issues.append(ValidationIssue(element, None, "-", "table is missing"))
            continue
        for c in cols:
            if c not in net[element].columns:
                issues.append(ValidationIssue(element, None, c, "column is missing"))
    if issues:
        return issues

    bus = net.bus
    if bus.empty:
        return [ValidationIssue("bus", None, "-", "the network has no buses")]
    vn = _num(bus.vn_kv)
    issues += _first("bus", ~(vn > 0), bus.index, "vn_kv", "nominal voltage missing or <= 0")
    known = set(bus.index.tolist())

    eg = net.ext_grid[net.ext_grid.in_service.astype(bool)]
    if eg.empty:
        issues.append(ValidationIssue("ext_grid", None, "-", "no in-service external grid (slack)"))

    line = net.line[net.line.in_service.astype(bool)]
    for end in ("from_bus", "to_bus"):
        bad = ~line[end].isin(known).to_numpy()
        issues += _first("line", bad, line.index, end, "refers to an unknown bus")
    length = _num(line.length_km)
    issues += _first("line", ~(length > 0), line.index, "length_km", "missing or <= 0")
    r, x = _num(line.r_ohm_per_km), _num(line.x_ohm_per_km)
    noz = ~np.isfinite(r) | ~np.isfinite(x) | ((np.abs(r) + np.abs(x)) <= 0)
    issues += _first("line", noz, line.index, "r_ohm_per_km/x_ohm_per_km", "no impedance")
    imax = _num(line.max_i_ka)
    issues += _first("line", ~(imax > 0), line.index, "max_i_ka", "no ampacity (missing or <= 0)")

    tr = net.trafo[net.trafo.in_service.astype(bool)]
    for end in ("hv_bus", "lv_bus"):
        bad = ~tr[end].isin(known).to_numpy()
        issues += _first("trafo", bad, tr.index, end, "refers to an unknown bus")
    sn = _num(tr.sn_mva)
    issues += _first("trafo", ~(sn > 0), tr.index, "sn_mva", "no rating (missing or <= 0)")
    vk = _num(tr.vk_percent)
    issues += _first("trafo", ~(vk > 0), tr.index, "vk_percent", "missing or <= 0")

    for element in ("load", "sgen"):
        if element not in net or net[element].empty:
            continue
        tab = net[element][net[element].in_service.astype(bool)]
        bad = ~tab.bus.isin(known).to_numpy()
        issues += _first(element, bad, tab.index, "bus", "refers to an unknown bus")
        for c in ("p_mw", "q_mvar"):
            issues += _first(element, ~np.isfinite(_num(tab[c])), tab.index, c, "missing or NaN")
    if issues:
        return issues

    # islands: in-service buses that carry a load or generator but have no path to a slack
    live = energized_buses(net)
    for element in ("load", "sgen"):
        if element not in net or net[element].empty:
            continue
        tab = net[element][net[element].in_service.astype(bool)]
        dead = ~tab.bus.isin(live).to_numpy()
        for i, b in zip(tab.index[dead], tab.bus[dead], strict=True):
            issues.append(
                ValidationIssue("bus", int(b), "-", f"islanded: {element} {int(i)} has no supply")
            )
    return issues


def assert_valid(net) -> None:
    issues = validate_network(net)
    if issues:
        raise InvalidNetwork(issues)
