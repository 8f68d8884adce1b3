"""Ports for the servers the tests start (``lvplan serve``, a throwaway PostgreSQL).

Each test process (pytest-xdist worker ``gwN``) takes ports from a block of its own below the
kernel's ephemeral range (32768-60999 on Linux), starting at a place set by its pid: two workers
of one run never pick the same port, and no outgoing connection can hold one, as the kernel
picks those from the ephemeral range. A port something else holds is skipped (two test runs at
once share the blocks: their starts differ by their pids, and a port the other has bound is
skipped, but one it has picked and not yet bound is not seen). Before, each
test asked the kernel for port 0 and let it go: the other test process, or any connection
opened meanwhile, could take that port before the server bound it, and a test could then have
talked to another test's server.
"""

from __future__ import annotations

import itertools
import os
import socket

#: the first port of worker gw0's block; gwN's starts BLOCK * N above it
BASE = 20000
BLOCK = 400
#: below the ephemeral range with up to this many test processes
MAX_WORKERS = (32768 - BASE) // BLOCK

_next = itertools.count(os.getpid() % BLOCK)


def worker_index() -> int:
    """N of ``PYTEST_XDIST_WORKER=gwN`` (0 without xdist)."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    n = int(name[2:]) if name[2:].isdigit() else 0
    return n % MAX_WORKERS


def free_port() -> int:
    """A port of 127.0.0.1 nothing listens on, from this test process's own block."""
    start = BASE + BLOCK * worker_index()
    for _ in range(BLOCK):
        port = start + next(_next) % BLOCK
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # held by something else (or in TIME_WAIT): the next one
        return port
    raise RuntimeError(f"no free port in {start}..{start + BLOCK - 1}")
