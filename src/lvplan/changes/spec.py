"""The change kinds: typed, immutable, validated against a network with an error that names the
change (its position and kind) and the field.

A change names existing elements by pandapower index or unique name (``trafo = "T3 800 kVA
public transformer"`` or ``trafo = 2``); :meth:`Changes.resolve` turns every reference into an
index of the network at hand, checks every value (a rating on the ladder, a cable of the
catalogue of the right voltage, a site within reach of the MV bus, ...) and raises one
``InputError`` for the first problem, e.g. ``change 2 (replace_line): cable: unknown cable type``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from lvplan.errors import InputError

#: The standard 10/0.4 kV ladder (criteria.md): a replacement or new unit takes one of these.
TRAFO_LADDER_KVA = (200, 315, 400, 500, 630, 800, 1000, 1250)
#: How far a new substation's 10 kV tie may run (route metres): beyond it the site is out of
#: reach of that MV bus (U: a planning assumption, overridable per change by ``tie_length_m``).
MAX_TIE_LENGTH_M = 3000.0
#: Route length = straight-line distance x this factor, as for service cables (criteria).
DETOUR_FACTOR = 1.3
#: The most units a new substation holds side by side on its one tie (two box-type units of
#: 630 kVA, or a room of 2 x 630-1000 kVA, criteria.md): ``NewSubstation.units``.
MAX_SITE_UNITS = 2


@dataclass(frozen=True)
class Change:
    """One change. Subclasses name their kind; ``Changes`` holds an ordered tuple of them."""

    kind: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is not None:
                out[f.name] = v
        return out


@dataclass(frozen=True)
class AddLoad(Change):
    kind: ClassVar[str] = "add_load"
    bus: int | str
    kw: float
    kvar: float = 0.0
    name: str = "lvplan load"


@dataclass(frozen=True)
class ReplaceTransformer(Change):
    """The unit is swapped for a catalogue unit of ``rated_kva`` (impedance and losses from the
    catalogue; buses, voltages, vector group and tap settings kept). A row of ``parallel`` units
    becomes ``units`` units of ``rated_kva`` (one by default), at their full rating (``df`` 1):
    the two units of a ``parallel`` 2 row swapped for two larger ones are ``units`` 2."""

    kind: ClassVar[str] = "replace_transformer"
    trafo: int | str
    rated_kva: int
    units: int = 1


@dataclass(frozen=True)
class AddParallelTransformer(Change):
    """A second catalogue unit in the same room, between the same buses, same taps."""

    kind: ClassVar[str] = "add_parallel_transformer"
    trafo: int | str
    rated_kva: int


@dataclass(frozen=True)
class ReplaceLine(Change):
    """The section's cable is replaced by one catalogue cable (same route length; a double
    circuit or a derating factor the section had goes with the old cable)."""

    kind: ClassVar[str] = "replace_line"
    line: int | str
    cable: str


@dataclass(frozen=True)
class AddParallelLine(Change):
    """A catalogue cable laid beside the section, between the same buses."""

    kind: ClassVar[str] = "add_parallel_line"
    line: int | str
    cable: str


@dataclass(frozen=True)
class NewSubstation(Change):
    """A new public 10/0.4 kV unit at (lon, lat): a new 10 kV bus tied to ``mv_bus`` by
    ``tie_cable`` (route length from the distance, or ``tie_length_m``), the transformer and a
    new LV board. ``mv_bus`` omitted: the nearest MV bus with coordinates. The unit has an
    off-load tap changer on its 10 kV side, ±2 x 2.5 % (``tap_pos``, neutral by default; the
    planner sets the position that brings the LV board's no-load voltage closest to 400 V
    without exceeding it, :func:`lvplan.changes.resolve.no_load_tap`). ``units``: that many
    identical units of ``rated_kva`` side by side between the 10 kV bus and the LV board, at
    most :data:`MAX_SITE_UNITS` (the first named ``name``, the others ``name unit 2``)."""

    kind: ClassVar[str] = "new_substation"
    lon: float
    lat: float
    rated_kva: int = 630
    mv_bus: int | str | None = None
    tie_cable: str | None = None  # None: the catalogue's MV cable rated for mv_bus's network
    tie_length_m: float | None = None
    name: str | None = None
    tap_pos: int | None = None
    units: int = 1


@dataclass(frozen=True)
class NewLvCable(Change):
    """A new LV cable from ``from_bus`` to an existing ``to_bus``, or to a new LV bus at
    (lon, lat). ``length_m`` omitted: the route length from the coordinates."""

    kind: ClassVar[str] = "new_lv_cable"
    from_bus: int | str
    cable: str
    to_bus: int | str | None = None
    lon: float | None = None
    lat: float | None = None
    length_m: float | None = None
    name: str | None = None


@dataclass(frozen=True)
class Transfer(Change):
    """Part of an LV area moves to another supply: the section ``subtree_root_line`` is opened
    (taken out of service) and the buses beyond it (away from their transformer) are fed by a
    new cable from ``to_bus`` to the section's far end."""

    kind: ClassVar[str] = "transfer"
    subtree_root_line: int | str
    to_bus: int | str
    cable: str
    length_m: float | None = None
    far_bus: int | None = None  # set by resolve: the section's end away from its transformer


