"""Demand from land parcels: the land-auction pipeline (土地招拍挂) turned into customers.

A parcels file (CSV, or GeoJSON with Point or Polygon features) holds one parcel a row::

    id              required, a demand id prefix (the id alphabet of the register)
    land_use        required, a key of the densities table (planning/densities.toml)
    floor_area_m2   required, > 0 (a parcel of nothing is a typo)
    year            required, the year the building is expected to be occupied, 2000..2100
    lon, lat        required in CSV, WGS84 degrees; in GeoJSON the geometry (a Point, or a
                    Polygon whose area centroid is used)

Each parcel becomes its peak design load (``w_per_m2`` x floor area) and is split into customers
as its land use says (:func:`customers`): tenancies of ``unit_m2`` each, or one customer for the
whole parcel. A customer's declared kW is its design kW divided by its category's demand factor
(the inverse of ``Category.design_kw``, so the check and the plan see the same design kW). Under
a policy limit a customer is served at 380 V when its declared kW is within the limit and its land
use is not always 10 kV (:func:`split_by_policy`); the 380 V customers, with their years, are the
demand file of ``lvplan plan`` (:func:`demand_frame`).

Bad input raises :class:`~lvplan.errors.InputError` with one line ``FILE:LINE: field: message``
(GeoJSON: ``FILE:feature N: field: message``).
"""

from __future__ import annotations

import io
import json
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lvplan.criteria import category as get_category
from lvplan.errors import InputError
from lvplan.io.csvread import dict_rows
from lvplan.io.textfile import read_text_bounded
from lvplan.numbers import finite
from lvplan.planning.demand import check_demand_id

if TYPE_CHECKING:
    import pandas as pd

DENSITIES = Path(__file__).with_name("densities.toml")
COLUMNS = ("id", "land_use", "floor_area_m2", "year", "lon", "lat")
SPLITS = ("units", "single")
CONNECTIONS = ("auto", "mv")
#: A parcel larger than this (1 km² of floor area) is taken for a typo.
MAX_FLOOR_M2 = 1_000_000.0
MAX_BYTES = 64 * 1024 * 1024
YEAR_MIN, YEAR_MAX = 2000, 2100


@dataclass(frozen=True)
class Density:
    """One land use's row of the densities table."""

    land_use: str
    w_per_m2: float
    category: str
    split: str
    unit_m2: float | None
    connection: str
    source: str
    status: str  # "V" verified, "U" assumed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Parcel:
    id: str
    land_use: str
    floor_area_m2: float
    year: int
    lon: float
    lat: float
    line: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Customer:
    """One customer of a parcel: its design and declared kW and whether its use is 10 kV only."""

    id: str
    parcel: str
    land_use: str
    category: str
    design_kw: float
    declared_kw: float
    year: int
    lon: float
    lat: float
    mv_only: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def at_380v(self, policy_kw: float) -> bool:
        """Served at 380 V under a policy limit of ``policy_kw`` declared kW."""
        return not self.mv_only and self.declared_kw <= policy_kw


def load_densities(path: str | Path | None = None) -> dict[str, Density]:
    """The densities table (default: the one shipped); raises InputError naming the entry."""
    p = Path(path) if path is not None else DENSITIES
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{p}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: not a TOML file ({exc})") from None
    out: dict[str, Density] = {}
    for name, e in raw.items():
        where = f"{p}: [{name}]"
        if not isinstance(e, dict):
            raise InputError(f"{where}: must be a table")
        known = {
            "w_per_m2",
            "category",
            "split",
            "unit_m2",
            "connection",
            "source",
            "status",
        }
        extra = sorted(set(e) - known)
        if extra:
            raise InputError(
                f"{where}: {extra[0]}: unknown key (known: {', '.join(sorted(known))})"
            )
        for k in ("w_per_m2", "category", "split", "connection", "source", "status"):
            if k not in e:
                raise InputError(f"{where}: {k}: missing")
        w = e["w_per_m2"]
        if isinstance(w, bool) or not isinstance(w, int | float) or not 0 < w < 10_000:
            raise InputError(f"{where}: w_per_m2: must be a number in (0, 10000), got {w!r}")
        try:
            get_category(str(e["category"]))
        except InputError as exc:
            raise InputError(f"{where}: category: {exc}") from None
        if e["split"] not in SPLITS:
            raise InputError(f"{where}: split: must be one of {', '.join(SPLITS)}")
        unit = e.get("unit_m2")
        bad_unit = isinstance(unit, bool) or not isinstance(unit, int | float) or not unit > 0
        if e["split"] == "units" and bad_unit:
            raise InputError(f"{where}: unit_m2: split = units needs a floor area > 0")
        if e["connection"] not in CONNECTIONS:
            raise InputError(f"{where}: connection: must be one of {', '.join(CONNECTIONS)}")
        if e["status"] not in ("V", "U"):
            raise InputError(f"{where}: status: must be V (verified) or U (assumed)")
        out[name] = Density(
            land_use=name,
            w_per_m2=float(w),
            category=str(e["category"]),
            split=str(e["split"]),
            unit_m2=float(unit) if unit is not None else None,
            connection=str(e["connection"]),
            source=str(e["source"]),
            status=str(e["status"]),
        )
    if not out:
        raise InputError(f"{p}: no land uses")
    return out


