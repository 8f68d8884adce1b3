"""The study's figures (matplotlib, Agg), each drawn from a table that is also written beside it.

Every function takes the table it draws (a DataFrame or the map's features) and returns PNG
bytes; :mod:`lvplan.study.report` writes the table and the picture and states the numbers in
the caption from the same table.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import pandas as pd

from lvplan.hosting.outputs import CLASSES

M_PER_DEG = 111_320.0
OUTCOME_COLOURS = {
    "fits": "#1a9850",
    "does_not_fit": "#fdae61",
    "hv_required": "#4575b4",
    "not_assessable": "#999999",
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    # no timestamps or software tags in the file: the same figure gives the same bytes
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    _plt().close(fig)
    return buf.getvalue()


# -- the network map -----------------------------------------------------------------------------
def map_features(network, hosting: pd.DataFrame | None) -> dict[str, Any]:
    """The map as GeoJSON: lines (MV feeders, LV cables) with their design-peak loading, the
    transformer areas (convex hull of their LV buses), buses with their hosting kW."""
    from lvplan.hosting.run import bus_coordinates

    net = network.pp
    lon, lat = bus_coordinates(net)
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
    norm = Normalize(0, 120)
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
    for name, lo, hi, colour in CLASSES:
        sel = [b for b in buses if lo <= b["properties"]["hosting_kw"] < hi]
        if sel:
            pts = np.array([xy(b["geometry"]["coordinates"]) for b in sel])
            size = float(np.clip(3000.0 / max(1, len(buses)), 0.6, 14.0))
            ax.scatter(pts[:, 0], pts[:, 1], s=size, c=colour, zorder=4, linewidths=0)
        handles.append(
            Line2D([], [], marker="o", ls="", color=colour, label=f"bus hosting {name}: {len(sel)}")
        )
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
    return _png(fig)


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


# -- hosting per transformer ---------------------------------------------------------------------
def hosting_by_transformer(hosting: pd.DataFrame) -> pd.DataFrame:
    """Per transformer: buses and the quartiles of their hosting kW, sorted by the median."""
    g = hosting.groupby("transformer").hosting_kw
    out = pd.DataFrame(
        {
            "buses": g.size(),
            "min_kw": g.min(),
            "p25_kw": g.quantile(0.25),
            "median_kw": g.median(),
            "p75_kw": g.quantile(0.75),
            "max_kw": g.max(),
        }
    ).round(1)
    return out.sort_values(["median_kw", "min_kw"]).reset_index()


def hosting_png(table: pd.DataFrame, title: str) -> bytes:
    plt = _plt()
    n = len(table)
    fig, ax = plt.subplots(figsize=(9, 4.2 if n <= 30 else 4.8))
    x = np.arange(n)
    ax.vlines(x, table.min_kw, table.max_kw, color="#999999", lw=1)
    ax.vlines(x, table.p25_kw, table.p75_kw, color="#4575b4", lw=5 if n <= 40 else 2)
    ax.scatter(x, table.median_kw, color="black", s=12 if n <= 40 else 4, zorder=3)
    for _name, lo, _hi, colour in CLASSES[:2]:
        ax.axhline(lo, color=colour, ls="--", lw=1)
    ax.set_ylabel("hosting capacity of its LV buses (kW)")
    if n <= 30:
        ax.set_xticks(x, [str(t).split(" ")[0] for t in table.transformer], fontsize=8)
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{n} transformers, sorted by median")
    ax.set_title(title, fontsize=11)
    return _png(fig)


# -- transformer loading before / after ----------------------------------------------------------
def loading_png(table: pd.DataFrame, title: str, limit: float) -> bytes:
    """Dumbbells: each transformer's design-peak loading before and after the replay's approvals,
    sorted by the loading after."""
    plt = _plt()
    t = table.sort_values("loading_after_percent").reset_index(drop=True)
    n = len(t)
    fig, ax = plt.subplots(figsize=(9, 4.2))
    x = np.arange(n)
    ax.vlines(x, t.loading_before_percent, t.loading_after_percent, color="#999999", lw=1)
    s = 22 if n <= 40 else 6
    ax.scatter(x, t.loading_before_percent, color="#4575b4", s=s, label="before", zorder=3)
    ax.scatter(x, t.loading_after_percent, color="#d73027", s=s, label="after", zorder=3)
    ax.axhline(limit, color="black", ls="--", lw=1, label=f"limit {limit:g} %")
    ax.set_ylabel("transformer loading at design peak (%)")
    if n <= 30:
        ax.set_xticks(x, [str(v).split(" ")[0] for v in t.name], fontsize=8)
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{n} transformers, sorted by the loading after")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title, fontsize=11)
    return _png(fig)


# -- approvals by policy -------------------------------------------------------------------------
def _cells(table: pd.DataFrame, keys: list, col: str, value: str, what: str) -> np.ndarray:
    """For each (network, policy_kw) of ``keys``: the sum of ``what`` over the rows whose
    ``col`` is ``value``."""
    sel = table[table[col].astype(str) == str(value)]
    sums = sel.groupby(["network", "policy_kw"])[what].sum()
    return np.array([float(sums.get((n, p), 0.0)) for n, p in keys])


def approvals_png(table: pd.DataFrame, labels: dict[str, str]) -> bytes:
    """Stacked bars of the replay's outcomes (share of applications) per network and policy."""
    plt = _plt()
    rows = list(dict.fromkeys(zip(table.network, table.policy_kw, strict=True)))
    fig, ax = plt.subplots(figsize=(9, 0.9 + 0.55 * len(rows)))
    y = np.arange(len(rows))
    left = np.zeros(len(rows))
    for outcome, colour in OUTCOME_COLOURS.items():
        vals = _cells(table, rows, "outcome", outcome, "share")
        ax.barh(y, 100 * vals, left=100 * left, color=colour, label=labels[outcome])
        for k, v in enumerate(vals):
            if v >= 0.06:
                ink = "black" if outcome == "does_not_fit" else "white"
                ax.text(100 * (left[k] + v / 2), y[k], f"{100 * v:.0f} %", ha="center",
                        va="center", fontsize=8, color=ink)  # fmt: skip
        left += vals
    ax.set_yticks(y, [f"{n}, policy {p:g} kW" for n, p in rows], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of the year's applications (%)")
    ax.legend(
        fontsize=8,
        ncol=4,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.25 if len(rows) > 2 else -0.4),
    )
    ax.set_title("Applications by outcome, first come first served", fontsize=11)
    return _png(fig)


