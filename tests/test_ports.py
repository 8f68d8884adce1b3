"""The test servers' ports (tests/ports.py): each test process has its own block below the
kernel's ephemeral range, and a port something holds is skipped."""

from __future__ import annotations

import itertools
import socket

import ports


def test_each_test_process_has_a_block_of_its_own_below_the_ephemeral_range(monkeypatch):
    seen = {}
    for worker in ("gw0", "gw1", "gw7"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        got = {ports.free_port() for _ in range(5)}
        assert len(got) == 5  # never the same port twice in a row
        n = int(worker[2:])
        lo = ports.BASE + ports.BLOCK * n
        assert all(lo <= p < lo + ports.BLOCK for p in got), (worker, got)
        seen[worker] = got
    assert not seen["gw0"] & seen["gw1"]
    assert ports.BASE + ports.BLOCK * ports.MAX_WORKERS <= 32768  # (the ephemeral range's start)


def test_a_port_something_listens_on_is_skipped(monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw2")
    start = ports.BASE + 2 * ports.BLOCK
    with socket.socket() as held:
        for k in range(ports.BLOCK - 1):  # the first port of the block free to listen on
            try:
                held.bind(("127.0.0.1", start + k))
                break
            except OSError:
                continue
        held.listen()
        monkeypatch.setattr(ports, "_next", itertools.count(k))
        got = ports.free_port()
        assert got != start + k and start + k < got < start + ports.BLOCK
