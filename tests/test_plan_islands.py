"""The plan split by MV island (lvplan.planning.islands, lvplan.planning.groups) on a small
synthetic city of three feeders, with demands at the far ends of two of them: the islands are
independent in the AC load flow, the groups partition the demands, the plan by groups is the
plan of the whole network (greedy: the same measures and connections), the joined plan passes
the independent judge on the whole network, and --resume reuses finished groups only while
their inputs are unchanged."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time

import numpy as np
import pandapower as pp
import pandas as pd
import pytest
from procs import outliving
from reference import Reference

import lvplan
from lvplan.cli import main
from lvplan.errors import InputError
from lvplan.locate import bus_lonlat
from lvplan.model.topology import mv_islands
from lvplan.planning import candidates
from lvplan.planning import groups as groups_mod
from lvplan.planning.demand import read_demand
from lvplan.planning.islands import SubNetworks, island_groups, subnetwork
from lvplan.planning.outputs import reinforced_json
from lvplan.planning.plan import plan as make_plan

FAR_ENDS = (12, 14, 16, 28, 30, 32)  # transformers near the ends of feeders 1 and 2


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    out = tmp_path_factory.mktemp("islands")
    assert (
        main(["synth", "city", "--transformers", "48", "--seed", "1", "--out", str(out / "c")]) == 0
    )
    net = lvplan.load_network(str(out / "c"))
    lon, lat = bus_lonlat(net)
    names = net.pp.bus.name.astype(str)
    rows = []
    for t in FAR_ENDS:
        for j, b in enumerate((5, 10, 15)):
            r = int(np.flatnonzero(names == f"T{t} b{b}")[0])
            rows.append(
                {
                    "id": f"D{len(rows) + 1}",
                    "kw": (60, 100, 150, 200)[(len(rows) + j) % 4],
                    "category": "shop",
                    "lon": round(float(lon[r]) + 1e-4 * (j - 1), 7),
                    "lat": round(float(lat[r]) + 1e-4, 7),
                }
            )
    demand = out / "demand.csv"
    pd.DataFrame(rows).to_csv(demand, index=False)
    return net, demand


@pytest.fixture(scope="module")
def greedy_plans(city, cn):
    """Both without the sites' ties to other feeders: each feeder of this city is an MV
    island (its busbar is the slack), so a tie to another feeder is a tie into another group,
    which the plan by island cannot offer."""
    net, demand = city
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(candidates, "OTHER_FEEDER_TIES", 0)
        return (
            make_plan(net, demand, criteria=cn, method="greedy", workers=1),
            make_plan(net, demand, criteria=cn, method="greedy", workers=1, by_island=False),
        )


def test_groups_partition_the_demands_and_islands(city, cn):
    net, demand = city
    ds = read_demand(demand, net, cn)
    gs = island_groups(net, ds.demands, cn.detour_factor)
    assert len(gs) == 2  # feeder 1's far end and feeder 2's: nothing couples them
    assert sorted(i for g in gs for i in g.demands) == list(range(18))
    assert not set(gs[0].islands) & set(gs[1].islands)
    slack = int(net.pp.ext_grid.bus.iloc[0])
    for g in gs:
        assert len(g.demands) == 9
        assert slack in set(g.buses.tolist())  # each sub-network holds the slack it hangs on
    # the two sub-networks share the slack bus and nothing else
    assert set(gs[0].buses.tolist()) & set(gs[1].buses.tolist()) == {slack}


def test_an_island_loads_flow_as_in_the_whole_network(city, cn):
    """The sub-network's AC load flow is the whole network's on its buses: the slack holds
    the voltage, so what the other islands draw changes nothing here."""
    net, demand = city
    ds = read_demand(demand, net, cn)
    g = island_groups(net, ds.demands, cn.detour_factor)[1]
    sub = subnetwork(net, g.buses, "part")
    assert len(sub.pp.bus) == g.buses.size < len(net.pp.bus)
    whole, part = net.base_state(), sub.base_state()
    rows_w = [net.bus_row(int(b)) for b in g.buses]
    rows_p = [sub.bus_row(int(b)) for b in g.buses]
    vm_w, vm_p = np.asarray(whole.vm_pu)[rows_w], np.asarray(part.vm_pu)[rows_p]
    assert np.isfinite(vm_p).all() and vm_p.min() < 0.99  # loaded, not a flat start
    assert np.abs(vm_w - vm_p).max() < 1e-8
    # and the network the caller gave is not touched
    assert len(net.pp.bus) == 3961


def test_plan_by_island_is_the_plan_of_the_whole_network(greedy_plans):
    split, whole = greedy_plans
    rows = split.summary()["solver"]["parts"]
    assert [r["demands"] for r in rows] == [9, 9]
    assert split.cost_cny == pytest.approx(whole.cost_cny, abs=0.01)
    assert split.cost_cny > 1e6  # measures were needed, not just cables
    assert {(a.demand, a.bus) for a in split.assignments} == {
        (a.demand, a.bus) for a in whole.assignments
    }

    def built(p):  # a new substation by where it stands (its name carries its group's number)
        return sorted(
            (m.kind, "" if m.kind == "new_substation" else str(m.element), m.after)
            for m in p.measures
        )

    assert built(split) == built(whole)
    sites = [m.element for m in split.measures if m.kind == "new_substation"]
    assert sites and all(re.fullmatch(r"new substation S[12]\.\d+", str(e)) for e in sites)
    assert sum(r["cost_cny"] for r in rows) == pytest.approx(split.cost_cny, abs=0.05)


def test_the_whole_network_with_ties_serves_all_and_passes_the_judge(city, cn, greedy_plans):
    """Planned whole (one network, not by island) with the sites' ties to other feeders on
    offer: all 18 demands served, at no more than the plans by island, and the plan passes
    the independent judge on the whole network. (Until 2026-12-06 the plans by island left two
    demands out, feeder 2's 10 kV voltage room spent, and the whole plan tied a site at feeder
    2's far end to feeder 1; since the linear model counts the voltage an LV upgrade gives back
    to today's load, LV measures there hold it and every plan serves all 18.)"""
    net, demand = city
    split, _whole = greedy_plans
    p = make_plan(net, demand, criteria=cn, method="greedy", workers=1, by_island=False)
    assert len(split.assignments) == 18 and len(p.assignments) == 18 and p.unserved == []
    assert p.cost_cny <= split.cost_cny + 0.01
    before = Reference(net.pp, cn).base
    reinforced = pp.from_json_string(reinforced_json(p, net))
    assert not (Reference(reinforced, cn).base - before)


def test_a_group_with_no_bound_counts_zero_in_the_citys_bound(city, cn, monkeypatch):
    """A group whose rounds proved no bound (as group 42 of the 13,000-transformer city, its
    greedy rounds taking its 11 s) no longer leaves the city with none: it counts 0 (no plan
    costs less), the total is the other group's bound, and the summary names the group."""
    net, demand = city
    real = groups_mod.run_group

    def second_unbounded(job):
        res = real(job)
        if res.index == 1 and res.plan is not None:
            res.plan.bound = float("nan")
            res.plan.gap = float("nan")
        return res

    monkeypatch.setattr(groups_mod, "run_group", second_unbounded)
    p = make_plan(net, demand, criteria=cn, method="optimal", time_limit_s=14, workers=1)
    s = p.summary()["solver"]
    rows = s["parts"]
    assert rows[1]["bound_cny"] is None and rows[1]["bound_by"] is None
    assert rows[0]["bound_cny"] is not None and rows[0]["bound_cny"] > 0
    assert s["best_bound"] == pytest.approx(rows[0]["bound_cny"], abs=0.01)
    assert s["bounds"]["zero_bound_groups"] == [2]
    assert s["gap"] == pytest.approx(1 - rows[0]["bound_cny"] / p.objective, abs=1e-6)
    # the groups' kinds of bound joined (it was null), and never above the plan's cost (the
    # groups' whole-CNY bounds summed came 0.03 CNY above it: probe, 2026-12-07)
    assert s["bound_by"] == rows[0]["bound_by"] and s["bound_by"]
    assert s["best_bound"] <= p.summary()["total_cost_cny"]


def test_joined_optimal_plan_passes_the_judge_on_the_whole_network(city, cn, greedy_plans):
    net, demand = city
    p = make_plan(net, demand, criteria=cn, method="optimal", time_limit_s=6, workers=1)
    s = p.summary()
    rows = s["solver"]["parts"]
    assert len(rows) == 2 and all(r["status"] in ("optimal", "feasible") for r in rows)
    assert all("gap" in r and "bound_cny" in r and "ac_rounds" in r for r in rows)
    # lexicographic, as the model: more design kW served, or as much for no more cost (a group
    # whose cost stage runs out of time keeps its first stage's plan, which may serve more)
    g = greedy_plans[0]
    kw, g_kw = s["design_kw_served"], g.summary()["design_kw_served"]
    assert kw > g_kw + 1e-6 or (kw >= g_kw - 1e-6 and p.cost_cny <= g.cost_cny + 1e-6)
    assert s["demands_served"] + s["demands_unserved"] == 18
    sites = [m.element for m in p.measures if m.kind == "new_substation"]
    assert len(sites) == len(set(sites))  # the groups name their new substations apart
    before = Reference(net.pp, cn).base
    reinforced = pp.from_json_string(reinforced_json(p, net))
    loads = set(reinforced.load.name.astype(str))
    assert {a.demand for a in p.assignments} <= loads
    assert not (Reference(reinforced, cn).base - before)


def test_resume_after_a_kill_reuses_the_finished_group_only(city, cn, tmp_path, monkeypatch):
    net, demand = city
    real = groups_mod.run_group
    calls: list[int] = []

    def dies_on_the_second(job):
        if calls:
            raise KeyboardInterrupt  # the run is killed while the second group is planned
        calls.append(job.index)
        return real(job)

    monkeypatch.setattr(groups_mod, "run_group", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        make_plan(net, demand, criteria=cn, method="greedy", workers=1, work_dir=tmp_path)
    assert len(list((tmp_path / "parts").glob("*.pkl"))) == 1

    ran: list[int] = []

    def counted(job):
        ran.append(job.index)
        return real(job)

    monkeypatch.setattr(groups_mod, "run_group", counted)
    p = make_plan(
        net, demand, criteria=cn, method="greedy", workers=1, work_dir=tmp_path, resume=True
    )
    assert ran == [1 - calls[0]]  # only the group that was lost
    full = make_plan(net, demand, criteria=cn, method="greedy", workers=1)
    assert p.cost_cny == pytest.approx(full.cost_cny, abs=0.01)
    assert len(p.assignments) == len(full.assignments)

    # a changed demand changes its group's key: that group is planned again, the other reused
    df = pd.read_csv(demand)
    df.loc[df.id == "D18", "kw"] = 30
    changed = tmp_path / "changed.csv"
    df.to_csv(changed, index=False)
    ran.clear()
    make_plan(net, changed, criteria=cn, method="greedy", workers=1, work_dir=tmp_path, resume=True)
    ds = read_demand(changed, net, cn)
    gs = island_groups(net, ds.demands, cn.detour_factor)
    owner = next(j for j, g in enumerate(gs) if 17 in g.demands)
    assert ran == [owner]


def _count_runs(monkeypatch) -> list[int]:
    """The index of each group planned from here on (``run_group`` counted)."""
    real = groups_mod.run_group
    ran: list[int] = []

    def counted(job):
        ran.append(job.index)
        return real(job)

    monkeypatch.setattr(groups_mod, "run_group", counted)
    return ran


class _Forged:
    """A pickle that writes the file it names when loaded (what a planted group would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_resume_never_unpickles_a_group_file_lvplan_did_not_write(city, cn, tmp_path, monkeypatch):
    """``--resume DIR`` read ``DIR/parts/<key>.pkl`` with ``pickle.loads``: a file put there by
    anyone who could write into the folder ran its code. The groups are now signed with this
    user's key (:mod:`lvplan.io.signed`): a planted file under a group's own name is planned
    again, and nothing of it is unpickled."""
    import pickle

    net, demand = city
    first = make_plan(net, demand, criteria=cn, method="greedy", workers=1, work_dir=tmp_path)
    kept = sorted((tmp_path / "parts").glob("*.pkl"))
    assert len(kept) == 2
    marker = tmp_path / "ran"
    kept[0].write_bytes(pickle.dumps(_Forged(marker)))
    ran = _count_runs(monkeypatch)
    again = make_plan(
        net, demand, criteria=cn, method="greedy", workers=1, work_dir=tmp_path, resume=True
    )
    assert not marker.exists()
    assert len(ran) == 1  # the planted group planned again, the other one reused
    assert again.cost_cny == pytest.approx(first.cost_cny, abs=0.01)
    assert kept[0].read_bytes().startswith(b"lvplan-signed-pickle-1")  # (written again)


def test_cli_workers_and_resume(city, tmp_path, capsys, monkeypatch):
    net_dir = str(city[0].source)
    demand = str(city[1])
    out = tmp_path / "plan"
    args = ["plan", net_dir, "--demand", demand, "--method", "greedy", "--json"]
    assert len(city[0].pp.bus) < groups_mod.POOL_MIN_BUSES  # planned in this process
    ran = _count_runs(monkeypatch)
    assert main([*args, "--workers", "2", "--out", str(out)]) == 0
    first = json.loads(capsys.readouterr().out)
    assert len(first["solver"]["parts"]) == 2
    assert len(list((out / "parts").glob("*.pkl"))) == 2
    assert sorted(ran) == [0, 1]  # both planned (in this process: a small network)
    ran.clear()
    assert main([*args, "--resume", str(out)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["total_cost_cny"] == first["total_cost_cny"]
    assert ran == []  # both groups reused, none planned again
    assert main([*args, "--resume", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume" in err[0]


def test_capped_groups_keep_a_verified_plan(city, cn, tmp_path, monkeypatch):
    """Demands near the substation reach all three feeders; with the group caps at one bus no
    two islands join, each demand keeps its nearest island's options only, and the joined plan
    still passes the judge on the whole network."""
    from lvplan.planning import islands

    net, _ = city
    lon, lat = bus_lonlat(net)
    names = net.pp.bus.name.astype(str)
    rows = []
    for t in (1, 2, 17, 18, 33, 34):
        r = int(np.flatnonzero(names == f"T{t} b3")[0])
        rows.append(
            {"id": f"N{t}", "kw": 80, "category": "shop", "lon": lon[r], "lat": lat[r] + 2e-4}
        )
    demand = tmp_path / "near.csv"
    pd.DataFrame(rows).to_csv(demand, index=False)
    ds = read_demand(demand, net, cn)
    assert len(island_groups(net, ds.demands, cn.detour_factor)) == 1  # uncapped: all coupled
    monkeypatch.setattr(islands, "MAX_GROUP_BUSES", 1)
    p = make_plan(net, demand, criteria=cn, method="greedy", workers=1)
    rows_out = p.summary()["solver"]["parts"]
    assert len(rows_out) == 3 and sum(r["capped"] for r in rows_out) >= 1
    assert p.summary()["demands_served"] == 6
    before = Reference(net.pp, cn).base
    reinforced = pp.from_json_string(reinforced_json(p, net))
    assert not (Reference(reinforced, cn).base - before)


def _kill_a_busy_child(done: threading.Event) -> bool:
    """SIGKILL one spawned worker process of this test process once it is planning."""
    import psutil

    me = psutil.Process()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not done.is_set():
        kids = [p for p in me.children(recursive=True) if "spawn_main" in " ".join(p.cmdline())]
        busy = [p for p in kids if p.cpu_times().user > 1.0]
        if busy:
            os.kill(busy[0].pid, signal.SIGKILL)
            return True
        time.sleep(0.1)
    return False


def test_a_killed_local_worker_loses_nothing(city, cn, greedy_plans, monkeypatch):
    net, demand = city
    monkeypatch.setattr(groups_mod, "POOL_MIN_BUSES", 0)  # this small city on processes too
    box: dict = {}
    done = threading.Event()

    def go():
        try:
            box["plan"] = make_plan(net, demand, criteria=cn, method="greedy", workers=2)
        finally:
            done.set()

    t = threading.Thread(target=go)
    t.start()
    killed = _kill_a_busy_child(done)
    t.join(timeout=600)
    assert killed, "no worker was busy: the test did not kill anything"
    p = box["plan"]
    assert p.cost_cny == pytest.approx(greedy_plans[0].cost_cny, abs=0.01)
    assert len(p.assignments) == len(greedy_plans[0].assignments)


def test_dask_scheduler_gives_the_same_plan(city, cn, greedy_plans):
    distributed = pytest.importorskip("dask.distributed")
    net, demand = city
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        p = make_plan(
            net, demand, criteria=cn, method="greedy", scheduler=cluster.scheduler_address
        )
    assert p.cost_cny == pytest.approx(greedy_plans[0].cost_cny, abs=0.01)
    assert [r["demands"] for r in p.summary()["solver"]["parts"]] == [9, 9]
    with pytest.raises(InputError, match="cannot reach the Dask scheduler"):
        make_plan(net, demand, criteria=cn, method="greedy", scheduler="tcp://127.0.0.1:9")


def test_each_group_gets_its_share_of_the_time_left_when_it_starts(city, cn):
    """With 100 s (a reserve of 10 s + 150 s per million buses kept for joining and writing),
    the first of two groups of 9 demands gets half of what is left when it starts; the second,
    starting after it, gets all that is left then: the time the first did not use is not
    lost."""
    net, demand = city
    p = make_plan(net, demand, criteria=cn, method="greedy", time_limit_s=100, workers=1)
    rows = p.summary()["solver"]["parts"]
    reserve = 10.0 + 150.0 * len(net.pp.bus) / 1e6
    first, second = rows[0], rows[1]
    assert (100 - reserve) / 2 - 5 <= first["time_limit_s"] <= (100 - reserve) / 2
    assert second["time_limit_s"] <= 100 - reserve - first["seconds"] + 0.1
    assert second["time_limit_s"] >= first["time_limit_s"] + 20


def test_groups_that_stop_at_their_time_are_said_in_the_joined_plan(city, cn, monkeypatch):
    """Each group given 1 s (the floor lowered from 10 s): its greedy plan and AC round fit, a
    CP-SAT round does not; both groups stop there with their verified greedy plan, and the
    joined plan says so (``stopped``, which groups, each row's ``stopped``), its cost the
    greedy plan's."""
    net, demand = city
    monkeypatch.setattr(groups_mod, "MIN_GROUP_S", 1.0)
    monkeypatch.setattr(groups_mod, "RESERVE_S", 0.0)
    p = make_plan(net, demand, criteria=cn, method="optimal", time_limit_s=1.0, workers=1)
    s = p.summary()
    assert s["stopped"] == "time_limit"
    assert s["stop_note"].startswith("2 of 2 groups stopped at the time they were given")
    assert [r["stopped"] for r in s["solver"]["parts"]] == ["time_limit", "time_limit"]
    assert [r["cp_sat"] for r in s["solver"]["parts"]] == ["stopped", "stopped"]
    assert p.cost_cny == pytest.approx(p.greedy_cost_cny, abs=0.01)
    # (each group's verified greedy plan stands, and the joined plan says so)
    assert [r["plan_from"] for r in s["solver"]["parts"]] == ["greedy", "greedy"]
    assert s["plan_from"] == "greedy"


_DRIVER = """
import sys
from lvplan.planning import groups
groups.POOL_MIN_BUSES = 0  # this small city on spawned workers too
import lvplan
from lvplan.planning.plan import plan
net = lvplan.load_network(sys.argv[1])
plan(net, sys.argv[2], criteria="cn", method="greedy", workers=2, work_dir=sys.argv[3])
"""


def test_a_killed_driver_leaves_no_worker_and_resume_finishes(city, cn, greedy_plans, tmp_path):
    """The plan's driver is SIGKILLed while its spawned workers plan the groups: the workers
    end with it (before, each ran its group to the end, minutes of CPU at city scale, and then
    found no one to answer); ``--resume`` on its folder then gives the uninterrupted plan."""
    import subprocess
    import sys

    import psutil

    net, demand = city
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    drv = subprocess.Popen(
        [sys.executable, "-c", _DRIVER, str(net.source), str(demand), str(tmp_path)], env=env
    )
    try:
        me = psutil.Process(drv.pid)
        deadline = time.monotonic() + 120
        busy: list = []
        while time.monotonic() < deadline and drv.poll() is None and not busy:
            kids = [p for p in me.children() if "spawn_main" in " ".join(p.cmdline())]
            busy = [p for p in kids if p.cpu_times().user > 1.0]
            time.sleep(0.1)
        assert busy, "no worker got busy before the driver ended: the test killed nothing"
        workers = [p for p in me.children() if "spawn_main" in " ".join(p.cmdline())]
        drv.kill()  # SIGKILL: no handler, no atexit, no pool shutdown
        drv.wait()
        alive = outliving(workers)
        assert not alive, f"{len(alive)} worker(s) still running after their driver died"
    finally:
        if drv.poll() is None:
            drv.kill()
    assert (tmp_path / "parts").is_dir()
    p = make_plan(
        net, demand, criteria=cn, method="greedy", workers=1, work_dir=tmp_path, resume=True
    )
    assert p.cost_cny == pytest.approx(greedy_plans[0].cost_cny, abs=0.01)
    assert len(p.assignments) == len(greedy_plans[0].assignments)


def test_resume_does_not_reuse_a_group_planned_under_other_physics(city, cn, tmp_path, monkeypatch):
    """A kept group's key holds ``PLAN_FORMAT`` (bumped when the same inputs would be planned
    otherwise): a folder of an older plan format is planned again, while the same format is
    reused (before, the key held nothing of the code: a group of an older release, its plan
    made under other physics, was reused)."""
    net, demand = city
    ran = _count_runs(monkeypatch)
    first = make_plan(net, demand, criteria=cn, method="greedy", workers=1, work_dir=tmp_path)
    assert sorted(ran) == [0, 1]
    ran.clear()
    make_plan(net, demand, criteria=cn, method="greedy", workers=1, work_dir=tmp_path, resume=True)
    assert ran == []  # the same code: both reused
    monkeypatch.setattr(groups_mod, "PLAN_FORMAT", groups_mod.PLAN_FORMAT + 1)
    again = make_plan(
        net, demand, criteria=cn, method="greedy", workers=1, work_dir=tmp_path, resume=True
    )
    assert sorted(ran) == [0, 1]  # another plan format: both planned again
    assert again.cost_cny == pytest.approx(first.cost_cny, abs=0.01)


def test_a_run_removes_only_its_own_files_in_parts(tmp_path, capsys, monkeypatch):
    """A user's own ``DIR/parts/model.pkl`` was deleted by any run on DIR (every ``*.pkl``
    went when the run started); and a run refused before its first group finished (a scheduler
    not reached) deleted the finished groups an interrupted run had left for ``--resume``.
    Now a run removes only its own names (``<sha256>.pkl``, ``run.json``), and those only once
    its own first group is written."""
    from lvplan import workers

    demand = str(lvplan.__file__).rsplit("/src/", 1)[0] + "/studies/demand/sz-futian-30.csv"
    out = tmp_path / "myproj"
    (out / "parts").mkdir(parents=True)
    (out / "parts" / "model.pkl").write_text("data", encoding="utf-8")
    args = ["plan", "sz-futian", "--demand", demand, "--method", "greedy", "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    kept = sorted(p.name for p in (out / "parts").iterdir())
    assert "model.pkl" in kept and "run.json" in kept and len(kept) == 4  # 2 groups
    assert (out / "parts" / "model.pkl").read_text(encoding="utf-8") == "data"

    def unreachable(address):
        raise InputError(f"cannot reach the Dask scheduler at {address}: refused")

    monkeypatch.setattr(workers, "dask_client", unreachable)
    assert main([*args, "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert "cannot reach" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "parts").iterdir()) == kept  # all there to resume


def test_resume_of_a_folder_with_no_plan_of_this_network_is_refused(city, tmp_path, capsys):
    """``--resume`` of another network's run was accepted, every group planned again and its
    files overwritten; on a network planned in one piece, a junk folder too (and ``--scheduler
    nonsense:::`` went unchecked). Each is one line, exit 2, the folder untouched."""
    demand = str(lvplan.__file__).rsplit("/src/", 1)[0] + "/studies/demand/sz-futian-30.csv"
    other = tmp_path / "futian"
    assert (
        main(["plan", "sz-futian", "--demand", demand, "--method", "greedy", "--out", str(other)])
        == 0
    )
    capsys.readouterr()
    before = sorted((p.name, p.stat().st_mtime_ns) for p in other.rglob("*"))
    args = ["plan", str(city[0].source), "--demand", str(city[1]), "--method", "greedy"]
    assert main([*args, "--resume", str(other)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and "no interrupted plan of" in err[0]
        and "its parts/ are of sz-futian" in err[0]
    ), err
    assert sorted((p.name, p.stat().st_mtime_ns) for p in other.rglob("*")) == before
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.txt").write_text("x", encoding="utf-8")
    one = ["plan", "sz-futian", "--demand", demand, "--method", "greedy", "--budget", "1e9"]
    assert main([*one, "--resume", str(junk)]) == 2  # planned in one piece: nothing to take up
    assert "no interrupted plan there to take up" in capsys.readouterr().err
    assert main([*one, "--scheduler", "nonsense:::", "--out", str(tmp_path / "o")]) == 2
    assert "no Dask scheduler at nonsense:::" in capsys.readouterr().err
    assert [p.name for p in junk.iterdir()] == ["a.txt"] and not (tmp_path / "o").exists()


def test_an_earlier_runs_groups_stay_until_a_new_group_is_kept(tmp_path, monkeypatch):
    """A new run on a folder with an earlier run's groups removed them before writing its first
    own group: a write that failed (a full disk, an immutable ``run.json``) left ``parts/``
    with none (found by review). Now the new group is written first, the old ones go after."""
    import errno
    import types

    from lvplan.errors import InputError

    parts = tmp_path / "parts"
    parts.mkdir()
    old = [parts / (c * 64 + ".pkl") for c in "ab"]
    for f in old:
        f.write_bytes(b"earlier run")
    store = groups_mod.GroupStore(tmp_path, resume=False)
    real = groups_mod.atomic_file

    def full(path, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(groups_mod, "atomic_file", full)
    with pytest.raises(InputError, match="No space left on device"):
        store.put(types.SimpleNamespace(key="c" * 64))
    assert all(f.read_bytes() == b"earlier run" for f in old)
    monkeypatch.setattr(groups_mod, "atomic_file", real)
    # run.json that cannot be written: the new group goes again, the earlier run's stay whole
    store.label = {"name": "x"}
    (parts / "run.json").write_text('{"network": "earlier"}', encoding="utf-8")

    def no_run_file(path, data):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(groups_mod, "write_bytes_atomic", no_run_file)
    with pytest.raises(InputError, match="Operation not permitted"):
        store.put(types.SimpleNamespace(key="c" * 64))
    assert sorted(p.name for p in parts.iterdir()) == sorted([f.name for f in old] + ["run.json"])
    assert (parts / "run.json").read_text(encoding="utf-8") == '{"network": "earlier"}'
    monkeypatch.undo()
    store.put(types.SimpleNamespace(key="c" * 64))
    assert sorted(p.name for p in parts.iterdir()) == ["c" * 64 + ".pkl", "run.json"]


def test_a_group_keeps_the_tie_it_energises_up_to_its_open_end(cn):
    """sz-futian's F1-F2 tie cable (line 41, 0.6 km) runs from T4's 10 kV bus (21, feeder F1)
    to bus 46 (F2), open at bus 46: in the whole network it hangs on F1, and its charging
    current flows there. F1's group keeps it with bus 46 as an unsupplied bus of its own, so
    the group's load flow is the whole network's (line 17, T4's main cable, 103.2516 % in both;
    cut out, it was 103.2531 %); F2's group, open at its end, does not have it."""
    sz = lvplan.load_network("sz-futian")
    mv = sz.pp.bus.index[sz.pp.bus.vn_kv > 1].tolist()
    isl = mv_islands(sz.pp)
    f1 = np.flatnonzero(isl.reindex(sz.pp.bus.index).to_numpy() == isl[21])
    f2 = np.flatnonzero(isl.reindex(sz.pp.bus.index).to_numpy() == isl[46])
    assert 46 in mv and 46 not in sz.pp.bus.index[f1] and 21 not in sz.pp.bus.index[f2]
    slack = [0, 1]
    subs = SubNetworks(sz, [np.union1d(sz.pp.bus.index[f], slack) for f in (f1, f2)])
    one, two = subs.make(0, "F1"), subs.make(1, "F2")
    assert 41 in one.pp.line.index and 41 not in two.pp.line.index
    assert not one.live.bus[one.bus_row(46)]  # (its far end: unsupplied)
    whole = sz.base_state().line_loading_percent[sz.pp.line.index.get_loc(17)]
    part = one.base_state().line_loading_percent[one.pp.line.index.get_loc(17)]
    assert part == pytest.approx(whole, abs=1e-9)
    vm_w = np.asarray(sz.base_state().vm_pu)[[sz.bus_row(b) for b in (21, 22)]]
    vm_p = np.asarray(one.base_state().vm_pu)[[one.bus_row(b) for b in (21, 22)]]
    assert np.abs(vm_w - vm_p).max() < 1e-10


def test_a_group_keeps_the_winding_it_energises_up_to_its_open_end():
    """The rule of the tie above for a three-winding transformer, as the topology reads it
    (``topology.live_ends``): ``example_multivoltage``'s unit with its LV winding switched out
    is energised from its HV and MV sides, so a group holding either keeps the LV bus (with
    nothing else of that side); a group holding only the LV side does not take the unit's
    other ends. Before, only line and two-winding transformer switches were followed."""
    import pandapower.networks as pn

    from lvplan.planning.islands import _with_open_far_ends

    net = pn.example_multivoltage()
    hv, mv, lv = (int(net.trafo3w.at[0, c]) for c in ("hv_bus", "mv_bus", "lv_bus"))
    pp.create_switch(net, lv, 0, et="t3", closed=False)
    a, b, c = (np.array([x, 1000 + x]) for x in (hv, mv, lv))
    got = _with_open_far_ends(net, [a, b, c])
    assert got[0].tolist() == sorted([hv, 1000 + hv, lv])
    assert got[1].tolist() == sorted([mv, 1000 + mv, lv])
    assert got[2].tolist() == c.tolist()


def test_a_plan_by_island_dates_and_checks_its_years_as_the_whole_network_does(city, cn, tmp_path):
    """Each group dates its measures and checks each year in AC on its own islands; the joined
    plan takes those years and joins the checks (the whole city is never evaluated per year)."""
    import lvplan.planning.plan as plan_mod

    net, demand = city
    frame = pd.read_csv(demand)
    frame["year"] = [2026 if i % 2 else 2028 for i in range(len(frame))]
    dated = tmp_path / "dated.csv"
    frame.to_csv(dated, index=False)
    calls: list[int] = []
    real = plan_mod.check_years

    def counted(network, *a, **k):
        calls.append(len(network.pp.bus))
        return real(network, *a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(candidates, "OTHER_FEEDER_TIES", 0)
        mp.setattr(plan_mod, "check_years", counted)
        split = make_plan(net, dated, criteria=cn, method="greedy", workers=1)
        n_split = list(calls)
        whole = make_plan(net, dated, criteria=cn, method="greedy", workers=1, by_island=False)

    def when(p):
        return sorted(
            ("" if m.kind == "new_substation" else str(m.element), m.kind, m.year)
            for m in p.measures
        )

    assert when(split) == when(whole) and {y for *_, y in when(split)} <= {2026, 2028}
    assert split.summary()["years_checked"]["years"] == [2026]
    assert whole.summary()["years_checked"]["years"] == [2026]
    assert len(n_split) == 2 and max(n_split) < len(net.pp.bus)  # (the groups', not the city's)
