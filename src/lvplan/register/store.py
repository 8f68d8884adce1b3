"""The register of applications: every decision with its inputs, result, profile, network
fingerprint and software version (an audit trail), and the capacity approvals reserve.

States: ``approved`` (capacity reserved), ``rejected``, ``hv_required``, ``not_assessable``
(manual review), ``withdrawn`` (reservation released), ``energized`` (now part of the baseline
loads). Approved and energized applications are *reservations*: every later check counts them.

The logic talks to a :class:`Backend`; :class:`SqliteBackend` (WAL mode, synchronous=FULL, one
transaction per state change) is the default. A PostgreSQL backend implements the same five
methods.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from lvplan.errors import InputError

STATES = ("approved", "rejected", "hv_required", "not_assessable", "withdrawn", "energized")
RESERVING = ("approved", "energized")
STATUS_OF_DECISION = {
    "fits": "approved",
    "does_not_fit": "rejected",
    "hv_required": "hv_required",
    "not_assessable": "not_assessable",
}
#: Allowed state changes after the decision.
TRANSITIONS = {
    "withdraw": (("approved", "not_assessable", "rejected", "hv_required"), "withdrawn"),
    "energize": (("approved",), "energized"),
}


class Conflict(InputError):
    """The same id with a different request, or a state change that is not allowed (HTTP 409)."""


class NotFound(InputError):
    """No application with that id (HTTP 404)."""


@dataclass(frozen=True)
class Application:
    id: str
    seq: int
    status: str
    request: dict[str, Any]
    request_sha256: str
    decision: dict[str, Any]
    bus: int | None
    design_kw: float
    design_kvar: float
    network_fingerprint: str
    lvplan_version: str
    created_at: str
    updated_at: str

    @property
    def reserves(self) -> bool:
        return self.status in RESERVING

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "seq": self.seq,
            "status": self.status,
            "request": self.request,
            "decision": self.decision,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def request_hash(request: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Backend(Protocol):
    def insert(self, app: Application) -> None: ...
    def get(self, app_id: str) -> Application | None: ...
    def set_status(self, app_id: str, old: str, new: str, at: str, note: str) -> bool: ...
    def all(self) -> list[Application]: ...
    def reserving(self) -> list[Application]: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS applications (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    request_json TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    decision_json TEXT NOT NULL,
    bus INTEGER,
    design_kw REAL NOT NULL,
    design_kvar REAL NOT NULL,
    network_fingerprint TEXT NOT NULL,
    lvplan_version TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS applications_status ON applications(status);
CREATE TABLE IF NOT EXISTS events (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    at TEXT NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL,
    note TEXT NOT NULL
);
"""


class SqliteBackend:
    """SQLite in WAL mode; every write is one committed transaction (synchronous=FULL), so an
    answer given after ``insert`` returned survives a killed process."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        if self.path != ":memory:":
            parent = Path(self.path).parent
            if not parent.is_dir():
                raise InputError(f"register {self.path}: folder {parent} does not exist")
        self._local = threading.local()
        try:
            con = self._con()
            con.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise InputError(f"register {self.path}: not a usable SQLite file ({exc})") from None

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA busy_timeout=30000")
            self._local.con = con
        return con

    def insert(self, app: Application) -> None:
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute(
                "INSERT INTO applications (id, status, request_json, request_sha256, "
                "decision_json, bus, design_kw, design_kvar, network_fingerprint, lvplan_version,"
                " created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    app.id,
                    app.status,
                    json.dumps(app.request, sort_keys=True),
                    app.request_sha256,
                    json.dumps(app.decision, sort_keys=True),
                    app.bus,
                    app.design_kw,
                    app.design_kvar,
                    app.network_fingerprint,
                    app.lvplan_version,
                    app.created_at,
                    app.updated_at,
                ),
            )
            con.execute(
                "INSERT INTO events (id, at, from_status, to_status, note) VALUES (?,?,?,?,?)",
                (app.id, app.created_at, None, app.status, "decided"),
            )
            con.execute("COMMIT")
        except sqlite3.IntegrityError:
            con.execute("ROLLBACK")
            raise Conflict(f"application {app.id!r} already exists") from None
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def get(self, app_id: str) -> Application | None:
        row = self._con().execute(_SELECT + " WHERE id = ?", (app_id,)).fetchone()
        return None if row is None else _row(row)

    def set_status(self, app_id: str, old: str, new: str, at: str, note: str) -> bool:
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            cur = con.execute(
                "UPDATE applications SET status = ?, updated_at = ? WHERE id = ? AND status = ?",
                (new, at, app_id, old),
            )
            if cur.rowcount == 1:
                con.execute(
                    "INSERT INTO events (id, at, from_status, to_status, note) VALUES (?,?,?,?,?)",
                    (app_id, at, old, new, note),
                )
            con.execute("COMMIT")
            return cur.rowcount == 1
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def all(self) -> list[Application]:
        return [_row(r) for r in self._con().execute(_SELECT + " ORDER BY seq")]

    def reserving(self) -> list[Application]:
        q = _SELECT + " WHERE status IN ('approved', 'energized') ORDER BY seq"
        return [_row(r) for r in self._con().execute(q)]

    def events(self, app_id: str) -> list[dict[str, Any]]:
        rows = self._con().execute(
            "SELECT at, from_status, to_status, note FROM events WHERE id = ? ORDER BY n",
            (app_id,),
        )
        return [{"at": a, "from": f, "to": t, "note": n} for a, f, t, n in rows]


_SELECT = (
    "SELECT id, seq, status, request_json, request_sha256, decision_json, bus, design_kw, "
    "design_kvar, network_fingerprint, lvplan_version, created_at, updated_at FROM applications"
)


def _row(r) -> Application:
    return Application(
        id=r[0],
        seq=int(r[1]),
        status=r[2],
        request=json.loads(r[3]),
        request_sha256=r[4],
        decision=json.loads(r[5]),
        bus=None if r[6] is None else int(r[6]),
        design_kw=float(r[7]),
        design_kvar=float(r[8]),
        network_fingerprint=r[9],
        lvplan_version=r[10],
        created_at=r[11],
        updated_at=r[12],
    )


def open_backend(spec: str | Path) -> SqliteBackend:
    """A backend from a path or URL: ``file.db``, ``sqlite:///file.db``."""
    text = str(spec)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///") :]
    elif "://" in text:
        scheme = text.split("://", 1)[0]
        raise InputError(f"register {spec}: unsupported backend {scheme!r} (use a SQLite path)")
    return SqliteBackend(text)


def export_csv(apps: list[Application]) -> str:
    from lvplan.io.csvsafe import safe_writer  # ids, categories, names: user text, no formulas

    buf = io.StringIO()
    w = safe_writer(csv.writer(buf))
    w.writerow(
        [
            "seq",
            "id",
            "status",
            "bus",
            "declared_kw",
            "design_kw",
            "design_kvar",
            "category",
            "decision",
            "binding_kind",
            "binding_element",
            "network_fingerprint",
            "lvplan_version",
            "created_at",
            "updated_at",
        ]
    )
    for a in apps:
        d = a.decision
        b = d.get("binding") or {}
        w.writerow(
            [
                a.seq,
                a.id,
                a.status,
                "" if a.bus is None else a.bus,
                d.get("declared_kw"),
                a.design_kw,
                a.design_kvar,
                d.get("category"),
                d.get("decision"),
                b.get("kind", ""),
                b.get("element", ""),
                a.network_fingerprint,
                a.lvplan_version,
                a.created_at,
                a.updated_at,
            ]
        )
    return buf.getvalue()
