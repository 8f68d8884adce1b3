"""The register of applications: every decision with its inputs, result, profile, network
fingerprint and software version (an audit trail), and the capacity approvals reserve.

States: ``approved`` (capacity reserved), ``rejected``, ``hv_required``, ``not_assessable``
(manual review), ``withdrawn`` (reservation released), ``energized`` (now part of the baseline
loads). Approved and energized applications are *reservations*: every later check counts them.

The logic talks to a :class:`Backend`: transactions (a write transaction holds the register's
write lock across processes, or, on a *scoped* backend, the locks of the MV islands it names)
and a monotonic change counter (the event log's number), so every decision counts what the
register holds at that moment, whoever else writes to it. :class:`SqliteBackend` (WAL mode,
synchronous=FULL, one transaction per state change) is the default; ``postgresql://`` URLs open
:class:`lvplan.register.postgres.PostgresBackend` (several servers, on several machines). A
register belongs to one network: its fingerprint is kept in the ``meta`` table.
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import hashlib
import io
import json
import os
import random
import re
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from lvplan.errors import InputError, LvplanError, RegisterUnavailable

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


#: How long a writer waits for another's transaction before the register is "unavailable".
BUSY_TIMEOUT_MS = 30000


class RegisterBusy(RegisterUnavailable):
    """Another writer holds the register's write lock (only with ``wait=False``)."""


class Conflict(InputError):
    """The same id with a different request, or a state change that is not allowed (HTTP 409)."""


class DuplicateId(Conflict):
    """Another writer recorded the same id at the same moment (PostgreSQL: on another island,
    so under another lock): the desk decides again, and then finds it."""


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


#: The island of an event whose application has no bus (an unlocated application).
NO_ISLAND = "-"


class Txn(Protocol):
    """One transaction on the register: a consistent snapshot; a write transaction also holds
    the register's write lock (no other writer, in any process, until it commits) or, on a
    scoped backend, the locks of its islands.

    Every state change is an event on one MV island (``island``: the key of its bus's island,
    :func:`lvplan.model.topology.mv_islands`). ``clocks`` are the change counters: on a scoped
    backend one per island (the last event on it), else one for the whole register (key None).
    """

    def get(self, app_id: str) -> Application | None: ...
    def insert(self, app: Application, island: str = NO_ISLAND) -> int: ...
    def set_status(
        self, app_id: str, old: str, new: str, at: str, note: str, island: str = NO_ISLAND
    ) -> int | None: ...
    def move(
        self,
        app_id: str,
        bus: int | None,
        fingerprint: str,
        at: str,
        note: str,
        island: str = NO_ISLAND,
    ) -> int: ...
    def last_change(self) -> int: ...
    def clocks(self, islands: list[str] | None = None) -> dict[str | None, int]: ...
    def all(self) -> list[Application]: ...
    def changed_since(self, n: int, island: str | None = None) -> list[Application]: ...
    def meta(self, key: str) -> str | None: ...
    def event_key(self, n: int) -> tuple[str, str] | None: ...
    def set_meta(self, key: str, value: str) -> None: ...


class Backend(Protocol):
    """What the desk needs of a register. ``transaction(write=True)`` serialises writers across
    processes: the whole register (SQLite), or, on a *scoped* backend (``scoped = True``,
    PostgreSQL), the MV islands named in ``islands`` (None: every island). Every state change
    appends an event whose number is a monotonic change counter, so a desk catches up with
    other writers cheaply: on a scoped backend island by island."""

    path: str
    writable: bool
    scoped: bool

    def transaction(
        self, *, write: bool, wait: bool = True, islands: list[str] | None = None
    ) -> AbstractContextManager[Txn]: ...
    def get(self, app_id: str) -> Application | None: ...
    def all(self) -> list[Application]: ...
    def events(self, app_id: str) -> list[dict[str, Any]]: ...
    def meta(self, key: str) -> str | None: ...
    def health(self) -> dict[str, Any]: ...


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
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


