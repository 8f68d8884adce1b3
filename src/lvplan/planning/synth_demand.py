"""Benchmark demand for the optimiser: ``lvplan synth demand NETWORK --count N --seed S``.

Reproducible: the same network, arguments and seed give a byte-identical CSV (numpy's PCG64
from the seed, fixed decimals, ``\\n`` line ends). The demand comes in clusters of about
:data:`CLUSTER_MEAN` customers (a development: a street of shops, a new block):

* **near clusters** are centred on an existing LV bus (live, with coordinates), drawn with
  weight ``1 + existing load kW at the bus``: new demand lands where the city is already dense,
  which is where it strains the existing transformers (the hard case for the optimiser). Each
  member lies within the supply radius of the area class of the centre bus *by route*
  (straight line x the profile's detour factor), uniformly over that disc, so the centre bus
  is always a candidate connection point.
* **far clusters** (``far_share``, about 10 %, at least one when there are two clusters or
  more) are placed beyond every supply radius: each member is farther than the *largest*
  supply radius of the profile (+ :data:`FAR_MARGIN_M`) in straight line from every LV bus
  with coordinates, so no area class lets them connect to the existing LV network and a new
  substation is needed. Their centre starts beside a weighted LV bus, pushed outward (away
  from the network's centroid) until clear.

Declared kW: ``20 + 180 u^3`` (u uniform), rounded to 5 kW: 20–200 kW, median about 42 kW,
mean about 65 kW (most customers small, a few near the 200 kW LV limit; none above it).
Categories: :data:`CATEGORIES` with their shares. Ids ``D0001``, ``D0002``, ... in cluster
order. Columns: ``id, kw, category, lon, lat`` then ``year`` (uniform over the years given;
omitted with ``years=None``) and ``area_class`` (only when one is given; otherwise the
reader takes the profile's default, as the synthesis did).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lvplan.criteria import Criteria, categories
from lvplan.errors import InputError

if TYPE_CHECKING:
    from lvplan.model.network import Network

#: Mean number of customers in a cluster.
CLUSTER_MEAN = 5
#: Default share of clusters placed beyond every supply radius.
FAR_SHARE = 0.10
#: Far members are at least this much farther than the largest supply radius from any LV bus.
FAR_MARGIN_M = 50.0
#: Categories of the synthetic customers and their shares (names from criteria/categories.toml).
CATEGORIES = (("shop", 0.35), ("office", 0.25), ("restaurant", 0.20), ("generic", 0.15),
              ("motor", 0.05))  # fmt: skip
KW_MIN, KW_MAX, KW_STEP = 20.0, 200.0, 5.0
MAX_COUNT = 1_000_000
M_PER_DEG_LAT = 111_320.0
COORD_DECIMALS = 7  # about 1 cm


@dataclass(frozen=True)
class SynthDemand:
    """The synthesised rows and what they were made from."""

    rows: tuple[dict[str, str], ...]
    columns: tuple[str, ...]
    clusters: int
    far_clusters: int
    far_ids: tuple[str, ...]

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.columns)
        w.writerows([[r[c] for c in self.columns] for r in self.rows])
        return buf.getvalue()


def synth_demand(
    network: Network,
    *,
    count: int,
    seed: int,
    criteria: Criteria,
    years: tuple[int, int] | None = (2027, 2029),
    area_class: str | None = None,
    far_share: float = FAR_SHARE,
) -> SynthDemand:
    """``count`` demands clustered around ``network``'s LV buses (see the module docstring)."""
    from lvplan.locate import bus_lonlat

    if not 1 <= count <= MAX_COUNT:
        raise InputError(f"count: must be within 1..{MAX_COUNT}, got {count}")
    if not 0.0 <= far_share <= 1.0:
        raise InputError(f"far_share: must be within 0..1, got {far_share}")
    cls = criteria.default_area_class if area_class is None else area_class
    if cls not in criteria.supply_radius_m:
        known = ", ".join(criteria.supply_radius_m)
        raise InputError(f"area_class: unknown area class {cls!r}; known: {known}")
    if years is not None and not (2000 <= years[0] <= years[1] <= 2100):
        raise InputError(f"years: need FIRST-LAST within 2000..2100, got {years[0]}-{years[1]}")
    known_cats = categories()
    for name, _ in CATEGORIES:
        if name not in known_cats:  # pragma: no cover - guards an edit of categories.toml
            raise InputError(f"category {name!r} of the synthesis is not in categories.toml")

    lon, lat = bus_lonlat(network)
    lv_any = (network.bus_vn_kv < 1.0) & np.isfinite(lon) & np.isfinite(lat)
    cand = lv_any & network.live.bus
    if not cand.any():
        raise InputError(
            f"network {network.name} has no LV buses with coordinates: synth demand places "
            "customers by lon/lat around them"
            + (f" ({network.coordinates_note})" if network.coordinates_note else "")
        )
    rows_all = np.flatnonzero(lv_any)
    rows_c = np.flatnonzero(cand)
    weight = 1.0 + _load_kw(network)[rows_c]
    weight /= weight.sum()

    rng = np.random.Generator(np.random.PCG64(seed))
    n_clusters = max(1, round(count / CLUSTER_MEAN))
    n_far = 0
    if n_clusters >= 2 and far_share > 0:
        n_far = min(n_clusters - 1, max(1, round(far_share * n_clusters)))
    far = np.zeros(n_clusters, bool)
    far[rng.choice(n_clusters, size=n_far, replace=False)] = True
    sizes = 1 + rng.multinomial(count - n_clusters, np.full(n_clusters, 1.0 / n_clusters))
    reach_m = criteria.supply_radius_m[cls] / criteria.detour_factor  # straight-line reach
    spread_m = 0.95 * reach_m  # a far cluster is as compact as a near one
    clear_m = max(criteria.supply_radius_m.values()) + FAR_MARGIN_M + spread_m
    c_lon = float(np.mean(lon[rows_all]))
    c_lat = float(np.mean(lat[rows_all]))

    names = [c for c, _ in CATEGORIES]
    shares = np.array([s for _, s in CATEGORIES])
    width = max(4, len(str(count)))
    out: list[dict[str, str]] = []
    far_ids: list[str] = []
    nearest_m = _Nearest(lon[rows_all], lat[rows_all])
    for k in range(n_clusters):
        centre = int(rng.choice(rows_c, p=weight))
        x0, y0 = float(lon[centre]), float(lat[centre])
        if far[k]:
            x0, y0 = _far_centre(x0, y0, c_lon, c_lat, clear_m, rng, nearest_m)
            radius = spread_m
        else:
            radius = 0.95 * reach_m
        n = int(sizes[k])
        r = radius * np.sqrt(rng.random(n))
        theta = rng.random(n) * 2 * math.pi
        dx, dy = r * np.cos(theta), r * np.sin(theta)
        px = x0 + dx / (M_PER_DEG_LAT * math.cos(math.radians(y0)))
        py = y0 + dy / M_PER_DEG_LAT
        u = rng.random(n)
        kw = np.clip(
            np.round((KW_MIN + (KW_MAX - KW_MIN) * u**3) / KW_STEP) * KW_STEP, KW_MIN, KW_MAX
        )
        cat = rng.choice(len(names), size=n, p=shares)
        yr = None if years is None else rng.integers(years[0], years[1] + 1, size=n)
        for i in range(n):
            ident = f"D{len(out) + 1:0{width}d}"
            row = {
                "id": ident,
                "kw": f"{kw[i]:g}",
                "category": names[int(cat[i])],
                "lon": f"{px[i]:.{COORD_DECIMALS}f}",
                "lat": f"{py[i]:.{COORD_DECIMALS}f}",
            }
            if yr is not None:
                row["year"] = str(int(yr[i]))
            if area_class is not None:
                row["area_class"] = cls
            if far[k]:
                far_ids.append(ident)
            out.append(row)
    if far_ids:  # the promise of the docstring, checked on the written (rounded) coordinates
        is_far = set(far_ids)
        fx = np.array([float(r["lon"]) for r in out if r["id"] in is_far])
        fy = np.array([float(r["lat"]) for r in out if r["id"] in is_far])
        nearest = min(nearest_m(x, y) for x, y in zip(fx, fy, strict=True))
        if nearest <= max(criteria.supply_radius_m.values()):  # pragma: no cover
            raise AssertionError(f"far demand only {nearest:.0f} m from an LV bus")
    columns: tuple[str, ...] = ("id", "kw", "category", "lon", "lat")
    columns += ("year",) if years is not None else ()
    columns += ("area_class",) if area_class is not None else ()
    return SynthDemand(tuple(out), columns, n_clusters, n_far, tuple(far_ids))


