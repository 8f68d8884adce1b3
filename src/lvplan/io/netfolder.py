"""The networks/ folder format: one CSV per pandapower table plus ``network.toml``.

A folder holds ``network.toml`` (name, description, source) and either
``source = "simbench:CODE"`` (the network is converted from the SimBench package on load) or the
tables ``bus.csv``, ``line.csv``, ``trafo.csv``, ``load.csv``, ``ext_grid.csv`` and optionally
``switch.csv``, ``sgen.csv``. Columns are pandapower's; ``bus.csv`` has ``lon``/``lat`` (WGS84)
instead of pandapower's ``geo``. CSV keeps every network reviewable and diffable in git.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tomllib
from pathlib import Path

import numpy as np
import pandapower as pp
import pandas as pd

from lvplan.errors import InputError
from lvplan.io.textfile import not_utf8

TABLES = ("bus", "line", "trafo", "load", "ext_grid", "switch", "sgen")
REQUIRED = ("bus", "line", "trafo", "load", "ext_grid")


def read_bytes(path: Path) -> bytes:
    """The bytes of ``path``; InputError (naming the file and the reason) when unreadable."""
    try:
        return path.read_bytes()
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, expected a file") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _text(path: Path) -> str:
    """UTF-8 text of ``path`` (a byte-order mark is dropped)."""
    data = read_bytes(path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise not_utf8(path, data[:4], exc.start) from None


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None


def read_meta(folder: Path) -> dict:
    meta_path = folder / "network.toml"
    if not _is_file(meta_path):
        if meta_path.is_dir():
            raise InputError(f"{meta_path}: is a folder, expected a file")
        raise InputError(f"{folder}: no network.toml (not a network folder)")
    try:
        return tomllib.loads(_text(meta_path))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{meta_path}: malformed TOML: {exc}") from None


def _rows(text: str):
    """(line number, cells) of every non-blank row after the header."""
    reader = csv.reader(io.StringIO(text))
    next(reader, None)
    for row in reader:
        if row:
            yield reader.line_num, row


def _read_csv(path: Path) -> pd.DataFrame:
    """One table: every row has as many cells as the header, the first column is a unique
    integer index. Errors name the file and the line."""
    text = _text(path)
    try:
        header = next(csv.reader(io.StringIO(text)), None)
        if not header or not any(c.strip() for c in header):
            raise InputError(f"{path}: empty table (no header line)")
        width = len(header)
        # without quotes a row's cells are its commas plus one: a fast test first
        plain = '"' not in text and "\r" not in text
        if not plain or any(line.count(",") != width - 1 for line in text.split("\n")[1:] if line):
            for n, row in _rows(text):
                if len(row) != width:
                    raise InputError(f"{path} line {n}: {len(row)} cells, the header has {width}")
    except csv.Error as exc:
        raise InputError(f"{path}: malformed CSV: {exc}") from None
    try:
        df = pd.read_csv(io.StringIO(text), index_col=0, low_memory=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise InputError(f"{path}: malformed CSV: {str(exc).splitlines()[0]}") from None
    if len(df) and not pd.api.types.is_integer_dtype(df.index.dtype):
        for n, row in _rows(text):
            try:
                np.int64(int(row[0].strip()))
            except (ValueError, OverflowError):
                raise InputError(
                    f"{path} line {n}: index {row[0]!r} is not an integer (of 64 bits)"
                ) from None
        raise InputError(f"{path}: the index column holds values that are not integers")
    if df.index.has_duplicates:
        first: dict[int, int] = {}
        for n, row in _rows(text):
            key = int(row[0].strip())
            if key in first:
                raise InputError(
                    f"{path} line {n}: duplicated index {key} (also on line {first[key]})"
                )
            first[key] = n
    return df


_TRUE = {"true", "1", "1.0", "yes"}
_FALSE = {"false", "0", "0.0", "no"}


def _convert(path: Path, col: str, values: pd.Series, dtype) -> pd.Series:
    """``values`` as ``dtype``, refusing what a cast would change silently (1.5 -> 1,
    "maybe" -> True); the error names the file, column, row and value."""

    def bad(i, v, what: str):
        return InputError(f"{path}: column {col!r}, row {i}: {str(v)!r} is not {what}")

    if pd.api.types.is_bool_dtype(dtype):
        if pd.api.types.is_bool_dtype(values.dtype):
            return values.astype(bool)
        out = []
        for i, v in values.items():
            if isinstance(v, bool | np.bool_):
                out.append(bool(v))
                continue
            word = str(v).strip().lower()
            if word in _TRUE:
                out.append(True)
            elif word in _FALSE:
                out.append(False)
            elif v is None or (isinstance(v, float) and np.isnan(v)):
                out.append(col in ("in_service", "closed"))  # an empty cell: the default
            else:
                raise bad(i, v, "True or False")
        return pd.Series(out, index=values.index, dtype=bool)
    if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        num = pd.to_numeric(values, errors="coerce")
        text = values.isna() | num.notna()
        if not text.all():
            i = values.index[~text.to_numpy()][0]
            raise bad(i, values[i], "a number")
        if pd.api.types.is_integer_dtype(dtype):
            whole = num.isna() | (num == num.round())
            if not whole.all():
                i = values.index[~whole.to_numpy()][0]
                raise bad(i, values[i], "an integer")
            if str(dtype).startswith("uint"):
                neg = num < 0
                if neg.any():
                    i = values.index[neg.to_numpy()][0]
                    raise bad(i, values[i], "an integer >= 0")
        try:
            return num.astype(dtype)
        except (TypeError, ValueError, OverflowError) as exc:
            first = num.index[num.isna().to_numpy()]
            if len(first):
                raise bad(first[0], values[first[0]], "a number (the cell is empty)") from None
            raise InputError(f"{path}: column {col!r}: {exc}") from None
    try:
        return values.astype(dtype)
    except (TypeError, ValueError):
        raise InputError(f"{path}: column {col!r} has values that are not {dtype}") from None


def read_folder(folder: Path):
    """A pandapower net from the CSV tables of ``folder``."""
    net = pp.create_empty_network(name=folder.name)
    for name in TABLES:
        path = folder / f"{name}.csv"
        if not _is_file(path):
            if path.is_dir():
                raise InputError(f"{path}: is a folder, expected a file")
            if name in REQUIRED:
                raise InputError(f"{folder}: missing table {name}.csv")
            continue
        df = _read_csv(path)
        if name == "bus" and {"lon", "lat"} <= set(df.columns):
            lon = _convert(path, "lon", df.pop("lon"), np.dtype(float))
            lat = _convert(path, "lat", df.pop("lat"), np.dtype(float))
            df["geo"] = [
                None
                if np.isnan(x) or np.isnan(y)
                else json.dumps({"type": "Point", "coordinates": [float(x), float(y)]})
                for x, y in zip(lon, lat, strict=True)
            ]
        template = net[name]
        full = template.reindex(columns=list(template.columns)).iloc[0:0]
        out = pd.concat([full, df], axis=0)
        for col, dtype in template.dtypes.items():
            if col in df.columns:
                out[col] = _convert(path, str(col), out[col], dtype)
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


def write_folder(net, folder: Path, meta: dict, *, flag: str = "--out") -> None:
    """Write ``net`` as CSV tables (used by the network builders in networks/).

    All or nothing: the tables go to a hidden folder beside ``folder`` first, which then takes
    its place in one rename (a full disk or a killed run leaves ``folder`` as it was, never
    half a network; a network folder there before is replaced whole, so no table of it stays
    beside the new ones). A ``folder`` that holds other files than a network's is refused.
    Failures are one line (:class:`InputError`) naming ``flag``."""
    import shutil

    from lvplan.io.atomic import OLD_SUFFIX, output_errors, temp_folder, without_dotdot

    folder = without_dotdot(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{flag} {folder}: exists and is not a folder")
    if folder.is_symlink():  # (the rename would put a folder in place of the link)
        raise InputError(f"{flag} {folder}: is a symbolic link; give the folder itself")
    if folder.is_dir():
        # replaced whole: anything in it that is not a network table would be lost with it (a
        # network folder's notes, a folder inside; found by review). The working folder, or
        # one above it, is never replaced
        try:
            here = os.path.realpath(os.getcwd())
        except OSError:  # (a working folder removed: nothing under it to guard)
            here = ""
        real = os.path.realpath(folder)
        if here and (here == real or here.startswith(real.rstrip(os.sep) + os.sep)):
            raise InputError(f"{flag} {folder}: is the working folder or above it")
        ours = {"network.toml", *(f"{t}.csv" for t in TABLES)}
        other = sorted(e.name for e in os.scandir(folder) if e.name not in ours or e.is_dir())
        if not other and any(folder.iterdir()) and not (folder / "network.toml").is_file():
            other = ["no network.toml beside its tables"]  # (a load.csv of the user's own)
        if other:
            shown = ", ".join(other[:3]) + (f" and {len(other) - 3} more" if len(other) > 3 else "")
            raise InputError(
                f"{flag} {folder}: a folder with other files than a network's ({shown}); give "
                "a new or empty folder (or a network folder to replace)"
            )
    with output_errors(flag, folder):
        par = folder.parent
        par.mkdir(parents=True, exist_ok=True)
        stage = temp_folder(par, folder.name)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(stage, 0o777 & ~mask)  # mkdtemp's 0700: the folder as mkdir would make it
        old = None
        try:
            _write_tables(net, stage, meta)
            if folder.is_dir():
                old = temp_folder(par, folder.name, suffix=OLD_SUFFIX)
                folder.rename(old / "net")  # the old network moves aside, then the new one in
            stage.rename(folder)
        except BaseException:
            if old is not None and (old / "net").is_dir() and not folder.exists():
                (old / "net").rename(folder)  # put the old network back
            raise
        finally:
            shutil.rmtree(stage, ignore_errors=True)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)


def _write_tables(net, folder: Path, meta: dict) -> None:
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
        with open(folder / f"{name}.csv", "w", encoding="utf-8", newline="") as fh:
            df.to_csv(fh, float_format="%.10g")
            fh.flush()
            os.fsync(fh.fileno())
    lines = [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in meta.items()]
    (folder / "network.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
