"""lvplan.workers.process_pool: every local pool's workers end with their driver (the plan's
groups, the hosting map's chunks and area builds, a city's islands all use it)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from procs import running

_DRIVER = """
import sys, time
from lvplan.workers import process_pool
pool = process_pool(2, method=sys.argv[1])
jobs = [pool.submit(time.sleep, 60) for _ in range(2)]  # both workers on a minute-long job
time.sleep(1.0)
print("ready", flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_a_pools_workers_die_with_their_driver(method):
    import multiprocessing as mp

    import psutil

    if method not in mp.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    drv = subprocess.Popen(
        [sys.executable, "-c", _DRIVER, method],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, OPENBLAS_NUM_THREADS="1"),
    )
    pids: list[int] = []
    try:
        assert drv.stdout is not None
        assert drv.stdout.readline().strip() == "ready"
        kids = psutil.Process(drv.pid).children()
        pids = [k.pid for k in kids if "resource_tracker" not in " ".join(k.cmdline())]
        assert len(pids) == 2 and all(running(p) for p in pids)
        drv.kill()  # SIGKILL
        drv.wait()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(running(p) for p in pids):
            time.sleep(0.05)
        assert not [p for p in pids if running(p)], "a worker outlived its driver by 5 s"
    finally:
        drv.kill()
        for p in pids:
            if running(p):
                os.kill(p, 9)
