"""``lvplan plan`` attacked like a careless user or an attacker would: each case here once broke
the contract (bad input: one stderr line, exit 2, no traceback, no output folder; odd but valid
input: a sensible plan).

Cases tried that already held (not repeated here; see test_plan.py / test_planning_inputs.py):
unicode, emoji, 64- and 500-character, formula-like and duplicate ids; BOM + CRLF; an empty file,
a header alone; one demand; 0.001, 200 and 201 kW (HV supply, unserved); a 10 kV bus by name and
by index; lon/lat on a bus, two demands at one point; years 1999, 2101, 2027.5; ``--out`` a file
or a path inside a file; ``--time-limit`` 0.001 and 1e9; ``--budget`` -1, nan, 0; ``--workers``
0 and 1000; ``--discount-rate`` 1, -0.1, nan; a catalogue that is a folder, missing or not TOML;
a demand file that is a folder, binary or not UTF-8; 2000 rows at one bus (about 5 s).
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from lvplan.cli import main

pytestmark = pytest.mark.filterwarnings("ignore")


def _csv(tmp_path, text: str):
    p = tmp_path / "demand.csv"
    p.write_text(text, encoding="utf-8", newline="")
    return p


def _bad(capsys, argv: list[str], out) -> str:
    """Runs ``lvplan plan``; asserts the bad-input contract; returns the one stderr line."""
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert not out.exists()
    return err


@pytest.mark.parametrize("budget", ["1e30", "1e17"])
def test_huge_budget_is_no_limit(tmp_path, capsys, budget):
    """A budget beyond any plan's cost once overflowed CP-SAT's 64-bit coefficients (a
    TypeError traceback, exit 1); it must simply not bind."""
    demand = _csv(tmp_path, "id,kw,bus\na,120,6\n")
    out = tmp_path / "out"
    argv = ["plan", "sz-futian", "--demand", str(demand), "--out", str(out), "--json"]
    rc = main([*argv, "--budget", budget])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "Traceback" not in cap.err
    s = json.loads(cap.out)
    assert s["method"] == "budget"
    assert s["demands_served"] == 1
    assert s["total_cost_cny"] > 0  # 120 kW at bus 6 needs measures: the budget did not bind


def test_endless_demand_stream_refused(tmp_path, capsys):
    """``--demand /dev/zero`` was read until memory ran out (MemoryError traceback); now its
    first line (the line-length limit's worth of NUL bytes) is binary content."""
    out = tmp_path / "out"
    err = _bad(capsys, ["plan", "sz-futian", "--demand", "/dev/zero", "--out", str(out)], out)
    assert err == "lvplan: error: /dev/zero: not a demand CSV file (binary content)\n"


def test_endless_catalogue_stream_refused(tmp_path, capsys):
    """``--catalogue /dev/zero`` likewise."""
    demand = _csv(tmp_path, "id,kw,bus\na,50,6\n")
    out = tmp_path / "out"
    argv = ["plan", "sz-futian", "--demand", str(demand), "--out", str(out)]
    err = _bad(capsys, [*argv, "--catalogue", "/dev/zero"], out)
    assert "/dev/zero" in err and "MB" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["plan", "sz-futian", "--demand", "DEMAND", "--workers", "100000"],
            "--workers must be <= 256",
        ),
        (["hosting", "sz-futian", "--workers", "99999"], "--workers must be <= 256"),
        (["synth", "city", "--transformers", "1000000000"], "--transformers must be <= 20000"),
        (["serve", "sz-futian", "--register", "REG", "--port", "70000"], "--port must be <= 65535"),
    ],
)
def test_counts_beyond_reason_are_refused(tmp_path, capsys, argv, message):
    """A typo of 100,000 workers forked until the machine fell over, a billion transformers
    ran out of memory, a port above 65535 failed deep in the server: each is one line, exit 2,
    and nothing written."""
    demand = _csv(tmp_path, "id,kw,bus\na,120,6\n")
    out = tmp_path / "out"
    subs = {"DEMAND": str(demand), "REG": str(tmp_path / "out" / "register.sqlite")}
    argv = [subs.get(a, a) for a in argv]
    if argv[0] != "serve":
        argv += ["--out", str(out)]
    err = _bad(capsys, argv, out)
    assert message in err


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("trafo_max_loading_percent=1e308", "trafo_max_loading_percent must be in [1, 1000]"),
        ("line_max_loading_percent=1e308", "line_max_loading_percent must be in [1, 1000]"),
        ("lv_min_voltage_v=0", "lv_min_voltage_v must be in [100, 1000]"),
        ("lv_min_voltage_v=-400", "lv_min_voltage_v must be in [100, 1000]"),
        ("mv_min_voltage_pu=-5", "mv_min_voltage_pu must be in [0.5, 1.5]"),
        ("detour_factor=0", "detour_factor must be in [1, 5]"),
        ("detour_factor=-1", "detour_factor must be in [1, 5]"),
        ("detour_factor=1e308", "detour_factor must be in [1, 5]"),
        ("profile=en50160", "criterion profile cannot be set: use --profile"),
        ("default_area_class=Z", "default_area_class must be one of A+, A, B, C, D, E, got 'Z'"),
        ("service_cable=foo", "service_cable must be an LV cable of the equipment catalogue"),
    ],
)
def test_senseless_criteria_are_refused(tmp_path, capsys, setting, message):
    """Each was accepted: 1e308 % overflowed the linear model's integer scaling, a minimum
    voltage of 0 divided by zero choosing a service cable (-400 V planned on), ``profile``
    raised a TypeError, a detour factor of 0 laid every cable at 0 m (-1: negative lengths), an
    unknown default area class was blamed on the demand file's line 2 (which had no area_class
    column). Now each is one line naming the criterion and its range, before the network loads."""
    demand = _csv(tmp_path, "id,kw,bus\na,50,6\n")
    out = tmp_path / "out"
    argv = ["plan", "sz-futian", "--demand", str(demand), "--out", str(out)]
    err = _bad(capsys, [*argv, "--set", setting], out)
    assert message in err


@pytest.mark.parametrize("option", ["--out", "--resume", "--catalogue", "--demand"])
def test_a_path_part_too_long_is_one_line(tmp_path, capsys, option):
    """A part of 256 bytes (over the file system's 255) was an OSError traceback (``File name
    too long``) from ``Path.exists()``/``is_dir()``: now one line naming the option."""
    demand = _csv(tmp_path, "id,kw,bus\na,50,6\n")
    out = tmp_path / "out"
    long = str(tmp_path / ("a" * 256))
    argv = {"--out": ["--out", long], "--resume": ["--resume", long]}.get(
        option, ["--out", str(out)]
    )
    argv = ["plan", "sz-futian", "--demand", str(demand), *argv]
    if option in ("--catalogue", "--demand"):
        argv += [option, long + ".toml"]
    err = _bad(capsys, argv, out)
    assert err.startswith(f"lvplan: error: {option} ") and "File name too long" in err, err


