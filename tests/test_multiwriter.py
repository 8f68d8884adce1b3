"""Issue 9: one register, several writers (servers, batches, desks in other processes); a
register belongs to one network; a register that cannot record refuses instead of answering."""

from __future__ import annotations

import copy
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pandapower as pp
import pytest
from closed_pipe import ClosedPipe
from reference import OPTS, _violations
from test_service import AUTH, TOKEN, server

from lvplan.cli import main
from lvplan.errors import InputError, RegisterUnavailable
from lvplan.register.desk import Desk
from lvplan.register.store import open_backend

#: the buses of transformer areas T3, T5 and T6 of sz-futian: the writers share their headroom
SHARED = [15, 16, 18, 20, 28, 29, 31, 34, 37, 40]


def _approved(db) -> list[tuple[str, int, float, float]]:
    """(id, bus, design kW, design kvar) of every reservation in the register (either backend)."""
    return [
        (a.id, int(a.bus), a.design_kw, a.design_kvar)  # type: ignore[arg-type]
        for a in open_backend(db, writable=False).all()
        if a.reserves
    ]


def _no_new_violation(pp_net, crit, loads) -> None:
    """The approved set, all loaded together: pandapower's full AC load flow shows no element
    outside a limit that was not outside it before (tests/reference.py's judge)."""
    net = copy.deepcopy(pp_net)
    pp.runpp(net, **OPTS)
    before = _violations(net, crit)
    for _id, bus, p_kw, q_kvar in loads:
        pp.create_load(net, int(bus), p_mw=p_kw / 1000.0, q_mvar=q_kvar / 1000.0)
    pp.runpp(net, **OPTS)
    assert _violations(net, crit) <= before


def _bodies(prefix: str, n: int, seed: int, buses=SHARED) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {"id": f"{prefix}-{i}", "bus": int(rng.choice(buses)), "kw": float(rng.uniform(8, 20))}
        for i in range(n)
    ]


def test_two_desks_on_one_register_count_each_other(sz, cn, register_spec):
    """Two desks (two servers' worth of state) on one register, taking turns on the same
    areas: each decision counts what the other approved or withdrew since. Without the catch-up
    the second desk would approve into headroom the first already spent."""
    db = register_spec
    a = Desk(sz, open_backend(db), cn)
    b = Desk(sz, open_backend(db), cn)
    bodies = _bodies("x", 60, 7, buses=[15, 16, 18, 20])  # T3's area only
    for i, body in enumerate(bodies):
        (a if i % 2 else b).apply(body)
    loads = _approved(db)
    assert 5 <= len(loads) < 60
    _no_new_violation(sz.pp, cn, loads)
    # each desk's reservations are the register's, whichever desk recorded them
    b.check({"bus": 15, "kw": 1})
    ids = {x[0] for x in loads}
    assert set(a.network.reserved) <= ids and set(b.network.reserved) == ids
    # a withdrawal by one desk frees the headroom for the other's next decision
    first = sorted(ids)[0]
    a.transition(first, "withdraw")
    b.check({"bus": 15, "kw": 1})
    assert first not in b.network.reserved and b.seen == a.seen


def _post_all(url: str, bodies: list[dict], answered: dict, lock: threading.Lock) -> None:
    with httpx.Client(timeout=120) as c:
        for body in bodies:
            r = c.post(f"{url}/v1/applications", json=body, headers=AUTH)
            assert r.status_code in (200, 201), r.text
            with lock:
                answered[body["id"]] = r.json()["status"]


