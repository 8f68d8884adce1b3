"""The PostgreSQL register (issue 12, part 3): locks per MV island, counters per island, a server
that cannot be reached, tables created by processes starting at once, a lost connection, and
``lvplan serve --workers``. The tests shared with SQLite are in test_register.py,
test_multiwriter.py and test_service.py (``register_spec``)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from ports import free_port
from test_service import AUTH, TOKEN

from lvplan.cli import main
from lvplan.errors import RegisterUnavailable
from lvplan.register.desk import Desk
from lvplan.register.postgres import REGISTER_LOCK, lock_key, redact
from lvplan.register.store import Application, RegisterBusy, open_backend

# sz-futian's two MV islands (the feeders leaving its 10 kV slack busbar)
T3_BOARD = "T3 LV board"  # island "2" (with T3's area: buses 15, 16, 18, 20)
ISLAND_T3, ISLAND_T5 = "2", "27"  # T5/T6's areas: buses 28..40


def test_an_unreachable_server_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    """Nothing listens on the port: every command that takes a register says so in one line
    and exits 2, without the password, and never falls back to a SQLite file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LVPLAN_TOKEN", TOKEN)
    url = f"postgresql://lvplan:s3cret@127.0.0.1:{free_port()}/city"
    q = tmp_path / "q.csv"
    q.write_text("id,bus,kw\nb1,15,10\n", encoding="utf-8")
    for argv in (
        ["check", "sz-futian", "--bus", "15", "--kw", "10", "--register", url],
        ["serve", "sz-futian", "--register", url, "--check"],
        ["serve", "sz-futian", "--register", url],
        ["check-batch", "sz-futian", str(q), "--register", url, "--out", "o.csv"],
        ["register", "list", "--register", url],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        assert "cannot connect" in err and "127.0.0.1" in err and "s3cret" not in err, err
    assert list(tmp_path.iterdir()) == [q]  # no register file appeared, no output written
    # serve --workers 2 checks in a process of its own first: the same line, exit 2
    serve = [sys.executable, "-m", "lvplan.cli", "serve", "sz-futian", "--register", url]
    done = subprocess.run(
        [*serve, "--workers", "2", "--port", str(free_port())],
        cwd=Path(__file__).parent.parent,  # as the other tests' servers (PYTHONPATH=src)
        capture_output=True,
        text=True,
        timeout=120,
    )
    err = done.stderr.strip()
    assert done.returncode == 2 and len(err.splitlines()) == 1 and "cannot connect" in err, err


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:s3cret@h:5/db", "postgresql://u:***@h:5/db"),
        ("postgresql://u@h/db?password=s3cret", "postgresql://u@h/db?password=***"),
        (
            "postgresql://u:s3cret@h/db?sslmode=require&PassWord=s3cret",
            "postgresql://u:***@h/db?sslmode=require&PassWord=***",
        ),
        ("postgresql://u:s3c%40ret:x@h:99999/db", "postgresql://u:***@h:99999/db"),
        ("postgresql://h/db", "postgresql://h/db"),
    ],
)
def test_a_password_never_shows_in_the_url_lvplan_prints(url, shown):
    """In the netloc or as libpq's ``password=`` query parameter, any case, even with a port
    out of range (urllib raises on reading it)."""
    assert redact(url) == shown
    assert "s3c" not in redact(url)


def test_an_unreachable_server_named_by_a_query_password_is_redacted(tmp_path, capsys):
    url = f"postgresql://lvplan@127.0.0.1:{free_port()}/city?password=s3cret"
    assert main(["register", "list", "--register", url]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot connect" in err and "s3cret" not in err and "password=***" in err, err


def test_tables_are_created_once_by_processes_starting_together(pg_register):
    """Four processes open a new register at the same moment: all succeed (CREATE TABLE IF NOT
    EXISTS alone races in PostgreSQL: 'duplicate key value violates pg_type')."""
    code = (
        "import sys; from lvplan.register.store import open_backend; "
        "open_backend(sys.argv[1]).all(); print('ok')"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, pg_register],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [e for _, e in outs]
    with psycopg.connect(pg_register) as con:
        tables = {r[0] for r in con.execute("SELECT tablename FROM pg_tables")}
    assert {"applications", "events", "island_clock", "meta"} <= tables


def _hold(url: str, islands: list[str] | None):
    """Another process's transaction holding the locks a decision on ``islands`` takes."""
    con = psycopg.connect(url, autocommit=True)
    con.execute("BEGIN")
    if islands is None:
        con.execute("SELECT pg_advisory_xact_lock(%s)", (REGISTER_LOCK,))
    else:
        con.execute("SELECT pg_advisory_xact_lock_shared(%s)", (REGISTER_LOCK,))
        for k in islands:
            con.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(f"island {k}"),))
    return con


