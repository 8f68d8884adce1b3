"""The map's answers checked against the MV network's own load flow.

Each area's search (:func:`lvplan.hosting.area.solve_area`) solves the area exactly but moves
its roots, and judges the limits outside it, by the base case's linear MV response. Its error is
second order in the move: within the search's safety on a stiff 10 kV network, but behind a
weak one (a 10 km 10 kV line of 3+j3 ohm/km: hostile probe, 2026-12-07) every bus's hosting
capacity was above what pandapower lets fit, by up to 10.8 kW.

So, after the search, each area's largest answer is tried on the MV network: its load, with
:data:`DRAW_MARGIN` for the area's losses and a step beyond it, is drawn at the area's roots and
the MV load flow solved (:meth:`lvplan.hosting.outside.OutsideModel.secant_gains`). Where the
MV voltages and currents move by more than the linear response said (a gain ``g`` above
``1 + SAFETY_REL``, the capacity search's relative safety), the area's answers are judged on
the *secant*: its roots' response and its outside rows multiplied by ``g``, the line through
the MV state at that load. A load flow's voltage drop and current rise grow faster than
linearly with the load drawn, so below that load the secant over-states them. The answers that
keep every limit there stand (:func:`lvplan.hosting.area.holds`, one solve for the area). Each
other bus whose MV response at its own answer is not linear either is answered as ``check``
answers it (:func:`lvplan.hosting.fallback.ac_bus_hosting`: its headroom search, each answer
held in the exact load flow). A search on the secant was tried first and is no bound: where
two units on two 10 kV buses feed one LV area, one gain over-states the voltage difference
between the roots too and moves the new load's share to the nearer unit, so the far unit's
cable looked less loaded; a gain taken from near-zero base currents (PV balancing the load)
bounded no voltage either (probe helper-77, 2026-12-08: answers up to 1.49 kW above what
fits, ``tests/test_weak_mv.py``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from lvplan.hosting.area import holds
from lvplan.hosting.build import Prepared
from lvplan.powerflow.capacity import SAFETY_REL

#: the area's answer is tried with this much more drawn at its roots (the area's own losses,
#: and a step past the answer)
DRAW_MARGIN = 1.2


def recheck(
    prep: Prepared, parts: list[pd.DataFrame], *, pf: float, max_kw: float
) -> tuple[list[pd.DataFrame], list[np.ndarray], int]:
    """``parts`` (the search's rows) with every bus whose MV response is not linear at its
    answer searched again on the secant; (the rows, the buses to answer by full AC, the
    number of buses searched again or sent to full AC)."""
    if prep.outside is None or not prep.problems or not parts:
        return parts, [], 0
    outside = prep.outside
    rows = pd.concat(parts, ignore_index=True)
    kw = pd.Series(rows["hosting_kw"].to_numpy(float), index=rows["bus"].to_numpy(np.int64))
    tan = float(np.tan(np.arccos(pf)))

    def draw(roots: np.ndarray, kw_: float, base_mva: float) -> tuple[np.ndarray, complex]:
        p_pu = DRAW_MARGIN * kw_ / 1000.0 / base_mva
        return roots, complex(p_pu, p_pu * tan)

    # first each area at its largest answer: most areas end here (a stiff MV network)
    todo: list[int] = []
    tops: list[float] = []
    for i, (p, roots) in enumerate(zip(prep.problems, prep.roots, strict=True)):
        # (a bus without an answer counts as 0: NaN never reaches numpy's reductions, whose
        # "All-NaN slice" warning is a line on stderr)
        top = float(kw.reindex(p.buses).fillna(0.0).to_numpy(float).max(initial=0.0))
        if p.blocked is None and roots.size and top > 0:
            todo.append(i)
            tops.append(top)
    gains = outside.secant_gains(
        [draw(prep.roots[i], t, prep.problems[i].base_mva) for i, t in zip(todo, tops, strict=True)]
    )
    by_ac: list[np.ndarray] = []
    redone: list[int] = []
    for i, g in zip(todo, gains.tolist(), strict=True):
        if np.isfinite(g) and g <= 1.0 + SAFETY_REL:
            continue
        p = prep.problems[i]
        got = kw.reindex(p.buses).fillna(0.0).to_numpy(float)
        # the answers on the secant through the largest: those that keep every limit there
        # stand (on the SimBench urban district, every answer of the 133 areas but 6, each by
        # 0.1 kW, all of them below what pandapower lets fit), the rest are searched again
        fine = holds(replace(p, sens_R=p.sens_R * g, out_c=p.out_c * g), got, pf=pf)
        if fine.all():
            continue
        # then each bus at its own answer: the secant through the area's largest over-states
        # the others (on the probe's network, 4-9 % below what fits)
        own = np.ones(got.size)
        own[~fine] = outside.secant_gains(
            [draw(prep.roots[i], x, p.base_mva) for x in got[~fine].tolist()]
        )
        for j, gj in enumerate(own.tolist()):
            if fine[j] or got[j] <= 0 or (np.isfinite(gj) and gj <= 1.0 + SAFETY_REL):
                continue
            # answered as ``check`` answers it (its headroom search, each answer held in the
            # exact load flow): a search on the secant is not a bound. Where two units on two
            # 10 kV buses feed one LV area, scaling the roots' response by the gain scales the
            # voltage difference between them too and moves the load's share to the nearer
            # unit, so the far unit's cable looked less loaded; and a gain taken from near-zero
            # base currents (PV balancing the load) is no bound on the voltages either (probe
            # helper-77, 2026-12-08: answers up to 1.49 kW above what fits)
            by_ac.append(p.buses[j : j + 1])
            redone.append(int(p.buses[j]))
    if not redone:
        return parts, [], 0
    kept = rows[~rows["bus"].isin(redone)]
    return [kept], by_ac, len(redone)
