"""Bus positions: one reader for every place that needs a bus's longitude and latitude (a
location check, demand rows by lon/lat, new substation sites, synthetic demand, the maps).

A bus's position is its ``lon``/``lat`` columns when the bus table has both, else (per bus)
pandapower's ``geo`` column (a GeoJSON Point); an infinite coordinate is none. lvplan reads
positions as WGS84 degrees: distances are great-circle metres, the maps are web maps. A
network whose coordinates are not degrees (a projected system in metres, such as CGCS2000
Gauss-Krueger, where x is in the millions) is read as having no positions, with a note that
says so: before, a location check measured 3,400 km to the nearest bus of such a network and
answered "no LV bus within the radius". Schematic coordinates that happen to lie within the
ranges (pandapower's CIGRE networks) cannot be told from degrees. One bus outside the ranges
(a typo, lat 91) is enough: the note names it.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd


def given_lonlat(net) -> tuple[np.ndarray, np.ndarray]:
    """The coordinates of every bus row as the network gives them: the ``lon``/``lat`` columns,
    and a bus's ``geo`` point where they have none (NaN where neither; an infinite value is
    none)."""
    bus = net.bus
    n = len(bus)
    lon, lat = np.full(n, np.nan), np.full(n, np.nan)
    if "lon" in bus.columns and "lat" in bus.columns:
        lon, lat = _floats(bus["lon"]), _floats(bus["lat"])
    if "geo" in bus.columns:
        missing = ~(np.isfinite(lon) & np.isfinite(lat))
        geo = bus["geo"].to_numpy(object)
        for i in np.flatnonzero(missing):
            g = geo[i]
            if isinstance(g, str) and g:
                try:
                    c = json.loads(g)["coordinates"]
                    lon[i], lat[i] = float(c[0]), float(c[1])
                except (ValueError, KeyError, TypeError, IndexError):
                    continue
    bad = ~(np.isfinite(lon) & np.isfinite(lat))
    lon[bad] = np.nan
    lat[bad] = np.nan
    return lon, lat


def bus_point(net, b: int) -> tuple[float, float] | None:
    """(lon, lat) of bus ``b`` as the network gives it (by the rule of :func:`given_lonlat`, for
    one bus: a change copying a moved unit's position), or None."""
    bus = net.bus
    if "lon" in bus.columns and "lat" in bus.columns:
        x, y = _floats(bus.loc[[b], "lon"])[0], _floats(bus.loc[[b], "lat"])[0]
        if np.isfinite(x) and np.isfinite(y):
            return float(x), float(y)
    g = bus.at[b, "geo"] if "geo" in bus.columns else None
    if not isinstance(g, str) or not g:
        return None
    try:
        c = json.loads(g)["coordinates"]
        x, y = float(c[0]), float(c[1])
    except (ValueError, KeyError, TypeError, IndexError):
        return None
    return (x, y) if np.isfinite(x) and np.isfinite(y) else None


def _floats(col) -> np.ndarray:
    """A column as floats, NaN where a cell is not a number."""
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def not_degrees(net, lon: np.ndarray, lat: np.ndarray) -> str | None:
    """Why the coordinates are not WGS84 degrees (the first bus outside lon [-180, 180] or
    lat [-90, 90]), or None."""
    ok = np.isfinite(lon) & np.isfinite(lat)
    out = ok & ((np.abs(lon) > 180.0) | (np.abs(lat) > 90.0))
    if not out.any():
        return None
    k = int(np.flatnonzero(out)[0])
    return (
        f"the bus coordinates are not lon/lat degrees (WGS84): bus {net.bus.index[k]} is at "
        f"({lon[k]:.6g}, {lat[k]:.6g}), {int(out.sum()):,} of {int(ok.sum()):,} buses outside "
        "lon [-180, 180], lat [-90, 90] (a projected system in metres?); lvplan reads them "
        "as having no positions: reproject the network to WGS84 for location checks, lon/lat "
        "demand, new substation sites and maps"
    )


def bus_lonlat(net) -> tuple[np.ndarray, np.ndarray, str | None]:
    """(lon, lat, note) of every bus row in degrees: NaN where a bus has none, and everywhere,
    with the ``note`` saying why, when the network's coordinates are not degrees."""
    lon, lat = given_lonlat(net)
    note = not_degrees(net, lon, lat)
    if note is not None:
        lon, lat = np.full(lon.size, np.nan), np.full(lat.size, np.nan)
    return lon, lat, note
