"""Benchmark: cold CLI runs, each in a fresh Python process (issue 10 target: check <= 2 s).

    python benchmarks/bench_cold.py [--runs 10] [--warmup 1] [--network sz-futian] [--only check]

Times, end to end from the parent (process start, imports, load flow, output, interpreter exit):

* ``lvplan check NETWORK --bus "T3 LV board" --kw 160 --category restaurant --json``
* ``lvplan inspect NETWORK``
* ``lvplan hosting NETWORK --out <tmp> --no-maps``

and prints the min and median wall time of each. Every run is checked to exit with status 0 and,
for ``check``, to print the same JSON every time. The warm-up runs (not timed) fill the OS file
cache, so what is measured is a new process, not a cold disk. Run from the repository root;
``src`` is put first on the PYTHONPATH of the child processes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_CHECK_S = 2.0


def _commands(network: str, tmp: Path) -> dict[str, list[str]]:
    return {
        "check": [
            "check",
            network,
            "--bus",
            "T3 LV board",
            "--kw",
            "160",
            "--category",
            "restaurant",
            "--json",
        ],
        "inspect": ["inspect", network],
        "hosting": ["hosting", network, "--out", str(tmp / "hosting"), "--no-maps"],
    }


def _run_once(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    t = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "lvplan.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    dt = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"lvplan {' '.join(args)} exited {p.returncode}:\n{p.stderr}")
    return dt, p.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--network", default="networks/sz-futian")
    ap.add_argument("--only", choices=["check", "inspect", "hosting"], action="append")
    args = ap.parse_args()

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [env.get("PYTHONPATH")])])
    print(f"python {sys.executable}, {args.runs} runs after {args.warmup} warm-up run(s)")
    with tempfile.TemporaryDirectory(prefix="lvplan-bench-cold-") as tmp:
        for name, cmd in _commands(args.network, Path(tmp)).items():
            if args.only and name not in args.only:
                continue
            outputs = set()
            for _ in range(args.warmup):
                outputs.add(_run_once(cmd, env)[1])
            times = []
            for _ in range(args.runs):
                dt, out = _run_once(cmd, env)
                times.append(dt)
                outputs.add(out)
            if name == "check" and len(outputs) != 1:
                raise SystemExit("lvplan check printed different output across runs")
            line = (
                f"  lvplan {name:<8} min {min(times):6.2f} s  median "
                f"{statistics.median(times):6.2f} s  max {max(times):6.2f} s"
            )
            if name == "check":
                ok = "meets" if statistics.median(times) <= TARGET_CHECK_S else "misses"
                line += f"  (median {ok} the {TARGET_CHECK_S:g} s target)"
            print(line, flush=True)


if __name__ == "__main__":
    main()