# -- cost by measure type and year ---------------------------------------------------------------
def cost_png(by_kind: pd.DataFrame, by_year: pd.DataFrame) -> bytes:
    """Two panels: the plan's cost by measure type, and by year, per network and policy."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, table, col, title in (
        (axes[0], by_kind, "kind", "by measure type"),
        (axes[1], by_year, "year", "by year"),
    ):
        keys = list(dict.fromkeys(zip(table.network, table.policy_kw, strict=True)))
        cats = sorted(table[col].astype(str).unique())
        cmap = plt.get_cmap("tab10")
        x = np.arange(len(keys))
        bottom = np.zeros(len(keys))
        for j, c in enumerate(cats):
            vals = _cells(table, keys, col, c, "cost_cny") / 1e6
            ax.bar(x, vals, bottom=bottom, color=cmap(j % 10), label=c)
            bottom += vals
        for k, v in enumerate(bottom):
            ax.text(x[k], v, f"{v:.2f}", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(x, [f"{n}\n{p:g} kW" for n, p in keys], fontsize=8)
        ax.set_ylabel("million CNY")
        ax.set_title(f"Plan cost {title}", fontsize=11)
        ax.legend(fontsize=7)
        ax.margins(y=0.15)
    fig.tight_layout()
    return _png(fig)
