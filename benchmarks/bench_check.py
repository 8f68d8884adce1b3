"""Benchmark: warm `lvplan.check` against a plain `pandapower.runpp` of the same network.

    python benchmarks/bench_check.py [--network simbench-urban] [--questions 300] [--seed 1]

Prints the median and p90 latency of a warm check over random (LV bus, declared kW in 1-200)
questions, the median of a plain runpp measured in the same process, their ratio (issue 2 target:
<= 0.2), which engine decided, and the peak memory of the process.
"""

from __future__ import annotations

import argparse
import copy
import resource
import time
import warnings

import numpy as np
import pandapower as pp

import lvplan
from lvplan.powerflow.ac import RUNPP_OPTIONS

warnings.filterwarnings("ignore")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--network", default="simbench-urban")
    ap.add_argument("--questions", type=int, default=300)
    ap.add_argument("--runpp", type=int, default=15)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    t0 = time.perf_counter()
    net = lvplan.load_network(args.network)
    t_load = time.perf_counter() - t0
    raw = copy.deepcopy(net.pp)
    pp.runpp(raw, **RUNPP_OPTIONS)  # warm-up (numba compilation)
    runpp_s = []
    for _ in range(args.runpp):
        t = time.perf_counter()
        pp.runpp(raw, **RUNPP_OPTIONS)
        runpp_s.append(time.perf_counter() - t)

    rng = np.random.default_rng(args.seed)
    lv = net.pp.bus.index[(net.pp.bus.vn_kv < 1) & net.live.bus].to_numpy()
    t = time.perf_counter()
    lvplan.check(net, bus=int(lv[0]), kw=10.0)  # first check: base load flow, factorisation
    t_first = time.perf_counter() - t
    check_s, engines, decisions = [], {}, {}
    for _ in range(args.questions):
        bus, kw = int(rng.choice(lv)), float(rng.uniform(1.0, 200.0))
        t = time.perf_counter()
        d = lvplan.check(net, bus=bus, kw=kw)
        check_s.append(time.perf_counter() - t)
        engines[str(d.engine)] = engines.get(str(d.engine), 0) + 1
        decisions[str(d.decision)] = decisions.get(str(d.decision), 0) + 1

    med_pp, med_chk = float(np.median(runpp_s)), float(np.median(check_s))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(
        f"network            {args.network}: {len(net.pp.bus)} buses, {len(lv)} LV, "
        f"{len(net.pp.trafo)} transformers (load {t_load:.1f} s)"
    )
    print(f"plain runpp        median {med_pp * 1000:.1f} ms over {args.runpp} runs")
    print(f"first check        {t_first * 1000:.0f} ms (base load flow + Jacobian factorisation)")
    print(
        f"warm check         median {med_chk * 1000:.1f} ms, p90 "
        f"{np.percentile(check_s, 90) * 1000:.1f} ms, max {max(check_s) * 1000:.0f} ms "
        f"over {args.questions} questions (headroom included)"
    )
    print(f"ratio              {med_chk / med_pp:.3f} of a plain runpp (target <= 0.2)")
    print(f"engines            {engines}")
    print(f"decisions          {decisions}")
    print(f"peak memory        {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
