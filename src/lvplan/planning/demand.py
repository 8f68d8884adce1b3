"""The new demand a reinforcement plan must serve: a CSV (read a line at a time, within the limits
below) or a DataFrame, validated.

Columns (header on line 1, any order)::

    id          required, the alphabet of application ids (:func:`lvplan.register.fields.check_id`)
                without `;` (plan.csv joins a measure's demands by it)
    kw          required, declared equipment capacity, 0 < kW <= 100000
    category    customer category (demand factor); empty: the profile's default category
    bus         connection bus, pandapower index or unique name (``Network.resolve_bus``), LV
    lon, lat    WGS84 degrees, instead of bus
    year        year the demand arrives, 2000..2100
    area_class  supply area class (A+, A, B, C, D, E: the profile's ``supply_radius_m``);
                empty: the profile's default

Each row needs ``bus`` or both ``lon`` and ``lat``. When a row gives both, **the bus wins**: the
demand is at that bus, and its ``lon``/``lat`` are the bus's coordinates when the network has
them (the given lon/lat must still be valid numbers, and are kept only for a bus without
coordinates). But a bus and lon/lat more than :data:`BUS_LONLAT_AGREE_M` apart (or the row's
supply radius, if larger) are refused: one of them is wrong (a row at bus 16 of sz-futian with
lon/lat 0, 0 was planned at bus 16 without a word; found by a hostile probe). Design kW is
``Category.design_kw`` (the one the check uses); ``hv_required`` is the check's own rule,
declared kW above the profile's ``lv_policy_max_kw``.

The whole input is validated before anything is returned: the first bad row raises
:class:`~lvplan.errors.InputError` with one line ``FILE:LINE: field: message`` (a DataFrame
is named ``<DataFrame>`` and its row ``i`` is line ``i + 2``, as if written with a header).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import stat
from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lvplan.criteria import Criteria, category, load_criteria
from lvplan.decision import MIN_KW
from lvplan.errors import InputError
from lvplan.io.csvread import dict_rows
from lvplan.io.textfile import text_lines
from lvplan.numbers import finite, read_float, read_int, shown
from lvplan.register.fields import check_id

#: A row that gives both a bus and lon/lat: the two may lie this far apart (metres, straight
#: line; or the row's supply radius, if larger), a customer's site and the bus it connects at
BUS_LONLAT_AGREE_M = 1000.0

if TYPE_CHECKING:
    import pandas as pd

    from lvplan.model.network import Network

COLUMNS = ("id", "kw", "category", "bus", "lon", "lat", "year", "area_class")
#: plan.csv lists the demands a measure was built for joined by this, so an id may not hold it
#: (an id may hold spaces: "Shop 1"; joined by a space, "Shop 1" and "Shop" + "1" read the same)
ID_SEPARATOR = ";"


def check_demand_id(value: str) -> str:
    """A demand's id (or a land parcel's, which becomes its demand's): an application id
    (:func:`lvplan.register.fields.check_id`) without :data:`ID_SEPARATOR`; else
    ``InputError("id: ...")``."""
    ident = check_id(value)
    if ID_SEPARATOR in ident:
        raise InputError(
            f"id: must not contain '{ID_SEPARATOR}' (plan.csv lists a measure's demands "
            f"separated by it), got {ident!r}"
        )
    return ident


#: Declared kW above this is taken for a typo (W instead of kW), not a customer: 100 MW.
MAX_KW = 100_000.0
YEAR_MIN, YEAR_MAX = 2000, 2100
FRAME_NAME = "<DataFrame>"
#: The limits of a demand CSV file, each a one-line error naming it. The file is read a line at a
#: time and each row validated as it comes (before, it was read whole, then decoded, then copied
#: into a ``StringIO``: 1.5 GB of memory for 200 MB of junk, read to the end before its first
#: line was judged). A city's 20,000 demands are 20,001 lines and about 1.5 MB; a demand row is
#: well under 200 characters. A larger regular file is refused unread; a device or an endless
#: stream (``--demand /dev/zero``) is stopped at the first limit it passes.
MAX_BYTES = 256 * 1024 * 1024
MAX_LINES = 1_000_000
MAX_LINE_CHARS = 65_536
WHAT = "a demand CSV file"


@dataclass(frozen=True)
class Demand:
    """One new demand. ``bus`` is a pandapower bus index (None: located by lon/lat only)."""

    id: str
    declared_kw: float
    design_kw: float
    category: str
    demand_factor: float
    bus: int | None
    lon: float | None
    lat: float | None
    year: int | None
    area_class: str
    supply_radius_m: float
    hv_required: bool
    line: int  # where it came from (CSV line; DataFrame row + 2)
    #: whether the file named the area class (else the profile's default_area_class gave it):
    #: N-1 is judged only for a named class, or the profile's n1_default_area_class, as in check
    area_class_given: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DemandSet:
    """The validated demand of one file, in file order, with the profile it was read under."""

    demands: tuple[Demand, ...]
    source: str
    criteria_profile: str

    def __len__(self) -> int:
        return len(self.demands)

    def __iter__(self) -> Iterator[Demand]:
        return iter(self.demands)

    @property
    def total_design_kw(self) -> float:
        return sum(d.design_kw for d in self.demands)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "criteria_profile": self.criteria_profile,
            "demands": [d.to_dict() for d in self.demands],
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per demand, indexed by id; ``bus`` and ``year`` are nullable integers."""
        import pandas as pd

        cols = [f for f in Demand.__dataclass_fields__]
        df = pd.DataFrame([d.to_dict() for d in self.demands], columns=cols)
        for c in ("bus", "year"):
            df[c] = df[c].astype("Int64")
        for c in ("lon", "lat"):
            df[c] = df[c].astype(float)
        return df.set_index("id", drop=False).rename_axis(None)


