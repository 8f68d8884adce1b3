"""The plan at city scale: a synthetic city, synthetic demand, ``lvplan.plan`` by groups of MV
islands on local worker processes; prints the wall and CPU time, the peak memory, the cost,
the demands served and each group's status, cost, bound and gap.

    python benchmarks/bench_plan_city.py --transformers 13000 --demands 20000 --workers 2 \\
        --time-limit 900 --dir /tmp/lvplan-city

The city and the demand file are built once into ``--dir`` and reused.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--transformers", type=int, default=2000)
    ap.add_argument("--demands", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--time-limit", type=float, default=300.0)
    ap.add_argument("--method", default="optimal", choices=("optimal", "greedy"))
    ap.add_argument("--dir", default="/tmp/lvplan-city")
    ap.add_argument("--network", help="a network file to plan instead of building a city")
    ap.add_argument("--demand", help="a demand file to use instead of synthesising one")
    ap.add_argument("--write", action="store_true", help="also write the plan's files")
    ap.add_argument(
        "--max-group-buses",
        type=int,
        help="the group cap (islands.MAX_GROUP_BUSES; 0: no caps, nor on demands)",
    )
    ap.add_argument(
        "--transfers-per-feeder",
        type=int,
        help="feeder splits offered per LV feeder (planning/transfers.py MAX_PER_FEEDER; 0: "
        "none); set in this process, so with --workers 1 (spawned workers import the default)",
    )
    args = ap.parse_args()
    if args.transfers_per_feeder is not None:
        import lvplan.planning.transfers as transfers

        transfers.MAX_PER_FEEDER = args.transfers_per_feeder

    import lvplan
    from lvplan.decision import resolve_criteria
    from lvplan.planning.outputs import write_plan
    from lvplan.planning.plan import plan
    from lvplan.planning.synth_demand import synth_demand, write_synth_demand
    from lvplan.synth import build_city, write_network

    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    city = Path(args.network) if args.network else root / f"city{args.transformers}-s{args.seed}"
    demand = (
        Path(args.demand)
        if args.demand
        else root / f"demand{args.demands}-s{args.seed}-on{args.transformers}.csv"
    )
    crit = resolve_criteria("cn")
    if not city.exists():
        write_network(build_city(args.transformers, seed=args.seed), city, name=city.name)
    t0 = time.perf_counter()
    net = lvplan.load_network(str(city))
    t_load = time.perf_counter() - t0
    if not demand.is_file():
        write_synth_demand(
            synth_demand(net, count=args.demands, seed=args.seed, criteria=crit), demand
        )

    def say(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f} s] {msg}", file=sys.stderr, flush=True)

    if args.max_group_buses is not None:
        from lvplan.planning import islands

        islands.MAX_GROUP_BUSES = args.max_group_buses or 10**12
        if not args.max_group_buses:
            islands.MAX_GROUP_DEMANDS = 10**12
    c0 = time.process_time()
    t1 = time.perf_counter()
    p = plan(
        net,
        demand,
        criteria=crit,
        method=args.method,
        time_limit_s=args.time_limit,
        workers=args.workers,
        progress=say,
    )
    t_plan = time.perf_counter() - t1
    s = p.summary()
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(
        f"{city.name} ({len(net.pp.bus):,} buses), {demand.name} ({s['demands']} demands), "
        f"{args.method}, {args.workers} workers, "
        f"--time-limit {args.time_limit:g}"
    )
    print(
        f"plan {t_plan:.1f} s wall (load {t_load:.1f} s before it); CPU driver "
        f"{time.process_time() - c0:.1f} s, workers {kids.ru_utime + kids.ru_stime:.1f} s; "
        f"peak RSS driver {own.ru_maxrss / 1024:.0f} MB, largest worker "
        f"{kids.ru_maxrss / 1024:.0f} MB"
    )
    print(
        f"cost {s['total_cost_cny']:,.0f} CNY (greedy {s['greedy_cost_cny'] or 0:,.0f}); "
        f"served {s['demands_served']} of {s['demands']} ({s['design_kw_served']:,.0f} kW); "
        f"{s['measures']} measures, {s['new_substations']} new substations; "
        f"status {s['solver']['status']}, bound {s['solver']['best_bound']}, "
        f"gap {s['solver']['gap']}, AC rounds {s['ac_rounds']}, withdrawn "
        f"{sum(r.get('withdrawn', 0) for r in s['solver']['parts'])} in "
        f"{sum(1 for r in s['solver']['parts'] if r.get('withdrawn'))} groups; stopped "
        f"{s['stopped']}"
    )
    print(
        "group islands  buses demands capped served status   cp-sat   cost_cny      bound_cny"
        "     gap by      given"
    )
    for r in s["solver"]["parts"]:
        gap = "-" if r.get("gap") is None else f"{100 * r['gap']:.2f}%"
        bound = "-" if r.get("bound_cny") is None else f"{r['bound_cny']:,.0f}"
        print(
            f"{r['group']:5d} {r['islands']:7d} {r['buses']:6d} {r['demands']:7d} "
            f"{r['capped']:6d} {r.get('served', 0):6d} {r['status']:8s} "
            f"{r.get('cp_sat') or '-':8s} "
            f"{r.get('cost_cny', 0):13,.0f} {bound:>13s} {gap:>7s} {r.get('bound_by') or '-':7s} "
            f"{r.get('time_limit_s', 0):.0f} s: {r['seconds']:.0f} s "
            f"({r.get('cpu_s', 0):.0f} s CPU)"
        )
    if args.write:
        t2 = time.perf_counter()
        write_plan(p, net, root / "plan", progress=say)
        t_write = time.perf_counter() - t2
        print(
            f"files written in {t_write:.1f} s; load + plan + files "
            f"{t_load + t_plan + t_write:.1f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