@dataclass(frozen=True)
class SetTap(Change):
    """The unit's off-load tap changer set to ``tap_pos``: a step up lowers its LV side's
    no-load voltage by 2.5 % (a ratio tap on the 10 kV side). A unit the network gives no tap
    changer gets the ±2 x 2.5 % one of a 10/0.4 kV unit (criteria.md), neutral at 0."""

    kind: ClassVar[str] = "set_tap"
    trafo: int | str
    tap_pos: int


@dataclass(frozen=True)
class SetSwitch(Change):
    """Open or close a switch (N-1 transfers and loop operation are switching changes)."""

    kind: ClassVar[str] = "set_switch"
    switch: int
    closed: bool


@dataclass(frozen=True)
class OpenLine(Change):
    """A section taken out of service, as its breakers leave it after a fault (the loss of a
    feeder's head section in an N-1 contingency)."""

    kind: ClassVar[str] = "open_line"
    line: int | str


@dataclass(frozen=True)
class NewTie(Change):
    """A new normally-open tie between two 10 kV feeders: a catalogue cable from ``from_bus``
    (a bus of one feeder) to ``to_bus`` (a bus of another), with an open line switch at
    ``to_bus`` (the tie switch of a ring main unit), so that
    :func:`lvplan.n1.contingency.find_contingencies` finds it as a restoring tie. Route
    length: ``length_m``, or the distance between the buses x :data:`DETOUR_FACTOR`. The ends
    may lie in two MV islands (feeders of two substations): the switch is open in normal
    operation, and after a contingency the cut-off part is fed through it alone, so two sources
    never run in parallel."""

    kind: ClassVar[str] = "new_tie"
    from_bus: int | str
    to_bus: int | str
    cable: str | None = None  # None: the catalogue's MV cable rated for the network
    length_m: float | None = None
    name: str | None = None


@dataclass(frozen=True)
class MoveTransformer(Change):
    """A 10/0.4 kV unit moves to another 10 kV feeder: a new 10 kV bus at its site (named
    ``"<unit name> 10 kV (moved)"``, at its old 10 kV bus's coordinates) fed by a catalogue
    cable from ``to_bus`` (a bus of another feeder), and the unit's HV side moved onto it. Its
    old 10 kV bus stays where it is. Route length: ``length_m``, or the distance x
    :data:`DETOUR_FACTOR`."""

    kind: ClassVar[str] = "move_transformer"
    trafo: int | str
    to_bus: int | str
    cable: str | None = None  # None: the catalogue's MV cable rated for the network
    length_m: float | None = None