@pytest.mark.parametrize("option", ["--out", "--resume", "--catalogue"])
def test_a_path_in_a_folder_one_cannot_enter_is_one_line(tmp_path, capsys, monkeypatch, option):
    """``nox/x`` with ``nox`` mode 000 was a PermissionError traceback. (As root the file
    system lets every stat through, so the refusal is simulated at ``os.stat``; by hand, as a
    user: ``mkdir nox; chmod 000 nox; lvplan plan ... --out nox/x``.)"""
    import os

    demand = _csv(tmp_path, "id,kw,bus\na,50,6\n")
    nox = tmp_path / "nox"
    nox.mkdir()
    real = os.stat

    def stat(p, *a, **k):
        if str(p).startswith(str(nox) + "/"):
            raise PermissionError(13, "Permission denied", str(p))
        return real(p, *a, **k)

    monkeypatch.setattr(os, "stat", stat)
    out = tmp_path / "out"
    target = str(nox / ("x.toml" if option == "--catalogue" else "x"))
    argv = ["plan", "sz-futian", "--demand", str(demand), option, target]
    if option != "--out":
        argv += ["--out", str(out)]
    err = _bad(capsys, argv, out)
    assert err == f"lvplan: error: {option} {target}: Permission denied\n"


def test_summary_records_what_the_plan_was_made_from(tmp_path, capsys):
    """summary.json recorded neither the profile (with its --set values), nor the catalogue,
    nor --budget, --time-limit, --method, --discount-rate or the demand file: a plan could not
    be told from another made with other inputs. Now ``criteria`` (as ``lvplan hosting``
    writes it) and ``inputs``."""
    demand = _csv(tmp_path, "id,kw,bus\na,120,6\n")
    cat = tmp_path / "m.toml"
    cat.write_text(
        '[new_substation]\nrated_kva = 630\ntie_cable = "YJV22-8.7/15kV 3x300"\n'
        'cost_cny = 600000\nsource = "quote"\nstatus = "V"\n',
        encoding="utf-8",
    )
    out = tmp_path / "out"
    argv = ["plan", "sz-futian", "--demand", str(demand), "--out", str(out), "--method", "greedy"]
    argv += ["--set", "trafo_max_loading_percent=90", "--catalogue", str(cat), "--budget", "1e7"]
    assert main([*argv, "--time-limit", "30", "--discount-rate", "0.05"]) == 0
    capsys.readouterr()
    s = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert s["criteria"]["profile"] == "cn" and s["criteria"]["trafo_max_loading_percent"] == 90
    assert s["criteria"]["overridden"] == ["trafo_max_loading_percent"]
    i = s["inputs"]
    assert i["demand"]["source"] == str(demand) and i["demand"]["demands"] == 1
    assert len(i["demand"]["sha256"]) == 64
    assert i["catalogue"]["source"].endswith(f" + {cat}") and len(i["catalogue"]["sha256"]) == 64
    assert i["catalogue"]["entries"]["new_substation"]["cost_cny"] == 600000
    assert (i["method"], i["budget_cny"], i["time_limit_s"], i["discount_rate"]) == (
        "greedy",
        1e7,
        30.0,
        0.05,
    )


def test_a_full_disk_removes_the_folder_the_run_made(tmp_path, capsys, monkeypatch):
    """A full disk while writing the plan's files left a new ``--out`` folder holding parts/
    (the finished groups), though a folder the run made is removed. An existing folder keeps
    its groups for a ``--resume`` once there is room."""
    import lvplan
    import lvplan.planning.outputs as outputs

    real = outputs.write_text_atomic

    def full_disk(path, text):
        if path.name == "plan.html":
            raise OSError(28, "No space left on device", str(path))
        real(path, text)

    monkeypatch.setattr(outputs, "write_text_atomic", full_disk)
    demand = str(lvplan.__file__).rsplit("/src/", 1)[0] + "/studies/demand/sz-futian-30.csv"
    out = tmp_path / "new"
    argv = ["plan", "sz-futian", "--demand", demand, "--method", "greedy"]
    err = _bad(capsys, [*argv, "--out", str(out)], out)
    assert "No space left on device" in err
    kept = tmp_path / "kept"
    kept.mkdir()
    assert main([*argv, "--out", str(kept)]) == 2
    assert len([p for p in (kept / "parts").iterdir() if p.suffix == ".pkl"]) == 2


def test_hosting_with_a_scheduler_that_is_no_address_leaves_no_folder(tmp_path, capsys):
    """``lvplan hosting --scheduler nonsense:::`` was refused only when the chunks went out,
    leaving the new ``--out`` folder with its ``chunks/``; now before anything is made."""
    out = tmp_path / "out"
    err = _bad(
        capsys, ["hosting", "sz-futian", "--scheduler", "nonsense:::", "--out", str(out)], out
    )
    assert "no Dask scheduler at nonsense:::" in err


# -- found by a hostile probe, 2026-12-02 ------------------------------------------------------
def test_synth_demand_never_replaces_a_fifo_or_a_link(tmp_path, capsys):
    """``synth demand --out /dev/full`` (as root) replaced the system's device with a CSV file,
    exit 0; a FIFO and a symbolic link were replaced the same way. Now: one line, exit 2, the
    path as it was."""
    import os

    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    target = tmp_path / "target.csv"
    target.write_text("keep\n", encoding="utf-8")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    for out, what in ((fifo, "not a regular file"), (link, "symbolic link")):
        rc = main(["synth", "demand", "sz-futian", "--count", "3", "--out", str(out)])
        err = capsys.readouterr().err
        assert rc == 2 and what in err and len(err.strip().splitlines()) == 1, err
    assert fifo.is_fifo() and link.is_symlink() and target.read_text() == "keep\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo.csv", "link.csv", "target.csv"]


def test_a_folder_in_the_way_stops_the_run_before_any_file_is_replaced(tmp_path):
    """A folder named like an output file (``summary.json/``) stopped the renames half way: the
    folder then held the new plan.csv beside the old unserved.csv, two runs at once. Now the
    run is refused first, naming the file, and every old file stays."""
    from lvplan.errors import InputError
    from lvplan.io.atomic import staged_files

    out = tmp_path / "out"
    out.mkdir()
    (out / "a.csv").write_text("old\n", encoding="utf-8")
    (out / "b.json").mkdir()
    with (
        pytest.raises(InputError, match=r"b\.json there is a folder"),
        staged_files(out) as stage,
    ):
        (stage / "a.csv").write_text("new\n", encoding="utf-8")
        (stage / "b.json").write_text("{}\n", encoding="utf-8")
    assert (out / "a.csv").read_text() == "old\n"
    assert sorted(p.name for p in out.iterdir()) == ["a.csv", "b.json"]


