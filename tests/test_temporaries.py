"""lvplan's temporaries: only its own are ever swept (a user's look-alike file stays), every one
is made by the one home (``io/atomic.py``), and a killed server's private folder under TMPDIR
is removed by the next one (``io/owned_temp.py``)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from lvplan.io import atomic
from lvplan.io.atomic import (
    OLD_SUFFIX,
    atomic_file,
    remove_stale_temporaries,
    staged_files,
    temp_folder,
)
from lvplan.io.folder_lock import locked_folder

SRC = Path(atomic.__file__).resolve().parents[1]

#: names a user may well give their own files and folders, which an lvplan before this one took
#: for its leftovers (``.<name>.<8 letters>.tmp``, ``.out.<8>.tmp``, ``.study.<8>.old``)
USERS = [
    ".notes.abcdefgh.tmp",
    ".plan.csv.x1y2z3w4.tmp",
    ".out.abcdefgh.tmp",
    ".study.q1w2e3r4.old",
]


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_the_sweep_removes_lvplan_leftovers_and_nothing_of_the_users(tmp_path):
    """A killed run's temporary file and stage go when the next run locks the folder; a
    publish's ``.old`` folder stays (a run killed between moving the old output aside and
    moving the new one in leaves there the only copy); the user's own files and folders of
    look-alike names stay, with their contents (before: ``.notes.abcdefgh.tmp`` and the others
    were removed)."""
    out = tmp_path / "out"
    out.mkdir()
    for name in USERS:
        if name in USERS[1:3]:
            (out / name).mkdir()
            (out / name / "keep.txt").write_text("mine", encoding="utf-8")
        else:
            (out / name).write_text("mine", encoding="utf-8")
    (out / "plan.csv").write_text("a,b\n", encoding="utf-8")
    fd, left = atomic.temp_file(out, "summary.json")  # as a run killed while writing it
    os.close(fd)
    stage = temp_folder(out, "out")
    (stage / "plan.csv").write_text("half", encoding="utf-8")
    old = temp_folder(out, "study", suffix=OLD_SUFFIX)
    ours = sorted([Path(left).name, stage.name, old.name])
    assert all(n.startswith(".lvplan-tmp.") for n in ours), ours
    (old / "plan.csv").write_text("the only copy", encoding="utf-8")
    with locked_folder(out):
        assert _names(out) == sorted([*USERS, "plan.csv", ".lvplan.lock", old.name])
    assert _names(out) == sorted([*USERS, "plan.csv", old.name])
    assert (old / "plan.csv").read_text(encoding="utf-8") == "the only copy"
    assert (out / USERS[1] / "keep.txt").read_text(encoding="utf-8") == "mine"
    assert (out / USERS[0]).read_text(encoding="utf-8") == "mine"
    assert remove_stale_temporaries(out) == []


def test_every_temporary_lvplan_writes_is_one_the_sweep_knows(tmp_path, monkeypatch):
    """Every ``mkstemp``/``mkdtemp`` made by ``atomic_file``, ``staged_files``, ``write_folder``
    (a network folder, written and then replaced) and a study's publish is named for the sweep;
    none is left."""
    made: list[str] = []
    for fn in ("mkstemp", "mkdtemp"):
        real = getattr(tempfile, fn)

        def spy(*a, _real=real, **kw):
            out = _real(*a, **kw)
            made.append(os.path.basename(out[1] if isinstance(out, tuple) else out))
            return out

        monkeypatch.setattr(tempfile, fn, spy)
    with atomic_file(tmp_path / "summary.json") as fh:
        fh.write(b"{}")
    with staged_files(tmp_path / "o") as stage:
        (stage / "a.csv").write_text("x", encoding="utf-8")
    import pandapower.networks as pn

    from lvplan.io.netfolder import write_folder
    from lvplan.study.run import _publish

    net = pn.example_simple()
    write_folder(net, tmp_path / "nets" / "n", {"name": "x"})
    write_folder(net, tmp_path / "nets" / "n", {"name": "x"})  # replaced: the old one aside
    st = tmp_path / "st"
    st.mkdir()
    (st / "study.json").write_text("{}", encoding="utf-8")
    _publish(st, tmp_path / "o")
    # a file, a stage, its commit mark and the old files linked aside, 2 network stages and an
    # .old, a publish and its commit mark
    assert len(made) == 9, made
    for name in made:  # a .tmp is swept; an .old, kept by the sweep, has the one prefix too
        if name.endswith(OLD_SUFFIX):
            assert name.startswith(atomic.TMP_PREFIX) and not atomic._STALE.fullmatch(name)
        else:
            assert atomic._STALE.fullmatch(name), name
    assert _names(tmp_path / "nets") == ["n"] and _names(tmp_path / "o") == ["a.csv", "study.json"]


def test_temporaries_are_made_in_one_place():
    """``tempfile.mkstemp``/``mkdtemp`` appear only in the two homes: ``io/atomic.py`` (beside an
    output) and ``io/owned_temp.py`` (under TMPDIR)."""
    homes = {SRC / "io" / "atomic.py", SRC / "io" / "owned_temp.py"}
    users = sorted(
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p not in homes and re.search(r"\bmk[sd]temp\(|TemporaryDirectory\(", p.read_text())
    )
    assert users == []


# -- a killed server's islands folder --------------------------------------------------------------
HOLD = """\
import sys, time
from lvplan.io.owned_temp import owned_temp_folder
with owned_temp_folder("serve-islands") as d:
    (d / "islands-x.pickle").write_bytes(b"x" * 4096)
    print(d, flush=True)
    time.sleep(600)