_INSERT_COLUMNS = (
    "id, status, request_json, request_sha256, decision_json, bus, design_kw, design_kvar, "
    "network_fingerprint, lvplan_version, created_at, updated_at"
)


def insert_sql(placeholder: str) -> str:
    """The one INSERT of an application, with the backend's placeholder ("?" or "%s")."""
    return f"INSERT INTO applications ({_INSERT_COLUMNS}) VALUES ({', '.join([placeholder] * 12)})"


def insert_values(app: Application) -> tuple:
    """An application's row, in the order of :func:`insert_sql`."""
    return (
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
    )


class _SqliteTxn:
    def __init__(self, con: sqlite3.Connection):
        self.con = con

    def get(self, app_id: str) -> Application | None:
        row = self.con.execute(_SELECT + " WHERE id = ?", (app_id,)).fetchone()
        return None if row is None else _row(row)

    def insert(self, app: Application, island: str = NO_ISLAND) -> int:
        try:
            self.con.execute(
                insert_sql("?"),
                insert_values(app),
            )
        except sqlite3.IntegrityError:
            raise DuplicateId(f"id: application {app.id!r} already exists") from None
        return self._event(app.id, app.created_at, None, app.status, "decided")

    def _event(self, app_id: str, at: str, old: str | None, new: str, note: str) -> int:
        cur = self.con.execute(
            "INSERT INTO events (id, at, from_status, to_status, note) VALUES (?,?,?,?,?)",
            (app_id, at, old, new, note),
        )
        return int(cur.lastrowid or 0)

    def set_status(
        self, app_id: str, old: str, new: str, at: str, note: str, island: str = NO_ISLAND
    ) -> int | None:
        """The new event's number, or None when the application is not in state ``old``."""
        cur = self.con.execute(
            "UPDATE applications SET status = ?, updated_at = ? WHERE id = ? AND status = ?",
            (new, at, app_id, old),
        )
        return self._event(app_id, at, old, new, note) if cur.rowcount == 1 else None

    def move(
        self,
        app_id: str,
        bus: int | None,
        fingerprint: str,
        at: str,
        note: str,
        island: str = NO_ISLAND,
    ) -> int:
        """Re-home an application on another network (``--migrate``), with an event."""
        self.con.execute(
            "UPDATE applications SET bus = ?, network_fingerprint = ? WHERE id = ?",
            (bus, fingerprint, app_id),
        )
        (status,) = self.con.execute(
            "SELECT status FROM applications WHERE id = ?", (app_id,)
        ).fetchone()
        return self._event(app_id, at, status, status, note)

    def last_change(self) -> int:
        return int(self.con.execute("SELECT coalesce(max(n), 0) FROM events").fetchone()[0])

    def clocks(self, islands: list[str] | None = None) -> dict[str | None, int]:
        """One counter for the whole register: SQLite's write lock covers every island."""
        return {None: self.last_change()}

    def changed_since(self, n: int, island: str | None = None) -> list[Application]:
        q = _SELECT + " WHERE id IN (SELECT id FROM events WHERE n > ?) ORDER BY seq"
        return [_row(r) for r in self.con.execute(q, (n,))]

    def all(self) -> list[Application]:
        return [_row(r) for r in self.con.execute(_SELECT + " ORDER BY seq")]

    def events(self, app_id: str) -> list[dict[str, Any]]:
        rows = self.con.execute(
            "SELECT at, from_status, to_status, note FROM events WHERE id = ? ORDER BY n",
            (app_id,),
        )
        return [{"at": a, "from": f, "to": t, "note": n} for a, f, t, n in rows]

    def event_key(self, n: int) -> tuple[str, str] | None:
        """(application id, time) of event ``n``: what a desk remembers of the last event it
        counted, to notice a register rewritten behind it (restored from a backup)."""
        row = self.con.execute("SELECT id, at FROM events WHERE n = ?", (n,)).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    def meta(self, key: str) -> str | None:
        row = self.con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))