def _refusing_b(real):
    """``os.replace`` that refuses the rename of a staged ``b.csv`` into the output folder."""

    def refuses_b(src, dst, *a, **k):
        if str(dst).endswith("b.csv") and ".lvplan-tmp.out" in str(src):
            raise PermissionError(1, "Operation not permitted")
        return real(src, dst, *a, **k)

    return refuses_b


@pytest.mark.parametrize("links", [True, False])
def test_a_file_that_cannot_be_replaced_leaves_the_folder_as_it_was(tmp_path, monkeypatch, links):
    """A file in ``--out`` that cannot be replaced (``chattr +i plan.csv``; another user's in a
    sticky folder) stopped the renames half way: exit 2, but ``assignment.csv`` was the new
    run's beside the old ``plan.csv`` and ``summary.json``, and the staged folder with its mark
    was left in ``--out`` (found by review). Now the files already replaced are put back, the
    new ones removed, the stage dropped: the folder as it was, and the line names the file.
    Also where hard links cannot be made (then the file that cannot be linked goes first)."""
    import lvplan.io.atomic as atomic
    from lvplan.errors import InputError

    out = tmp_path / "out"
    out.mkdir()
    for name in ("a.csv", "b.csv", "d.json"):
        (out / name).write_text(f"old {name}\n", encoding="utf-8")
    real = os.replace
    monkeypatch.setattr(atomic.os, "replace", _refusing_b(real))
    if not links:
        monkeypatch.setattr(atomic.os, "link", _no_link)
    with (
        pytest.raises(InputError, match=r"cannot write it: b\.csv: Operation not permitted; the"),
        atomic.staged_files(out) as stage,
    ):
        for name in ("a.csv", "b.csv", "c.csv", "d.json"):
            (stage / name).write_text(f"new {name}\n", encoding="utf-8")
    assert sorted(p.name for p in out.iterdir()) == ["a.csv", "b.csv", "d.json"]
    for name in ("a.csv", "b.csv", "d.json"):
        assert (out / name).read_text(encoding="utf-8") == f"old {name}\n"
    # and when nothing refuses, the run's files are in, with nothing left beside them
    monkeypatch.setattr(atomic.os, "replace", real)
    with atomic.staged_files(out) as stage:
        for name in ("a.csv", "b.csv"):
            (stage / name).write_text(f"new {name}\n", encoding="utf-8")
    assert sorted(p.name for p in out.iterdir()) == ["a.csv", "b.csv", "d.json"]
    assert (out / "b.csv").read_text(encoding="utf-8") == "new b.csv\n"


def test_a_failed_rename_with_nothing_aside_is_finished_forward_not_claimed_undone(
    tmp_path, monkeypatch
):
    """Where a replaced file could be neither linked nor copied aside, a later failed rename
    cannot be undone: the line must not say "left as it was" (a review found it did, with
    ``a.csv`` new), and the marked stage stays, so the next run that holds the folder finishes
    the renames forward and it holds one run's files."""
    import lvplan.io.atomic as atomic
    from lvplan.errors import InputError
    from lvplan.io.folder_lock import locked_folder

    out = tmp_path / "out"
    out.mkdir()
    for name in ("a.csv", "b.csv"):
        (out / name).write_text(f"old {name}\n", encoding="utf-8")
    real = os.replace
    monkeypatch.setattr(atomic.os, "replace", _refusing_b(real))
    monkeypatch.setattr(atomic.os, "link", _no_link)
    monkeypatch.setattr(atomic.shutil, "copy2", _no_link)
    with pytest.raises(InputError) as e, atomic.staged_files(out) as stage:
        for name in ("a.csv", "b.csv"):
            (stage / name).write_text(f"new {name}\n", encoding="utf-8")
    assert "left as it was" not in str(e.value)
    assert (out / "a.csv").read_text(encoding="utf-8") == "new a.csv\n"  # (no way back)
    monkeypatch.undo()
    with locked_folder(out):
        pass
    assert sorted(p.name for p in out.iterdir()) == ["a.csv", "b.csv"]
    assert (out / "b.csv").read_text(encoding="utf-8") == "new b.csv\n"


def _no_link(*a, **k):
    raise OSError(1, "Operation not permitted")