"""


def _holder(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    env = dict(os.environ, TMPDIR=str(tmp_path), OPENBLAS_NUM_THREADS="1")
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD], env=env, stdout=subprocess.PIPE, text=True
    )
    line = proc.stdout.readline().strip() if proc.stdout else ""
    assert line, "the holder printed no folder"
    return proc, Path(line)


def killed_owners_folder(tmp_path: Path) -> Path:
    """An islands folder whose owner was killed with SIGKILL (so it could not remove it)."""
    proc, folder = _holder(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert folder.is_dir() and (folder / "islands-x.pickle").is_file()
    return folder


def test_a_killed_owners_folder_is_removed_by_the_next_owner(tmp_path, monkeypatch):
    """Three folders in TMPDIR: a SIGKILLed owner's (its owner file even names a living pid,
    this test's own: a pid is not trusted), a living owner's, and one without an owner file
    (being made, or from an lvplan before this one). The next owner removes the first only;
    its own folder goes when its block ends."""
    from lvplan.io.owned_temp import OWNER_LOCK, owned_temp_folder

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = killed_owners_folder(tmp_path)
    (dead / OWNER_LOCK).write_text(f"{os.getpid()}\n", encoding="ascii")  # a reused pid
    living, alive = _holder(tmp_path)
    unknown = tmp_path / "lvplan-serve-islands-0ld0ne"
    unknown.mkdir()
    other_kind = tmp_path / "lvplan-other-x"
    other_kind.mkdir()
    (other_kind / OWNER_LOCK).touch()  # unlocked, but not this kind
    try:
        assert (alive / OWNER_LOCK).read_text(encoding="ascii").strip() == str(living.pid)
        with owned_temp_folder("serve-islands") as mine:
            assert not dead.exists()
            assert (alive / "islands-x.pickle").is_file()
            assert unknown.is_dir() and other_kind.is_dir()
            assert mine.parent == tmp_path and (mine.stat().st_mode & 0o777) == 0o700
            assert _names(mine) == [OWNER_LOCK]
        assert not mine.exists()
    finally:
        living.terminate()
        living.wait(30)
    assert alive.is_dir()  # SIGTERM kills the holder without its cleanup, as SIGKILL would...
    from lvplan.io.owned_temp import remove_dead_folders

    assert remove_dead_folders("serve-islands", tmp_path) == [alive.name]  # ... and now it goes
    assert sorted(p.name for p in tmp_path.iterdir()) == [other_kind.name, unknown.name]


@pytest.mark.parametrize("kind", ["serve-islands"])
def test_an_owner_in_the_making_is_never_removed(tmp_path, kind):
    """The owner file appears locked (made under another name, locked, renamed): a sweep that
    runs while an owner makes its folder finds no owner file or a held one."""
    from lvplan.io.owned_temp import OWNER_LOCK, _hold, remove_dead_folders

    folder = tmp_path / f"lvplan-{kind}-abc"
    folder.mkdir()
    assert remove_dead_folders(kind, tmp_path) == []  # no owner file yet
    fd = _hold(folder)
    try:
        assert _names(folder) == [OWNER_LOCK]
        assert remove_dead_folders(kind, tmp_path) == []  # held
    finally:
        os.close(fd)
    assert remove_dead_folders(kind, tmp_path) == [folder.name]


def test_a_killed_network_write_keeps_the_old_network_through_a_later_sweep(tmp_path):
    """A network folder's replacement killed between its two renames: the old network sits in
    the ``.old`` folder, the only copy; a later run that locks the parent sweeps the stage but
    keeps it (before, the ``.old`` pattern swept it with the network in it)."""
    par = tmp_path / "out"
    par.mkdir()
    old = temp_folder(par, "city", suffix=OLD_SUFFIX)
    (old / "net").mkdir()
    (old / "net" / "network.toml").write_text("name = 'city'\n", encoding="utf-8")
    stage = temp_folder(par, "city")
    (stage / "bus.csv").write_text("half", encoding="utf-8")
    with locked_folder(par):
        pass
    assert (old / "net" / "network.toml").read_text(encoding="utf-8") == "name = 'city'\n"
    assert not stage.exists()


def test_an_output_with_a_name_near_the_limit_is_written(tmp_path):
    """A temporary's name holds at most 48 characters of its output's name: a 240-character
    file name (the limit is 255 bytes) is written (before, its 265-character temporary was not:
    "File name too long")."""
    target = tmp_path / ("n" * 240 + ".csv")
    with atomic.atomic_file(target) as f:
        f.write(b"a,b\n")
    assert target.read_bytes() == b"a,b\n"
    assert _names(tmp_path) == [target.name]


_KILLED_AMONG_RENAMES = """
import os, sys
from pathlib import Path
from lvplan.io.atomic import staged_files

