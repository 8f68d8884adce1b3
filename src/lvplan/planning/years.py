"""The year each measure of a plan is built: the first year the demands up to it need it.

A transformer or LV cable measure is dated by the linear model (:class:`LinearGrid`, with the
AC check's cuts): year by year, the plan's connections of the demands up to that year are
committed, and the measure is needed in the first year in which, *without it*,

* the element's new load exceeds its capacity, or
* a point of its area (a leaf, a chosen terminal) falls below its voltage margin, every other
  measure of the plan taken at the larger of its drop coefficients as built and upgraded (so
  the check holds whichever of them are built by then; a drop is never understated).

Where that cannot be shown, the measure keeps the year of the first demand that uses it (never
later than needed): a measure the AC check found (a cut on its element, or one it lifts), one
in an area whose voltage the AC check corrected (a cut at one of its buses or terminals), one
in an area with a transfer (its subtree's connections move), a banned one, demands without a
year, or no year in which the linear model shows the need. Every other kind (10 kV sections,
N-1 measures, transfers, new substations) keeps its first user's year.
"""

from __future__ import annotations

from dataclasses import dataclass

from lvplan.planning.candidates import Instance, element_key
from lvplan.planning.greedy import Greedy, _coef
from lvplan.planning.linear import Cuts, LinearGrid, MvResponse
from lvplan.planning.measures import MeasureKind
from lvplan.planning.model import Solution

#: the kinds the linear model dates (capacity and voltage of one element)
DATED_KINDS = (
    MeasureKind.TRANSFORMER_SWAP,
    MeasureKind.TRANSFORMER_PARALLEL,
    MeasureKind.LV_CABLE_REPLACE,
    MeasureKind.LV_CABLE_PARALLEL,
)


@dataclass(frozen=True)
class Dated:
    year: int | None
    #: how: "capacity" or "voltage" (the first year the linear model needs it), or why its
    #: first user's year was kept: "ac" (found by the AC check), "ac voltage" (its area's
    #: voltage corrected by the AC check), "first" (not shown)
    how: str


def _ac_found(inst: Instance, grid: LinearGrid, cuts: Cuts, u: int) -> bool:
    """Whether the AC check found measure ``u``: a cut on its element's capacity or on the
    upgrade itself, or an AC cut it lifts."""
    up = inst.upgrades[u]
    if up.kind in (MeasureKind.TRANSFORMER_SWAP, MeasureKind.TRANSFORMER_PARALLEL):
        if cuts.trafo_kw.get(up.element, 0.0) > 0 or cuts.upgrade_kw.get(u, 0.0) > 0:
            return True
    elif cuts.line_kw.get(up.element, 0.0) > 0:
        return True
    return any(u in relief for relief in grid.cut_relief)


def measure_years(
    inst: Instance,
    sol: Solution,
    users: dict[int, list[int]],
    mv: MvResponse | None,
    cuts: Cuts | None,
) -> dict[int, Dated]:
    """For each upgrade ``u`` of ``sol`` of a :data:`DATED_KINDS` kind with users (``users[u]``:
    the demands that load its element), its year and how it was found."""
    demands = inst.demands
    out: dict[int, Dated] = {}
    todo: list[int] = []
    for u in sol.upgrades:
        ids = users.get(u, [])
        ys = [demands[i].year for i in ids]
        if inst.upgrades[u].kind not in DATED_KINDS or not ids or None in ys:
            continue
        out[u] = Dated(min(y for y in ys if y is not None), "first")
        todo.append(u)
    if not todo or mv is None or cuts is None:
        return out
    served = [inst.options[k].demand for k in sol.chosen]
    if any(demands[i].year is None for i in served):
        return out
    grid = LinearGrid(inst, mv, cuts)
    # the areas of each element; an area with a transfer in the plan is left as it is
    split_areas = {grid.splits[u].area for u in sol.upgrades if u in grid.splits}
    areas_of: dict[int, list[int]] = {}
    for a, ag in grid.areas.items():
        areas_of.setdefault(-1 - ag.trafo, []).append(a)
        for ln in ag.lines:
            areas_of.setdefault(ln, []).append(a)
    # areas whose voltage the AC check corrected (a cut at one of their buses or terminals):
    # their linear voltage, learned at the whole plan's load, cannot show an earlier year fits
    volt_areas = {
        a
        for (kind, i), v in cuts.volt_pu.items()
        if v > 0
        for a in (
            [inst.bus_area.get(i)]
            if kind == "bus"
            else [grid.options[i].area]
            if kind == "opt" and i < len(grid.options)
            else []
        )
        if a is not None
    }
    pending: list[int] = []
    for u in todo:
        key = element_key(inst.upgrades[u])
        if u in grid.banned or _ac_found(inst, grid, cuts, u):
            out[u] = Dated(out[u].year, "ac")
        elif set(areas_of.get(key, [])) & volt_areas:
            out[u] = Dated(out[u].year, "ac voltage")
        elif key in areas_of and not (set(areas_of[key]) & split_areas):
            pending.append(u)
    if not pending:
        return out
    # every measure of the plan at its larger drop coefficient (as built or upgraded)
    worst: dict[int, int] = {}
    for u in sol.upgrades:
        up = inst.upgrades[u]
        if up.kind not in DATED_KINDS or u in grid.banned:
            continue
        key = element_key(up)
        el = grid.trafos.get(up.element) if key < 0 else grid.lines.get(up.element)
        if el is not None and u in el.upgrades and _coef(el, u) > el.drop:
            worst[key] = u
    g = Greedy(grid)
    by_year: dict[int, list[int]] = {}
    for k in sol.chosen:
        y = demands[inst.options[k].demand].year
        assert y is not None
        by_year.setdefault(y, []).append(k)
    for y in sorted(by_year):
        for k in by_year[y]:
            g._commit(k, {})
        st = g.st
        for u in list(pending):
            if y < (out[u].year or 0):
                continue
            up = inst.upgrades[u]
            key = element_key(up)
            if key < 0:
                el, load = grid.trafos[up.element], st.trafo_load.get(up.element, 0)
            else:
                el, load = grid.lines[up.element], st.line_load.get(up.element, 0)
            how = "capacity" if load > el.cap else ""
            if not how:
                built = {e: w for e, w in worst.items() if e != key}
                for a in areas_of[key]:
                    ag = grid.areas[a]
                    slack, _path = g._area_slack(
                        a, st.line_load, st.trafo_load.get(ag.trafo, 0), built, None
                    )
                    if slack < g._drop(ag.mv, -1, 0):
                        how = "voltage"
                        break
            if how:
                out[u] = Dated(y, how)
                pending.remove(u)
    return out


def year_note(d: Dated, first: int | None) -> str:
    """What the reason says of how the measure's year was found."""
    if d.how == "capacity":
        what = "exceed its capacity"
    elif d.how == "voltage":
        what = "break a voltage margin of its area"
    elif d.how == "ac":
        return f"built in {d.year}, its first demand's year (found by the AC check)"
    elif d.how == "ac voltage":
        return (
            f"built in {d.year}, its first demand's year (the AC check corrected its area's "
            "voltage: an earlier need cannot be ruled out)"
        )
    else:
        return f"built in {d.year}, its first demand's year"
    later = "" if d.year == first else f" (its first demand's is {first})"
    return f"built in {d.year}: the demands up to then {what} without it{later}"