# -- reading ---------------------------------------------------------------------------------------
def read_parcels(path: str | Path, densities: dict[str, Density]) -> tuple[Parcel, ...]:
    """The validated parcels of a CSV or GeoJSON file (by its suffix: .geojson/.json)."""
    p = Path(path)
    text = read_text_bounded(p, "a parcels file", MAX_BYTES)
    if p.suffix.lower() in (".geojson", ".json"):
        rows = _geojson_rows(p, text)
    else:
        rows = _csv_rows(p, text)
    out: list[Parcel] = []
    seen: dict[str, str] = {}
    for where, row in rows:
        try:
            parcel = _parcel(row, densities, where)
            if parcel.id in seen:
                raise InputError(f"id: {parcel.id!r} appears twice (first at {seen[parcel.id]})")
        except InputError as exc:
            raise InputError(f"{p}:{where}: {exc}") from None
        seen[parcel.id] = where
        out.append(parcel)
    if not out:
        raise InputError(f"{p}: no parcels")
    return tuple(out)


def _csv_rows(p: Path, text: str) -> list[tuple[str, dict[str, Any]]]:
    if not text.strip():
        raise InputError(f"{p}: empty file (expected a header: {', '.join(COLUMNS)})")
    header, read = dict_rows(p, io.StringIO(text, newline=""), "\x00extra")
    unknown = [c for c in header if c not in COLUMNS]
    if unknown:
        raise InputError(f"{p}:1: {unknown[0]}: unknown column (known: {', '.join(COLUMNS)})")
    for c in COLUMNS:
        if c not in header:
            raise InputError(f"{p}:1: {c}: missing column (needs {', '.join(COLUMNS)})")
    out = []
    for line, row in read:
        if row.get("\x00extra"):
            raise InputError(f"{p}:{line}: row: more cells than the header")
        out.append((str(line), dict(row)))
    return out


def _geojson_rows(p: Path, text: str) -> list[tuple[str, dict[str, Any]]]:
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InputError(f"{p}: not a GeoJSON file ({exc})") from None
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise InputError(f"{p}: type: expected a GeoJSON FeatureCollection")
    feats = doc.get("features")
    if not isinstance(feats, list):
        raise InputError(f"{p}: features: expected a list")
    out = []
    for n, f in enumerate(feats, start=1):
        where = f"feature {n}"
        if not isinstance(f, dict) or not isinstance(f.get("properties"), dict):
            raise InputError(f"{p}:{where}: properties: expected an object")
        props = dict(f["properties"])
        unknown = [k for k in props if k not in COLUMNS[:4]]
        if unknown:
            raise InputError(
                f"{p}:{where}: {unknown[0]}: unknown property (known: {', '.join(COLUMNS[:4])})"
            )
        try:
            props["lon"], props["lat"] = _centroid(f.get("geometry"))
        except InputError as exc:
            raise InputError(f"{p}:{where}: geometry: {exc}") from None
        out.append((where, props))
    return out


