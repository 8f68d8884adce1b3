"""One lvplan run per output folder: an exclusive cross-process lock held for the run.

Two runs writing one folder at once (``lvplan plan --out DIR`` twice with different demand, or a
plan and a hosting map) would interleave their files: a ``plan.csv`` of one beside the
``summary.json`` of the other, or one run resuming the other's parts. :func:`locked_folder`
takes ``fcntl.flock`` on ``DIR/.lvplan.lock`` and holds it until the run ends; the kernel
releases it when the process dies, however it dies, so a killed run never blocks the next.

A run that finds the folder locked raises :class:`~lvplan.errors.InputError` (exit 2, one line
naming the folder and the holder's pid) and touches nothing in it: it opens the lock file
without writing it, and creates neither the folder nor the file when they already exist. The
holder writes its pid into the file and removes the file as it ends (still holding the lock: a
run that opened the old file meanwhile finds it unlinked once it has the lock and opens the new
one); a run that dies leaves the file, which the next run simply locks. A folder this run
created and left empty (it failed before its first file) is removed again. Once it holds the
lock, a run removes the temporaries a killed run left in the folder (hidden staging folders and
half-written files, all named ``.lvplan-tmp.*``, and nothing else:
:func:`lvplan.io.atomic.remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from lvplan.errors import InputError
from lvplan.io.atomic import remove_stale_temporaries

#: the lock file, inside the folder it guards
LOCK_NAME = ".lvplan.lock"

try:  # pragma: no cover - every supported platform but Windows has it
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


def _holder(path: Path) -> str:
    try:
        pid = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""


def _open_locked(lock: Path, folder: Path, flag: str) -> int:
    """The lock file's descriptor, locked by this process (the file at ``lock`` at the time of
    locking: one a releasing run unlinked meanwhile is opened again)."""
    while True:
        try:
            # never through a symlink: the lock file is truncated and written (a link named
            # like it would lose its target's content)
            nofollow = getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | nofollow, 0o644)
        except FileNotFoundError:  # removed by a run that ended writing nothing: again
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InputError(f"{flag} {folder}: cannot create it ({exc.strerror})") from None
            continue
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise InputError(
                    f"{flag} {folder}: {LOCK_NAME} there is a symbolic link, not lvplan's lock "
                    "file; remove it"
                ) from None
            raise InputError(f"{flag} {folder}: cannot write there ({exc.strerror})") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise InputError(f"{flag} {folder}: {LOCK_NAME} there is not a file; remove it")
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise InputError(
                    f"{flag} {folder}: another lvplan run holds this folder{_holder(lock)}; "
                    "wait for it to end or choose another folder"
                ) from None
            raise InputError(f"{flag} {folder}: cannot lock it ({exc.strerror})") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # unlinked by the run that held it, as it ended: lock the new one


@contextlib.contextmanager
def locked_folder(folder: str | os.PathLike, *, flag: str = "--out") -> Iterator[Path]:
    """Hold the exclusive lock on output folder ``folder`` (created if missing) for the block;
    ``flag`` names the option in messages. See the module docstring."""
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise InputError(f"{flag} {path}: exists and is not a folder")
    # what the run makes is judged on the folder the path names (its ``..`` and links
    # resolved): ``new/../mine`` is the user's ``mine``, which a failed run took for its own
    # and removed, with an interrupted run's groups in it (found by review)
    real = Path(os.path.realpath(path))
    created = not real.exists()
    top = real  # the outermost folder this run makes (``a`` of a new ``a/b/c``)
    while created and not top.parent.exists() and top.parent != top:
        top = top.parent
    try:
        real.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{flag} {path}: cannot create it ({exc.strerror})") from None
    lock = path / LOCK_NAME
    try:
        fd = _open_locked(lock, path, flag)
    except InputError:
        if created:
            _remove_if_empty(real, top)
        raise
    try:
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        except OSError as exc:  # (a full disk: exit 1, "cannot write the output", before)
            raise InputError(f"{flag} {path}: cannot write it: {exc.strerror or exc}") from None
        # held: the temporaries a killed run left here are no one's any more
        remove_stale_temporaries(path)
        yield path
    finally:
        try:
            with contextlib.suppress(OSError):
                lock.unlink()  # still holding it: a run that opened it meanwhile opens anew
            if created:
                _remove_if_empty(real, top)
        finally:
            os.close(fd)  # releases the lock


def _remove_if_empty(path: Path, top: Path) -> None:
    """Remove ``path`` when it holds nothing (a run that created it and wrote nothing), and
    then each folder above it up to ``top`` that the run made and that is empty now."""
    with contextlib.suppress(OSError):
        while True:
            path.rmdir()
            if path == top:
                return
            path = path.parent


@contextlib.contextmanager
def locked_folders(*folders: tuple[str | os.PathLike, str]) -> Iterator[None]:
    """:func:`locked_folder` on each (folder, flag), the same folder once, in the given order."""
    with contextlib.ExitStack() as stack:
        seen: set[str] = set()
        for folder, flag in folders:
            key = os.path.realpath(folder)
            if key not in seen:
                seen.add(key)
                stack.enter_context(locked_folder(folder, flag=flag))
        yield