def moved_bus_name(net, trafo: int) -> str:
    """The name of the new 10 kV bus a moved unit hangs from (``net``: pandapower tables)."""
    nm = net.trafo.at[trafo, "name"] if "name" in net.trafo else None
    return f"{nm if isinstance(nm, str) and nm else f'trafo {trafo}'} 10 kV (moved)"


KINDS: dict[str, type[Change]] = {
    c.kind: c
    for c in (
        AddLoad,
        ReplaceTransformer,
        AddParallelTransformer,
        ReplaceLine,
        AddParallelLine,
        NewSubstation,
        NewLvCable,
        Transfer,
        SetSwitch,
        OpenLine,
        NewTie,
        MoveTransformer,
        SetTap,
    )
}


def _typed(where: str, name: str, value: Any, want: str) -> Any:
    """Check one field's JSON/TOML type (``want``: ref, ref?, number, number?, int, str, bool)."""
    optional = want.endswith("?")
    want = want.rstrip("?")
    if value is None:
        if optional:
            return None
        raise InputError(f"{where}: {name}: missing")
    bad = isinstance(value, bool) and want != "bool"
    if want == "ref" and not bad and isinstance(value, int | str) and str(value).strip():
        return value
    if want == "number" and not bad and isinstance(value, int | float):
        if not math.isfinite(float(value)):
            raise InputError(f"{where}: {name}: must be a finite number, got {value!r}")
        return float(value)
    if want == "int" and not bad and isinstance(value, int):
        return value
    if want == "int" and not bad and isinstance(value, float) and value.is_integer():
        return int(value)
    if want == "str" and isinstance(value, str) and value.strip():
        return value
    if want == "bool" and isinstance(value, bool):
        return value
    label = {"ref": "an index or a name", "number": "a number", "int": "an integer"}
    raise InputError(f"{where}: {name}: must be {label.get(want, 'a ' + want)}, got {value!r}")


_FIELD_TYPES: dict[str, dict[str, str]] = {
    "add_load": {"bus": "ref", "kw": "number", "kvar": "number?", "name": "str?"},
    "replace_transformer": {"trafo": "ref", "rated_kva": "int", "units": "int?"},
    "add_parallel_transformer": {"trafo": "ref", "rated_kva": "int"},
    "set_tap": {"trafo": "ref", "tap_pos": "int"},
    "replace_line": {"line": "ref", "cable": "str"},
    "add_parallel_line": {"line": "ref", "cable": "str"},
    "new_substation": {
        "lon": "number",
        "lat": "number",
        "rated_kva": "int?",
        "mv_bus": "ref?",
        "tie_cable": "str?",
        "tie_length_m": "number?",
        "name": "str?",
        "tap_pos": "int?",
        "units": "int?",
    },
    "new_lv_cable": {
        "from_bus": "ref",
        "cable": "str",
        "to_bus": "ref?",
        "lon": "number?",
        "lat": "number?",
        "length_m": "number?",
        "name": "str?",
    },
    "transfer": {
        "subtree_root_line": "ref",
        "to_bus": "ref",
        "cable": "str",
        "length_m": "number?",
    },
    "set_switch": {"switch": "int", "closed": "bool"},
    "open_line": {"line": "ref"},
    "new_tie": {
        "from_bus": "ref",
        "to_bus": "ref",
        "cable": "str?",
        "length_m": "number?",
        "name": "str?",
    },
    "move_transformer": {"trafo": "ref", "to_bus": "ref", "cable": "str?", "length_m": "number?"},
}


