"""The files of a reinforcement plan: :func:`write_plan` (``lvplan plan --out DIR``).

Columns, in this order (a stable contract; a new column goes at the end):

* ``plan.csv`` — one row per measure, the "what" and the "why":
  ``measure`` (its kind: ``transformer_swap``, ``transformer_parallel``, ``lv_cable_replace``,
  ``lv_cable_parallel``, ``mv_cable_replace``, ``mv_cable_parallel`` (a 10 kV feeder section),
  ``new_substation``), ``element`` (``trafo 3``, ``line 40`` or the new
  substation's name), ``before``, ``after``, ``cost_cny``, ``year`` (empty: undated),
  ``demands`` (the ids of the demands that load it, joined by ``;``, which a demand id may
  not hold: an id may hold spaces), ``reason``;
* ``assignment.csv`` — one row per served demand: ``demand``, ``design_kw``, ``year``,
  ``connection`` (``bus 12`` or a new substation's name), ``bus`` (empty at a new substation),
  ``transformer``, ``cable`` (its service cable; empty when given at a bus), ``length_m``,
  ``cable_cost_cny``;
* ``unserved.csv`` — ``demand``, ``design_kw``, ``reason`` (the header alone when all are served);
* ``summary.json`` — :meth:`Plan.summary`, as it is;
* ``reinforced.json`` — the pandapower network with every measure built and every served demand
  added as a load named by its demand id (at its bus, or at the ``"<id> terminal"`` bus its
  service cable reaches), for a load flow in any pandapower tool;
* ``plan.html`` — an interactive map (Leaflet inlined: it opens offline): the measures, new
  substations with their 10 kV ties, each demand and its connection.

The measures' ``cost_cny`` plus the service cables' ``cable_cost_cny`` is the summary's
``total_cost_cny``, to the cent (as are its ``cost_by_kind_cny`` and ``cost_by_year_cny``).
Every file is made in memory (one at a time), written in full into a hidden folder inside
``out_dir`` (:func:`lvplan.io.atomic.staged_files`), and only once all are there renamed over
its target: an error (a folder that cannot be written, a full disk)
raises one :class:`~lvplan.errors.InputError` (``--out DIR: cannot write it: why``) and leaves
``out_dir`` as it was (no new, half-written or temporary file). A run killed meanwhile leaves
only the hidden folder, which the next run that holds ``out_dir`` removes
(:func:`lvplan.io.folder_lock.locked_folder`).
CSV text cells that a spreadsheet would run as formulas are neutralised (:mod:`lvplan.io.csvsafe`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lvplan.io.atomic import staged_files, write_text_atomic
from lvplan.io.csvsafe import safe_writer
from lvplan.io.leaflet import escape
from lvplan.kinds import ElementRef
from lvplan.locate import bus_lonlat
from lvplan.model.network import Network
from lvplan.model.topology import mv_label
from lvplan.planning.demand import ID_SEPARATOR
from lvplan.planning.measures import MeasureKind
from lvplan.planning.plan import Plan, site_kva

PLAN_COLUMNS = (
    "measure",
    "element",
    "before",
    "after",
    "cost_cny",
    "year",
    "demands",
    "reason",
)
ASSIGNMENT_COLUMNS = (
    "demand",
    "design_kw",
    "year",
    "connection",
    "bus",
    "transformer",
    "cable",
    "length_m",
    "cable_cost_cny",
)
UNSERVED_COLUMNS = ("demand", "design_kw", "reason")
FILES = (
    "plan.csv",
    "assignment.csv",
    "unserved.csv",
    "summary.json",
    "reinforced.json",
    "plan.html",
)

#: Above this many demands the map draws connection lines only for the demands a measure was
#: built for, and thins the other served demands' markers to stay near this many in all.
MAP_MAX_DEMANDS = 2000
#: Above this many measures (a city) the map draws them as one circle per cell of
#: ``MAP_CELL_DEG`` degrees (their number, cost and kinds in its tooltip) instead of one marker or
#: line each, and leaves out the existing transformers: a map of a million-bus city stays a few
#: MB and opens in a browser.
MAP_MAX_MEASURES = 2000
MAP_CELL_DEG = 0.01
#: Colours of the map, by what is drawn.
COLOURS = {
    MeasureKind.TRANSFORMER_SWAP.value: "#7b3294",
    MeasureKind.TRANSFORMER_PARALLEL.value: "#e66101",
    MeasureKind.LV_CABLE_REPLACE.value: "#d01c8b",
    MeasureKind.LV_CABLE_PARALLEL.value: "#0571b0",
    MeasureKind.MV_CABLE_REPLACE.value: "#b35806",
    MeasureKind.MV_CABLE_PARALLEL.value: "#542788",
    MeasureKind.NEW_SUBSTATION.value: "#1b7837",
    MeasureKind.MV_TIE_NEW.value: "#01665e",
    MeasureKind.TRANSFORMER_MOVE.value: "#8c510a",
    MeasureKind.TRANSFER.value: "#c51b7d",
    MeasureKind.TRANSFORMER_TAP.value: "#fdb863",
    "existing": "#8c8c8c",
    "served": "#1a9850",
    "unserved": "#d73027",
    "connection": "#4d4d4d",
}
LABELS = {
    MeasureKind.TRANSFORMER_SWAP.value: "transformer replaced",
    MeasureKind.TRANSFORMER_PARALLEL.value: "transformer paralleled",
    MeasureKind.LV_CABLE_REPLACE.value: "LV cable replaced",
    MeasureKind.LV_CABLE_PARALLEL.value: "LV cable paralleled",
    MeasureKind.MV_CABLE_REPLACE.value: "10 kV cable replaced",
    MeasureKind.MV_CABLE_PARALLEL.value: "10 kV cable paralleled",
    MeasureKind.NEW_SUBSTATION.value: "new substation",
    MeasureKind.MV_TIE_NEW.value: "new 10 kV tie (normally open, N-1)",
    MeasureKind.TRANSFORMER_MOVE.value: "transformer moved to another feeder (N-1)",
    MeasureKind.TRANSFER.value: "feeder split: new LV feeder, the line into the subtree opened",
    MeasureKind.TRANSFORMER_TAP.value: "off-load tap moved (a light year over the maximum)",
}


def write_plan(
    plan: Plan,
    network: Network,
    out_dir: str | Path,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write every file of ``plan`` (made on ``network``) into ``out_dir`` (created if missing);
    returns their paths in the order of :data:`FILES`. ``network.pp`` is not touched.
    ``progress`` hears each file's size and the seconds it took."""
    out = Path(out_dir)
    # each text is made when it is written and let go after (a city's reinforced.json is
    # hundreds of MB: never two of them in memory at once)
    texts: dict[str, Callable[[], str]] = {
        "plan.csv": lambda: plan_csv(plan),
        "assignment.csv": lambda: assignment_csv(plan),
        "unserved.csv": lambda: unserved_csv(plan),
        "summary.json": lambda: (
            json.dumps(plan.summary(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
        ),
        "reinforced.json": lambda: reinforced_json(plan, network),
        "plan.html": lambda: plan_html(plan, network),
    }
    # every file in full into a hidden folder inside ``out`` first, then all renamed over their
    # targets (io/atomic.py: the one staging home, as for ``lvplan hosting`` and ``study``)
    with staged_files(out) as stage:
        for name in FILES:
            t0 = time.perf_counter()
            text = texts[name]()
            write_text_atomic(stage / name, text)
            if progress is not None:
                progress(f"{name}: {len(text) / 1e6:,.1f} MB in {time.perf_counter() - t0:.1f} s")
            del text
    return [out / name for name in FILES]


# -- the tables ---------------------------------------------------------------------------------
def _csv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buf = io.StringIO()
    w = safe_writer(csv.writer(buf, lineterminator="\n"))
    w.writerow(columns)
    w.writerows(["" if v is None else v for v in row] for row in rows)
    return buf.getvalue()


def plan_csv(plan: Plan) -> str:
    rows = []
    for m in plan.measures:
        demands = ID_SEPARATOR.join(m.demands)
        rows.append(
            (m.kind, str(m.element), m.before, m.after, m.cost_cny, m.year, demands, m.reason)
        )
    return _csv(PLAN_COLUMNS, rows)


def assignment_csv(plan: Plan) -> str:
    rows = [[getattr(a, c) for c in ASSIGNMENT_COLUMNS] for a in plan.assignments]
    return _csv(ASSIGNMENT_COLUMNS, rows)


def unserved_csv(plan: Plan) -> str:
    return _csv(
        UNSERVED_COLUMNS, ((u["demand"], u["design_kw"], u["reason"]) for u in plan.unserved)
    )


def reinforced_net(plan: Plan, network: Network) -> Any:
    """A new pandapower net: ``network.pp`` with ``plan.changes`` made (it is not mutated),
    and the loads ``network`` holds reserved (a register's approvals, which the plan's AC
    check counted: each a load named ``reserved <id>``), so that the file is the state the
    plan was checked in (review, 2026-12-08: they were left out)."""
    import pandapower as pp

    from lvplan.changes.apply import apply_changes

    net, _map = apply_changes(network.pp, plan.changes.resolve(network))
    for rid, r in sorted(network.reserved.items()):
        pp.create_load(net, int(r.bus), p_mw=r.p_mw, q_mvar=r.q_mvar, name=f"reserved {rid}")
    return net


def reinforced_json(plan: Plan, network: Network) -> str:
    import pandapower as pp

    return str(pp.to_json(reinforced_net(plan, network)))


# -- the map ------------------------------------------------------------------------------------
LatLon = tuple[float, float]


@dataclass(frozen=True)
class _Places:
    """Where things are on the map: buses, demands and new substations as (lat, lon)."""

    bus: dict[int, LatLon]
    demand: dict[str, LatLon]
    site: dict[str, Any]  # name -> candidates.Site
    mv: str = "10 kV"  # the network's MV voltage in labels ("20 kV"; "MV" where it has two)

    @staticmethod
    def of(plan: Plan, network: Network) -> _Places:
        lon, lat = bus_lonlat(network)
        ids = network.pp.bus.index.tolist()
        bus = {
            int(b): (float(y), float(x))
            for b, x, y in zip(ids, lon.tolist(), lat.tolist(), strict=True)
            if math.isfinite(x) and math.isfinite(y)
        }
        demand: dict[str, LatLon] = {}
        for d in plan.instance.demands:
            if d.lon is not None and d.lat is not None:
                demand[d.id] = (float(d.lat), float(d.lon))
            elif d.bus is not None and d.bus in bus:
                demand[d.id] = bus[d.bus]
        return _Places(bus, demand, {s.name: s for s in plan.instance.sites}, mv_label(network))

    def connection(self, bus: int | None, connection: str) -> LatLon | None:
        if bus is not None:
            return self.bus.get(int(bus))
        s = self.site.get(connection)
        return None if s is None else (float(s.lat), float(s.lon))


def _label(kind: str, mv: str) -> str:
    """A measure kind's label, with the network's MV voltage (:func:`mv_label`)."""
    return LABELS.get(kind, kind).replace("10 kV", mv)


_e = escape  # one home: lvplan.io.leaflet.escape


def _cny(x: float) -> str:
    return f"{x:,.0f} CNY"


def _measure_popup(m: Any, title: str, mv: str = "10 kV") -> str:
    n = len(m.demands)
    shown = ", ".join(m.demands[:12]) + (f" … ({n} in all)" if n > 12 else "")
    change = f"{_e(m.before)} → {_e(m.after)}" if m.before else _e(m.after)
    return (
        f"<b>{_e(title)}</b><br>{_e(_label(m.kind, mv))}: {change}"
        f"<br>cost {_cny(m.cost_cny)}, year {_e(m.year if m.year is not None else '—')}"
        f"<br>why: {_e(m.reason)}<br>for: {_e(shown)}"
    )


def _icon(cls: str, colour: str, glyph: str, size: int) -> Any:
    import folium

    return folium.DivIcon(
        html=f'<div class="{cls}" style="color:{colour};font-size:{size}px;line-height:{size}px;'
        f'text-shadow:0 0 2px #000">{glyph}</div>',
        icon_size=(size, size),
        icon_anchor=(size // 2, size // 2),
    )


def plan_html(plan: Plan, network: Network) -> str:
    """The interactive map of ``plan`` (see the module docstring), Leaflet inlined."""
    import folium
    from branca.element import Element

    from lvplan.io.leaflet import offline_map, render

    at = _Places.of(plan, network)
    n_demands = len(plan.assignments) + len(plan.unserved)
    large = n_demands > MAP_MAX_DEMANDS
    start = next(iter(at.demand.values()), next(iter(at.bus.values()), (22.54, 114.06)))
    canvas = large or len(network.pp.trafo) > 2000
    m = offline_map(list(start), zoom_start=15, prefer_canvas=canvas, zoom_snap=0.25)
    layers = {
        name: folium.FeatureGroup(name=name).add_to(m)
        for name in (
            "existing transformers",
            "reinforced transformers and cables",
            f"new substations and {at.mv} ties",
            "connections (demand → connection point)",
            "served demands",
            "unserved demands",
        )
    }
    g = list(layers.values())
    cells = len(plan.measures) > MAP_MAX_MEASURES
    if cells:
        drawn = _measure_cells(plan, network, at, g[1])
    else:
        drawn = _transformers(plan, network, at, g[0], g[1])
        drawn += _cables(plan, network, at, g[1])
        drawn += _n1_cables(plan, network, at, g[1])
        drawn += _sites(plan, at, g[2])
    needy = {d for mm in plan.measures for d in mm.demands}
    shown = _shown_demands(plan, needy, large)
    points = _unserved_points(plan, at)
    drawn += _demands(
        plan, at, g[3], g[4], g[5], lines_for=needy if large else None, shown=shown, points=points
    )
    folium.LayerControl(collapsed=False).add_to(m)
    if drawn:
        lats, lons = [p[0] for p in drawn], [p[1] for p in drawn]
        m.fit_bounds([[min(lats), min(lons)], [max(lats), max(lons)]], padding=(30, 30))
    note = ""
    if cells:
        note += (
            f"<div>{len(plan.measures):,} measures drawn as one circle per "
            f"{MAP_CELL_DEG:g}° cell (their number, cost and kinds in its tooltip); existing "
            "transformers not drawn</div>"
        )
    if large:
        n_un = sum(len(g) for _p, g in points)
        note += (
            f"<div>{len(shown):,} of {len(plan.assignments):,} served demands shown (every one "
            "a measure was built for, an even share of the rest); connection lines only for "
            f"those a measure was built for; {n_un:,} of {len(plan.unserved):,} unserved in "
            f"{len(points):,} marker{'' if len(points) == 1 else 's'} (one per place; "
            "unserved.csv lists all)</div>"
        )
    # the layer control stays open (its collapsed icon is an image Leaflet loads by URL)
    m.get_root().header.add_child(Element(f"<style>{_CSS}</style>"))
    m.get_root().html.add_child(Element(_title(plan)))
    m.get_root().html.add_child(Element(_legend(note, at.mv)))
    return render(m)


def _trafo_name(net: Any, t: int) -> str:
    name = net.trafo.at[t, "name"] if "name" in net.trafo.columns else None
    return name if isinstance(name, str) and name else f"trafo {t}"


def _transformers(
    plan: Plan, network: Network, at: _Places, existing: Any, reinforced: Any
) -> list[LatLon]:
    """Public transformers: small grey circles; the reinforced ones, coloured triangles."""
    import folium

    from lvplan.io.leaflet import popup

    net = network.pp
    tr = net.trafo
    by_trafo: dict[int, Any] = {  # (a unit's swap or parallel unit over its tap change)
        int(mm.element.index): mm
        for mm in sorted(plan.measures, key=lambda m: m.kind != MeasureKind.TRANSFORMER_TAP)
        if isinstance(mm.element, ElementRef)
        and mm.element.component == "trafo"
        and mm.element.index is not None
    }
    drawn = []
    public = tr.index[(tr.vn_hv_kv <= 35.0) & (tr.vn_lv_kv < 1.0)].tolist()
    for t in public:
        p = at.bus.get(int(tr.at[t, "lv_bus"]))
        if p is None or t in by_trafo:
            continue
        kva = float(tr.at[t, "sn_mva"]) * 1000.0
        folium.CircleMarker(
            location=list(p),
            radius=4,
            color=COLOURS["existing"],
            fill=True,
            fill_opacity=0.8,
            weight=1,
            tooltip=_e(f"{_trafo_name(net, t)}: {kva:g} kVA"),
        ).add_to(existing)
        drawn.append(p)
    for t, mm in by_trafo.items():
        p = at.bus.get(int(tr.at[t, "lv_bus"])) if t in tr.index else None
        if p is None:
            continue
        mk = folium.Marker(
            location=list(p),
            icon=_icon("lvplan-upgrade", COLOURS.get(mm.kind, "#000"), "&#9650;", 22),
            tooltip=_e(f"{_trafo_name(net, t)}: {mm.before} → {mm.after}"),
        ).add_to(reinforced)
        popup(_measure_popup(mm, f"{mm.element} {_trafo_name(net, t)}", at.mv)).add_to(mk)
        drawn.append(p)
    return drawn


def _measure_place(mm: Any, network: Network, at: _Places) -> LatLon | None:
    """Where a measure is: a transformer's LV bus, a line's midpoint, a new substation."""
    ref = mm.element
    if mm.kind == MeasureKind.NEW_SUBSTATION:
        s = at.site.get(str(ref))
        return None if s is None else (float(s.lat), float(s.lon))
    if not isinstance(ref, ElementRef) or ref.index is None:
        return None
    net = network.pp
    if ref.component == "trafo" and ref.index in net.trafo.index:
        return at.bus.get(int(net.trafo.at[ref.index, "lv_bus"]))
    if ref.component == "line" and ref.index in net.line.index:
        a = at.bus.get(int(net.line.at[ref.index, "from_bus"]))
        b = at.bus.get(int(net.line.at[ref.index, "to_bus"]))
        if a is None or b is None:
            return a or b
        return ((a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0)
    return None


def _measure_cells(plan: Plan, network: Network, at: _Places, layer: Any) -> list[LatLon]:
    """The measures of a city, one circle per cell: sized by their number, coloured by the
    kind that costs most there, the count and cost by kind in its tooltip."""
    import folium

    cells: dict[tuple[int, int], dict[str, Any]] = {}
    for mm in plan.measures:
        p = _measure_place(mm, network, at)
        if p is None:
            continue
        key = (math.floor(p[0] / MAP_CELL_DEG), math.floor(p[1] / MAP_CELL_DEG))
        c = cells.setdefault(key, {"n": 0, "lat": 0.0, "lon": 0.0, "kinds": {}, "demands": 0})
        c["n"] += 1
        c["lat"] += p[0]
        c["lon"] += p[1]
        c["demands"] += len(mm.demands)
        n, cost = c["kinds"].get(mm.kind, (0, 0.0))
        c["kinds"][mm.kind] = (n + 1, cost + mm.cost_cny)
    drawn = []
    for c in cells.values():
        p = (c["lat"] / c["n"], c["lon"] / c["n"])
        kinds = sorted(c["kinds"].items(), key=lambda kv: -kv[1][1])
        cost = sum(v[1] for _k, v in kinds)
        what = "; ".join(f"{n} {_label(k, at.mv)} ({_cny(v)})" for k, (n, v) in kinds)
        folium.CircleMarker(
            location=list(p),
            radius=min(4.0 + 2.0 * math.sqrt(c["n"]), 20.0),
            color=COLOURS.get(kinds[0][0], "#000"),
            fill=True,
            fill_opacity=0.6,
            weight=1,
            tooltip=_e(f"{c['n']} measures, {_cny(cost)}, for {c['demands']} demands: {what}"),
        ).add_to(layer)
        drawn.append(p)
    return drawn


def _cables(plan: Plan, network: Network, at: _Places, layer: Any) -> list[LatLon]:
    """Reinforced LV cables: thick lines between their end buses, coloured by kind."""
    import folium

    from lvplan.io.leaflet import popup

    line = network.pp.line
    drawn: list[LatLon] = []
    for mm in plan.measures:
        ref = mm.element
        if (
            not (
                isinstance(ref, ElementRef) and ref.component == "line" and ref.index in line.index
            )
            or mm.kind == MeasureKind.TRANSFER
        ):  # its new cable: :func:`_n1_cables`
            continue
        ends = [at.bus.get(int(line.at[ref.index, k])) for k in ("from_bus", "to_bus")]
        if None in ends:
            continue
        pts = [e for e in ends if e is not None]
        pl = folium.PolyLine(
            [list(e) for e in pts],
            color=COLOURS.get(mm.kind, "#000"),
            weight=6,
            opacity=0.9,
            tooltip=_e(f"{ref}: {mm.after}"),
        ).add_to(layer)
        popup(_measure_popup(mm, str(ref), at.mv)).add_to(pl)
        drawn += pts
    return drawn


def _n1_cables(plan: Plan, network: Network, at: _Places, layer: Any) -> list[LatLon]:
    """New ties and moved transformers' cables (N-1 measures), and transfers' new LV feeders:
    dashed lines between the buses they join."""
    import folium

    inst, sol = plan.instance, plan.solution
    if inst is None or sol is None:
        return []
    drawn: list[LatLon] = []
    for u in sol.upgrades:
        up = inst.upgrades[u]
        if up.kind == MeasureKind.MV_TIE_NEW:
            a, what = up.element, f"new tie bus {up.element} - bus {up.to_bus}"
        elif up.kind == MeasureKind.TRANSFORMER_MOVE:
            a = int(network.pp.trafo.at[up.element, "hv_bus"])
            what = f"trafo {up.element} moved: from bus {up.to_bus}"
        elif up.kind == MeasureKind.TRANSFER and up.element in inst.transfers:
            a = inst.transfers[up.element].far_bus
            what = f"feeder split: line {up.element} opened, bus {a} fed from bus {up.to_bus}"
        else:
            continue
        ends = [at.bus.get(int(a)), at.bus.get(int(up.to_bus))]
        pts = [e for e in ends if e is not None]
        if len(pts) < 2:
            continue
        folium.PolyLine(
            [list(e) for e in pts],
            color=COLOURS[up.kind.value],
            weight=5,
            dash_array="10 6",
            tooltip=_e(f"{what}: {up.length_m:.0f} m, {up.cost_cny:,.0f} CNY"),
        ).add_to(layer)
        drawn += pts
    return drawn


def _sites(plan: Plan, at: _Places, layer: Any) -> list[LatLon]:
    """New substations: a green square each, and a dashed line for its 10 kV tie."""
    import folium

    from lvplan.io.leaflet import popup

    colour = COLOURS[MeasureKind.NEW_SUBSTATION.value]
    drawn = []
    for mm in plan.measures:
        s = at.site.get(str(mm.element)) if mm.kind == MeasureKind.NEW_SUBSTATION else None
        if s is None:
            continue
        p = (float(s.lat), float(s.lon))
        mv = at.bus.get(int(s.mv_bus))
        if mv is not None:
            folium.PolyLine(
                [list(p), list(mv)],
                color=colour,
                weight=3,
                dash_array="8 6",
                tooltip=_e(f"{mm.element}: {s.tie_m:.0f} m {at.mv} tie to bus {s.mv_bus}"),
            ).add_to(layer)
            drawn.append(mv)
        mk = folium.Marker(
            location=list(p),
            icon=_icon("lvplan-site", colour, "&#9632;", 22),
            tooltip=_e(f"{mm.element}: {site_kva(s)}"),
        ).add_to(layer)
        popup(_measure_popup(mm, str(mm.element), at.mv)).add_to(mk)
        drawn.append(p)
    return drawn


def _shown_demands(plan: Plan, needy: set[str], large: bool) -> set[str]:
    """The served demands that get a marker: all of them, or at city scale every one a measure
    was built for and an even thinning of the rest, about MAP_MAX_DEMANDS markers in all."""
    if not large:
        return {a.demand for a in plan.assignments}
    others = [a.demand for a in plan.assignments if a.demand not in needy]
    room = MAP_MAX_DEMANDS - (len(plan.assignments) - len(others)) - len(plan.unserved)
    step = math.ceil(len(others) / room) if room > 0 else 0
    thinned = set(others[::step]) if step else set()
    return {a.demand for a in plan.assignments if a.demand in needy} | thinned


def _demands(
    plan: Plan,
    at: _Places,
    lines: Any,
    served: Any,
    unserved: Any,
    *,
    lines_for: set[str] | None,
    shown: set[str],
    points: list[tuple[LatLon, list[dict[str, Any]]]],
) -> list[LatLon]:
    """Each of the unserved ``points`` (red: one marker per place) and each ``shown`` served
    demand (green); a thin line from a served demand to where it connects (all, or only those
    in ``lines_for``)."""
    import folium

    drawn = []
    for a in plan.assignments:
        p = at.demand.get(a.demand)
        if p is None:
            continue
        c = at.connection(a.bus, a.connection)
        if c is not None and (lines_for is None or a.demand in lines_for):
            folium.PolyLine(
                [list(p), list(c)], color=COLOURS["connection"], weight=1, opacity=0.7
            ).add_to(lines)
            drawn.append(c)
        if a.demand not in shown:
            continue
        year = "—" if a.year is None else a.year
        how = f"{a.cable}, {a.length_m:g} m, {_cny(a.cable_cost_cny)}" if a.cable else "at the bus"
        _demand_marker(
            served,
            p,
            "served",
            f"{a.demand}: {a.design_kw:g} kW → {a.connection}",
            f"<b>{_e(a.demand)}</b> {a.design_kw:g} kW design, year {_e(year)}"
            f"<br>connected at {_e(a.connection)} ({_e(a.transformer)})<br>{_e(how)}",
        )
        drawn.append(p)
    for p, group in points:
        u = group[0]
        if len(group) == 1:
            tip = f"{u['demand']}: {u['design_kw']:g} kW not served"
            html = (
                f"<b>{_e(u['demand'])}</b> {u['design_kw']:g} kW design: <b>not served</b>"
                f"<br>why: {_e(u['reason'])}"
            )
        else:  # several at one point: one marker (20,000 at one bus were 20,000 markers)
            kw = sum(float(x["design_kw"]) for x in group)
            tip = f"{len(group):,} demands here not served ({kw:,.0f} kW)"
            rows = "".join(
                f"<br><b>{_e(x['demand'])}</b> {x['design_kw']:g} kW: {_e(x['reason'])}"
                for x in group[:UNSERVED_LISTED]
            )
            more = len(group) - UNSERVED_LISTED
            html = f"<b>{len(group):,} demands not served here</b> ({kw:,.0f} kW design){rows}" + (
                f"<br>+{more:,} more (unserved.csv)" if more > 0 else ""
            )
        _demand_marker(unserved, p, "unserved", tip, html)
        drawn.append(p)
    return drawn


#: the demands one unserved marker lists in its popup (the rest: unserved.csv)
UNSERVED_LISTED = 10


def _unserved_points(plan: Plan, at: _Places) -> list[tuple[LatLon, list[dict[str, Any]]]]:
    """The unserved demands by point (one marker for all at the same place), and of more than
    :data:`MAP_MAX_DEMANDS` points an even share of them."""
    by_point: dict[tuple[float, float], list[dict[str, Any]]] = {}
    where: dict[tuple[float, float], LatLon] = {}
    for u in plan.unserved:
        p = at.demand.get(str(u["demand"]))
        if p is None:
            continue
        key = (round(p[0], 7), round(p[1], 7))
        by_point.setdefault(key, []).append(u)
        where.setdefault(key, p)
    keys = list(by_point)
    if len(keys) > MAP_MAX_DEMANDS:
        keys = keys[:: math.ceil(len(keys) / MAP_MAX_DEMANDS)]
    return [(where[k], by_point[k]) for k in keys]


def _demand_marker(group, p, kind: str, tooltip: str, popup_html: str) -> None:
    """One demand's circle (``kind``: served, or unserved drawn larger and bolder)."""
    import folium

    from lvplan.io.leaflet import popup

    big = kind == "unserved"
    cm = folium.CircleMarker(
        location=list(p),
        radius=6 if big else 5,
        color=COLOURS[kind],
        fill=True,
        fill_opacity=0.9,
        weight=2 if big else 1,
        tooltip=_e(tooltip),
    ).add_to(group)
    popup(popup_html).add_to(cm)


_CSS = ".leaflet-control-layers{font:12px/1.4 sans-serif}"


def _title(plan: Plan) -> str:
    s = plan.summary()
    return (
        '<div id="lvplan-title" style="position:fixed;top:10px;left:60px;z-index:9999;'
        "background:white;padding:6px 10px;border:1px solid #888;font:14px sans-serif;"
        'max-width:calc(100% - 400px)">'
        f"<b>lvplan plan: {_e(plan.network)}</b> — total {_cny(s['total_cost_cny'])}; "
        f"{s['measures']} measures ({s['new_substations']} new substations); "
        f"{s['demands_served']} of {s['demands']} demands served "
        f"({s['design_kw_served']:,.0f} kW)</div>"
    )


def _legend(note: str, mv: str = "10 kV") -> str:
    def row(symbol: str, label: str) -> str:
        return f"<div>{symbol} {_e(label)}</div>"

    def dot(colour: str, size: int = 10) -> str:
        return (
            f'<span style="background:{colour};width:{size}px;height:{size}px;'
            f'display:inline-block;border-radius:{size // 2}px"></span>'
        )

    def bar(colour: str, dashed: bool = False) -> str:
        style = "dashed" if dashed else "solid"
        return (
            '<span style="display:inline-block;width:22px;vertical-align:middle;'
            f'border-top:4px {style} {colour}"></span>'
        )

    def glyph(colour: str, g: str) -> str:
        return f'<span style="color:{colour};text-shadow:0 0 1px #000">{g}</span>'

    rows = [
        row(dot(COLOURS["existing"]), "existing transformer"),
        row(glyph(COLOURS["transformer_swap"], "&#9650;"), LABELS["transformer_swap"]),
        row(glyph(COLOURS["transformer_parallel"], "&#9650;"), LABELS["transformer_parallel"]),
        row(glyph(COLOURS["transformer_tap"], "&#9650;"), LABELS["transformer_tap"]),
        row(bar(COLOURS["lv_cable_replace"]), LABELS["lv_cable_replace"]),
        row(bar(COLOURS["lv_cable_parallel"]), LABELS["lv_cable_parallel"]),
        row(bar(COLOURS["mv_cable_replace"]), _label("mv_cable_replace", mv)),
        row(bar(COLOURS["mv_cable_parallel"]), _label("mv_cable_parallel", mv)),
        row(glyph(COLOURS["new_substation"], "&#9632;"), "new substation"),
        row(bar(COLOURS["new_substation"], dashed=True), f"its {mv} tie"),
        row(bar(COLOURS["mv_tie_new"], dashed=True), _label("mv_tie_new", mv)),
        row(bar(COLOURS["transformer_move"], dashed=True), LABELS["transformer_move"]),
        row(bar(COLOURS["transfer"], dashed=True), LABELS["transfer"]),
        row(dot(COLOURS["served"]), "demand, served"),
        row(dot(COLOURS["unserved"]), "demand, not served"),
        row(bar(COLOURS["connection"]), "connection (service cable route)"),
    ]
    return (
        '<div id="lvplan-legend" style="position:fixed;bottom:24px;left:10px;z-index:9999;'
        "background:white;padding:8px 10px;border:1px solid #888;font:12px sans-serif;"
        'max-width:280px">'
        f"{''.join(rows)}{note}</div>"
    )
