"""Atomic output: write to a temporary file beside the target, then rename over it."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from lvplan.errors import InputError

#: Every temporary file and folder lvplan makes beside or inside an output starts with this, and
#: nothing else lvplan reads or writes does: :func:`remove_stale_temporaries` removes only these
#: (before, it removed any ``.<name>.<8 letters>.tmp``: a user's own ``.notes.abcdefgh.tmp``
#: in an output folder went with the leftovers). Made only by :func:`temp_file` and
#: :func:`temp_folder`: ``.lvplan-tmp.<what>.<random>.tmp`` (or ``.old``), ``<random>`` being
#: ``tempfile``'s 8 letters.
TMP_PREFIX = ".lvplan-tmp."
TMP_SUFFIX = ".tmp"
OLD_SUFFIX = ".old"
#: what :func:`remove_stale_temporaries` removes: ``.tmp`` only. A ``.old`` holds what an output
#: replaced, moved aside for the moment of the swap; a run killed in that moment leaves it as
#: the only copy (a network folder's old tables before the new ones are in), so it is kept for
#: the user to look at, never swept
_STALE = re.compile(re.escape(TMP_PREFIX) + r"(?:.*\.)?[a-z0-9_]{8}\.tmp", re.S)
#: ``what`` is cut to this in a temporary's name, so that an output whose own name is near the
#: file system's limit (255 bytes) can still be written beside one
WHAT_CHARS = 48


def without_dotdot(path: str | os.PathLike) -> Path:
    """``path`` with its ``..`` taken: the part up to its last ``..`` is resolved as the kernel
    resolves it (the links before it followed), the rest kept as typed: ``new/../out`` is
    ``out``. An output's folders are made with their parents, and the typed path made an
    empty ``new/`` on the way. A path without ``..`` is returned as it is, and what follows the
    last ``..`` is kept as typed (judged as in any path: a dangling link there is not followed
    to make its target)."""
    p = Path(path)
    parts = p.parts
    if ".." not in parts:
        return p
    last = len(parts) - 1 - parts[::-1].index("..")
    for i in range(last):  # a dangling link before a ``..``: as typed, for the kernel to refuse
        q = Path(os.path.realpath(Path(*parts[:i]))) / parts[i] if i else Path(parts[0])
        if os.path.islink(q) and not os.path.exists(q):
            return p
    return Path(os.path.realpath(Path(*parts[: last + 1]))).joinpath(*parts[last + 1 :])


def temp_file(folder: str | os.PathLike, what: str) -> tuple[int, str]:
    """A new temporary file in ``folder`` (``tempfile.mkstemp``: mode 0600, opened), named for
    ``what`` (the file it will become) and for :func:`remove_stale_temporaries`."""
    prefix = f"{TMP_PREFIX}{what[:WHAT_CHARS]}."
    return tempfile.mkstemp(prefix=prefix, suffix=TMP_SUFFIX, dir=folder)


def temp_folder(folder: str | os.PathLike, what: str, *, suffix: str = TMP_SUFFIX) -> Path:
    """A new temporary folder in ``folder`` (``tempfile.mkdtemp``: mode 0700), named for ``what``
    and for :func:`remove_stale_temporaries`; ``suffix``: ``.tmp`` (being written) or ``.old``
    (what is being replaced)."""
    prefix = f"{TMP_PREFIX}{what[:WHAT_CHARS]}."
    return Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=folder))


def remove_stale_temporaries(folder: str | os.PathLike) -> list[str]:
    """Remove the temporaries (:data:`TMP_PREFIX`) a killed run left directly in ``folder`` and
    return their names; nothing else is touched. Only for a folder this process holds
    (``locked_folder``): another run's temporaries would be removed from under it. Names from
    lvplan before this scheme (``.out.*.tmp``, ``.<name>.*.tmp``) are not removed: a user's file
    can have such a name, and lvplan cannot tell its own leftovers from it."""
    gone: list[str] = []
    try:
        entries = list(os.scandir(os.fspath(folder)))
    except OSError:
        return gone
    for e in entries:
        if not _STALE.fullmatch(e.name):
            continue
        with contextlib.suppress(OSError):
            if e.is_dir(follow_symlinks=False):
                try:
                    if os.path.isfile(os.path.join(e.path, COMMIT_MARK)):
                        _finish(Path(e.path), Path(folder))  # killed among its renames
                finally:  # finished or not, the stage goes: it is never replayed later
                    shutil.rmtree(e.path)
            else:
                os.unlink(e.path)
            gone.append(e.name)
    return gone


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, *, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A binary file to write (streamed: it may be gigabytes) that appears at ``path`` only
    when the block ends without error, flushed to disk and renamed over; on any error the
    temporary file is removed and nothing is left half-written. ``mode`` less the umask (0o600
    for a file only its owner may read)."""
    target = without_dotdot(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_file(target.parent, target.name)
    mask = os.umask(0)  # mkstemp makes 0600 files
    os.umask(mask)
    os.chmod(tmp, mode & ~mask)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_file(path) as fh:
        fh.write(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def write_failure(exc: OSError, flag: str, path: str | os.PathLike) -> InputError:
    """The one line for an output that could not be written (a full disk, a read-only folder,
    a file where a folder of its path should be): ``--out PATH: cannot write it: why``."""
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):
        why = "a part of its path is a file, not a folder"
    else:
        why = exc.strerror or str(exc)
    return InputError(f"{flag} {path}: cannot write it: {why}")


@contextlib.contextmanager
def output_errors(flag: str, path: str | os.PathLike) -> Iterator[None]:
    """Turn an ``OSError`` of writing the output ``path`` into :func:`write_failure`'s line."""
    try:
        yield
    except OSError as exc:
        raise write_failure(exc, flag, path) from None


def not_a_file(p: Path, flag: str) -> None:
    """One line (:class:`InputError`) when ``p`` exists as anything but a regular file: the
    atomic rename would put a file in place of a device (as root, ``--out /dev/null`` replaced
    the system's), a FIFO, a socket or a symbolic link (its target left as it was)."""
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise write_failure(exc, flag, p) from None
    if stat.S_ISLNK(st.st_mode):
        raise InputError(f"{flag} {p}: is a symbolic link; give the file itself")
    if not stat.S_ISREG(st.st_mode) and not stat.S_ISDIR(st.st_mode):
        raise InputError(
            f"{flag} {p}: is not a regular file (a device, FIFO or socket); give a file to write"
        )


#: the files SQLite keeps beside a database: writing one over them corrupts it
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")

Inputs = Iterable[tuple[str, "str | os.PathLike | None"]]


def refuse_input_as_output(path: str | os.PathLike, inputs: Inputs, flag: str = "--out") -> None:
    """One line (:class:`InputError`) when output file ``path`` is one of ``inputs`` (its
    option, its path: a file, or a folder such as a network's), by any path to it (``..``, a
    link to it or to a folder on the way), a file inside an input folder, or one of the files
    SQLite keeps beside an input (a register's ``-wal``): writing it would replace the input."""
    out = os.path.realpath(without_dotdot(path))
    for what, given in inputs:
        if given is None:  # (no file: e.g. a register on a database server)
            continue
        real = os.path.realpath(without_dotdot(given))
        same = out == real
        with contextlib.suppress(OSError):
            same = same or os.path.samefile(out, real)  # (a hard link)
        if same or out in {real + s for s in SQLITE_SIDECARS}:
            raise InputError(f"{flag} {path}: is {what} {given}, which this run reads")
        if os.path.isdir(real) and out.startswith(real.rstrip(os.sep) + os.sep):
            raise InputError(
                f"{flag} {path}: is inside {what} {given}, which this run reads; "
                "write somewhere else"
            )


def check_output_file(
    path: str | os.PathLike, flag: str = "--out", what: str = "a file", inputs: Inputs = ()
) -> None:
    """One line (:class:`InputError`) when the output file ``path`` names a folder (``new/..``
    is one, though ``new`` is not made yet; so is ``new/``, which was written as a file
    ``new``) or anything but a regular file (:func:`not_a_file`), or is one of the run's
    ``inputs`` (:func:`refuse_input_as_output`): a command checks it
    before its work, and :func:`write_output_file` again before it writes."""
    refuse_input_as_output(path, inputs, flag)
    real = without_dotdot(path)
    try:
        is_dir = stat.S_ISDIR(os.stat(real).st_mode)  # (a link to a folder is one too)
    except FileNotFoundError:
        is_dir = False
    except OSError as exc:  # (a name over 255 bytes, a loop of links: one line, not a traceback)
        raise write_failure(exc, flag, path) from None
    if is_dir:
        raise InputError(f"{flag} {path}: is a folder; give {what} to write")
    if str(path).endswith(("/", os.sep)):  # (a folder meant, not made yet: a file was written
        raise InputError(f"{flag} {path}: names a folder (it ends in '/'); give {what} to write")
    not_a_file(real, flag)


def write_output_file(
    path: str | os.PathLike, text: str, *, flag: str = "--out", inputs: Inputs = ()
) -> None:
    """A text output file the user named, written atomically: a folder at ``path``, one of the
    run's ``inputs``, or any failure to write is one line (:class:`InputError`), and nothing is
    left half-written."""
    check_output_file(path, flag, inputs=inputs)
    with output_errors(flag, path):
        write_text_atomic(path, text)


@contextlib.contextmanager
def staged_files(
    out: str | os.PathLike, *, flag: str = "--out", drop: Iterable[str] = ()
) -> Iterator[Path]:
    """A hidden folder inside output folder ``out`` for a run's files: when the block ends
    without error each file written there is renamed over its namesake in ``out`` (renames
    need no space), and each file named in ``drop`` that an earlier run wrote there and this
    one does not (``hosting --no-maps``: the old maps) is removed, so ``out`` holds one run's
    files; else none is and ``out`` keeps its files as they were. An ``OSError`` (a
    full disk) is one line (:func:`write_failure`). A run killed in the block leaves the hidden
    folder, which the next run that locks ``out`` removes (:func:`remove_stale_temporaries`);
    killed among the renames, the next such run finishes them first (:data:`COMMIT_MARK`), so
    ``out`` holds one run's files, never half of two."""
    if not set(drop) <= DROPPABLE:
        raise ValueError(f"staged_files: drop {sorted(set(drop) - DROPPABLE)} not in DROPPABLE")
    folder = without_dotdot(out)
    with output_errors(flag, out):
        folder.mkdir(parents=True, exist_ok=True)
        stage = temp_folder(folder, "out")
        done = False
        try:
            yield stage
            # a folder (or a link to one) where a file goes would stop the renames half way:
            # refused before the first, so ``out`` keeps one run's files
            for f in sorted(stage.iterdir()):
                if (folder / f.name).is_dir():
                    raise InputError(
                        f"{flag} {folder}: {f.name} there is a folder, where this run writes "
                        f"a file; remove it or give another folder"
                    )
            # every file is in full: from here the run's files are its output. A run killed
            # among the renames below would leave ``out`` half new, half old; the mark tells the
            # next run that locks ``out`` to finish them (remove_stale_temporaries)
            # (the mark names the files to drop, so that a run killed among the renames or
            # the drops has them dropped too: before, it left the old maps beside new tables)
            written = {f.name for f in stage.iterdir()}
            gone = sorted(set(drop) - written)
            write_text_atomic(stage / COMMIT_MARK, json.dumps({"drop": gone}) if gone else "")
            try:
                _commit_or_undo(stage, folder, gone)
            except KeyboardInterrupt:  # (Ctrl-C, SIGTERM among the renames: finished first)
                _commit(stage, folder, gone)
                done = True
                raise
            done = True
        finally:
            # a marked stage whose renames an error broke off stays for the next run that
            # locks ``out`` to finish (remove_stale_temporaries); dropped, ``out`` was left half
            # new, half old (found by review: SIGTERM now ends a run as Ctrl-C does)
            if done or not (stage / COMMIT_MARK).exists():
                shutil.rmtree(stage, ignore_errors=True)


#: in a staging folder: its files are complete and are to be renamed into the output folder
COMMIT_MARK = ".lvplan-commit"


#: the only files a commit mark may name to drop (:func:`staged_files`): an earlier run's maps,
#: which ``hosting --no-maps`` does not write. A mark naming another is not followed there
DROPPABLE = frozenset({"map.html", "map.png"})


def _finish(stage: Path, folder: Path) -> None:
    """The renames (and drops) of a committed ``stage`` a killed run left, unless a file it
    would replace in ``folder`` was written after its mark (a later run's output is not
    overwritten by an older one's: the stage is then dropped). A file to drop that was written
    after the mark is kept (a later run's map), and the renames are done all the same."""
    mark = stage / COMMIT_MARK
    mark_ns = mark.stat().st_mtime_ns
    try:  # (a mark of an earlier release is empty: nothing to drop)
        said = json.loads(mark.read_text(encoding="utf-8") or "{}")
    except (ValueError, RecursionError):
        said = {}
    gone = said.get("drop") if isinstance(said, dict) else None
    names = [f.name for f in stage.iterdir() if f.name != COMMIT_MARK]
    for name in names:
        target = folder / name
        if target.exists() and target.stat().st_mtime_ns > mark_ns:
            return
    drop = []
    for name in gone if isinstance(gone, list) else []:
        if isinstance(name, str) and name in DROPPABLE:
            target = folder / name
            if not (target.exists() and target.stat().st_mtime_ns > mark_ns):
                drop.append(name)
    _commit(stage, folder, drop)


def _commit_or_undo(stage: Path, folder: Path, drop: Iterable[str] = ()) -> None:
    """:func:`_commit`, undone when a rename fails (a file there that cannot be replaced:
    immutable, or another user's in a sticky folder): before the first rename each file it
    replaces is hard-linked aside; on an ``OSError`` every file already replaced is put back
    from its link, every one added is removed, and the mark is dropped, so ``folder`` is as it
    was (before, it was left half new, half old, with the rest of the stage beside it) and the
    error is raised, naming the file. Where hard links cannot be made the file is copied aside;
    one that cannot be copied either is renamed first, before any other is replaced, and once
    such a file is replaced there is no way back: a later failure leaves the marked stage for
    the next run to finish forward (as :func:`_commit` does). Killed among the renames, the
    mark finishes them in the next run, as before."""
    names = sorted(f.name for f in stage.iterdir() if f.name != COMMIT_MARK)
    try:
        aside = temp_folder(folder, "before")
    except OSError:  # (no room for a folder on a full disk: the renames need none)
        _commit(stage, folder, drop)
        return
    try:
        unlinked = []
        existed = set()
        for name in names:
            if (folder / name).is_file():
                existed.add(name)
                try:
                    os.link(folder / name, aside / name, follow_symlinks=False)
                except OSError:
                    try:  # (a file system without hard links: a copy)
                        shutil.copy2(folder / name, aside / name, follow_symlinks=False)
                    except OSError:
                        unlinked.append(name)
        order = unlinked + [n for n in names if n not in unlinked]
        done: list[str] = []
        try:
            for name in order:
                os.replace(stage / name, folder / name)
                done.append(name)
        except OSError as exc:
            if set(done) & set(unlinked):  # (replaced with no copy aside: no way back; the
                raise  # marked stage stays for the next run to finish forward, as before)
            for name in reversed(done):
                if (aside / name).exists():
                    os.replace(aside / name, folder / name)
                elif name not in existed:
                    (folder / name).unlink(missing_ok=True)
            (stage / COMMIT_MARK).unlink(missing_ok=True)
            failed = order[len(done)]
            raise OSError(
                exc.errno, f"{failed}: {exc.strerror or exc}; the folder is left as it was"
            ) from None
        _drop(folder, drop)
    finally:
        shutil.rmtree(aside, ignore_errors=True)


def _commit(stage: Path, folder: Path, drop: Iterable[str] = ()) -> None:
    """Each file of ``stage`` (but its mark) renamed over its namesake in ``folder``; a folder
    of the stage (a study's network folder or ``figures/``) replaces its namesake whole. Then
    each file named in ``drop`` removed from ``folder`` (a file, or a link, never a folder)."""
    for f in sorted(stage.iterdir()):
        if f.name == COMMIT_MARK:
            continue
        target = folder / f.name
        if f.is_dir() and target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)  # (killed here: the stage still holds the new one, marked)
        os.replace(f, target)
    _drop(folder, drop)


