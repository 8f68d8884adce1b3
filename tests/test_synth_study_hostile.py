"""Hostile input on ``lvplan study``, ``lvplan synth demand`` and ``lvplan synth city``: each
case is one stderr line and exit 2, never a traceback or a hang, and no output half-written
(a full disk leaves no file, no folder and no earlier network mixed with a new one)."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_study import QUICK

from lvplan.cli import main

#: a quick study: the applications replayed on sz-futian only
STUDY = "run: {hosting: false, plan: false, inspect: false}\n" + QUICK.replace(
    "    parcels: {synth: {count: 12, seed: 1}}\n", ""
).replace("count: 40", "count: 5")


def _bad(capsys, argv, phrase: str) -> str:
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("lvplan: error: ") and phrase in err, err
    return err.strip()


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# -- a full disk --------------------------------------------------------------------------------
def _small_files(limit: int):
    def limit_writes() -> None:  # a write past `limit` bytes fails with EFBIG, as a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_writes


@pytest.mark.parametrize(
    ("args", "out"),
    [
        (["synth", "demand", "sz-futian", "--count", "2000"], "d.csv"),
        (["synth", "city", "--transformers", "20"], "city"),
        (["synth", "city", "--transformers", "20"], "city.json"),
        (["study", "STUDY"], "study"),
        (["hosting", "sz-futian"], "map"),
    ],
)
def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, args, out):
    """Files may grow to 20 kB only (RLIMIT_FSIZE: the write fails as on a full disk). Before,
    each was an OSError traceback, ``synth city`` left a folder with bus.csv alone and
    ``lvplan hosting`` one with hosting.csv, transformers.csv and hosting.geojson."""
    study = tmp_path / "s.yaml"
    study.write_text(STUDY, encoding="utf-8")
    work = tmp_path / "work"
    work.mkdir()
    argv = [str(study) if a == "STUDY" else a for a in args] + ["--out", str(work / out)]
    res = subprocess.run(
        [sys.executable, "-m", "lvplan.cli", *argv],
        env=dict(os.environ, OPENBLAS_NUM_THREADS="1", NUMBA_DISABLE_JIT="0"),
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_small_files(20_000),
    )
    err = res.stderr.strip()
    assert res.returncode == 2, res.stderr
    assert err == f"lvplan: error: --out {work / out}: cannot write it: File too large"
    assert _tree(work) == []  # no file, no temporary, no folder


# -- a file where a folder should be, a folder where a file should be ---------------------------
def test_a_path_through_a_file_or_onto_a_folder(capsys, tmp_path):
    blocker = tmp_path / "a file"
    blocker.write_text("x", encoding="utf-8")
    (tmp_path / "folder").mkdir()
    demand = ["synth", "demand", "sz-futian", "--count", "5", "--out"]
    city = ["synth", "city", "--transformers", "2", "--out"]
    through = "cannot write it: a part of its path is a file, not a folder"
    _bad(capsys, [*demand, blocker / "d.csv"], through)
    _bad(capsys, [*demand, tmp_path / "folder"], "is a folder; give a file to write")
    # a folder meant, not made yet: it was written as a file named ``new`` (found by review)
    _bad(capsys, [*demand, f"{tmp_path}/new/"], "names a folder (it ends in '/')")
    assert not (tmp_path / "new").exists()
    _bad(capsys, [*city, blocker / "c.json"], through)
    _bad(capsys, [*city, blocker / "c"], through)
    _bad(capsys, [*city, blocker], "exists and is not a folder")
    study = tmp_path / "s.yaml"
    study.write_text(STUDY, encoding="utf-8")
    _bad(capsys, ["study", study, "--out", blocker], "exists and is not a folder")
    _bad(capsys, ["study", study, "--out", blocker / "o"], "cannot create it")
    assert blocker.read_text(encoding="utf-8") == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a file", "folder", "s.yaml"]


def test_synth_city_replaces_a_network_folder_whole_and_refuses_any_other(
    capsys, tmp_path, monkeypatch
):
    """A network folder written again holds the new network alone (before, a table the new
    network does not have, an old sgen.csv, stayed beside it and loaded with it); a folder of
    other files is refused and left as it was."""
    out = tmp_path / "city"
    assert main(["synth", "city", "--transformers", "2", "--out", str(out)]) == 0
    (out / "sgen.csv").write_text("stale", encoding="utf-8")
    assert main(["synth", "city", "--transformers", "3", "--out", str(out)]) == 0
    assert "sgen.csv" not in _tree(out)
    assert "synth-city-3-seed1" in (out / "network.toml").read_text(encoding="utf-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["city"]  # no temporary left
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep", encoding="utf-8")
    _bad(capsys, ["synth", "city", "--transformers", "2", "--out", mine], "other files")
    assert _tree(mine) == ["notes.txt"]
    # a network folder with anything else in it is refused too (replaced whole, it was lost
    # with it: found by review), and so is the working folder or one above it
    (out / "readme.txt").write_text("keep", encoding="utf-8")
    (out / "scratch").mkdir()
    _bad(capsys, ["synth", "city", "--transformers", "2", "--out", out], "(readme.txt, scratch)")
    assert (out / "readme.txt").is_file() and (out / "scratch").is_dir()
    (out / "readme.txt").unlink()
    monkeypatch.chdir(out / "scratch")
    for where in ("..", "x/..", str(out), "../scratch", "."):
        _bad(capsys, ["synth", "city", "--transformers", "2", "--out", where], "working folder")
    assert (out / "scratch").is_dir() and (out / "network.toml").is_file()
    assert not (out / "scratch" / "x").exists()
    # tables alone, with no network.toml, are a user's files; a link is not replaced by a folder
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "load.csv").write_text("my,own\n", encoding="utf-8")
    args = ["synth", "city", "--transformers", "2", "--out", "data"]
    _bad(capsys, args, "no network.toml beside its tables")
    assert (tmp_path / "data" / "load.csv").read_text(encoding="utf-8") == "my,own\n"
    (out / "scratch").rmdir()
    (tmp_path / "lnk").symlink_to(out)
    for where in ("lnk", "lnk/", "x/../lnk"):
        _bad(capsys, ["synth", "city", "--transformers", "2", "--out", where], "symbolic link")
    assert (tmp_path / "lnk").is_symlink()
    # a working folder that was removed: the network folder is replaced all the same
    (tmp_path / "gone").mkdir()
    monkeypatch.chdir(tmp_path / "gone")
    (tmp_path / "gone").rmdir()
    assert main(["synth", "city", "--transformers", "3", "--seed", "2", "--out", str(out)]) == 0
    assert "synth-city-3-seed2" in (out / "network.toml").read_text(encoding="utf-8")


# -- malformed and deep study files ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        (STUDY + "description: " + "[" * 20_000 + "]" * 20_000 + "\n", "nested too deeply"),
        (
            STUDY.replace(
                "name: quick", "name: quick\ndescription: " + "{a: " * 5000 + "1" + "}" * 5000
            ),
            "nested too deeply",
        ),
        (
            STUDY.replace("seed: 7}", "seed: 7, sizes_kw: [[10, 50, .nan], [50, 100, 1]]}"),
            "networks[0].applications.synth.sizes_kw[0]: need 0 < lowest < highest kW and a "
            "share >= 0, got [10, 50, nan]",
        ),
        (
            STUDY.replace("seed: 7}", "seed: 7, categories: {shop: .inf}}"),
            "networks[0].applications.synth.categories.shop: a share must be a finite number",
        ),
        (
            STUDY.replace("[160, 200]", "[" + ", ".join(str(10 + k) for k in range(11)) + "]"),
            "policies_kw: List should have at most 10 items",
        ),
        (
            STUDY + "".join(f"  - {{network: sz-futian, label: n{k}}}\n" for k in range(20)),
            "networks: List should have at most 20 items",
        ),
    ],
    ids=["deep-list", "deep-map", "nan-share", "inf-share", "11-policies", "21-networks"],
)
def test_bad_study_files_are_one_line(capsys, tmp_path, text, phrase):
    """Before: a RecursionError traceback (deep YAML), numpy's "Probabilities contain NaN"
    traceback (a NaN or infinite share), and 20,000 policies replayed one after another for
    as long as the user waited."""
    f = tmp_path / "s.yaml"
    f.write_text(text, encoding="utf-8")
    _bad(capsys, ["study", f, "--out", tmp_path / "out"], phrase)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_study_file_that_is_a_pipe_no_one_writes_is_refused_not_waited_on(tmp_path):
    """Before, opening it blocked for ever."""
    fifo = tmp_path / "s.yaml"
    os.mkfifo(fifo)
    res = subprocess.run(
        [sys.executable, "-m", "lvplan.cli", "study", str(fifo), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2
    assert res.stderr.strip() == (
        f"lvplan: error: {fifo}: expected a YAML mapping of study keys (name, networks, ...)"
    )
    assert not (tmp_path / "o").exists()


def test_a_study_that_ran_is_still_whole(tmp_path):
    """The study written through its hidden folder: every file moved in, nothing hidden left."""
    f = tmp_path / "s.yaml"
    f.write_text(STUDY, encoding="utf-8")
    out = tmp_path / "out"
    assert main(["study", str(f), "--out", str(out)]) == 0
    names = _tree(out)
    assert (
        "study.json" in names and "report.html" in names and "sz-futian/replay-200kw.csv" in names
    )
    assert not [n for n in names if n.startswith(".")]
