"""Robustness: a file hashed in bounded memory, hostile names in the study report, the reason
a demand is left unserved, careless ``lvplan plan`` arguments."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pandapower as pp
import pandas as pd
import pytest
from ports import free_port

import lvplan
from lvplan.cli import main
from lvplan.io.load import networks_dir
from lvplan.io.netfolder import read_folder
from lvplan.study.run import sha256_file


# -- hashing an input file ------------------------------------------------------------------------
def test_sha256_of_a_file_reads_it_in_chunks(tmp_path):
    """The study's input fingerprints: a 64 MB file is hashed with a few hundred kB of buffer
    (before: ``path.read_bytes()``, the whole file in memory at once)."""
    size = 64 * 2**20
    f = tmp_path / "big.bin"
    with f.open("wb") as fh:  # sparse: no disk used
        fh.truncate(size)
    tracemalloc.start()
    try:
        digest = sha256_file(f)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest == hashlib.sha256(bytes(size)).hexdigest()
    assert peak < 2 * 2**20, f"peak {peak / 2**20:.1f} MB for a 64 MB file"


# -- the plan's files: one staging home, a full disk, a kill -------------------------------------
ROOT = Path(__file__).resolve().parents[1]
DEMAND = ROOT / "studies" / "demand" / "sz-futian-30.csv"
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1")


def _lvplan(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lvplan.cli", *args],
        env=ENV, capture_output=True, text=True, timeout=300, **kw,
    )  # fmt: skip


def _small_files(limit: int):
    def limit_writes() -> None:  # a write past `limit` bytes fails with EFBIG, as a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_writes


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_plan_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path):
    """Files may grow to 20 kB only. Before: an OSError traceback (exit 1) from writing the
    first finished group to ``parts/``, and the new folder left behind with an empty parts/."""
    out = tmp_path / "work" / "p"
    out.parent.mkdir()
    res = _lvplan(
        "plan", "sz-futian", "--demand", str(DEMAND), "--out", str(out), "--time-limit", "3",
        preexec_fn=_small_files(20_000),
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip() == f"lvplan: error: --out {out}: cannot write it: File too large"
    assert _tree(out.parent) == []  # no file, no temporary, no folder


@pytest.mark.parametrize("command", ["plan", "hosting"])
def test_a_disk_too_full_for_the_lock_is_one_line_exit_2(tmp_path, command):
    """No byte may be written: the lock's pid was the first write, and its OSError fell to
    the catch-all (exit 1, "cannot write the output"; probe, 2026-12-07)."""
    out = tmp_path / "o"
    extra = ["--demand", str(DEMAND), "--time-limit", "3"] if command == "plan" else []
    res = _lvplan(command, "sz-futian", *extra, "--out", str(out), preexec_fn=_small_files(0))
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip() == f"lvplan: error: --out {out}: cannot write it: File too large"


def test_a_named_pipe_as_a_plans_run_record_does_not_hang(tmp_path):
    """``parts/run.json`` a FIFO: ``--resume`` waited for a writer for ever; a link to
    /dev/zero read without end (probe, 2026-12-07). Both are read as no record of this plan."""
    out = tmp_path / "o"
    (out / "parts").mkdir(parents=True)
    os.mkfifo(out / "parts" / "run.json")
    res = _lvplan("plan", "sz-futian", "--demand", str(DEMAND), "--resume", str(out))
    assert res.returncode == 2, res.stderr
    assert "no interrupted plan of sz-futian" in res.stderr
    (out / "parts" / "run.json").unlink()
    (out / "parts" / "run.json").symlink_to("/dev/zero")
    res = _lvplan("plan", "sz-futian", "--demand", str(DEMAND), "--resume", str(out))
    assert res.returncode == 2 and "no interrupted plan of sz-futian" in res.stderr


def test_a_named_pipe_as_the_key_file_does_not_hang(tmp_path):
    """``LVPLAN_KEY_FILE`` a FIFO: every plan waited for a writer (probe, 2026-12-07); it is
    not used, with the warning a folder there gets."""
    fifo = tmp_path / "key"
    os.mkfifo(fifo)
    out = tmp_path / "o"
    res = subprocess.run(
        [sys.executable, "-m", "lvplan.cli", "plan", "sz-futian", "--demand", str(DEMAND),
         "--out", str(out), "--time-limit", "3"],
        env={**ENV, "LVPLAN_KEY_FILE": str(fifo)}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "not used as lvplan's key file" in res.stderr


KILL_AT = """\
import os, signal, sys
from pathlib import Path
import lvplan.planning.outputs as outputs
from lvplan.cli import main
real = outputs.write_text_atomic
def killed(path, text):
    if Path(path).name == sys.argv[1]:
        os.kill(os.getpid(), signal.SIGKILL)
    real(path, text)
