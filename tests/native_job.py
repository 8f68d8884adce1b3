"""A pool job that leaves a registered solver thread running (``tests/test_plan_hostile.py``):
import this module by name in a spawned worker (the driver puts ``tests/`` on ``sys.path``)."""

from __future__ import annotations

import os
import threading

from lvplan.planning import interrupt


def leave_a_solver_thread() -> int:
    """Starts a registered thread that never ends; returns this worker's pid."""
    interrupt.native(threading.Thread(target=threading.Event().wait, daemon=True)).start()
    return os.getpid()