def test_a_parts_link_is_never_followed(tmp_path, capsys):
    """A ``parts`` symbolic link in ``--out`` was followed: lvplan wrote run.json and its
    groups into the link's target, outside the folder. Now: one line, exit 2, the target as it
    was."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "run.json").write_text("precious\n", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    (out / "parts").symlink_to(victim)
    demand = _synth(tmp_path, capsys)  # (two groups of MV islands: the store is used)
    for extra in ([], ["--resume", str(out)]):
        argv = ["plan", "sz-futian", "--demand", str(demand), "--out", str(out), *extra]
        rc = main([*argv, "--time-limit", "5"])
        err = capsys.readouterr().err
        assert rc == 2 and "parts/ is a symbolic link" in err, err
        assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in victim.iterdir()) == ["run.json"]
    assert (victim / "run.json").read_text() == "precious\n"


def test_out_as_the_file_systems_root_is_refused(tmp_path, capsys):
    """As root, ``--out /`` wrote every output file and parts/ into /."""
    demand = _csv(tmp_path, "id,kw,bus\na,20,6\n")
    for cmd in (["plan", "sz-futian", "--demand", str(demand)], ["hosting", "sz-futian"]):
        rc = main([*cmd, "--out", "/"])
        err = capsys.readouterr().err
        assert rc == 2 and "the file system's root" in err, err


def test_a_catalogue_with_fewer_service_cables_plans_with_them(tmp_path, capsys):
    """A valid ``--catalogue`` whose [service_cable] allows only 4x240 failed every group
    ("cable 'YJV22-0.6/1kV 4x95' not allowed"): the cable was chosen from the equipment
    catalogue and priced by the plan's. Now it is chosen among the allowed ones."""
    cat = tmp_path / "cat.toml"
    cat.write_text(
        '[service_cable]\ncables = ["YJV22-0.6/1kV 4x240"]\nfixed_cny = 0\n'
        'source = "test"\nstatus = "U"\n',
        encoding="utf-8",
    )
    demand = _synth(tmp_path, capsys)  # located by lon/lat: each has a service cable
    out = tmp_path / "out"
    argv = ["plan", "sz-futian", "--demand", str(demand), "--out", str(out), "--json"]
    rc = main([*argv, "--catalogue", str(cat), "--time-limit", "10"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    s = json.loads(cap.out)
    assert s["demands_served"] >= 10 and all(p["status"] != "failed" for p in s["solver"]["parts"])
    cables = {r.split(",")[6] for r in (out / "assignment.csv").read_text().splitlines()[1:]}
    assert cables == {"YJV22-0.6/1kV 4x240"}


def _synth(tmp_path, capsys):
    """20 synthetic demands on sz-futian (seed 1), located by lon/lat."""
    p = tmp_path / "synth.csv"
    assert (
        main(["synth", "demand", "sz-futian", "--count", "20", "--seed", "1", "--out", str(p)]) == 0
    )
    capsys.readouterr()
    return p


def test_a_bad_command_line_is_one_line(capsys):
    """argparse printed its usage block before the error (6-8 lines); a subcommand's line
    started ``lvplan plan: error:``, not the ``lvplan: error:`` of every other refusal."""
    for argv, start in (
        (["plan", "sz-futian", "--method", "foo"], "lvplan: error: plan: argument --method"),
        (["plan"], "lvplan: error: plan: the following arguments are required: NETWORK"),
        (["synth", "demand", "sz-futian", "--years"], "lvplan: error: synth demand: argument"),
        (["nonsense"], "lvplan: error: argument command: invalid choice: 'nonsense'"),
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and len(err.strip().splitlines()) == 1, err
        assert err.startswith(start) and err.rstrip().endswith("--help)"), err


def test_unknown_simbench_codes_and_deep_files_are_one_line(tmp_path, capsys):
    """``simbench:1-LV-xyz`` was an IndexError traceback inside SimBench (exit 1), and a
    catalogue nested 1000 deep a RecursionError of 3,000 lines."""
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 1000 + "]" * 1000 + "\n", encoding="utf-8")
    demand = _csv(tmp_path, "id,kw,bus\na,20,6\n")
    out = tmp_path / "out"
    cat = ["--catalogue", str(deep)]
    for argv, what in (
        (["check", "simbench:1-LV-xyz", "--bus", "1", "--kw", "10"], "unknown SimBench code"),
        (["check", "simbench:1-LV-rural1--9-sw", "--bus", "1", "--kw", "10"], "246 codes"),
        (
            ["plan", "sz-futian", "--demand", str(demand), "--out", str(out), *cat],
            "nested too deeply",
        ),
    ):
        assert what in _bad(capsys, argv, out)


@pytest.fixture(scope="module")
def district_plan_inputs(tmp_path_factory, urban, cn):
    """The urban district as a pandapower JSON file and 300 synthetic demands on it, for the
    three stops below: the command reads the file in 2 s where ``simbench-urban`` converts
    the district from SimBench again (seconds more in every run); the same tables, the same
    plan."""
    import pandapower as pp

    from lvplan.planning.synth_demand import synth_demand, write_synth_demand

    folder = tmp_path_factory.mktemp("district")
    network = folder / "simbench-urban.json"
    pp.to_json(urban.pp, str(network))
    demand = folder / "d.csv"
    write_synth_demand(synth_demand(urban, count=300, seed=1, criteria=cn), demand)
    return network, demand


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM", "SIGTERM in the background"])
def test_ctrl_c_in_the_optimisers_search_stops_the_plan(tmp_path, district_plan_inputs, stop):
    """CP-SAT caught SIGINT itself: the search ended as at its time limit, and the plan went on
    through its rounds, wrote every output and exited 0 (three Ctrl-C, 2 s apart, in a 40 s
    plan). Now one Ctrl-C in the optimal round's search (the district: one group, CP-SAT in
    the command's own process) ends the run in a second or two: exit 130, no output folder.
    SIGTERM (``timeout``, a service manager) ended it at once with no message, its lock file
    and a half-staged output folder left: now as Ctrl-C, exit 143, one line; also in a run
    started in the background (``&``), which ignores SIGINT. (On the district the main thread
    comes back to Python often enough that this case passed before ``watch`` woke on SIGTERM
    too; a city's long CP-SAT searches are where that matters.)"""
    import signal
    import subprocess
    import sys
    import time

    import psutil

    network, demand = district_plan_inputs
    out = tmp_path / "out"
    cmd = ["plan", str(network), "--demand", str(demand), "--out", str(out)]
    p = subprocess.Popen(
        [sys.executable, "-m", "lvplan.cli", *cmd, "--time-limit", "60", "--progress"],
        stderr=subprocess.PIPE,
        text=True,
        # (a run started in the background, `make test &`, ignores SIGINT and so would the
        # plan: the command as a user runs it in a terminal has it)
        preexec_fn=lambda: signal.signal(
            signal.SIGINT, signal.SIG_IGN if "background" in stop else signal.SIG_DFL
        ),
    )
    assert p.stderr is not None
    seen = []
    for line in p.stderr:  # the greedy plan passed: the optimal round's search begins
        seen.append(line)
        if "greedy" in line and " 0 limits broken" in line:
            break
    # the optimal round builds its model, then its search starts the HiGHS threads that bound
    # the plan beside CP-SAT: wait for those threads (at most the 6 s this waited before),
    # then 1 s more, so the signal comes while the search runs
    me = psutil.Process(p.pid)
    threads = me.num_threads()
    deadline = time.monotonic() + 6.0
    while me.num_threads() <= threads and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    sent = time.perf_counter()
    sig = signal.Signals[stop.split()[0]]
    p.send_signal(sig)
    rc = p.wait(timeout=60)
    took = time.perf_counter() - sent
    rest = p.stderr.read()
    assert rc == 128 + sig and took < 10.0, (rc, took, seen[-3:])
    assert not out.exists()  # (no lock file, no staged folder: the run made the folder)
    assert "Traceback" not in rest
    if sig != signal.SIGINT:
        assert rest.strip().splitlines()[-1] == f"lvplan: stopped by {sig.name}"


_ENTRY = """
import atexit, os, signal, sys, threading
from lvplan import cli
from lvplan.planning import interrupt
atexit.register(lambda: print(" and Python's exit", end=""))
t = threading.Thread(target=threading.Event().wait, daemon=True)
if sys.argv[1] == "native":
    interrupt.native(t)
t.start()
def main():
    print("the last line", end="")  # (in the buffer: stdout is a pipe)
    if sys.argv[2] == "bug":
        raise RuntimeError("a bug")
    if sys.argv[2] == "ctrl-c":  # a second Ctrl-C as main() returns 130 for the first
        os.kill(os.getpid(), signal.SIGINT)
    return 130
cli.main = main
cli.entry()
"""


@pytest.mark.parametrize("end", ["130", "bug", "ctrl-c"])
@pytest.mark.parametrize("thread", ["native", "python"])
def test_the_command_ends_without_pythons_exit_while_a_solver_thread_runs(tmp_path, thread, end):
    """Ctrl-C while HiGHS bounded the plan (its threads cannot be stopped) ended the command
    with SIGABRT ("terminate called without an active exception", exit -6, in a CI run): Python's
    exit ran the C++ static destructors under the running solver. While a thread registered as
    native is alive the command ends with ``os._exit`` (no atexit handlers), its code kept and
    what it printed flushed; otherwise through Python's exit as before. A bug's exception ends
    it the same way, with its traceback and exit code 1; a second Ctrl-C exits 130 (it was a
    KeyboardInterrupt traceback, SIGINT's exit, after a 29 s wait for the bound)."""
    import subprocess
    import sys

    script = tmp_path / "entry.py"
    script.write_text(_ENTRY, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script), thread, end], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == (1 if end == "bug" else 130), done.stderr[-800:]
    assert ("RuntimeError: a bug" in done.stderr) == (end == "bug")
    if thread == "native":
        assert done.stdout == "the last line"
    else:
        assert done.stdout == "the last line and Python's exit"


_JOIN = """
import sys, threading, time
from lvplan.planning import interrupt
interrupt.NATIVE_JOIN_S = float(sys.argv[1])
def solver():
    time.sleep(1.0)
    print("the solver's end", flush=True)
interrupt.native(threading.Thread(target=solver, daemon=True)).start()
print("the script's end", flush=True)
"""


@pytest.mark.parametrize("join_s", [30.0, 0.2])
def test_pythons_exit_waits_for_a_solver_thread(tmp_path, join_s):
    """A script (or a test run, or a pool worker) that planned ends through Python's exit,
    which aborted under a HiGHS thread still running: it now waits for such threads (each ends
    at its own time limit), and one still running after ``NATIVE_JOIN_S`` ends the process with
    ``os._exit(1)`` and a line on stderr."""
    import subprocess
    import sys

    script = tmp_path / "join.py"
    script.write_text(_JOIN, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script), str(join_s)], capture_output=True, text=True, timeout=60
    )
    if join_s > 1.0:  # the daemon thread ran to its end before the process ended
        assert (done.returncode, done.stdout) == (0, "the script's end\nthe solver's end\n")
        assert done.stderr == ""
    else:
        assert (done.returncode, done.stdout) == (1, "the script's end\n")
        assert "a solver thread still ran at exit" in done.stderr


