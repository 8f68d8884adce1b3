"""Benchmark: the hosting map's prepare step (every LV area's problem) on its own.

    python benchmarks/bench_prepare.py CITY.json [WORKERS]

Loads the network, solves its base as one network (as the map does), then times
``lvplan.hosting.build.prepare`` (wall and CPU seconds of this process; with WORKERS > 1 and at
least ``PARALLEL_MIN_AREAS`` areas the workers' CPU is not counted) and prints a digest of every
problem's arrays, so that two runs (two versions, one or several workers) can be compared to
the bit.
"""

from __future__ import annotations

import hashlib
import sys
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")


def main() -> None:
    import lvplan
    from lvplan.decision import _context
    from lvplan.hosting.build import prepare

    net = lvplan.load_network(sys.argv[1])
    net._islands_tried = True  # the map solves the network whole
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    crit = lvplan.load_criteria("cn")
    t = time.perf_counter()
    net.base_state()
    t_base = time.perf_counter() - t
    _context(net, crit)
    t, c = time.perf_counter(), time.process_time()
    prep = prepare(net, crit, pf=crit.new_customer_pf, workers=workers)
    print(
        f"{sys.argv[1]}: base {t_base:.1f} s; prepare {time.perf_counter() - t:.1f} s wall, "
        f"{time.process_time() - c:.1f} s CPU, {len(prep.problems)} problems, {workers} workers"
    )
    h = hashlib.sha256()
    for p in prep.problems:
        for k in ("buses", "S0", "V0_L", "V0_R", "S_export0", "Y_root", "out_m", "out_c"):
            h.update(np.ascontiguousarray(getattr(p, k)).tobytes())
        for k in ("sens_R", "vmin", "vmax", "kf_j", "lim_j"):
            h.update(np.ascontiguousarray(getattr(p, k)).tobytes())
        for k in ("Y_LL", "Y_LR", "Yf_j", "Yt_j"):
            m = getattr(p, k)
            h.update(m.data.tobytes())
            h.update(m.indices.tobytes())
        h.update(repr((p.out_kinds, p.out_labels, p.blocked, p.branch_labels)).encode())
    print("digest", h.hexdigest()[:16])


if __name__ == "__main__":
    main()
