"""The application desk: decide an application against the network *plus every reservation*,
record it, and keep the reserved network current.

Reservations (approved and energized applications) are loads of the desk's own copy of the
network (:meth:`Network.reserve`): each approval moves the base by the exact AC load flow,
started from the decision's own solution, so the next decision already counts it, exactly and
without a pandapower run. Every decision runs under one lock, so two applications can never
both take the same headroom; the register write commits before the answer is returned.

Across processes the register's transactions are the lock: SQLite's write lock for the whole
register, or, on PostgreSQL, the lock of the decision's *MV island* (the buses that stay
connected when the slack buses are cut, :func:`lvplan.model.topology.mv_islands`): islands do
not move each other's voltages or currents, so decisions on different islands never need to
wait for each other, and the desk catches up island by island.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

from lvplan.code_id import code_id
from lvplan.criteria import Criteria
from lvplan.decision import (
    MIN_KW,
    Cable,
    Decision,
    check,
    reserved_load,
    resolve_criteria,
    stored_cable,
)
from lvplan.errors import InputError, LvplanError, PowerFlowError, RegisterUnavailable
from lvplan.model.network import ExtraLoad, Network
from lvplan.register.fields import check_id
from lvplan.register.locks import IslandLocks
from lvplan.register.store import (
    NO_ISLAND,
    STATUS_OF_DECISION,
    TRANSITIONS,
    Application,
    Backend,
    Conflict,
    DuplicateId,
    NotFound,
    Txn,
    now,
    request_hash,
)

FIELDS = {"id", "bus", "lon", "lat", "kw", "category", "pf", "area_class"}


def normalise_request(body: Any, *, need_id: bool) -> dict[str, Any]:
    """The validated request as stored (raises InputError naming the field)."""
    if not isinstance(body, dict):
        raise InputError("body: expected a JSON object")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise InputError(f"{unknown[0]}: unknown field")
    out: dict[str, Any] = {}
    if need_id:
        out["id"] = check_id(body.get("id"))
    has_bus = body.get("bus") is not None
    has_loc = body.get("lon") is not None or body.get("lat") is not None
    if has_bus == has_loc:
        raise InputError("bus: give either bus or both lon and lat")
    if has_bus:
        bus = body["bus"]
        if isinstance(bus, bool) or not isinstance(bus, int | str):
            raise InputError("bus: must be an integer index or a bus name")
        out["bus"] = bus
    else:
        for k in ("lon", "lat"):
            v = body.get(k)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise InputError(f"{k}: must be a finite number")
            out[k] = float(v)
    if body.get("area_class") is not None:  # by bus too: it says whether N-1 applies
        if not isinstance(body["area_class"], str):
            raise InputError("area_class: must be a string (A+, A, B, C, D or E)")
        out["area_class"] = body["area_class"]
    kw = body.get("kw")
    if isinstance(kw, bool) or not isinstance(kw, int | float):
        raise InputError("kw: must be a number")
    if not math.isfinite(kw) or kw < MIN_KW:
        raise InputError(f"kw: must be a finite number of at least {MIN_KW:g} kW")
    out["kw"] = float(kw)
    if body.get("category") is not None:
        if not isinstance(body["category"], str):
            raise InputError("category: must be a string")
        if not body["category"].strip():  # (it was decided as the default and stored as "":
            # the same application without it was then another request, 409; probe helper-79)
            raise InputError("category: must not be empty (leave it out for the default)")
        out["category"] = body["category"]
    if body.get("pf") is not None:
        pf = body["pf"]
        if isinstance(pf, bool) or not isinstance(pf, int | float) or not 0 < pf <= 1:
            raise InputError("pf: must be a number in (0, 1]")
        out["pf"] = float(pf)
    return out


_FIELDS_NAMED = ("category", "bus", "pf", "area_class", "lon", "lat", "kw")


@contextlib.contextmanager
def named_field() -> Iterator[None]:
    """Make an InputError's message start with the request field it is about (``bus: ...``),
    as the service's error body and ``check-batch`` report it."""
    try:
        yield
    except InputError as exc:
        msg = str(exc)
        head = msg.split(":")[0]
        if head in _FIELDS_NAMED:
            raise
        if msg.startswith("unknown area class"):
            raise InputError(f"area_class: {msg}") from None
        for f in _FIELDS_NAMED:
            if f in head or msg.startswith(f"unknown {f}") or msg.startswith(f"{f} "):
                raise InputError(f"{f}: {msg}") from None
        raise


