"""What ``lvplan serve --workers N`` costs: start time and memory of the whole process tree.

    python benchmarks/bench_serve_workers.py NETWORK N [EXTRA SERVE ARGS ...]

Starts ``lvplan serve NETWORK --workers N`` on an empty SQLite register (in a temporary
folder), times it to the first ``/healthz`` answer, waits until every process of the tree is
idle (3 s under 10 % CPU in all), then prints one JSON line: the seconds to the first answer,
the number of processes, their summed RSS and PSS when idle and the highest summed RSS seen
while starting. Stops the server (SIGTERM to its process group) after. ``SRC`` (environment)
is the ``src`` folder to run, default this checkout's (to measure the code before a change).
Run one at a time on a city: N workers hold N copies of the network.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    net, n, extra = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    port = free_port()
    src = os.environ.get("SRC", str(ROOT / "src"))
    env = dict(os.environ, LVPLAN_TOKEN="bench", OPENBLAS_NUM_THREADS="1", PYTHONPATH=src)
    t0 = time.monotonic()
    err = (work / "stderr.txt").open("w")
    p = subprocess.Popen(
        [sys.executable, "-m", "lvplan.cli", "serve", net, "--register", str(work / "r.db"),
         "--port", str(port), "--workers", str(n), *extra],
        env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=err,
    )  # fmt: skip
    me = psutil.Process(p.pid)

    def tree() -> list[psutil.Process]:
        return [me, *me.children(recursive=True)]

    def rss() -> int:
        total = 0
        for q in tree():
            with contextlib.suppress(psutil.Error):
                total += q.memory_info().rss
        return total

    peak, ok = 0, False
    try:
        while time.monotonic() - t0 < 1800 and p.poll() is None and not ok:
            peak = max(peak, rss())
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    ok = r.status == 200
            except OSError:
                time.sleep(0.2)
        first = time.monotonic() - t0
        quiet = 0
        while ok and quiet < 3 and time.monotonic() - t0 < 1800:
            procs = tree()
            for q in procs:
                q.cpu_percent(interval=None)
            time.sleep(1.0)
            peak = max(peak, rss())
            busy = sum(q.cpu_percent(interval=None) for q in procs if q.is_running())
            quiet = quiet + 1 if busy < 10 else 0
        procs = tree()
        pss = sum(q.memory_full_info().pss for q in procs)
        print(
            json.dumps(
                {
                    "network": net,
                    "workers": n,
                    "extra": extra,
                    "ready": ok,
                    "first_answer_s": round(first, 1),
                    "processes": len(procs),
                    "rss_mb": round(rss() / 2**20),
                    "pss_mb": round(pss / 2**20),
                    "peak_rss_mb": round(peak / 2**20),
                }
            )
        )
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
        err.close()
    if not ok:
        print((work / "stderr.txt").read_text()[-2000:], file=sys.stderr)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (found, then released for the server to bind)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    main()
