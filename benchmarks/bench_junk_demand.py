"""Peak memory and time of ``lvplan plan sz-futian --demand FILE`` on hostile demand files.

    python benchmarks/bench_junk_demand.py [SCRATCH_DIR] [--mb 200] [--only NAME] [--network NET]

Writes each file into SCRATCH_DIR (default: a temporary folder, removed after), runs
``/usr/bin/time -v python -m lvplan.cli plan sz-futian --demand FILE --out DIR`` once per file
and prints, per file: exit code, stderr line count, whether a traceback was printed, peak RSS
(MB), wall seconds, and the first stderr line. Every case is bad input: each must exit 2 with
one line. The ``tiny`` row (a bad row: read after the network loads) is the baseline.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

HEADER = b"id,kw,bus\n"


def _write(path: Path, chunk: bytes, total: int, head: bytes = b"") -> None:
    with path.open("wb") as fh:
        fh.write(head)
        left = total - len(head)
        while left > 0:
            fh.write(chunk[:left])
            left -= len(chunk)


def make_cases(d: Path, mb: int) -> dict[str, Path]:
    big = mb * 2**20
    rnd = os.urandom(2**20)
    printable = re.sub(rb"[^A-Za-z0-9+/;,. ]", b"q", rnd)
    lines = b"\n".join(printable[i : i + 76] for i in range(0, len(printable), 77)) + b"\n"
    cases = {
        "tiny": (b"id,kw,bus\na,-1,6\n", 0, b""),  # a bad row: the baseline
        f"text junk {mb} MB": (lines, big, b""),
        f"header + junk rows {mb} MB": (lines, big, HEADER),
        f"one line {mb} MB": (printable.replace(b"\n", b" "), big, b""),
        f"binary {mb} MB": (rnd, big, b""),
        f"blank lines {mb} MB": (b"\n" * 2**20, big, b""),
        "one line 10 MB": (printable.replace(b"\n", b" "), 10 * 2**20, b""),
        "UTF-16": ("id,kw,bus\na,50,6\n".encode("utf-16"), 0, b""),
        "BOM + junk": (b"\xef\xbb\xbfq;w;e\n" * 1000, 0, b""),
    }
    out = {}
    for i, (name, (chunk, total, head)) in enumerate(cases.items()):
        p = d / f"case{i}.csv"
        if total:
            _write(p, chunk, total, head)
        else:
            p.write_bytes(chunk)
        out[name] = p
    (d / "folder.csv").mkdir(exist_ok=True)
    out["a folder"] = d / "folder.csv"
    fifo = d / "fifo.csv"
    if not fifo.exists():
        os.mkfifo(fifo)
    out["a FIFO no one writes"] = fifo
    return out


def run(name: str, demand: Path, scratch: Path, network: str) -> None:
    out = scratch / "out"
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "lvplan.cli", "plan", network]
    cmd += ["--demand", str(demand), "--out", str(out), "--method", "greedy"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    err = res.stderr.splitlines()
    ti = next(i for i, x in enumerate(err) if "Command being timed" in x)
    ours, timing = err[:ti], "\n".join(err[ti:])
    ours = [x for x in ours if not x.startswith("Command exited with non-zero status")]
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", timing).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", timing).group(1)
    m, s = wall.split(":")[-2:]
    secs = 60 * float(m) + float(s)
    tb = any("Traceback" in x for x in ours)
    first = ours[0][:110] if ours else ""
    print(
        f"{name:28s} rc={res.returncode} lines={len(ours)} traceback={tb!s:5s} "
        f"peak={rss / 1024:7.0f} MB  {secs:6.1f} s  {first}",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("scratch", nargs="?")
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("--only", default="", help="run only the cases whose name contains this")
    ap.add_argument("--network", default="sz-futian", help="the network planned (its load counts)")
    a = ap.parse_args()
    d = Path(a.scratch) if a.scratch else Path(tempfile.mkdtemp(prefix="bench-junk-"))
    d.mkdir(parents=True, exist_ok=True)
    try:
        cases = make_cases(d, a.mb)
        for name, p in cases.items():
            if a.only in name:
                t = threading.Timer(30, lambda: None)  # (nothing writes the FIFO)
                t.start()
                run(name, p, d, a.network)
                t.cancel()
    finally:
        if not a.scratch:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