def _orphans(p: Path) -> list[str]:
    """The ``-wal``/``-shm``/``-journal`` files beside ``p`` while ``p`` does not exist: left
    by a register deleted while in use. A dead process's SQLite drops when it makes the new
    file; a living process's shared memory makes the new file fail ("disk I/O error")."""
    if p.exists():
        return []
    return [f"{p.name}{s}" for s in ("-wal", "-shm", "-journal") if Path(f"{p}{s}").exists()]


#: the byte of a ``-shm`` file every open SQLite connection holds a shared lock on (SQLite's
#: unix VFS: UNIX_SHM_DMS, after the 8 lock bytes from offset 120)
_SHM_DMS_BYTE = 128


#: (device, inode) of every ``-shm`` a backend of this process has seen: SQLite holds locks
#: on them, and a lock of this process never conflicts with its own (nor may it be tried: the
#: close of any descriptor of the file drops all of this process's locks on it)
_OUR_SHM: set[tuple[int, int]] = set()


def _shm_in_use(shm: Path) -> bool:
    """Whether a process has SQLite open on ``shm`` (it holds a read lock on the DMS byte):
    one of ours, or another process's, found by trying an exclusive lock on that byte without
    waiting (let go at once)."""
    import fcntl

    try:
        st = os.stat(shm)  # (not opened first: closing it would drop our own locks)
        if (st.st_dev, st.st_ino) in _OUR_SHM:
            return True
        fd = os.open(shm, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _SHM_DMS_BYTE)
    except OSError:
        return True
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, _SHM_DMS_BYTE)
        return False
    finally:
        os.close(fd)


#: The name locks (:func:`_claim_name`): a byte range of the register's database file, far
#: beyond SQLite's own lock bytes (at 1 GiB), in which each process holds a read lock on the
#: byte of the name it opened the file by. Open-file-description locks (``F_OFD_SETLK``): the
#: close of another descriptor of the file (SQLite's) never drops them, nor they SQLite's.
_NAME_BASE = 1 << 40
_NAME_SPAN = 1 << 20
#: (device, inode) of a register file -> the descriptor its name locks are held on (never
#: closed: closing a descriptor of the file drops this process's POSIX locks on it, SQLite's)
_NAME_FDS: dict[tuple[int, int], int] = {}
#: (device, inode, byte) -> how many backends of this process hold that name lock
_NAME_HELD: dict[tuple[int, int, int], int] = {}
_NAME_LOCK = threading.Lock()


def _ofd_lock(fd: int, cmd: int, kind: int, start: int, length: int) -> int:
    """``fcntl(fd, cmd)`` with a ``struct flock`` of ``kind`` over ``[start, start+length)``;
    returns the lock type it comes back with (for ``F_OFD_GETLK``: ``F_UNLCK`` when no other
    lock is in the way)."""
    import fcntl
    import struct

    fmt = "hhqqi"
    buf = struct.pack(fmt, kind, os.SEEK_SET, start, length, 0)
    buf += b"\0" * (32 - len(buf))  # (struct flock is 32 bytes on 64-bit Linux)
    out = fcntl.fcntl(fd, cmd, buf)
    return int(struct.unpack(fmt, out[: struct.calcsize(fmt)])[0])