def validate_request(network: Network, criteria: Criteria, req: dict[str, Any]) -> None:
    """Everything about a normalised request that can be known without a load flow: the bus
    exists and is LV, the category is known, kW, pf, lon/lat and area class are valid. Raises
    InputError naming the field (``check-batch`` validates its whole file with it first)."""
    from lvplan.criteria import category as get_category
    from lvplan.decision import make_question

    with named_field():
        if "bus" in req:
            make_question(
                network,
                bus=req["bus"],
                kw=req["kw"],
                category=req.get("category"),
                pf=req.get("pf"),
                criteria=criteria,
            )
            cls = req.get("area_class")
            if cls is not None and cls not in criteria.supply_radius_m:
                known = ", ".join(criteria.supply_radius_m)
                raise InputError(f"area_class: unknown area class {cls!r}; known: {known}")
            return
        get_category(req.get("category") or criteria.default_category)
        for k, lim in (("lon", 180.0), ("lat", 90.0)):
            if not -lim <= req[k] <= lim:
                raise InputError(f"{k}: must be within ±{lim:g} degrees, got {req[k]!r}")
        cls = req.get("area_class") or criteria.default_area_class
        if cls not in criteria.supply_radius_m:
            known = ", ".join(criteria.supply_radius_m)
            raise InputError(f"area_class: unknown area class {cls!r}; known: {known}")


def island_key(islands, bus: int | None) -> str:
    """The register's name for the MV island of ``bus`` (``islands``: the
    :func:`~lvplan.model.topology.mv_islands` of the network); NO_ISLAND when there is none."""
    if bus is None:
        return NO_ISLAND
    key = islands.get(int(bus))
    return NO_ISLAND if key is None else str(int(key))


def bind_network(register: Backend, network: Network) -> None:
    """A register belongs to one network (its fingerprint is stored with it). Binds a new
    register to ``network``; refuses (InputError) a register of another network."""
    fp = network.fingerprint
    write = register.writable
    with register.transaction(write=write) as tx:
        held = tx.meta("network_fingerprint")
        if held is None:
            other = [a for a in tx.all() if a.network_fingerprint != fp]
            if other:
                held = other[0].network_fingerprint
            elif write:
                tx.set_meta("network_fingerprint", fp)
                tx.set_meta("network_name", network.name)
                return
            else:
                return
        if held != fp:
            name = tx.meta("network_name") or "another network"
            raise InputError(
                f"register {register.path} belongs to network {name} (fingerprint {held[:12]}), "
                f"not {network.name} ({fp[:12]}); give --migrate to re-check its applications "
                "on this network"
            )


def bind_criteria(register: Backend, criteria: Criteria) -> None:
    """A register is decided under one set of criteria (their fingerprint is stored with it):
    an approval under looser limits would be counted as a promise by every later decision.
    Binds a register that holds none (a new one, or one made before criteria were bound) to
    ``criteria`` when writable; refuses (InputError) a writer with other criteria. A reader
    (``check --register``) may ask what-if under any criteria: it reserves nothing."""
    fp = criteria.fingerprint
    if not register.writable:
        return
    with register.transaction(write=True) as tx:
        held = tx.meta("criteria_fingerprint")
        if held is None:
            tx.set_meta("criteria_fingerprint", fp)
            tx.set_meta("criteria_label", criteria.label)
        elif held != fp:
            raise InputError(
                f"register {register.path} is decided under criteria "
                f"{tx.meta('criteria_label') or '?'} ({held[:12]}), not {criteria.label} "
                f"({fp[:12]}); give the same --profile/--set, or --migrate to re-check its "
                "reservations under these criteria"
            )


