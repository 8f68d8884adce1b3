"""How low the optimum of the plan model can be: HiGHS given as long as it takes, on the model
the first optimal round of ``bench_plan.py`` solves (issue 11's district, its targets).

    python benchmarks/bench_plan_bound.py [--network simbench-urban] [--count 300] [--seed 1]
                                          [--seconds 1500]

Plans the same demand (``lvplan synth demand``, count, seed) and stops where the optimal round
would build its model, after the greedy plan and its AC rounds (their cuts are in it). Then the
lexicographic first stage is fixed as the plan would fix it (each demand the greedy plan serves
held served, with the site covers and forced upgrades that holds them to), the cost minimised,
and HiGHS (one thread) bounds it: first the rounds of residual-capacity inequalities
(``planning/strengthen.py``), then branch and bound, the voltage limits and the rows that only
define what they read held out as in the plan (a relaxation: a bound all the same). Every
later round of the plan only adds cuts, so no plan that serves the same demands and passes the
AC check in lvplan can cost less than the bound printed. Prints the greedy plan's cost, the
bound, the share of the greedy plan it is, and the seconds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import lvplan
from lvplan.decision import resolve_criteria
from lvplan.planning import optimal_rounds
from lvplan.planning import plan as plan_mod
from lvplan.planning.greedy import Greedy
from lvplan.planning.mipbound import MipBound, Relaxation
from lvplan.planning.synth_demand import synth_demand, write_synth_demand


class _Caught(Exception):
    pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--network", default="simbench-urban")
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=1500.0)
    args = ap.parse_args()
    crit = resolve_criteria(None)
    net = lvplan.load_network(args.network)
    demand = Path(tempfile.mkdtemp(prefix="bench-plan-bound-")) / "demand.csv"
    write_synth_demand(synth_demand(net, count=args.count, seed=args.seed, criteria=crit), demand)

    caught = {}
    real = optimal_rounds.PlanModel

    class Catch(real):  # type: ignore[misc, valid-type]
        def __init__(self, grid, **kw):
            caught["grid"] = grid
            raise _Caught

    optimal_rounds.PlanModel = Catch
    try:
        plan_mod.plan(net, demand, criteria=crit, time_limit_s=600)
    except _Caught:
        pass
    finally:
        optimal_rounds.PlanModel = real
    g = caught["grid"]
    inst = g.inst
    order = sorted(range(len(inst.demands)), key=lambda i: (inst.demands[i].year or 0, i))
    greedy = Greedy(g).run(order, None)
    m = real(g)
    m.hint(greedy)
    served = [i for i, s in enumerate(greedy.served) if s]
    # the greedy plan's demands, each held served, with the inequalities that holds them to
    # (site covers, forced upgrades), as PlanModel.solve's cost stage does
    for i, sv in m.served.items():
        m.m.add(sv == int(greedy.served[i]))
    m._must_serve([i for i in m.served if greedy.served[i]])
    m.m.minimize(m.cost)
    t0 = time.perf_counter()
    b = MipBound(
        m.m.proto,
        args.seconds,
        relaxation=Relaxation(m.capacity_rows),
        voltage_rows=m.bound_held_out,
    ).start()
    bound = b.result(wait_s=60.0)
    s = time.perf_counter() - t0
    rel = b.relaxation
    rows = [
        ("greedy plan (the round's hint)", f"{greedy.cost_cny:,.0f} CNY, "
         f"{len(served)} of {len(inst.demands)} served"),
        (f"relaxation, {rel.rounds} rounds of inequalities", f"{b.lp_bound:,.0f} CNY"),
        (f"bound (HiGHS: {b.status}, {s:.0f} s)", "none" if bound is None else f"{bound:,.0f} CNY"),
    ]  # fmt: skip
    if bound:
        rows.append(("bound / greedy plan", f"{bound / greedy.cost_cny:.4f}"))
    for k, v in rows:
        print(f"{k:<40} {v}")


if __name__ == "__main__":
    main()
