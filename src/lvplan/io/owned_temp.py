"""A private temporary folder under ``TMPDIR`` that outlives no owner: a later run removes it
once the process that made it is gone, however it died.

``lvplan serve --workers N`` keeps the MV islands it prepared (hundreds of MB for a city) in such
a folder for the length of the server. The folder is removed when the server ends; a server
killed with SIGKILL cannot remove it, and before this module the folder stayed in ``/tmp`` for
ever. Now every folder holds ``.lvplan-owner.lock``, locked (``fcntl.flock``) by its owner for
as long as the owner lives and holding its pid (for a reader; the pid is not trusted: it may
be another process's by now). The kernel releases the lock when the owner dies, so a folder
whose lock can be taken has no owner: the next :func:`owned_temp_folder` of the same kind
removes it before it makes its own. A lock, not a pid, decides: a reused pid cannot keep a
dead folder alive, and a living owner's folder is never removed.

The owner locks the file under another name and then renames it into place, so the lock file
is locked whenever it exists; a folder without it is being made (or was made by an lvplan
before this scheme, or its owner died between ``mkdtemp`` and the lock: an empty folder) and
is left alone. Only folders of this user, directly in ``TMPDIR``, whose name starts with
``lvplan-<kind>-``, are looked at.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

try:  # pragma: no cover - every supported platform but Windows has it
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

#: the owner's lock, inside the folder it guards
OWNER_LOCK = ".lvplan-owner.lock"


def _prefix(kind: str) -> str:
    return f"lvplan-{kind}-"


def _hold(folder: Path) -> int:
    """Lock the owner file of ``folder`` (made locked, then renamed into place); its fd."""
    tmp = folder / f".lvplan-owner.{os.getpid()}.new"
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        os.rename(tmp, folder / OWNER_LOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def remove_dead_folders(kind: str, base: str | os.PathLike | None = None) -> list[str]:
    """Remove the folders of ``kind`` in ``base`` (default ``TMPDIR``) whose owner is gone
    (their owner lock can be taken); return their names."""
    if fcntl is None:  # pragma: no cover
        return []
    root = Path(base if base is not None else tempfile.gettempdir())
    prefix = _prefix(kind)
    gone: list[str] = []
    try:
        entries = [e for e in os.scandir(root) if e.name.startswith(prefix)]
    except OSError:
        return gone
    uid = os.getuid()
    for e in entries:
        try:
            if not e.is_dir(follow_symlinks=False) or e.stat(follow_symlinks=False).st_uid != uid:
                continue
            fd = os.open(
                os.path.join(e.path, OWNER_LOCK), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
            )
        except OSError:  # no owner file (being made, or from before): not ours to judge
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # held: its owner lives
                continue
            shutil.rmtree(e.path, ignore_errors=True)  # holding the lock: no one else judges it
            gone.append(e.name)
        finally:
            os.close(fd)
    return gone


@contextlib.contextmanager
def owned_temp_folder(kind: str) -> Iterator[Path]:
    """A new private folder (mode 0700) ``TMPDIR/lvplan-<kind>-<random>`` held by this process
    for the block and removed after it; first removes the folders of ``kind`` that dead
    processes left (:func:`remove_dead_folders`)."""
    remove_dead_folders(kind)
    folder = Path(tempfile.mkdtemp(prefix=_prefix(kind)))
    fd = None
    try:
        fd = _hold(folder)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if fd is not None:
            os.close(fd)  # releases the lock, after the folder is gone
