"""Benchmark: the cost of one decision on a synthetic city, beside a plain runpp of it.

    lvplan synth city --transformers 2000 --seed 1 --out /tmp/city2000.json
    python benchmarks/bench_city.py /tmp/city2000.json [--checks 100] [--applies 50] [--seed 1]

In one process: load, a plain ``pandapower.runpp`` of the whole city, the desk's start-up (open
an empty SQLite register, warm up: base load flow, fast engines, factors), the first check, warm
``lvplan.check`` p50/p99 (random LV buses, 1-200 kW declared) and which engine decided, then
``Desk.apply`` p50/p99 (random applications, 5-150 kW, recorded and reserved), the resident
memory now and at its peak. Load and start-up are also given in CPU seconds of this process
(on a shared machine the wall time follows the other jobs; with ``--prepare-jobs`` > 1 the
workers' CPU is not counted). After the warm-up the garbage collector is frozen, as `lvplan serve`
does.
"""

from __future__ import annotations

import argparse
import copy
import gc
import resource
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandapower as pp

import lvplan
from lvplan.powerflow.ac import RUNPP_OPTIONS
from lvplan.register.desk import Desk
from lvplan.register.store import SqliteBackend

warnings.filterwarnings("ignore")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) * 1000.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("network")
    ap.add_argument("--checks", type=int, default=100)
    ap.add_argument("--applies", type=int, default=50)
    ap.add_argument("--runpp", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--prepare-jobs", type=int, default=1)
    ap.add_argument("--cache", help="folder for the prepared islands (Desk cache_dir)")
    args = ap.parse_args()

    t0, c0 = time.perf_counter(), time.process_time()
    net = lvplan.load_network(args.network)
    t_load, c_load = time.perf_counter() - t0, time.process_time() - c0
    n_bus = len(net.pp.bus)
    print(f"network      {args.network}: {n_bus:,} buses, {len(net.pp.trafo):,} transformers")
    print(f"load         {t_load:.1f} s (CPU {c_load:.1f} s)")

    if args.runpp:
        raw = copy.deepcopy(net.pp)
        ts = []
        for _ in range(args.runpp):
            t = time.perf_counter()
            pp.runpp(raw, **RUNPP_OPTIONS)
            ts.append(time.perf_counter() - t)
        del raw
        print(f"plain runpp  median {np.median(ts):.2f} s over {args.runpp}")

    rng = np.random.default_rng(args.seed)
    lv = net.pp.bus.index[(net.pp.bus.vn_kv < 1) & net.live.bus].to_numpy()

    with tempfile.TemporaryDirectory() as tmp:
        t, c = time.perf_counter(), time.process_time()
        kw = {}
        if hasattr(net, "prepare_islands"):
            kw = {
                "prepare_jobs": args.prepare_jobs,
                "cache_dir": args.cache,
                "progress": lambda d, n: (
                    print(
                        f"  islands    {d}/{n} prepared, {time.perf_counter() - t:.1f} s, "
                        f"rss {rss_mb():,.0f} MB",
                        flush=True,
                    )
                    if d == n or d % max(1, n // 5) == 0
                    else None
                ),
            }
        desk = Desk(net, SqliteBackend(Path(tmp) / "r.db"), **kw)
        t_init = time.perf_counter() - t
        desk.warm()
        t_ready, c_ready = time.perf_counter() - t, time.process_time() - c
        print(
            f"desk ready   {t_ready:.1f} s (open register, base load flow, warm-up; "
            f"{t_init:.1f} s to open, {getattr(desk, 'prepared', 'whole')}); "
            f"CPU {c_ready:.1f} s (this process), load + ready {t_load + t_ready:.1f} s, "
            f"CPU {c_load + c_ready:.1f} s"
        )
        if hasattr(desk.network, "islands"):
            isl = desk.network.islands()
            print(f"islands      {len(isl) if isl else 1}")
        print(f"rss          {rss_mb():,.0f} MB after warm-up")
        gc.collect()  # as `lvplan serve` does: the network's objects out of the full passes
        gc.freeze()

        work = desk.network
        t = time.perf_counter()
        lvplan.check(work, bus=int(lv[0]), kw=10.0, criteria=desk.criteria)
        print(f"first check  {(time.perf_counter() - t) * 1000:.0f} ms (after warm-up)")
        check_s, engines = [], {}
        for _ in range(args.checks):
            bus, kw = int(rng.choice(lv)), float(rng.uniform(1.0, 200.0))
            t = time.perf_counter()
            d = lvplan.check(work, bus=bus, kw=kw, criteria=desk.criteria)
            check_s.append(time.perf_counter() - t)
            engines[str(d.engine)] = engines.get(str(d.engine), 0) + 1
        print(
            f"warm check   p50 {pct(check_s, 50):.1f} ms  p90 {pct(check_s, 90):.1f} ms  "
            f"p99 {pct(check_s, 99):.1f} ms  max {max(check_s) * 1000:.0f} ms  "
            f"({args.checks} checks, headroom included) engines {engines}"
        )

        apply_s, outcomes = [], {}
        for i in range(args.applies):
            bus, kw = int(rng.choice(lv)), float(rng.uniform(5.0, 150.0))
            t = time.perf_counter()
            app, _ = desk.apply({"id": f"b{i}", "bus": bus, "kw": kw})
            apply_s.append(time.perf_counter() - t)
            outcomes[str(app.status)] = outcomes.get(str(app.status), 0) + 1
        if apply_s:
            print(
                f"Desk.apply   p50 {pct(apply_s, 50):.1f} ms  p99 {pct(apply_s, 99):.1f} ms  "
                f"({args.applies} applications: {outcomes})"
            )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"memory       rss {rss_mb():,.0f} MB now, peak {peak:,.0f} MB")


if __name__ == "__main__":
    main()
