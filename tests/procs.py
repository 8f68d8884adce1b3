"""Processes in the tests: whether one still runs, and which outlive a killed driver."""

from __future__ import annotations

import psutil


def running(p: psutil.Process | int) -> bool:
    """Still running (a killed child re-parented to an init that does not reap it stays a
    zombie: it runs nothing)."""
    try:
        proc = psutil.Process(p) if isinstance(p, int) else p
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def outliving(procs: list[psutil.Process], timeout_s: float = 5.0) -> list[psutil.Process]:
    """Those of ``procs`` still running after ``timeout_s``."""
    _gone, alive = psutil.wait_procs(procs, timeout=timeout_s)
    return [p for p in alive if running(p)]
