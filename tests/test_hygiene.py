"""Robustness: a file hashed in bounded memory, hostile names in the study report, the reason
a demand is left unserved, careless ``lvplan plan`` arguments."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

from lvplan.study.run import sha256_file


# -- hashing an input file ------------------------------------------------------------------------
def test_sha256_of_a_file_reads_it_in_chunks(tmp_path):
    """The study's input fingerprints: a 64 MB file is hashed with a few hundred kB of buffer
    (before: ``path.read_bytes()``, the whole file in memory at once)."""
    size = 64 * 2**20
    f = tmp_path / "big.bin"
    with f.open("wb") as fh:  # sparse: no disk used
        fh.truncate(size)
    tracemalloc.start()
    try:
        digest = sha256_file(f)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest == hashlib.sha256(bytes(size)).hexdigest()
    assert peak < 2 * 2**20, f"peak {peak / 2**20:.1f} MB for a 64 MB file"


# -- the plan's files: one staging home, a full disk, a kill -------------------------------------
ROOT = Path(__file__).resolve().parents[1]
DEMAND = ROOT / "studies" / "demand" / "sz-futian-30.csv"
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1")


def _lvplan(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lvplan.cli", *args],
        env=ENV, capture_output=True, text=True, timeout=300, **kw,
    )  # fmt: skip


def _small_files(limit: int):
    def limit_writes() -> None:  # a write past `limit` bytes fails with EFBIG, as a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_writes


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_plan_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    """Files may grow to 20 kB only. Before: an OSError traceback (exit 1) from writing the
    first finished group to ``parts/``, and the new folder left behind with an empty parts/."""
    out = tmp_path / "work" / "p"
    out.parent.mkdir()
    res = _lvplan(
        "plan", "sz-futian", "--demand", str(DEMAND), "--out", str(out), "--time-limit", "3",
        preexec_fn=_small_files(20_000),
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip() == f"lvplan: error: --out {out}: cannot write it: File too large"
    assert _tree(out.parent) == []  # no file, no temporary, no folder


KILL_AT = """\
import os, signal, sys
from pathlib import Path
import lvplan.planning.outputs as outputs
from lvplan.cli import main
real = outputs.write_text_atomic
def killed(path, text):
    if Path(path).name == sys.argv[1]:
        os.kill(os.getpid(), signal.SIGKILL)
    real(path, text)
outputs.write_text_atomic = killed
sys.exit(main(sys.argv[2:]))
"""


def _files(out: Path) -> dict[str, bytes]:
    return {n: (out / n).read_bytes() for n in ("plan.csv", "assignment.csv", "unserved.csv")}


#: the timings of summary.json (the only things two runs of one plan differ in)
TIMINGS = {"runtime_s", "seconds", "cpu_s", "time_limit_s"}


def _summary(out: Path) -> Any:
    def drop(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: drop(v) for k, v in x.items() if k not in TIMINGS}
        if isinstance(x, list):
            return [drop(v) for v in x]
        return x

    return drop(json.loads((out / "summary.json").read_text(encoding="utf-8")))


def test_a_plan_killed_while_writing_leaves_no_file_and_resumes(tmp_path):
    """SIGKILL while summary.json is written (plan.csv, assignment.csv, unserved.csv already
    staged): none of the plan's files appears in DIR, only the finished groups (parts/) and a
    hidden stage; ``--resume DIR`` then writes the files of an uninterrupted run (the same
    bytes) and removes the stage the killed run left."""
    args = ["plan", "sz-futian", "--demand", str(DEMAND), "--method", "greedy"]
    clean = tmp_path / "clean"
    assert _lvplan(*args, "--out", str(clean)).returncode == 0
    out = tmp_path / "killed"
    res = subprocess.run(
        [sys.executable, "-c", KILL_AT, "summary.json", *args, "--out", str(out)],
        env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == -signal.SIGKILL, res.stderr
    visible = [p for p in _tree(out) if not p.startswith(".")]
    assert visible and all(p.startswith("parts") for p in visible), visible
    assert any(p.startswith(".") and p != ".lvplan.lock" for p in _tree(out))  # the stage
    res = _lvplan(*args, "--resume", str(out))
    assert res.returncode == 0, res.stderr
    assert _files(out) == _files(clean) and _summary(out) == _summary(clean)
    assert [p for p in _tree(out) if p.startswith(".")] == []  # the stale stage removed