def _centroid(geom: Any) -> tuple[float, float]:
    if not isinstance(geom, dict):
        raise InputError("expected a Point or Polygon")
    coords = geom.get("coordinates")
    if geom.get("type") == "Point":
        if not (isinstance(coords, list) and len(coords) >= 2):
            raise InputError("a Point needs [lon, lat]")
        return finite("lon", coords[0]), finite("lat", coords[1])
    if geom.get("type") == "Polygon":
        if not (isinstance(coords, list) and coords and isinstance(coords[0], list)):
            raise InputError("a Polygon needs a ring of [lon, lat] positions")
        ring = [
            (finite("lon", c[0]), finite("lat", c[1])) for c in coords[0] if isinstance(c, list)
        ]
        if len(ring) < 3:
            raise InputError("a Polygon ring needs at least 3 positions")
        a = cx = cy = 0.0
        for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1], strict=True):
            k = x0 * y1 - x1 * y0
            a += k
            cx += (x0 + x1) * k
            cy += (y0 + y1) * k
        if abs(a) < 1e-18:  # degenerate ring: the mean of its positions
            return sum(x for x, _ in ring) / len(ring), sum(y for _, y in ring) / len(ring)
        return cx / (3 * a), cy / (3 * a)
    raise InputError(f"expected a Point or Polygon, got {geom.get('type')!r}")


def _parcel(row: dict[str, Any], densities: dict[str, Density], where: str) -> Parcel:
    cell = {k: (v.strip() if isinstance(v, str) else v) for k, v in row.items()}
    for k in COLUMNS:
        if cell.get(k) is None or cell.get(k) == "":
            raise InputError(f"{k}: missing")
    ident = check_demand_id(str(cell["id"]))
    use = str(cell["land_use"])
    if use not in densities:
        raise InputError(
            f"land_use: no load density for {use!r} (known: {', '.join(sorted(densities))})"
        )
    area = finite("floor_area_m2", cell["floor_area_m2"])
    if not 0 < area <= MAX_FLOOR_M2:
        raise InputError(
            f"floor_area_m2: must be more than 0 and at most {MAX_FLOOR_M2:g} m², got {area:g}"
        )
    y = finite("year", cell["year"])
    if y != int(y) or not YEAR_MIN <= y <= YEAR_MAX:
        raise InputError(f"year: must be a whole year within {YEAR_MIN}..{YEAR_MAX}, got {y:g}")
    lon, lat = finite("lon", cell["lon"]), finite("lat", cell["lat"])
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise InputError(f"lon/lat: not WGS84 degrees ({lon:g}, {lat:g})")
    line = int(where) if where.isdigit() else 0
    return Parcel(ident, use, area, int(y), lon, lat, line)


# -- parcels -> customers -> demand ----------------------------------------------------------------
def customers(parcels: tuple[Parcel, ...], densities: dict[str, Density]) -> list[Customer]:
    """Every parcel's customers (see the module docstring), ids ``<parcel>-<k>``."""
    out: list[Customer] = []
    for p in parcels:
        d = densities[p.land_use]
        design_total = d.w_per_m2 * p.floor_area_m2 / 1000.0
        n = 1
        if d.split == "units" and d.unit_m2:
            n = max(1, round(p.floor_area_m2 / d.unit_m2))
        factor = get_category(d.category).demand_factor
        design = design_total / n
        declared = round(design / factor, 1)
        for k in range(n):
            out.append(
                Customer(
                    id=f"{p.id}-{k + 1}" if n > 1 else p.id,
                    parcel=p.id,
                    land_use=p.land_use,
                    category=d.category,
                    design_kw=round(design, 2),
                    declared_kw=declared,
                    year=p.year,
                    lon=p.lon,
                    lat=p.lat,
                    mv_only=d.connection == "mv",
                )
            )
    return out


def split_by_policy(
    custs: list[Customer], policy_kw: float
) -> tuple[list[Customer], list[Customer]]:
    """(served at 380 V, needing a 10 kV connection) under a policy limit of ``policy_kw``."""
    lv = [c for c in custs if c.at_380v(policy_kw)]
    mv = [c for c in custs if not c.at_380v(policy_kw)]
    return lv, mv


def demand_frame(custs: list[Customer]) -> pd.DataFrame:
    """The demand table of ``lvplan plan`` (columns of :mod:`lvplan.planning.demand`)."""
    import pandas as pd

    return pd.DataFrame(
        [
            {
                "id": c.id,
                "kw": c.declared_kw,
                "category": c.category,
                "lon": c.lon,
                "lat": c.lat,
                "year": c.year,
            }
            for c in custs
        ],
        columns=["id", "kw", "category", "lon", "lat", "year"],
    )