def _drop(folder: Path, drop: Iterable[str]) -> None:
    """Each file named in ``drop`` removed from ``folder`` (a file, or a link, never a folder)."""
    for name in drop:
        old = folder / name
        if old.is_file() or old.is_symlink():
            old.unlink(missing_ok=True)


#: the file that marks a folder as one command's output: both write a ``summary.json``, so
#: another command writing there would replace it and leave a folder of two runs
OUTPUT_MARKERS = {"plan": "plan.csv", "hosting": "hosting.csv"}


def refuse_other_output(out: str | os.PathLike, mine: str, *, flag: str = "--out") -> None:
    """One line (:class:`InputError`) when ``out`` holds the output of another lvplan command
    than ``mine`` (a key of :data:`OUTPUT_MARKERS`); checked before the run, so nothing there
    is touched."""
    for command, marker in OUTPUT_MARKERS.items():
        if command != mine and (Path(out) / marker).is_file():
            raise InputError(
                f"{flag} {out}: holds the output of lvplan {command} ({marker}), whose "
                f"summary.json this run would replace; give another folder"
            )


def refuse_inputs_among_outputs(
    out: str | os.PathLike,
    outputs: Iterable[str],
    inputs: Iterable[tuple[str, str | os.PathLike | None]],
    *,
    flag: str = "--out",
) -> None:
    """One line (:class:`InputError`) when an input file (``inputs``: its option, its path)
    is one of the files the run writes in ``out`` (``outputs``: their names), by any path to
    it (a link included): the output would replace it (a demand file named ``plan.csv`` in
    the folder its plan is written to was lost); or when a folder stands where one of them
    goes (found only once the run was over, at its end: :func:`staged_files`). Checked before
    the run."""
    for name in outputs:
        target = Path(out) / name
        if target.is_dir():
            raise InputError(
                f"{flag} {out}: {name} there is a folder, where this run writes a file; "
                "move it or give another folder"
            )
        for what, path in inputs:
            if path is None:
                continue
            with contextlib.suppress(OSError):
                if os.path.samefile(path, target):
                    raise InputError(
                        f"{what} {path}: is the {name} this run writes in {flag} {out}; "
                        "give another folder"
                    )
