"""Benchmark: warm `lvplan.check` with N-1 (area class A) against a plain `pandapower.runpp`.

    python benchmarks/bench_n1.py [--network simbench-urban] [--questions 300] [--seed 1] [--map]
                                  [--contingencies heads|sections] [--feeders] [--agreement]

Prints the time to find the contingencies and solve every option's state without a new load
(the switched model: what feeder_n1, inspect and the map's choice of options read), then to
prepare every option's network for new loads (a pandapower load flow each; once per network),
the median and p90 latency of a warm check with N-1 over random (LV bus, declared kW in 1-200)
questions, the same questions without N-1, the median of a plain runpp measured in the same
process, and the ratio (issue 14 target: <= 0.2 of a runpp). With ``--map`` it first times the
normal hosting map and the N-1 map (``n1=True``, which prepares every contingency option on
first use) of a freshly loaded network, one worker each (target: N-1 map <= 3x the normal map).
``--feeders`` times ``feeder_n1`` (cold, warm, with a change: what the optimiser asks);
``--agreement`` prints the largest difference between every option's state by the switched
model and pandapower's load flow of the switched tables.
"""

from __future__ import annotations

import argparse
import copy
import resource
import time
import warnings
from collections import Counter

import numpy as np
import pandapower as pp

import lvplan
from lvplan.n1.assess import n1_context
from lvplan.powerflow.ac import RUNPP_OPTIONS

warnings.filterwarnings("ignore")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--network", default="simbench-urban")
    ap.add_argument("--questions", type=int, default=300)
    ap.add_argument("--runpp", type=int, default=15)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--map", action="store_true", help="also time the normal and the N-1 map")
    ap.add_argument("--contingencies", default="heads", choices=["heads", "sections"])
    ap.add_argument("--feeders", action="store_true", help="time feeder_n1 and stop")
    ap.add_argument("--agreement", action="store_true", help="states against pandapower, stop")
    args = ap.parse_args()
    crit = lvplan.load_criteria("cn", n1_contingencies=args.contingencies)
    if args.agreement:
        return bench_agreement(args.network, crit)
    if args.feeders:
        return bench_feeders(args.network, crit)
    if args.map:
        bench_map(args.network, crit)

    net = lvplan.load_network(args.network)
    raw = copy.deepcopy(net.pp)
    pp.runpp(raw, **RUNPP_OPTIONS)  # warm-up (numba compilation)
    runpp_s = []
    for _ in range(args.runpp):
        t = time.perf_counter()
        pp.runpp(raw, **RUNPP_OPTIONS)
        runpp_s.append(time.perf_counter() - t)

    lv = net.pp.bus.index[(net.pp.bus.vn_kv < 1) & net.live.bus].to_numpy()
    lvplan.check(net, bus=int(lv[0]), kw=10.0, criteria=crit)  # the base, as bench_check
    t = time.perf_counter()
    ctx = n1_context(net, crit)
    options = [o for f in ctx.topology.feeders.values() for c in f.contingencies for o in c.options]
    engines_state = Counter(ctx.state(o).engine for o in options)
    t_state = time.perf_counter() - t
    t = time.perf_counter()
    for o in options:
        ctx.prepared(o)
    t_prep = time.perf_counter() - t

    rng = np.random.default_rng(args.seed)
    qs = [(int(rng.choice(lv)), float(rng.uniform(1.0, 200.0))) for _ in range(args.questions)]
    for bus, kw in qs[:5]:  # warm-up of each code path
        lvplan.check(net, bus=bus, kw=kw, criteria=crit, area_class="A")
    with_n1, without, solved = [], [], []
    decisions: Counter = Counter()
    engines: Counter = Counter()
    for bus, kw in qs:
        t = time.perf_counter()
        d = lvplan.check(net, bus=bus, kw=kw, criteria=crit, area_class="A")
        with_n1.append(time.perf_counter() - t)
        n1 = d.n1 or {}
        solved.append(any(c.get("engine") for c in n1.get("contingencies", [])))
        decisions[(str(d.decision), None if d.binding is None else str(d.binding.kind))] += 1
        engines[str(d.engine)] += 1
        t = time.perf_counter()
        lvplan.check(net, bus=bus, kw=kw, criteria=crit)
        without.append(time.perf_counter() - t)

    med_pp = float(np.median(runpp_s))
    med_n1, med_plain = float(np.median(with_n1)), float(np.median(without))
    print(f"network            {args.network}: {len(net.pp.bus)} buses, {len(lv)} LV")
    print(
        f"contingencies      {len(ctx.topology.feeders)} feeders, "
        f"{sum(len(f.contingencies) for f in ctx.topology.feeders.values())} contingencies, "
        f"{len(options)} options: states without a new load in {t_state:.2f} s "
        f"({dict(engines_state)}), networks for new loads prepared in {t_prep:.1f} s"
    )
    print(f"plain runpp        median {med_pp * 1000:.1f} ms over {args.runpp} runs")
    print(
        f"warm check, N-1    median {med_n1 * 1000:.1f} ms, p90 "
        f"{np.percentile(with_n1, 90) * 1000:.1f} ms, max {max(with_n1) * 1000:.0f} ms over "
        f"{args.questions} questions (headroom included)"
    )
    sel = [x for x, s in zip(with_n1, solved, strict=True) if s]
    if sel:
        print(
            f"  of which solved  {len(sel)} questions whose contingencies needed load flows "
            f"(the others' loops fail N-1 already): median {np.median(sel) * 1000:.1f} ms, "
            f"p90 {np.percentile(sel, 90) * 1000:.1f} ms"
        )
    print(f"warm check, no N-1 median {med_plain * 1000:.1f} ms (the same questions)")
    print(f"ratio              {med_n1 / med_pp:.3f} of a plain runpp (target <= 0.2)")
    print(f"decisions          {dict(decisions)}")
    print(f"engines            {dict(engines)}")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"peak memory        {peak_mb:.0f} MB")