def test_a_pool_worker_does_not_wait_for_a_solver_thread_at_its_exit():
    """A city group whose plan CP-SAT proved leaves its HiGHS bound running to that group's
    deadline; waiting for it at the worker's exit would hold the driver's pool shutdown that
    long (120 s here): a pool's worker ends at once."""
    import time

    import native_job
    import psutil

    from lvplan.workers import process_pool

    t0 = time.perf_counter()
    with process_pool(1) as pool:
        pid = pool.submit(native_job.leave_a_solver_thread).result(timeout=60)
        assert psutil.pid_exists(pid)
    took = time.perf_counter() - t0
    assert took < 30.0, took
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.parametrize("kw", ["1_000", "２５", "0x10", "1e", "12 5"])
def test_a_kw_python_reads_but_a_csv_does_not_write_is_refused(tmp_path, capsys, kw):
    """``float()`` read "1_000" as 1000 and full-width "２５" as 25: a typo or another script's
    digits became a customer."""
    demand = _csv(tmp_path, f"id,kw,bus\na,{kw},6\n")
    out = tmp_path / "out"
    err = _bad(capsys, ["plan", "sz-futian", "--demand", str(demand), "--out", str(out)], out)
    assert "kw: must be a number" in err


def test_numbers_as_csvs_write_them_are_read(tmp_path, capsys):
    demand = _csv(tmp_path, "id,kw,bus\na, 12.5 ,6\nb,+2E1,6\nc,.5e2,7\nd,30.,7\n")
    out = tmp_path / "out"
    argv = ["plan", "sz-futian", "--demand", str(demand), "--out", str(out), "--json"]
    assert main([*argv, "--method", "greedy", "--time-limit", "5"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["demands"] == 4


def test_one_id_in_two_unicode_forms_and_a_rating_listed_twice_are_refused(tmp_path, capsys):
    """ "é" and "e" + U+0301 look the same in every table and on the map, and were two demands;
    a parallel unit's ``ratings_kva = [630, 630, 630]`` was taken without a word."""
    demand = _csv(tmp_path, "id,kw,bus\nCaf\u00e9,20,6\nCafe\u0301,30,7\n")
    out = tmp_path / "out"
    argv = ["plan", "sz-futian", "--demand", str(demand), "--out", str(out)]
    assert ":3: id: must be in Unicode normal form NFC" in _bad(capsys, argv, out)
    cat = tmp_path / "cat.toml"
    cat.write_text("[transformer_parallel]\nratings_kva = [630, 630, 800]\n", encoding="utf-8")
    ok = _csv(tmp_path, "id,kw,bus\na,20,6\n")
    argv = ["plan", "sz-futian", "--demand", str(ok), "--out", str(out), "--catalogue", str(cat)]
    assert "lists 630 kVA more than once" in _bad(capsys, argv, out)


def test_a_demand_id_that_names_a_load_of_the_network_is_refused(tmp_path, capsys):
    """reinforced.json adds each demand as a load named by its id; an id equal to a load the
    network has ("T1 lane customers" on sz-futian) made two loads of one name there. Refused,
    with the line it is on."""
    demand = _csv(tmp_path, "id,kw,bus\na,20,6\nT1 lane customers,30,7\n")
    out = tmp_path / "out"
    argv = ["plan", "sz-futian", "--demand", str(demand), "--out", str(out)]
    err = _bad(capsys, argv, out)
    assert ":3: id: 'T1 lane customers' is the name of a load the network has" in err


def test_a_budget_of_no_limit_is_shown_short(tmp_path, capsys):
    """--budget 1e308 was echoed as 309 digits on the plan's line; above 1e15 CNY it is shown
    in short (1e+308), a budget of millions still in full."""
    demand = _csv(tmp_path, "id,kw,bus\na,20,6\n")
    for budget, shown in (
        ("1e308", "of a budget of 1e+308 CNY"),
        ("2.5e6", "2,500,000 CNY"),
        ("-0", "(of a budget of 0 CNY)"),  # (it was "-0 CNY")
    ):
        out = tmp_path / f"out{budget}"
        argv = ["plan", "sz-futian", "--demand", str(demand), "--out", str(out)]
        assert main([*argv, "--budget", budget, "--time-limit", "5"]) == 0
        line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith("plan ("))
        assert shown in line and len(line) < 300


def test_a_ctrl_c_python_loses_is_raised_again_at_the_next_check():
    """Python raises KeyboardInterrupt once, in whatever the main thread runs; inside a
    finaliser or a library's bare ``except:`` it is lost (in one CI run the plan went on for
    43 s and exited 0). While ``watch`` runs, a SIGINT is also remembered: the plan's next
    round or search (``interrupt.check``) raises it again; after ``watch``, it is forgotten."""
    import signal

    from lvplan.planning import interrupt

    # (as in a terminal: a run started in the background ignores SIGINT, and watch() too)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _lost_ctrl_c(interrupt)
    finally:
        signal.signal(signal.SIGINT, before)


def _lost_ctrl_c(interrupt) -> None:
    import os
    import signal
    import time

    with interrupt.watch():
        interrupt.check()  # nothing yet
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1.0)
        except KeyboardInterrupt:
            pass  # (lost, as in a finaliser)
        deadline = time.monotonic() + 5.0
        while not interrupt._interrupted.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()
    interrupt.check()  # forgotten once the plan is over


