"""The networks/ folder format: one CSV per pandapower table plus ``network.toml``.

A folder holds ``network.toml`` (name, description, source) and either
``source = "simbench:CODE"`` (the network is converted from the SimBench package on load) or the
tables ``bus.csv``, ``line.csv``, ``trafo.csv``, ``load.csv``, ``ext_grid.csv`` and optionally
``switch.csv``, ``sgen.csv``. Columns are pandapower's; ``bus.csv`` has ``lon``/``lat`` (WGS84)
instead of pandapower's ``geo``. CSV keeps every network reviewable and diffable in git.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pandapower as pp
import pandas as pd

from lvplan.errors import InputError

TABLES = ("bus", "line", "trafo", "load", "ext_grid", "switch", "sgen")
REQUIRED = ("bus", "line", "trafo", "load", "ext_grid")


def read_meta(folder: Path) -> dict:
    meta_path = folder / "network.toml"
    if not meta_path.is_file():
        raise InputError(f"{folder}: no network.toml (not a network folder)")
    try:
        return tomllib.loads(meta_path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{meta_path}: malformed TOML: {exc}") from None


def read_folder(folder: Path):
    """A pandapower net from the CSV tables of ``folder``."""
    net = pp.create_empty_network(name=folder.name)
    for name in TABLES:
        path = folder / f"{name}.csv"
        if not path.is_file():
            if name in REQUIRED:
                raise InputError(f"{folder}: missing table {name}.csv")
            continue
        try:
            df = pd.read_csv(path, index_col=0, low_memory=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: malformed CSV: {str(exc).splitlines()[0]}") from None
        if name == "bus" and {"lon", "lat"} <= set(df.columns):
            df["geo"] = [
                json.dumps({"type": "Point", "coordinates": [float(x), float(y)]})
                for x, y in zip(df.pop("lon"), df.pop("lat"), strict=True)
            ]
        template = net[name]
        full = template.reindex(columns=list(template.columns)).iloc[0:0]
        out = pd.concat([full, df], axis=0)
        for col, dtype in template.dtypes.items():
            if col in df.columns:
                try:
                    out[col] = out[col].astype(dtype)
                except (TypeError, ValueError):
                    raise InputError(
                        f"{path}: column {col!r} has values that are not {dtype}"
                    ) from None
        for col in template.columns:
            if col not in df.columns and template[col].dtype == bool:
                out[col] = col in ("in_service", "closed")
        if "parallel" in out.columns:
            out["parallel"] = out["parallel"].fillna(1).astype("uint32")
        if "df" in out.columns:
            out["df"] = out["df"].fillna(1.0)
        if "scaling" in out.columns:
            out["scaling"] = out["scaling"].fillna(1.0)
        net[name] = out
    _fill_defaults(net)
    return net


def _fill_defaults(net) -> None:
    """Defaults pandapower's create_* functions would have set for columns a CSV left out."""
    if len(net.trafo):
        defaults = {
            "shift_degree": 0.0,
            "pfe_kw": 0.0,
            "i0_percent": 0.0,
            "tap_pos": 0,
            "tap_neutral": 0,
            "tap_min": 0,
            "tap_max": 0,
            "tap_step_percent": 0.0,
            "tap_side": "hv",
            "tap_phase_shifter": False,
        }
        for col, val in defaults.items():
            if col in net.trafo.columns:
                net.trafo[col] = net.trafo[col].fillna(val)
    if len(net.load):
        for col in (
            "const_z_p_percent",
            "const_i_p_percent",
            "const_z_q_percent",
            "const_i_q_percent",
        ):
            if col in net.load.columns:
                net.load[col] = net.load[col].fillna(0.0)
    if len(net.line):
        for col in ("c_nf_per_km", "g_us_per_km"):
            net.line[col] = net.line[col].fillna(0.0)
    if len(net.ext_grid):
        net.ext_grid["va_degree"] = net.ext_grid["va_degree"].fillna(0.0)


def write_folder(net, folder: Path, meta: dict) -> None:
    """Write ``net`` as CSV tables (used by the network builders in networks/)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        if name not in net or net[name].empty:
            continue
        df = net[name].copy()
        if name == "bus" and {"lon", "lat"} <= set(df.columns):
            df = df.drop(columns=["geo"], errors="ignore")
        elif name == "bus" and "geo" in df.columns:
            pts = [
                json.loads(g)["coordinates"] if isinstance(g, str) else [None, None]
                for g in df.pop("geo")
            ]
            df["lon"] = [round(p[0], 6) if p[0] is not None else None for p in pts]
            df["lat"] = [round(p[1], 6) if p[1] is not None else None for p in pts]
        df = df.dropna(axis=1, how="all")
        df.to_csv(folder / f"{name}.csv", float_format="%.10g")
    lines = [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in meta.items()]
    (folder / "network.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