def _claim_name(path: str) -> tuple[int, int, int]:
    """Refuse a register file another process has open under another name (a hard link, a
    single-file bind mount such as Docker's ``-v /srv/reg.db:/data/reg.db``). SQLite keeps its
    write-ahead log and its lock table (``-wal``, ``-shm``) beside the *name*, so two names of
    one file are two registers that never lock against or count each other: two servers on
    them approved 51 applications past every limit of three transformers, and 80 of 160
    answered records were lost (probe, 2026-12-08). The name is the resolved path's folder
    (device, inode) and file name; its byte in :data:`_NAME_BASE`'s range is held with a read
    lock, and a lock on any other byte of the range is another name in use. Two processes
    starting at once on two names both take theirs before looking, so one of them at least
    refuses. A network file system (:data:`NETWORK_FS`), where neither SQLite's locks nor
    these reach the other hosts, and a system without open-file-description locks are
    refused: the check must not switch itself off (review, 2026-12-08). Returns the claim, for
    :func:`_unclaim_name`."""
    import fcntl

    real = Path(os.path.realpath(path))
    fs = _file_system(str(real))
    if fs is not None and (fs in NETWORK_FS or fs.startswith(NETWORK_FUSE)):
        raise InputError(
            f"register {path}: on a network file system ({fs}), where SQLite's locks do not "
            "keep two writers apart: use a local disk, or a postgresql:// register"
        )
    try:
        st = os.stat(real)
        folder = os.stat(real.parent)
    except OSError as exc:
        raise InputError(f"register {path}: cannot be read ({exc.strerror})") from None
    h = hashlib.sha256(f"{folder.st_dev}:{folder.st_ino}:{real.name}".encode()).digest()
    byte = _NAME_BASE + int.from_bytes(h[:8], "big") % _NAME_SPAN
    key = (st.st_dev, st.st_ino)
    with _NAME_LOCK:
        try:
            fd = _NAME_FDS.get(key)
            if fd is None:
                fd = _NAME_FDS[key] = os.open(real, os.O_RDONLY | os.O_CLOEXEC)
            _ofd_lock(fd, fcntl.F_OFD_SETLK, fcntl.F_RDLCK, byte, 1)
            other = any(
                end > start
                and _ofd_lock(fd, fcntl.F_OFD_GETLK, fcntl.F_WRLCK, start, end - start)
                != fcntl.F_UNLCK
                for start, end in ((_NAME_BASE, byte), (byte + 1, _NAME_BASE + _NAME_SPAN))
            )
        except (OSError, AttributeError) as exc:  # (AttributeError: no F_OFD_* on this system)
            why = exc.strerror if isinstance(exc, OSError) else "not on this system"
            raise InputError(
                f"register {path}: the file locks that keep two names of one register apart "
                f"cannot be taken here ({why}): use a local disk on Linux, or a postgresql:// "
                "register"
            ) from None
        held = (*key, byte)
        if other:
            if not _NAME_HELD.get(held):
                with contextlib.suppress(OSError):
                    _ofd_lock(fd, fcntl.F_OFD_SETLK, fcntl.F_UNLCK, byte, 1)
            raise InputError(
                f"register {path}: the same file is open under another name (a hard link or "
                "a bind mount) by another process; SQLite's lock and log go by the name, so "
                "the two would not count each other's approvals: open it by one path"
            )
        _NAME_HELD[held] = _NAME_HELD.get(held, 0) + 1
    return held


def _unclaim_name(held: tuple[int, int, int]) -> None:
    """Give back a claim of :func:`_claim_name` (a start that failed after it): the name's
    byte is unlocked when no other backend of this process holds it."""
    import fcntl

    with _NAME_LOCK:
        n = _NAME_HELD.get(held, 0) - 1
        if n > 0:
            _NAME_HELD[held] = n
            return
        _NAME_HELD.pop(held, None)
        fd = _NAME_FDS.get(held[:2])
        if fd is not None:
            with contextlib.suppress(OSError):
                _ofd_lock(fd, fcntl.F_OFD_SETLK, fcntl.F_UNLCK, held[2], 1)


#: file systems whose locks do not reach the other hosts that mount them (``/proc`` names)
NETWORK_FS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "lustre", "afs",
     "ncpfs", "coda", "gfs2", "ocfs2", "beegfs", "gpfs", "vboxsf", "virtiofs", "davfs",
     "drvfs"}
)  # fmt: skip
#: FUSE file systems that reach another host (``fuse.sshfs``, ...)
NETWORK_FUSE = ("fuse.sshfs", "fuse.s3fs", "fuse.rclone", "fuse.gcsfuse", "fuse.glusterfs",
                "fuse.juicefs", "fuse.goofys", "fuse.ceph", "fuse.gvfsd-fuse",
                "fuse.vmhgfs-fuse", "fuse.mountpoint-s3", "fuse.blobfuse2", "fuse.mfs")  # fmt: skip