def write_synth_demand(demand: SynthDemand, out: str | Path) -> None:
    from lvplan.io.atomic import write_output_file

    write_output_file(out, demand.to_csv())


def _load_kw(network: Network) -> np.ndarray:
    """Existing in-service load (kW) at each bus, by bus row."""
    load = network.pp.load
    out = np.zeros(len(network.pp.bus))
    if len(load) == 0:
        return out
    on = (
        load.in_service.to_numpy(bool) if "in_service" in load.columns else np.ones(len(load), bool)
    )
    scale = load.scaling.to_numpy(float) if "scaling" in load.columns else np.ones(len(load))
    kw = np.nan_to_num(load.p_mw.to_numpy(float) * scale * 1000.0)
    rows = network.bus_pos.get_indexer(load.bus.to_numpy())
    ok = on & (rows >= 0) & (kw > 0)
    np.add.at(out, rows[ok], kw[ok])
    return out


class _Nearest:
    """The great-circle distance (m) from a point to the nearest of fixed (lon, lat) points:
    a k-d tree on unit vectors finds it (the chord grows with the great-circle distance, so
    the nearest is the same), then haversine measures it, as ``distance_m`` over all of them
    would (one query instead of a pass over a million buses)."""

    def __init__(self, lon: np.ndarray, lat: np.ndarray):
        from scipy.spatial import cKDTree

        self.lon, self.lat = lon, lat
        self.tree = cKDTree(_unit(lon, lat))

    def __call__(self, x: float, y: float) -> float:
        from lvplan.locate import distance_m

        _d, j = self.tree.query(_unit(np.array([x]), np.array([y]))[0])
        return float(distance_m(x, y, self.lon[int(j)], self.lat[int(j)]))


