"""Resolve a change against a network: references become indices, values are checked."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from lvplan.changes.spec import (
    DETOUR_FACTOR,
    MAX_SITE_UNITS,
    MAX_TIE_LENGTH_M,
    TRAFO_LADDER_KVA,
    AddLoad,
    AddParallelLine,
    AddParallelTransformer,
    Change,
    MoveTransformer,
    NewLvCable,
    NewSubstation,
    NewTie,
    OpenLine,
    ReplaceLine,
    ReplaceTransformer,
    SetSwitch,
    SetTap,
    Transfer,
    moved_bus_name,
)
from lvplan.errors import InputError
from lvplan.model.catalogue import cable_types, mv_cable_for, rated_class, trafo_types
from lvplan.model.network import index_of_text
from lvplan.model.topology import LV_MAX_KV, MV_MAX_KV, unfed


class Pending:
    """Buses the changes before this one create: a later change may name them (a transfer onto
    a new substation's LV board: ``to_bus = "<name> LV board"``). pandapower numbers a new bus
    one above the largest index, so their indices are known before they exist."""

    def __init__(self, network):
        self.next_bus = int(network.pp.bus.index.max()) + 1 if len(network.pp.bus) else 0
        self.buses: dict[str, int] = {}
        self.vn_kv: dict[int, float] = {}

    def add_bus(self, name: str, vn_kv: float) -> int:
        b = self.next_bus
        self.next_bus += 1
        self.buses[name] = b
        self.vn_kv[b] = vn_kv
        return b

    def find(self, ref) -> int | None:
        if isinstance(ref, int) and not isinstance(ref, bool):
            return ref if ref in self.vn_kv else None
        text = str(ref).strip()
        i = index_of_text(text)
        if i is not None and i in self.vn_kv:
            return i
        return self.buses.get(text)


#: a load in a changes file larger than this (kW) is a typo, not a load on a 10 kV network
MAX_LOAD_KW = 100_000.0


def _element(network, table: str, ref, where: str, field: str) -> int:
    tab = network.pp[table]
    if isinstance(ref, int) and not isinstance(ref, bool):
        if ref in tab.index:
            return int(ref)
        raise InputError(f"{where}: {field}: no {table} with index {ref}")
    text = str(ref).strip()
    i = index_of_text(text)
    if i is not None and i in tab.index:
        return i
    if "name" in tab.columns:
        hits = tab.index[tab.name.astype(str) == text]
        if len(hits) == 1:
            return int(hits[0])
        if len(hits) > 1:
            raise InputError(f"{where}: {field}: {table} name {text!r} is ambiguous")
    raise InputError(f"{where}: {field}: no {table} with index or name {text!r}")


def _bus(
    network, ref, where: str, field: str, *, lv: bool | None = None, pending: Pending | None = None
) -> int:
    new = pending.find(ref) if pending is not None else None
    if new is not None:
        vn = pending.vn_kv[new]  # type: ignore[union-attr]
        if lv is True and vn >= LV_MAX_KV:
            raise InputError(f"{where}: {field}: new bus {new} is not an LV bus")
        if lv is False and not LV_MAX_KV <= vn <= MV_MAX_KV:
            raise InputError(f"{where}: {field}: new bus {new} is not a 10 kV-class bus")
        return new
    b = _element(network, "bus", ref, where, field)
    vn = float(network.pp.bus.at[b, "vn_kv"])
    if lv is True and vn >= LV_MAX_KV:
        raise InputError(f"{where}: {field}: bus {b} is not an LV bus (vn_kv {vn:g})")
    if lv is False and not LV_MAX_KV <= vn <= MV_MAX_KV:
        raise InputError(f"{where}: {field}: bus {b} is not a 10 kV-class bus (vn_kv {vn:g})")
    if not network.live.bus[network.bus_row(b)]:
        raise InputError(f"{where}: {field}: bus {b} is not supplied")
    return b


def _rating(value: int, where: str) -> int:
    if value not in TRAFO_LADDER_KVA or value not in trafo_types():
        ladder = ", ".join(str(k) for k in TRAFO_LADDER_KVA)
        raise InputError(f"{where}: rated_kva: {value} kVA is not on the ladder ({ladder})")
    return value


def _cable(
    name: str | None, voltage: str, where: str, field: str = "cable", vn_kv: float | None = None
) -> str:
    """``name`` checked: a catalogue cable of ``voltage`` ("lv"/"mv"), rated for a network of
    nominal ``vn_kv`` when that is given; None: the catalogue's MV cable for ``vn_kv``."""
    types = cable_types()
    if name is None:
        chosen = None if vn_kv is None else mv_cable_for(vn_kv)
        if chosen is None:
            raise InputError(
                f"{where}: {field}: the catalogue has no MV cable rated for a "
                f"{vn_kv:g} kV network; name one"
            )
        return chosen
    if name not in types:
        raise InputError(f"{where}: {field}: unknown cable type {name!r}")
    if types[name].voltage != voltage:
        raise InputError(
            f"{where}: {field}: {name} is a {types[name].voltage.upper()} cable, "
            f"not {voltage.upper()}"
        )
    if vn_kv is not None and not rated_class([name], vn_kv):
        raise InputError(
            f"{where}: {field}: {name} is rated {types[name].rated_kv:g} kV, not for a "
            f"{vn_kv:g} kV network"
        )
    return name


#: the longest cable a change may add or replace, given or computed from coordinates
MAX_CABLE_LENGTH_M = 50_000.0


def _length(value: float | None, where: str, field: str) -> float | None:
    if value is not None and not 0 < value <= MAX_CABLE_LENGTH_M:
        raise InputError(f"{where}: {field}: must be > 0 and at most 50 km, got {value:g}")
    return value


def _lonlat(lon: float, lat: float, where: str) -> None:
    if not -180 <= lon <= 180:
        raise InputError(f"{where}: lon: must be within ±180 degrees, got {lon:g}")
    if not -90 <= lat <= 90:
        raise InputError(f"{where}: lat: must be within ±90 degrees, got {lat:g}")


def _route_m(network, bus: int, lon: float, lat: float) -> float:
    from lvplan.locate import bus_lonlat, distance_m

    blon, blat = bus_lonlat(network)
    r = network.bus_row(bus)
    if not (np.isfinite(blon[r]) and np.isfinite(blat[r])):
        return math.nan
    return float(distance_m(lon, lat, blon[r], blat[r])) * DETOUR_FACTOR


def _cable_length(
    network, given: float | None, a: int, b: int, pending: Pending, where: str
) -> float:
    """A new cable's route length between buses ``a`` and ``b``: as given, or the distance
    between their coordinates x the detour factor (at least 1 m)."""
    if given is None and (pending.find(a) is not None or pending.find(b) is not None):
        raise InputError(f"{where}: length_m: give the length of a cable to or from a new bus")
    length = given
    if length is None:
        from lvplan.locate import bus_lonlat

        blon, blat = bus_lonlat(network)
        r = network.bus_row(b)
        length = _route_m(network, a, float(blon[r]), float(blat[r]))
    if not math.isfinite(length):
        raise InputError(f"{where}: length_m: the buses have no coordinates; give it")
    return _within_reach(length, where, f"buses {a} and {b}")


def _within_reach(length: float, where: str, ends: str) -> float:
    """A route length computed from coordinates, at least 1 m; over 50 km is refused (a bus
    placed on another continent gave a 16,207 km cable)."""
    if length > MAX_CABLE_LENGTH_M:
        raise InputError(
            f"{where}: length_m: {ends} are {length / 1000:,.1f} km apart by their "
            "coordinates (route), over the 50 km a cable may be: check them or give the length"
        )
    return max(length, 1.0)


def _trafo(network, ref, where: str) -> int:
    t = _element(network, "trafo", ref, where, "trafo")
    tr = network.pp.trafo
    if not bool(tr.at[t, "in_service"]):
        raise InputError(f"{where}: trafo: trafo {t} is out of service")
    if not (tr.at[t, "vn_lv_kv"] < LV_MAX_KV and tr.at[t, "vn_hv_kv"] <= MV_MAX_KV):
        raise InputError(f"{where}: trafo: trafo {t} is not a 10/0.4 kV-class unit")
    return t


def _line(network, ref, where: str, field: str = "line") -> tuple[int, str, float]:
    """The line's id, "lv" or "mv", and its network's nominal kV."""
    ln = _element(network, "line", ref, where, field)
    line = network.pp.line
    if not bool(line.at[ln, "in_service"]):
        raise InputError(f"{where}: {field}: line {ln} is out of service")
    vn = float(network.pp.bus.at[int(line.at[ln, "from_bus"]), "vn_kv"])
    return ln, ("lv" if vn < LV_MAX_KV else "mv"), vn


def resolve_change(network, c: Change, position: int, pending: Pending) -> Change:
    where = f"change {position} ({c.kind})"
    if isinstance(c, AddLoad):
        if not 0 < c.kw <= MAX_LOAD_KW:
            raise InputError(f"{where}: kw: must be > 0 and at most {MAX_LOAD_KW:g}, got {c.kw:g}")
        if not abs(c.kvar) <= MAX_LOAD_KW:
            raise InputError(
                f"{where}: kvar: must be at most {MAX_LOAD_KW:g} in size, got {c.kvar:g}"
            )
        return replace(c, bus=_bus(network, c.bus, where, "bus", pending=pending))
    if isinstance(c, ReplaceTransformer) and (
        c.units is None or not 1 <= c.units <= MAX_SITE_UNITS
    ):
        raise InputError(f"{where}: units: must be in [1, {MAX_SITE_UNITS}], got {c.units}")
    if isinstance(c, SetTap):
        t = _trafo(network, c.trafo, where)
        lo, hi = tap_range(network.pp.trafo.loc[t])
        if not lo <= c.tap_pos <= hi:
            raise InputError(f"{where}: tap_pos: must be in [{lo}, {hi}], got {c.tap_pos}")
        return replace(c, trafo=t)
    if isinstance(c, ReplaceTransformer | AddParallelTransformer):
        return replace(
            c, trafo=_trafo(network, c.trafo, where), rated_kva=_rating(c.rated_kva, where)
        )
    if isinstance(c, ReplaceLine | AddParallelLine):
        ln, voltage, vn = _line(network, c.line, where)
        return replace(c, line=ln, cable=_cable(c.cable, voltage, where, vn_kv=vn))
    if isinstance(c, NewSubstation):
        out = _new_substation(network, c, where)
        name = out.name or f"new {out.rated_kva} kVA substation"
        vn = float(network.pp.bus.at[int(out.mv_bus), "vn_kv"])  # type: ignore[arg-type]
        pending.add_bus(f"{name} 10 kV", vn)
        pending.add_bus(f"{name} LV board", 0.4)
        return replace(out, name=name)
    if isinstance(c, NewLvCable):
        out2 = _new_lv_cable(network, c, where, pending)
        if out2.to_bus is None:  # a new bus at the far end, at the voltage it starts from
            fb = int(out2.from_bus)
            vn = pending.vn_kv.get(fb) or float(network.pp.bus.at[fb, "vn_kv"])
            pending.add_bus(out2.name or "new LV bus", vn)
        return out2
    if isinstance(c, Transfer):
        return _transfer(network, c, where, pending)
    if isinstance(c, NewTie):
        return _new_tie(network, c, where)
    if isinstance(c, MoveTransformer):
        out3 = _move_transformer(network, c, where)
        name = moved_bus_name(network.pp, int(out3.trafo))
        pending.add_bus(name, float(network.pp.bus.at[int(out3.to_bus), "vn_kv"]))
        return out3
    if isinstance(c, OpenLine):
        return replace(c, line=_line(network, c.line, where)[0])
    if isinstance(c, SetSwitch):
        if c.switch not in network.pp.switch.index:
            raise InputError(f"{where}: switch: no switch with index {c.switch}")
        return c
    raise InputError(f"{where}: kind: not supported")  # pragma: no cover


#: A new unit's off-load tap changer (10 kV side): positions TAP_MIN..TAP_MAX of TAP_STEP_PERCENT.
TAP_MIN, TAP_MAX, TAP_STEP_PERCENT = -2, 2, 2.5


def tap_ratio(tap_pos: int) -> float:
    """The LV voltage (pu) of a new unit per pu on its 10 kV side, at no load."""
    return 1.0 / (1.0 + tap_pos * TAP_STEP_PERCENT / 100.0)


def has_tap_changer(row) -> bool:
    """Whether a transformer row has a ratio tap changer pandapower models (a step in
    percent, of either sign, and a range); a unit without one gets a 10/0.4 kV unit's
    (:data:`TAP_MIN`..). (A negative step counted as none: the unit's own changer was then
    replaced, and its tap read as neutral; review helper-83.)"""
    step, lo, hi = (row.get(k) for k in ("tap_step_percent", "tap_min", "tap_max"))
    return all(v is not None and v == v for v in (step, lo, hi)) and float(step) != 0


def tap_lowers_lv(row) -> int:
    """+1 where a step up of the unit's tap lowers its LV side's voltage, -1 where it raises
    it: a ratio tap on the HV side with a positive step lowers it, on the LV side raises it,
    and a negative step turns either round (a unit with no changer gets an HV-side one)."""
    if not has_tap_changer(row):
        return 1
    side = -1 if str(row.get("tap_side", "hv")).lower() == "lv" else 1
    return side * (1 if float(row["tap_step_percent"]) > 0 else -1)


def tap_step_percent(row) -> float:
    """The size of one step of the unit's tap (its own, or a 10/0.4 kV unit's)."""
    return abs(float(row["tap_step_percent"])) if has_tap_changer(row) else TAP_STEP_PERCENT


def tap_range(row) -> tuple[int, int]:
    """The positions a unit's tap may take: its own range, or ±2 where it has none."""
    if has_tap_changer(row):
        return int(row["tap_min"]), int(row["tap_max"])
    return TAP_MIN, TAP_MAX


def no_load_tap(vm_mv_pu: float, max_pu: float = 1.0) -> int:
    """The tap that puts the LV board's no-load voltage closest to 1 pu (400 V), not above it
    nor above ``max_pu`` (the profile's LV maximum, where a profile puts it below 400 V)."""
    top = min(1.0, max_pu)
    ok = [t for t in range(TAP_MIN, TAP_MAX + 1) if vm_mv_pu * tap_ratio(t) <= top + 1e-9]
    if not ok:
        return TAP_MAX
    return min(ok, key=lambda t: top - vm_mv_pu * tap_ratio(t))


def _new_substation(network, c: NewSubstation, where: str) -> NewSubstation:
    _lonlat(c.lon, c.lat, where)
    _rating(c.rated_kva, where)
    _length(c.tie_length_m, where, "tie_length_m")
    if c.mv_bus is not None:
        mv = _bus(network, c.mv_bus, where, "mv_bus", lv=False)
    else:
        from lvplan.locate import bus_lonlat, distance_m

        blon, blat = bus_lonlat(network)
        vn = network.bus_vn_kv
        ok = (vn >= LV_MAX_KV) & (vn <= MV_MAX_KV) & network.live.bus & np.isfinite(blon)
        if not ok.any():
            raise InputError(f"{where}: mv_bus: the network has no 10 kV bus with coordinates")
        d = np.where(ok, distance_m(c.lon, c.lat, blon, blat), np.inf)
        mv = int(network.pp.bus.index[int(np.argmin(d))])
    if c.tap_pos is not None and not TAP_MIN <= c.tap_pos <= TAP_MAX:
        raise InputError(f"{where}: tap_pos: must be in [{TAP_MIN}, {TAP_MAX}], got {c.tap_pos}")
    tap = 0 if c.tap_pos is None else c.tap_pos
    if c.units is None or not 1 <= c.units <= MAX_SITE_UNITS:
        raise InputError(f"{where}: units: must be in [1, {MAX_SITE_UNITS}], got {c.units}")
    route = c.tie_length_m if c.tie_length_m is not None else _route_m(network, mv, c.lon, c.lat)
    if not math.isfinite(route):
        raise InputError(f"{where}: tie_length_m: bus {mv} has no coordinates; give the length")
    if route > MAX_TIE_LENGTH_M:
        raise InputError(
            f"{where}: lon/lat: the site is {route:.0f} m (route) from 10 kV bus {mv}, beyond "
            f"the {MAX_TIE_LENGTH_M:g} m reach of a new tie"
        )
    vn = float(network.pp.bus.at[mv, "vn_kv"])
    cable = _cable(c.tie_cable, "mv", where, "tie_cable", vn_kv=vn)
    return replace(c, mv_bus=mv, tie_cable=cable, tie_length_m=max(route, 1.0), tap_pos=tap)


def _new_lv_cable(network, c: NewLvCable, where: str, pending: Pending) -> NewLvCable:
    fb = _bus(network, c.from_bus, where, "from_bus", lv=True, pending=pending)
    _cable(c.cable, "lv", where)
    _length(c.length_m, where, "length_m")
    has_loc = c.lon is not None or c.lat is not None
    if (c.to_bus is not None) == has_loc:
        raise InputError(f"{where}: to_bus: give either to_bus or both lon and lat")
    if c.to_bus is not None:
        tb = _bus(network, c.to_bus, where, "to_bus", lv=True, pending=pending)
        if tb == fb:
            raise InputError(f"{where}: to_bus: the same bus as from_bus")
        length = _cable_length(network, c.length_m, fb, tb, pending, where)
        return replace(c, from_bus=fb, to_bus=tb, length_m=length)
    if c.lon is None or c.lat is None:
        raise InputError(f"{where}: {'lat' if c.lat is None else 'lon'}: give both lon and lat")
    _lonlat(c.lon, c.lat, where)
    if c.length_m is not None:
        return replace(c, from_bus=fb, length_m=max(c.length_m, 1.0))
    length = _route_m(network, fb, c.lon, c.lat)
    if not math.isfinite(length):
        raise InputError(f"{where}: length_m: bus {fb} has no coordinates; give the length")
    return replace(c, from_bus=fb, length_m=_within_reach(length, where, f"bus {fb} and the site"))


def far_end(network, line: int) -> tuple[int, set[int]]:
    """The end of LV ``line`` away from its transformer, and the buses beyond it (the subtree
    that a transfer moves): a search of the line's own area, without that line."""
    topo = network.topology
    pp_line = network.pp.line
    a, b = int(pp_line.at[line, "from_bus"]), int(pp_line.at[line, "to_bus"])
    g = topo.lv_graph
    cut = ("line", line)

    def reach(start: int) -> set[int]:
        seen, todo = {start}, [start]
        while todo:
            u = todo.pop()
            if u not in g:
                continue
            for v, keys in g[u].items():
                if v not in seen and any(k != cut for k in keys):
                    seen.add(v)
                    todo.append(v)
        return seen

    comp_a = reach(a)
    area = topo.area_of(a)
    feeders = {int(network.pp.trafo.at[t, "lv_bus"]) for t in (area.trafos if area else ())}
    if feeders & comp_a:
        return b, reach(b)
    return a, comp_a


def _transfer(network, c: Transfer, where: str, pending: Pending) -> Transfer:
    ln, voltage, _vn = _line(network, c.subtree_root_line, where, "subtree_root_line")
    if voltage != "lv":
        raise InputError(f"{where}: subtree_root_line: line {ln} is not an LV line")
    _cable(c.cable, "lv", where)
    _length(c.length_m, where, "length_m")
    tb = _bus(network, c.to_bus, where, "to_bus", lv=True, pending=pending)
    end, moved = far_end(network, ln)
    if tb in moved:
        raise InputError(f"{where}: to_bus: bus {tb} lies in the part being moved")
    area = network.topology.area_of(end)
    feeders = {int(network.pp.trafo.at[t, "lv_bus"]) for t in (area.trafos if area else ())}
    if feeders & moved:
        raise InputError(
            f"{where}: subtree_root_line: the part beyond line {ln} holds a transformer: "
            "it is not a branch of the area"
        )
    length = _cable_length(network, c.length_m, tb, end, pending, where)
    return replace(c, subtree_root_line=ln, to_bus=tb, length_m=length, far_bus=end)


def mv_feeders_of(network):
    """The MV feeders of ``network`` (:func:`lvplan.model.topology.mv_feeders`), kept on it."""
    from lvplan.model.topology import mv_feeders

    hit = network.contexts.get(("mv_feeders",))
    if hit is None:
        hit = mv_feeders(network.pp)
        network.contexts.put(("mv_feeders",), hit)
    return hit


def _feeder(network, bus: int, where: str, field: str) -> str:
    """The feeder of MV bus ``bus``; a bus of the source busbar or of no feeder is refused."""
    f = mv_feeders_of(network).feeder_of.get(bus)
    if f == "busbar":
        raise InputError(
            f"{where}: {field}: bus {bus} is on the source busbar, not on a feeder (a tie and "
            "a moved transformer join feeders)"
        )
    if f is None or unfed(f):
        raise InputError(f"{where}: {field}: bus {bus} is on no supplied 10 kV feeder")
    return f


def _mv_route(network, given: float | None, a: int, b: int, where: str) -> float:
    """A new 10 kV cable's route length between existing buses ``a`` and ``b``: as given, or
    the distance x the detour factor, within the reach of a new tie."""
    length = _cable_length(network, given, a, b, Pending(network), where)
    if given is None and length > MAX_TIE_LENGTH_M:
        raise InputError(
            f"{where}: to_bus: bus {b} is {length:.0f} m (route) from bus {a}, beyond the "
            f"{MAX_TIE_LENGTH_M:g} m reach of a new 10 kV cable (give length_m to insist)"
        )
    return length


def _new_tie(network, c: NewTie, where: str) -> NewTie:
    a = _bus(network, c.from_bus, where, "from_bus", lv=False)
    b = _bus(network, c.to_bus, where, "to_bus", lv=False)
    if a == b:
        raise InputError(f"{where}: to_bus: the same bus as from_bus")
    va, vb = (float(network.pp.bus.at[x, "vn_kv"]) for x in (a, b))
    if abs(va - vb) > 1e-9:
        raise InputError(
            f"{where}: to_bus: bus {b} is a {vb:g} kV bus, bus {a} a {va:g} kV bus: a tie joins "
            "buses of one nominal voltage"
        )
    fa = _feeder(network, a, where, "from_bus")
    fb = _feeder(network, b, where, "to_bus")
    if fa == fb:
        raise InputError(
            f"{where}: to_bus: buses {a} and {b} are both on feeder {fa}: a tie joins two feeders"
        )
    cable = _cable(c.cable, "mv", where, vn_kv=va)
    _length(c.length_m, where, "length_m")
    length = _mv_route(network, c.length_m, a, b, where)
    name = c.name or f"new tie {fa} - {fb}"
    return replace(c, from_bus=a, to_bus=b, cable=cable, length_m=length, name=name)


def _move_transformer(network, c: MoveTransformer, where: str) -> MoveTransformer:
    t = _trafo(network, c.trafo, where)
    hv = int(network.pp.trafo.at[t, "hv_bus"])
    b = _bus(network, c.to_bus, where, "to_bus", lv=False)
    vh, vb = float(network.pp.bus.at[hv, "vn_kv"]), float(network.pp.bus.at[b, "vn_kv"])
    if abs(vh - vb) > 1e-9:
        raise InputError(
            f"{where}: to_bus: bus {b} is a {vb:g} kV bus, the unit's 10 kV side a {vh:g} kV bus"
        )
    f_old = _feeder(network, hv, where, "trafo")
    f_new = _feeder(network, b, where, "to_bus")
    if f_old == f_new:
        raise InputError(
            f"{where}: to_bus: bus {b} is on feeder {f_new}, which already feeds trafo {t}"
        )
    cable = _cable(c.cable, "mv", where, vn_kv=vb)
    _length(c.length_m, where, "length_m")
    length = _mv_route(network, c.length_m, b, hv, where)
    return replace(c, trafo=t, to_bus=b, cable=cable, length_m=length)
