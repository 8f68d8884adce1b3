"""The register on PostgreSQL (psycopg 3): several ``lvplan serve`` processes, on one machine or
several, decide on one city.

Locks are PostgreSQL advisory locks held for one transaction (``pg_advisory_xact_lock``), so a
process that dies (SIGKILL, a lost connection) releases them with its transaction:

- a decision on one MV island takes the *register* lock shared and the *island*'s lock
  exclusively: decisions on different islands run at once, two on one island take turns;
- a transaction that may touch every island (an application given by coordinates, binding a
  network, ``--migrate``) takes the register lock exclusively: it waits for the island
  decisions in progress and holds off new ones until it commits;
- creating the tables takes a lock of its own, so processes starting at once do not race.

Every event records its island, and ``island_clock`` holds the last event number of each
island, written in the same transaction. Because an island's events are all written under its
lock (or the exclusive register lock), they commit in the order of their numbers, and what any
snapshot shows of one island is a prefix of its events: a desk that remembers the last event it
counted on an island can never miss one committed later with a smaller number (which a single
counter for the whole register could, with writers on different islands committing out of
order).

Write transactions run at READ COMMITTED, so the first statement after a lock was granted sees
every commit made under that lock before; reads run in one REPEATABLE READ snapshot.
``synchronous_commit`` is the server's (on by default): an answer given after a commit survives
a crash of the server process and of PostgreSQL.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lvplan.errors import InputError, LvplanError, RegisterUnavailable
from lvplan.register.store import (
    _SELECT,
    BUSY_TIMEOUT_MS,
    NO_ISLAND,
    Application,
    DuplicateId,
    RegisterBusy,
    _row,
    insert_sql,
    insert_values,
    write_probe,
)

#: Seconds to wait for the server to accept a connection.
CONNECT_TIMEOUT_S = 5
#: Connections one process keeps open at most: its decisions take turns (the desk's lock), so
#: a few serve them, the reads and /healthz; more would only use up the server's connections.
MAX_CONNECTIONS = 4

_SCHEMA = """
CREATE TABLE IF NOT EXISTS applications (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    request_json TEXT NOT NULL,
    request_sha256 TEXT NOT NULL,
    decision_json TEXT NOT NULL,
    bus BIGINT,
    design_kw DOUBLE PRECISION NOT NULL,
    design_kvar DOUBLE PRECISION NOT NULL,
    network_fingerprint TEXT NOT NULL,
    lvplan_version TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS applications_status ON applications(status);
CREATE TABLE IF NOT EXISTS events (
    n BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL,
    island TEXT NOT NULL,
    at TEXT NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL,
    note TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_island ON events(island, n);
CREATE INDEX IF NOT EXISTS events_id ON events(id, n);
CREATE TABLE IF NOT EXISTS island_clock (island TEXT PRIMARY KEY, n BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def lock_key(name: str) -> int:
    """A signed 64-bit advisory lock key for ``name`` (a hash: two names that collide only
    take turns, which is never wrong)."""
    digest = hashlib.blake2b(f"lvplan register {name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


REGISTER_LOCK = lock_key("whole register")
SCHEMA_LOCK = lock_key("schema")


def redact(url: str) -> str:
    """The URL without its password (it goes into messages and /healthz): the one in the
    netloc and any ``password=`` among its query parameters (libpq takes both)."""
    try:
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return "postgresql://…"
    if any(k.lower() == "password" for k, _v in query):
        safe = [(k, "***" if k.lower() == "password" else v) for k, v in query]
        parts = parts._replace(query=urllib.parse.urlencode(safe, safe="*"))
    if parts.password is not None:
        user, _, host = parts.netloc.rpartition("@")
        name = user.partition(":")[0]
        parts = parts._replace(netloc=f"{name}:***@{host}")
    return urllib.parse.urlunsplit(parts)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class _Slot:
    """The connection one transaction uses (replaced when it broke before the transaction)."""

    con: Any = None


class _PgTxn:
    def __init__(self, cur):
        self.cur = cur

    def _all(self, q: str, args: tuple = ()) -> list[Application]:
        return [_row(r) for r in self.cur.execute(q, args).fetchall()]

    def get(self, app_id: str) -> Application | None:
        rows = self._all(_SELECT + " WHERE id = %s", (app_id,))
        return rows[0] if rows else None

    def insert(self, app: Application, island: str = NO_ISLAND) -> int:
        import psycopg

        try:
            self.cur.execute(
                insert_sql("%s"),
                insert_values(app),
            )
        except psycopg.errors.UniqueViolation:
            raise DuplicateId(f"id: application {app.id!r} already exists") from None
        return self._event(app.id, app.created_at, None, app.status, "decided", island)

    def _event(
        self, app_id: str, at: str, old: str | None, new: str, note: str, island: str
    ) -> int:
        (n,) = self.cur.execute(
            "INSERT INTO events (id, island, at, from_status, to_status, note) "
            "VALUES (%s,%s,%s,%s,%s,%s) RETURNING n",
            (app_id, island, at, old, new, note),
        ).fetchone()
        self.cur.execute(
            "INSERT INTO island_clock (island, n) VALUES (%s, %s) "
            "ON CONFLICT (island) DO UPDATE SET n = excluded.n",
            (island, n),
        )
        return int(n)

    def set_status(
        self, app_id: str, old: str, new: str, at: str, note: str, island: str = NO_ISLAND
    ) -> int | None:
        self.cur.execute(
            "UPDATE applications SET status = %s, updated_at = %s WHERE id = %s AND status = %s",
            (new, at, app_id, old),
        )
        if self.cur.rowcount != 1:
            return None
        return self._event(app_id, at, old, new, note, island)

    def move(
        self,
        app_id: str,
        bus: int | None,
        fingerprint: str,
        at: str,
        note: str,
        island: str = NO_ISLAND,
    ) -> int:
        (status,) = self.cur.execute(
            "UPDATE applications SET bus = %s, network_fingerprint = %s WHERE id = %s "
            "RETURNING status",
            (bus, fingerprint, app_id),
        ).fetchone()
        return self._event(app_id, at, status, status, note, island)

    def last_change(self) -> int:
        return int(self.cur.execute("SELECT coalesce(max(n), 0) FROM events").fetchone()[0])

    def clocks(self, islands: list[str] | None = None) -> dict[str | None, int]:
        """The last event number of each island named (0 for one without events), or of every
        island that has one."""
        if islands is None:
            rows = self.cur.execute("SELECT island, n FROM island_clock").fetchall()
            return {str(k): int(n) for k, n in rows}
        rows = self.cur.execute(
            "SELECT island, n FROM island_clock WHERE island = ANY(%s)", (list(islands),)
        ).fetchall()
        out: dict[str | None, int] = dict.fromkeys(islands, 0)
        out.update({str(k): int(n) for k, n in rows})
        return out

    def changed_since(self, n: int, island: str | None = None) -> list[Application]:
        if island is None:
            q = _SELECT + " WHERE id IN (SELECT id FROM events WHERE n > %s) ORDER BY seq"
            return self._all(q, (n,))
        q = (
            _SELECT + " WHERE id IN (SELECT id FROM events WHERE island = %s AND n > %s) "
            "ORDER BY seq"
        )
        return self._all(q, (island, n))

    def all(self) -> list[Application]:
        return self._all(_SELECT + " ORDER BY seq")

    def events(self, app_id: str) -> list[dict[str, Any]]:
        rows = self.cur.execute(
            "SELECT at, from_status, to_status, note FROM events WHERE id = %s ORDER BY n",
            (app_id,),
        ).fetchall()
        return [{"at": a, "from": f, "to": t, "note": n} for a, f, t, n in rows]

    def event_key(self, n: int) -> tuple[str, str] | None:
        row = self.cur.execute("SELECT id, at FROM events WHERE n = %s", (n,)).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def meta(self, key: str) -> str | None:
        row = self.cur.execute("SELECT value FROM meta WHERE key = %s", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.cur.execute(
            "INSERT INTO meta (key, value) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )


class PostgresBackend:
    """The register in a PostgreSQL database (``postgresql://user:password@host:port/db``).

    A few connections per process (``MAX_CONNECTIONS``), each used by one transaction at a
    time. A connection that breaks (the server restarted, the network went away) makes that
    transaction :class:`RegisterUnavailable` (nothing recorded, HTTP 503) and is opened again
    for the next one. A server that cannot be reached at start-up is an
    InputError (one line, exit 2): never a fallback to a file.
    """

    #: locks and change counters per MV island
    scoped = True

    def __init__(self, url: str, *, writable: bool = True):
        try:
            import psycopg  # noqa: F401
        except ImportError:  # pragma: no cover - a dependency
            raise InputError(
                "register: a postgresql:// register needs psycopg (pip install 'psycopg[binary]')"
            ) from None
        self.url = url
        self.path = redact(url)
        self.writable = writable
        self._idle: list = []  # open connections not in use
        self._guard = threading.Lock()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.last_write_error: str | None = None
        try:
            with self._connection():
                pass
        except RegisterUnavailable as exc:
            raise InputError(f"register {self.path}: cannot connect ({_cause(exc)})") from None
        try:
            if writable:
                self._create_schema()
                with self.transaction(write=True) as tx:  # proves the database can be written
                    tx.set_meta("schema", "2")
            else:
                with self.transaction(write=False) as tx:
                    exists = tx.cur.execute("SELECT to_regclass('applications')").fetchone()[0]
                    if exists is None:
                        raise InputError(f"register {self.path}: no lvplan register in it")
        except (RegisterUnavailable, RegisterBusy) as exc:
            what = "cannot be written" if writable else "cannot be read"
            raise InputError(f"register {self.path}: {what} ({_cause(exc)})") from None

    def _connect(self):
        import psycopg

        try:
            return psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name="lvplan",
            )
        except Exception as exc:  # psycopg.Error; a malformed URL: ProgrammingError, ValueError
            raise RegisterUnavailable(f"register: {_one_line(exc)}") from None

    @contextmanager
    def _connection(self) -> Iterator[_Slot]:
        """A connection for one transaction, from the process's few (``MAX_CONNECTIONS``): a
        broken one, or one left inside a transaction, is closed instead of kept."""
        from psycopg.pq import TransactionStatus

        if not self._slots.acquire(timeout=BUSY_TIMEOUT_MS / 1000.0):
            raise RegisterUnavailable(
                f"register: no free connection for {BUSY_TIMEOUT_MS / 1000:g} s; nothing recorded"
            )
        slot = _Slot()
        try:
            with self._guard:
                slot.con = self._idle.pop() if self._idle else None
            if slot.con is None or slot.con.closed:
                slot.con = self._connect()
            yield slot
        finally:
            con = slot.con
            if con is not None:
                idle = con.info.transaction_status == TransactionStatus.IDLE
                if con.closed or con.broken or not idle:
                    with contextlib.suppress(Exception):
                        con.close()
                else:
                    with self._guard:
                        self._idle.append(con)
            self._slots.release()

    def _create_schema(self) -> None:
        """The tables, once: under a lock of its own, so two processes starting at once do
        not both create them (``CREATE ... IF NOT EXISTS`` alone races in PostgreSQL)."""
        import psycopg

        with self._connection() as slot:
            con = slot.con
            try:
                with con.transaction():
                    con.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
                    for stmt in filter(None, (s.strip() for s in _SCHEMA.split(";"))):
                        con.execute(stmt)
            except psycopg.Error as exc:
                raise RegisterUnavailable(f"register: {_one_line(exc)}") from None

    @contextmanager
    def transaction(
        self, *, write: bool, wait: bool = True, islands: list[str] | None = None
    ) -> Iterator[_PgTxn]:
        """A write transaction holds the locks of ``islands`` (None: the whole register);
        ``wait=False`` raises :class:`RegisterBusy` at once when another process holds one."""
        import psycopg

        if write and not self.writable:
            raise InputError(f"register {self.path}: opened read-only")
        with self._connection() as slot:
            cur = self._begin(slot, write)
            con = slot.con
            committing = False
            try:
                if write:
                    cur.execute(f"SET LOCAL lock_timeout = {int(BUSY_TIMEOUT_MS)}")
                    self._lock(cur, islands, wait)
                yield _PgTxn(cur)
                committing = True
                cur.execute("COMMIT")
                if write:
                    self.last_write_error = None
            except psycopg.Error as exc:
                broken = con.closed or con.broken
                if not broken:
                    with contextlib.suppress(psycopg.Error):
                        con.execute("ROLLBACK")
                msg = _one_line(exc)
                if isinstance(exc, psycopg.errors.LockNotAvailable):
                    msg = f"locked by another writer for {BUSY_TIMEOUT_MS / 1000:g} s"
                if write:
                    self.last_write_error = msg
                if committing and broken:  # the server may have committed before the line went
                    raise RegisterUnavailable(
                        f"register: the connection was lost while committing ({msg}); it may "
                        "have been recorded: ask again with the same id"
                    ) from None
                raise RegisterUnavailable(f"register: {msg}; nothing recorded") from None
            except BaseException:
                if not (con.closed or con.broken):
                    with contextlib.suppress(psycopg.Error):
                        con.execute("ROLLBACK")
                raise

    def _begin(self, slot: _Slot, write: bool):
        """A cursor in a new transaction on ``slot``'s connection. A connection that broke
        since its last use (the server restarted, or ended it) is replaced once: nothing was
        sent on it yet, so nothing can be lost or done twice."""
        import psycopg

        begin = (
            "BEGIN ISOLATION LEVEL READ COMMITTED"
            if write
            else "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
        )
        for attempt in (0, 1):
            try:
                cur = slot.con.cursor()
                cur.execute(begin)
                return cur
            except psycopg.Error as exc:
                with contextlib.suppress(Exception):
                    slot.con.close()
                if attempt or not isinstance(exc, psycopg.OperationalError):
                    if write:
                        self.last_write_error = _one_line(exc)
                    raise RegisterUnavailable(
                        f"register: {_one_line(exc)}; nothing recorded"
                    ) from None
                slot.con = self._connect()
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _lock(cur, islands: list[str] | None, wait: bool) -> None:
        if islands is None:
            plan = [("", REGISTER_LOCK)]
        else:  # always in one order: two transactions never wait for each other's locks
            keys = sorted({lock_key(f"island {k}") for k in islands})
            plan = [("_shared", REGISTER_LOCK)] + [("", k) for k in keys]
        for shared, key in plan:
            if wait:
                cur.execute(f"SELECT pg_advisory_xact_lock{shared}(%s)", (key,))
                continue
            (got,) = cur.execute(f"SELECT pg_try_advisory_xact_lock{shared}(%s)", (key,)).fetchone()
            if not got:
                raise RegisterBusy("register: another writer holds it")

    def get(self, app_id: str) -> Application | None:
        with self.transaction(write=False) as tx:
            return tx.get(app_id)

    def all(self) -> list[Application]:
        with self.transaction(write=False) as tx:
            return tx.all()

    def events(self, app_id: str) -> list[dict[str, Any]]:
        with self.transaction(write=False) as tx:
            return tx.events(app_id)

    def meta(self, key: str) -> str | None:
        with self.transaction(write=False) as tx:
            return tx.meta(key)

    def health(self) -> dict[str, Any]:
        try:
            with self.transaction(write=False) as tx:
                tx.clocks([NO_ISLAND])
        except LvplanError as exc:
            return {"ok": False, "error": str(exc)}
        if self.last_write_error is not None:
            write_probe(self)
        if self.last_write_error is not None:
            return {
                "ok": False,
                "error": f"register: the last write failed: {self.last_write_error}",
            }
        return {"ok": True, "error": None}


def _cause(exc: BaseException) -> str:
    return str(exc).removeprefix("register: ").removesuffix("; nothing recorded")