outputs.write_text_atomic = killed
sys.exit(main(sys.argv[2:]))
"""


def _files(out: Path) -> dict[str, bytes]:
    return {n: (out / n).read_bytes() for n in ("plan.csv", "assignment.csv", "unserved.csv")}


#: the timings of summary.json (the only things two runs of one plan differ in)
TIMINGS = {"runtime_s", "seconds", "cpu_s", "time_limit_s"}


def _summary(out: Path) -> Any:
    def drop(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: drop(v) for k, v in x.items() if k not in TIMINGS}
        if isinstance(x, list):
            return [drop(v) for v in x]
        return x

    return drop(json.loads((out / "summary.json").read_text(encoding="utf-8")))


def test_a_plan_killed_while_writing_leaves_no_file_and_resumes(tmp_path):
    """SIGKILL while summary.json is written (plan.csv, assignment.csv, unserved.csv already
    staged): none of the plan's files appears in DIR, only the finished groups (parts/) and a
    hidden stage; ``--resume DIR`` then writes the files of an uninterrupted run (the same
    bytes) and removes the stage the killed run left."""
    args = ["plan", "sz-futian", "--demand", str(DEMAND), "--method", "greedy"]
    clean = tmp_path / "clean"
    assert _lvplan(*args, "--out", str(clean)).returncode == 0
    out = tmp_path / "killed"
    res = subprocess.run(
        [sys.executable, "-c", KILL_AT, "summary.json", *args, "--out", str(out)],
        env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == -signal.SIGKILL, res.stderr
    visible = [p for p in _tree(out) if not p.startswith(".")]
    assert visible and all(p.startswith("parts") for p in visible), visible
    assert any(p.startswith(".lvplan-tmp.out.") for p in _tree(out))  # the stage
    (out / ".notes.abcdefgh.tmp").write_text("mine", encoding="utf-8")  # the user's, not ours
    res = _lvplan(*args, "--resume", str(out))
    assert res.returncode == 0, res.stderr
    assert _files(out) == _files(clean) and _summary(out) == _summary(clean)
    # the stale stage removed, the user's look-alike file kept (before, it went with the stage)
    assert [p for p in _tree(out) if p.startswith(".")] == [".notes.abcdefgh.tmp"]


# -- hostile names in the study report ------------------------------------------------------------
#: a name that is HTML, splits a Markdown table cell, ends a line, and is matplotlib mathtext
EVIL = "<script>alert(1)</script> a|b\nc $x^{ $ [l](javascript:alert(4)) *e*"
EVIL_STUDY = """\
name: evil
description: "<script>alert(2)</script> desc|with pipe\\n# heading?"
policies_kw: [160, 200]
horizon: [2027, 2030]
run: {inspect: false}
networks:
  - network: evil.json
    label: "<img src=x onerror=alert(3)> lab|el\\nnext $y^{ $"
    parcels: {synth: {count: 12, seed: 1}}
    applications: {synth: {count: 40, seed: 7}}
    plan: {time_limit_s: 5, method: greedy}