def test_two_servers_and_a_batch_on_one_register(sz, cn, tmp_path, register_spec):
    """Two `lvplan serve` processes and one `lvplan check-batch`, all on one register (a SQLite
    file; a PostgreSQL database, where the writers lock only the MV island they decide on),
    hit the same three transformer areas (on both of sz-futian's islands) at once. The approved
    set, loaded together, passes the independent AC judge with no new violation. (On the code
    before issue 9 each writer spent the same headroom: the same kind of run approved 599 kW
    onto one 400 kVA area.)"""
    db = register_spec
    queue = tmp_path / "q.csv"
    batch = _bodies("batch", 60, 3)
    queue.write_text(
        "id,bus,kw\n" + "".join(f"{b['id']},{b['bus']},{b['kw']}\n" for b in batch),
        encoding="utf-8",
    )
    reader = open_backend(db)  # create it first, so the three writers open the same register
    answered: dict[str, str] = {}
    lock = threading.Lock()
    with server(db) as (url1, _p1), server(db) as (url2, _p2):
        cmd = [sys.executable, "-m", "lvplan.cli", "check-batch", "sz-futian", str(queue)]
        out = tmp_path / "out.csv"
        env = dict(os.environ, LVPLAN_TOKEN=TOKEN)
        proc = subprocess.Popen(
            [*cmd, "--register", str(db), "--out", str(out)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 120
        while (
            not any(a.id.startswith("batch-") for a in reader.all()) and proc.poll() is None
        ):  # the batch is deciding
            assert time.monotonic() < deadline
            time.sleep(0.05)
        threads = [
            threading.Thread(target=_post_all, args=(u, _bodies(f"s{k}", 40, k), answered, lock))
            for k, u in enumerate((url1, url2, url1, url2))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        _o, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()
    apps = reader.all()
    first_served = min(a.seq for a in apps if a.id.startswith("s"))
    last_batch = max(a.seq for a in apps if a.id.startswith("b"))
    assert first_served < last_batch  # the servers decided while the batch was running
    assert len(answered) == 160
    loads = _approved(db)
    ids = {x[0] for x in loads}
    writers = {
        "batch": any(i.startswith("batch") for i in ids),
        "server 1": any(i.startswith(("s0-", "s2-")) for i in ids),
        "server 2": any(i.startswith(("s1-", "s3-")) for i in ids),
    }
    assert sum(writers.values()) >= 2, writers  # approvals from more than one writer
    assert 10 <= len(loads) < 220  # the areas filled up: later applications were refused
    _no_new_violation(sz.pp, cn, loads)


# -- a register belongs to one network -------------------------------------------------------
@pytest.fixture()
def other_version(sz, tmp_path):
    """sz-futian as a pandapower JSON with one more load: another fingerprint, the same bus
    names (a new version of the same district)."""
    net = copy.deepcopy(sz.pp)
    pp.create_load(net, 16, p_mw=0.05, q_mvar=0.02, name="new tower")
    path = tmp_path / "sz-v2.json"
    pp.to_json(net, str(path))
    return path


def test_a_register_of_another_network_is_refused(
    sz, cn, tmp_path, other_version, capsys, register_spec, monkeypatch
):
    db = register_spec
    Desk(sz, open_backend(db), cn).apply({"id": "a1", "bus": "T3 tower A", "kw": 80})
    argv = ["check", str(other_version), "--bus", "15", "--kw", "10", "--register", db]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "belongs to network sz-futian" in err
    assert "--migrate" in err
    # the same for a batch and for the server's start-up (exit 2, one line)
    q = tmp_path / "q.csv"
    q.write_text("id,bus,kw\nz1,15,5\n", encoding="utf-8")
    out = tmp_path / "o.csv"
    assert (
        main(["check-batch", str(other_version), str(q), "--register", str(db), "--out", str(out)])
        == 2
    )
    assert "belongs to network" in capsys.readouterr().err and not out.exists()
    monkeypatch.setenv("LVPLAN_TOKEN", TOKEN)
    assert main(["serve", str(other_version), "--register", str(db), "--check"]) == 2
    assert "belongs to network" in capsys.readouterr().err


def test_migrate_maps_by_bus_name_and_rechecks(sz, cn, other_version, register_spec):
    import lvplan

    db = register_spec
    desk = Desk(sz, open_backend(db), cn)
    desk.apply({"id": "a1", "bus": "T3 plaza box", "kw": 30})
    desk.apply({"id": "a2", "bus": "T5 kiosk", "kw": 20})
    v2 = lvplan.load_network(str(other_version))
    moved = Desk(v2, open_backend(db), cn, migrate=True)
    assert moved.migration is not None and moved.migration.reservations == 2
    assert set(moved.network.reserved) == {"a1", "a2"}
    reg = open_backend(db)
    assert {a.network_fingerprint for a in reg.all()} == {v2.fingerprint}
    # v2's new 50 kW tower load sits in T3's area, which had little room: a1 no longer fits
    # there (it stays reserved: an approval is a promise, and the event says so); a2 does
    assert "bus 18 -> 18; re-check: does_not_fit" in reg.events("a1")[-1]["note"]
    assert "re-check: fits" in reg.events("a2")[-1]["note"]
    assert moved.migration.no_longer_fit == ["a1"]
    # now it belongs to v2: the old network is refused
    with pytest.raises(InputError, match="belongs to network"):
        Desk(sz, open_backend(db), cn)


def test_migrate_refuses_when_a_reserved_bus_is_gone(sz, cn, tmp_path, register_spec):
    import lvplan

    db = register_spec
    app, _ = Desk(sz, open_backend(db), cn).apply({"id": "a1", "bus": "T5 kiosk", "kw": 20})
    assert app.status == "approved"
    net = copy.deepcopy(sz.pp)
    net.bus.loc[32, "name"] = "T5 kiosk (renamed)"
    path = tmp_path / "renamed.json"
    pp.to_json(net, str(path))
    with pytest.raises(InputError, match="'a1' at bus 'T5 kiosk' has no bus of that name"):
        Desk(lvplan.load_network(str(path)), open_backend(db), cn, migrate=True)
    assert open_backend(db).all()[0].network_fingerprint == sz.fingerprint  # nothing changed


# -- a register that cannot record never answers ------------------------------------------------
def test_a_new_register_where_one_was_deleted_under_a_server(sz, cn, tmp_path, capsys):
    """Found by a hostile review: r.db deleted under a running server, a new register at that
    path failed with "cannot be written (disk I/O error)" (SQLite took the server's -shm for
    the new file's). Now the message says what is beside it and what to do; once the holder
    is gone, its log (which may be a moved register's) is refused until removed, and the new
    register is then made clean (the dead one's log is not replayed into it)."""
    db = tmp_path / "r.db"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sqlite3, sys, time\n"
         f"c = sqlite3.connect({str(db)!r}, isolation_level=None)\n"
         "c.execute('PRAGMA journal_mode=WAL')\n"
         "c.execute('CREATE TABLE t (x)')\n"
         "c.execute('INSERT INTO t VALUES (1)')\n"
         "print('ready', flush=True)\n"
         "time.sleep(120)\n"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "ready"
        wal = tmp_path / "r.db-wal"
        wal_bytes = wal.stat().st_size
        assert wal_bytes > 0
        db.unlink()
        with pytest.raises(InputError, match=r"cannot be made: r\.db-(wal|shm) is beside it"):
            open_backend(db)
        q = tmp_path / "q.csv"
        q.write_text("id,bus,kw\nb1,20,10\n", encoding="utf-8")
        argv = ["check-batch", "sz-futian", str(q), "--register", str(db)]
        assert main([*argv, "--out", str(tmp_path / "o.csv")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "still has it open: stop that process" in err
        assert wal.stat().st_size == wal_bytes  # the holder's log untouched (it was emptied)
    finally:
        holder.kill()
        holder.wait()
    assert not db.exists()  # the 4 kB file SQLite made before it failed is not left
    assert (tmp_path / "r.db-wal").exists()  # the dead holder's log, with its table
    # a log with commits beside no database may be a register moved without it: refused
    # until someone says it is garbage (since 2026-12-08; it was dropped by the new file)
    assert main([*argv, "--out", str(tmp_path / "o.csv")]) == 2
    assert "r.db-wal" in capsys.readouterr().err
    (tmp_path / "r.db-wal").unlink()
    (tmp_path / "r.db-shm").unlink(missing_ok=True)
    assert main([*argv, "--out", str(tmp_path / "o.csv")]) == 0
    capsys.readouterr()
    con = sqlite3.connect(db)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "t" not in tables and "applications" in tables
    assert [a.id for a in open_backend(db).all()] == ["b1"]


def test_a_new_register_beside_our_own_deleted_one_keeps_its_locks(tmp_path):
    """Found by a review: the look for a living holder of a deleted register's -shm, made
    from the process that holds it, found no conflict (a process's own locks never conflict)
    and its close dropped that process's SQLite locks on the file: the new register was made
    over the live -wal, and any other process was let through too."""
    db = tmp_path / "r.db"
    a = open_backend(db)
    with a.transaction(write=True) as tx:
        tx.set_meta("x", "1" * 5000)
    wal_bytes = (tmp_path / "r.db-wal").stat().st_size
    db.unlink()
    with pytest.raises(InputError, match=r"r\.db-wal is beside it"):
        open_backend(db)
    assert (tmp_path / "r.db-wal").stat().st_size == wal_bytes
    probe = (
        "from pathlib import Path; from lvplan.register.store import _shm_in_use; "
        f"print(_shm_in_use(Path({str(db)!r} + '-shm')))"
    )
    other = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert other.stdout.strip() == "True"  # our locks are still held


def test_deleted_register_under_a_running_server_gives_503(tmp_path):
    db = tmp_path / "r.db"
    with server(db) as (url, proc):
        ok = httpx.post(
            f"{url}/v1/applications", json={"id": "k1", "bus": 15, "kw": 10}, headers=AUTH
        )
        assert ok.status_code == 201
        for suffix in ("", "-wal", "-shm"):
            p = tmp_path / f"r.db{suffix}"
            if p.exists():
                p.unlink()
        for i in range(2):
            r = httpx.post(
                f"{url}/v1/applications",
                json={"id": f"k{i + 2}", "bus": 15, "kw": 10},
                headers=AUTH,
                timeout=30,
            )
            assert r.status_code == 503, r.text
            assert r.json()["error"]["field"] == "register" and "gone" in r.text
        got = httpx.get(f"{url}/v1/applications/k1", headers=AUTH, timeout=30)
        assert got.status_code == 503
        health = httpx.get(f"{url}/healthz", timeout=30)
        assert health.status_code == 503 and health.json()["ok"] is False
        assert proc.poll() is None


def test_replaced_register_file_is_refused(sz, cn, tmp_path):
    db = tmp_path / "r.db"
    desk = Desk(sz, open_backend(db), cn)
    desk.apply({"id": "a1", "bus": 15, "kw": 10})
    os.replace(db, tmp_path / "old.db")
    sqlite3.connect(db).close()  # another file now has the name
    with pytest.raises(RegisterUnavailable, match="replaced"):
        desk.apply({"id": "a2", "bus": 15, "kw": 10})
    assert set(desk.network.reserved) == {"a1"}


def test_disk_full_records_nothing_and_reserves_nothing(sz, cn, tmp_path):
    """SQLite's 'database or disk is full' (simulated with max_page_count): the real error is
    reported (not a secondary 'cannot rollback'), nothing is stored and nothing reserved."""
    db = tmp_path / "r.db"
    reg = open_backend(db)
    desk = Desk(sz, reg, cn)
    desk.apply({"id": "a1", "bus": 15, "kw": 10})
    con = reg._con()
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    con.execute(f"PRAGMA max_page_count = {pages}")
    big = {"id": "a2" + "x" * 120, "bus": 16, "kw": 10}
    with pytest.raises(RegisterUnavailable, match="full") as info:
        for k in range(40):  # fill the last free pages
            desk.apply({**big, "id": f"{k}{big['id']}"[:128]})
    assert "rollback" not in str(info.value)
    assert reg.last_write_error is not None and "full" in reg.last_write_error
    con.execute("PRAGMA max_page_count = 1073741823")
    # room again: /healthz's write probe clears the failure without an application written
    # (it stayed 503 until one was, which a balancer never sent: probe, 2026-12-08)
    assert reg.health() == {"ok": True, "error": None}
    stored = {a.id for a in reg.all()}
    assert set(desk.network.reserved) == {a.id for a in reg.all() if a.reserves}
    assert "a1" in stored


def _make_unwritable(path) -> str:
    """chattr +i where it works (root ignores file modes), else chmod 444."""
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0:
        return "chattr"
    os.chmod(path, 0o444)
    return "chmod"


def test_a_register_that_cannot_be_written_is_refused_at_startup(tmp_path, capsys, monkeypatch):
    db = tmp_path / "r.db"
    open_backend(db)
    how = _make_unwritable(db)
    try:
        try:
            with open(db, "ab"):
                pytest.skip("this user can write an unwritable file here")
        except OSError:
            pass
        monkeypatch.setenv("LVPLAN_TOKEN", TOKEN)
        assert main(["serve", "sz-futian", "--register", str(db), "--check"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "cannot be written" in err
        assert main(["register", "list", "--register", str(db)]) == 0  # reading still works
    finally:
        if how == "chattr":
            subprocess.run(["chattr", "-i", str(db)], check=True)
        os.chmod(db, 0o644)


def test_a_write_refused_by_sqlite_is_unavailable_with_the_real_error(tmp_path):
    """A write SQLite refuses mid-run (here query_only, as on a file system remounted
    read-only) is RegisterUnavailable with SQLite's own message, never 'cannot rollback'."""
    db = tmp_path / "r.db"
    reg = open_backend(db)
    reg._con().execute("PRAGMA query_only = 1")
    with (
        pytest.raises(RegisterUnavailable, match="readonly") as info,
        reg.transaction(write=True) as tx,
    ):
        tx.set_meta("x", "y")
    assert "rollback" not in str(info.value)


def test_serve_check_mode(register_spec, capsys, monkeypatch):
    monkeypatch.setenv("LVPLAN_TOKEN", TOKEN)
    assert main(["serve", "sz-futian", "--register", register_spec, "--check"]) == 0
    assert capsys.readouterr().out.startswith("ok: network sz-futian")


def test_serve_check_with_progress_into_a_closed_pipe_still_checks(tmp_path, capsys, monkeypatch):
    """The start-up lines and "ready" go quiet when their reader leaves; the check (and a
    server) goes on (before: "ready" raised BrokenPipeError, exit 141, no server)."""
    monkeypatch.setenv("LVPLAN_TOKEN", TOKEN)
    capsys.readouterr()
    monkeypatch.setattr("sys.stderr", ClosedPipe())
    rc = main(["serve", "sz-futian", "--register", str(tmp_path / "r.sqlite"), "--progress",
               "--check"])  # fmt: skip
    assert rc == 0
    assert capsys.readouterr().out.startswith("ok: network sz-futian")


# -- check-batch: all or nothing on validation -------------------------------------------------
@pytest.mark.parametrize(
    ("row", "field"),
    [
        ("b4,999,10", "bus"),
        ("b4,T9 nowhere,10", "bus"),
        ("b4,2,10", "bus"),  # a 10 kV bus
        ("b4,15,10,shopx", "category"),
        ("b4,15,nan", "kw"),
        ("b4,15,1e400", "kw"),
        ("b4,15,10,shop,1.5", "pf"),
        ("b1,15,10", "id"),  # twice
    ],
)
def test_batch_validates_every_row_before_recording(tmp_path, capsys, row, field):
    db = tmp_path / "r.db"
    q = tmp_path / "q.csv"
    q.write_text(
        "id,bus,kw,category,pf\nb1,15,10\nb2,16,10\nb3,T3 plaza box,10\n" + row + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "o.csv"
    assert main(["check-batch", "sz-futian", str(q), "--register", str(db), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{q}:5: {field}: " in err, err
    assert not db.exists() and not out.exists()


def test_batch_unknown_column_and_extra_cells(tmp_path, capsys):
    q = tmp_path / "q.csv"
    out = tmp_path / "o.csv"
    db = tmp_path / "r.db"
    q.write_text("id,bus,kw,volts\nb1,15,10,3\n", encoding="utf-8")
    assert main(["check-batch", "sz-futian", str(q), "--register", str(db), "--out", str(out)]) == 2
    assert f"{q}:1: volts: unknown column" in capsys.readouterr().err
    q.write_text("id,bus,kw\nb1,15,10\nb2,15,10,7\n", encoding="utf-8")
    assert main(["check-batch", "sz-futian", str(q), "--register", str(db), "--out", str(out)]) == 2
    assert f"{q}:3: row: more cells" in capsys.readouterr().err
    assert not db.exists()


def test_check_register_counts_and_never_creates(sz, tmp_path, capsys):
    db = tmp_path / "none.db"
    assert main(["check", "sz-futian", "--bus", "15", "--kw", "10", "--register", str(db)]) == 2
    assert "no such register file" in capsys.readouterr().err and not db.exists()


def test_a_busy_register_is_waited_for_off_the_event_loop(sz, cn, tmp_path):
    """Another process holds the register's write lock: a decision that may not wait
    (the service's event loop) is told at once (RegisterBusy), records nothing, and the same
    decision waits for the lock when it may (the service then runs it in a worker thread)."""
    from lvplan.register.store import RegisterBusy

    db = tmp_path / "r.db"
    desk = Desk(sz, open_backend(db), cn)
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # a writer in another connection
    t0 = time.monotonic()
    with pytest.raises(RegisterBusy):
        desk.apply({"id": "b1", "bus": 15, "kw": 5}, wait=False)
    assert time.monotonic() - t0 < 1.0
    threading.Timer(0.5, lambda: other.execute("COMMIT")).start()
    app, created = desk.apply({"id": "b1", "bus": 15, "kw": 5})  # waits, then decides
    assert created and app.status == "approved"
    other.close()


# -- found by a hostile review: a register changed behind a running desk --------------------------
def test_a_desk_refuses_a_register_migrated_behind_it(sz, cn, other_version, register_spec):
    """Server A runs on sz-futian; another process migrates the register to v2. A must not
    go on deciding on its old network (its bus numbers no longer mean the register's)."""
    import lvplan

    db = register_spec
    a = Desk(sz, open_backend(db), cn)
    a.apply({"id": "a1", "bus": 32, "kw": 20})
    Desk(lvplan.load_network(str(other_version)), open_backend(db), cn, migrate=True)
    with pytest.raises(RegisterUnavailable, match="now belongs to network"):
        a.apply({"id": "a2", "bus": 32, "kw": 20})
    with pytest.raises(RegisterUnavailable):
        a.check({"bus": 32, "kw": 20})
    assert a.health()["ok"] is False and "now belongs to network" in a.health()["error"]
    assert open_backend(db).get("a2") is None


def test_a_register_is_decided_under_one_set_of_criteria(sz, cn, register_spec):
    """Found by a hostile review: a writer with --set trafo_max_loading_percent=1000 wrote
    approvals into a register decided under cn, and every later cn decision counted them as
    promises. Now a writer with other criteria is refused; a reader may ask what-if; --migrate
    re-checks the reservations under the new criteria and a desk still running under the old
    ones stops deciding."""
    db = register_spec
    a = Desk(sz, open_backend(db), cn)
    assert a.apply({"id": "a1", "bus": 20, "kw": 100})[0].status == "approved"
    assert a.apply({"id": "a2", "bus": 40, "kw": 80})[0].status == "approved"
    loose = cn.with_overrides(trafo_max_loading_percent=1000)
    with pytest.raises(InputError, match=r"decided under criteria cn \(\w{12}\), not cn with "
                       r"trafo_max_loading_percent=1000"):  # fmt: skip
        Desk(sz, open_backend(db), loose)
    same = cn.with_overrides(trafo_max_loading_percent=cn.trafo_max_loading_percent)
    assert Desk(sz, open_backend(db), same).apply({"id": "a3", "bus": 50, "kw": 5})[1]
    reader = Desk(sz, open_backend(db, writable=False), loose)  # what-if: reserves nothing
    assert reader.check({"bus": 20, "kw": 5})["decision"] == "fits"
    tight = cn.with_overrides(line_max_loading_percent=40)
    moved = Desk(sz, open_backend(db), tight, migrate=True)
    m = moved.migration
    assert m is not None and m.reservations == 3 and m.to_criteria.endswith("=40")
    assert "a1" in m.no_longer_fit and "from criteria cn to cn with" in m.summary()
    reg = open_backend(db)
    note = reg.events("a1")[-1]["note"]
    assert note.startswith("migrated to criteria cn with line_max") and "does_not_fit" in note
    assert reg.get("a1").status == "approved" and reg.get("a1").bus == 20  # a promise stays
    with pytest.raises(RegisterUnavailable, match="now decided under criteria cn with line"):
        a.apply({"id": "a4", "bus": 50, "kw": 5})
    health = a.health()  # what /healthz answers (it said ok: found by a review)
    assert health["ok"] is False and "now decided under criteria" in health["error"]
    assert moved.health() == {"ok": True, "error": None}
    assert reg.get("a4") is None
    with pytest.raises(InputError, match="decided under criteria cn with line_max"):
        Desk(sz, open_backend(db), cn)


def test_deleted_wal_and_shm_are_refused(sz, cn, tmp_path):
    db = tmp_path / "r.db"
    desk = Desk(sz, open_backend(db), cn)
    desk.apply({"id": "a1", "bus": 15, "kw": 10})
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"r.db{suffix}").unlink()
    with pytest.raises(RegisterUnavailable, match=r"(wal|shm) file was deleted"):
        desk.apply({"id": "a2", "bus": 15, "kw": 10})
    assert not desk.register.health()["ok"]


def test_a_register_restored_in_place_is_refused(sz, cn, tmp_path):
    """A backup restored over the register (same inode) rewinds its event log: a desk that
    had counted further must not trust its counter."""
    db = tmp_path / "r.db"
    a = Desk(sz, open_backend(db), cn)
    b = Desk(sz, open_backend(db), cn)
    backup = sqlite3.connect(tmp_path / "bak.db")
    sqlite3.connect(db).backup(backup)
    for i in range(3):
        a.apply({"id": f"t{i}", "bus": 15, "kw": 10})
    b.check({"bus": 15, "kw": 1})  # b has counted three events
    live = sqlite3.connect(db)
    backup.backup(live)  # restore in place
    live.close()
    with pytest.raises(RegisterUnavailable, match="history changed"):
        a.apply({"id": "u0", "bus": 28, "kw": 40})
    c = Desk(sz, open_backend(db), cn)  # a fresh desk (a restart) counts what it holds
    c.apply({"id": "u0", "bus": 28, "kw": 40})
    with pytest.raises(RegisterUnavailable, match="history changed"):
        b.apply({"id": "u1", "bus": 28, "kw": 40})


def test_a_deleted_register_is_not_recreated_by_a_new_thread(sz, cn, tmp_path):
    db = tmp_path / "r.db"
    desk = Desk(sz, open_backend(db), cn)
    desk.apply({"id": "a1", "bus": 15, "kw": 10})
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"r.db{suffix}").unlink()
    errors: list[Exception] = []

    def other_thread():
        try:
            desk.register.get("a1")
        except Exception as exc:
            errors.append(exc)

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    assert errors and isinstance(errors[0], RegisterUnavailable)
    assert not db.exists()


def test_bus_numbers_written_oddly_are_names_not_crashes(sz, cn, register_spec):
    desk = Desk(sz, open_backend(register_spec), cn)
    for odd in ("--5", "²", "١٥", "9" * 40):
        with pytest.raises(InputError, match="bus"):
            desk.check({"bus": odd, "kw": 5})
    assert desk.check({"bus": " 15", "kw": 5})["bus"] == 15


def test_batch_refuses_an_id_the_register_holds_with_another_request(
    sz, cn, tmp_path, capsys, register_spec
):
    db = register_spec
    Desk(sz, open_backend(db), cn).apply({"id": "d1", "bus": 15, "kw": 10})
    q = tmp_path / "q.csv"
    q.write_text("id,bus,kw\nd0,16,5\nd1,15,11\n", encoding="utf-8")
    out = tmp_path / "o.csv"
    assert main(["check-batch", "sz-futian", str(q), "--register", str(db), "--out", str(out)]) == 2
    assert f"{q}:3: id: 'd1' is in the register with another request" in capsys.readouterr().err
    assert open_backend(db).get("d0") is None  # nothing decided


def _open_in_another_process(path) -> subprocess.CompletedProcess:
    code = (
        "import sys\nfrom lvplan.errors import InputError\n"
        "from lvplan.register.store import open_backend\n"
        f"try:\n    open_backend({str(path)!r})\nexcept InputError as e:\n"
        "    print(e); sys.exit(2)\nprint('opened')"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_one_register_file_under_two_names_is_refused(tmp_path):
    """A hard link (or a single-file bind mount) is the same file under another name; SQLite
    keeps its lock and log beside the name, so two servers on two names approved past every
    limit and lost half their records (probe, 2026-12-08). The second name is refused while
    the first is open; the same name, or the same folder reached through a link, is not."""
    db = tmp_path / "reg.db"
    a = open_backend(db)
    with a.transaction(write=True) as tx:
        tx.set_meta("x", "1")
    link = tmp_path / "link.db"
    os.link(db, link)
    got = _open_in_another_process(link)
    assert got.returncode == 2, got.stderr
    assert "the same file is open under another name (a hard link or a bind mount)" in got.stdout
    assert _open_in_another_process(db).stdout.strip() == "opened"
    (tmp_path / "alias").symlink_to(tmp_path)  # (one name, reached through a linked folder)
    assert _open_in_another_process(tmp_path / "alias" / "reg.db").stdout.strip() == "opened"


def test_a_register_whose_name_lock_cannot_be_taken_is_refused(tmp_path, monkeypatch):
    """The name check must not switch itself off: where the open-file-description locks
    cannot be taken (a file system without them, a system without F_OFD_*), a register was
    opened unchecked, and a hard link of it opened beside it (review, 2026-12-08). It is
    refused in one line; a start that failed after its claim gives the claim back."""
    import errno

    from lvplan.register import store

    def no_locks(*_a, **_k):
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(store, "_ofd_lock", no_locks)
    with pytest.raises(InputError, match=r"cannot be taken here \(Invalid argument\): use a"):
        open_backend(tmp_path / "reg.db")
    monkeypatch.undo()
    db = tmp_path / "ro.db"
    open_backend(db)
    real = store._claim_name
    claims = []

    def claim(path):
        claims.append(real(path))
        return claims[-1]

    monkeypatch.setattr(store, "_claim_name", claim)
    monkeypatch.setattr(store, "_SCHEMA", "CREATE TABLE x(")  # (a start failing after it)
    with pytest.raises(InputError, match="cannot be written"):
        open_backend(db)
    assert store._NAME_HELD[claims[0]] == 1  # (the first start's claim alone)


def test_a_register_is_made_whole_or_not_at_all(tmp_path, monkeypatch):
    """The schema was made one statement at a time with ``meta`` last: a start killed half
    way (or a second process starting on the new file meanwhile) met lvplan's tables without
    ``meta`` and refused the file for good as "not an lvplan register" (review, 2026-12-08;
    1 of 24 starts of four processes at once). It is one transaction now: a start that fails
    before ``meta`` leaves no table, and the next start makes the register."""
    from lvplan.register import store

    before_meta = store._SCHEMA.replace(
        "CREATE TABLE IF NOT EXISTS meta", "SELECT * FROM no_such_table;\nCREATE TABLE meta"
    )
    monkeypatch.setattr(store, "_SCHEMA", before_meta)
    db = tmp_path / "reg.db"
    with pytest.raises(InputError, match="no such table"):
        open_backend(db)
    monkeypatch.undo()
    con = sqlite3.connect(db)
    assert con.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall() == []
    con.close()
    with open_backend(db).transaction(write=True) as tx:
        tx.set_meta("x", "1")


def test_a_register_on_a_network_file_system_is_refused(tmp_path, monkeypatch):
    """On NFS or SMB neither SQLite's locks nor the name locks reach the other hosts: two
    servers on two hosts would not count each other's approvals. Refused in one line, by
    the mount table's type of the file system under the resolved path."""
    from lvplan.register import store

    mounts = tmp_path / "mountinfo"
    share = tmp_path / "my share"
    share.mkdir()
    mounts.write_text(
        "22 1 254:1 / / rw,relatime - ext4 /dev/vda1 rw\n"
        f"36 22 0:32 / {str(share).replace(' ', chr(92) + '040')} rw - nfs4 srv:/x rw\n"
    )
    assert store._file_system(str(share / "reg.db"), str(mounts)) == "nfs4"
    assert store._file_system(str(tmp_path / "reg.db"), str(mounts)) == "ext4"
    assert store._file_system(str(share) + "x/reg.db", str(mounts)) == "ext4"
    odd = tmp_path / "odd"  # (a mount point that is not UTF-8: read as bytes)
    odd.write_bytes(
        b"22 1 254:1 / / rw - ext4 /dev/vda1 rw\n36 22 0:3 / /srv/\xff rw - nfs s:/x rw\n"
    )
    assert store._file_system(os.fsdecode(b"/srv/\xff/reg.db"), str(odd)) == "nfs"
    real = store._file_system
    monkeypatch.setattr(store, "_file_system", lambda p: real(p, str(mounts)))
    with pytest.raises(InputError, match=r"on a network file system \(nfs4\)"):
        open_backend(share / "reg.db")
    open_backend(tmp_path / "reg.db")  # (a local disk)


def test_a_stopped_server_leaves_its_records_in_the_database_file(tmp_path):
    """The per-thread connections were never closed, so nothing copied the log into the file
    at exit: after a normal stop, a copy or move of reg.db alone held no table (probe,
    2026-12-08). The process's last act is that copy; the database file then stands alone."""
    import shutil

    db = tmp_path / "reg.db"
    code = (  # (written from a thread alive at exit, as a server's pool threads are)
        "import threading\nfrom lvplan.register.store import open_backend\n"
        f"b = open_backend({str(db)!r})\n"
        "done = threading.Event()\n"
        "def work():\n"
        "    for i in range(20):\n"
        "        with b.transaction(write=True) as tx:\n"
        "            tx.set_meta(f'k{i}', 'v' * 1000)\n"
        "    done.set()\n"
        "    threading.Event().wait()\n"
        "threading.Thread(target=work, daemon=True).start()\n"
        "done.wait()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert not (tmp_path / "reg.db-wal").exists() or (tmp_path / "reg.db-wal").stat().st_size == 0
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(db, alone / "reg.db")
    con = sqlite3.connect(alone / "reg.db")
    assert con.execute("SELECT count(*) FROM meta WHERE key LIKE 'k%'").fetchone() == (20,)
    con.close()


def test_a_log_left_beside_a_database_moved_away_is_not_dropped(tmp_path):
    """A server killed, its reg.db moved away and its reg.db-wal left: a new register at the
    path dropped the log, and with it every commit not yet in the database (probe,
    2026-12-08). It is refused, naming the log, and the log is kept."""
    db = tmp_path / "reg.db"
    code = (
        "import os\nfrom lvplan.register.store import open_backend\n"
        f"b = open_backend({str(db)!r})\n"
        "with b.transaction(write=True) as tx:\n"
        "    tx.set_meta('k', 'v' * 5000)\n"
        "os._exit(0)\n"  # (as if killed: no checkpoint)
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    wal = tmp_path / "reg.db-wal"
    size = wal.stat().st_size
    assert size > 0
    db.rename(tmp_path / "reg-2026.db")
    with pytest.raises(InputError, match=r"does not exist, but reg\.db-wal \([\d,]+ bytes\)"):
        open_backend(db)
    assert wal.stat().st_size == size and not db.exists()


@pytest.mark.parametrize(
    "make, message",
    [
        (
            "CREATE TABLE users (id INTEGER, name TEXT); INSERT INTO users VALUES (1, 'a')",
            "an SQLite database that is not an lvplan register (its tables: users)",
        ),
        (
            "CREATE TABLE meta (k TEXT, v TEXT)",
            "an SQLite database that is not an lvplan register (its meta table is not lvplan's)",
        ),
        (
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "INSERT INTO meta VALUES ('schema', '3')",
            "register schema '3', written by another lvplan (this one reads schema 1 and 2)",
        ),
    ],
    ids=["another-application", "another-meta", "a-newer-schema"],
)
def test_a_database_that_is_not_a_register_is_refused_untouched(tmp_path, make, message):
    db = tmp_path / "other.db"
    con = sqlite3.connect(db)
    con.executescript(make)
    con.close()
    before = db.read_bytes()
    with pytest.raises(InputError, match=re.escape(message)):
        open_backend(db)
    con = sqlite3.connect(db)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    con.close()
    assert "applications" not in tables and "events" not in tables
    assert db.read_bytes() == before


def test_a_register_through_a_symbolic_link_watches_its_real_side_files(tmp_path):
    """SQLite keeps -wal and -shm beside the link's target; the watch looked beside the link,
    so their deletion went unnoticed and the server answered 201 into nothing (probe,
    2026-12-08)."""
    real = tmp_path / "data"
    real.mkdir()
    db = real / "reg.db"
    link = tmp_path / "reg.db"
    open_backend(db)
    link.symlink_to(db)
    b = open_backend(link)
    with b.transaction(write=True) as tx:
        tx.set_meta("a", "1")
    (real / "reg.db-wal").unlink()
    (real / "reg.db-shm").unlink()
    with (
        pytest.raises(RegisterUnavailable, match="deleted or replaced"),
        b.transaction(write=True) as tx,
    ):
        tx.set_meta("b", "2")
