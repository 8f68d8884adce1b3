"""``lvplan study FILE --out DIR``: run a study file, write its tables, figures and report.

Per network (``DIR/<network>/``): ``inspect.json``; ``hosting/`` (the files of ``lvplan
hosting``); ``parcels.csv`` and ``customers.csv`` (which customer is served at 380 V under each
policy); ``applications.csv`` and, per policy, ``replay-<P>kw.csv`` (every decision) and
``replay-transformers-<P>kw.csv``; per policy ``demand-<P>kw.csv`` (the 380 V customers of the
parcels, the demand file of ``lvplan plan``) and ``plan-<P>kw/`` (the files of ``lvplan plan``).
Then the figures with the CSV/GeoJSON behind each (``DIR/figures/``), ``study.json`` (the
headline numbers, versions and input fingerprints) and ``report.html`` / ``report.md``.

Reproducible: every random draw is seeded from the study file, the desk decides in file order,
and the plan of a time limit reached before optimality is reported as such (``solver.status``).
Only ``study.json``'s ``timings`` differ between two runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from lvplan import __version__
from lvplan.errors import InputError
from lvplan.io.atomic import (
    COMMIT_MARK,
    OLD_SUFFIX,
    output_errors,
    temp_folder,
    without_dotdot,
    write_json_atomic,
    write_text_atomic,
)
from lvplan.io.csvsafe import frame_csv
from lvplan.io.folder_lock import locked_folder
from lvplan.study.spec import NetworkStudy, Study, network_spec, read_study, resolve

DEPENDENCIES = (
    "pandapower",
    "numpy",
    "pandas",
    "scipy",
    "networkx",
    "ortools",
    "matplotlib",
    "jinja2",
    "pyyaml",
    "pydantic",
)


def sha256_file(path: Path) -> str:
    """sha256 of the file at ``path``, read in chunks (``hashlib.file_digest``: a buffer of
    256 kB, whatever the file's size)."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def versions() -> dict[str, str]:
    out = {"lvplan": __version__, "python": platform.python_version()}
    for name in DEPENDENCIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # pragma: no cover
            out[name] = "not installed"
    return out


def policy_tag(p: float) -> str:
    return f"{p:g}kw"


@dataclass
class NetworkResult:
    """What one network's part of a study produced (the tables the report is drawn from)."""

    name: str
    label: str
    folder: str
    info: dict[str, Any]
    inspect: dict[str, Any] | None = None
    hosting: pd.DataFrame | None = None
    transformers: pd.DataFrame | None = None
    customers: pd.DataFrame | None = None
    replays: dict[float, Any] = field(default_factory=dict)
    plans: dict[float, dict[str, Any]] = field(default_factory=dict)
    plan_measures: dict[float, pd.DataFrame] = field(default_factory=dict)
    network: Any = None


def run_study(
    study_file: str | Path,
    out: str | Path | None = None,
    *,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the study of ``study_file`` into ``out`` (default: the file's ``out``, relative to
    the file, else ``study-<name>`` in the working folder); returns the contents of
    ``study.json``."""
    path = Path(study_file)
    study = read_study(path)
    if out is not None:
        dest = Path(out)
    elif study.out:  # relative to the study file, as its other paths are (it was the working
        # folder's: a study run from elsewhere wrote beside the caller; noticed at stop 57)
        dest = without_dotdot(resolve(path, study.out))
    else:
        dest = Path(f"study-{study.name}")
    if dest.exists() and not dest.is_dir():
        raise InputError(f"--out {dest}: exists and is not a folder")
    with contextlib.suppress(OSError, RuntimeError):  # (a link loop: the writing says so)
        whole = dest.resolve()
        if whole == Path(whole.anchor):
            raise InputError(f"--out {dest}: is the file system's root; give a folder of its own")
    # one run per folder: a second run on it exits 2 and touches nothing. Every file is
    # written to a hidden folder inside it first and moved in when the whole study is done:
    # a failure (a full disk) leaves the folder as it was, and is one line
    with locked_folder(dest), output_errors("--out", dest):
        guard = _Outputs(dest, _inputs(study, path))
        for name in STUDY_ENTRIES:
            guard.claim(name)
        stage = temp_folder(dest, "study")
        try:
            doc = _run_into(study, path, stage, progress, guard)
            _publish(stage, dest)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
    doc["out"] = str(dest)
    return doc


#: what a study writes at the top of its folder, besides one folder per network
STUDY_ENTRIES = ("study.json", "report.html", "report.md", "figures")


class _Outputs:
    """The entries of output folder ``dest`` a study may replace: those an earlier study wrote
    there (as its ``study.json`` names them). A file or folder of the same name that no study
    wrote (an input network's folder, with ``--out .``), or one holding an input of this run
    (the study file itself), stops the run with one line before anything is replaced."""

    def __init__(self, dest: Path, inputs: list[tuple[str, Path]]):
        self.dest = dest
        self.inputs = inputs
        self.own = _earlier_entries(dest)

    def claim(self, name: str) -> None:
        target = self.dest / name
        whole = os.path.realpath(target)
        for what, p in self.inputs:
            real = os.path.realpath(p)
            if real == whole or real.startswith(whole.rstrip(os.sep) + os.sep):
                raise InputError(
                    f"--out {self.dest}: the study writes {name} there, which holds {what} "
                    f"{p} that it reads; give another folder"
                )
        if os.path.lexists(target) and name not in self.own:
            raise InputError(
                f"--out {self.dest}: {name} there was not written by a study, and this study "
                "would replace it; move it or give another folder"
            )


def _earlier_entries(dest: Path) -> set[str]:
    """The top-level entries an earlier study wrote in ``dest``, from its ``study.json``
    (``outputs``; before it had them, the standard names and the networks' folders); none
    when there is no such file or it is not a study's."""
    from lvplan.io.textfile import read_text_bounded

    doc_path = dest / "study.json"
    if not doc_path.is_file() or doc_path.is_symlink():
        return set()
    try:
        doc = json.loads(read_text_bounded(doc_path, "a study.json", 256 * 2**20))
    except (InputError, ValueError, RecursionError):
        return set()
    if not isinstance(doc, dict) or not {"study", "lvplan_version"} <= doc.keys():
        return set()
    own = set(STUDY_ENTRIES)
    outputs = doc.get("outputs")
    if isinstance(outputs, list):
        own |= {x for x in outputs if isinstance(x, str)}
    head = doc.get("headline")
    nets = head.get("networks") if isinstance(head, dict) else None
    for n in nets if isinstance(nets, list) else []:
        if isinstance(n, dict) and isinstance(n.get("folder"), str):
            own.add(n["folder"])
    return {x for x in own if x and "/" not in x and x not in (".", "..")}


def _inputs(study: Study, path: Path) -> list[tuple[str, Path]]:
    """The files and folders a study reads: the study file, file networks, parcels and
    applications files."""
    out = [("the study file", path)]
    for i, ns in enumerate(study.networks):
        spec = network_spec(path, ns.network)
        if Path(spec).exists():
            out.append((f"networks[{i}].network", Path(spec)))
        for key in ("parcels", "applications"):
            part = getattr(ns, key)
            if part is not None and part.file is not None:
                out.append((f"networks[{i}].{key}.file", resolve(path, part.file)))
    return out


def _run_into(
    study: Study,
    path: Path,
    dest: Path,
    progress: Callable[[str], None] | None,
    guard: _Outputs,
) -> dict[str, Any]:
    say = progress or (lambda _m: None)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    results = []
    names_seen: set[str] = set(STUDY_ENTRIES)  # (a network named "figures" gets "figures_")
    for i, ns in enumerate(study.networks):
        r = _run_network(study, path, ns, i, dest, names_seen, say, timings, guard)
        results.append(r)
    from lvplan.study.report import write_report

    t1 = time.perf_counter()
    doc = {
        "study": study.model_dump(mode="json"),
        "lvplan_version": __version__,
        "versions": versions(),
        "inputs": _fingerprints(study, path, results),
    }
    doc.update(write_report(study, results, dest, doc))
    timings["report_s"] = round(time.perf_counter() - t1, 2)
    timings["total_s"] = round(time.perf_counter() - t0, 2)
    doc["timings"] = timings
    doc["outputs"] = sorted([*STUDY_ENTRIES, *(r.folder for r in results)])
    write_json_atomic(dest / "study.json", doc)
    say(f"done in {timings['total_s']:.1f} s")
    return doc


def _publish(stage: Path, dest: Path) -> None:
    """Move every entry of ``stage`` into ``dest`` (renames on one file system: no space
    needed), an entry of an earlier run there moved aside first and removed after."""
    old = temp_folder(dest, "study", suffix=OLD_SUFFIX)
    # every entry is in full: killed among the moves below, the next run that locks ``dest``
    # finishes them (the mark: io/atomic.remove_stale_temporaries), as for a plan or a map;
    # before, it removed the stage as garbage and the study's network folders were lost
    # (probe, 2026-12-07)
    write_text_atomic(stage / COMMIT_MARK, "")

    def moves() -> None:
        for entry in sorted(stage.iterdir()):
            if entry.name == COMMIT_MARK:
                continue
            target = dest / entry.name
            if target.exists():
                target.rename(old / entry.name)
            entry.rename(target)

    try:
        moves()
    except KeyboardInterrupt:  # (Ctrl-C, SIGTERM among the moves: finished first)
        moves()
        shutil.rmtree(old, ignore_errors=True)
        raise
    except BaseException:
        # an entry moved aside and not replaced goes back; the earlier run's entries are
        # then whole where this run's moves broke off (found by review: removing ``old``
        # had lost the only copy of an entry)
        for entry in list(old.iterdir()):
            if not (dest / entry.name).exists():
                entry.rename(dest / entry.name)
        shutil.rmtree(old, ignore_errors=True)  # (what is left there was replaced)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _fingerprints(study: Study, path: Path, results: list[NetworkResult]) -> dict[str, Any]:
    from lvplan.planning.parcels import DENSITIES

    measures = Path(__file__).resolve().parents[1] / "planning" / "measures.toml"
    out: dict[str, Any] = {
        "study_file": {"name": path.name, "sha256": sha256_file(path)},
        "densities": {"name": DENSITIES.name, "sha256": sha256_file(DENSITIES)},
        "measures": {"name": measures.name, "sha256": sha256_file(measures)},
        "networks": [r.info for r in results],
    }
    files = []
    for ns in study.networks:
        for part in (ns.parcels, ns.applications):
            if part is not None and part.file is not None:
                p = resolve(path, part.file)
                files.append({"name": p.name, "sha256": sha256_file(p)})
    out["files"] = files
    return out


def _safe_name(name: str) -> str:
    """A network's name as a folder name of its own: no separators, not ``.`` or ``..`` (a
    network named ``..`` wrote into the output folder itself)."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)
    return safe if safe.strip(".") else "network"


def _run_network(
    study: Study,
    path: Path,
    ns: NetworkStudy,
    i: int,
    dest: Path,
    names_seen: set[str],
    say: Callable[[str], None],
    timings: dict[str, float],
    guard: _Outputs,
) -> NetworkResult:
    from lvplan.criteria import load_criteria
    from lvplan.decision import network_info
    from lvplan.io.load import load_network

    t = time.perf_counter()
    try:
        net = load_network(network_spec(path, ns.network))
    except InputError as exc:
        raise InputError(f"{path}: networks[{i}].network: {exc}") from None
    folder = _safe_name(net.name)
    while folder in names_seen:
        folder += "_"
    names_seen.add(folder)
    guard.claim(folder)  # (before its work: a user's folder of that name stops the run now)
    base = dest / folder
    base.mkdir(parents=True, exist_ok=True)
    crit = load_criteria(study.profile, **study.set)
    r = NetworkResult(net.name, ns.label or net.name, folder, network_info(net), network=net)
    timings[f"{folder}.load_s"] = round(time.perf_counter() - t, 2)
    say(f"{net.name}: loaded ({timings[f'{folder}.load_s']:.1f} s)")

    def lap(key: str, t_start: float) -> None:
        timings[f"{folder}.{key}_s"] = round(time.perf_counter() - t_start, 2)
        say(f"{net.name}: {key} ({timings[f'{folder}.{key}_s']:.1f} s)")

    if study.run.inspect:
        from lvplan.inspect import summarise

        t = time.perf_counter()
        r.inspect = summarise(net, crit).to_dict()
        write_json_atomic(base / "inspect.json", r.inspect)
        lap("inspect", t)
    if study.run.hosting:
        from lvplan.hosting import hosting_capacity
        from lvplan.hosting.outputs import transformer_table, write_outputs

        t = time.perf_counter()
        res = hosting_capacity(net, criteria=crit)
        write_outputs(res, net, crit, base / "hosting", maps=True)
        r.hosting = res.table
        r.transformers = transformer_table(res.table, net, crit, res.bus_trafo)
        lap("hosting", t)
    if study.run.replay and ns.applications is not None:
        t = time.perf_counter()
        _replays(study, path, ns, net, crit, base, r)
        lap("replay", t)
    if study.run.plan and ns.parcels is not None:
        t = time.perf_counter()
        _parcels_and_plans(study, path, ns, net, crit, base, r, say)
        lap("plan", t)
    return r


def _replays(study, path, ns, net, crit, base: Path, r: NetworkResult) -> None:
    from lvplan.criteria import load_criteria
    from lvplan.study.replay import (
        applications_csv,
        read_applications,
        replay,
        synth_applications,
    )

    apps_spec = ns.applications
    if apps_spec.file is not None:
        apps = read_applications(resolve(path, apps_spec.file), net, crit)
    else:
        apps = synth_applications(net, apps_spec.synth, crit)
    write_text_atomic(base / "applications.csv", applications_csv(apps))
    for p in study.policies_kw:
        pc = load_criteria(study.profile, **{**study.set, "lv_policy_max_kw": p})
        rep = replay(net, apps, pc)
        tag = policy_tag(p)
        write_text_atomic(base / f"replay-{tag}.csv", frame_csv(rep.table))
        write_text_atomic(base / f"replay-transformers-{tag}.csv", frame_csv(rep.transformers))
        r.replays[p] = rep


def _parcels_and_plans(study, path, ns, net, crit, base: Path, r: NetworkResult, say) -> None:
    from lvplan.criteria import load_criteria
    from lvplan.planning.outputs import write_plan
    from lvplan.planning.parcels import (
        customers,
        demand_frame,
        load_densities,
        read_parcels,
        split_by_policy,
    )
    from lvplan.planning.plan import plan
    from lvplan.planning.synth_parcels import synth_parcels, write_parcels

    dens = load_densities()
    spec = ns.parcels
    a, b = study.horizon
    if spec.file is not None:
        parcels = read_parcels(resolve(path, spec.file), dens)
        src = resolve(path, spec.file)
        write_text_atomic(base / f"parcels{src.suffix}", src.read_text(encoding="utf-8-sig"))
    else:
        rows = synth_parcels(
            net, count=spec.synth.count, seed=spec.synth.seed, criteria=crit, years=(a, b)
        )
        write_parcels(rows, base / "parcels.csv")
        parcels = read_parcels(base / "parcels.csv", dens)
    parcels = tuple(p for p in parcels if a <= p.year <= b)
    custs = customers(parcels, dens)
    frame = pd.DataFrame([c.to_dict() for c in custs])
    for p in study.policies_kw:
        frame[f"at_380v_{policy_tag(p)}"] = [c.at_380v(p) for c in custs]
    write_text_atomic(base / "customers.csv", frame_csv(frame))
    r.customers = frame
    for p in study.policies_kw:
        tag = policy_tag(p)
        lv, _mv = split_by_policy(custs, p)
        if not lv:
            continue
        demand = demand_frame(lv)
        write_text_atomic(base / f"demand-{tag}.csv", frame_csv(demand))
        pc = load_criteria(study.profile, **{**study.set, "lv_policy_max_kw": p})
        result = plan(
            net,
            demand,
            criteria=pc,
            method=ns.plan.method,
            time_limit_s=ns.plan.time_limit_s,
            workers=ns.plan.workers,
        )
        write_plan(result, net, base / f"plan-{tag}")
        r.plans[p] = result.summary()
        r.plan_measures[p] = pd.DataFrame([m.to_dict() for m in result.measures])
        say(f"{net.name}: plan at {p:g} kW: {result.cost_cny:,.0f} CNY ({result.status})")


def load_and_run(argv_file: str, out: str | None, progress: bool) -> dict[str, Any]:
    from lvplan.io.stderr_report import reporter

    return run_study(argv_file, out, progress=reporter("lvplan study: ") if progress else None)


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False)
