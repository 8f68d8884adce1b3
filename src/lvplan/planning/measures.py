"""The measures catalogue: what the optimiser may do and what it costs (``measures.toml``).

Each measure kind has one entry (the transformer swap one per target rating), each with a
``source`` and a ``status`` (V verified / U assumption). Cable costs per km live in one place,
the equipment catalogue (``model/catalogue.toml``): cable measures name its cable types. The
optimiser asks :class:`Measures` for every cost (``swap_cost_cny``, ``parallel_cost_cny``,
``new_substation_cost_cny``, ``cable_cost_cny``, ``service_cable_cost_cny``).

An override file (``load_measures(path)``) has the same layout; each table it gives replaces the
built-in entry of that name whole (figures come with their own source), and each
``[[transformer_swap]]`` replaces (or adds) the rating it names. It is validated strictly: a bad
entry raises InputError with one line ``FILE: entry: field: message``.
"""

from __future__ import annotations

import math
import tomllib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

from lvplan.changes import spec
from lvplan.errors import InputError
from lvplan.io.textfile import read_text_bounded
from lvplan.numbers import shown

BUILTIN = "lvplan/planning/measures.toml"
#: the most one catalogue figure may be (CNY): 1e308 made a plan whose summary could not be
#: written (its total inf), 1e25 a plan of 1.3e26 CNY; no single measure costs a trillion
MAX_ENTRY_CNY = 1e12
MAX_SITE_UNITS = spec.MAX_SITE_UNITS  # (a site's units: changes/spec.py)
STATUSES = ("V", "U")


class MeasureKind(StrEnum):
    TRANSFORMER_SWAP = "transformer_swap"
    TRANSFORMER_PARALLEL = "transformer_parallel"
    NEW_SUBSTATION = "new_substation"
    LV_CABLE_REPLACE = "lv_cable_replace"
    LV_CABLE_PARALLEL = "lv_cable_parallel"
    MV_CABLE_REPLACE = "mv_cable_replace"
    MV_CABLE_PARALLEL = "mv_cable_parallel"
    TRANSFER = "transfer"
    SERVICE_CABLE = "service_cable"
    MV_TIE_NEW = "mv_tie_new"
    TRANSFORMER_MOVE = "transformer_move"
    TRANSFORMER_TAP = "transformer_tap"


#: Measures priced as catalogue cable per km plus a fixed part.
CABLE_KINDS = (
    MeasureKind.LV_CABLE_REPLACE,
    MeasureKind.LV_CABLE_PARALLEL,
    MeasureKind.MV_CABLE_REPLACE,
    MeasureKind.MV_CABLE_PARALLEL,
    MeasureKind.TRANSFER,
    MeasureKind.SERVICE_CABLE,
    MeasureKind.MV_TIE_NEW,
    MeasureKind.TRANSFORMER_MOVE,
)
#: Cable measures on 10 kV feeders (their cables are MV types of the catalogue).
MV_CABLE_KINDS = (MeasureKind.MV_CABLE_REPLACE, MeasureKind.MV_CABLE_PARALLEL)
#: ... and on LV feeders.
LV_CABLE_KINDS = (MeasureKind.LV_CABLE_REPLACE, MeasureKind.LV_CABLE_PARALLEL)
#: The measures that restore N-1 by changing the 10 kV topology (:mod:`lvplan.planning.n1measures`):
#: a new normally-open tie between two feeders, and a transformer moved to another feeder.
#: Neither reinforces an existing line or unit: their ``Upgrade.element`` is the tie's bus in
#: the cut-off part and the moved unit.
N1_KINDS = (MeasureKind.MV_TIE_NEW, MeasureKind.TRANSFORMER_MOVE)
#: The measures that reinforce an existing transformer (a larger unit, or one beside it).
TRAFO_KINDS = (MeasureKind.TRANSFORMER_SWAP, MeasureKind.TRANSFORMER_PARALLEL)
#: Every measure that reinforces an existing line.
LINE_KINDS = (
    MeasureKind.LV_CABLE_REPLACE,
    MeasureKind.LV_CABLE_PARALLEL,
    MeasureKind.MV_CABLE_REPLACE,
    MeasureKind.MV_CABLE_PARALLEL,
)

