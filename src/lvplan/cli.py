"""The ``lvplan`` command: parse, call the library, render, exit code (0 ok, 2 bad input)."""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from lvplan.code_id import code_hash
from lvplan.errors import BaseCaseError, InputError, LvplanError
from lvplan.io.stderr_report import native_stdout_to_stderr, reporter
from lvplan.numbers import read_float, read_int, shown

REGISTER_IS = "register: a SQLite file, or a postgresql://user@host:port/db URL"
#: lvplan's linear algebra is many small products and solves: OpenBLAS's threads only fight
#: over the cores (measured on 2 cores: a check on a 294-bus LV grid 54/s with the default
#: threads, 785/s with one; the district map in one process 1,108 against 7,496 buses/s).
#: Set before numpy is first imported; an operator's own setting wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def _criteria(args: argparse.Namespace):
    from lvplan.criteria import load_criteria

    overrides: dict[str, Any] = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"--set takes NAME=VALUE, got {item!r}")
        overrides[key.strip()] = value.strip()
    return load_criteria(args.profile, **overrides)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "network",
        metavar="NETWORK",
        help="pandapower JSON file, networks/ folder or bundled name, or simbench:CODE",
    )
    p.add_argument("--profile", default="cn", help="criteria profile: cn (default) or en50160")
    p.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        help="override one criterion, e.g. --set trafo_max_loading_percent=80",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")


