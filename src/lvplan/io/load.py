"""``load_network``: one entry for every kind of NETWORK argument."""

from __future__ import annotations

import json
import os
from pathlib import Path

from lvplan.errors import InputError
from lvplan.io.netfolder import read_bytes, read_folder, read_meta
from lvplan.io.simbench_source import load_simbench
from lvplan.io.textfile import not_utf8
from lvplan.model.network import Network


def networks_dir() -> Path:
    """The bundled networks/ folder (``LVPLAN_NETWORKS`` overrides)."""
    env = os.environ.get("LVPLAN_NETWORKS")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent / "networks"
        if cand.is_dir() and (parent / "pyproject.toml").is_file():
            return cand
    return Path.cwd() / "networks"


def bundled_networks() -> list[str]:
    d = networks_dir()
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if (p / "network.toml").is_file())


def _read_json(path: Path):
    import pandapower as pp

    data = read_bytes(path)
    try:
        text = data.decode("utf-8-sig")
        parsed = json.loads(text)
    except UnicodeDecodeError as exc:
        raise not_utf8(path, data[:4], exc.start) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: malformed JSON: {exc}") from None
    except RecursionError:
        raise InputError(f"{path}: malformed JSON: nested too deeply") from None
    if not isinstance(parsed, dict):
        kind = "null" if parsed is None else type(parsed).__name__
        raise InputError(f"{path}: not a pandapower network: the JSON holds {kind}, not an object")
    try:
        net = pp.from_json_string(text)
    except Exception as exc:  # pandapower raises many kinds on foreign JSON
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: not a pandapower network: {first}") from None
    if not isinstance(net, pp.pandapowerNet):
        raise InputError(f"{path}: not a pandapower network (no saved pandapowerNet in the JSON)")
    return net


def load_network(spec: str | os.PathLike, *, validate: bool = True) -> Network:
    """A Network from a pandapower JSON file, a networks/ folder or name, or ``simbench:CODE``.

    Raises ``InputError`` (``InvalidNetwork`` for a network that fails validation).
    """
    text = str(spec)
    kind, path = _locate(text)
    if kind == "simbench":
        code = text.split(":", 1)[1]
        return Network(load_simbench(code), name=code, source=text, validate=validate)
    if kind == "folder":
        meta = read_meta(path)
        source = str(meta.get("source", "csv"))
        name = str(meta.get("name", path.name))
        if source.startswith("simbench:"):
            code = source.split(":", 1)[1]
            net = load_simbench(code, study_case=str(meta.get("study_case", "hL")))
        else:
            net = read_folder(path)
        return Network(net, name=name, source=str(path), validate=validate)
    return Network(_read_json(path), name=path.stem, source=str(path), validate=validate)


def check_network_spec(spec: str) -> None:
    """What :func:`load_network` would refuse before reading a table (one line, InputError):
    nothing by that name, a folder without ``network.toml`` (or a malformed one), a file that
    is not ``.json``, an unknown SimBench code, in a folder's ``network.toml`` too. A study
    checks every network so before the first one runs."""
    from lvplan.io.simbench_source import check_code

    kind, path = _locate(spec)
    if kind == "simbench":
        check_code(spec.split(":", 1)[1])
    elif kind == "folder":
        source = str(read_meta(path).get("source", "csv"))
        if source.startswith("simbench:"):
            check_code(source.split(":", 1)[1])


def _locate(text: str) -> tuple[str, Path]:
    """("simbench" | "folder" | "file", path) of a network spec; InputError when it names
    nothing a network can be loaded from."""
    if text.startswith("simbench:"):
        return "simbench", Path()
    if not text.strip():
        raise InputError(
            "network: empty name (give a file, a folder, a bundled name or simbench:CODE)"
        )
    shown = repr(text) if len(text) <= 80 else repr(text[:60]) + f"... ({len(text)} characters)"
    if "\0" in text:
        raise InputError(f"network {shown}: a path cannot contain a NUL character")
    path = Path(text)
    try:
        if not path.is_absolute() and os.sep not in text:
            # a bundled name, unless a network by that name is here: a folder here that is no
            # network (a study's output for that network, `study --out .`) does not hide it
            # (it did: a second run read "sz-futian: no network.toml (not a network folder)")
            bundled = networks_dir() / text
            here = path.is_file() or (path / "network.toml").is_file()
            named = text not in (".", "..") and (bundled / "network.toml").is_file()
            if named and not here:
                path = bundled
        is_dir, is_file = path.is_dir(), path.is_file()
    except OSError as exc:
        raise InputError(f"network {shown}: {exc.strerror or exc}") from None
    if is_dir:
        return "folder", path
    if is_file:
        if path.suffix.lower() != ".json":
            raise InputError(f"{path}: unsupported network file (expected pandapower .json)")
        return "file", path
    known = ", ".join(bundled_networks()) or "none"
    raise InputError(
        f"network {shown} not found: not a file, a folder, a bundled network ({known}) "
        "or simbench:CODE"
    )