#: Fields of each entry and their type: "kva" positive integer, "cny" non-negative number,
#: "kva_list" list of ratings, "mv_cable" / "lv_cables" / "mv_cables" catalogue cable names,
#: "text" non-empty.
_SCHEMA: dict[str, dict[str, str]] = {
    MeasureKind.TRANSFORMER_SWAP: {"to_kva": "kva", "cost_cny": "cny"},
    MeasureKind.TRANSFORMER_PARALLEL: {"ratings_kva": "kva_list", "extra_cny": "cny"},
    MeasureKind.TRANSFORMER_TAP: {"cost_cny": "cny"},
    MeasureKind.NEW_SUBSTATION: {
        "rated_kva": "kva",
        "cost_cny": "cny",
        "tie_cable": "mv_cable",
        "units_max": "units?",
    },
    **{
        k: {
            "cables": "mv_cables" if k in MV_CABLE_KINDS + N1_KINDS else "lv_cables",
            "fixed_cny": "cny",
        }
        for k in CABLE_KINDS
    },
}
for _fields in _SCHEMA.values():
    _fields.update(source="text", status="status")


@dataclass(frozen=True)
class SwapCost:
    to_kva: int
    cost_cny: float
    source: str
    status: str


@dataclass(frozen=True)
class ParallelTransformer:
    ratings_kva: tuple[int, ...]
    extra_cny: float
    source: str
    status: str


@dataclass(frozen=True)
class TapChange:
    """An existing unit's off-load tap moved (the check of a plan's years: a light year's
    voltage over its maximum, :mod:`lvplan.planning.year_check`)."""

    cost_cny: float
    source: str
    status: str


@dataclass(frozen=True)
class NewSubstation:
    rated_kva: int
    cost_cny: float
    #: the tie cables, by preference: a site's tie is the first rated for its 10 kV bus's
    #: network (:meth:`Measures.tie_cable_for`); in TOML a name or a list
    tie_cable: tuple[str, ...]
    source: str
    status: str
    #: the most units (of ``rated_kva``, each at ``cost_cny``) a site may hold side by side on
    #: its one tie (optional in TOML: 1, a single unit per site, when an entry leaves it out)
    units_max: int = 1


@dataclass(frozen=True)
class CableMeasure:
    kind: MeasureKind
    cables: tuple[str, ...]
    fixed_cny: float
    source: str
    status: str


