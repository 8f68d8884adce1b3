"""Evaluating network changes on the SimBench urban district, in the same process as a plain
``pandapower.runpp`` of it (issue 10's speed targets).

    python benchmarks/bench_changes.py [--network simbench-urban] [--candidates 1000]

Prints the runpp median, the median of ``evaluate`` per change kind (a transformer swap, a line
upsizing, a new substation that takes a subtree), and the time to evaluate N single-change
candidates with every margin.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import numpy as np
import pandapower as pp

import lvplan
from lvplan.changes import Changes
from lvplan.evaluation import evaluate
from lvplan.powerflow.ac import RUNPP_OPTIONS


def _median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--network", default="simbench-urban")
    ap.add_argument("--candidates", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    network = lvplan.load_network(args.network)
    network.base_state()
    crit = lvplan.load_criteria("cn")
    net = copy.deepcopy(network.pp)
    pp.runpp(net, **RUNPP_OPTIONS)
    runpp_ms = _median_ms(lambda: pp.runpp(net, **RUNPP_OPTIONS), args.runs)
    print(f"{args.network}: {len(net.bus)} buses; plain runpp median {runpp_ms:.1f} ms")

    tr = network.pp.trafo
    public = [int(t) for t in tr.index[(tr.vn_lv_kv < 1) & tr.in_service.astype(bool)]]
    topo = network.topology
    rng = np.random.default_rng(1)
    lv_lines = [ln for a in topo.areas for ln in a.lines]
    ladder = [630, 800, 1000, 1250]

    def swap(k: int) -> Changes:
        t = public[k % len(public)]
        return Changes().replace_transformer(t, ladder[k % len(ladder)])

    def upsize(k: int) -> Changes:
        return Changes().replace_line(lv_lines[k % len(lv_lines)], "YJV22-0.6/1kV 4x240")

    def substation(k: int) -> Changes:
        """A new 630 kVA unit beside transformer t that takes over part of t's area: the
        far side of one of its LV sections, moved by a new 200 m cable."""
        t = public[k % len(public)]
        area = topo.area_of(int(tr.at[t, "lv_bus"]))
        mv = int(tr.at[t, "hv_bus"])
        ch = Changes().new_substation(
            0.0, 0.0, mv_bus=mv, tie_length_m=500.0, rated_kva=630, name=f"S{k}"
        )
        lines = list(area.lines) if area is not None else []
        for ln in lines[len(lines) // 2 :] + lines[: len(lines) // 2]:
            both = ch.transfer(ln, f"S{k} LV board", "YJV22-0.6/1kV 4x240", length_m=200.0)
            try:
                both.resolve(network)
            except lvplan.InputError:
                continue
            return both
        return ch

    kinds = {
        "transformer swap": swap,
        "line upsizing": upsize,
        "new substation + transfer": substation,
    }
    for name, make in kinds.items():
        evaluate(network, make(0), crit)  # warm: the catalogue unit's branch row is cached
        ks = iter(range(1, 10_000))
        ms = _median_ms(lambda make=make, ks=ks: evaluate(network, make(next(ks)), crit), args.runs)
        print(f"  evaluate, {name:<26} median {ms:6.1f} ms  ({ms / runpp_ms:.3f} of a runpp)")

    makers = list(kinds.values())
    cands = [makers[k % 3](int(rng.integers(0, 10_000))) for k in range(args.candidates)]
    t = time.perf_counter()
    worst = []
    for ch in cands:
        ev = evaluate(network, ch, crit)
        worst.append(float(np.min(ev.margins())))
    dt = time.perf_counter() - t
    print(
        f"  {args.candidates} single-change candidates with every margin: {dt:.1f} s "
        f"({dt / args.candidates * 1000:.1f} ms each); {sum(w >= 0 for w in worst)} pass"
    )


if __name__ == "__main__":
    main()