def read_demand(
    source: str | Path | pd.DataFrame,
    network: Network,
    criteria: Criteria | str | None = None,
) -> DemandSet:
    """The demand of a CSV file or a DataFrame, validated against ``network`` and ``criteria``
    (default: profile ``cn``). Raises InputError ``FILE:LINE: field: message`` on the first
    bad input; never anything else for bad input."""
    crit = criteria if isinstance(criteria, Criteria) else load_criteria(criteria or "cn")
    if isinstance(source, str | Path):
        name = str(source)
        header, rows = _csv_rows(Path(source), _lines(Path(source)))
    elif _is_frame(source):
        name = FRAME_NAME
        header, rows = _frame_rows(source)
    else:
        raise InputError(
            f"demand: expected a CSV file name or a pandas DataFrame, got {type(source).__name__}"
        )
    try:
        _check_header(header)
    except InputError as exc:
        raise InputError(f"{name}:1: {exc}") from None
    reader = _RowReader(network, crit)
    out: list[Demand] = []
    seen: dict[str, int] = {}
    # (a broken CSV row is one line from io/csvread.py, named by the line it starts on)
    for line, row in rows:
        try:
            d = reader.demand(line, row)
            # (every id is in NFC, register.fields.check_id: é and e + U+0301, which look the
            # same in every table and map, are never two demands)
            if d.id in seen:
                raise InputError(f"id: {shown(d.id)} appears twice (first on line {seen[d.id]})")
        except InputError as exc:
            raise InputError(f"{name}:{line}: {exc}") from None
        seen[d.id] = line
        out.append(d)
    if not out:
        raise InputError(f"{name}: no demands (a header and no rows)")
    given = [d.year for d in out if d.year is not None]
    if given and len(given) < len(out):
        # a demand without a year in a file that gives years is there from the file's first
        # year: read so once, here, for every step and every group of a city alike (the plan
        # dated its measures by the dated demands alone, later than it needed them, and summed
        # their costs under a year "none": probe, 2026-12-07)
        first = min(given)
        out = [d if d.year is not None else dataclasses.replace(d, year=first) for d in out]
    # reinforced.json adds each demand as a load named by its id: an id that names a load the
    # network has would make two loads of one name there
    names = network.pp.load.name
    clash = names[names.isin(list(seen))]
    if len(clash):
        first = min(clash.tolist(), key=lambda n: seen[n])
        raise InputError(
            f"{name}:{seen[first]}: id: {shown(first)} is the name of a load the network has "
            "(reinforced.json names each demand's load by its id)"
        )
    return DemandSet(tuple(out), name, crit.profile)


# -- reading ---------------------------------------------------------------------------------------
_EXTRA = "\x00extra"


def _lines(p: Path) -> Generator[str, None, None]:
    return text_lines(
        p, WHAT, max_bytes=MAX_BYTES, max_line_chars=MAX_LINE_CHARS, max_lines=MAX_LINES
    )


def _csv_rows(
    p: Path, lines: Iterator[str]
) -> tuple[list[str], Iterable[tuple[int, Mapping[str, Any]]]]:
    first = next(lines, "")
    # a blank first line: the file is empty if every line is (else the blank header is refused)
    if not first.strip() and all(not line.strip() for line in lines):
        raise InputError(f"{p}: empty file (expected a header: id, kw, bus or lon, lat)")
    header, read = dict_rows(p, itertools.chain([first], lines), _EXTRA)
    width = len(header)

    def rows() -> Iterator[tuple[int, Mapping[str, Any]]]:
        for start, row in read:
            if row.get(_EXTRA):
                raise InputError(
                    f"{p}:{start}: row: {width + len(row[_EXTRA])} cells, "
                    f"more than the header's {width}"
                )
            yield start, row

    return header, rows()


