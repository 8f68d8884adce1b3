"""``--migrate``: move a register onto a changed network (a new fingerprint), or under changed
criteria (another profile, another ``--set``), or both.

Applications are mapped onto the new network by bus *name* (the bus numbers of two versions of
a network need not agree). Every reservation (approved or energized) must find its bus, or
nothing is changed and the error names the application and the bus. The reservations are then
re-checked on the new network in the order they were approved, each counting the ones before
it; they stay reservations (an approval is a promise), and each gets an event saying what the
re-check found, so the ones that no longer fit are on record. Rejected, withdrawn and other
applications keep their record; their bus is mapped where the name exists. Under changed
criteria alone, the buses stay and the reservations are re-checked the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lvplan.criteria import Criteria
from lvplan.errors import InputError
from lvplan.model.network import Network
from lvplan.register.store import Application, Backend, now


@dataclass
class Migration:
    from_fingerprint: str
    to_fingerprint: str
    applications: int = 0
    reservations: int = 0
    no_longer_fit: list[str] = field(default_factory=list)
    #: the criteria labels before and after, when the criteria changed ("" otherwise)
    from_criteria: str = ""
    to_criteria: str = ""

    def summary(self) -> str:
        tail = (
            f"; {len(self.no_longer_fit)} no longer fit: {', '.join(self.no_longer_fit[:10])}"
            if self.no_longer_fit
            else "; every reservation still fits"
        )
        moves = []
        if self.from_fingerprint != self.to_fingerprint:
            moves.append(f"from network {self.from_fingerprint[:12]} to {self.to_fingerprint[:12]}")
        if self.to_criteria:
            moves.append(f"from criteria {self.from_criteria} to {self.to_criteria}")
        return (
            f"register migrated {' and '.join(moves)}: {self.applications} applications, "
            f"{self.reservations} reservations re-checked{tail}"
        )


def _bus_by_name(network: Network) -> dict[str, int]:
    bus = network.pp.bus
    if "name" not in bus.columns:
        return {}
    names = bus.name.astype(str)
    counts = names.value_counts()
    return {n: int(i) for i, n in zip(bus.index, names, strict=True) if counts[n] == 1}


def migrate_register(register: Backend, network: Network, criteria: Criteria) -> Migration | None:
    """Migrate ``register`` onto ``network``; None when it already belongs to it."""
    from lvplan.decision import check
    from lvplan.model.topology import mv_islands
    from lvplan.register.desk import _reservable_copy, island_key, reservation_of

    fp = network.fingerprint
    with register.transaction(write=True) as tx:
        held = tx.meta("network_fingerprint")
        held_criteria = tx.meta("criteria_fingerprint")
        apps = tx.all()
        if held is None:
            others = {a.network_fingerprint for a in apps} - {fp}
            held = next(iter(others), fp)
        new_criteria = held_criteria not in (None, criteria.fingerprint)
        if held == fp and not new_criteria:
            return None
        names = _bus_by_name(network) if held != fp else {}
        moved: dict[str, int | None] = {}
        missing: list[str] = []
        for a in apps:
            if held == fp:  # the same network: every application stays at its bus
                moved[a.id] = a.bus
                continue
            name = str(a.decision.get("bus_name") or "")
            new = names.get(name) if a.bus is not None else None
            if a.reserves and new is None:
                missing.append(f"application {a.id!r} at bus {name or a.bus!r}")
            moved[a.id] = new
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise InputError(
                f"register {register.path}: cannot migrate to network {network.name}: "
                f"{missing[0]} has no bus of that name there{more}"
            )
        report = Migration(held, fp, applications=len(apps))
        if new_criteria:
            report.from_criteria = tx.meta("criteria_label") or str(held_criteria)[:12]
            report.to_criteria = criteria.label
        work = _reservable_copy(network)
        islands = mv_islands(network.pp)
        at = now()
        for a in apps:
            note = (
                f"migrated to network {network.name} ({fp[:12]}): bus {a.bus} -> {moved[a.id]}"
                if held != fp
                else f"migrated to criteria {criteria.label} ({criteria.fingerprint[:12]})"
            )
            if a.reserves:
                report.reservations += 1
                d = _recheck(check, work, a, moved[a.id], criteria)
                note += f"; re-check: {d}"
                if d != "fits":
                    report.no_longer_fit.append(a.id)
                bus = moved[a.id]
                assert bus is not None
                work.reserve({a.id: reservation_of(work, criteria, a, bus)})
            tx.move(a.id, moved[a.id], fp, at, note, island_key(islands, moved[a.id]))
        tx.set_meta("network_fingerprint", fp)
        tx.set_meta("network_name", network.name)
        tx.set_meta("criteria_fingerprint", criteria.fingerprint)
        tx.set_meta("criteria_label", criteria.label)
    return report


def _recheck(check, work: Network, a: Application, bus: int | None, criteria: Criteria) -> str:
    from lvplan.register.desk import cable_of

    req = a.request
    d = check(
        work,
        bus=bus,
        kw=req["kw"],
        category=req.get("category"),
        pf=req.get("pf"),
        criteria=criteria,
        headroom=False,
        cable=cable_of(a),
    )
    return str(d.decision)
