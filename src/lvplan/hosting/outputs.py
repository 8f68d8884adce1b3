"""The files of ``lvplan hosting --out DIR``, each written atomically.

* ``hosting.csv`` — one row per LV bus: ``bus, name, transformer, hosting_kw, binding_kind,
  binding_element, lon, lat``;
* ``transformers.csv`` — one row per public MV/LV transformer: rating, design-peak loading,
  headroom kVA, smallest and largest hosting kW of its buses, how many of them take 200 kW;
* ``hosting.geojson`` — the buses and transformers as WGS84 points (opens in QGIS);
* ``map.html`` — an interactive Leaflet map (folium); ``map.png`` — the same as a picture;
* ``summary.json`` — network fingerprint, profile, settings, counts and timings.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lvplan import __version__
from lvplan.decision import network_info
from lvplan.io.atomic import (
    staged_files,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)
from lvplan.io.csvsafe import frame_csv
from lvplan.io.leaflet import escape, offline_map, render
from lvplan.io.leaflet import popup as leaflet_popup

#: Colour classes of the map (kW of design load a new customer can still connect).
CLASSES = (
    ("≥ 200 kW", 200.0, math.inf, "#1a9850"),
    ("100–200 kW", 100.0, 200.0, "#fdae61"),
    ("< 100 kW", -math.inf, 100.0, "#d73027"),
)
MAP_MAX_BUSES = 20000
#: an LV bus nothing supplies, on the map
UNSUPPLIED_COLOUR = "#777777"
MAP_MAX_TRANSFORMERS = 5000
#: above this many lines the HTML map draws the MV feeders only (a city's LV cables would make
#: the page too heavy to pan); map.png draws them all
MAP_MAX_LINES = 30000
TRANSFORMER_COLUMNS = [
    "trafo",
    "name",
    "rated_kva",
    "loading_percent",
    "headroom_kva",
    "buses",
    "min_hosting_kw",
    "max_hosting_kw",
    "buses_200kw",
    "lon",
    "lat",
]
#: transformers.csv columns added by an N-1 map (``lvplan hosting --n1``)
N1_TRANSFORMER_COLUMNS = ["feeder", "feeder_n1", "feeder_n1_worst", "min_hosting_kw_n1"]


#: the two maps, which ``lvplan hosting --no-maps`` does not write (and removes: an earlier
#: run's maps beside this run's tables would show other figures)
MAP_FILES = ("map.html", "map.png")
#: every file ``lvplan hosting`` writes in its folder (the two maps only with ``maps``)
FILES = ("hosting.csv", "transformers.csv", "hosting.geojson", "summary.json", *MAP_FILES)


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): v for k, v in row.items()} for row in df.to_dict("records")]


def hosting_class(kw: float) -> str:
    for name, lo, hi, _ in CLASSES:
        if lo <= kw < hi:
            return name
    return CLASSES[-1][0]


def class_colour(kw: float) -> str:
    for _, lo, hi, colour in CLASSES:
        if lo <= kw < hi:
            return colour
    return CLASSES[-1][3]


def transformer_table(
    df: pd.DataFrame,
    network,
    criteria,
    bus_trafo: dict[int, int],
    n1_feeders: dict[str, dict] | None = None,
) -> pd.DataFrame:
    """Per public transformer: its rating, loading, headroom and its buses' hosting range;
    with ``n1_feeders`` (an N-1 map) also its feeder, whether the feeder fails N-1 already
    (and by how much: its worst emergency violation) and its buses' least N-1 hosting."""
    net = network.pp
    tr = net.trafo
    public = tr.index[(tr.vn_hv_kv <= 35.0) & (tr.vn_lv_kv < 1.0)]
    base = network.base_state()
    loading = pd.Series(base.trafo_loading_percent, index=tr.index)
    from lvplan.criteria.judge import Limits

    limits = Limits(net, criteria)
    by_trafo: dict[int, list[int]] = {}
    for b, t in bus_trafo.items():
        by_trafo.setdefault(int(t), []).append(int(b))
    host = pd.Series(df.hosting_kw.to_numpy(), index=df.bus.to_numpy())
    if n1_feeders is not None:
        host_n1 = pd.Series(df.hosting_kw_n1.to_numpy(), index=df.bus.to_numpy())
    from lvplan.hosting.run import bus_coordinates

    lon, lat = bus_coordinates(network)
    rows = []
    names = tr["name"] if "name" in tr.columns else pd.Series("", index=tr.index)
    for t in public:
        rated = float(tr.at[t, "sn_mva"]) * 1000.0
        ld = float(loading.get(t, np.nan))
        buses = [b for b in by_trafo.get(int(t), []) if b in host.index]
        h = host.loc[buses] if buses else pd.Series(dtype=float)
        lvb = int(tr.at[t, "lv_bus"])
        hr = limits.trafo_headroom_kva(ld, rated)
        rows.append(
            {
                "trafo": int(t),
                "name": names.at[t] if isinstance(names.at[t], str) else "",
                "rated_kva": round(rated, 1),
                "loading_percent": round(ld, 2) if math.isfinite(ld) else None,
                "headroom_kva": None if hr is None else round(hr, 1),
                "buses": len(buses),
                "min_hosting_kw": round(float(h.min()), 1) if len(h) else None,
                "max_hosting_kw": round(float(h.max()), 1) if len(h) else None,
                "buses_200kw": int((h >= 200.0).sum()) if len(h) else 0,
                "lon": lon.get(lvb, np.nan),
                "lat": lat.get(lvb, np.nan),
            }
        )
        if n1_feeders is not None:
            fd = network.topology.trafo_feeder.get(int(t))
            info = n1_feeders.get(fd or "", {})
            h1 = host_n1.loc[buses] if buses else pd.Series(dtype=float)
            rows[-1].update(
                feeder=fd,
                feeder_n1=info.get("status", "no MV feeder"),
                feeder_n1_worst=info.get("worst", ""),
                min_hosting_kw_n1=round(float(h1.min()), 1) if len(h1) else None,
            )
    cols = TRANSFORMER_COLUMNS + (N1_TRANSFORMER_COLUMNS if n1_feeders is not None else [])
    return pd.DataFrame(rows, columns=cols)