@pytest.mark.parametrize(
    ("via_link", "name"), [(False, "plan.csv"), (True, "plan.csv"), (False, "parts/run.json")]
)
def test_an_input_file_among_the_outputs_is_refused_and_kept(tmp_path, capsys, via_link, name):
    """A demand file named ``plan.csv`` in the folder its plan was written to was replaced by
    the plan (exit 0, the demands lost; a catalogue named ``summary.json`` likewise; one named
    ``parts/run.json`` by the groups' store). Now: one line, exit 2, before the plan runs, the
    file as it was, by any path to it."""
    out = tmp_path / "out"
    (out / "parts").mkdir(parents=True)
    demand = out / name
    text = "id,kw,category,bus\nd1,20,shop,26\n"
    demand.write_text(text, encoding="utf-8")
    given = demand
    if via_link:
        given = tmp_path / "link.csv"
        given.symlink_to(demand)
    rc = main(["plan", "sz-futian", "--demand", str(given), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"--demand {given}: is the {name} this run writes in --out {out}" in err
    assert demand.read_text(encoding="utf-8") == text
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [name]


def test_a_folder_where_an_output_goes_is_refused_before_the_plan_runs(
    tmp_path, capsys, monkeypatch
):
    """``plan.csv/`` in ``--out`` was refused only at the end, after the whole time limit
    (a city: the quarter of an hour). Now before the plan: one line, exit 2, nothing touched."""
    import lvplan.planning.plan as plan_mod

    def ran(*_a, **_k):
        raise AssertionError("the plan ran")

    monkeypatch.setattr(plan_mod, "plan", ran)
    out = tmp_path / "out"
    (out / "plan.csv").mkdir(parents=True)
    demand = _csv(tmp_path, "id,kw,category,bus\nd1,20,shop,26\n")
    rc = main(["plan", "sz-futian", "--demand", str(demand), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "plan.csv there is a folder, where this run writes a file" in err
    assert sorted(p.name for p in out.iterdir()) == ["plan.csv"]


def test_the_watch_leaves_a_callers_own_sigint_handler_alone():
    """With SIGTERM under lvplan's handler, ``watch`` wakes on it, but not on a SIGINT that
    a caller of ``main()`` handles itself (it stopped the caller's searches and raised
    KeyboardInterrupt at the next round)."""
    import os
    import signal
    import time

    from lvplan.planning import interrupt

    got: list[int] = []
    before = signal.signal(signal.SIGINT, lambda s, _f: got.append(s))
    was = interrupt.stop_on_signals()
    try:
        assert signal.getsignal(signal.SIGTERM) is interrupt._as_ctrl_c, was
        with interrupt.watch():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.3)
            assert got == [signal.SIGINT]
            assert not interrupt._interrupted.is_set()
    finally:
        interrupt.restore(was)
        signal.signal(signal.SIGINT, before)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_network_whose_base_case_diverges_leaves_no_folder(tmp_path, capsys):
    """A plan on a network whose base load flow does not converge (a load of 1,000 GW): one
    line naming the network, exit 2 (a bad network; it was exit 1, as for lvplan's own
    failure), and no folder left of a new ``--out a/b/c`` (it left ``a/b/c/parts/``, then
    ``a/b``). ``hosting`` says the same; ``check`` answers not_assessable with that reason."""
    import pandas as pd

    from lvplan.io.load import networks_dir

    net = tmp_path / "net"
    shutil.copytree(networks_dir() / "sz-futian", net)
    loads = pd.read_csv(net / "load.csv", index_col=0)
    loads.loc[loads.index[0], "p_mw"] = 1e6
    loads.to_csv(net / "load.csv")
    demand = _csv(tmp_path, "id,kw,bus\na,20,6\n")
    out = tmp_path / "a" / "b" / "c"
    rc = main(["plan", str(net), "--demand", str(demand), "--out", str(out)])
    err = capsys.readouterr().err
    said = (
        f"lvplan: error: network sz-futian ({net}): its base case (its own loads, no new demand) "
        "has no AC solution (AC load flow did not converge): nothing on it can be assessed; "
        "check its loads, lines and slack\n"
    )
    assert rc == 2 and err == said
    assert not (tmp_path / "a").exists()
    assert main(["hosting", str(net), "--out", str(out)]) == 2
    assert capsys.readouterr().err == said and not (tmp_path / "a").exists()
    assert main(["check", str(net), "--bus", "6", "--kw", "20", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["decision"] == "not_assessable"
    assert "its base case (its own loads, no new demand) has no AC solution" in got["reason"]


def test_a_plan_past_its_time_limit_says_by_how_much(tmp_path, capsys):
    """The greedy plan's AC rounds go on past the limit while they settle, so a plan can run
    past ``--time-limit`` (300,000 demands with 5 s took 31 s); summary.json said ``"stopped":
    null`` and nothing else. ``over_time_limit_s`` says by how much (0 within the limit)."""
    demand = _synth(tmp_path, capsys)
    out = tmp_path / "out"
    argv = ["plan", "sz-futian", "--demand", str(demand), "--out", str(out), "--json"]
    assert main([*argv, "--time-limit", "0.01"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["runtime_s"] > 0.05  # (a greedy plan and its AC check, at least)
    assert s["over_time_limit_s"] == pytest.approx(s["runtime_s"] - 0.01, abs=0.011)
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["over_time_limit_s"] > 0
    assert main([*argv, "--time-limit", "600", "--method", "greedy"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["over_time_limit_s"] == 0.0 and s["runtime_s"] < 600


def test_an_unserved_reason_names_a_transfers_new_cable_not_its_model_key(tmp_path, capsys):
    """At pf 0.05 most demands fit nowhere; a reason named a transfer's new cable by its key
    in the model, ``line 5629499534213131`` (no line of the network)."""
    import re

    demand = _synth(tmp_path, capsys)
    out = tmp_path / "out"
    argv = ["plan", "sz-futian", "--demand", str(demand), "--out", str(out), "--method", "greedy"]
    assert main([*argv, "--set", "new_customer_pf=0.05", "--time-limit", "20"]) == 0
    text = (out / "unserved.csv").read_text(encoding="utf-8")
    assert "the new cable of the transfer opening line 11 would be overloaded" in text
    assert not re.search(r"\d{10,}", text), text


def test_a_failed_run_through_dotdot_keeps_the_users_folder_and_its_groups(
    tmp_path, capsys, monkeypatch
):
    """``--out new/../mine``: the run works in the user's ``mine``; a run that failed took it
    for a folder of its own (``new/..`` did not exist yet) and removed it, with the groups an
    interrupted run had kept there for ``--resume`` (found by review)."""
    import pandas as pd

    from lvplan.io.load import networks_dir

    net = tmp_path / "net"
    shutil.copytree(networks_dir() / "sz-futian", net)
    loads = pd.read_csv(net / "load.csv", index_col=0)
    loads.loc[loads.index[0], "p_mw"] = 1e6  # (the base case does not converge)
    loads.to_csv(net / "load.csv")
    demand = _csv(tmp_path, "id,kw,bus\na,20,6\n")
    mine = tmp_path / "mine"
    (mine / "parts").mkdir(parents=True)
    group = mine / "parts" / ("a" * 64 + ".pkl")
    group.write_bytes(b"kept")
    (mine / "parts" / "run.json").write_text("{}", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    rc = main(["plan", str(net), "--demand", str(demand), "--out", "new/../mine"])
    assert rc == 2 and "did not converge" in capsys.readouterr().err
    assert group.read_bytes() == b"kept" and (mine / "parts" / "run.json").is_file()
    # an empty folder of the user's above a new one: kept too
    (tmp_path / "empty").mkdir()
    rc = main(["plan", str(net), "--demand", str(demand), "--out", "new/../empty/c"])
    assert rc == 2 and (tmp_path / "empty").is_dir()
    assert not (tmp_path / "empty" / "c").exists()
    # (and no ``new/`` was made on the way: the path is taken at its ``..`` first)
    assert not (tmp_path / "new").exists()


def test_an_output_through_dotdot_makes_no_folder_on_the_way(tmp_path, monkeypatch, capsys):
    """``--out new/../out``: the outputs land in ``out`` and no empty ``new/`` is left (the
    folders were made with their parents along the path as typed). A link before the ``..``
    is followed as the kernel follows it: ``link/..`` is the folder above the link's target."""
    from lvplan.io.atomic import without_dotdot

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "a" / "b")
    assert without_dotdot("link/../x") == tmp_path / "a" / "x"
    assert without_dotdot("new/../x") == tmp_path / "x"
    assert str(without_dotdot("plain/x")) == "plain/x"  # no ``..``: as given
    assert without_dotdot("a/..") == tmp_path
    # only up to the last ``..``: a dangling link after it is not followed to make its target
    (tmp_path / "dang").symlink_to(tmp_path / "far" / "away")
    assert without_dotdot("x/../dang/d.csv") == tmp_path / "dang" / "d.csv"
    args = ["synth", "demand", "sz-futian", "--count", "3", "--out", "x/../dang/d.csv"]
    assert main(args) == 2 and not (tmp_path / "far").exists()
    # ... nor one before it (the kernel refuses ``dang/..``: it is left to)
    assert str(without_dotdot("dang/../d.csv")) == "dang/../d.csv"
    args = ["synth", "demand", "sz-futian", "--count", "3", "--out", "dang/../d.csv"]
    assert main(args) == 2 and not (tmp_path / "far").exists()
    args = ["hosting", "sz-futian", "--no-maps", "--out", "新/../图/输出"]
    assert main(args) == 0
    assert (tmp_path / "图" / "输出" / "hosting.csv").is_file() and not (tmp_path / "新").exists()
    args = ["synth", "demand", "sz-futian", "--count", "3", "--seed", "1", "--out", "n/../d.csv"]
    assert main(args) == 0
    assert (tmp_path / "d.csv").is_file() and not (tmp_path / "n").exists()
    args = ["synth", "city", "--transformers", "2", "--seed", "1", "--out", "k/../city"]
    assert main(args) == 0
    assert (tmp_path / "city" / "bus.csv").is_file() and not (tmp_path / "k").exists()
    capsys.readouterr()


def test_a_line_break_in_an_unknown_argument_stays_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["check", "sz-futian", "--bus", "6", "--kw", "10", "--bogus\nx"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith("lvplan: error: check: unrecognized arguments: --bogus\\nx"), err
    assert err.rstrip().endswith("(see lvplan check --help)"), err


def test_an_unknown_argument_names_the_command_it_was_given_to(capsys):
    """``lvplan synth demand … --bogus``: the message names ``synth demand`` and its help, not
    the top level's (the user was reading that command's options)."""
    with pytest.raises(SystemExit) as exc:
        main(["synth", "demand", "sz-futian", "--count", "3", "--out", "d.csv", "--bogus"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1, err
    assert err == (
        "lvplan: error: synth demand: unrecognized arguments: --bogus "
        "(see lvplan synth demand --help)\n"
    ), err


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--bogus", "hosting", "sz-futian"], "lvplan"),
        (["synth", "--bogus", "demand", "sz-futian", "--count", "3", "--out", "d.csv"], "synth"),
        (["hosting", "sz-futian", "--bogus"], "hosting"),
        # the command's name again, as a value after it: still the command's own argument
        (["hosting", "hosting", "--bogus"], "hosting"),
    ],
)
def test_an_unknown_argument_before_a_command_names_the_level_it_was_given_at(capsys, argv, named):
    """``lvplan --bogus hosting``: ``--bogus`` was given to ``lvplan``, so the message sends the
    user to ``lvplan --help``, not to ``hosting``'s (it named ``hosting`` before)."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1, err
    where = "" if named == "lvplan" else f"{named}: "
    help_of = "lvplan" if named == "lvplan" else f"lvplan {named}"
    assert err == (
        f"lvplan: error: {where}unrecognized arguments: --bogus (see {help_of} --help)\n"
    ), err


def test_a_unit_that_has_a_partner_in_its_room_is_offered_no_third(tmp_path, cn):
    """The catalogue's parallel transformer is a second unit in the same room. On a network
    that already has two units on one LV board (a plan's reinforced.json planned again), the
    plan offered a third, and plan.csv called it "800 kVA -> 800 + 1000 kVA" beside the 630
    kVA unit already there (probe, 2026-12-07). Swaps are still offered; the lone units keep
    their parallel offers."""
    import copy

    import pandapower as pp

    import lvplan
    from lvplan.model.network import Network
    from lvplan.planning.candidates import build_instance
    from lvplan.planning.demand import read_demand
    from lvplan.planning.measures import MeasureKind, load_measures

    net = copy.deepcopy(lvplan.load_network("sz-futian").pp)
    t3 = int(net.trafo.index[net.trafo.name.str.startswith("T3")][0])
    t2 = int(net.trafo.index[net.trafo.name.str.startswith("T2")][0])
    hv, lv = int(net.trafo.at[t3, "hv_bus"]), int(net.trafo.at[t3, "lv_bus"])
    pp.create_transformer(net, hv, lv, "0.63 MVA 10/0.4 kV", name="T3 second unit")
    network = Network(net, name="paired", source="test")
    d = tmp_path / "d.csv"
    t2_board = int(net.trafo.at[t2, "lv_bus"])
    d.write_text(f"id,kw,category,bus\nA,150,shop,{lv}\nB,150,shop,{t2_board}\n", encoding="utf-8")
    ds = read_demand(d, network, cn)
    inst = build_instance(network, ds.demands, cn, load_measures())
    kinds = {(u.element, u.kind) for u in inst.upgrades}
    assert (t3, MeasureKind.TRANSFORMER_SWAP) in kinds
    assert (t3, MeasureKind.TRANSFORMER_PARALLEL) not in kinds
    assert (t2, MeasureKind.TRANSFORMER_PARALLEL) in kinds  # (a lone unit: as before)


def test_a_demand_without_a_year_among_dated_ones_is_there_from_the_first_year(tmp_path, cn):
    """Undated D0003 needs line 34's parallel cable with dated demands of 2028: the cable was
    dated 2028 (by the dated demands alone) and D0003's service cable summed under a year
    "none" that summary.json does not document (probe, 2026-12-07). An undated demand in a
    file with years is there from the start: both in 2027, the file's first year."""
    import json

    rows = [
        ("D0001", 190, "shop", 114.0455729, 22.5461674, 2028),
        ("D0002", 180, "restaurant", 114.0467523, 22.5465307, 2028),
        ("D0003", 90, "restaurant", 114.0460808, 22.5460795, ""),
        ("D0004", 50, "restaurant", 114.0464928, 22.5468045, 2028),
        ("D0005", 25, "generic", 114.0461655, 22.5467062, 2028),
        ("D0006", 20, "shop", 114.0462274, 22.5454206, 2029),
        ("D0007", 185, "office", 114.0460462, 22.5468444, 2029),
        ("D0008", 45, "office", 114.0456415, 22.5460364, 2027),
    ]
    d = tmp_path / "d.csv"
    d.write_text(
        "id,kw,category,lon,lat,year\n" + "".join(",".join(map(str, r)) + "\n" for r in rows),
        encoding="utf-8",
    )
    out = tmp_path / "p"
    assert main(["plan", "sz-futian", "--demand", str(d), "--out", str(out)]) == 0
    s = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert "none" not in s["cost_by_year_cny"] and min(s["cost_by_year_cny"]) == "2027"
    assert sum(s["cost_by_year_cny"].values()) == pytest.approx(s["total_cost_cny"], abs=0.01)
    plan_rows = (out / "plan.csv").read_text(encoding="utf-8").splitlines()[1:]
    needed = [r for r in plan_rows if "D0003" in r.split(",")[6].split(";")]
    assert needed and all(r.split(",")[5] == "2027" for r in needed)


def test_a_service_cable_of_no_route_is_said_as_laid_one_metre(tmp_path, cn):
    """A demand given by lon/lat exactly at an LV bus (15, T3's board): its service cable is
    laid and priced at 1 m, and assignment.csv said 0.0 m (probe, 2026-12-07)."""
    import pandapower as pp

    import lvplan

    net = lvplan.load_network("sz-futian")
    lon, lat = net.bus_lonlat
    row = net.bus_row(15)
    d = tmp_path / "d.csv"
    d.write_text(
        f"id,kw,category,lon,lat\nA,20,shop,{lon[row]:.9f},{lat[row]:.9f}\n", encoding="utf-8"
    )
    out = tmp_path / "p"
    assert main(["plan", "sz-futian", "--demand", str(d), "--out", str(out)]) == 0
    rows = (out / "assignment.csv").read_text(encoding="utf-8").splitlines()
    head, a = rows[0].split(","), rows[1].split(",")
    assert a[head.index("connection")] == "bus 15" and a[head.index("cable")]
    assert float(a[head.index("length_m")]) == 1.0
    reinforced = pp.from_json(str(out / "reinforced.json"))
    cable = reinforced.line[reinforced.line.name.astype(str).str.startswith("A ")]
    assert list(cable.length_km) == [0.001]


def test_a_plan_whose_optimal_rounds_found_nothing_says_the_greedy_plan_stands(tmp_path, capsys):
    """With --time-limit 0.01 no optimal round runs: the CLI printed "plan (optimal)" over the
    verified greedy plan (probe, 2026-12-07); summary.json's optimal_cost_cny is null."""
    out = tmp_path / "p"
    argv = ["plan", "sz-futian", "--demand", "studies/demand/sz-futian-30.csv", "--out", str(out)]
    assert main([*argv, "--time-limit", "0.01"]) == 0
    said = capsys.readouterr().out
    assert said.startswith("plan (optimal: none verified in time, the verified greedy plan): ")
    s = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert s["optimal_cost_cny"] is None and s["plan_from"] == "greedy"
    assert s["total_cost_cny"] == pytest.approx(s["greedy_cost_cny"], abs=0.05)


def test_a_greedy_plan_kept_after_the_optimal_rounds_is_said_to_be_the_greedy_plan(
    tmp_path, capsys, monkeypatch
):
    """When the optimal plan is no cheaper than the verified greedy one after the AC cuts, the
    greedy plan stands: the CLI printed "plan (optimal)" over it and summary.json had no field
    saying which plan stood (noticed at stop 57). Here the optimal plan (6,069,560 CNY on the
    30 demands) is made to lose the comparison."""
    from lvplan.planning import optimal_rounds

    out = tmp_path / "p"
    argv = ["plan", "sz-futian", "--demand", "studies/demand/sz-futian-30.csv", "--out", str(out)]
    assert main(argv) == 0
    s = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert s["plan_from"] == "optimal" and capsys.readouterr().out.startswith("plan (optimal): ")
    assert s["total_cost_cny"] < s["greedy_cost_cny"] - 1e6
    monkeypatch.setattr(optimal_rounds, "_better", lambda inst, a, b: False)
    assert main([*argv[:-1], str(tmp_path / "q")]) == 0
    said = capsys.readouterr().out
    assert said.startswith(
        "plan (optimal: the verified greedy plan, the optimal one no cheaper after the AC cuts): "
    )
    s = json.loads((tmp_path / "q" / "summary.json").read_text(encoding="utf-8"))
    assert s["plan_from"] == "greedy" and s["optimal_cost_cny"] is not None
    assert s["total_cost_cny"] == pytest.approx(s["greedy_cost_cny"], abs=0.05)