def change_from_dict(d: Any, position: int) -> Change:
    """One change from a mapping (a changes file's entry); errors name ``change N (kind)``."""
    if not isinstance(d, dict):
        raise InputError(f"change {position}: must be a table of fields, got {type(d).__name__}")
    kind = d.get("kind")
    if kind not in KINDS:
        raise InputError(
            f"change {position}: kind: must be one of {', '.join(KINDS)}, got {kind!r}"
        )
    where = f"change {position} ({kind})"
    types = _FIELD_TYPES[kind]
    unknown = sorted(set(d) - set(types) - {"kind"})
    if unknown:
        raise InputError(f"{where}: {unknown[0]}: unknown field (known: {', '.join(types)})")
    values = {k: _typed(where, k, d.get(k), t) for k, t in types.items()}
    cls = KINDS[kind]
    return cls(**{k: v for k, v in values.items() if v is not None})


@dataclass(frozen=True)
class Changes:
    """An ordered, immutable set of changes. Build it with the methods (each returns a new
    ``Changes``) or from a file (:func:`lvplan.changes.load_changes`)."""

    items: tuple[Change, ...] = ()

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def __add__(self, other: Changes) -> Changes:
        return Changes(self.items + tuple(other.items))

    def with_(self, change: Change) -> Changes:
        return Changes((*self.items, change))

    def add_load(self, bus, kw, kvar=0.0, name="lvplan load") -> Changes:
        return self.with_(AddLoad(bus, kw, kvar, name))

    def replace_transformer(self, trafo, rated_kva, units: int = 1) -> Changes:
        return self.with_(ReplaceTransformer(trafo, rated_kva, units))

    def add_parallel_transformer(self, trafo, rated_kva) -> Changes:
        return self.with_(AddParallelTransformer(trafo, rated_kva))

    def replace_line(self, line, cable) -> Changes:
        return self.with_(ReplaceLine(line, cable))

    def add_parallel_line(self, line, cable) -> Changes:
        return self.with_(AddParallelLine(line, cable))

    def new_substation(self, lon, lat, **kw) -> Changes:
        return self.with_(NewSubstation(lon, lat, **kw))

    def new_lv_cable(self, from_bus, cable, **kw) -> Changes:
        return self.with_(NewLvCable(from_bus, cable, **kw))

    def transfer(self, subtree_root_line, to_bus, cable, length_m=None) -> Changes:
        return self.with_(Transfer(subtree_root_line, to_bus, cable, length_m))

    def set_tap(self, trafo, tap_pos: int) -> Changes:
        return self.with_(SetTap(trafo, tap_pos))

    def set_switch(self, switch, closed) -> Changes:
        return self.with_(SetSwitch(switch, closed))

    def open_line(self, line) -> Changes:
        return self.with_(OpenLine(line))

    def new_tie(self, from_bus, to_bus, **kw) -> Changes:
        return self.with_(NewTie(from_bus, to_bus, **kw))

    def move_transformer(self, trafo, to_bus, **kw) -> Changes:
        return self.with_(MoveTransformer(trafo, to_bus, **kw))

    def to_dict(self) -> dict[str, Any]:
        return {"changes": [c.to_dict() for c in self.items]}

    @classmethod
    def from_dict(cls, data: Any) -> Changes:
        if isinstance(data, list):
            entries = data
        elif isinstance(data, dict):
            unknown = sorted(set(data) - {"changes"})
            if unknown:
                raise InputError(f"{unknown[0]}: unknown key (a changes file holds 'changes')")
            entries = data.get("changes", [])
        else:
            raise InputError("changes: expected a list of changes")
        if not isinstance(entries, list):
            raise InputError("changes: expected a list of changes")
        return cls(tuple(change_from_dict(d, i + 1) for i, d in enumerate(entries)))

    def resolve(self, network) -> Changes:
        """The same changes with every reference an index of ``network`` and every value
        checked against it and the catalogue (raises InputError naming change and field)."""
        from lvplan.changes.resolve import Pending, resolve_change

        pending = Pending(network)
        return Changes(
            tuple(resolve_change(network, c, i + 1, pending) for i, c in enumerate(self.items))
        )