def _num(x: Any) -> Any:
    if x is None:
        return None
    if isinstance(x, float | np.floating):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


def geojson(df: pd.DataFrame, trafos: pd.DataFrame) -> dict[str, Any]:
    feats = []
    ok = df.lon.notna() & df.lat.notna()
    for r in _records(df[ok]):
        feats.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [float(r["lon"]), float(r["lat"])]},
                "properties": {
                    "kind": "bus",
                    "bus": int(r["bus"]),
                    "name": r["name"],
                    "transformer": r["transformer"],
                    "hosting_kw": _num(r["hosting_kw"]),
                    "class": hosting_class(float(r["hosting_kw"])),
                    "binding_kind": r["binding_kind"],
                    "binding_element": r["binding_element"],
                },
            }
        )
    tok = trafos.lon.notna() & trafos.lat.notna()
    for r in _records(trafos[tok]):
        feats.append(
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [float(r["lon"]), float(r["lat"])]},
                "properties": {"kind": "transformer"}
                | {k: _num(v) for k, v in r.items() if k not in ("lon", "lat")},
            }
        )
    return {"type": "FeatureCollection", "features": feats}


def map_html(
    df: pd.DataFrame, trafos: pd.DataFrame, title: str, features: dict[str, Any] | None = None
) -> str:
    """The Leaflet map: transformer areas, MV feeders and LV cables coloured by loading (from
    ``features``, :func:`lvplan.hosting.mapdraw.network_features`), buses by hosting class,
    transformers with popups. Above :data:`MAP_MAX_BUSES` buses it shows the weakest buses,
    above :data:`MAP_MAX_LINES` lines the MV feeders only, and says so in the legend."""
    import folium
    from branca.element import Element

    from lvplan.hosting.mapdraw import hexagon_colour

    ok = df[df.lon.notna() & df.lat.notna()]
    shown = ok
    note = ""
    city = len(ok) > MAP_MAX_BUSES
    if city:  # a browser map of a whole city: hexagons of every bus, and the weakest buses
        shown = ok.nsmallest(MAP_MAX_BUSES, "hosting_kw")
        note = (
            f" (the {MAP_MAX_BUSES} buses with the least room of {len(ok)}, in the layer "
            "menu; every bus in the hexagons)"
        )
    center = [float(ok.lat.mean()), float(ok.lon.mean())] if len(ok) else [22.54, 114.06]
    feats = (features or {"features": []})["features"]
    lines = [f for f in feats if f["properties"]["kind"] == "line"]
    areas = [f for f in feats if f["properties"]["kind"] == "area"]
    left_out = []
    why = (features or {}).get("lvplan_note")
    if why:  # (a network whose coordinates are not degrees)
        left_out.append(f"no bus positions: {why}")
    if len(lines) > MAP_MAX_LINES:
        lv = sum(f["properties"]["level"] == "LV" for f in lines)
        lines = [f for f in lines if f["properties"]["level"] == "MV"]
        left_out.append(f"{lv} LV cables not drawn (more than {MAP_MAX_LINES} lines)")
    if len(areas) > MAP_MAX_TRANSFORMERS:
        left_out.append(f"{len(areas)} transformer areas not drawn")
        areas = []
    # the LV buses nothing supplies, drawn apart (no hosting capacity, so no row), within the
    # one cap the map's buses share
    dead = [f for f in feats if f["properties"]["kind"] == "unsupplied"]
    dead_drawn = dead[: max(0, MAP_MAX_BUSES - len(shown))]
    n_dead = max(len(dead), int((features or {}).get("lvplan_unsupplied") or 0))  # (all of them)
    if len(dead_drawn) < n_dead:
        left_out.append(f"{n_dead - len(dead_drawn)} buses not supplied not drawn")
    m = offline_map(
        center,
        zoom_start=15,
        prefer_canvas=len(shown) + len(dead_drawn) + len(lines) > 2000,
        zoom_snap=0.25 if city else None,  # (the city's bounds fill the window)
    )
    if areas:
        folium.GeoJson(
            {"type": "FeatureCollection", "features": areas},
            name="transformer areas",
            style_function=lambda _f: {
                "color": "#4575b4",
                "weight": 1,
                "dashArray": "3 3",
                "fillColor": "#4575b4",
                "fillOpacity": 0.07,
                "className": "lvplan-area",
            },
        ).add_to(m)
    if lines:
        folium.GeoJson(
            {"type": "FeatureCollection", "features": lines},
            name="MV feeders and LV cables: loading",
            style_function=_line_style,
        ).add_to(m)
    hex_note = ""
    if city:  # (the whole city in view: at zoom 15 its centre alone)
        layer, hex_note = _hexagon_layer(ok)
        layer.add_to(m)
        m.fit_bounds([[float(ok.lat.min()), float(ok.lon.min())],
                      [float(ok.lat.max()), float(ok.lon.max())]])  # fmt: skip
    buses = folium.FeatureGroup(name="LV buses: hosting capacity", show=not city).add_to(m)
    for r in _records(shown):
        folium.CircleMarker(
            location=[float(r["lat"]), float(r["lon"])],
            radius=5 if len(shown) < 2000 else 3,
            color=class_colour(float(r["hosting_kw"])),
            fill=True,
            fill_opacity=0.85,
            weight=1,
            class_name="lvplan-bus",
            tooltip=escape(
                f"bus {r['bus']} {r['name']}: {r['hosting_kw']:g} kW ({r['binding_kind']} "
                f"{r['binding_element']})"
            ),
        ).add_to(buses)
    if dead_drawn:
        off = folium.FeatureGroup(name="LV buses: not supplied").add_to(m)
        for ft in dead_drawn:
            x, y = ft["geometry"]["coordinates"]
            p = ft["properties"]
            folium.CircleMarker(
                location=[float(y), float(x)],
                radius=4 if len(dead_drawn) < 2000 else 2,
                color=UNSUPPLIED_COLOUR,
                fill=False,
                weight=1.5,
                class_name="lvplan-unsupplied",
                tooltip=escape(
                    f"bus {p['bus']} {p['name']}: not supplied (nothing feeds it: behind an open "
                    "switch or a transformer switched out)"
                ),
            ).add_to(off)
    tg = folium.FeatureGroup(name="public transformers").add_to(m)
    located = trafos[trafos.lon.notna() & trafos.lat.notna()]
    if len(located) > MAP_MAX_TRANSFORMERS:  # the ones with the least headroom
        located = located.nsmallest(MAP_MAX_TRANSFORMERS, "headroom_kva")
        note += f"; the {MAP_MAX_TRANSFORMERS} transformers with the least headroom"
    for r in _records(located):
        popup = (
            f"<b>{escape(r['name'] or 'trafo ' + str(r['trafo']))}</b><br>rating "
            f"{r['rated_kva']:g} kVA"
            f"<br>design-peak loading {r['loading_percent']} %<br>headroom {r['headroom_kva']} "
            f"kVA<br>buses {r['buses']}, hosting {r['min_hosting_kw']}–{r['max_hosting_kw']} kW"
            f"<br>buses taking 200 kW: {r['buses_200kw']}"
        )
        marker = folium.Marker(
            location=[float(r["lat"]), float(r["lon"])],
            icon=folium.DivIcon(
                html='<div class="lvplan-trafo" style="color:#4575b4;font-size:20px;'
                'text-shadow:0 0 2px #000">&#9650;</div>',
                icon_size=(20, 20),
                icon_anchor=(10, 12),
            ),
            tooltip=escape(r["name"] or f"trafo {r['trafo']}"),
        ).add_to(tg)
        leaflet_popup(popup).add_to(marker)
    folium.LayerControl().add_to(m)
    # the classes of every bus of the table, as summary.json counts them (a bus without a
    # position is not drawn, and said so: the legend read 0 in every class on a network whose
    # coordinates are not degrees)
    counts = {
        name: int(((df.hosting_kw >= lo) & (df.hosting_kw < hi)).sum())
        for name, lo, hi, _ in CLASSES
    }
    if len(ok) < len(df):
        left_out.append(f"{len(df) - len(ok)} buses without a position not drawn")
    items = "".join(
        f'<div><span style="background:{c};width:12px;height:12px;display:inline-block;'
        f'border-radius:6px;margin-right:6px"></span>{name}: {counts[name]}</div>'
        for name, _, _, c in CLASSES
    )
    ramp = "".join(
        f'<span style="background:{_loading_colour(v)};width:14px;height:4px;'
        f'display:inline-block"></span>'
        for v in range(0, 121, 15)
    )
    legend = (
        '<div id="lvplan-legend" style="position:fixed;bottom:24px;left:24px;z-index:9999;'
        'background:white;padding:8px 10px;border:1px solid #888;font:12px sans-serif">'
        f"<b>{escape(title)}</b><br>new 380 V customer, design kW{note}{items}"
        '<div><span style="color:#4575b4">&#9650;</span> public transformer</div>'
        + (
            f'<div><span style="border:1.5px solid {UNSUPPLIED_COLOUR};width:9px;height:9px;'
            'display:inline-block;border-radius:6px;margin-right:6px"></span>'
            f"not supplied (no hosting capacity): {n_dead}</div>"
            if n_dead
            else ""
        )
        + (
            f"<div>lines: loading 0 {ramp} 120 %; MV thick, LV thin</div>"
            '<div><span style="border:1px dashed #4575b4;background:rgba(69,117,180,.1);'
            'width:12px;height:10px;display:inline-block;margin-right:6px"></span>'
            "transformer area</div>"
            if lines or areas
            else ""
        )
        + (
            f"<div>hexagons ({escape(hex_note)}): median hosting 0 "
            + "".join(
                f'<span style="background:{hexagon_colour(v)};width:14px;height:10px;'
                'display:inline-block"></span>'
                for v in range(0, 201, 40)
            )
            + " 200 kW</div>"
            if hex_note
            else ""
        )
        + "".join(f"<div><i>{escape(t)}</i></div>" for t in left_out)
        + "</div>"
    )
    m.get_root().html.add_child(Element(legend))
    return render(m)


