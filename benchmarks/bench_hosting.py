"""Benchmark of the hosting-capacity map: buses/s, ratio to bisection, peak memory.

    python benchmarks/bench_hosting.py                      # the SimBench urban district
    python benchmarks/bench_hosting.py --network DIR        # any network (e.g. a synthetic city)
    python benchmarks/bench_hosting.py --city 13000         # build the 1M-bus city first

The naive method is a bisection with one full pandapower load flow per step: from 0 to the
1000 kW cap down to 0.1 kW that is ceil(log2(1000 / 0.1)) = 14 load flows per bus. Its time is
estimated from one measured ``runpp`` of the same network in the same run (the full bisection
would take hours to weeks). Peak memory: the driver's own peak (``ru_maxrss``) and the peak of
the driver and its worker processes together (sampled from /proc every 0.2 s).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")

import lvplan  # noqa: E402
from lvplan.hosting import hosting_capacity  # noqa: E402


class MemorySampler:
    """Peak of the summed resident memory of this process and its worker processes (Linux
    /proc, sampled every 0.2 s): the memory the whole job needs at once."""

    def __init__(self) -> None:
        import os
        import threading

        self.pid = os.getpid()
        self.peak_mb = 0.0
        self.peak_workers_mb = 0.0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    @staticmethod
    def _rss_mb(pid: int) -> float:
        try:
            with open(f"/proc/{pid}/status", encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return float(line.split()[1]) / 1024.0
        except OSError:
            pass
        return 0.0

    def _children(self) -> list[int]:
        out: list[int] = []
        try:
            tasks = Path(f"/proc/{self.pid}/task")
            for t in tasks.iterdir():
                kids = (t / "children").read_text(encoding="ascii").split()
                out += [int(k) for k in kids]
        except OSError:
            pass
        return out

    def _run(self) -> None:
        while not self._stop.is_set():
            kids = sum(self._rss_mb(k) for k in self._children())
            self.peak_workers_mb = max(self.peak_workers_mb, kids)
            self.peak_mb = max(self.peak_mb, self._rss_mb(self.pid) + kids)
            self._stop.wait(0.2)

    def stop(self) -> None:
        self._stop.set()
        self._t.join()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--network", default="simbench-urban")
    ap.add_argument("--city", type=int, help="build a synthetic city of N transformers first")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-kw", type=float, default=1000.0)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()

    t_all = time.perf_counter()
    mem = MemorySampler()
    spec = args.network
    t_build = 0.0
    if args.city:
        from lvplan.synth import build_city, write_network

        t = time.perf_counter()
        out = Path(f"/tmp/lvplan-city-{args.city}")
        if not (out / "network.toml").is_file():
            write_network(build_city(args.city, seed=1), out, name=f"city-{args.city}")
        spec = str(out)
        t_build = time.perf_counter() - t
    t = time.perf_counter()
    net = lvplan.load_network(spec)
    t_load = time.perf_counter() - t
    t = time.perf_counter()
    net.base_state()
    t_base = time.perf_counter() - t  # the first runpp, plus the fast engine's matrices

    # one more plain runpp of the same network: the unit of the naive method
    import pandapower as pp

    from lvplan.powerflow.ac import RUNPP_OPTIONS

    work = net._work
    t = time.perf_counter()
    pp.runpp(work, **RUNPP_OPTIONS)
    t_runpp = time.perf_counter() - t

    t = time.perf_counter()
    res = hosting_capacity(net, workers=args.workers, max_kw=args.max_kw)
    t_host = time.perf_counter() - t
    st = res.stats
    df = res.table
    n = len(df)
    steps = math.ceil(math.log2(args.max_kw / 0.1))
    naive = n * steps * t_runpp
    mem.stop()
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    fig = {
        "network": spec,
        "buses": n,
        "areas": st.areas,
        "transformers": len(net.pp.trafo),
        "all_buses": len(net.pp.bus),
        "workers": args.workers,
        "build_s": round(t_build, 1),
        "load_s": round(t_load, 1),
        "base_load_flow_s": round(t_base, 1),
        "runpp_s": round(t_runpp, 3),
        "hosting_wall_s": round(t_host, 1),
        "prepare_s": round(st.prepare_s, 1),
        "solve_s": round(st.solve_s, 1),
        "buses_per_s": round(n / t_host, 0),
        "bisection_estimate_s": round(naive, 0),
        "speedup_vs_bisection": round(naive / t_host, 0),
        "end_to_end_s": round(time.perf_counter() - t_all, 1),
        "peak_rss_mb_driver": round(own, 0),
        "peak_rss_mb_workers_together": round(mem.peak_workers_mb, 0),
        "peak_rss_mb_job": round(mem.peak_mb, 0),
        "classes": {
            ">=200": int((df.hosting_kw >= 200).sum()),
            "100-200": int(((df.hosting_kw >= 100) & (df.hosting_kw < 200)).sum()),
            "<100": int((df.hosting_kw < 100).sum()),
        },
        "binding": {str(k): int(v) for k, v in df.binding_kind.value_counts().items()},
    }
    for k, v in fig.items():
        print(f"{k:>28}: {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
