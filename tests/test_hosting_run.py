"""Running the hosting map: local processes, Dask, a killed worker, resuming an interrupted run.

Every way of running it must give the same table, bus for bus, with every bus exactly once.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from closed_pipe import ClosedPipe
from procs import outliving

import lvplan.hosting.run as run_mod
from lvplan.cli import main
from lvplan.errors import InputError
from lvplan.hosting import hosting_capacity


@pytest.fixture(scope="module")
def urban_map(urban, cn):
    return hosting_capacity(urban, criteria=cn).table


def test_local_processes_give_the_same_table(urban, cn, urban_map):
    res = hosting_capacity(urban, criteria=cn, workers=2, chunk_buses=1500)
    assert res.stats.chunks >= 7
    pd.testing.assert_frame_equal(res.table, urban_map)


def _interrupted(sz, cn, tmp_path, monkeypatch) -> None:
    """A map of sz-futian in chunks of 5 buses into ``tmp_path``, interrupted (Ctrl-C) at its
    fourth chunk: three are written."""
    real = run_mod.solve_chunk
    calls = {"n": 0}

    def dies_on_the_fourth(problems, pf, max_kw):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # the run is interrupted here
        return real(problems, pf, max_kw)

    monkeypatch.setattr(run_mod, "solve_chunk", dies_on_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        hosting_capacity(sz, criteria=cn, work_dir=tmp_path, chunk_buses=5)
    monkeypatch.setattr(run_mod, "solve_chunk", real)
    assert len(sorted((tmp_path / "chunks").glob("0*.csv"))) == 3


def test_resume_reuses_finished_chunks(sz, cn, tmp_path, monkeypatch):
    fresh = hosting_capacity(sz, criteria=cn).table
    _interrupted(sz, cn, tmp_path, monkeypatch)
    again = hosting_capacity(sz, criteria=cn, work_dir=tmp_path, resume=True, chunk_buses=5)
    assert again.stats.chunks_reused == 3
    assert again.stats.chunks == 6  # areas of fewer than 5 buses share chunks
    pd.testing.assert_frame_equal(again.table, fresh, check_dtype=False)
    assert not (tmp_path / "chunks").exists()  # cleared after success


@pytest.mark.parametrize(
    "damage",
    [
        lambda t: "\x00\x01 junk \xff" * 40,
        lambda t: t[: len(t) // 2],
        lambda t: "bus,foo\n1,2\n",
        lambda t: t.replace(t.splitlines()[1].split(",")[1], "999999", 1),
        lambda t: t.replace(t.splitlines()[1].split(",")[1], "abc", 1),
        lambda t: "\n".join(t.splitlines()[:-1]) + "\n",
    ],
    ids=["junk", "cut", "columns", "huge", "text", "a-row-short"],
)
def test_resume_solves_a_damaged_chunk_again(sz, cn, tmp_path, monkeypatch, damage):
    """``--resume`` read the chunk files as they were: junk or a cut file gave a map with
    buses missing, 999999 kW was written above the cap, "abc" a traceback (probe,
    2026-12-07). A chunk that is not what a run writes is solved again."""
    fresh = hosting_capacity(sz, criteria=cn).table
    _interrupted(sz, cn, tmp_path, monkeypatch)
    first = sorted((tmp_path / "chunks").glob("0*.csv"))[0]
    first.write_text(damage(first.read_text(encoding="utf-8")), encoding="utf-8")
    again = hosting_capacity(sz, criteria=cn, work_dir=tmp_path, resume=True, chunk_buses=5)
    assert again.stats.chunks_reused == 2
    pd.testing.assert_frame_equal(again.table, fresh, check_dtype=False)


def test_a_map_that_cannot_write_its_files_keeps_its_chunks(tmp_path, monkeypatch, capsys):
    """The chunks were removed before the map's files were written: a full disk then lost
    the whole computation, and ``--resume`` found no manifest (probe, 2026-12-07)."""
    from lvplan import cli
    from lvplan.hosting import outputs

    def full(result, net, crit, folder, **k):  # (as write_outputs says a full disk)
        raise InputError(f"--out {folder}: cannot write it: No space left on device")

    new = tmp_path / "new"  # a folder this run makes goes whole, as a plan's does
    monkeypatch.setattr(outputs, "write_outputs", full)
    assert cli.main(["hosting", "sz-futian", "--out", str(new), "--no-maps"]) == 2
    assert not new.exists()
    out = tmp_path / "h"  # an existing folder keeps what the run computed
    out.mkdir()
    assert cli.main(["hosting", "sz-futian", "--out", str(out), "--no-maps"]) == 2
    capsys.readouterr()
    assert (out / "chunks" / "manifest.json").is_file()
    monkeypatch.undo()
    assert cli.main(["hosting", "sz-futian", "--resume", str(out), "--no-maps"]) == 0
    assert (out / "hosting.csv").is_file() and not (out / "chunks").exists()


def test_a_run_deletes_only_its_own_chunk_files(sz, cn, tmp_path):
    """A fresh run emptied ``chunks/`` of every ``*.csv`` and cleared the folder of
    everything: an engineer's file there was lost. Its own files go (a stale chunk of an
    earlier run and a killed run's half-written one included), the rest stays, and so does
    the folder that holds it."""
    cdir = tmp_path / "chunks"
    cdir.mkdir()
    (cdir / "000007.csv").write_text("stale chunk\n", encoding="utf-8")
    (cdir / "feeders.csv").write_text("mine\n", encoding="utf-8")
    (cdir / "notes.txt").write_text("mine too\n", encoding="utf-8")
    (cdir / ".lvplan-tmp.000003.csv.abcd1234.tmp").write_text("half", encoding="utf-8")
    res = hosting_capacity(sz, criteria=cn, work_dir=tmp_path, chunk_buses=5)
    assert res.stats.chunks == 6 and res.stats.chunks_reused == 0
    assert sorted(p.name for p in cdir.iterdir()) == ["feeders.csv", "notes.txt"]
    assert (cdir / "feeders.csv").read_text(encoding="utf-8") == "mine\n"


def test_resume_refuses_chunks_of_another_run(sz, cn, tmp_path, monkeypatch):
    def interrupted(problems, pf, max_kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_mod, "solve_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        hosting_capacity(sz, criteria=cn, work_dir=tmp_path, chunk_buses=5)
    monkeypatch.undo()
    with pytest.raises(InputError, match="another run"):
        hosting_capacity(sz, criteria=cn, pf=0.95, work_dir=tmp_path, resume=True, chunk_buses=5)
    with pytest.raises(InputError, match="no interrupted run"):
        hosting_capacity(sz, criteria=cn, work_dir=tmp_path / "empty", resume=True)


def test_resume_refuses_chunks_another_lvplan_solved(sz, cn, tmp_path, monkeypatch):
    """The version stays 0.1.0 from commit to commit: chunks an earlier commit solved were
    read by a later one as its own (a fix to the search did not reach them). The manifest
    names the code (lvplan.code_id), and a resume under other code is refused in one line."""
    import lvplan.code_id as code_id_mod

    _interrupted(sz, cn, tmp_path, monkeypatch)
    monkeypatch.setattr(code_id_mod, "code_hash", lambda: "0123456789ab")
    with pytest.raises(InputError, match=r"solved by another lvplan \(0\.1\.0\+[0-9a-f]{12};"):
        hosting_capacity(sz, criteria=cn, work_dir=tmp_path, resume=True, chunk_buses=5)
    monkeypatch.undo()
    again = hosting_capacity(sz, criteria=cn, work_dir=tmp_path, resume=True, chunk_buses=5)
    assert again.stats.chunks_reused == 3


def test_the_code_hash_follows_the_code_not_the_files_times(tmp_path):
    from lvplan.code_id import code_hash, dependency_versions, tree_hash

    src = Path(__file__).resolve().parents[1] / "src" / "lvplan"
    deps = dependency_versions()
    assert deps.startswith("pandapower==3.") and ";pandas==" in deps  # (the libraries too)
    # (the tests run the source tree: an editable install)
    assert tree_hash(src, deps) == code_hash() != tree_hash(src)
    copy = tmp_path / "lvplan"
    shutil.copytree(src, copy, ignore=shutil.ignore_patterns("__pycache__"))
    first = tree_hash(copy)
    assert tree_hash(copy, deps) == code_hash()
    assert tree_hash(copy, deps.replace("pandapower==3.", "pandapower==9.")) != code_hash()
    os.utime(copy / "decision.py", (1, 1))
    (copy / "notes.txt").write_text("not code")
    assert tree_hash(copy) == first
    (copy / "criteria" / "cn.toml").write_text(
        (copy / "criteria" / "cn.toml").read_text() + "\n# a comment\n"
    )
    assert tree_hash(copy) != first


def test_dask_cluster_gives_the_same_table_and_survives_a_killed_worker(urban, cn, urban_map):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        same = hosting_capacity(urban, criteria=cn, scheduler=cluster.scheduler_address)
        pd.testing.assert_frame_equal(same.table, urban_map)

        # now kill one worker with SIGKILL while its chunks are running
        with distributed.Client(cluster.scheduler_address) as client:
            pids = list(client.run(os.getpid).values())
        box: dict = {}

        def go():
            box["df"] = hosting_capacity(
                urban, criteria=cn, scheduler=cluster.scheduler_address, chunk_buses=150
            ).table

        t = threading.Thread(target=go)
        t.start()
        killed = False
        with distributed.Client(cluster.scheduler_address) as client:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not killed:
                processing = client.processing()
                busy = [w for w, keys in processing.items() if keys]
                if busy:
                    info = client.scheduler_info()["workers"]
                    pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
                    assert pid in pids and info
                    os.kill(pid, signal.SIGKILL)
                    killed = True
                time.sleep(0.05)
        t.join(timeout=300)
        assert killed, "no worker was busy: the test did not kill anything"
        df = box["df"]
        assert df.bus.is_unique and len(df) == len(urban_map)
        pd.testing.assert_frame_equal(df, urban_map)


def test_unreachable_scheduler_is_a_clear_error(sz, cn):
    with pytest.raises(InputError, match="cannot reach the Dask scheduler"):
        hosting_capacity(sz, criteria=cn, scheduler="tcp://127.0.0.1:9")


_HELD_DRIVER = """
import sys
sys.path.insert(0, sys.argv[1])
import held_chunk
from lvplan.hosting import run
run.solve_chunk = held_chunk.held_chunk  # what the pool hands its workers
from lvplan.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_a_killed_hosting_driver_leaves_no_worker_and_resume_gives_the_same_map(
    urban, urban_map, tmp_path, capsys
):
    """``lvplan hosting --workers 2`` is SIGKILLed while its two spawned workers hold chunks
    (each held for minutes after solving, as a large city's chunk would be): no worker is left
    5 s later (before, each ran its chunk to the end with no one to answer), and ``--resume``
    on the folder reuses the chunk it had written and gives the uninterrupted run's map, byte
    for byte.

    Both runs read the urban district from a pandapower JSON file of it, not by name (which
    converts it from SimBench again in each process, seconds more): the same tables, hence the
    same map, compared byte for byte below."""
    import subprocess
    import sys

    import pandapower as pp
    import psutil

    held = tmp_path / "held"
    held.mkdir()
    out = tmp_path / "killed"
    net_file = tmp_path / "simbench-urban.json"
    pp.to_json(urban.pp, str(net_file))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", LVPLAN_TEST_HELD=str(held))
    args = ["hosting", str(net_file), "--no-maps", "--workers", "2"]
    tests = str(Path(__file__).parent)
    drv = subprocess.Popen(
        [sys.executable, "-c", _HELD_DRIVER, tests, *args, "--out", str(out)], env=env
    )
    workers: list = []
    try:
        me = psutil.Process(drv.pid)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and drv.poll() is None:
            if len(os.listdir(held)) >= 2 and list((out / "chunks").glob("*.csv")):
                break
            time.sleep(0.1)
        workers = [p for p in me.children() if "spawn_main" in " ".join(p.cmdline())]
        assert drv.poll() is None and len(workers) == 2, "the driver ended before holding"
        drv.kill()  # SIGKILL: no handler, no atexit, no pool shutdown
        drv.wait()
        alive = outliving(workers)
        assert not alive, f"{len(alive)} worker(s) still running 5 s after their driver died"
    finally:
        for p in [drv, *workers]:
            with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
                p.kill()
    kept = sorted((out / "chunks").glob("*.csv"))
    assert kept
    # the resumed run is the same command line, in this process: its imports and numba's
    # compiled load flow are warm here (a fresh interpreter spent ~5 s on them); its pool
    # spawns its own workers as the driver's did
    capsys.readouterr()
    assert main([*args, "--json", "--resume", str(out)]) == 0
    stats = json.loads(capsys.readouterr().out)["stats"]
    assert stats["chunks_reused"] == len(kept) and stats["chunks"] == 8
    # the uninterrupted run's hosting.csv is its table as CSV (hosting/outputs.py)
    assert (out / "hosting.csv").read_text() == urban_map.to_csv(index=False)


@pytest.mark.parametrize("writes", [0, 1, 3])
def test_a_progress_bar_whose_reader_left_goes_quiet(monkeypatch, writes):
    """``lvplan map ... --progress 2>&1 | head -1``: the bar stops, the map does not (before,
    BrokenPipeError left the map's loop)."""
    from lvplan.hosting.run import Progress
    from lvplan.io.stderr_report import reporter

    monkeypatch.setattr("sys.stderr", ClosedPipe(writes))
    bar = Progress(100, enabled=True)
    for _ in range(100):
        bar(1)
    bar.close()
    assert bar.bar is None
    # tqdm's class-wide write lock is free: another bar, in another thread, draws
    import io

    from tqdm import tqdm

    def other() -> None:
        with tqdm(total=3, file=io.StringIO(), mininterval=0) as t:
            t.update(3)

    th = threading.Thread(target=other, daemon=True)
    th.start()
    th.join(timeout=10)
    assert not th.is_alive()
    monkeypatch.setattr("sys.stderr", ClosedPipe(writes))
    say = reporter("lvplan plan: ")
    for i in range(5):
        say(f"line {i}")  # quiet from the first failure on, never raising