def _hexagon_layer(ok: pd.DataFrame):
    """Every bus of ``ok`` (rows with a position) in hexagons coloured by their buses' median
    hosting kW, red at 0 and green at 200 kW (:mod:`lvplan.hosting.hexbins`), with their
    counts by class and least kW in a tooltip; and the legend's words for them."""
    import folium

    from lvplan.hosting.hexbins import hexbin_features, hexbins
    from lvplan.hosting.mapdraw import hexagon_colour

    cells, grid = hexbins(ok.lon.to_numpy(float), ok.lat.to_numpy(float),
                          ok.hosting_kw.to_numpy(float))  # fmt: skip
    feats = hexbin_features(cells, grid)
    for f in feats:
        f["properties"]["colour"] = hexagon_colour(f["properties"]["median_kw"])
    fields = ["buses", "buses_200kw", "buses_100_200kw", "buses_below_100kw", "min_kw",
              "median_kw"]  # fmt: skip
    aliases = ["LV buses", "taking 200 kW", "100–200 kW", "< 100 kW", "least kW", "median kW"]
    layer = folium.GeoJson(
        {"type": "FeatureCollection", "features": feats},
        name="hosting capacity by hexagon",
        style_function=lambda f: {
            "color": "#555555",
            "weight": 0.4,
            "fillColor": f["properties"]["colour"],
            "fillOpacity": 0.65,
            "className": "lvplan-hexagon",
        },
        tooltip=folium.GeoJsonTooltip(fields=fields, aliases=aliases),
    )
    across = 2 * grid["size_m"]
    return layer, f"{len(feats)}, {across:,.0f} m across"