out = Path(sys.argv[1])
real = os.replace
with staged_files(out) as stage:
    for name in ("a.csv", "b.csv", "c.csv"):
        (stage / name).write_text("new", encoding="utf-8")
    if sys.argv[2] == "renaming":

        def first_then_killed(src, dst):
            real(src, dst)
            if Path(dst).parent == out:  # the first file is in: SIGKILL-like, no cleanup
                os._exit(9)

        os.replace = first_then_killed
    else:
        os._exit(9)  # killed while the files were being written
"""


@pytest.mark.parametrize("when", ["renaming", "writing"])
def test_a_run_killed_among_its_renames_is_finished_by_the_next(tmp_path, when):
    """``staged_files`` renames its files into ``out`` one by one: a kill between two renames
    left a plan.csv of the new run beside the old run's summary.json. The next run that locks
    the folder now finishes the renames (the stage carries a commit mark once every file is in
    full); a run killed before that leaves the old files, all of them."""
    out = tmp_path / "out"
    out.mkdir()
    for name in ("a.csv", "b.csv", "c.csv"):
        (out / name).write_text("old", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_AMONG_RENAMES, str(out), when], capture_output=True
    )
    assert proc.returncode == 9, proc.stderr
    texts = {n: (out / n).read_text(encoding="utf-8") for n in ("a.csv", "b.csv", "c.csv")}
    if when == "renaming":
        assert sorted(texts.values()) == ["new", "old", "old"]  # half of two runs, as before
    with locked_folder(out):
        pass
    want = "new" if when == "renaming" else "old"
    assert {n: (out / n).read_text(encoding="utf-8") for n in texts} == dict.fromkeys(texts, want)
    assert _names(out) == ["a.csv", "b.csv", "c.csv"]


def test_a_committed_stage_older_than_the_output_is_dropped_not_replayed(tmp_path):
    """A committed stage a later run could not remove (another user's, say) must not be rolled
    forward over a newer run's files when its owner next locks the folder: dropped instead."""
    out = tmp_path / "out"
    out.mkdir()
    stage = atomic.temp_folder(out, "out")
    (stage / "a.csv").write_text("older run", encoding="utf-8")
    (stage / atomic.COMMIT_MARK).write_text("", encoding="utf-8")
    (out / "a.csv").write_text("newer run", encoding="utf-8")
    t = (stage / atomic.COMMIT_MARK).stat().st_mtime_ns
    os.utime(out / "a.csv", ns=(t + 10**9, t + 10**9))
    assert remove_stale_temporaries(out) == [stage.name]
    assert _names(out) == ["a.csv"]
    assert (out / "a.csv").read_text(encoding="utf-8") == "newer run"


@pytest.mark.parametrize("stop", [KeyboardInterrupt, PermissionError])
def test_a_run_stopped_among_its_renames_leaves_one_runs_files(tmp_path, monkeypatch, stop):
    """Ctrl-C (SIGTERM: the same since 2026-12-05) between two renames: the stage was removed
    in its ``finally``, its renames lost, ``out`` half new, half old. Now the renames are
    finished before the interrupt goes on; a rename that fails leaves the marked stage for the
    next run that locks ``out`` to finish. Since 2026-12-06 a rename that fails is undone:
    ``out`` keeps the old files, and no stage is left."""
    out = tmp_path / "out"
    out.mkdir()
    for name in ("a.csv", "b.csv", "c.csv"):
        (out / name).write_text("old", encoding="utf-8")
    real, calls = os.replace, []

    def third_fails(src, dst):
        calls.append(dst)
        if len(calls) == 3:  # (the mark's, a.csv's, then b.csv's: out half new)
            raise stop("stopped among the renames")
        return real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", third_fails)
    with (
        pytest.raises((KeyboardInterrupt, atomic.InputError, OSError)),
        staged_files(out) as stage,
    ):
        for name in ("a.csv", "b.csv", "c.csv"):
            (stage / name).write_text("new", encoding="utf-8")
    monkeypatch.setattr(atomic.os, "replace", real)
    texts = {n: (out / n).read_text(encoding="utf-8") for n in ("a.csv", "b.csv", "c.csv")}
    # (an error: the renames undone, the old files kept; an interrupt: the renames finished)
    assert texts == dict.fromkeys(texts, "old" if stop is PermissionError else "new")
    assert _names(out) == ["a.csv", "b.csv", "c.csv"]


@pytest.mark.parametrize("stop", [KeyboardInterrupt, PermissionError])
def test_a_study_stopped_among_its_moves_loses_no_entry(tmp_path, monkeypatch, stop):
    """The study moves each entry of its stage in, the earlier run's moved aside first: an
    interrupt between the two moves of one entry removed the aside copy (and the stage, the
    new one): the entry was gone. Now an interrupt finishes the moves; an error puts the aside
    entries back where the new one did not arrive."""
    from pathlib import Path as P

    from lvplan.study.run import _publish

    dest, stage = tmp_path / "dest", tmp_path / "dest" / ".stage"
    stage.mkdir(parents=True)
    for name in ("a.csv", "b.csv"):
        (dest / name).write_text("old", encoding="utf-8")
        (stage / name).write_text("new", encoding="utf-8")
    real, calls = P.rename, []

    def fourth_fails(self, target):
        calls.append(target)
        if len(calls) == 4:  # (b.csv moved aside, the new one about to take its place)
            raise stop("stopped among the moves")
        return real(self, target)

    monkeypatch.setattr(P, "rename", fourth_fails)
    with pytest.raises((KeyboardInterrupt, OSError)):
        _publish(stage, dest)
    monkeypatch.setattr(P, "rename", real)
    texts = {n: (dest / n).read_text(encoding="utf-8") for n in ("a.csv", "b.csv")}
    want = {"a.csv": "new", "b.csv": "new" if stop is KeyboardInterrupt else "old"}
    assert texts == want
    assert _names(dest) == [".stage", "a.csv", "b.csv"]  # (nothing aside left behind)


_KILLED_BEFORE_THE_DROPS = """
import os, sys
from pathlib import Path
from lvplan.io import atomic

out = Path(sys.argv[1])
real = atomic.Path.unlink

def killed(self, *a, **k):  # the new files are in; the old map is about to go: SIGKILL-like
    if self.name == "map.html":
        os._exit(9)
    return real(self, *a, **k)

atomic.Path.unlink = killed
with atomic.staged_files(out, drop=["map.html", "map.png"]) as stage:
    (stage / "hosting.csv").write_text("new", encoding="utf-8")
"""


def test_a_run_killed_before_its_drops_has_them_done_by_the_next(tmp_path):
    """``hosting --no-maps`` over an earlier run with maps: its files are renamed in, then the
    old maps removed. A run killed between the two left the old maps beside the new tables
    (the commit mark covered the renames only). The mark now names the files to drop: the next
    run that locks the folder drops them, unless a map there is newer than the mark."""
    out = tmp_path / "out"
    out.mkdir()
    for name in ("hosting.csv", "map.html", "map.png"):
        (out / name).write_text("old", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_BEFORE_THE_DROPS, str(out)], capture_output=True
    )
    assert proc.returncode == 9, proc.stderr
    assert (out / "hosting.csv").read_text(encoding="utf-8") == "new"
    assert (out / "map.html").exists()  # (killed before the drops)
    with locked_folder(out):
        pass
    assert _names(out) == ["hosting.csv"]
    # a map written after the mark (a later run's) is not dropped: the stage goes, unreplayed
    stage = atomic.temp_folder(out, "out")
    (stage / atomic.COMMIT_MARK).write_text('{"drop": ["map.html"]}', encoding="utf-8")
    (out / "map.html").write_text("later run", encoding="utf-8")
    t = (stage / atomic.COMMIT_MARK).stat().st_mtime_ns
    os.utime(out / "map.html", ns=(t + 10**9, t + 10**9))
    assert remove_stale_temporaries(out) == [stage.name]
    assert (out / "map.html").read_text(encoding="utf-8") == "later run"