def test_a_decision_locks_its_island_only(sz, cn, pg_register):
    """While another process decides on T3's island, a decision there waits (or, when it may
    not wait, is told at once), and one on the other island goes ahead. An application given
    by coordinates waits for every island."""
    desk = Desk(sz, open_backend(pg_register), cn)
    assert desk._scope({"bus": T3_BOARD}) == [ISLAND_T3]
    assert desk._scope({"bus": 31}) == [ISLAND_T5]
    other = _hold(pg_register, [ISLAND_T3])
    t0 = time.monotonic()
    with pytest.raises(RegisterBusy):
        desk.apply({"id": "a1", "bus": T3_BOARD, "kw": 20}, wait=False)
    with pytest.raises(RegisterBusy):  # coordinates: the whole register
        desk.apply({"id": "g1", "lon": 114.0590, "lat": 22.5415, "kw": 20}, wait=False)
    assert time.monotonic() - t0 < 1.0
    app, created = desk.apply({"id": "b1", "bus": 31, "kw": 20}, wait=False)
    assert created and app.status == "approved"  # the other island did not wait
    threading.Timer(0.5, lambda: other.execute("COMMIT")).start()
    t0 = time.monotonic()
    app, created = desk.apply({"id": "a1", "bus": T3_BOARD, "kw": 20})  # waits, then decides
    assert created and app.status == "approved" and time.monotonic() - t0 >= 0.4
    other.close()
    events = psycopg.connect(pg_register).execute("SELECT id, island FROM events ORDER BY n")
    assert [tuple(r) for r in events] == [("b1", ISLAND_T5), ("a1", ISLAND_T3)]


def test_a_commit_out_of_order_on_another_island_is_never_missed(sz, cn, pg_register):
    """Process P records a 150 kW reservation on T3's island (event n) but commits only after
    this desk recorded an application on the other island (event n+1). A single change counter
    would now say 'seen up to n+1' and never count P's reservation; the counter per island
    does, and T3's board then has no room for 100 kW more."""
    desk = Desk(sz, open_backend(pg_register), cn)
    assert desk.check({"bus": T3_BOARD, "kw": 100})["decision"] == "fits"
    p = open_backend(pg_register)
    bus = sz.resolve_bus(T3_BOARD)
    with p.transaction(write=True, islands=[ISLAND_T3]) as tx:
        app = Application(
            id="p1",
            seq=0,
            status="approved",
            request={"id": "p1", "bus": bus, "kw": 150.0},
            request_sha256="-",
            decision={},
            bus=bus,
            design_kw=150.0,
            design_kvar=0.0,
            network_fingerprint=sz.fingerprint,
            lvplan_version="test",
            created_at="t",
            updated_at="t",
        )
        n = tx.insert(app, ISLAND_T3)
        desk.apply({"id": "d1", "bus": 31, "kw": 10})  # commits first
    assert desk.seen[ISLAND_T5] > n and desk.seen.get(ISLAND_T3, 0) < n
    later, _ = desk.apply({"id": "d2", "bus": T3_BOARD, "kw": 100})
    assert "p1" in desk.network.reserved and later.status == "rejected"
    assert later.decision["binding"]["kind"] == "transformer"


def test_a_lost_connection_is_opened_again_and_a_closed_database_is_503(sz, cn, pg_register):
    reg = open_backend(pg_register)
    desk = Desk(sz, reg, cn)
    desk.apply({"id": "a1", "bus": 15, "kw": 10})
    admin_url = pg_register.rsplit("/", 1)[0] + "/postgres"
    db = pg_register.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as admin:
        kill = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s"
        assert admin.execute(kill, (db,)).rowcount >= 1
        # the server ended the desk's connection (as a restart does): the next one is new
        app, created = desk.apply({"id": "a2", "bus": 15, "kw": 10})
        assert created and app.status == "approved"
        # the database refuses connections: nothing recorded, nothing reserved, 503
        admin.execute(f"ALTER DATABASE {db} ALLOW_CONNECTIONS false")
        admin.execute(kill, (db,))
        try:
            with pytest.raises(RegisterUnavailable, match="not currently accepting"):
                desk.apply({"id": "a3", "bus": 15, "kw": 10})
            assert set(desk.network.reserved) == {"a1", "a2"}
            assert reg.health()["ok"] is False
        finally:
            admin.execute(f"ALTER DATABASE {db} ALLOW_CONNECTIONS true")
    app, created = desk.apply({"id": "a3", "bus": 15, "kw": 10})
    assert created and reg.health()["ok"] is True
    assert [a.id for a in reg.all()] == ["a1", "a2", "a3"]