def check_demand_file(source: str | Path) -> None:
    """Refuse a demand CSV file whose header is not a demand's (or that cannot be read, or is
    larger than its limits allow) before a network is loaded for it: the file's own error
    line, as :func:`read_demand` would give it, read no further than its header. A pipe or a
    device is left to :func:`read_demand` (it can be read once only)."""
    p = Path(source)
    try:
        if not p.is_dir() and not stat.S_ISREG(p.stat().st_mode):
            return
    except OSError:
        pass  # (the open below says why)
    lines = _lines(p)
    try:
        header, _ = _csv_rows(p, lines)
        try:
            _check_header(header)
        except InputError as exc:
            raise InputError(f"{source}:1: {exc}") from None  # as read_demand names it
    finally:
        lines.close()


def _is_frame(obj: Any) -> bool:
    import sys

    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(obj, pd.DataFrame)


def _frame_rows(df: Any) -> tuple[list[str], Iterable[tuple[int, Mapping[str, Any]]]]:
    header = [str(c) for c in df.columns]
    if len(set(header)) != len(header):
        dup = next(c for c in header if header.count(c) > 1)
        raise InputError(f"{FRAME_NAME}:1: {dup}: column appears twice")
    records = df.to_dict(orient="records")
    return header, ((i + 2, {str(k): v for k, v in r.items()}) for i, r in enumerate(records))


def _check_header(cols: list[str]) -> None:
    if not any(c in COLUMNS for c in cols):
        shown = ", ".join(c[:20] for c in cols[:3]) or "nothing"
        raise InputError(
            f"header: not a demand CSV: the first line must name the columns id, kw and bus "
            f"or lon, lat (found {shown})"
        )
    dup = [c for c in cols if cols.count(c) > 1]
    if dup:
        raise InputError(f"{dup[0]}: column appears twice")
    unknown = [c for c in cols if c not in COLUMNS]
    if unknown:
        many = "s" if len(unknown) > 1 else ""
        raise InputError(
            f"{', '.join(unknown)}: unknown column{many} (known: {', '.join(COLUMNS)})"
        )
    for c in ("id", "kw"):
        if c not in cols:
            raise InputError(f"{c}: missing column (needs id, kw and bus or lon, lat)")
    if "lon" in cols and "lat" not in cols:
        raise InputError("lat: missing column (lon needs lat)")
    if "lat" in cols and "lon" not in cols:
        raise InputError("lon: missing column (lat needs lon)")
    if "bus" not in cols and "lon" not in cols:
        raise InputError("bus: missing column: give bus or both lon and lat")


# -- one row ---------------------------------------------------------------------------------------
def _blank(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, str):
        return v.strip() == ""
    if isinstance(v, float) and math.isnan(v):  # a DataFrame's missing cell
        return True
    try:
        import pandas as pd

        return bool(v is pd.NA or v is pd.NaT)
    except ImportError:  # pragma: no cover
        return False


def _integer(field: str, v: Any) -> int:
    if isinstance(v, str):
        try:
            return read_int(v)
        except ValueError:
            pass
        # "2027.0", as a spreadsheet writes a number column, is read as a DataFrame's 2027.0
        # is (it was refused: probe, 2026-12-07); "2027.5" and "1e400" are not whole numbers
        try:
            x = read_float(v)
        except (ValueError, OverflowError):
            x = math.nan
        if not (math.isfinite(x) and x == int(x) and abs(x) < 1e15):
            raise InputError(f"{field}: must be a whole number, got {shown(v)}") from None
        return int(x)
    x = finite(field, v)
    if x != int(x):
        raise InputError(f"{field}: must be a whole number, got {shown(v)}")
    return int(x)


