"""A city's hosting capacity aggregated in hexagons: the map's view above
:data:`lvplan.hosting.outputs.MAP_MAX_BUSES` buses, where a point per bus is a solid blot.

Each bus with a position falls in one hexagon of a pointy-top grid laid on the map's local
plane (metres east and north of the buses' mean position: an equirectangular projection, exact
enough over a city). A hexagon holds its buses' count, how many can take a 200 kW customer
(the LV policy's largest), the counts of the map's three classes, and its least and median
hosting kW. The size is chosen so that a city gives about :data:`TARGET_CELLS` hexagons, never
below :data:`MIN_SIZE_M` (a hexagon of a few LV buses says nothing a point does not).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

#: metres per degree of latitude (and of longitude at the equator)
M_PER_DEG = 111_320.0
#: about this many hexagons over the buses' extent
TARGET_CELLS = 3000
#: the least hexagon size (centre to corner), metres: a few LV supply radii across
MIN_SIZE_M = 150.0
#: the hosting kW a hexagon's share counts: the LV policy's largest customer
POLICY_KW = 200.0

_SQ3 = math.sqrt(3.0)


def cell_size_m(x: np.ndarray, y: np.ndarray, target: int = TARGET_CELLS) -> float:
    """The hexagon size (centre to corner, m) that tiles the buses' bounding box with about
    ``target`` hexagons (a pointy-top hexagon of size s covers 3√3/2 s²)."""
    if x.size == 0:
        return MIN_SIZE_M
    area = max(float(np.ptp(x)), 1.0) * max(float(np.ptp(y)), 1.0)
    return max(MIN_SIZE_M, math.sqrt(area / (target * 1.5 * _SQ3)))


def _axial(x: np.ndarray, y: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray]:
    """The pointy-top hexagon (axial q, r) each point (m) falls in: cube rounding."""
    qf = (_SQ3 / 3.0 * x - y / 3.0) / size
    rf = (2.0 / 3.0 * y) / size
    sf = -qf - rf
    q, r, s = np.rint(qf), np.rint(rf), np.rint(sf)
    dq, dr, ds = np.abs(q - qf), np.abs(r - rf), np.abs(s - sf)
    fix_q = (dq > dr) & (dq > ds)
    fix_r = ~fix_q & (dr > ds)
    q = np.where(fix_q, -r - s, q)
    r = np.where(fix_r, -q - s, r)
    return q.astype(np.int64), r.astype(np.int64)


def _centre(q: np.ndarray, r: np.ndarray, size: float) -> tuple[np.ndarray, np.ndarray]:
    return size * _SQ3 * (q + r / 2.0), size * 1.5 * r


def hexbins(
    lon: np.ndarray, lat: np.ndarray, hosting_kw: np.ndarray, *, target: int = TARGET_CELLS
) -> tuple[pd.DataFrame, dict[str, float]]:
    """The hexagons holding the buses at (``lon``, ``lat``), degrees, with their hosting kW
    (positions that are not finite are left out: the caller counts them): a table with ``q``,
    ``r``, ``lon``, ``lat`` (the centre), ``buses``, ``buses_200kw``, ``share_200kw``,
    ``buses_100_200kw``, ``buses_below_100kw``, ``min_kw``, ``median_kw``; and the grid
    (``lon0``, ``lat0``, ``size_m``) that :func:`hexagon_ring` draws with."""
    lon = np.asarray(lon, float)
    lat = np.asarray(lat, float)
    kw = np.asarray(hosting_kw, float)
    ok = np.isfinite(lon) & np.isfinite(lat) & np.isfinite(kw)
    lon, lat, kw = lon[ok], lat[ok], kw[ok]
    lon0 = float(lon.mean()) if lon.size else 0.0
    lat0 = float(lat.mean()) if lat.size else 0.0
    kx = M_PER_DEG * math.cos(math.radians(lat0))
    x = (lon - lon0) * kx
    y = (lat - lat0) * M_PER_DEG
    size = cell_size_m(x, y, target)
    q, r = _axial(x, y, size)
    frame = pd.DataFrame(
        {
            "q": q,
            "r": r,
            "buses": 1,
            "buses_200kw": kw >= POLICY_KW,
            "buses_100_200kw": (kw >= 100.0) & (kw < POLICY_KW),
            "buses_below_100kw": kw < 100.0,
            "min_kw": kw,
            "median_kw": kw,
        }
    )
    counts = ["buses", "buses_200kw", "buses_100_200kw", "buses_below_100kw"]
    out = (
        frame.groupby(["q", "r"], sort=True)
        .agg({**dict.fromkeys(counts, "sum"), "min_kw": "min", "median_kw": "median"})
        .reset_index()
    )
    out[counts] = out[counts].astype(np.int64)
    out["share_200kw"] = out["buses_200kw"] / out["buses"]
    cx, cy = _centre(out["q"].to_numpy(float), out["r"].to_numpy(float), size)
    out["lon"] = lon0 + cx / kx
    out["lat"] = lat0 + cy / M_PER_DEG
    grid = {"lon0": lon0, "lat0": lat0, "size_m": size}
    return out, grid


def hexagon_ring(lon: float, lat: float, grid: dict[str, float]) -> list[list[float]]:
    """The closed ring ([lon, lat] corners) of the grid's hexagon centred at (lon, lat)."""
    kx = M_PER_DEG * math.cos(math.radians(grid["lat0"]))
    size = grid["size_m"]
    ring = []
    for k in range(7):
        a = math.radians(60.0 * (k % 6) - 30.0)
        ring.append([lon + size * math.cos(a) / kx, lat + size * math.sin(a) / M_PER_DEG])
    return ring


def hexbin_features(cells: pd.DataFrame, grid: dict[str, float]) -> list[dict[str, Any]]:
    """The hexagons as GeoJSON polygons with their figures as properties."""
    feats = []
    for c in cells.itertuples(index=False):
        feats.append(
            {
                "type": "Feature",
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [hexagon_ring(float(c.lon), float(c.lat), grid)],
                },
                "properties": {
                    "buses": int(c.buses),
                    "buses_200kw": int(c.buses_200kw),
                    "buses_100_200kw": int(c.buses_100_200kw),
                    "buses_below_100kw": int(c.buses_below_100kw),
                    "share_200kw": round(float(c.share_200kw), 4),
                    "min_kw": round(float(c.min_kw), 1),
                    "median_kw": round(float(c.median_kw), 1),
                },
            }
        )
    return feats