"""


@pytest.fixture(scope="module")
def evil_report(sz, tmp_path_factory):
    """``lvplan study`` on sz-futian saved with every transformer and line named ``EVIL`` (and
    the net itself), a label and a description as hostile."""
    import pandapower as pp

    d = tmp_path_factory.mktemp("evil")
    net = copy.deepcopy(sz.pp)
    net.trafo["name"] = [f"{EVIL} T{i}" for i in range(len(net.trafo))]
    net.line["name"] = [f"{EVIL} L{i}" for i in range(len(net.line))]
    net.name = EVIL
    pp.to_json(net, str(d / "evil.json"))
    (d / "s.yaml").write_text(EVIL_STUDY, encoding="utf-8")
    assert main(["study", str(d / "s.yaml"), "--out", str(d / "out")]) == 0
    return d / "out"


def test_hostile_names_are_text_in_the_html_report(evil_report):
    """Autoescaped once: the names show as text, the report's own markup stays markup.
    (Before the fix, a ``$`` in a name was a matplotlib ParseException: exit 1, traceback.)"""
    html = (evil_report / "report.html").read_text(encoding="utf-8")
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; a|b" in html  # escaped once ...
    assert "&amp;lt;" not in html and "&amp;amp;" not in html  # ... not twice
    assert "&lt;img src=x onerror=alert(3)&gt; lab|el" in html
    doc = json.loads((evil_report / "study.json").read_text(encoding="utf-8"))
    assert html.count("<figure ") == len(doc["figures"]) >= 4  # the markup itself intact
    assert '<table id="headline">' in html and '<table id="hotspot-table">' in html
    for f in evil_report.rglob("*.html"):  # the maps of hosting and plan too
        page = f.read_text(encoding="utf-8")
        assert "<script>alert" not in page and "<img src=x" not in page, f


def test_hostile_names_are_text_in_the_markdown_report(evil_report):
    """Rendered by a CommonMark renderer (raw HTML allowed, as GitHub-style viewers do): no
    element, link or emphasis comes from a name, every table row has its header's cells."""
    from markdown_it import MarkdownIt

    md = (evil_report / "report.md").read_text(encoding="utf-8")
    html = MarkdownIt("commonmark").enable("table").render(md)
    assert "<script" not in html and '<img src="x"' not in html and "<img src=x" not in html
    assert "javascript:" not in html.replace("(javascript:alert(4))", "")  # no link made
    assert "<em>e</em>" not in html and "<h1>heading?" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; a|b c $x^{ $ [l](javascript:alert(4)) *e*" in html
    tables = re.findall(r"<table>(.*?)</table>", html, re.S)
    assert len(tables) >= 3  # headline, hot spots, densities
    for t in tables:
        head = len(re.findall(r"<th[ >]", t.split("</thead>")[0]))
        for row in re.findall(r"<tr>(.*?)</tr>", t.split("</thead>")[1], re.S):
            assert len(re.findall(r"<td[ >]", row)) == head, row
    hot = tables[1]
    assert hot.count("&lt;script&gt;alert(1)") >= 1  # the hot spots name the hostile elements


# -- serve --workers N: the islands prepared once --------------------------------------------------
def test_serve_workers_prepare_the_islands_once(tmp_path):
    """``serve --workers 2`` without ``--cache``: the ``--check`` probe prepares the MV islands
    into a private folder of its own and both workers read them from there (``/healthz``:
    ``islands: cache``; before, each worker solved and prepared them again); the folder goes
    when the server ends. The folder of a server killed with SIGKILL is removed as the next
    server starts (before, it stayed in TMPDIR for ever)."""
    import httpx

    port = free_port()
    env = dict(ENV, LVPLAN_TOKEN="t0ken", TMPDIR=str(tmp_path))
    argv = [sys.executable, "-m", "lvplan.cli", "serve", "sz-futian", "--register",
            str(tmp_path / "r.db"), "--workers", "2"]  # fmt: skip
    killed = subprocess.Popen(  # a server killed with SIGKILL (and its probe) as it starts
        [*argv, "--port", str(free_port())], env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("lvplan-serve-islands-*/.lvplan-owner.lock")):
            assert killed.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait(30)
    (dead,) = tmp_path.glob("lvplan-serve-islands-*")  # left: it could not remove it
    proc = subprocess.Popen(
        [*argv, "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    seen: dict[str, str] = {}
    try:
        deadline = time.monotonic() + 180
        while len(seen) < 2:  # a new connection each time: either worker may take it
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                if r.status_code == 200:
                    seen[r.json()["worker"]] = r.json()["islands"]
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        own = [p for p in tmp_path.iterdir() if p.name.startswith("lvplan-serve-islands-")]
        assert len(own) == 1 and own[0] != dead and (own[0].stat().st_mode & 0o777) == 0o700
        files = sorted(p.name for p in own[0].iterdir())
        assert files[0] == ".lvplan-owner.lock" and len(files) == 2, files
        assert files[1].startswith("islands-")
    finally:
        proc.terminate()
        proc.wait(60)
    assert sorted(seen.values()) == ["cache", "cache"], seen
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("lvplan-serve-islands-")]


# -- a careless user of lvplan plan ----------------------------------------------------------------
def _plan(tmp_path, *extra: str) -> list[str]:
    return ["plan", "sz-futian", "--method", "greedy", *extra]


@pytest.mark.parametrize(
    ("extra", "phrase"),
    [
        (["--out", "{FILE}"], "--out {FILE}: exists and is not a folder"),
        (["--out", "{FILE}/sub"], "cannot write there ({FILE} is not a writable folder)"),
        (["--out", ""], "--out: an empty path; give a file or folder"),
        (["--demand", ""], "--demand: an empty path"),
        (["--demand", "{DUP}"], "{DUP}:32: id: 'D0001' appears twice (first on line 2)"),
        (["--demand", "{JUNK}"], "{JUNK}: not a demand CSV file (binary content)"),
        (["--demand", "{TEXTJUNK}"], "{TEXTJUNK}:1: header: not a demand CSV"),
        (["--time-limit", "0"], "--time-limit must be a positive number, got '0'"),
        (["--time-limit", "-1"], "--time-limit must be a positive number, got '-1'"),
        (["--time-limit", "nan"], "--time-limit must be a positive number, got 'nan'"),
        (["--time-limit", "inf"], "--time-limit must be a positive number, got 'inf'"),
        (["--workers", "0"], "--workers must be >= 1, got 0"),
        (["--workers", "1e3"], "--workers must be a whole number of at most 18 ASCII digits, got"),
        (["--scheduler", "nonsense:::"], "Dask scheduler at nonsense:::: invalid address"),
        (["--scheduler", "foo://x:1"], "Dask scheduler at foo://x:1: unknown address scheme"),
    ],
)
def test_careless_plan_arguments_are_one_line_exit_2(tmp_path, capsys, extra, phrase):
    files = {
        "FILE": tmp_path / "a file",
        "DUP": tmp_path / "dup.csv",
        "JUNK": tmp_path / "junk.csv",
        "TEXTJUNK": tmp_path / "text.csv",
    }
    files["FILE"].write_text("x", encoding="utf-8")
    lines = DEMAND.read_text(encoding="utf-8").splitlines(keepends=True)
    files["DUP"].write_text("".join([*lines, lines[1]]), encoding="utf-8")
    files["JUNK"].write_bytes(b"\x00" + os.urandom(2**20))  # a NUL on line 1
    files["TEXTJUNK"].write_text("q;w;e\n" * 100_000, encoding="utf-8")
    argv = ["--demand", str(DEMAND), "--out", str(tmp_path / "out")]
    names = {k: str(v) for k, v in files.items()}
    argv += [x.format(**names) for x in extra]
    phrase = phrase.format(**names)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(_plan(tmp_path, *argv)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and phrase in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_a_demand_file_with_a_bom_and_crlf_plans_as_the_plain_one(tmp_path, capsys):
    """A spreadsheet's UTF-8 export (byte-order mark, CRLF line ends) reads as the plain file;
    so does a time limit of 1e308 s (valid: the plan ends when it is done)."""
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + DEMAND.read_bytes().replace(b"\n", b"\r\n"))
    outs = []
    for name, demand, limit in (("plain", DEMAND, "60"), ("bom", bom, "1e308")):
        out = tmp_path / name
        argv = ["--demand", str(demand), "--out", str(out), "--time-limit", limit]
        assert main(_plan(tmp_path, *argv)) == 0, capsys.readouterr().err
        outs.append(out)
    assert _files(outs[0]) == _files(outs[1])
    plain, bommed = (_summary(o) for o in outs)
    # the inputs record the file as given (the time limit is among the timings dropped); the
    # rows read are the same
    assert plain["inputs"]["demand"]["sha256"] == bommed["inputs"]["demand"]["sha256"]
    assert plain["inputs"]["demand"]["source"] != bommed["inputs"]["demand"]["source"]
    del plain["inputs"]["demand"]["source"], bommed["inputs"]["demand"]["source"]
    assert plain == bommed


def test_csv_files_of_the_map_and_the_study_carry_no_spreadsheet_formulas(tmp_path):
    """Bus and transformer names are the network's text, application ids the user's: a cell
    that starts a formula (`=`, `+`, `-`, `@`) is written with a leading `'`, as `check-batch`
    and `plan` write theirs. hosting.csv, transformers.csv and the study's CSV files wrote them
    raw (probe, 2026-12-07: `=1+2` ids in replay-160kw.csv, `@SUM(1)` bus names in hosting.csv)."""
    from lvplan.io.csvsafe import frame_csv
    from lvplan.study.replay import applications_csv

    raw = read_folder(networks_dir() / "sz-futian")
    raw.bus.at[16, "name"] = "=HYPERLINK(1)"
    raw.trafo.at[0, "name"] = "@SUM(1)"
    f = tmp_path / "sz.json"
    pp.to_json(raw, str(f))
    assert main(["hosting", str(f), "--out", str(tmp_path / "m"), "--no-maps"]) == 0
    hosting = (tmp_path / "m" / "hosting.csv").read_text(encoding="utf-8")
    assert "\n16,'=HYPERLINK(1),T3" in hosting and ",=HYPERLINK" not in hosting
    units = (tmp_path / "m" / "transformers.csv").read_text(encoding="utf-8")
    assert ",'@SUM(1)," in units and ",@SUM" not in units
    apps = applications_csv([{"id": "=1+2", "bus": 16, "kw": 30.0, "category": "shop"}])
    assert apps.splitlines()[1] == "'=1+2,16,30.0,shop"
    df = pd.DataFrame({"id": ["-3+4", "ok"], "kw": [-5.0, 2.0]})
    assert frame_csv(df).splitlines()[1:] == ["'-3+4,-5.0", "ok,2.0"]  # (numbers stay numbers)
    assert df.at[0, "id"] == "-3+4"  # (the caller's frame untouched)


def test_a_folder_here_that_is_no_network_does_not_hide_a_bundled_one(tmp_path, monkeypatch):
    """`lvplan study --out .` writes `./sz-futian/` (the study's files for that network): the
    next run, and any command naming `sz-futian` from there, read it as the network and failed
    with "no network.toml (not a network folder)" (probe, 2026-12-07). A network folder or file
    here by that name still comes first."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sz-futian").mkdir()
    (tmp_path / "sz-futian" / "replay-160kw.csv").write_text("seq\n", encoding="utf-8")
    assert lvplan.load_network("sz-futian").source.endswith("networks/sz-futian")
    import shutil

    shutil.rmtree(tmp_path / "sz-futian")
    shutil.copytree(networks_dir() / "sz-futian", tmp_path / "sz-futian")
    assert lvplan.load_network("sz-futian").source == "sz-futian"


def test_a_pandapower_net_given_for_a_network_is_one_line_saying_what_to_give():
    """``lvplan.check(net.pp, ...)`` raised ``AttributeError: ... 'resolve_bus'`` (probe,
    2026-12-07): now an InputError that says to wrap it in ``lvplan.Network``."""
    net = lvplan.load_network("sz-futian")
    for call in (
        lambda: lvplan.check(net.pp, bus=16, kw=10),
        lambda: lvplan.hosting_capacity(net.pp),
        lambda: lvplan.evaluate(net.pp, lvplan.Changes()),
        lambda: lvplan.plan(net.pp, "studies/demand/sz-futian-30.csv"),
    ):
        with pytest.raises(lvplan.InputError, match=r"^network: a pandapower net, not an lvplan"):
            call()
    with pytest.raises(lvplan.InputError, match=r"^network: expected an lvplan Network .* str$"):
        lvplan.check("sz-futian", bus=16, kw=10)