class _RowReader:
    """Validates rows against one network and profile (its bus positions are read once, by
    :attr:`Network.bus_lonlat`)."""

    def __init__(self, network: Network, criteria: Criteria):
        self.network = network
        self.crit = criteria
        self._positions: bool | None = None

    def bus_lonlat(self, bus: int) -> tuple[float | None, float | None]:
        lon, lat = self.network.bus_lonlat
        r = self.network.bus_row(bus)
        x, y = float(lon[r]), float(lat[r])
        return (x, y) if math.isfinite(x) and math.isfinite(y) else (None, None)

    def has_positions(self) -> bool:
        """Some supplied LV bus has coordinates (in degrees): a row by lon/lat can be placed."""
        if self._positions is None:
            net = self.network
            lon, lat = net.bus_lonlat
            lv = (net.bus_vn_kv < 1.0) & np.asarray(net.supplied_bus, bool)
            self._positions = bool((lv & np.isfinite(lon) & np.isfinite(lat)).any())
        return self._positions

    def demand(self, line: int, row: Mapping[str, Any]) -> Demand:
        cell = {k: (None if _blank(v) else v) for k, v in row.items()}
        raw_id = cell.get("id")
        if raw_id is None:
            raise InputError("id: missing")
        ident = check_demand_id(raw_id.strip() if isinstance(raw_id, str) else str(raw_id))
        if cell.get("kw") is None:
            raise InputError("kw: missing")
        kw = finite("kw", cell["kw"])
        if kw < MIN_KW:
            raise InputError(f"kw: must be at least {MIN_KW:g} kW (1 W), got {shown(cell['kw'])}")
        if kw > MAX_KW:
            raise InputError(
                f"kw: {kw:.15g} kW is more than {MAX_KW:g} kW (declared capacity in kW, not W?)"
            )
        cat_name = cell.get("category")
        try:
            cat = category(
                self.crit.default_category if cat_name is None else str(cat_name).strip()
            )
        except InputError as exc:
            raise InputError(f"category: {exc}") from None
        lon = lat = None
        for k, lim in (("lon", 180.0), ("lat", 90.0)):
            if cell.get(k) is not None:
                x = finite(k, cell[k])
                if not -lim <= x <= lim:
                    raise InputError(f"{k}: must be within ±{lim:g} degrees, got {shown(cell[k])}")
                if k == "lon":
                    lon = x
                else:
                    lat = x
        bus: int | None = None
        both: tuple[float, float, float, float] | None = None  # (lon, lat) against the bus's
        if cell.get("bus") is not None:
            bus = self._bus(cell["bus"])
            blon, blat = self.bus_lonlat(bus)
            if blon is not None and blat is not None:
                if lon is not None and lat is not None:
                    both = (lon, lat, blon, blat)
                lon, lat = blon, blat
        elif lon is None or lat is None:
            missing = "lat" if lon is not None else "lon" if lat is not None else "bus"
            raise InputError(f"{missing}: missing: give bus or both lon and lat")
        elif not self.has_positions():
            # (before, the plan listed it as unservable: "no LV bus within the 150 m supply
            # radius", which says nothing of why)
            why = self.network.coordinates_note
            raise InputError(
                "lon/lat: the network's LV buses have no coordinates"
                + (f" ({why})" if why else "")
                + ", so no connection point can be found by position: give bus"
            )
        year = None
        if cell.get("year") is not None:
            year = _integer("year", cell["year"])
            if not YEAR_MIN <= year <= YEAR_MAX:
                raise InputError(f"year: must be within {YEAR_MIN}..{YEAR_MAX}, got {year}")
        given = cell.get("area_class") is not None
        cls = cell.get("area_class")
        cls = self.crit.default_area_class if cls is None else str(cls).strip()
        if cls not in self.crit.supply_radius_m:
            known = ", ".join(self.crit.supply_radius_m)
            raise InputError(f"area_class: unknown area class {shown(cls)}; known: {known}")
        if both is not None:  # a bus and lon/lat that disagree: one of them is wrong
            from lvplan.locate import distance_m

            far_m = max(self.crit.supply_radius_m[cls], BUS_LONLAT_AGREE_M)
            d_m = float(distance_m(*both))
            if d_m > far_m:
                raise InputError(
                    f"lon/lat: ({both[0]:g}, {both[1]:g}) is {d_m:,.0f} m from bus "
                    f"{shown(cell['bus'])} at ({both[2]:.5f}, {both[3]:.5f}), more than "
                    f"{far_m:,.0f} m: give bus or lon/lat, or make them agree"
                )
        return Demand(
            id=ident,
            declared_kw=kw,
            design_kw=cat.design_kw(kw),
            category=cat.name,
            demand_factor=cat.demand_factor,
            bus=bus,
            lon=lon,
            lat=lat,
            year=year,
            area_class=cls,
            supply_radius_m=self.crit.supply_radius_m[cls],
            hv_required=kw > self.crit.lv_policy_max_kw,
            line=line,
            area_class_given=given,
        )

    def _bus(self, v: Any) -> int:
        spec: int | str
        if isinstance(v, str):
            spec = v.strip()
        elif isinstance(v, bool):
            raise InputError(f"bus: must be a bus index or name, got {shown(v)}")
        else:
            spec = _integer("bus", v)
        try:
            b = self.network.resolve_bus(spec)
        except InputError as exc:
            raise InputError(f"bus: {exc}") from None
        if not self.network.is_lv(b):
            vn = float(self.network.pp.bus.at[b, "vn_kv"])
            raise InputError(f"bus: bus {b} is not an LV bus (vn_kv = {vn:g})")
        if not self.network.supplied_bus[self.network.bus_row(b)]:
            raise InputError(
                f"bus: bus {b} is not supplied (nothing feeds it: it lies behind an open switch "
                "or a transformer switched out, or is out of service); give a supplied bus, or "
                "lon/lat for the plan to find one or a new substation"
            )
        return b
