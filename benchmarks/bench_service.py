"""Load benchmark of `lvplan serve` on loopback: applications/s and latency with N clients.

    python benchmarks/bench_service.py                       # SimBench urban district, 10 clients
    python benchmarks/bench_service.py --requests 2000 --seconds 120
    python benchmarks/bench_service.py --rate 50             # 50 applications/s offered
    python benchmarks/bench_service.py --register postgresql://postgres@127.0.0.1:5432/postgres \
        --workers 2                                          # PostgreSQL, two server processes

Starts the service on 127.0.0.1 with a fresh register, then N client threads post new
applications (unique ids, random LV buses, 5-150 kW), bounded by --requests and --seconds:
as fast as answers come back (closed loop, the default), or at --rate applications a second in
all, each client on a fixed schedule; then a latency counts from the scheduled time, so a slow
answer also delays the next one's clock (no coordinated omission). Prints the sustained rate,
latency percentiles (all, the first tenth of the run, where most applications are approved, and
the rest), the status mix and the server's peak memory. Loopback only.

``--register``: a new SQLite file (the default), or a PostgreSQL server's URL: a new database
is made on that server for the run (``lvplan_bench_<random>``) and dropped afterwards.
``--workers N``: ``lvplan serve --workers N`` (N processes behind the port); the memory is then
the sum of the peaks of the parent and its workers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")

import httpx  # noqa: E402
import numpy as np  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_peak_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--network", default="simbench-urban")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--path", default="/v1/applications", help="or /v1/check")
    ap.add_argument("--rate", type=float, default=0.0, help="applications/s offered (0: closed)")
    ap.add_argument("--register", help="postgresql://... server URL (default: a SQLite file)")
    ap.add_argument("--workers", type=int, default=1, help="server processes (serve --workers)")
    args = ap.parse_args()

    import lvplan

    net = lvplan.load_network(args.network).pp
    lv = net.bus.index[net.bus.vn_kv < 1].to_numpy()
    token = "bench-token"
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="lvplan-bench-")
    register, drop = f"{tmp}/r.db", None
    if args.register:
        register, drop = new_database(args.register)
    cmd = [sys.executable, "-m", "lvplan.cli", "serve", args.network]
    cmd += ["--register", register, "--port", str(port), "--workers", str(args.workers)]
    proc = subprocess.Popen(cmd, env=dict(os.environ, LVPLAN_TOKEN=token))
    try:
        return run(args, proc, port, token, lv)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
        if drop is not None:
            drop()


def new_database(url: str):
    """(URL of a new database on the server of ``url``, a function that drops it)."""
    import uuid

    import psycopg

    name = f"lvplan_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")

    def drop() -> None:
        with psycopg.connect(url, autocommit=True) as con:
            con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    return url.rsplit("/", 1)[0] + "/" + name, drop


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of ``pids`` so far (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def worker_pids(pid: int) -> list[int]:
    """The server's processes: itself and its children (the workers of ``--workers N``)."""
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            kids += [int(x) for x in (task / "children").read_text().split()]
    return [pid, *kids]


def run(args, proc, port: int, token: str, lv) -> int:
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    workers: set[str] = set()
    while len(workers) < args.workers:  # every worker answered once (a new connection each time)
        try:
            r = httpx.get(f"{url}/healthz", timeout=1)
            if r.status_code == 200:
                workers.add(r.json().get("worker", ""))
        except httpx.HTTPError:
            time.sleep(0.2)
        if proc.poll() is not None or time.monotonic() - t0 > 600:
            print("server did not start", file=sys.stderr)
            return 1
    print(f"server ready in {time.monotonic() - t0:.1f} s ({args.workers} worker(s))")

    lat: list[float] = []
    sent_at: list[float] = []
    statuses: dict[str, int] = {}
    errors = [0]
    lock = threading.Lock()
    counter = [0]
    stop_at = time.monotonic() + 2.0 + args.seconds
    headers = {"Authorization": f"Bearer {token}"}

    start = time.monotonic() + 2.0

    def client(k: int) -> None:
        rng = np.random.default_rng(k)
        period = args.clients / args.rate if args.rate > 0 else 0.0
        due = start + k * (period / args.clients)
        with httpx.Client(timeout=60) as c:
            # open the connection first (a client's first request also loads its TLS setup,
            # tens of milliseconds of client time that is not the server's answer)
            c.get(f"{url}/healthz")
            time.sleep(max(0.0, start - time.monotonic()))
            while time.monotonic() < stop_at:
                with lock:
                    if counter[0] >= args.requests:
                        return
                    counter[0] += 1
                    n = counter[0]
                body = {"id": f"b{n}", "bus": int(rng.choice(lv)), "kw": float(rng.uniform(5, 150))}
                if args.path != "/v1/applications":
                    body.pop("id")
                if period:
                    time.sleep(max(0.0, due - time.monotonic()))
                    t = due - time.monotonic() + time.perf_counter()  # the schedule's clock
                    due += period
                else:
                    t = time.perf_counter()
                r = c.post(url + args.path, json=body, headers=headers)
                dt = time.perf_counter() - t
                with lock:
                    lat.append(dt)
                    sent_at.append(time.monotonic() - dt)
                    if r.status_code in (200, 201):
                        js = r.json()
                        s = js.get("status") or js["decision"]["decision"]
                        statuses[s] = statuses.get(s, 0) + 1
                        e = f"engine {js['decision'].get('engine')}"
                        statuses[e] = statuses.get(e, 0) + 1
                    else:
                        errors[0] += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
    server = worker_pids(proc.pid)
    cpu0 = cpu_seconds(server)
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.monotonic() - start
    cpu = cpu_seconds(server) - cpu0
    peak = sum(rss_peak_mb(p) for p in worker_pids(proc.pid))
    a = np.array(lat) * 1000.0
    print(f"network            {args.network} ({len(lv)} LV buses)")
    print(f"register           {args.register or 'SQLite file'}, {args.workers} worker(s)")
    offered = f"{args.rate:g} per s offered" if args.rate > 0 else "closed loop"
    print(f"clients            {args.clients}, path {args.path}, {offered}")
    print(f"answered           {len(a)} in {wall:.1f} s = {len(a) / wall:.1f} per s")
    order = np.argsort(np.array(sent_at))
    tenth = max(1, len(a) // 10)
    for label, part in (
        ("all", a),
        ("first tenth", a[order[:tenth]]),
        ("the rest", a[order[tenth:]] if len(a) > tenth else a[:0]),
    ):
        if part.size:
            print(
                f"latency ms {label:<12} p50 {np.percentile(part, 50):.1f}  "
                f"p90 {np.percentile(part, 90):.1f}  p99 {np.percentile(part, 99):.1f}  "
                f"max {part.max():.1f}"
            )
    print(f"statuses           {dict(sorted(statuses.items()))}  http errors {errors[0]}")
    print(f"server peak RSS    {peak:.0f} MB")
    print(f"server CPU         {cpu:.1f} s = {1000 * cpu / max(1, len(a)):.1f} ms per answer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