def _loading_colour(v: float | None) -> str:
    """Colour of a line loading (%) on the map's ramp (green 0 % to red 120 %)."""
    if v is None or not math.isfinite(v):
        return "#bbbbbb"
    from lvplan.hosting.mapdraw import loading_colour

    return loading_colour(v)


def _line_style(feature: dict[str, Any]) -> dict[str, Any]:
    p = feature["properties"]
    return {
        "color": _loading_colour(p["loading_percent"]),
        "weight": 4 if p["level"] == "MV" else 2,
        "opacity": 0.9,
        "className": "lvplan-line",
    }


def map_png(network, df: pd.DataFrame, title: str, features: dict[str, Any] | None = None) -> bytes:
    """The map as a picture (:func:`lvplan.hosting.mapdraw.map_png`): lines by loading,
    transformer areas, buses by hosting class, a scale bar and a legend with the counts."""
    from lvplan.hosting.mapdraw import map_png as draw
    from lvplan.hosting.mapdraw import network_features

    return draw(features or network_features(network, df), title)


#: the transformer columns repeated for the network before the changes (``--compare``)
COMPARED_TRANSFORMER_COLUMNS = ("rated_kva", "loading_percent", "headroom_kva", "min_hosting_kw")


def compare_tables(df, trafos, before, before_trafos) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The after tables with ``hosting_kw_before``, ``hosting_kw_after``, ``delta_kw`` per bus
    (before empty for a new bus) and ``<column>_before`` / ``delta_min_hosting_kw`` per
    transformer, and a summary of the differences."""
    prev = pd.Series(before.hosting_kw.to_numpy(), index=before.bus.to_numpy())
    df = df.copy()
    df["hosting_kw_before"] = prev.reindex(df.bus.to_numpy()).to_numpy()
    df["hosting_kw_after"] = df.hosting_kw
    df["delta_kw"] = (df.hosting_kw_after - df.hosting_kw_before).round(1)
    cols = ["trafo", *COMPARED_TRANSFORMER_COLUMNS]
    old = before_trafos[cols].rename(columns={c: f"{c}_before" for c in cols[1:]})
    trafos = trafos.merge(old, on="trafo", how="left")
    trafos["delta_min_hosting_kw"] = (trafos.min_hosting_kw - trafos.min_hosting_kw_before).round(1)
    d = df.delta_kw
    summary = {
        "buses_gaining": int((d > 0).sum()),
        "buses_losing": int((d < 0).sum()),
        "new_buses": int(df.hosting_kw_before.isna().sum()),
        "total_gain_kw": round(float(d[d > 0].sum()), 1),
        "total_loss_kw": round(float(-d[d < 0].sum()), 1),
    }
    return df, trafos, summary


def write_outputs(
    result,
    network,
    criteria,
    out: Path,
    *,
    maps: bool = True,
    before: tuple[Any, Any] | None = None,
) -> dict:
    """Write every output file of a :class:`HostingResult`; returns the summary (also written
    as summary.json). ``before``: the result and network before a set of changes
    (``--compare``). All or none: the files are written beside the folder's first and renamed
    in together (a full disk leaves the folder as it was, and is one line)."""
    with staged_files(out, drop=() if maps else MAP_FILES) as stage:
        return _write_outputs(result, network, criteria, stage, maps=maps, before=before)


def _not_supplied(network) -> int:
    """In-service LV buses that nothing supplies (behind an open switch, a transformer switched
    out): no hosting capacity, so not in the table, but counted, not left unsaid."""
    return int(network.unsupplied_lv_bus.sum())


def _in_operation(network) -> int:
    """Public MV/LV transformers that feed their LV side (not out of service, no side switched
    out, supplied): ``transformers`` counts every public unit, these the ones in the table's
    numbers."""
    from lvplan.model.topology import LV_MAX_KV, MV_MAX_KV

    tr = network.pp.trafo
    public = ((tr.vn_hv_kv <= MV_MAX_KV) & (tr.vn_lv_kv < LV_MAX_KV)).to_numpy()
    return int((public & network.feeding_trafo).sum())


def _write_outputs(result, network, criteria, out: Path, *, maps: bool, before) -> dict:
    df = result.table
    n1_feeders = getattr(result, "n1_feeders", None)
    trafos = transformer_table(df, network, criteria, result.bus_trafo, n1_feeders)
    compared = None
    if before is not None:
        prev, prev_net = before
        prev_trafos = transformer_table(prev.table, prev_net, criteria, prev.bus_trafo)
        df, trafos, compared = compare_tables(df, trafos, prev.table, prev_trafos)
    # (bus and transformer names are the network's text: no spreadsheet formulas)
    write_text_atomic(out / "hosting.csv", frame_csv(df))
    write_text_atomic(out / "transformers.csv", frame_csv(trafos))
    write_text_atomic(
        out / "hosting.geojson", json.dumps(geojson(df, trafos), ensure_ascii=False) + "\n"
    )
    title = f"lvplan hosting capacity: {network.name}"
    if maps:
        from lvplan.hosting.mapdraw import network_features

        feats = network_features(network, df)
        feats["lvplan_note"] = network.coordinates_note  # (no positions: the legend says why)
        feats["lvplan_unsupplied"] = _not_supplied(network)  # (those without positions too)
        write_text_atomic(out / "map.html", map_html(df, trafos, title, feats))
        write_bytes_atomic(out / "map.png", map_png(network, df, title, feats))
    stats = result.stats
    classes = {
        name: int(((df.hosting_kw >= lo) & (df.hosting_kw < hi)).sum())
        for name, lo, hi, _ in CLASSES
    }
    summary = {
        "network": network_info(network),
        "criteria": criteria.to_dict(),
        "pf": result.pf,
        "max_kw": result.max_kw,
        "buses": len(df),
        "buses_not_supplied": _not_supplied(network),
        "coordinates_note": network.coordinates_note,
        "transformers": len(trafos),
        "transformers_in_operation": _in_operation(network),
        "classes": classes,
        "binding_kinds": {str(k): int(v) for k, v in df.binding_kind.value_counts().items()},
        "stats": None
        if stats is None
        else {k: _num(v) for k, v in vars(stats).items() if k != "n1_s" or v is not None},
        "files": sorted(FILES if maps else FILES[:4]),
        "lvplan_version": __version__,
    }
    if compared is not None:
        summary["compare"] = compared
    if n1_feeders is not None:
        summary["n1"] = {
            "feeders": n1_feeders,
            "feeders_failing": sorted(k for k, v in n1_feeders.items() if v["status"] != "ok"),
            "pass_rate": getattr(result, "n1_pass_rate", None),
            "classes": {
                name: int(((df.hosting_kw_n1 >= lo) & (df.hosting_kw_n1 < hi)).sum())
                for name, lo, hi, _ in CLASSES
            },
        }
    write_json_atomic(out / "summary.json", summary)
    return summary
