"""Network: a validated pandapower net, its topology, its base load flow and its fast engine.

``check`` and the other doors never mutate the pandapower net a user handed in: the Network keeps
a private working copy for reference load flows and restores it after each one.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from lvplan.errors import BaseCaseError, InputError, NotConverged, PowerFlowError
from lvplan.model.coordinates import bus_lonlat
from lvplan.model.islands import IslandStates, load_cache, save_cache
from lvplan.model.islands import plan as island_plan
from lvplan.model.topology import (
    LV_MAX_KV,
    Topology,
    build_topology,
    connected_branches,
    energized_buses,
)
from lvplan.model.validate import ELEMENT_TABLES, assert_valid
from lvplan.powerflow.ac import run_ac
from lvplan.powerflow.fast import FastEngine
from lvplan.powerflow.state import GridState, LiveMasks

#: a bus index written as text: ASCII digits only (``"--5"`` or ``"١٥"`` are names, not numbers)
_INDEX_TEXT = re.compile(r"-?[0-9]{1,18}")


def index_of_text(text: str) -> int | None:
    """The integer a text names, if it is one written in ASCII digits (else None)."""
    text = text.strip()
    return int(text) if _INDEX_TEXT.fullmatch(text) else None


FINGERPRINT_TABLES = ELEMENT_TABLES


class IdentityCache:
    """Values keyed by objects (compared by identity: a Criteria profile, a network) or by
    tuples of objects and plain values (compared by value: names, numbers). The cache holds
    the key objects, so an id is never reused while its entry lives; the least recently used
    entry goes first."""

    _PLAIN = (str, int, float, bool, type(None))

    def __init__(self, max_items: int):
        self._items: OrderedDict[tuple, tuple[object, object]] = OrderedDict()
        self._max = max_items

    def _ident(self, key: object) -> tuple:
        parts = key if isinstance(key, tuple) else (key,)
        return tuple(p if isinstance(p, self._PLAIN) else ("id", id(p)) for p in parts)

    def get(self, key: object):
        ident = self._ident(key)
        hit = self._items.get(ident)
        if hit is None:
            return None
        held = hit[0] if isinstance(hit[0], tuple) else (hit[0],)
        parts = key if isinstance(key, tuple) else (key,)
        if any(
            not isinstance(a, self._PLAIN) and a is not b for a, b in zip(held, parts, strict=True)
        ):
            return None
        self._items.move_to_end(ident)
        return hit[1]

    def put(self, key: object, value: object) -> None:
        ident = self._ident(key)
        self._items[ident] = (key, value)
        self._items.move_to_end(ident)
        while len(self._items) > self._max:
            self._items.popitem(last=False)


@dataclass(frozen=True)
class ExtraLoad:
    """A load added for one reference load flow (a new customer), optionally behind a cable."""

    bus: int
    p_mw: float
    q_mvar: float
    cable_length_km: float = 0.0
    cable_r_ohm_per_km: float = 0.0
    cable_x_ohm_per_km: float = 0.0
    cable_max_i_ka: float = 1.0
    #: a reservation behind a service cable (the cable folded into ``p_mw``/``q_mvar`` by
    #: :func:`lvplan.decision.reserved_load`): the least voltage at ``bus``, pu, at which its
    #: customer's terminal and cable stay within their limits; 0 for none
    min_bus_pu: float = 0.0


@dataclass(frozen=True)
class AcWithLoad:
    state: GridState
    customer_vm_pu: float
    cable_loading_percent: float


def as_network(obj: Any) -> Network:
    """``obj`` if it is a :class:`Network`; otherwise an :class:`InputError` that says what to
    give (a pandapower net handed to ``lvplan.check`` or ``lvplan.plan`` raised
    ``AttributeError: ... no attribute 'resolve_bus'``: probe, 2026-12-07)."""
    if isinstance(obj, Network):
        return obj
    if type(obj).__name__ == "pandapowerNet":
        raise InputError(
            "network: a pandapower net, not an lvplan Network: wrap it once with "
            "lvplan.Network(net, name=...) (validated, and never changed), or load one with "
            "lvplan.load_network(...)"
        )
    raise InputError(
        f"network: expected an lvplan Network (lvplan.load_network(...)), got {type(obj).__name__}"
    )


class Network:
    """A pandapower network ready for checks. Build it with ``lvplan.load_network``."""

    def __init__(
        self,
        net,
        *,
        name: str,
        source: str,
        validate: bool = True,
        owned: bool = False,
        as_given: bool = True,
    ):
        """``owned``: the caller hands over a net nobody else holds (no private copy is made;
        reference load flows add and remove their loads on it, under the network's lock).
        ``as_given``: the user's network (or an island or group of it), whose base failing to
        converge is a bad input (:class:`BaseCaseError`); False for a network lvplan derived
        from it with changes (a plan, an N-1 option), whose failure is a PowerFlowError."""
        if validate:
            assert_valid(net)
        self.name = name
        self.source = source
        self._pp = net
        #: the private copy reference load flows add their loads to: made on first use (a
        #: network served island by island never runs pandapower on the whole of it)
        self._work_net = net if owned else None
        self._lock = threading.RLock()
        self._base: GridState | None = None
        self._base_error: PowerFlowError | None = None
        self.as_given = as_given
        self._fast: FastEngine | None = None
        self._reserved: dict[str, ExtraLoad] = {}
        #: bumped whenever the base changes (reservations): cached judgements follow it
        self.version = 0
        #: networks with changes made (:meth:`with_changes`), most recent last
        self._variants: OrderedDict = OrderedDict()
        #: what the check derives from this network per criteria profile (decision._context)
        self.contexts = IdentityCache(max_items=8)
        #: the MV islands, each a Network of its own (:meth:`islands`); None: not built yet
        self._islands: IslandStates | None = None
        self._islands_tried = False

    def __getstate__(self) -> dict:
        """Pickled (an island prepared in another process, or cached) with its base, fast
        engine and reserved loads; its lock and caches are made afresh."""
        out = dict(self.__dict__)
        for key in ("_lock", "contexts", "_variants"):
            out.pop(key, None)
        # pandapower's internal model of the last run: the fast engine holds what it needs,
        # and the next pandapower run makes it again (a third of an island's bytes)
        for key in ("_pp", "_work_net"):
            net = out[key]
            if net is not None and "_ppc" in net:
                light = copy.copy(net)
                light["_ppc"] = None
                out[key] = light
        if self._pp is self._work_net:
            out["_work_net"] = out["_pp"]
        return out

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()
        self._variants = OrderedDict()
        self.contexts = IdentityCache(max_items=8)

    @property
    def _work(self):
        with self._lock:
            if self._work_net is None:
                self._work_net = copy.deepcopy(self._pp)
            return self._work_net

    # -- identity -------------------------------------------------------------------------------
    @property
    def pp(self):
        """The pandapower net (read it, do not change it: results are cached against it)."""
        return self._pp

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of the network's element tables: the same data gives the same fingerprint."""
        h = hashlib.sha256()
        for name in FINGERPRINT_TABLES:
            if name not in self._pp:
                continue
            tab = self._pp[name]
            if tab.empty:
                continue
            cols = [c for c in tab.columns if c != "geo"]
            h.update(name.encode())
            h.update(",".join(map(str, cols)).encode())
            try:  # numeric columns hash as they are: fast at a million rows
                hashed = pd.util.hash_pandas_object(tab[cols], index=True)
            except TypeError:  # unhashable cells (lists, dicts): hash their text
                hashed = pd.util.hash_pandas_object(tab[cols].astype(str), index=True)
            h.update(hashed.to_numpy().tobytes())
        return h.hexdigest()

    def with_changes(self, changes) -> Network:
        """This network with ``changes`` (:class:`lvplan.Changes`) made: a Network of its own,
        as exact as this one for every check, map and load flow (its base is a pandapower load
        flow of the changed tables, reserved loads included). Kept for the next call with the
        same changes (up to 8 variants); this network is not touched."""
        from lvplan.changes.apply import apply_changes

        if not len(changes):
            return self
        with self._lock:
            hit = self._variants.get(changes)
            if hit is not None:
                self._variants.move_to_end(changes)
                return hit
            net, _ = apply_changes(self._pp, changes.resolve(self))
            out = Network(
                net, name=f"{self.name}+changes", source=self.source, validate=True, as_given=False
            )
            if self._reserved:
                out.reserve(self._reserved)
            self._variants[changes] = out
            if len(self._variants) > 8:
                self._variants.popitem(last=False)
            return out

    # -- derived data ---------------------------------------------------------------------------
    @cached_property
    def topology(self) -> Topology:
        return build_topology(self._pp)

    @cached_property
    def supplied_bus(self) -> np.ndarray:
        """Per bus row: something supplies it in pandapower's load flow (a path from a slack
        through closed branches, impedance elements included): the buses :attr:`live` judges,
        and what "not supplied" means in what lvplan says to a user (a demand row refused,
        the buses a map draws apart)."""
        return np.asarray(self.live.bus, bool)

    @cached_property
    def unsupplied_lv_bus(self) -> np.ndarray:
        """Per bus row: an in-service LV bus nothing supplies (:attr:`supplied_bus`), the
        buses the map leaves out and a location check names."""
        bus = self._pp.bus
        lv = bus.in_service.to_numpy(bool) & (bus.vn_kv.to_numpy(float) < LV_MAX_KV)
        return np.asarray(lv & ~np.asarray(self.supplied_bus, bool), bool)

    @cached_property
    def feeding_trafo(self) -> np.ndarray:
        """Per transformer row: in service, no side switched out, both sides supplied
        (:attr:`supplied_bus`): a unit in operation, as ``inspect`` and the map count them."""
        net = self._pp
        on = net.bus.index[np.asarray(self.supplied_bus, bool)]
        return np.asarray(
            connected_branches(net, "trafo")
            & net.trafo.hv_bus.isin(on).to_numpy()
            & net.trafo.lv_bus.isin(on).to_numpy(),
            bool,
        )

    @cached_property
    def _positions(self) -> tuple[np.ndarray, np.ndarray, str | None]:
        return bus_lonlat(self._pp)

    @property
    def bus_lonlat(self) -> tuple[np.ndarray, np.ndarray]:
        """(lon, lat) of every bus row in WGS84 degrees, NaN where it has none, and everywhere
        when the network's coordinates are not degrees (:mod:`lvplan.model.coordinates`)."""
        lon, lat, _ = self._positions
        return lon, lat

    @property
    def coordinates_note(self) -> str | None:
        """Why the network's coordinates are read as no positions (not degrees), or None."""
        return self._positions[2]

    @cached_property
    def live(self) -> LiveMasks:
        net = self._pp
        on = energized_buses(net, impedance=True)
        bus = net.bus.index.isin(on)
        line = (
            net.line.in_service.to_numpy(bool)
            & net.line.from_bus.isin(on).to_numpy()
            & (net.line.to_bus.isin(on).to_numpy())
        )
        # a line or transformer behind an open switch carries no load current: not judged
        line &= connected_branches(net, "line")
        trafo = (
            connected_branches(net, "trafo")
            & net.trafo.hv_bus.isin(on).to_numpy()
            & (net.trafo.lv_bus.isin(on).to_numpy())
        )
        return LiveMasks(bus=bus, line=line, trafo=trafo)

    @cached_property
    def bus_vn_kv(self) -> np.ndarray:
        return self._pp.bus.vn_kv.to_numpy(dtype=float)

    @cached_property
    def bus_pos(self) -> pd.Index:
        return self._pp.bus.index

    def bus_row(self, bus: int) -> int:
        return int(self._pp.bus.index.get_loc(bus))

    def resolve_bus(self, spec: int | str) -> int:
        """A bus index from an index or a unique bus name; InputError when unknown or ambiguous."""
        bus = self._pp.bus
        if isinstance(spec, bool):
            raise InputError(f"unknown bus {spec!r}")
        if isinstance(spec, int | np.integer):
            if int(spec) in bus.index:
                return int(spec)
            raise InputError(f"unknown bus {spec!r}: no bus with that index")
        text = str(spec).strip()
        hits = bus.index[bus.name.astype(str) == text] if "name" in bus.columns else bus.index[:0]
        if _INDEX_TEXT.fullmatch(text) and int(text) in bus.index:
            other = [int(h) for h in hits if int(h) != int(text)]
            if other:  # (it took the index without a word: probe helper-78)
                raise InputError(
                    f"bus {text!r} is ambiguous: the index of bus {int(text)} and the name of "
                    f"bus {other[0]}; give a bus by a name only it has"
                )
            return int(text)
        if "name" in bus.columns:
            if len(hits) == 1:
                return int(hits[0])
            if len(hits) > 1:
                raise InputError(f"bus name {text!r} is ambiguous ({len(hits)} buses)")
        raise InputError(f"unknown bus {text!r}: no bus with that index or name")

    def is_lv(self, bus: int) -> bool:
        return bool(self._pp.bus.at[bus, "vn_kv"] < LV_MAX_KV)

    # -- MV islands -----------------------------------------------------------------------------
    def islands(self) -> IslandStates | None:
        """The network's MV islands as networks of their own (:mod:`lvplan.model.islands`),
        built on first use with the loads reserved so far; None when the network is one island
        or cannot be cut exactly. Checks decide on the island of their bus."""
        with self._lock:
            if not self._islands_tried:
                self._islands_tried = True
                found = island_plan(self._pp)
                if found is not None:
                    isl = IslandStates(self, found)
                    if self._reserved:
                        isl.reserve(self._reserved)
                    self._islands = isl
            return self._islands

    def prepare_islands(self, *, workers: int = 1, cache_dir=None, progress=None) -> str:
        """Build the islands (:meth:`islands`) and solve and prepare each (its base, its fast
        engine), in ``workers`` processes where it pays; with ``cache_dir``, read them from a
        cache of this very network and lvplan version when there is one, and write one when
        there is not (:func:`lvplan.model.islands.load_cache`; a cache that cannot be written is a
        warning, not an error). ``progress(done, total)``.
        Returns ``"cache"``, ``"prepared"`` or ``"whole"`` (one island: nothing to split)."""
        with self._lock:
            if not self._islands_tried and cache_dir is not None:
                cached = load_cache(self, cache_dir)
                if cached is not None:
                    self._islands_tried, self._islands = True, cached
                    if self._reserved:
                        cached.reserve(self._reserved)
                    return "cache"
            isl = self.islands()
            if isl is None:
                return "whole"
            pristine = not self._reserved
        isl.prepare(workers=workers, progress=progress)
        if cache_dir is not None and pristine:
            try:
                save_cache(isl, self, cache_dir)
            except OSError as exc:  # a full disk: the islands are prepared; the next start
                import warnings  # prepares them again

                warnings.warn(
                    f"--cache {cache_dir}: the prepared islands were not written "
                    f"({exc.strerror or exc}); a restart prepares them again",
                    stacklevel=2,
                )
        return "prepared"

    def _whole_built(self) -> bool:
        return self._base is not None or self._base_error is not None

    # -- load flows -----------------------------------------------------------------------------
    def base_state(self) -> GridState:
        """The reference load flow of the network as given (existing loads at the design peak),
        plus the reserved loads (see :meth:`reserve`). Once the islands are built
        (:meth:`islands`), it is put together from the islands' bases, which the checks use
        (the same state as one load flow of the whole: islands share only slack buses)."""
        with self._lock:
            if self._islands is not None:
                return self._islands.compose()
            return self._whole_base()

    def _whole_base(self) -> GridState:
        """The base as one load flow of the whole network."""
        with self._lock:
            if self._base is None and self._base_error is None:
                try:
                    if self._reserved:
                        self._base = self.run_ac_with([], building_base=True).state
                    else:
                        self._base = run_ac(self._work, self.live)
                    self._fast = FastEngine(self._work, self.live)
                except PowerFlowError as exc:
                    self._base_error = exc
            if self._base is None:
                if not (self.as_given and isinstance(self._base_error, NotConverged)):
                    raise PowerFlowError(f"base case: {self._base_error}")
                held = ", with the approvals it holds" if self._reserved else ""
                # (its file or folder too: two networks of one name in a study told apart)
                where = f" ({self.source})" if self.source and self.source != self.name else ""
                raise BaseCaseError(
                    f"network {self.name}{where}: its base case (its own loads{held}, no new "
                    f"demand) has no AC solution ({self._base_error}): nothing on it can be "
                    "assessed; check its loads, lines and slack"
                )
            return self._base

    # -- reservations ---------------------------------------------------------------------------
    @property
    def reserved(self) -> dict[str, ExtraLoad]:
        """Loads added to the network's own (keyed by application id), as :meth:`reserve` left
        them. Every load flow and check on this network counts them."""
        with self._lock:
            return dict(self._reserved)

    def reserve(self, loads: dict[str, ExtraLoad]) -> str:
        """Add loads for good (approved applications). Returns how the new base was found:
        ``"exact"`` (the exact AC load flow from the current base, no pandapower run) or
        ``"pandapower"`` (a full reference run, where the exact one cannot be used)."""
        with self._lock:
            new = {k: v for k, v in loads.items() if k not in self._reserved}
            for k, e in new.items():
                if e.cable_length_km > 0:
                    raise InputError(f"reservation {k}: a reservation cannot have a service cable")
            self._reserved.update(new)
            isl = self._islands
            if isl is None or self._whole_built():
                return self._move_base(
                    [(e.bus, e.p_mw, e.q_mvar) for e in new.values()],
                    None if isl is None else isl.reserve(new),
                )
            if not new:
                return "none"
            self.version += 1
        # only the islands hold a base: each moves under its own lock, not the whole network's
        return isl.reserve(new)

    def release(self, keys: list[str]) -> str:
        """Remove reserved loads (withdrawn applications); see :meth:`reserve`."""
        with self._lock:
            gone = {k: self._reserved.pop(k) for k in keys if k in self._reserved}
            isl = self._islands
            if isl is None or self._whole_built():
                return self._move_base(
                    [(e.bus, -e.p_mw, -e.q_mvar) for e in gone.values()],
                    None if isl is None else isl.release(gone),
                )
            if not gone:
                return "none"
            self.version += 1
        return isl.release(gone)

    def _move_base(self, changes: list[tuple[int, float, float]], islands: str | None) -> str:
        """Move the whole network's base by ``changes``; ``islands``: how the islands moved
        theirs (they were built), in which case a whole base not yet solved stays unsolved."""
        if not changes:
            return "none"
        self.version += 1
        if not self._whole_built():
            if islands is not None:
                return islands
            self._whole_base()
            return "pandapower"
        eng = self._fast
        if eng is not None:
            start = None
            if len(changes) == 1 and eng.last_solution is not None:
                key, V = eng.last_solution  # the check of this very load: a warm start
                if key == (int(changes[0][0]), float(changes[0][1]), float(changes[0][2])):
                    start = V
            try:
                res = eng.exact([(b, p, q, None) for b, p, q in changes], start)
                eng.rebase(res.V, res.S_spec)
                self._base = eng.base_state()
                return "exact"
            except Exception:  # any failure of the exact step: the reference run below decides
                pass
        # the exact load flow cannot be used here: a full reference run with every reservation
        self._base, self._base_error, self._fast = None, None, None
        with contextlib.suppress(PowerFlowError):  # kept in _base_error: not_assessable
            self._whole_base()
        return "pandapower"

    def fast_engine(self) -> FastEngine:
        """The fast engine of the whole network (one load flow of it, even when the islands
        are built: checks use the islands' own engines)."""
        self._whole_base()
        assert self._fast is not None
        return self._fast

    def run_ac_with(self, extra: list[ExtraLoad], *, building_base: bool = False) -> AcWithLoad:
        """The reference AC load flow with the reserved and ``extra`` loads added; the network's
        tables are restored after, pandapower's internal model of the run stays on the net (a
        fast engine is built from it when this run is the base: ``building_base``, which also
        skips computing the base first)."""
        with self._lock:
            if not building_base:
                self.base_state()
            extra = [*self._reserved.values(), *extra]
            net = self._work
            n_bus, n_line, n_load = len(net.bus), len(net.line), len(net.load)
            added_buses: list[int] = []
            added_lines: list[int] = []
            added_loads: list[int] = []
            cust_rows: list[int] = []
            try:
                import pandapower as pp

                for e in extra:
                    at = e.bus
                    if e.cable_length_km > 0:
                        vn = float(net.bus.at[e.bus, "vn_kv"])
                        at = pp.create_bus(net, vn_kv=vn, name="lvplan customer terminal")
                        added_buses.append(at)
                        added_lines.append(
                            pp.create_line_from_parameters(
                                net,
                                e.bus,
                                at,
                                length_km=e.cable_length_km,
                                r_ohm_per_km=e.cable_r_ohm_per_km,
                                x_ohm_per_km=e.cable_x_ohm_per_km,
                                c_nf_per_km=0.0,
                                max_i_ka=e.cable_max_i_ka,
                                name="lvplan service cable",
                            )
                        )
                    cust_rows.append(int(net.bus.index.get_loc(at)))
                    added_loads.append(
                        pp.create_load(net, at, p_mw=e.p_mw, q_mvar=e.q_mvar, name="lvplan new")
                    )
                live = self.live
                if added_buses:
                    k = len(added_buses)
                    live = LiveMasks(
                        bus=np.r_[live.bus, np.ones(k, bool)],
                        line=np.r_[live.line, np.ones(len(added_lines), bool)],
                        trafo=live.trafo,
                    )
                st = run_ac(net, live)
                cust_vm = float(st.vm_pu[cust_rows[-1]]) if cust_rows else float("nan")
                cable_pct = float(st.line_loading_percent[n_line]) if added_lines else float("nan")
                state = GridState(
                    st.vm_pu[:n_bus],
                    st.line_loading_percent[:n_line],
                    st.trafo_loading_percent,
                    engine="pandapower",
                )
                return AcWithLoad(state, cust_vm, cable_pct)
            finally:
                net.load.drop(index=added_loads, inplace=True)
                net.line.drop(index=added_lines, inplace=True)
                net.bus.drop(index=added_buses, inplace=True)
                for tab, n in (("res_bus", n_bus), ("res_line", n_line), ("res_load", n_load)):
                    if tab in net and len(net[tab]) > n:
                        net[tab] = net[tab].iloc[:n]