def _file_system(real: str, mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """The type of the file system ``real`` (a resolved path) lies on, from the longest mount
    point of ``mountinfo`` above it; None where it cannot be read (not Linux)."""
    try:
        text = Path(mountinfo).read_bytes()
    except OSError:
        return None
    want = os.fsencode(real)  # (bytes: a mount point need not be UTF-8)
    best, kind = -1, None
    for line in text.splitlines():
        left, sep, right = line.partition(b" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right.split():
            continue
        point = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), fields[4])
        inside = want == point or want.startswith(point.rstrip(b"/") + b"/")
        if inside and len(point) >= best:  # (the last of equal mounts is the one on top)
            best, kind = len(point), right.split()[0].decode("utf-8", "replace")
    return kind


#: the register schemas this lvplan reads (and writes "2" into)
SCHEMAS = ("1", "2")


def _foreign(path: str) -> None:
    """Refuse, before anything is written, an SQLite file that is not an lvplan register:
    another application's database (it was adopted: lvplan's tables added and an approval
    recorded in it), one whose ``meta`` table is another's (refused only after lvplan's
    tables were made in it), or a register of a schema this lvplan does not know (a newer
    one's: it was rewritten to "2" and used; probe, 2026-12-08). An empty file is a new
    register. Read through a read-only connection of its own, closed after."""
    uri = "file:" + urllib.parse.quote(os.path.realpath(path)) + "?mode=ro"
    try:
        con = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None)
    except sqlite3.Error:
        return  # (unreadable: the start's own error says so)
    try:
        _refuse_foreign(path, con)
    finally:
        con.close()


def _refuse_foreign(path: str, con: sqlite3.Connection) -> None:
    try:
        tables = sorted(
            str(r[0]) for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        )
    except sqlite3.Error:
        return  # (unreadable: the start's own error says so)
    if not tables:
        return
    if "meta" not in tables:
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        raise InputError(
            f"register {path}: an SQLite database that is not an lvplan register (its tables: "
            f"{shown}); give a new file or an lvplan register"
        )
    try:
        row = con.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    except sqlite3.Error:
        raise InputError(
            f"register {path}: an SQLite database that is not an lvplan register (its meta "
            "table is not lvplan's)"
        ) from None
    if row is not None and str(row[0]) not in SCHEMAS:
        raise InputError(
            f"register {path}: register schema {str(row[0])[:20]!r}, written by another lvplan "
            f"(this one reads schema {' and '.join(SCHEMAS)}); nothing changed"
        )


#: the registers this process wrote (resolved path -> its file's device and inode), whose logs
#: are checkpointed into them when the process ends (:func:`_checkpoint_at_exit`)
_WRITTEN: dict[str, tuple[int, int]] = {}


def _checkpoint_at_exit() -> None:
    """Copy each register's log into its database file and empty the log, as SQLite does
    when a process closes its last connection (this process's per-thread connections are
    never closed): a server stopped normally left every record in ``reg.db-wal`` beside a
    4 kB ``reg.db``, so that a copy or ``mv`` of the database file alone lost them all
    (probe, 2026-12-08). A register another process is reading is checkpointed as far as it
    can be; one deleted or replaced is left alone."""
    for real, ident in list(_WRITTEN.items()):
        with contextlib.suppress(OSError, sqlite3.Error):
            st = os.stat(real)
            if (st.st_dev, st.st_ino) != ident:
                continue
            uri = "file:" + urllib.parse.quote(real) + "?mode=rw"
            con = sqlite3.connect(uri, uri=True, timeout=2.0, isolation_level=None)
            try:
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            finally:
                con.close()


def _wal_left(p: Path) -> int:
    """The size of a ``-wal`` beside ``p`` (0: none, or empty)."""
    try:
        return os.stat(f"{p}-wal").st_size
    except OSError:
        return 0


