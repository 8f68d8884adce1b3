"""A hosting chunk job that holds its worker (for the killed-driver test of
tests/test_hosting_run.py): the first chunk to finish returns at once, every later one holds its
worker for ``HOLD_S`` seconds after solving, as a chunk of a large city would. Spawned workers
import this module by name (the driver puts ``tests/`` on ``sys.path``); the count is shared
through one marker file per finished chunk in the folder ``$LVPLAN_TEST_HELD``."""

from __future__ import annotations

import os
import time

from lvplan.hosting import run as run_mod

HOLD_S = 120.0
_real = run_mod.solve_chunk


def held_chunk(problems, pf, max_kw):
    df = _real(problems, pf, max_kw)
    folder = os.environ["LVPLAN_TEST_HELD"]
    n = len(os.listdir(folder))
    with open(os.path.join(folder, f"{os.getpid()}-{time.monotonic_ns()}"), "w"):
        pass
    if n >= 1:
        time.sleep(HOLD_S)
    return df