@dataclass(frozen=True)
class Measures:
    """The costed catalogue. ``cable_cost_cny_per_km`` is read from ``model/catalogue.toml``."""

    swaps: tuple[SwapCost, ...]  # ascending to_kva
    parallel: ParallelTransformer
    new_substation: NewSubstation
    cable_measures: tuple[CableMeasure, ...]
    cable_cost_cny_per_km: tuple[tuple[str, float], ...]
    source: str  # BUILTIN, or "BUILTIN + FILE"
    tap: TapChange = TapChange(3000.0, "built-in default", "U")

    @property
    def ladder_kva(self) -> tuple[int, ...]:
        return tuple(s.to_kva for s in self.swaps)

    def swap_cost_cny(self, to_kva: int) -> float:
        """Replacing a transformer by one of ``to_kva`` (whatever it replaces)."""
        for s in self.swaps:
            if s.to_kva == to_kva:
                return s.cost_cny
        ladder = ", ".join(map(str, self.ladder_kva))
        raise InputError(f"transformer_swap: no cost for {to_kva!r} kVA; ladder: {ladder}")

    def parallel_cost_cny(self, rated_kva: int) -> float:
        """A second transformer of ``rated_kva`` in the same room."""
        if rated_kva not in self.parallel.ratings_kva:
            known = ", ".join(map(str, self.parallel.ratings_kva))
            raise InputError(
                f"transformer_parallel: {rated_kva!r} kVA not allowed; allowed: {known}"
            )
        return self.swap_cost_cny(rated_kva) + self.parallel.extra_cny

    def tie_cable_for(self, vn_kv: float) -> str | None:
        """The tie cable of a new substation on a network of nominal ``vn_kv``: the first of
        ``tie_cable`` rated for it; None: none is (no site is offered there)."""
        from lvplan.model.catalogue import rated_class

        rated = set(rated_class(self.new_substation.tie_cable, vn_kv))
        return next((c for c in self.new_substation.tie_cable if c in rated), None)

    def new_substation_cost_cny(
        self, tie_km: float, cable: str | None = None, units: int = 1
    ) -> float:
        """A new box substation of ``units`` units side by side, turnkey, with ``tie_km`` of
        10 kV tie ``cable`` (the first tie cable unless named)."""
        km = _length("tie_km", tie_km)
        tie = self.new_substation.tie_cable[0] if cable is None else cable
        if tie not in self.new_substation.tie_cable:
            known = ", ".join(self.new_substation.tie_cable)
            raise InputError(f"new_substation: tie cable {tie!r} not allowed; allowed: {known}")
        return units * self.new_substation.cost_cny + km * self._per_km(tie)

    def cable_measure(self, kind: MeasureKind) -> CableMeasure:
        for m in self.cable_measures:
            if m.kind == kind:
                return m
        raise InputError(f"{kind}: not a cable measure; cable measures: {', '.join(CABLE_KINDS)}")

    def cable_cost_cny(self, kind: MeasureKind, cable: str, length_km: float) -> float:
        """A cable measure (replace, parallel, transfer, service): fixed part plus the
        catalogue's installed cost per km of ``cable`` times ``length_km``."""
        m = self.cable_measure(kind)
        if cable not in m.cables:
            raise InputError(f"{kind}: cable {cable!r} not allowed; allowed: {', '.join(m.cables)}")
        return m.fixed_cny + _length("length_km", length_km) * self._per_km(cable)

    def service_cable_cost_cny(self, cable: str, length_m: float) -> float:
        return self.cable_cost_cny(
            MeasureKind.SERVICE_CABLE, cable, _length("length_m", length_m) / 1000.0
        )

    def _per_km(self, cable: str) -> float:
        return dict(self.cable_cost_cny_per_km)[cable]

    def to_dict(self) -> dict[str, Any]:
        def entry(obj: Any) -> dict[str, Any]:
            out = {k: getattr(obj, k) for k in obj.__dataclass_fields__}
            return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

        d: dict[str, Any] = {
            "source": self.source,
            "currency": "CNY",
            MeasureKind.TRANSFORMER_SWAP.value: [entry(s) for s in self.swaps],
            MeasureKind.TRANSFORMER_PARALLEL.value: entry(self.parallel),
            MeasureKind.NEW_SUBSTATION.value: entry(self.new_substation),
            MeasureKind.TRANSFORMER_TAP.value: entry(self.tap),
        }
        for m in self.cable_measures:
            e = entry(m)
            e["kind"] = str(e["kind"])
            d[m.kind.value] = e
        d["cable_cost_cny_per_km"] = {
            "source": "lvplan/model/catalogue.toml",
            **dict(self.cable_cost_cny_per_km),
        }
        return d


def tap_cost_cny(measures: Measures | None) -> float:
    """An off-load tap change's cost, from ``measures`` (the built-in catalogue's if None)."""
    return (measures if measures is not None else load_measures()).tap.cost_cny