def _unit(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    lo, la = np.radians(lon), np.radians(lat)
    return np.column_stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)])


def _far_centre(
    x0: float,
    y0: float,
    c_lon: float,
    c_lat: float,
    clear_m: float,
    rng: np.random.Generator,
    nearest_m: _Nearest,
) -> tuple[float, float]:
    """A point at least ``clear_m`` from every LV bus: from (x0, y0), outward from the
    centroid (c_lon, c_lat) with a random turn of up to ±60°, in steps of ``clear_m / 2``."""
    kx = M_PER_DEG_LAT * math.cos(math.radians(y0))
    vx, vy = (x0 - c_lon) * kx, (y0 - c_lat) * M_PER_DEG_LAT
    base = math.atan2(vy, vx) if math.hypot(vx, vy) > 1.0 else rng.random() * 2 * math.pi
    ang = base + (rng.random() - 0.5) * (2 * math.pi / 3)
    ux, uy = math.cos(ang), math.sin(ang)
    step = clear_m / 2
    d = clear_m
    for _ in range(2000):  # up to 1000 x clear_m: far beyond any city
        x, y = x0 + ux * d / kx, y0 + uy * d / M_PER_DEG_LAT
        if nearest_m(x, y) >= clear_m:
            return x, y
        d += step
    raise InputError("synth demand: found no place beyond every supply radius")  # pragma: no cover
