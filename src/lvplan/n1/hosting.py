"""The N-1 column of the hosting map: the largest load each LV bus takes with every
contingency of its feeder and its loop partners still restorable within the emergency limits.

For each contingency, the option that restores it best as the network stands is mapped (as the
check holds the headroom search to it: never more than fits): its network's area problems are
built with the MV network alone judged (:func:`lvplan.hosting.build.prepare` with the N-1
scope) for the areas on the lost feeder and its loop partners, and solved by the map's one
capacity search. A bus's ``hosting_kw_n1`` is the smallest of its normal ``hosting_kw`` and
each relevant contingency's value; ``binding_n1`` says which bound it (``n1_transfer <element>
after <contingency>``, or the normal binding kind). Buses on a feeder whose loop fails N-1
already (a relevant contingency with no restoring tie, or whose every option breaks an
emergency limit without any new load) get 0, as do buses on a 10 kV group with no source
busbar found (``n1_not_judged``: which loss would cut it off is not known).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lvplan.criteria import Criteria
from lvplan.model.network import Network
from lvplan.model.topology import unfed
from lvplan.n1.assess import FAIL, NO_TIE, NOT_ASSESSABLE, judge_contingency, mv_scope, n1_context
from lvplan.n1.feeders import PassRate, pass_rate


def n1_columns(
    network: Network, crit: Criteria, table: pd.DataFrame, *, pf: float, max_kw: float
) -> tuple[pd.DataFrame, dict, PassRate]:
    """``table`` (the map, one row per bus) with ``hosting_kw_n1`` and ``binding_n1``,
    per-feeder facts for ``transformers.csv`` (feeder -> status, worst violation), and the
    district's N-1 pass rate (for ``summary.json``)."""
    from lvplan.hosting.area import solve_area
    from lvplan.hosting.build import prepare

    ctx = n1_context(network, crit)
    top = ctx.topology
    trafo_feeder = network.topology.trafo_feeder
    outcomes = {}
    feeders: dict[str, dict] = {}
    for name, f in top.feeders.items():
        for c in f.contingencies:
            outcomes[c.id] = judge_contingency(ctx, c, None, 0.0, 0.0)
        failing = [outcomes[c.id] for c in f.contingencies if outcomes[c.id].status != "pass"]
        worst = ""
        if failing:
            o = failing[0]
            if o.status == NO_TIE:
                worst = f"{o.contingency.id}: no restoring tie"
            elif o.best is not None and o.best.violations:
                v = o.best.violations[0]
                worst = (
                    f"{v.element} {v.value:.4g} {v.unit} (limit {v.limit:.4g}) "
                    f"after {o.contingency.id}"
                )
        feeders[name] = {"status": "fails" if failing else "ok", "worst": worst}

    # the buses' feeders, and which feeders fail N-1 already (through any relevant contingency)
    topo = network.topology
    bus_feeder = {}
    for b in table.bus.to_numpy():
        area = topo.area_of(int(b))
        bus_feeder[int(b)] = trafo_feeder.get(area.trafos[0]) if area and area.trafos else None
    blocked: dict[str, str] = {}
    for name in top.feeders:
        for c in top.relevant(name):
            o = outcomes[c.id]
            if o.status in (NO_TIE, NOT_ASSESSABLE) or (o.status == FAIL and o.fails_already):
                blocked.setdefault(name, f"n1_transfer after {c.id}")

    kw_n1 = table.hosting_kw.to_numpy(float).copy()
    binding = table.binding_kind.astype(str).to_numpy(object).copy()
    pos = {int(b): k for k, b in enumerate(table.bus.to_numpy())}
    for b, k in pos.items():
        fd = bus_feeder.get(b)
        if fd in blocked:
            kw_n1[k] = 0.0
            binding[k] = blocked[fd]
        elif unfed(fd):  # (no source busbar found: N-1 not judged, so no room claimed)
            kw_n1[k] = 0.0
            binding[k] = "n1_not_judged (no source busbar found for its 10 kV group)"

    for name, f in top.feeders.items():
        wanted = {name, *f.partners} - set(blocked)
        if not wanted:
            continue
        for c in f.contingencies:
            o = outcomes[c.id]
            if o.best is None or o.status != "pass":
                continue
            prep = ctx.prepared(o.best.option)
            net = prep.network
            if net is None:
                continue
            trafos = {t for t, fd in trafo_feeder.items() if fd in wanted}
            p = prepare(net, ctx.emergency, pf=pf, scope=mv_scope(net.pp), trafos=trafos)
            for prob in p.problems:
                ks = [pos.get(int(b)) for b in prob.buses]
                # the search stops at the bus's value so far: N-1 can only lower it
                cap = max((kw_n1[k] for k in ks if k is not None), default=0.0)
                if cap <= 0.0:
                    continue
                r = solve_area(prob, pf=pf, max_kw=min(max_kw, cap + 0.2))
                for b, kw, el in zip(r.buses, r.hosting_kw, r.binding_element, strict=True):
                    at = pos.get(int(b))
                    if at is None or bus_feeder.get(int(b)) not in wanted:
                        continue
                    if kw < kw_n1[at]:
                        kw_n1[at] = float(kw)
                        binding[at] = f"n1_transfer {el} after {c.id}, {o.best.option.name}"
    out = table.copy()
    out["hosting_kw_n1"] = np.floor(kw_n1 * 10.0 + 1e-9) / 10.0
    out["binding_n1"] = binding
    rate = pass_rate(
        {name: [outcomes[c.id] for c in f.contingencies] for name, f in top.feeders.items()}, crit
    )
    return out, feeders, rate