def load_measures(path: str | Path | None = None) -> Measures:
    """The built-in catalogue, with the entries of the override file ``path`` (if given)."""
    from lvplan.model.catalogue import cable_types

    cables = cable_types()
    text = resources.files("lvplan.planning").joinpath("measures.toml").read_text(encoding="utf-8")
    base = _validated(tomllib.loads(text), BUILTIN, cables, complete=True)
    source = name = BUILTIN
    if path is not None:
        name = str(path)
        over = _validated(_read_toml(Path(path)), name, cables, complete=False)
        if not over:  # an empty file, or the wrong one: planned with the built-in prices unasked
            raise InputError(
                f"{name}: no measures (an override names at least one of: {', '.join(_SCHEMA)})"
            )
        swaps = {e["to_kva"]: e for e in base[MeasureKind.TRANSFORMER_SWAP]}
        swaps.update({e["to_kva"]: e for e in over.pop(MeasureKind.TRANSFORMER_SWAP, [])})
        base.update(over)
        base[MeasureKind.TRANSFORMER_SWAP] = list(swaps.values())
        source = f"{BUILTIN} + {name}"
    priced = {e["to_kva"] for e in base[MeasureKind.TRANSFORMER_SWAP]}
    for r in base[MeasureKind.TRANSFORMER_PARALLEL]["ratings_kva"]:
        if r not in priced:
            raise InputError(
                f"{name}: transformer_parallel: ratings_kva: {r} kVA has no transformer_swap "
                "cost (the parallel unit is priced from it)"
            )
    return _build(base, source, cables)


#: a measures catalogue is a few kB; a device or endless stream is refused, not read to the end
_MAX_TOML_BYTES = 16 * 1024 * 1024


def _read_toml(p: Path) -> dict[str, Any]:
    text = read_text_bounded(p, "a measures TOML file", _MAX_TOML_BYTES)
    try:
        return tomllib.loads(text)
    except ValueError as exc:  # (TOMLDecodeError; and an integer of over 4300 digits)
        raise InputError(f"{p}: not a valid TOML file ({exc})") from None
    except RecursionError:
        raise InputError(f"{p}: nested too deeply to read") from None