def bench_feeders(network: str, crit) -> None:
    from lvplan.changes import Changes
    from lvplan.n1.feeders import feeder_n1

    net = lvplan.load_network(network)
    net.base_state()
    t = time.perf_counter()
    feeder_n1(net, crit)
    cold = time.perf_counter() - t
    t = time.perf_counter()
    feeder_n1(net, crit)
    warm = time.perf_counter() - t
    units = net.pp.trafo.index[net.pp.trafo.vn_lv_kv < 1][:3]
    with_ch = []
    for tr in units:
        t = time.perf_counter()
        feeder_n1(net, crit, changes=Changes().replace_transformer(int(tr), 630))
        with_ch.append(time.perf_counter() - t)
    print(f"feeder_n1 cold     {cold:.2f} s, warm {warm * 1000:.1f} ms")
    print(
        "feeder_n1 changes  "
        + ", ".join(f"{x:.2f}" for x in with_ch)
        + " s (a replaced MV/LV unit each: with_changes' load flow, then every option's state)"
    )


def bench_agreement(network: str, crit) -> None:
    from lvplan.evaluation import switched_state

    net = lvplan.load_network(network)
    ctx = n1_context(net, crit)
    options = [o for f in ctx.topology.feeders.values() for c in f.contingencies for o in c.options]
    worst = np.zeros(3)
    for o in options:
        st = switched_state(net, o.changes)
        ref = ctx.prepared(o).network.base_state()  # pandapower on the switched tables
        for k, (a, b) in enumerate(
            (
                (st.vm_pu, ref.vm_pu),
                (st.line_loading_percent, ref.line_loading_percent),
                (st.trafo_loading_percent, ref.trafo_loading_percent),
            )
        ):
            assert (np.isnan(a) == np.isnan(b)).all()
            if np.isfinite(a).any():
                worst[k] = max(worst[k], float(np.nanmax(np.abs(a - b))))
    print(
        f"{network}: {len(options)} options, largest difference from pandapower: "
        f"{worst[0]:.2e} pu, lines {worst[1]:.2e} %, transformers {worst[2]:.2e} %"
    )


def bench_map(network: str, crit) -> None:
    net = lvplan.load_network(network)
    net.base_state()
    lvplan.hosting_capacity(net, criteria=crit)  # warm-up: numba, caches of the base
    t = time.perf_counter()
    plain = lvplan.hosting_capacity(net, criteria=crit)
    t_plain = time.perf_counter() - t
    net = lvplan.load_network(network)  # fresh: the N-1 map prepares the options itself
    net.base_state()
    lvplan.hosting_capacity(net, criteria=crit)
    t = time.perf_counter()
    n1 = lvplan.hosting_capacity(net, criteria=crit, n1=True)
    t_n1 = time.perf_counter() - t
    t = time.perf_counter()
    lvplan.hosting_capacity(net, criteria=crit, n1=True)  # the options now prepared
    t_n1_warm = time.perf_counter() - t
    df = n1.table
    failing = sorted(k for k, v in (n1.n1_feeders or {}).items() if v["status"] != "ok")
    print(f"normal map         {t_plain:.2f} s ({len(plain.table)} buses, 1 worker)")
    print(
        f"N-1 map            {t_n1:.2f} s (of which N-1 columns {n1.stats.n1_s:.2f} s), "
        f"ratio {t_n1 / t_plain:.2f} (target <= 3)"
    )
    print(
        f"N-1 map again      {t_n1_warm:.2f} s with the options already prepared (as after "
        f"checks), ratio {t_n1_warm / t_plain:.2f}"
    )
    print(
        f"  buses lowered by N-1: {(df.hosting_kw_n1 < df.hosting_kw).sum()}; feeders failing "
        f"N-1 already: {len(failing)} of {len(n1.n1_feeders or {})}"
    )


if __name__ == "__main__":
    main()