def test_a_later_map_keeps_itself_and_the_renames_still_finish(tmp_path):
    """A stage killed half way through its renames, whose mark says to drop ``map.html``; a map
    written after the mark (a later run's) is kept, and the stage's other renames are done all
    the same (before the review fix they were given up: ``hosting.csv`` new beside an old
    ``summary.json``)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "hosting.csv").write_text("new", encoding="utf-8")  # (renamed in before the kill)
    (out / "summary.json").write_text("old", encoding="utf-8")
    stage = atomic.temp_folder(out, "out")
    (stage / "summary.json").write_text("new", encoding="utf-8")
    (stage / atomic.COMMIT_MARK).write_text('{"drop": ["map.html"]}', encoding="utf-8")
    t = (stage / atomic.COMMIT_MARK).stat().st_mtime_ns
    for name in ("hosting.csv", "summary.json"):
        os.utime(out / name, ns=(t - 10**9, t - 10**9))
    (out / "map.html").write_text("later run", encoding="utf-8")
    os.utime(out / "map.html", ns=(t + 10**9, t + 10**9))
    assert remove_stale_temporaries(out) == [stage.name]
    assert (out / "summary.json").read_text(encoding="utf-8") == "new"
    assert (out / "map.html").read_text(encoding="utf-8") == "later run"


@pytest.mark.parametrize(
    "mark",
    [
        '{"drop": null}',
        '{"drop": 5}',
        '{"drop": [5, null]}',
        '{"drop": "ab"}',
        '{"drop": ["keep.txt", ".lvplan.lock", "../victim", "/etc/passwd"]}',
        "[1, 2]",
        "not json",
        "[" * 100_000,
    ],
)
def test_a_marks_drop_list_removes_only_an_earlier_runs_maps(tmp_path, mark):
    """What a commit mark names to drop is followed only for an earlier run's maps
    (``atomic.DROPPABLE``): a mark of any other shape (a planted one) drops nothing and the
    renames are done; before the review fix ``{"drop": null}`` was a traceback and
    ``{"drop": "ab"}`` removed the files ``a`` and ``b``."""
    out = tmp_path / "out"
    out.mkdir()
    for name in ("a", "b", "keep.txt", "map.png"):
        (out / name).write_text("user", encoding="utf-8")
    (tmp_path / "victim").write_text("user", encoding="utf-8")
    stage = atomic.temp_folder(out, "out")
    (stage / "hosting.csv").write_text("new", encoding="utf-8")
    (stage / atomic.COMMIT_MARK).write_text(mark, encoding="utf-8")
    assert remove_stale_temporaries(out) == [stage.name]
    assert _names(out) == ["a", "b", "hosting.csv", "keep.txt", "map.png"]
    assert (tmp_path / "victim").is_file()
    # the maps, and only they, may be named
    stage = atomic.temp_folder(out, "out")
    (stage / atomic.COMMIT_MARK).write_text('{"drop": ["map.png", "a"]}', encoding="utf-8")
    remove_stale_temporaries(out)
    assert _names(out) == ["a", "b", "hosting.csv", "keep.txt"]


def test_only_the_maps_may_be_dropped():
    from lvplan.hosting.outputs import MAP_FILES

    assert set(MAP_FILES) <= atomic.DROPPABLE
    with pytest.raises(ValueError, match="not in DROPPABLE"), staged_files("x", drop=["a.csv"]):
        pass