def _validated(
    raw: dict[str, Any], name: str, cables: dict[str, Any], *, complete: bool
) -> dict[str, Any]:
    """``raw`` checked against the schema (InputError ``NAME: entry: field: message``)."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in _SCHEMA:
            raise InputError(f"{name}: {key}: unknown measure (known: {', '.join(_SCHEMA)})")
        if key == MeasureKind.TRANSFORMER_SWAP:
            if not isinstance(value, list) or not value:  # ([] overrode nothing, silently)
                raise InputError(f"{name}: {key}: must be an array of tables ([[{key}]])")
            out[key] = [_entry(e, f"{key}[{i}]", name, key, cables) for i, e in enumerate(value)]
            seen: set[int] = set()  # (a set: kvas.count in a loop took minutes on 150,000)
            for e in out[key]:
                if e["to_kva"] in seen:
                    raise InputError(f"{name}: {key}: to_kva: {e['to_kva']} kVA appears twice")
                seen.add(e["to_kva"])
        else:
            out[key] = _entry(value, key, name, key, cables)
    if complete:
        for key in _SCHEMA:
            if key not in out:
                raise InputError(f"{name}: {key}: missing measure")
    return out


def _entry(e: Any, where: str, name: str, key: str, cables: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(e, dict):
        raise InputError(f"{name}: {where}: must be a table")
    schema = _SCHEMA[key]
    for f in e:
        if f not in schema:
            raise InputError(f"{name}: {where}: {f}: unknown field (known: {', '.join(schema)})")
    out: dict[str, Any] = {}
    for f, kind in schema.items():
        if f not in e and kind.endswith("?"):  # (optional: the dataclass's default)
            continue
        if f not in e:
            why = (
                " (every entry needs source and status V or U)"
                if kind in ("text", "status")
                else ""
            )
            raise InputError(f"{name}: {where}: {f}: missing{why}")
        try:
            out[f] = _value(e[f], kind, cables)
        except InputError as exc:
            raise InputError(f"{name}: {where}: {f}: {exc}") from None
    return out


def _value(v: Any, kind: str, cables: dict[str, Any]) -> Any:
    if kind == "cny":
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise InputError(f"must be a number of CNY, got {shown(v)}")
        # (ints are compared as ints: one of 400 digits is past a float, and math.isfinite
        # raised OverflowError, a traceback)
        if (isinstance(v, float) and not math.isfinite(v)) or v < 0:
            raise InputError(f"must be a finite, non-negative number of CNY, got {shown(v)}")
        if v > MAX_ENTRY_CNY:
            raise InputError(
                f"must be at most {MAX_ENTRY_CNY:.0e} CNY (one measure; a city's plan costs a few "
                "billion, and sums of larger figures lose their precision or overflow), "
                f"got {shown(v)}"
            )
        return float(v)
    if kind == "kva":
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise InputError(f"must be a positive whole number of kVA, got {shown(v)}")
        from lvplan.model.catalogue import trafo_types

        known = trafo_types()
        if v not in known:
            ratings = ", ".join(map(str, sorted(known)))
            raise InputError(
                f"{shown(v)} kVA is not a transformer of the equipment catalogue "
                f"(model/catalogue.toml: {ratings} kVA)"
            )
        return v
    if kind == "kva_list":
        if not isinstance(v, list) or not v:
            raise InputError(f"must be a non-empty list of kVA ratings, got {shown(v)}")
        out = tuple(_value(x, "kva", cables) for x in v)
        _once(out, " kVA")
        return out
    if kind in ("mv_cable", "lv_cables", "mv_cables"):
        names = [v] if kind == "mv_cable" and isinstance(v, str) else v
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise InputError(
                f"must be {'a name or ' if kind == 'mv_cable' else ''}a list of catalogue "
                f"cable types, got {shown(v)}"
            )
        want = "lv" if kind == "lv_cables" else "mv"
        _once(names, "")  # (twice the same cable: the same measure offered twice)
        for n in names:
            if n not in cables:
                raise InputError(f"{n!r} is not in the cable catalogue (model/catalogue.toml)")
            if cables[n].voltage != want:
                raise InputError(
                    f"{n!r} is a {cables[n].voltage.upper()} cable, need {want.upper()}"
                )
        return tuple(names)
    if kind == "units?":
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_SITE_UNITS:
            raise InputError(
                f"must be a whole number of units from 1 to {MAX_SITE_UNITS}, got {shown(v)}"
            )
        return v
    if kind == "text":
        if not isinstance(v, str) or not v.strip():
            raise InputError("must be a non-empty text")
        return v
    if kind == "status":
        if v not in STATUSES:
            raise InputError(f"must be V (verified) or U (assumption), got {shown(v)}")
        return v
    raise AssertionError(kind)  # pragma: no cover


def _once(items: Sequence[Any], unit: str) -> None:
    """One line when a list names an item more than once (each item named, at most 5; the list
    is not echoed: a catalogue's list of 200,000 ratings took minutes to check and to show)."""
    twice = sorted((x for x, n in Counter(items).items() if n > 1), key=str)
    if twice:
        named = ", ".join(f"{x!r}" if isinstance(x, str) else str(x) for x in twice[:5])
        more = f" and {len(twice) - 5} more" if len(twice) > 5 else ""
        raise InputError(f"lists {named}{more}{unit} more than once")


def _build(d: dict[str, Any], source: str, cables: dict[str, Any]) -> Measures:
    used = sorted(
        {c for k in CABLE_KINDS for c in d[k]["cables"]}
        | set(d[MeasureKind.NEW_SUBSTATION]["tie_cable"])
    )
    return Measures(
        swaps=tuple(
            sorted((SwapCost(**e) for e in d[MeasureKind.TRANSFORMER_SWAP]), key=lambda s: s.to_kva)
        ),
        parallel=ParallelTransformer(**d[MeasureKind.TRANSFORMER_PARALLEL]),
        new_substation=NewSubstation(**d[MeasureKind.NEW_SUBSTATION]),
        tap=TapChange(**d[MeasureKind.TRANSFORMER_TAP]),
        cable_measures=tuple(CableMeasure(kind=k, **d[k]) for k in CABLE_KINDS),
        cable_cost_cny_per_km=tuple((c, float(cables[c].cost_cny_per_km)) for c in used),
        source=source,
    )


def _length(field: str, x: Any) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x) or x < 0:
        raise InputError(f"{field}: must be a finite, non-negative length, got {x!r}")
    return float(x)
