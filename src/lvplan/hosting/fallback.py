"""Buses the fast engine cannot model (voltage-dependent loads, a generator inside the area):
hosting capacity by bisection with pandapower's full AC load flow, as ``check`` would decide."""

from __future__ import annotations

import math

from lvplan.criteria import Criteria
from lvplan.decision import Question, _context, _extra_load, _headroom_kw, area_rule
from lvplan.errors import PowerFlowError
from lvplan.model.network import Network


def ac_bus_hosting(
    network: Network, criteria: Criteria, bus: int, *, pf: float, max_kw: float
) -> tuple[float, str, str]:
    """(hosting_kw, binding_kind, binding_element) at one bus, by full AC load flows."""
    ctx = _context(network, criteria)
    own_pre, _elsewhere, skips, _ = area_rule(network, ctx, bus)
    if own_pre:
        return 0.0, "pre_existing", own_pre[0].element
    q = Question(bus, 0.0, 0.0, 0.0, "generic", 1.0, pf)
    hr = _headroom_kw(network, ctx, q, None, skips, counted=False, blocked=False, cap_kw=max_kw)
    if hr is None:
        return float("nan"), "not_assessable", "base load flow failed"
    if hr >= max_kw:
        return max_kw, "cap", ""
    tan = math.tan(math.acos(pf))
    p = (hr + 0.1) / 1000.0
    try:
        st = network.run_ac_with([_extra_load(bus, p, p * tan, None)]).state
    except PowerFlowError:
        return hr, "voltage", "collapse"
    j = ctx.limits.judge(st, skip_bus=skips[0], skip_line=skips[1], skip_trafo=skips[2])
    if j.violations:
        v = j.violations[0]
        return hr, v.kind, v.element
    close = j.min_margin
    return hr, (close.kind if close else "voltage"), (close.element if close else "")


def ac_rows(network: Network, criteria: Criteria, buses, *, pf: float, max_kw: float):
    """The map's rows (``bus, hosting_kw, binding_kind, binding_element``) of ``buses``, each
    answered by :func:`ac_bus_hosting`."""
    import pandas as pd

    rows = [ac_bus_hosting(network, criteria, int(b), pf=pf, max_kw=max_kw) for b in buses]
    return pd.DataFrame(
        {
            "bus": list(buses),
            "hosting_kw": [r[0] for r in rows],
            "binding_kind": [r[1] for r in rows],
            "binding_element": [r[2] for r in rows],
        }
    )