def test_a_read_only_database_is_refused_at_startup(pg_register, capsys, monkeypatch):
    db = pg_register.rsplit("/", 1)[1]
    with psycopg.connect(pg_register, autocommit=True) as con:
        con.execute(f"ALTER DATABASE {db} SET default_transaction_read_only = on")
    monkeypatch.setenv("LVPLAN_TOKEN", TOKEN)
    assert main(["serve", "sz-futian", "--register", pg_register, "--check"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot be written" in err and "read-only" in err


def test_serve_workers_two_processes_behind_one_port(sz, cn, pg_register, tmp_path):
    """`lvplan serve --workers 2`: two processes answer on one port and decide on one
    register; applications posted concurrently to both all fit together."""
    from test_multiwriter import _approved, _bodies, _no_new_violation

    port = free_port()
    env = dict(os.environ, LVPLAN_TOKEN=TOKEN)
    cmd = [sys.executable, "-m", "lvplan.cli", "serve", "sz-futian", "--register", pg_register]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port), "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        workers: set[str] = set()
        deadline = time.monotonic() + 120
        # a new connection each time (no keep-alive): either worker may take it. One client
        # for every look: httpx.get made a client, and its TLS context, each time (20 ms of CPU,
        # a third of a core taken from the starting server while it polled)
        with httpx.Client(timeout=2, limits=httpx.Limits(max_keepalive_connections=0)) as hc:
            while len(workers) < 2:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
                try:
                    r = hc.get(f"{url}/healthz")
                    if r.status_code == 200:
                        workers.add(r.json()["worker"])
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        answered: dict[str, str] = {}

        def post(bodies):
            with httpx.Client(timeout=120) as c:
                for body in bodies:
                    r = c.post(f"{url}/v1/applications", json=body, headers=AUTH)
                    assert r.status_code == 201, r.text
                    answered[body["id"]] = r.json()["status"]

        threads = [threading.Thread(target=post, args=(_bodies(f"w{k}", 15, k),)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        proc.terminate()
        proc.wait(30)
    assert len(answered) == 60
    loads = _approved(pg_register)
    assert 5 <= len(loads) < 60
    _no_new_violation(sz.pp, cn, loads)


def test_one_process_decides_on_two_islands_at_once(sz, cn, pg_register, sz_pristine):
    """One desk, threads on both islands: while a decision holds T3's island (in this
    process), one on T5's island goes ahead, and T3's waits. Then 6 threads post 60
    applications to both islands' areas: the approved set, loaded together, passes the
    independent judge with no new violation."""
    import copy

    import pandapower as pp
    from reference import OPTS, _violations

    desk = Desk(sz, open_backend(pg_register), cn)
    inside, leave = threading.Event(), threading.Event()

    def hold_t3():
        with desk.lock.hold([ISLAND_T3]):
            inside.set()
            leave.wait(10)

    holder = threading.Thread(target=hold_t3, daemon=True)
    holder.start()
    assert inside.wait(10)
    t0 = time.monotonic()
    app, created = desk.apply({"id": "b1", "bus": 31, "kw": 20})
    assert created and app.status == "approved" and time.monotonic() - t0 < 5
    done: list = []
    waiter = threading.Thread(
        target=lambda: done.append(desk.apply({"id": "a1", "bus": T3_BOARD, "kw": 20})),
        daemon=True,
    )
    waiter.start()
    waiter.join(0.5)
    assert not done  # T3's island is held in this process
    leave.set()
    waiter.join(30)
    assert done and done[0][0].status == "approved"

    buses = [15, 16, 18, 20, 28, 31, 34, 36, 40]
    errors: list[BaseException] = []

    def post(k: int) -> None:
        try:
            for i in range(10):
                bus = buses[(k * 10 + i) % len(buses)]
                desk.apply({"id": f"t{k}-{i}", "bus": bus, "kw": 40 + 7 * (i % 5)})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=post, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    apps = [desk.get(f"t{k}-{i}") for k in range(6) for i in range(10)]
    approved = [a for a in apps if a.status == "approved"]
    assert 0 < len(approved) < len(apps)  # the areas filled up
    net = copy.deepcopy(sz_pristine)
    pp.runpp(net, **OPTS)
    before = _violations(net, cn)
    for a in [*approved, desk.get("b1"), desk.get("a1")]:
        pp.create_load(net, a.bus, p_mw=a.design_kw / 1000, q_mvar=a.design_kvar / 1000)
    pp.runpp(net, **OPTS)
    assert _violations(net, cn) <= before
