"""The network drawn as a map: one home for the hosting map's ``map.png``, the study's map
figure and the feature layers of ``map.html``.

:func:`network_features` is the map as GeoJSON (lines with their design-peak loading and level,
transformer areas as the convex hull of their LV buses, buses with their hosting kW, the
in-service LV buses nothing supplies, transformers); :func:`map_png` draws it in metres east
and north of the map's centre, with no axes, a scale bar and a legend with the counts of each
class.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from lvplan.hosting.outputs import CLASSES, MAP_MAX_BUSES, UNSUPPLIED_COLOUR

M_PER_DEG = 111_320.0


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


_F = TypeVar("_F", bound=Callable[..., Any])


def plain_text(draw: _F) -> _F:
    """``draw`` with matplotlib's mathtext off: every title, tick and legend label it makes is
    text as given. Names come from the user (a network, its transformers, a study's label), and
    two ``$`` in one were parsed as TeX (``$x^{ $``: a ParseException, the run ended with a
    traceback). matplotlib's other settings are left as they were."""

    @functools.wraps(draw)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import matplotlib

        with matplotlib.rc_context({"text.parse_math": False}):
            return draw(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


#: line loading (%) at the red end of the ramp
LOADING_MAX = 120.0


def loading_colour(v: float) -> str:
    """Hex colour of a loading (%) on the maps' ramp: green at 0 %, red at 120 % and above."""
    from matplotlib.colors import to_hex

    return str(to_hex(_plt().get_cmap("RdYlGn_r")(min(max(v, 0.0), LOADING_MAX) / LOADING_MAX)))


def hexagon_colour(median_kw: float) -> str:
    """Hex colour of a city map's hexagon by its buses' median hosting kW: red at 0, green at
    the LV policy's 200 kW and above (:mod:`lvplan.hosting.hexbins`)."""
    from matplotlib.colors import to_hex

    from lvplan.hosting.hexbins import POLICY_KW

    share = min(max(median_kw / POLICY_KW, 0.0), 1.0)
    return str(to_hex(_plt().get_cmap("RdYlGn")(share)))


def png_bytes(fig) -> bytes:
    """The figure as PNG, closed; no software tag or time in the file."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    _plt().close(fig)
    return buf.getvalue()


def network_features(network, hosting: pd.DataFrame | None) -> dict[str, Any]:
    """The map as GeoJSON: lines (MV feeders, LV cables) with their design-peak loading, the
    transformer areas (convex hull of their LV buses), buses with their hosting kW, and the
    in-service LV buses nothing supplies (``kind`` ``unsupplied``: behind an open switch or a
    transformer switched out; no hosting capacity, so not in the table, but drawn)."""
    from lvplan.hosting.run import bus_coordinates

    net = network.pp
    lon, lat = bus_coordinates(network)
    base = network.base_state()
    vn = net.bus.vn_kv
    feats: list[dict[str, Any]] = []
    ld = base.line_loading_percent
    names = net.line["name"] if "name" in net.line.columns else pd.Series("", index=net.line.index)
    for k, li in enumerate(net.line.index):
        fb, tb = int(net.line.at[li, "from_bus"]), int(net.line.at[li, "to_bus"])
        pts = [(lon.get(fb), lat.get(fb)), (lon.get(tb), lat.get(tb))]
        if any(
            x is None or y is None or not (math.isfinite(x) and math.isfinite(y)) for x, y in pts
        ):
            continue
        load = float(ld[k])
        feats.append(
            {
                "type": "Feature",
                "geometry": {"type": "LineString", "coordinates": [list(p) for p in pts]},
                "properties": {
                    "kind": "line",
                    "line": int(li),
                    "name": str(names.at[li]) if isinstance(names.at[li], str) else "",
                    "level": "LV" if float(vn.at[fb]) < 1.0 else "MV",
                    "loading_percent": round(load, 2) if math.isfinite(load) else None,
                },
            }
        )
    tr = net.trafo
    for area in network.topology.areas:
        xs = np.array([lon.get(b, np.nan) for b in area.buses], float)
        ys = np.array([lat.get(b, np.nan) for b in area.buses], float)
        ok = np.isfinite(xs) & np.isfinite(ys)
        ring = _hull(xs[ok], ys[ok])
        if ring is None or not area.trafos:
            continue
        t = area.trafos[0]
        name = tr.at[t, "name"] if "name" in tr.columns else ""
        feats.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "kind": "area",
                    "trafo": int(t),
                    "name": name if isinstance(name, str) else f"trafo {t}",
                    "buses": len(area.buses),
                },
            }
        )
    if hosting is not None:
        h = hosting[hosting.lon.notna() & hosting.lat.notna()]
        for row in h.itertuples(index=False):
            feats.append(
                {
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [float(row.lon), float(row.lat)]},
                    "properties": {
                        "kind": "bus",
                        "bus": int(row.bus),
                        "name": str(row.name),
                        "hosting_kw": float(row.hosting_kw),
                    },
                }
            )
    dead = net.bus.index[np.asarray(network.unsupplied_lv_bus, bool)]
    bus_names = net.bus["name"] if "name" in net.bus.columns else pd.Series("", index=net.bus.index)
    for b in dead:
        x, y = lon.get(b, np.nan), lat.get(b, np.nan)
        if math.isfinite(x) and math.isfinite(y):
            name = bus_names.at[b]
            feats.append(
                {
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [float(x), float(y)]},
                    "properties": {
                        "kind": "unsupplied",
                        "bus": int(b),
                        "name": name if isinstance(name, str) else "",
                    },
                }
            )
    for t in tr.index:
        b = int(tr.at[t, "lv_bus"])
        x, y = lon.get(b, np.nan), lat.get(b, np.nan)
        if float(tr.at[t, "vn_lv_kv"]) < 1.0 and math.isfinite(x) and math.isfinite(y):
            feats.append(
                {
                    "type": "Feature",
                    "geometry": {"type": "Point", "coordinates": [float(x), float(y)]},
                    "properties": {"kind": "transformer", "trafo": int(t)},
                }
            )
    return {"type": "FeatureCollection", "features": feats}


def _hull(xs: np.ndarray, ys: np.ndarray) -> list[list[float]] | None:
    if len(xs) < 3:
        return None
    from scipy.spatial import ConvexHull, QhullError

    pts = np.column_stack([xs, ys])
    try:
        h = ConvexHull(pts)
    except (QhullError, ValueError):
        return None
    ring = [[float(pts[v, 0]), float(pts[v, 1])] for v in h.vertices]
    return [*ring, ring[0]]


@plain_text
def map_png(features: dict[str, Any], title: str) -> bytes:
    """The map: transformer areas shaded, lines coloured by loading (MV thick, LV thin), buses
    coloured by hosting class, transformers as black squares; metres east/north of the map's
    centre (no axes), a scale bar, a legend with the class counts."""
    plt = _plt()
    from matplotlib.collections import LineCollection, PolyCollection
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    f = features["features"]
    allx = [
        c[0]
        for ft in f
        if ft["geometry"]["type"] == "Point"
        for c in [ft["geometry"]["coordinates"]]
    ]
    ally = [
        c[1]
        for ft in f
        if ft["geometry"]["type"] == "Point"
        for c in [ft["geometry"]["coordinates"]]
    ]
    for ft in f:
        if ft["geometry"]["type"] == "LineString":
            for c in ft["geometry"]["coordinates"]:
                allx.append(c[0])
                ally.append(c[1])
    x0 = float(np.mean(allx)) if allx else 0.0
    y0 = float(np.mean(ally)) if ally else 0.0
    kx = M_PER_DEG * math.cos(math.radians(y0))

    def xy(c):
        return ((c[0] - x0) * kx, (c[1] - y0) * M_PER_DEG)

    fig, ax = plt.subplots(figsize=(9, 7.5))
    areas = [
        [xy(c) for c in ft["geometry"]["coordinates"][0]]
        for ft in f
        if ft["properties"]["kind"] == "area"
    ]
    if areas:
        ax.add_collection(
            PolyCollection(areas, facecolors="#4575b4", alpha=0.08, edgecolors="#4575b4",
                           linewidths=0.6, linestyles="dotted", zorder=1)
        )  # fmt: skip
    norm = Normalize(0, LOADING_MAX)
    cmap = plt.get_cmap("RdYlGn_r")
    for level, lw, z in (("MV", 2.6, 2), ("LV", 1.1, 3)):
        segs, cols = [], []
        for ft in f:
            p = ft["properties"]
            if p["kind"] != "line" or p["level"] != level:
                continue
            segs.append([xy(c) for c in ft["geometry"]["coordinates"]])
            v = p["loading_percent"]
            cols.append("#bbbbbb" if v is None else cmap(norm(v)))
        if segs:
            ax.add_collection(LineCollection(segs, colors=cols, linewidths=lw, zorder=z))
    buses = [ft for ft in f if ft["properties"]["kind"] == "bus"]
    handles: list[Any] = []
    city = len(buses) > MAP_MAX_BUSES  # (a point per bus is a solid blot: hexagons)
    if city:
        from lvplan.hosting.hexbins import POLICY_KW, hexagon_ring, hexbins

        lonlat = np.array([b["geometry"]["coordinates"] for b in buses], float)
        kw = np.array([b["properties"]["hosting_kw"] for b in buses], float)
        cells, grid = hexbins(lonlat[:, 0], lonlat[:, 1], kw)
        centres = zip(cells.lon.tolist(), cells.lat.tolist(), strict=True)
        rings = [[xy(c) for c in hexagon_ring(lo, la, grid)] for lo, la in centres]
        faces = [hexagon_colour(v) for v in cells.median_kw.tolist()]
        ax.add_collection(PolyCollection(rings, facecolors=faces, edgecolors="#555555",
                                         linewidths=0.2, alpha=0.8, zorder=4))  # fmt: skip
        handles.append(
            Patch(facecolor=hexagon_colour(POLICY_KW / 2), edgecolor="#555555",
                  label=f"hexagon: median hosting 0-{POLICY_KW:g} kW")
        )  # fmt: skip
    for name, lo, hi, colour in CLASSES:
        sel = [b for b in buses if lo <= b["properties"]["hosting_kw"] < hi]
        if sel and not city:
            pts = np.array([xy(b["geometry"]["coordinates"]) for b in sel])
            size = float(np.clip(3000.0 / max(1, len(buses)), 0.6, 14.0))
            ax.scatter(pts[:, 0], pts[:, 1], s=size, c=colour, zorder=4, linewidths=0)
        handles.append(
            Line2D([], [], marker="o", ls="", color=colour, label=f"bus hosting {name}: {len(sel)}")
        )
    dead = [ft for ft in f if ft["properties"]["kind"] == "unsupplied"]
    if dead:
        pts = np.array([xy(b["geometry"]["coordinates"]) for b in dead])
        size = float(np.clip(3000.0 / max(1, len(buses) + len(dead)), 1.5, 14.0))
        ax.scatter(pts[:, 0], pts[:, 1], s=size, marker="x", c=UNSUPPLIED_COLOUR, zorder=4,
                   linewidths=0.8)  # fmt: skip
        handles.append(
            Line2D([], [], marker="x", ls="", color=UNSUPPLIED_COLOUR,
                   label=f"bus not supplied: {len(dead)}")
        )  # fmt: skip
    trs = [ft for ft in f if ft["properties"]["kind"] == "transformer"]
    if trs:
        pts = np.array([xy(t["geometry"]["coordinates"]) for t in trs])
        ax.scatter(pts[:, 0], pts[:, 1], s=40 if len(trs) < 30 else 7, marker="s",
                   c="black", zorder=5)  # fmt: skip
    handles.append(
        Line2D([], [], marker="s", ls="", color="black", label=f"transformer: {len(trs)}")
    )
    handles.append(Line2D([], [], color="#444444", lw=2.6, label="MV feeder (10 kV)"))
    handles.append(Line2D([], [], color="#444444", lw=1.1, label="LV cable (0.4 kV)"))
    handles.append(Line2D([], [], color="#bbbbbb", lw=2, label="open or not energised"))
    handles.append(
        Patch(facecolor="#4575b4", alpha=0.15, edgecolor="#4575b4", ls="dotted",
              label=f"transformer area: {len(areas)}")
    )  # fmt: skip
    ax.autoscale()
    ax.set_aspect("equal")
    ax.set_axis_off()
    _scale_bar(ax)
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    cb = fig.colorbar(sm, ax=ax, shrink=0.5, pad=0.01, aspect=25)
    cb.set_label("line loading at design peak (%)", fontsize=9)
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=3,
              fontsize=8, frameon=False)  # fmt: skip
    ax.set_title(title, fontsize=11)
    return png_bytes(fig)


def _scale_bar(ax) -> None:
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    width = x1 - x0
    nice = [10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]
    length = next((n for n in nice if n >= width / 6), nice[-1])
    bx, by = x0 + 0.04 * width, y0 + 0.04 * (y1 - y0)
    ax.plot([bx, bx + length], [by, by], color="black", lw=3, solid_capstyle="butt", zorder=6)
    label = f"{length / 1000:g} km" if length >= 1000 else f"{length} m"
    ax.text(bx + length / 2, by + 0.015 * (y1 - y0), label, ha="center", va="bottom", fontsize=8)