class SqliteBackend:
    """SQLite in WAL mode, synchronous=FULL: an answer given after a write transaction
    committed survives a killed process. Writers in any process are serialised by SQLite's
    write lock (``BEGIN IMMEDIATE``).

    The file is the register: if it is deleted, moved or replaced while open (its inode
    changes), or cannot be written, every transaction raises :class:`RegisterUnavailable`
    instead of writing into a file nobody will read again. ``writable=False`` opens an existing
    register read-only (``register list``, ``check --register``).
    """

    #: one write lock and one change counter for the whole register
    scoped = False

    def __init__(self, path: str | Path, *, writable: bool = True):
        self.path = str(path)
        self.writable = writable
        self._memory = self.path == ":memory:"
        self._local = threading.local()
        self._identity: tuple[int, int] | None = None
        self._side: dict[str, tuple[int, int]] = {}
        #: the last write SQLite refused (disk full, read-only), until a write succeeds
        self.last_write_error: str | None = None
        if not self._memory:
            p = Path(self.path)
            if p.exists() and not p.is_file():
                raise InputError(f"register {self.path}: not a file")
            if not writable and not p.is_file():
                raise InputError(f"register {self.path}: no such register file")
            if not p.parent.is_dir():
                raise InputError(f"register {self.path}: folder {p.parent} does not exist")
        real = Path(os.path.realpath(self.path))  # (SQLite keeps -wal and -shm beside it)
        self._real = str(real)
        orphans = _orphans(real) if writable and not self._memory else []
        if orphans and _shm_in_use(Path(f"{real}-shm")):  # before SQLite opens them
            raise InputError(self._orphaned(orphans))  # (it emptied the holder's -wal)
        if orphans and (left := _wal_left(real)):
            # a stopped server's log beside a database moved away without it: SQLite making the
            # new file drops it, and with it every commit not yet in the database (probe,
            # 2026-12-08: 20 answered applications lost after `mv reg.db reg-2026.db`)
            raise InputError(
                f"register {self.path}: does not exist, but {real.name}-wal ({left:,} bytes) is "
                "beside it: the log of a register moved or deleted without it, holding its last "
                "commits; move it back beside its database (or remove it) first"
            )
        fresh = not self._memory and not Path(self.path).exists()
        made: tuple[int, int] | None = None  # the file this start made (device, inode)
        claimed: tuple[int, int, int] | None = None  # this start's name lock
        if not fresh and not self._memory:
            _foreign(self.path)  # (before a connection of ours turns it to WAL mode)
        try:
            con = self._con()
            if fresh:
                with contextlib.suppress(OSError):
                    st = os.stat(self.path)
                    made = (st.st_dev, st.st_ino)
            if not self._memory:
                try:
                    claimed = _claim_name(self.path)
                except InputError:
                    self._drop_failed_start(None)  # (its connection closed; the file kept)
                    raise
            if writable:
                # in one transaction: a second process starting on the new file, or a start
                # killed half way, met lvplan's first tables without ``meta`` and refused it
                # as "not an lvplan register" (review, 2026-12-08)
                try:
                    con.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}COMMIT;")
                except sqlite3.Error:
                    if con.in_transaction:
                        con.rollback()
                    raise
                with self.transaction(write=True) as tx:  # proves the file can be written
                    tx.set_meta("schema", "2")
                if not self._memory and self._identity is not None:
                    if not _WRITTEN:
                        atexit.register(_checkpoint_at_exit)
                    _WRITTEN[self._real] = self._identity
            else:
                con.execute("SELECT count(*) FROM applications").fetchone()
        except (sqlite3.DatabaseError, RegisterUnavailable) as exc:
            if claimed is not None:  # (a later start on another name of it is not refused)
                _unclaim_name(claimed)
            if orphans:  # (before: "cannot be written (disk I/O error)", and nothing more)
                if made is None and fresh:  # (the connection itself failed: made by it)
                    with contextlib.suppress(OSError):
                        st = os.stat(self.path)
                        made = (st.st_dev, st.st_ino)
                self._drop_failed_start(made)
                raise InputError(self._orphaned(orphans)) from None
            what = "cannot be written" if writable else "cannot be read"
            raise InputError(f"register {self.path}: {what} ({_cause(exc)})") from None

    def _orphaned(self, orphans: list[str]) -> str:
        return (
            f"register {self.path}: cannot be made: {orphans[0]} is beside it, left by a "
            "register deleted while a process (a server?) still has it open: stop that "
            "process, or give another path"
        )

    def _drop_failed_start(self, made: tuple[int, int] | None) -> None:
        """Remove the file this start made (``made``: its device and inode) before it failed
        (SQLite writes its first page, 4 kB, before it finds it cannot go on): a retry then
        meets no half-made register. A file this start did not make (one there before it, or
        another process's made meanwhile: a new register is 4 kB too) is left alone."""
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None
        if made is None:
            return
        with contextlib.suppress(OSError):
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == made and st.st_size <= 4096:
                os.unlink(self.path)

    def _con(self) -> sqlite3.Connection:
        """This thread's connection. Once the register exists, a connection never creates
        the file: if it is gone, the error says so instead of an empty register appearing."""
        con = getattr(self._local, "con", None)
        if con is None:
            if self._memory:
                con = sqlite3.connect(self.path, isolation_level=None)
            elif self._identity is None and self.writable:
                con = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            else:
                mode = "rw" if self.writable else "ro"
                uri = "file:" + urllib.parse.quote(str(Path(self.path).resolve())) + f"?mode={mode}"
                con = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None)
            if self.writable or self._memory:
                con.execute("PRAGMA journal_mode=WAL")
                con.execute("PRAGMA synchronous=FULL")
            con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._local.con = con
            if self._identity is None:
                self._identity = self._file_identity()
        return con

    def _file_identity(self, suffix: str = "") -> tuple[int, int] | None:
        if self._memory:
            return None
        try:  # (the side files beside the resolved path, where SQLite keeps them: through a
            # symbolic link, their deletion went unnoticed, probe 2026-12-08)
            st = os.stat((self._real if suffix else self.path) + suffix)
        except OSError:
            if suffix:
                return None
            raise RegisterUnavailable(
                "register: the file is gone (deleted or moved while in use); nothing recorded"
            ) from None
        return (st.st_dev, st.st_ino)

    def _check_file(self) -> None:
        """The register is still the file that was opened: the database, and the write-ahead
        log and shared-memory files SQLite keeps beside it while it is open (the write lock
        and the last commits live there: a register whose ``-wal`` or ``-shm`` was deleted
        loses answered applications and no longer excludes other writers)."""
        if self._identity is None:
            return
        if self._file_identity() != self._identity:
            raise RegisterUnavailable(
                "register: the file was replaced while in use (restart to use the new one); "
                "nothing recorded"
            )
        for suffix in ("-wal", "-shm"):
            now = self._file_identity(suffix)
            seen = self._side.get(suffix)
            if seen is None:
                if now is not None:
                    self._side[suffix] = now
                    if suffix == "-shm":
                        _OUR_SHM.add(now)
            elif now != seen:
                raise RegisterUnavailable(
                    f"register: its {suffix[1:]} file was deleted or replaced while in use "
                    "(restart after checking the register); nothing recorded"
                )

    @contextmanager
    def transaction(
        self, *, write: bool, wait: bool = True, islands: list[str] | None = None
    ) -> Iterator[_SqliteTxn]:
        """``wait=False``: raise :class:`RegisterBusy` at once when another writer holds the
        write lock, instead of waiting for it (up to 30 s). ``islands`` is not needed: the
        write lock covers the whole register."""
        if write and not self.writable:
            raise InputError(f"register {self.path}: opened read-only")
        try:
            con = self._con()
        except sqlite3.Error as exc:
            raise RegisterUnavailable(f"register: {exc}") from None
        self._check_file()
        if write:
            self._begin_write(con, wait)
        else:
            try:
                con.execute("BEGIN")
            except sqlite3.Error as exc:
                raise RegisterUnavailable(f"register: {exc}") from None
        try:
            yield _SqliteTxn(con)
            if write:
                self._check_file()  # never commit into a file that is no longer the register
            con.execute("COMMIT")
            if write:
                self.last_write_error = None
        except BaseException as exc:
            if con.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    con.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                if write:
                    self.last_write_error = str(exc)
                raise RegisterUnavailable(f"register: {exc}; nothing recorded") from None
            raise

    def _begin_write(self, con: sqlite3.Connection, wait: bool) -> None:
        """``BEGIN IMMEDIATE``, polling every millisecond or so while another writer holds
        the lock (SQLite's own busy handler sleeps up to 100 ms between tries, so a writer
        that commits and begins again at once, like a batch, starves it)."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000.0
        con.execute("PRAGMA busy_timeout=0")
        try:
            while True:
                try:
                    con.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        raise RegisterUnavailable(f"register: {exc}") from None
                    if not wait:
                        raise RegisterBusy("register: another writer holds it") from None
                    if time.monotonic() > deadline:
                        raise RegisterUnavailable(
                            f"register: locked by another writer for {BUSY_TIMEOUT_MS / 1000:g} s"
                        ) from None
                    time.sleep(random.uniform(0.0005, 0.0015))
                except sqlite3.Error as exc:
                    raise RegisterUnavailable(f"register: {exc}") from None
        finally:
            con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

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
        """``{"ok": bool, "error": str | None}``: can the register be read, and is its file
        still the one that was opened?"""
        try:
            with self.transaction(write=False) as tx:
                tx.last_change()
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


def write_probe(backend: Backend) -> None:
    """One small write (``meta.health_probe_at``) by a register whose last write failed: its
    success clears the failure. Before, ``/healthz`` said 503 until the next application was
    written, which a balancer that takes 503 servers out of rotation never sent (probe,
    2026-12-08: a disk full and freed, a PostgreSQL backend terminated). Never waits for
    another writer (that writer's success clears it as well)."""
    with contextlib.suppress(LvplanError), backend.transaction(write=True, wait=False) as tx:
        tx.set_meta("health_probe_at", now())


def _cause(exc: BaseException) -> str:
    return str(exc).removeprefix("register: ")


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


def register_file(spec: str | Path) -> str | None:
    """The SQLite file a register spec names (a path, or ``sqlite:///PATH``); None for a
    database server's URL."""
    text = str(spec)
    if text.startswith("sqlite:///"):
        return text[len("sqlite:///") :]
    return None if "://" in text else text


def open_backend(spec: str | Path, *, writable: bool = True) -> Backend:
    """A backend from a path or URL: ``file.db``, ``sqlite:///file.db``,
    ``postgresql://user@host:port/db`` (or ``postgres://``). A URL that cannot be reached is
    an InputError (one line); it never falls back to a SQLite file."""
    text = str(spec)
    local = register_file(text)
    if local is not None:
        text = local
    else:
        scheme = text.split("://", 1)[0]
        if scheme in ("postgresql", "postgres"):
            from lvplan.register.postgres import PostgresBackend

            return PostgresBackend(text, writable=writable)
        raise InputError(
            f"register {spec}: unsupported backend {scheme!r} "
            "(use a SQLite path or a postgresql:// URL)"
        )
    if not text.strip() or text.strip() != text:
        raise InputError(f"register {spec!r}: a register's name cannot be blank or padded")
    if text == ":memory:" or text.startswith("file:"):
        # a register in memory is one per process: workers and other writers would each count
        # their own and approve the same room twice (the replay of a study opens its own)
        raise InputError(
            f"register {spec}: a register must be a file others can open (a SQLite path) or a "
            "postgresql:// URL; :memory: and file: URIs are not registers"
        )
    return SqliteBackend(text, writable=writable)


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
