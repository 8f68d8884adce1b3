"""Benchmark of large LV areas (issue 10): the map and check / check-batch on one-area grids.

    python benchmarks/bench_area.py [--questions 200] [--batch 200] [--save DIR] [--skip-urban]

Prints

* map buses/s (``hosting_capacity``, one worker, after the base load flow) on pandapower's
  ``ieee_european_lv_asymmetric`` (906 LV buses, one transformer area, profile en50160: under
  the cn profile its 416 V buses all break the 406.6 V limit already) and on the bundled
  SimBench urban district (``simbench-urban``, areas of ~100 buses, profile cn);
* warm ``lvplan.check`` decisions/s on ``kerber_vorstadtnetz_kabel_1`` (294 buses, one area,
  profile en50160) over random (LV bus, 1-60 kW) questions;
* ``lvplan check-batch`` decisions/s on the same grid (a queue of random 0.5-4 kW applications
  on a fresh register, reserving as it goes: about two thirds are approved).

A small map (kerber) is run first, untimed, and the 906-bus map twice (the second run has the
process's memory already mapped). Wall and CPU
time are both printed (on a shared machine the CPU figure is the steadier one).
``--save DIR`` writes the hosting tables and the decisions there, to compare two runs (the
figures of a run "before" come from the same script on the code before the change).
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import pandapower as pp  # noqa: E402
import pandapower.networks as pn  # noqa: E402

import lvplan  # noqa: E402
from lvplan.hosting import hosting_capacity  # noqa: E402

URBAN = str(Path(__file__).resolve().parent.parent / "networks" / "simbench-urban")


def _json(tmp: Path, name: str, make) -> str:
    path = tmp / f"{name}.json"
    if not path.is_file():
        pp.to_json(make(), str(path))
    return str(path)


def bench_map(spec: str, profile: str, save: Path | None, tag: str) -> float:
    net = lvplan.load_network(spec)
    net.base_state()
    t, c = time.perf_counter(), time.process_time()
    res = hosting_capacity(net, criteria=profile, workers=1)
    dt, dc = time.perf_counter() - t, time.process_time() - c
    st = res.stats
    df = res.table
    print(
        f"map {tag:>10}: {len(df):6d} buses in {dt:6.2f} s = {len(df) / dt:7.0f} buses/s "
        f"(prepare {st.prepare_s:.2f} s, solve {st.solve_s:.2f} s; "
        f"CPU {dc:.2f} s = {len(df) / dc:.0f} buses/CPU-s)"
    )
    if save is not None:
        df.to_csv(save / f"hosting-{tag}.csv", index=False)
    return len(df) / dt


def bench_check(spec: str, n: int, save: Path | None) -> float:
    net = lvplan.load_network(spec)
    rng = np.random.default_rng(1)
    lv = net.pp.bus.index[(net.pp.bus.vn_kv < 1) & net.live.bus].to_numpy()
    crit = lvplan.load_criteria("en50160")
    lvplan.check(net, bus=int(lv[0]), kw=10.0, criteria=crit)  # base, factorisation
    rows = []
    t, c = time.perf_counter(), time.process_time()
    for _ in range(n):
        bus, kw = int(rng.choice(lv)), round(float(rng.uniform(1.0, 60.0)), 1)
        d = lvplan.check(net, bus=bus, kw=kw, criteria=crit)
        rows.append((bus, kw, d.decision, d.engine, d.headroom_kw))
    dt, dc = time.perf_counter() - t, time.process_time() - c
    engines: dict[str, int] = {}
    for r in rows:
        engines[r[3]] = engines.get(r[3], 0) + 1
    print(
        f"check      : {n} decisions in {dt:6.2f} s = {n / dt:7.1f} /s "
        f"(CPU {n / dc:.1f} /CPU-s)  engines {engines}"
    )
    if save is not None:
        with open(save / "check.csv", "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows([("bus", "kw", "decision", "engine", "headroom_kw"), *rows])
    return n / dt


def bench_batch(spec: str, n: int, save: Path | None, tmp: Path) -> float:
    from lvplan.register.batch import run_batch

    net = lvplan.load_network(spec)
    net.base_state()
    rng = np.random.default_rng(2)
    lv = net.pp.bus.index[(net.pp.bus.vn_kv < 1) & net.live.bus].to_numpy()
    queue = tmp / "queue.csv"
    with open(queue, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "bus", "kw"])
        for i in range(n):
            w.writerow([f"a{i}", int(rng.choice(lv)), round(float(rng.uniform(0.5, 4.0)), 1)])
    reg = tmp / f"register-{time.time_ns()}.sqlite"
    out = (save or tmp) / "batch.csv"
    t, c = time.perf_counter(), time.process_time()
    run_batch(net, queue, reg, out, "en50160")
    dt, dc = time.perf_counter() - t, time.process_time() - c
    print(f"check-batch: {n} decisions in {dt:6.2f} s = {n / dt:7.1f} /s (CPU {n / dc:.1f} /CPU-s)")
    return n / dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--save", help="write hosting tables and decisions to this folder")
    ap.add_argument("--skip-urban", action="store_true")
    args = ap.parse_args()
    save = Path(args.save) if args.save else None
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
    print(f"lvplan from {lvplan.__file__}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ieee = _json(tmp, "ieee_eu_lv", pn.ieee_european_lv_asymmetric)
        kerber = _json(tmp, "kerber_vk1", pn.create_kerber_vorstadtnetz_kabel_1)
        # warm-up (imports, first calls): the figures are of a warm process
        hosting_capacity(lvplan.load_network(kerber), criteria="en50160")
        bench_map(ieee, "en50160", save, "ieee-eu-lv")
        bench_map(ieee, "en50160", None, "again")  # the same map once more in this process
        if not args.skip_urban:
            bench_map(URBAN, "cn", save, "urban")
        bench_check(kerber, args.questions, save)
        bench_batch(kerber, args.batch, save, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
