"""Pickles lvplan reads back only where it wrote them: signed with a key only this user holds.

lvplan keeps three kinds of work as pickles: the finished groups of a plan (``--resume``,
``DIR/parts/``), the prepared MV islands of a network (the islands cache) and the synthetic
city's LV templates (``~/.cache/lvplan``). Unpickling runs whatever code the file names, so a
file someone else put there (a folder others can write into, a run copied from elsewhere)
would run theirs. Each file is therefore written with an HMAC-SHA256 of its bytes under a key
only this user holds, and read only when the HMAC matches; any other file is treated as absent
(the work is done again), and nothing in it is unpickled.

The key: 32 random bytes in ``$XDG_CONFIG_HOME/lvplan/pickle.key`` (``~/.config`` without
it), or the file ``LVPLAN_KEY_FILE`` names; made on first use (written to a temporary file and
linked into place, so two processes making it at once agree on one), mode 0600. A key file
that this user does not own, that others may read or write, or that is not 32 bytes is not
trusted (a line on stderr says so and why, once per run); then, as where no key file can be
made (no writable home), the process draws a key of its own, and its files are read back by
itself only (a ``--resume`` in a later process plans its groups again: safe, slower).

Format: ``MAGIC``, the 32-byte tag, then the payload (one or more pickles, as the writer
wrote them). A streamed file (the islands cache: gigabytes) is hashed as it is written and its
tag written last, in place; it is read in two passes over one open file (the tag checked over
the whole payload, then the payload unpickled), which a file owned by this user and writable by
no one else cannot change in between (a rename over it leaves the open file as it was).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import os
import pickle
import secrets
import stat
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

MAGIC = b"lvplan-signed-pickle-1\n"
TAG_BYTES = 32
KEY_BYTES = 32
_CHUNK = 1 << 20

_lock = threading.Lock()
_key: bytes | None = None
_key_from: Path | None = None


def key_file() -> Path:
    """Where the key is kept (``LVPLAN_KEY_FILE``, else the user's config folder)."""
    env = os.environ.get("LVPLAN_KEY_FILE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "lvplan" / "pickle.key"


def key() -> bytes:
    """This user's key (see the module's text), made or read once per process (again if the
    key file's name changes)."""
    global _key, _key_from
    where = key_file()
    with _lock:
        if _key is None or _key_from != where:
            _key = _kept_key(where) or secrets.token_bytes(KEY_BYTES)
            _key_from = where
        return _key


def _kept_key(path: Path) -> bytes | None:
    """The key in ``path``, made there when there is none; None when it cannot be made or is
    not to be trusted."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(secrets.token_bytes(KEY_BYTES))
                    out.flush()
                    os.fsync(out.fileno())
                with contextlib.suppress(FileExistsError):  # (another process made it first)
                    os.link(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
    fh = _open_own(path)
    if fh is None:
        if os.path.lexists(path):
            _distrust(path, "not a regular file of this user's that no one else may write")
        return None
    with fh:
        st = os.fstat(fh.fileno())
        if st.st_mode & 0o077:
            _distrust(path, f"mode {stat.S_IMODE(st.st_mode):04o}: others may read it")
            return None
        data = fh.read(KEY_BYTES + 1)
    if len(data) != KEY_BYTES:
        _distrust(path, f"{len(data) if len(data) <= KEY_BYTES else 'more than 32'} bytes, not 32")
        return None
    return data


#: set in the environment once a key file not used has been said: a run's worker processes
#: (``serve --workers``, a plan's) inherit it and say nothing more
_SAID = "LVPLAN_KEY_FILE_SAID"


def _distrust(path: str | os.PathLike, why: str) -> None:
    """Say, in one line on stderr, once per run (its worker processes included), that the key
    file is not used and what follows (a key of the process's own: a later run does not read
    back what this one keeps). A line, not a Python warning: a warnings filter set to error
    would end the run with a traceback over a slower ``--resume``."""
    if os.environ.get(_SAID) == str(path):
        return
    os.environ[_SAID] = str(path)
    print(
        f"lvplan: warning: {path}: not used as lvplan's key file ({why}); the work this run "
        "keeps (--resume groups, the islands cache, templates) is signed with a key of its "
        "own, and a later run does it again",
        file=sys.stderr,
        flush=True,
    )


def _open_own(path: str | os.PathLike) -> IO[bytes] | None:
    """``path`` open for reading when it is a regular file (not a link) of this user's that
    no one else may write; else None (a folder, a device, a link, another's file, none)."""
    try:
        # (without waiting: a named pipe there hung every plan; probe, 2026-12-07)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        os.close(fd)
        return None
    return os.fdopen(fd, "rb")


def dumps(obj: Any) -> bytes:
    """``obj`` pickled and signed, as :func:`signing` writes it (for a small file written whole;
    read back with :func:`verified`)."""
    buf = io.BytesIO()
    with signing(buf) as w:
        pickle.dump(obj, w, protocol=pickle.HIGHEST_PROTOCOL)
    return buf.getvalue()


class _Signing:
    """A binary file's writer that hashes what it writes (what :func:`pickle.dump` needs)."""

    def __init__(self, fh: IO[bytes]):
        self._fh = fh
        self._mac = hmac.new(key(), digestmod=hashlib.sha256)

    def write(self, data: Any) -> int:
        self._mac.update(data)
        return self._fh.write(data)

    def digest(self) -> bytes:
        return self._mac.digest()


@contextlib.contextmanager
def signing(fh: IO[bytes]) -> Iterator[_Signing]:
    """Write a signed payload, streamed, to ``fh`` (a new, seekable binary file, as from
    :func:`lvplan.io.atomic.atomic_file`): pickle into the writer this yields; the tag is
    written in place when the block ends without error."""
    start = fh.tell()
    fh.write(MAGIC + bytes(TAG_BYTES))
    w = _Signing(fh)
    yield w
    end = fh.tell()
    fh.seek(start + len(MAGIC))
    fh.write(w.digest())
    fh.seek(end)


@contextlib.contextmanager
def verified(path: str | os.PathLike) -> Iterator[IO[bytes] | None]:
    """``path`` open at its payload when it is a regular file of this user's, writable by no
    one else, signed with this user's key; else None (it does not exist, cannot be read, or
    is not to be trusted: nothing of it is unpickled)."""
    opened = _open_own(path)
    if opened is None:
        yield None
        return
    with opened as fh:
        ok = fh.read(len(MAGIC)) == MAGIC
        tag = fh.read(TAG_BYTES) if ok else b""
        if ok and len(tag) == TAG_BYTES:
            mac = hmac.new(key(), digestmod=hashlib.sha256)
            while chunk := fh.read(_CHUNK):
                mac.update(chunk)
            ok = hmac.compare_digest(mac.digest(), tag)
        else:
            ok = False
        if not ok:
            yield None
            return
        fh.seek(len(MAGIC) + TAG_BYTES)
        yield fh