class _Parser(argparse.ArgumentParser):
    """argparse with the contract's one line for a bad command line (its default printed the
    whole usage block first: six to eight lines); the usage stays one ``--help`` away. The
    line starts ``lvplan: error:`` as every other refusal does, the command after it (a
    subcommand's parser wrote ``lvplan plan: error:``)."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("lvplan").strip()
        where = f"{command}: " if command else ""
        # (an argument with a line break in it, as argparse echoes it: one line still)
        message = message.replace("\r", "\\r").replace("\n", "\\n")
        self.exit(2, f"lvplan: error: {where}{message} (see {self.prog} --help)\n")


def _subparser(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    argv: Sequence[str] = (),
    first_unknown: str | None = None,
) -> argparse.ArgumentParser:
    """The innermost parser ``args`` went through (``synth demand``: its name and ``--help``
    for a message), or, given the command line ``argv`` and its first unknown argument, the
    one that argument was given to: ``lvplan --bogus hosting`` names ``lvplan``, not
    ``hosting``."""
    at = -1  # where the last command name chosen stands in argv
    while parser._subparsers is not None:
        actions = [
            a
            for a in parser._subparsers._group_actions
            if isinstance(a, argparse._SubParsersAction)
        ]
        name = getattr(args, actions[0].dest, None) if actions else None
        if not isinstance(name, str) or (chosen := actions[0].choices.get(name)) is None:
            return parser
        if first_unknown is not None and name in argv[at + 1 :]:
            named = list(argv).index(name, at + 1)
            if first_unknown in argv[at + 1 : named]:  # given before the command's name
                return parser
            at = named
        parser = chosen
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lvplan", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="does a new 380 V customer fit?")
    _add_common(c)
    c.add_argument("--bus", help="connection bus: index or unique name")
    c.add_argument("--lon", help="customer longitude (instead of --bus)")
    c.add_argument("--lat", help="customer latitude (instead of --bus)")
    c.add_argument(
        "--area-class",
        help="supply area class A+, A, B, C, D, E: the supply radius for --lon/--lat, and "
        "whether N-1 is judged (profile cn: full N-1 for A+, A, B)",
    )
    c.add_argument("--kw", required=True, help="declared equipment capacity in kW")
    c.add_argument("--category", help="customer category (demand factor); default generic")
    c.add_argument("--pf", help="power factor of the new load (lagging); default from profile")
    c.add_argument(
        "--method",
        default="auto",
        choices=("auto", "ac"),
        help="auto: fast engine, full AC near a limit; ac: full AC always",
    )
    c.add_argument("--changes", help="a changes file (TOML/YAML): check the changed network")
    c.add_argument("--register", help=f"count the reservations of this register ({REGISTER_IS})")
    c.add_argument(
        "--migrate",
        action="store_true",
        help="the register was built on another version of the network: map its applications "
        "by bus name and re-check them (rewrites the register)",
    )
    i = sub.add_parser("inspect", help="counts, transformer loadings, worst voltages, violations")
    _add_common(i)
    i.add_argument("--changes", help="a changes file (TOML/YAML): inspect the changed network")
    h = sub.add_parser("hosting", help="hosting capacity of every LV bus: tables, GeoJSON, maps")
    _add_common(h)
    h.add_argument("--out", help="output folder (default: hosting-<network name>)")
    h.add_argument("--max-kw", default="1000", help="cap of the search in design kW (1000)")
    h.add_argument("--pf", help="power factor of the new load (lagging); default from profile")
    h.add_argument("--workers", default="1", help="local worker processes (default 1)")
    h.add_argument("--scheduler", help="Dask scheduler address, e.g. tcp://10.0.0.5:8786")
    h.add_argument("--resume", metavar="DIR", help="reuse the finished chunks of a run in DIR")
    h.add_argument("--no-maps", action="store_true", help="skip map.html and map.png")
    h.add_argument("--progress", action="store_true", help="show a progress bar on stderr")
    h.add_argument("--changes", help="a changes file (TOML/YAML): map the changed network")
    h.add_argument(
        "--compare",
        action="store_true",
        help="with --changes: also map the network as it is, and add hosting_kw_before, "
        "hosting_kw_after and delta_kw per bus",
    )
    h.add_argument(
        "--n1",
        action="store_true",
        help="also hosting_kw_n1 and binding_n1 per bus (N-1 of the feeder and its loop "
        "partners, emergency limits); transformers.csv shows feeders failing N-1 already",
    )
    pl = sub.add_parser(
        "plan", help="the cheapest AC-verified reinforcements for a forecast demand (OR-Tools)"
    )
    _add_common(pl)
    pl.add_argument("--demand", required=True, help="demand CSV: id, kw, category, bus|lon+lat")
    pl.add_argument("--out", help="output folder (default: plan-<network name>)")
    pl.add_argument("--method", default="optimal", choices=("optimal", "greedy"))
    pl.add_argument("--time-limit", default="60", help="seconds for the whole plan (60)")
    pl.add_argument("--budget", help="CNY: serve the most design kW within this budget")
    pl.add_argument("--catalogue", help="a measures catalogue (TOML) overriding the built-in")
    pl.add_argument(
        "--workers",
        default="2",
        help="local processes, one group of MV islands each, on networks of 50,000 buses or "
        "more (otherwise CP-SAT's search workers); default 2",
    )
    pl.add_argument("--scheduler", help="Dask scheduler address, e.g. tcp://10.0.0.5:8786")
    pl.add_argument("--resume", metavar="DIR", help="reuse the finished groups of a run in DIR")
    pl.add_argument("--discount-rate", default="0", help="for the present value, e.g. 0.05")
    pl.add_argument("--progress", action="store_true", help="report each step on stderr")
    a = sub.add_parser(
        "apply", help="write the network with a changes file applied (pandapower JSON)"
    )
    a.add_argument("network", metavar="NETWORK", help="as for check")
    a.add_argument("--changes", required=True, help="changes file (TOML/YAML)")
    a.add_argument("--out", required=True, help="pandapower JSON file to write")
    r = sub.add_parser("register", help="the application register: list, show, export")
    r.add_argument("action", choices=("list", "show", "export"))
    r.add_argument("arg", nargs="?", help="ID for show, CSV file for export")
    r.add_argument("--register", required=True, help=REGISTER_IS)
    r.add_argument("--json", action="store_true", help="print JSON")
    b = sub.add_parser("check-batch", help="decide a queue of applications, reserving as it goes")
    _add_common(b)
    b.add_argument("applications", help="CSV: id, bus or lon+lat, kw, category, pf")
    b.add_argument("--register", required=True, help=REGISTER_IS)
    b.add_argument("--out", required=True, help="decisions CSV to write")
    b.add_argument("--progress", action="store_true", help="show a progress bar on stderr")
    b.add_argument(
        "--migrate",
        action="store_true",
        help="as for check: adopt a register of "
        "another network version, re-checking its applications",
    )
    v = sub.add_parser("serve", help="the HTTP service (FastAPI)")
    _add_common(v)
    v.add_argument("--register", required=True, help=REGISTER_IS)
    v.add_argument(
        "--migrate",
        action="store_true",
        help="as for check: adopt a register of "
        "another network version, re-checking its applications",
    )
    v.add_argument(
        "--check",
        action="store_true",
        help="load the network, open the register (writable, same network) and warm up, then "
        "exit 0 without serving; exit 2 with the reason otherwise",
    )
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", default="8080")
    v.add_argument(
        "--workers",
        default="1",
        help="server processes behind the one port (default 1); each loads the network (its "
        "MV islands prepared once, by the start-up check, and read from --cache or a private "
        "temporary folder) and decides on its own, the register keeps them consistent",
    )
    v.add_argument("--token-file", help="file holding the bearer token (else LVPLAN_TOKEN)")
    v.add_argument(
        "--request-timeout",
        default="10",
        help="seconds a connection has to deliver a whole request (headers and body) from its "
        "first byte; a slower one is closed (default 10; the decision's time is not counted)",
    )
    v.add_argument(
        "--cache",
        help="folder for the prepared MV islands (solved bases, fast engines): read at start "
        "when it holds this very network and lvplan version, else written; never reused "
        "for another network or version",
    )
    v.add_argument(
        "--prepare-jobs",
        default=str(os.cpu_count() or 1),
        help="processes that solve and prepare the MV islands at start (default: the CPUs; "
        "one process below 48 islands)",
    )
    v.add_argument(
        "--progress", action="store_true", help="report the start-up's progress on stderr"
    )
    v.add_argument(
        "--open-docs",
        action="store_true",
        help="serve /docs, /redoc and /openapi.json without the token (default: token needed)",
    )
    s = sub.add_parser("synth", help="build a synthetic network")
    ssub = s.add_subparsers(dest="what", required=True)
    sc = ssub.add_parser("city", help="a city of SimBench LV grids on 10 kV feeders")
    sc.add_argument("--transformers", required=True, help="number of public transformers")
    sc.add_argument("--seed", default="1", help="random seed (same seed, same city)")
    sc.add_argument("--out", required=True, help="output: a folder, or a pandapower .json file")
    sd = ssub.add_parser(
        "demand", help="benchmark demand for the optimiser: clusters around LV buses, some far"
    )
    sd.add_argument("network", metavar="NETWORK", help="as for check (needs bus coordinates)")
    sd.add_argument("--count", required=True, help="number of demands")
    sd.add_argument("--seed", default="1", help="random seed (same seed, same file)")
    sd.add_argument("--out", required=True, help="demand CSV to write")
    sd.add_argument(
        "--years",
        default="2027-2029",
        help="FIRST-LAST: a year column spread over these years (default 2027-2029); "
        "'none': no year column",
    )
    sd.add_argument(
        "--area-class", help="write this area_class on every row (default: none written, "
        "the profile's default applies)"
    )  # fmt: skip
    sd.add_argument(
        "--far-share",
        default="0.1",
        help="share of clusters beyond every supply radius (default 0.1; at least one cluster "
        "stays near the network, so 1 means all but one)",
    )
    sd.add_argument("--profile", default="cn", help="criteria profile: cn (default) or en50160")
    sd.add_argument("--set", action="append", metavar="NAME=VALUE", help="override a criterion")
    sp = ssub.add_parser(
        "parcels", help="a land-auction pipeline: parcels with land uses, floor areas and years"
    )
    sp.add_argument("network", metavar="NETWORK", help="as for check (needs bus coordinates)")
    sp.add_argument("--count", required=True, help="number of parcels")
    sp.add_argument("--seed", default="1", help="random seed (same seed, same file)")
    sp.add_argument("--out", required=True, help="parcels CSV to write")
    sp.add_argument("--years", default="2027-2030", help="FIRST-LAST (default 2027-2030)")
    sp.add_argument("--profile", default="cn", help="criteria profile: cn (default) or en50160")
    sp.add_argument("--set", action="append", metavar="NAME=VALUE", help="override a criterion")
    st = sub.add_parser(
        "study", help="run a study file: hosting, replay by policy, parcel plan, report"
    )
    st.add_argument(
        "file", metavar="FILE", help="study file (YAML), e.g. studies/lv-200kw-citywide.yaml"
    )
    st.add_argument("--out", help="output folder (default: the study's out, else study-NAME)")
    st.add_argument(
        "--progress", action="store_true", help="say what runs, with timings, on stderr"
    )
    return parser


def _render_decision(d: dict[str, Any]) -> str:
    lines = [f"decision: {d['decision'].upper()}"]
    lines.append(
        f"bus {d['bus']} {d['bus_name']}  declared {d['declared_kw']:g} kW "
        f"({d['category']}, factor {d['demand_factor']:g}) -> design {d['design_kw']:g} kW"
        f" at pf {d['pf']:g}"
    )
    if d.get("location"):
        loc = d["location"]
        lines.append(
            f"location {loc['lon']:.6f}, {loc['lat']:.6f}  area class {loc['area_class']}"
            f"  radius {loc['supply_radius_m']:g} m"
        )
        for a in loc["alternatives"]:
            lines.append(
                f"  candidate bus {a['bus']:<6}{a['bus_name'][:30]:<31}route "
                f"{a['route_m']:>6.1f} m  {a['decision']:<13} headroom {a['headroom_kw']}"
            )
    if d.get("service_cable"):
        sc = d["service_cable"]
        lines.append(f"service cable {sc['type']} {sc['length_m']:g} m")
    if d["reason"]:
        lines.append(f"reason: {d['reason']}")
    if d["binding"]:
        b = d["binding"]
        # ("line 7", not "line line 7": the element names its kind where it is the same)
        what = (
            b["element"]
            if b["element"].startswith(f"{b['kind']} ")
            else (f"{b['kind']} {b['element']}")
        )
        lines.append(
            f"binding: {what} ({b['element_name']}) "
            f"{b['value']:g} {b['unit']} > limit {b['limit']:g} {b['unit']}"
            if b["unit"] in ("%", "m")
            else f"binding: {what} ({b['element_name']}) "
            f"{b['value']:g} {b['unit']}, limit {b['limit']:g} {b['unit']}"
        )
    if d["binding"] and d["binding"].get("contingency"):
        lines.append(f"  after {d['binding']['contingency']}")
    if d["transformer"]:
        t = d["transformer"]
        lines.append(
            f"transformer {t['index']} {t['name']} {t['rated_kva']:g} kVA: "
            f"{d['transformer_loading_before_percent']:.1f} % -> "
            f"{d['transformer_loading_after_percent']:.1f} %   feeder {d['feeder']}"
        )
        lines.append(
            f"lowest LV voltage in the area after: {d['min_voltage_v']:.1f} V; "
            f"at the bus: {d['bus_voltage_after_v']:.1f} V"
        )
    if d["headroom_kw"] is not None:
        lines.append(
            f"headroom at this bus: {d['headroom_kw']:g} kW (design, "
            f"{'after' if d['decision'] == 'fits' else 'without'} this application)"
        )
    if d["closest_limit"]:
        c = d["closest_limit"]
        lines.append(
            f"closest limit: {c['element']} ({c['kind']}) {c['value']:g} {c['unit']} "
            f"(limit {c['limit']:g})"
        )
    lines += _render_n1(d.get("n1"))
    for v in d["violations"][1:10]:
        lines.append(
            f"also: {v['element']} ({v['kind']}) {v['value']:g} {v['unit']} (limit {v['limit']:g})"
        )
    for w in d["warnings"][:5]:
        lines.append(f"warning: {w}")
    if len(d["warnings"]) > 5:
        lines.append(f"warning: ... {len(d['warnings']) - 5} more (use --json)")
    lines.append(
        f"engine: {d['engine']}  criteria: {d['criteria']['profile']}  network "
        f"{d['network']['name']} {d['network']['fingerprint'][:12]}"
    )
    return "\n".join(lines)


def _render_n1(n1: dict[str, Any] | None) -> list[str]:
    if n1 is None:
        return []
    if not n1["applied"]:
        return [f"N-1: not judged: {n1.get('reason', '')}"]
    out = [
        f"N-1 (area class {n1['area_class']}): feeder {n1['feeder']}, loop partners "
        f"{', '.join(n1['partners']) or 'none'}"
    ]
    for c in n1.get("contingencies", []):
        w = c["worst_margin"]
        worst = "" if w is None else f"; worst {w['element']} {w['value']:g} {w['unit']}"
        already = " (fails already)" if c["fails_already"] and c["status"] != "pass" else ""
        out.append(f"  {c['id']}: {c['status']}{already}, {c['option'] or 'no option'}{worst}")
    for name, sc in (n1.get("screening") or {}).items():
        out.append(
            f"  screening {name}: head {sc['head_loading_percent']} % with {sc['ties']} ties "
            f"(k/(k+1) {sc['screening_limit_percent']:g} %): "
            f"{'within' if sc['within'] else 'above'}"
        )
    return out


#: the options that name a file or folder: an empty one (``--out "$UNSET"``) is refused, not
#: taken as not given (before, ``plan --out ""`` wrote into the default ``plan-NETWORK/``)
PATH_OPTIONS = ("out", "resume", "demand", "catalogue", "register", "cache", "token_file")


def _check_paths(args: argparse.Namespace) -> None:
    """Each path option that can be looked at: an empty one, a name longer than the file
    system takes (``File name too long``) or one inside a folder the user cannot enter
    (``Permission denied``) is one line naming the option (before: an OSError traceback from
    the first ``Path.exists()`` that met it). A path that does not exist yet is fine here."""
    import errno

    for name in PATH_OPTIONS:
        value = getattr(args, name, None)
        flag = f"--{name.replace('_', '-')}"
        if value == "":
            raise InputError(f"{flag}: an empty path; give a file or folder")
        if not isinstance(value, str) or "://" in value:  # (a register URL)
            continue
        try:
            os.stat(value)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                continue  # not there (yet): each command says what it needs of it
            raise InputError(f"{flag} {value}: {exc.strerror or exc}") from None


def _run(args: argparse.Namespace) -> int:
    from lvplan.io.load import load_network

    _check_paths(args)
    if getattr(args, "scheduler", None) is not None:  # before any folder is made (hosting
        from lvplan.workers import check_scheduler_address  # left one with chunks/)

        check_scheduler_address(args.scheduler)
    if args.command == "synth":
        return _synth(args)
    if args.command == "study":
        return _study(args)
    if args.command == "apply":
        return _apply(args)
    if args.command == "register":
        return _register(args)
    crit = _criteria(args)
    if args.command == "check-batch":
        return _check_batch(args, crit)
    if args.command == "serve":
        return _serve(args, crit)
    if args.command == "check":
        has_loc = args.lon is not None or args.lat is not None
        if has_loc == (args.bus is not None):
            raise InputError("give either --bus or both --lon and --lat")
        if has_loc and (args.lon is None or args.lat is None):
            raise InputError("give both --lon and --lat")
        net = _changed(load_network(args.network), args.changes)
        if args.register:  # the network with every reservation of the register as a load
            from lvplan.register.desk import Desk
            from lvplan.register.store import open_backend

            reg = open_backend(args.register, writable=bool(args.migrate))
            desk = Desk(net, reg, crit, migrate=args.migrate)
            if desk.migration is not None:
                reporter("lvplan: ")(desk.migration.summary())  # (its reader gone: quiet)
            net = desk.network
        if has_loc:
            from lvplan.locate import check_location

            d = check_location(
                net,
                lon=args.lon,
                lat=args.lat,
                kw=args.kw,
                category=args.category,
                pf=args.pf,
                criteria=crit,
                area_class=args.area_class,
                method=args.method,
            )
        else:
            from lvplan.decision import check

            d = check(
                net,
                bus=args.bus,
                kw=args.kw,
                category=args.category,
                pf=args.pf,
                criteria=crit,
                method=args.method,
                area_class=args.area_class,
            )
        out = d.to_dict()
        print(json.dumps(out, indent=2, ensure_ascii=False) if args.json else _render_decision(out))
        return 0
    if args.command == "inspect":
        from lvplan.inspect import render, summarise

        s = summarise(_changed(load_network(args.network), args.changes), crit)
        print(json.dumps(s.to_dict(), indent=2, ensure_ascii=False) if args.json else render(s))
        return 0
    if args.command == "hosting":
        return _hosting(args, crit)
    if args.command == "plan":
        return _plan(args, crit)
    raise InputError(f"unknown command {args.command!r}")  # pragma: no cover


def _changed(net, changes_file: str | None):
    """``net`` with the changes of ``changes_file`` made (the network itself without one)."""
    if not changes_file:
        return net
    from lvplan.changes import load_changes

    changes = load_changes(changes_file)
    try:
        return net.with_changes(changes)
    except InputError as exc:
        raise InputError(f"--changes {changes_file}: {exc}") from None


def _apply(args: argparse.Namespace) -> int:

    import pandapower as pp

    from lvplan.changes import load_changes
    from lvplan.changes.apply import apply_changes
    from lvplan.io.atomic import check_output_file, write_output_file
    from lvplan.io.load import load_network

    out = Path(args.out)
    inputs = [("the network", args.network), ("--changes", args.changes)]
    check_output_file(out, "--out", "a .json file", inputs)  # (before the network loads)
    net = load_network(args.network)
    inputs.append(("the network", net.source))
    check_output_file(out, "--out", "a .json file", inputs)
    try:
        changes = load_changes(args.changes).resolve(net)
    except InputError as exc:
        msg = str(exc)
        raise InputError(
            msg if msg.startswith("--changes") else f"--changes {args.changes}: {msg}"
        ) from None
    changed, cmap = apply_changes(net.pp, changes)
    write_output_file(out, pp.to_json(changed), inputs=inputs)  # (a full disk: one line)
    print(
        f"{len(changes)} changes applied to {net.name}: {len(cmap.new_buses)} new buses, "
        f"{len(cmap.new_lines)} new lines, {len(cmap.new_trafos)} new transformers, "
        f"{len(cmap.modified_lines) + len(cmap.modified_trafos)} elements replaced, "
        f"{len(cmap.opened_lines)} sections opened -> {out}"
    )
    return 0


#: the most worker processes or solver threads a command starts (a typo of 10000 would
#: otherwise fork until the machine falls over)
MAX_WORKERS = 256


def _int_arg(name: str, value: str, lo: int, hi: int | None = None) -> int:
    try:
        x = read_int(value)
    except ValueError:
        raise InputError(
            f"{name} must be a whole number of at most 18 ASCII digits, got {shown(value)}"
        ) from None
    if x < lo:
        raise InputError(f"{name} must be >= {lo}, got {x}")
    if hi is not None and x > hi:
        raise InputError(f"{name} must be <= {hi}, got {x}")
    return x


def _float_arg(name: str, value: str) -> float:
    import math

    try:
        x = read_float(value)
    except ValueError:
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(x) or x <= 0:
        raise InputError(f"{name} must be a positive number, got {value!r}")
    return x


def _resume_folder(resume: str | None) -> None:
    """One line for a ``--resume`` that is no folder: a file there is named as a file (it read
    "no such folder")."""
    if resume and not Path(resume).is_dir():
        what = "is a file, not a folder" if Path(resume).exists() else "no such folder"
        raise InputError(f"--resume {resume}: {what}")


def _not_root(out: Path) -> None:
    """One line for an output folder that is the file system's root (as root it was written:
    every output file, and parts/, went into /)."""
    try:
        whole = out.resolve()
    except (OSError, RuntimeError):  # (a link loop: the writing says what is wrong)
        return
    if whole == Path(whole.anchor):
        raise InputError(f"--out {out}: is the file system's root; give a folder of its own")


def _plan(args: argparse.Namespace, crit) -> int:
    import math

    from lvplan.io.atomic import refuse_inputs_among_outputs, refuse_other_output, without_dotdot
    from lvplan.io.folder_lock import locked_folders
    from lvplan.io.load import load_network
    from lvplan.planning.demand import check_demand_file
    from lvplan.planning.groups import RUN_FILE
    from lvplan.planning.measures import load_measures
    from lvplan.planning.outputs import FILES as PLAN_FILES
    from lvplan.planning.outputs import write_plan
    from lvplan.planning.plan import plan

    limit = _float_arg("--time-limit", args.time_limit)
    workers = _int_arg("--workers", args.workers, 1, MAX_WORKERS)
    budget = None
    if args.budget is not None:
        try:
            budget = read_float(args.budget)
        except ValueError:
            raise InputError(f"--budget must be a number of CNY, got {args.budget!r}") from None
        if not (math.isfinite(budget) and budget >= 0):
            raise InputError(f"--budget must be a non-negative number of CNY, got {args.budget!r}")
        budget += 0.0  # (-0 is 0: "a budget of -0 CNY" was printed)
    try:
        rate = read_float(args.discount_rate)
    except ValueError:
        raise InputError(f"--discount-rate must be a number, got {args.discount_rate!r}") from None
    measures = load_measures(args.catalogue) if args.catalogue is not None else None
    _resume_folder(args.resume)
    check_demand_file(args.demand)  # a junk file fails before the network loads (a city: minutes)
    net = load_network(args.network)
    out = without_dotdot(args.out or args.resume or f"plan-{net.name}")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    _not_root(out)
    base = out  # the nearest existing folder up the path: checked before the plan runs
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir() or not os.access(base, os.W_OK | os.X_OK):
        raise InputError(f"--out {out}: cannot write there ({base} is not a writable folder)")

    say = reporter("lvplan plan: ")  # (a reader that leaves does not stop the plan)
    # a folder this run makes is removed whole if the run fails (judged on the folder the path
    # names: ``new/../mine`` is the user's ``mine``)
    made = not Path(os.path.realpath(out)).exists()
    # one run per folder: a second run on it exits 2 and touches nothing (io/folder_lock.py)
    with locked_folders((out, "--out"), *([(args.resume, "--resume")] if args.resume else [])):
        # (held, and a killed run's renames finished: a plan's summary.json replaced a map's)
        refuse_other_output(out, "plan")
        refuse_inputs_among_outputs(
            out,
            # (and the run file of its groups' store: a demand file there was replaced by it)
            [*PLAN_FILES, f"parts/{RUN_FILE}"],
            [("--demand", args.demand), ("--catalogue", args.catalogue), ("NETWORK", args.network)],
        )
        try:
            with native_stdout_to_stderr():  # (HiGHS prints there now and then)
                result = plan(
                    net,
                    args.demand,
                    criteria=crit,
                    method=args.method,
                    time_limit_s=limit,
                    budget_cny=budget,
                    measures=measures,
                    workers=workers,
                    discount_rate=rate,
                    progress=say if args.progress else None,
                    scheduler=args.scheduler,
                    work_dir=Path(args.resume) if args.resume else out,
                    resume=bool(args.resume),
                )
            write_plan(result, net, out, progress=say if args.progress else None)
        except LvplanError:
            # (a scheduler not reached, a full disk, a base case that does not converge): a
            # new run's empty parts/ goes; in a folder this run made, its finished groups too
            # (before, a full disk left them), and then the folder (locked_folder)
            if not args.resume:
                from lvplan.planning.groups import remove_parts

                if made:
                    remove_parts(out)
                with contextlib.suppress(OSError):
                    (out / "parts").rmdir()
            raise
    s = result.summary()
    if args.json:
        print(json.dumps(s, indent=2, ensure_ascii=False))
        return 0
    solver = s["solver"]
    gap = "n/a" if solver["gap"] is None else f"{100 * solver['gap']:.2f} %"
    if solver["gap"] is not None and solver.get("best_bound") is not None:
        names = {"highs": "HiGHS", "cp_sat": "CP-SAT", "relaxation": "relaxation"}
        # (a plan by parts: what bounded each, joined by "+")
        by = " + ".join(names.get(b, b) for b in (solver.get("bound_by") or "").split("+") if b)
        if solver.get("objective_unit") == "design_kw":  # --budget: the most kW within it
            gap += f" (at most {solver['best_bound']:,.1f} design kW within the budget)"
        else:
            gap += f" (bound {solver['best_bound']:,.0f} CNY{', ' + by if by else ''})"

    def n(count: int, noun: str) -> str:
        return f"{count:,} {noun}{'' if count == 1 else 's'}"

    # (a budget of 1e308 CNY is no limit: shown as such, not as 309 digits)
    within = ""
    if budget is not None:
        within = f" (of a budget of {f'{budget:,.0f}' if budget < 1e15 else f'{budget:.3g}'} CNY)"
    # (the verified greedy plan stands after the optimal rounds: none verified in the time,
    # or none cheaper after the AC cuts; in every group of a plan by MV islands too)
    how = s["method"]
    if how == "optimal" and s.get("plan_from") == "greedy":
        how += (
            ": none verified in time, the verified greedy plan"
            if s.get("optimal_cost_cny") is None
            else ": the verified greedy plan, the optimal one no cheaper after the AC cuts"
        )
    elif how == "optimal" and s.get("plan_from") == "greedy and optimal":
        how += ": the verified greedy plan in some groups"
    print(
        f"plan ({how}): {s['total_cost_cny']:,.0f} CNY{within} for "
        f"{s['demands_served']} of {n(s['demands'], 'demand')} ({s['design_kw_served']:,.0f} kW); "
        f"{n(s['measures'], 'measure')}, {n(s['new_substations'], 'new substation')}"
    )
    greedy = s["greedy_cost_cny"]
    print(
        f"solver: {solver['status']}, gap {gap}; greedy plan "
        f"{'n/a' if greedy is None else f'{greedy:,.0f} CNY'}; AC rounds {s['ac_rounds']}; "
        f"{s['runtime_s']:.1f} s"
    )
    if s.get("stopped"):
        print(f"stopped: {s['stop_note']}")
    if (over := s.get("over_time_limit_s")) and over >= 1.0:
        print(
            f"over the time limit ({limit:g} s) by {over:.1f} s: the greedy plan's AC rounds "
            "go on past it while they settle (withdrawals end them when they do not)"
        )
    for kind, cost in s["cost_by_kind_cny"].items():
        print(f"  {kind:22s} {cost:>14,.0f} CNY")
    if "n1" in s:
        n1 = s["n1"]
        print(
            f"N-1: {n1['served']} of {n1['demands_full_n1']} demands with full N-1 served; "
            f"{len(n1['contingencies_passed'])} contingencies of their loops pass"
        )
    if result.unserved:
        print(f"unserved: {len(result.unserved)} (see unserved.csv)")
    if worse := s["pre_existing_elsewhere"]:
        shown = "; ".join(
            f"{w['element']} {w['before']:g} -> {w['after']:g} {w['unit']} (limit {w['limit']:g})"
            for w in worse[:5]
        )
        print(
            f"outside a limit before the plan, outside its own LV networks, and further out "
            f"with it (left out of the decision by the criteria; summary.json "
            f"pre_existing_elsewhere): {shown}{'; ...' if len(worse) > 5 else ''}"
        )
    years = s.get("years_checked", {})
    if moved := years.get("measures_brought_forward"):
        print(
            f"years: {moved} measure{'s' if moved > 1 else ''} brought forward by the AC check "
            f"of {', '.join(str(y) for y in years['years'])} (see the reasons in plan.csv)"
        )
    for y, broken in years.get("broken", {}).items():
        print(f"warning: in {y}, with the demands and measures up to it, the AC check breaks "
              f"{', '.join(broken[:5])}{'; ...' if len(broken) > 5 else ''} (the last year "
              "holds; summary.json years_checked)")  # fmt: skip
    print(f"-> {out}/")
    return 0


def _hosting(args: argparse.Namespace, crit) -> int:

    from lvplan.hosting import hosting_capacity
    from lvplan.hosting.outputs import FILES as HOSTING_FILES
    from lvplan.hosting.outputs import MAP_FILES, write_outputs
    from lvplan.hosting.run import clear_chunks
    from lvplan.io.atomic import refuse_inputs_among_outputs, refuse_other_output, without_dotdot
    from lvplan.io.folder_lock import locked_folders
    from lvplan.io.load import load_network

    workers = _int_arg("--workers", args.workers, 1, MAX_WORKERS)
    max_kw = _float_arg("--max-kw", args.max_kw)
    pf = None if args.pf is None else _float_arg("--pf", args.pf)
    _resume_folder(args.resume)
    if args.compare and not args.changes:
        raise InputError("--compare needs --changes (what to compare with)")
    before_net = load_network(args.network)
    net = _changed(before_net, args.changes)
    out = without_dotdot(args.out or args.resume or f"hosting-{net.name}")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    _not_root(out)
    made = not os.path.lexists(out)
    # one run per folder: a second run on it exits 2 and touches nothing (io/folder_lock.py)
    with locked_folders((out, "--out"), *([(args.resume, "--resume")] if args.resume else [])):
        refuse_other_output(out, "hosting")
        refuse_inputs_among_outputs(
            out,
            [f for f in HOSTING_FILES if not (args.no_maps and f in MAP_FILES)],
            [("--changes", args.changes), ("NETWORK", args.network)],
        )
        before = None
        if args.compare:  # the network as it is, for the before/after columns
            before = hosting_capacity(
                before_net, criteria=crit, pf=pf, max_kw=max_kw, workers=workers,
                scheduler=args.scheduler, progress=True if args.progress else None,
            )  # fmt: skip
        result = hosting_capacity(
            net,
            criteria=crit,
            pf=pf,
            max_kw=max_kw,
            workers=workers,
            scheduler=args.scheduler,
            work_dir=Path(args.resume) if args.resume else out,
            resume=bool(args.resume),
            progress=True if args.progress else None,
            n1=bool(args.n1),
            keep_chunks=True,
        )
        try:
            summary = write_outputs(
                result, net, crit, out, maps=not args.no_maps,
                before=None if before is None else (before, before_net),
            )  # fmt: skip
        except InputError:  # (a full disk) a folder this run made goes whole, as a plan's
            if made:
                clear_chunks(out)
            raise
        # (only now: a run that could not write its files into an existing folder keeps its
        # chunks for --resume; they were removed before the files were written: probe,
        # 2026-12-07)
        clear_chunks(Path(args.resume) if args.resume else out)
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
        return 0
    st = summary["stats"] or {}
    units, working = summary["transformers"], summary["transformers_in_operation"]
    print(
        f"hosting capacity of {summary['buses']} LV buses under "
        + (f"{units}" if working == units else f"{working} (of {units}, the rest not in operation)")
        + f" public transformers ({net.name}, profile {crit.profile}, pf {summary['pf']:g})"
    )
    for name, n in summary["classes"].items():
        print(f"  {name:<12} {n:>8} buses")
    if summary["buses_not_supplied"]:
        print(
            f"  not supplied {summary['buses_not_supplied']:>8} buses (nothing feeds them: no "
            "capacity)"
        )
    print("  binding: " + ", ".join(f"{k} {v}" for k, v in summary["binding_kinds"].items()))
    if summary["coordinates_note"]:  # (the maps and the table's lon/lat are empty: said why)
        print(f"  positions: {summary['coordinates_note']}")
    print(
        f"  prepare {st.get('prepare_s', 0):.1f} s, solve {st.get('solve_s', 0):.1f} s, "
        f"chunks {st.get('chunks')} (reused {st.get('chunks_reused')})"
    )
    if summary.get("n1"):
        n1 = summary["n1"]
        print(
            f"  N-1 ({st.get('n1_s') or 0:.1f} s): feeders failing N-1 already: "
            f"{', '.join(n1['feeders_failing']) or 'none'}; buses by hosting_kw_n1: "
            + ", ".join(f"{k} {v}" for k, v in n1["classes"].items())
        )
        pr = n1.get("pass_rate") or {}
        if pr.get("feeders"):
            print(
                f"  N-1 pass rate: {pr['feeders_passing']} of {pr['feeders']} feeders "
                f"({pr['feeder_pass_rate_percent']} %), {pr['contingencies_passing']} of "
                f"{pr['contingencies']} contingencies; class "
                f"{', '.join(pr['applies_to_area_classes'])} target {pr['target_percent']:g} %: "
                + ("meets" if pr["meets_target"] else "below")
            )
    if summary.get("compare"):
        c = summary["compare"]
        print(
            f"  with the changes: {c['buses_gaining']} buses gain hosting capacity "
            f"(+{c['total_gain_kw']:.0f} kW in all), {c['buses_losing']} lose, "
            f"{c['new_buses']} new buses"
        )
    print(f"written to {out}/: " + ", ".join(summary["files"]))
    return 0


def _register(args: argparse.Namespace) -> int:

    from lvplan.io.atomic import write_output_file
    from lvplan.register.store import NotFound, export_csv, open_backend, register_file

    local = register_file(args.register)  # (None: a database server's URL)
    if local is not None and not Path(local).is_file():
        raise InputError(f"--register {args.register}: no such register file")
    reg = open_backend(args.register, writable=False)
    if args.action == "list":
        apps = reg.all()
        if args.json:
            print(json.dumps([a.to_dict() for a in apps], indent=2, ensure_ascii=False))
            return 0
        for a in apps:
            d = a.decision
            b = (d.get("binding") or {}).get("kind", "")
            print(
                f"{a.seq:>6} {a.id:<24} {a.status:<15} bus {a.bus!s:<7} "
                f"{a.design_kw:>8.1f} kW  {b:<12} {a.created_at}"
            )
        print(f"{len(apps)} applications, {sum(a.reserves for a in apps)} reserving capacity")
        return 0
    if args.action == "show":
        if not args.arg:
            raise InputError("register show needs an application ID")
        app = reg.get(args.arg)
        if app is None:
            raise NotFound(f"no application {args.arg!r} in {reg.path}")
        full = app.to_dict() | {
            "network_fingerprint": app.network_fingerprint,
            "lvplan_version": app.lvplan_version,
            "events": reg.events(app.id),
        }
        print(json.dumps(full, indent=2, ensure_ascii=False))
        return 0
    if not args.arg:
        raise InputError("register export needs a CSV file to write")
    apps = reg.all()
    inputs = [("--register", local)]
    write_output_file(args.arg, export_csv(apps), flag="register export", inputs=inputs)
    print(f"exported {len(apps)} applications to {args.arg}")
    return 0


def _check_batch(args: argparse.Namespace, crit) -> int:
    from lvplan.io.load import load_network
    from lvplan.register.batch import run_batch

    return run_batch(
        load_network(args.network),
        args.applications,
        args.register,
        args.out,
        crit,
        progress=True if args.progress else None,
        migrate=args.migrate,
    )


#: ``lvplan serve --workers N``: the command line each worker process serves (JSON)
SERVE_ARGV_ENV = "LVPLAN_SERVE_ARGV"


def _serve_desk(args: argparse.Namespace, crit, *, migrate: bool):
    from lvplan.io.load import load_network
    from lvplan.register.desk import Desk
    from lvplan.register.store import open_backend

    jobs = _int_arg("--prepare-jobs", args.prepare_jobs, 1, MAX_WORKERS)
    t0 = time.monotonic()
    network = load_network(args.network)
    say = _startup_progress(t0) if args.progress else None
    if say is not None:
        say(f"network {network.name}: {len(network.pp.bus):,} buses loaded")
    desk = Desk(
        network,
        open_backend(args.register),
        crit,
        migrate=migrate,
        cache_dir=args.cache,
        prepare_jobs=jobs,
        progress=None if say is None else _island_progress(say),
    )
    if say is not None:
        isl = desk.network.islands()
        how = {"cache": "read from the cache", "prepared": "solved and prepared"}
        say(
            f"{len(isl) if isl else 1} MV islands {how.get(desk.prepared, 'solved whole')}, "
            f"{len(desk.network.reserved)} reservations counted"
        )
    if desk.migration is not None:
        reporter("lvplan: ")(desk.migration.summary())  # (its reader gone: quiet)
    return desk


def _startup_progress(t0: float):
    line = reporter("lvplan: ")

    def say(text: str) -> None:
        line(f"[{time.monotonic() - t0:6.1f} s] {text}")

    return say


def _island_progress(say):
    """A ``progress(done, total)`` that reports every tenth of the islands."""

    def progress(done: int, total: int) -> None:
        if done == total or done % max(1, total // 10) == 0:
            say(f"MV islands prepared: {done}/{total}")

    return progress


def serve_worker_app():
    """The app of one worker process of ``lvplan serve --workers N`` (uvicorn's factory): the
    parent checked the command line, the network and the register, and migrated it if asked."""
    args = build_parser().parse_args(json.loads(os.environ[SERVE_ARGV_ENV]))
    _import_dependencies()
    from lvplan.register.service import create_app

    desk = _serve_desk(args, _criteria(args), migrate=False)
    desk.warm()
    gc.collect()
    gc.freeze()
    return create_app(desk, os.environ["LVPLAN_TOKEN"], open_docs=args.open_docs)


def _serve(args: argparse.Namespace, crit) -> int:

    from lvplan.register.http_guard import READ_TIMEOUT_ENV, check_port_free
    from lvplan.register.service import create_app

    port = _int_arg("--port", args.port, 1, 65535)
    workers = _int_arg("--workers", args.workers, 1, MAX_WORKERS)
    read_s = _float_arg("--request-timeout", args.request_timeout)
    if not 0.1 <= read_s <= 3600:  # (1e-300 closed every connection before its first byte)
        raise InputError(
            f"--request-timeout must be in [0.1, 3600] s, got {args.request_timeout!r}"
        )
    os.environ[READ_TIMEOUT_ENV] = repr(read_s)  # (the workers inherit it)
    if args.token_file:
        from lvplan.io.textfile import read_text_bounded

        try:  # a token is a line; 64 kB is far more than any
            token = read_text_bounded(Path(args.token_file), "a token file", 2**16).strip()
        except InputError as exc:
            raise InputError(f"--token-file {exc}") from None
    else:
        token = os.environ.get("LVPLAN_TOKEN", "").strip()
    if not token:
        raise InputError("no token: set LVPLAN_TOKEN or give --token-file")
    if not (token.isascii() and token.isprintable()) or " " in token:
        raise InputError("token: must be printable ASCII without spaces (it travels in a header)")
    if not args.check:  # (a probe may run beside a live server on the port)
        check_port_free(args.host, port)
    if workers > 1 and not args.check:
        return _serve_workers(args, token, port, workers)
    desk = _serve_desk(args, crit, migrate=args.migrate)
    desk.warm()
    if args.progress:
        reporter("lvplan: ")("ready")  # (a reader that left does not stop the server)
    if args.check:
        print(
            f"ok: network {desk.pristine.name} ({desk.pristine.fingerprint[:12]}), register "
            f"{desk.register.path} writable, {len(desk.network.reserved)} reservations"
        )
        return 0
    import uvicorn

    # the network, its model and caches live as long as the server: keep them out of the
    # garbage collector's full passes (a pass over them stalled every answer for ~0.2 s)
    gc.collect()
    gc.freeze()
    app = create_app(desk, token, open_docs=args.open_docs)
    from lvplan.register.http_guard import GuardedProtocol

    uvicorn.run(
        app,
        host=args.host,
        port=port,
        log_level="warning",
        access_log=False,
        http=GuardedProtocol,
    )
    return 0


def _serve_workers(args: argparse.Namespace, token: str, port: int, workers: int) -> int:
    """``serve --workers N``: ``serve --check`` in a process of its own (the network loads, the
    register opens and is bound to it, migrated once if asked: exit 2 with its one line if
    not), then N worker processes behind the port (uvicorn binds it, spawns them and restarts
    one that dies). Each worker loads the network and opens the register itself; this process
    never holds a network. The probe prepares the MV islands once into the ``--cache``
    folder, and the workers (a restarted one too) read them from it; without ``--cache`` the
    folder is a private temporary one (mode 0700) of this run, removed when it ends (before,
    each worker solved and prepared every island again). That folder is held by this process
    (``io/owned_temp.py``): one a killed server left is removed by the next ``serve --workers``
    (before, it stayed in TMPDIR for ever: 243 MB for the 2,000-transformer city)."""
    import subprocess

    import uvicorn

    from lvplan.io.owned_temp import owned_temp_folder
    from lvplan.register.http_guard import GuardedProtocol

    argv = list(args.argv)
    with contextlib.ExitStack() as stack:
        if args.cache is None:
            own_cache = stack.enter_context(owned_temp_folder("serve-islands"))
            argv += ["--cache", str(own_cache)]
        os.environ["LVPLAN_TOKEN"] = token
        from lvplan.io import signed

        signed.key()  # (here: a key file not used is said once, not by the probe and each worker)
        probe = subprocess.run(
            [sys.executable, "-m", "lvplan.cli", *argv, "--check"], stdout=subprocess.DEVNULL
        )
        if probe.returncode:
            return probe.returncode
        os.environ[SERVE_ARGV_ENV] = json.dumps([a for a in argv if a != "--migrate"])
        uvicorn.run(
            "lvplan.cli:serve_worker_app",
            factory=True,
            workers=workers,
            host=args.host,
            port=port,
            log_level="warning",
            access_log=False,
            http=GuardedProtocol,
        )
    return 0


def _study(args: argparse.Namespace) -> int:
    from lvplan.io.atomic import without_dotdot
    from lvplan.study.run import load_and_run

    doc = load_and_run(
        args.file, None if args.out is None else str(without_dotdot(args.out)), args.progress
    )
    out = doc["out"]
    for h in doc["headline"]["networks"]:
        lo, hi = doc["headline"]["policy_low_kw"], doc["headline"]["policy_high_kw"]
        line = f"{h['label']}:"
        if "replay" in h:
            a, b = h["replay"][f"{lo:g}"], h["replay"][f"{hi:g}"]
            line += f" approved at zero cost {a['counts']['fits']}/{a['applications']} at {lo:g} kW"
            # (one policy: said once, not compared with itself; probe, 2026-12-07)
            line += (
                f", {b['counts']['fits']}/{b['applications']} at {hi:g} kW;" if hi != lo else ";"
            )
        if "extra_cost_cny" in h:
            line += f" parcel plan +{h['extra_cost_cny']:,.0f} CNY at {hi:g} kW;"
        print(line.rstrip(";"))
    print(f"report: {out}/report.html (and report.md)")
    return 0


def _synth(args: argparse.Namespace) -> int:
    if args.what == "demand":
        return _synth_demand(args)
    if args.what == "parcels":
        return _synth_parcels(args)

    from lvplan.synth import build_city, write_network

    n = _int_arg("--transformers", args.transformers, 1, 20_000)  # 20,000: about 1.6 M buses
    seed = _int_arg("--seed", args.seed, 0)
    net = build_city(n, seed=seed)
    write_network(net, Path(args.out), name=f"synth-city-{n}-seed{seed}")
    print(
        f"synthetic city: {len(net.bus)} buses, {len(net.trafo)} transformers, "
        f"{len(net.line)} lines, {len(net.load)} loads -> {args.out}"
    )
    return 0


def _synth_demand(args: argparse.Namespace) -> int:
    import math

    from lvplan.io.atomic import check_output_file
    from lvplan.io.load import load_network
    from lvplan.planning.synth_demand import MAX_COUNT, synth_demand, write_synth_demand

    count = _int_arg("--count", args.count, 1, MAX_COUNT)
    seed = _int_arg("--seed", args.seed, 0)
    years: tuple[int, int] | None = None
    if args.years.strip().lower() != "none":
        first, sep, last = args.years.strip().partition("-")
        try:
            years = (read_int(first), read_int(last if sep else first))
        except ValueError:
            raise InputError(f"--years takes FIRST-LAST or none, got {args.years!r}") from None
        if not 2000 <= years[0] <= years[1] <= 2100:
            raise InputError(f"--years must be FIRST-LAST within 2000..2100, got {args.years!r}")
    try:
        far_share = read_float(args.far_share)
    except ValueError:
        far_share = math.nan
    if not 0 <= far_share <= 1:
        raise InputError(f"--far-share must be a number in [0, 1], got {args.far_share!r}")
    crit = _criteria(args)
    if args.area_class is not None and args.area_class not in crit.supply_radius_m:
        known = ", ".join(crit.supply_radius_m)
        raise InputError(f"--area-class: unknown area class {args.area_class!r}; known: {known}")
    check_output_file(args.out, inputs=[("the network", args.network)])
    net = load_network(args.network)
    check_output_file(args.out, inputs=[("the network", net.source)])
    demand = synth_demand(
        net,
        count=count,
        seed=seed,
        criteria=crit,
        years=years,
        area_class=args.area_class,
        far_share=far_share,
    )
    write_synth_demand(demand, args.out)
    print(
        f"synthetic demand: {len(demand.rows)} demands in {demand.clusters} clusters "
        f"({demand.far_clusters} beyond every supply radius, {len(demand.far_ids)} demands) "
        f"on {net.name} -> {args.out}"
    )
    return 0


def _synth_parcels(args: argparse.Namespace) -> int:
    from lvplan.io.atomic import check_output_file
    from lvplan.io.load import load_network
    from lvplan.planning.synth_parcels import synth_parcels, write_parcels

    count = _int_arg("--count", args.count, 1)
    seed = _int_arg("--seed", args.seed, 0)
    first, sep, last = args.years.strip().partition("-")
    try:
        years = (read_int(first), read_int(last if sep else first))
    except ValueError:
        raise InputError(f"--years takes FIRST-LAST, got {args.years!r}") from None
    if not 2000 <= years[0] <= years[1] <= 2100:
        raise InputError(f"--years must be FIRST-LAST within 2000..2100, got {args.years!r}")
    crit = _criteria(args)
    check_output_file(args.out, inputs=[("the network", args.network)])
    net = load_network(args.network)
    check_output_file(args.out, inputs=[("the network", net.source)])
    rows = synth_parcels(net, count=count, seed=seed, criteria=crit, years=years)
    write_parcels(rows, args.out)
    uses: dict[str, int] = {}
    for r in rows:
        uses[r["land_use"]] = uses.get(r["land_use"], 0) + 1
    print(
        f"synthetic parcels: {len(rows)} on {net.name} ("
        + ", ".join(f"{k} {v}" for k, v in sorted(uses.items()))
        + f") -> {args.out}"
    )
    return 0


def _import_dependencies() -> None:
    """Import pandapower (with pandas, scipy, numba) with the cyclic garbage collector paused, then
    freeze what the imports left.

    They leave ~270,000 long-lived objects, and each full collection over them took ~0.2 s: four
    while importing, one during a check and one more at exit, about 1 s of a cold ``lvplan check``.
    Frozen, they are never scanned again (they live as long as the process anyway). Nothing is
    done when pandapower is already imported (``main`` called from Python).
    """
    if "pandapower" in sys.modules:
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        import lvplan.io.load  # noqa: F401 - pandapower, pandas, scipy, numba, networkx
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # named by the command they were given to, and its --help
        given = list(sys.argv[1:] if argv is None else argv)
        where = _subparser(parser, args, given, unknown[0])
        where.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for serve --workers
    _import_dependencies()
    code_hash()  # (the code this run starts with names its kept work: lvplan.code_id)
    from lvplan.planning import interrupt

    was = interrupt.stop_on_signals()  # SIGTERM and SIGHUP end a run as Ctrl-C does
    try:
        if args.command in ("plan", "study"):  # Ctrl-C stops a CP-SAT search at once
            with interrupt.watch():
                return _run(args)
        return _run(args)
    except (InputError, BaseCaseError) as exc:  # (a network with no AC base: a bad network)
        print(f"lvplan: error: {exc}", file=sys.stderr)
        return 2
    except LvplanError as exc:
        print(f"lvplan: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        code = interrupt.exit_code()
        if code != 130:
            with contextlib.suppress(OSError):  # (a SIGHUP: the terminal may be gone)
                print(f"lvplan: stopped by {signal.Signals(code - 128).name}", file=sys.stderr)
        return code
    except RecursionError:  # an input nested past Python's stack (TOML, JSON): one line
        print("lvplan: error: an input file is nested too deeply to read", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (``lvplan ... | head``): no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except OSError as exc:  # stdout on a full disk (``> /dev/full``), after the files were written
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        print(f"lvplan: error: cannot write the output: {exc.strerror or exc}", file=sys.stderr)
        return 1
    finally:
        interrupt.restore(was)  # (a caller of main() in its own process keeps its handlers)


def entry() -> NoReturn:
    """The console script ``lvplan`` (and ``python -m lvplan.cli``): :func:`main`, then exit with
    its code. While a solver thread that cannot be stopped is still inside its C++ code (HiGHS
    bounding a plan, :func:`lvplan.planning.interrupt.native_running`: after Ctrl-C, or a
    bound still running at the end), the process ends with ``os._exit`` once stdout and stderr
    are flushed: Python's own exit would abort it (SIGABRT). Every output is written or removed
    by then (files are staged, :func:`lvplan.io.atomic.staged_files`). An exception main() does
    not handle (a bug) ends it the same way, with its traceback and exit code 1."""

    def native_running() -> bool:
        interrupt = sys.modules.get("lvplan.planning.interrupt")
        return interrupt is not None and interrupt.native_running()

    try:
        try:
            code = main()
        finally:  # main() is done: a Ctrl-C from here on is ignored
            with contextlib.suppress(ValueError):  # (not the main thread)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
    except KeyboardInterrupt:  # (a second Ctrl-C before that, once main() handled the first)
        code = 130
    except Exception:
        if not native_running():
            raise
        import traceback

        traceback.print_exc()
        code = 1
    if native_running():
        sys.modules["lvplan.planning.interrupt"].end_now(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