class Desk:
    """Decisions against the network plus every reservation the register holds.

    The desk keeps a private copy of the network whose reserved loads are the register's
    approved and energized applications. Every decision runs in one register transaction: a
    write transaction for an application (it holds the register's write lock, so no other
    server or batch, in any process, decides in between), in which the desk first catches up
    with what other writers approved or released since it last looked (one exact AC load flow,
    :meth:`Network.reserve`; nothing to do when the register's change counter has not moved),
    then decides, records, and commits. The reservation is added to the network only once the
    commit succeeded. A thread lock serialises the decisions of this process.

    On a scoped register (PostgreSQL) the transaction holds the lock of the application's MV
    island only, and the catch-up reads that island's changes: ``seen`` holds the last event
    counted on each island (on SQLite, one counter under the key None).
    """

    def __init__(
        self,
        network: Network,
        register: Backend,
        criteria: Criteria | None = None,
        *,
        migrate: bool = False,
        changes=None,
        cache_dir=None,
        prepare_jobs: int = 1,
        progress=None,
    ):
        """``changes`` (:class:`lvplan.Changes`): the desk serves the network with those changes
        made (a register then belongs to the changed network's fingerprint). The network's MV
        islands are solved and prepared first (:meth:`Network.prepare_islands`: in
        ``prepare_jobs`` processes where it pays, from and to ``cache_dir`` when given,
        ``progress(done, total)``), before the register's reservations are counted."""
        if changes is not None:
            network = network.with_changes(changes)
        self.pristine = network
        self.register = register
        self.criteria = resolve_criteria(criteria)
        #: one lock per island, and the gate over them all (:mod:`lvplan.register.locks`)
        self.lock = IslandLocks()
        self.network = _reservable_copy(network)
        from lvplan.model.topology import mv_islands

        self.islands = mv_islands(network.pp)
        #: per change counter (an island's, or None: the whole register's), the event that
        #: ``network`` counts the reservations up to, and (id, time) of that event
        self.seen: dict[str | None, int] = {}
        self.seen_key: dict[str | None, tuple[str, str] | None] = {}
        self.migration = None
        if migrate:
            from lvplan.register.migrate import migrate_register

            self.migration = migrate_register(register, network, self.criteria)
        bind_network(register, network)
        bind_criteria(register, self.criteria)
        # reservations then move only their own island's base
        self.prepared = self.network.prepare_islands(
            workers=prepare_jobs, cache_dir=cache_dir, progress=progress
        )
        with self.lock, self.register.transaction(write=False) as tx:
            self._catch_up(tx)

    def _scope(self, req: dict[str, Any]) -> list[str] | None:
        """The islands a decision on ``req`` locks and catches up on a scoped register: its
        bus's island, or None (every island) when the bus is not known before the decision
        (coordinates, or a bus the decision will refuse)."""
        if not self.register.scoped or "bus" not in req:
            return None
        try:
            bus = self.pristine.resolve_bus(req["bus"])
        except InputError:
            return None
        return [island_key(self.islands, bus)]

    def _counter(self, island: str) -> str | None:
        return island if self.register.scoped else None

    def health(self) -> dict[str, Any]:
        """The register's health (``{"ok", "error"}``), and whether it is still bound to this
        desk's network and criteria: after another process migrated it, every decision is
        503, and so is /healthz (it said ok, and a balancer kept sending traffic)."""
        reg = self.register.health()
        if not reg["ok"]:
            return reg
        try:
            with self.register.transaction(write=False) as tx:
                self._check_binding(tx)
        except RegisterUnavailable as exc:
            return {"ok": False, "error": str(exc)}
        return reg

    def _check_binding(self, tx: Txn) -> None:
        """RegisterUnavailable when the register now belongs to another network, or (for a
        writer) is decided under other criteria: a ``--migrate`` by another process."""
        bound = tx.meta("network_fingerprint")
        if bound is not None and bound != self.pristine.fingerprint:
            raise RegisterUnavailable(
                f"register: it now belongs to network {tx.meta('network_name') or '?'} "
                f"({bound[:12]}), not {self.pristine.name} ({self.pristine.fingerprint[:12]}): "
                "restart with the network it was migrated to"
            )
        under = tx.meta("criteria_fingerprint")
        if self.register.writable and under is not None and under != self.criteria.fingerprint:
            raise RegisterUnavailable(
                f"register: it is now decided under criteria {tx.meta('criteria_label') or '?'}"
                f" ({under[:12]}), not {self.criteria.label} ({self.criteria.fingerprint[:12]}):"
                " restart with the criteria it was migrated to"
            )

    def _catch_up(self, tx: Txn, islands: list[str] | None = None) -> None:
        """Bring the reserved loads up to what the register holds now (call under the lock,
        inside a transaction, so the snapshot is the one the decision is made against): on
        ``islands`` (a scoped register), or everywhere (None).

        First, that the register is still the one this desk counted: bound to this network
        (a ``--migrate`` by another process re-homes it), and its event log still holding the
        last event counted (a register restored from a backup rewinds it). Otherwise nothing
        can be decided until a restart (RegisterUnavailable: 503)."""
        self._check_binding(tx)
        if not self.register.scoped:
            clocks = tx.clocks()
        elif islands is None:
            clocks = dict.fromkeys(self.seen, 0) | tx.clocks()
        else:
            clocks = tx.clocks(islands)
        one = len(clocks) == 1
        held = self.network.reserved
        add: dict[str, ExtraLoad] = {}
        drop: set[str] = set()
        moved: dict[str | None, int] = {}
        for scope, last in clocks.items():
            seen = self.seen.get(scope, 0)
            if seen and (
                last < seen
                or ((one or last != seen) and tx.event_key(seen) != self.seen_key.get(scope))
            ):
                raise RegisterUnavailable(
                    "register: its history changed behind this process (restored from a "
                    "backup?); restart to count what it holds now"
                )
            if last == seen:
                continue
            moved[scope] = last
            self._changes(tx.changed_since(seen, scope), held, add, drop)
        if drop:
            self.network.release(sorted(drop))
        if add:
            self.network.reserve(add)
        for scope, n in moved.items():
            self._saw(tx, scope, n)

    def _changes(
        self,
        apps: list[Application],
        held: dict[str, ExtraLoad],
        add: dict[str, ExtraLoad],
        drop: set[str],
    ) -> None:
        for a in apps:
            if a.reserves and a.id not in held:
                if a.network_fingerprint != self.pristine.fingerprint:
                    raise RegisterUnavailable(
                        f"register: application {a.id!r} was decided on another network "
                        f"({a.network_fingerprint[:12]}): restart with the register's network"
                    )
                if a.bus is None or a.bus not in self.network.pp.bus.index:
                    name = a.decision.get("bus_name") or a.bus
                    raise InputError(
                        f"register {self.register.path}: application {a.id!r} reserves load at "
                        f"bus {name!r}, which network {self.pristine.name} does not have"
                    )
                add[a.id] = self._load_of(a)
            elif not a.reserves and a.id in held:
                drop.add(a.id)

    def _load_of(self, app: Application) -> ExtraLoad:
        assert app.bus is not None
        return reservation_of(self.network, self.criteria, app, int(app.bus))

    def _saw(self, tx: Txn, scope: str | None, n: int) -> None:
        self.seen[scope] = n
        self.seen_key[scope] = tx.event_key(n) if n else None

    def warm(self) -> None:
        """Compute what the first decisions would (base load flow, every LV area of the fast
        engine with its sensitivities, the Jacobian's LU, the limits)."""
        from lvplan.decision import _context

        with self.lock:
            net = self.network
            islands = net.islands()
            for one in [net] if islands is None else list(islands.nets.values()):
                try:
                    one.base_state()
                except PowerFlowError:
                    continue  # its decisions say not_assessable, with the reason
                eng = one.fast_engine()
                eng._factor()
                eng.prepare()
                _context(one, self.criteria)
            _ = net.topology
            # one check (nothing recorded) runs whatever the first decision would build lazily
            lv = net.pp.bus.index[(net.bus_vn_kv < 1.0) & net.live.bus]
            if len(lv):
                with contextlib.suppress(LvplanError):
                    self._decide({"bus": int(lv[0]), "kw": 1.0}, net)

    # -- decisions -----------------------------------------------------------------------------
    def _decide(self, req: dict[str, Any], network: Network) -> Decision:
        with named_field():
            return self._decide_raw(req, network)

    def _decide_raw(self, req: dict[str, Any], network: Network) -> Decision:
        if "bus" in req:
            return check(
                network,
                bus=req["bus"],
                kw=req["kw"],
                category=req.get("category"),
                pf=req.get("pf"),
                criteria=self.criteria,
                area_class=req.get("area_class"),
            )
        from lvplan.locate import check_location

        return check_location(
            network,
            lon=req["lon"],
            lat=req["lat"],
            kw=req["kw"],
            category=req.get("category"),
            pf=req.get("pf"),
            criteria=self.criteria,
            area_class=req.get("area_class"),
        )

    def check(self, body: Any) -> dict[str, Any]:
        """The answer without reserving (counts the reservations the register holds now)."""
        req = normalise_request(body, need_id=False)
        scope = self._scope(req)
        with self.lock.hold(scope):
            with self.register.transaction(write=False) as tx:
                self._catch_up(tx, scope)
            return self._decide(req, self.network).to_dict()

    def apply(self, body: Any, *, wait: bool = True) -> tuple[Application, bool]:
        """Decide and record an application; idempotent on its id. Returns (app, created).
        ``wait=False``: RegisterBusy at once if another writer holds the register."""
        req = normalise_request(body, need_id=True)
        try:
            return self._apply(req, wait)
        except DuplicateId:  # recorded by another process at this moment: its answer counts
            return self._apply(req, wait)

    def _apply(self, req: dict[str, Any], wait: bool) -> tuple[Application, bool]:
        h = request_hash(req)
        islands = self._scope(req)
        with self.lock.hold(islands):
            with self.register.transaction(write=True, wait=wait, islands=islands) as tx:
                old = tx.get(req["id"])
                if old is not None:
                    if old.request_sha256 != h:
                        raise Conflict(f"id: application {req['id']!r} exists with another request")
                    return old, False
                self._catch_up(tx, islands)
                d = self._decide(req, self.network)
                island = island_key(self.islands, d.bus)
                if islands is not None and island not in islands:  # pragma: no cover
                    raise RegisterUnavailable(f"register: decided on island {island}, not locked")
                t = now()
                n = tx.insert(
                    Application(
                        id=req["id"],
                        seq=0,
                        status=STATUS_OF_DECISION[d.decision],
                        request=req,
                        request_sha256=h,
                        decision=d.to_dict(),
                        bus=d.bus,
                        design_kw=d.design_kw,
                        design_kvar=d.design_kvar,
                        network_fingerprint=self.pristine.fingerprint,
                        lvplan_version=code_id(),
                        created_at=t,
                        updated_at=t,
                    ),
                    island,
                )
                stored = tx.get(req["id"])
            assert stored is not None
            # committed: only now does the network count it (a failed commit reserves nothing)
            if stored.reserves:
                self.network.reserve({stored.id: self._load_of(stored)})
            self._own(island, n, (stored.id, t))
            return stored, True

    def _own(self, island: str, n: int, key: tuple[str, str]) -> None:
        """Event ``n``, just committed by this desk under its lock(s), is counted: nothing on
        its counter can have come between the catch-up and it."""
        scope = self._counter(island)
        self.seen[scope], self.seen_key[scope] = n, key

    def transition(self, app_id: str, action: str, *, wait: bool = True) -> Application:
        allowed, new = TRANSITIONS[action]
        islands = None
        if self.register.scoped:  # the island of its bus (which only --migrate changes)
            known = self.register.get(app_id)
            if known is not None:
                islands = [island_key(self.islands, known.bus)]
        with self.lock.hold(islands):
            with self.register.transaction(write=True, wait=wait, islands=islands) as tx:
                app = tx.get(app_id)
                if app is None:
                    raise NotFound(f"id: no application {app_id!r}")
                if app.status == new:
                    return app  # idempotent
                if app.status not in allowed:
                    raise Conflict(f"status: cannot {action} an application that is {app.status}")
                self._catch_up(tx, islands)
                island = island_key(self.islands, app.bus)
                if islands is not None and island not in islands:
                    raise RegisterUnavailable(
                        f"register: application {app_id!r} was moved meanwhile; try again"
                    )
                at = now()
                n = tx.set_status(app_id, app.status, new, at, action, island)
                if n is None:  # pragma: no cover - the write lock is held
                    raise Conflict(f"status: {app_id!r} changed meanwhile")
                stored = tx.get(app_id)
            assert stored is not None
            if not stored.reserves:
                self.network.release([app_id])
            self._own(island, n, (app_id, at))
            return stored

    def get(self, app_id: str) -> Application:
        app = self.register.get(app_id)
        if app is None:
            raise NotFound(f"id: no application {app_id!r}")
        return app

    # -- live capacity (counts the reservations) ----------------------------------------------
    def transformer_capacity(self) -> dict[str, Any]:
        with self.lock:
            with self.register.transaction(write=False) as tx:
                self._catch_up(tx)
            network = self.network
            base = network.base_state()
            reserved = network.reserved
        net = network.pp
        tr = net.trafo
        topo = network.topology
        by_trafo: dict[int, float] = {}
        for load in reserved.values():
            area = topo.area_of(int(load.bus))
            if area is not None and area.trafos:
                t0 = area.trafos[0]
                by_trafo[t0] = by_trafo.get(t0, 0.0) + load.p_mw * 1000.0
        out = []
        from lvplan.criteria.judge import Limits

        limits = Limits(net, self.criteria)
        for k, t in enumerate(tr.index):
            if not (tr.at[t, "vn_hv_kv"] <= 35 and tr.at[t, "vn_lv_kv"] < 1):
                continue
            rated = float(tr.at[t, "sn_mva"]) * 1000.0
            ld = float(base.trafo_loading_percent[k])
            name = tr.at[t, "name"] if "name" in tr.columns else None
            out.append(
                {
                    "trafo": int(t),
                    "name": name if isinstance(name, str) else f"trafo {int(t)}",
                    "rated_kva": round(rated, 1),
                    "loading_percent": round(ld, 2) if math.isfinite(ld) else None,
                    "headroom_kva": _round(limits.trafo_headroom_kva(ld, rated)),
                    "reserved_kw": round(by_trafo.get(int(t), 0.0), 1),
                    "feeder": topo.trafo_feeder.get(int(t)),
                }
            )
        return {
            "reservations": len(reserved),
            "network_fingerprint": self.pristine.fingerprint,
            "transformers": out,
        }

    def bus_capacity(self, transformer: str) -> dict[str, Any]:
        """Hosting capacity (design kW, the map's search) of every LV bus of one transformer,
        reservations counted: one pass over its area (:func:`lvplan.hosting.area_capacity`)."""
        from lvplan.hosting import area_capacity

        with self.lock:
            with self.register.transaction(write=False) as tx:
                self._catch_up(tx)
            network = self.network
            tr = network.pp.trafo
            names = tr["name"] if "name" in tr.columns else None
            hit = [
                int(t)
                for t in tr.index
                if str(t) == transformer or (names is not None and names.at[t] == transformer)
            ]
            if not hit:
                raise NotFound(f"transformer: no transformer {transformer!r}")
            t = hit[0]
            lv_bus = int(tr.at[t, "lv_bus"])
            if network.topology.area_of(lv_bus) is None:
                return {"transformer": t, "buses": []}
            table = area_capacity(network, lv_bus=lv_bus, criteria=self.criteria)
        rows = [
            {
                "bus": int(r.bus),
                "name": r.name,
                "headroom_kw": float(r.hosting_kw),
                "binding": {"kind": r.binding_kind, "element": r.binding_element},
            }
            for r in table.itertuples(index=False)
        ]
        return {"transformer": t, "buses": rows}


def _round(x: float | None, nd: int = 1) -> float | None:
    return None if x is None else round(x, nd)


def reservation_of(network: Network, criteria: Criteria, app: Application, bus: int) -> ExtraLoad:
    """What an approved application reserves at ``bus``: its load, behind its service cable
    if it has one (:func:`lvplan.decision.reserved_load`). The desk and ``--migrate`` both."""
    return reserved_load(
        network, criteria, bus, app.design_kw / 1000.0, app.design_kvar / 1000.0, cable_of(app)
    )


def cable_of(app: Application) -> Cable | None:
    """The service cable an application's decision sized (None: connected at the bus)."""
    return stored_cable(app.decision.get("service_cable"))


def _reservable_copy(network: Network) -> Network:
    """A network of its own for the desk's reservations (the tables are shared read-only; the
    working copy that load flows use is private). Topology, energised elements and identity are
    the pristine network's: loads change none of them."""
    out = Network(network.pp, name=network.name, source=network.source, validate=False)
    out.__dict__["topology"] = network.topology
    out.__dict__["live"] = network.live
    out.__dict__["fingerprint"] = network.fingerprint
    return out
