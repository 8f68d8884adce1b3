"""Network changes (what-if): a typed, immutable change set, its file format, and what it does
to the pandapower tables. ``lvplan.evaluate`` solves a network with changes exactly."""

from __future__ import annotations

from pathlib import Path

from lvplan.changes.spec import (
    KINDS,
    TRAFO_LADDER_KVA,
    AddLoad,
    AddParallelLine,
    AddParallelTransformer,
    Change,
    Changes,
    MoveTransformer,
    NewLvCable,
    NewSubstation,
    NewTie,
    OpenLine,
    ReplaceLine,
    ReplaceTransformer,
    SetSwitch,
    SetTap,
    Transfer,
)
from lvplan.errors import InputError

__all__ = [
    "KINDS",
    "TRAFO_LADDER_KVA",
    "AddLoad",
    "AddParallelLine",
    "AddParallelTransformer",
    "Change",
    "Changes",
    "MoveTransformer",
    "NewLvCable",
    "NewSubstation",
    "NewTie",
    "OpenLine",
    "ReplaceLine",
    "ReplaceTransformer",
    "SetSwitch",
    "SetTap",
    "Transfer",
    "load_changes",
]


#: A changes file lists measures by hand or from a plan: 16 MB is some 100,000 of them.
MAX_CHANGES_BYTES = 16 * 2**20


def load_changes(path: str | Path) -> Changes:
    """A changes file: TOML (``[[changes]]`` tables) or YAML (``changes:`` list), each entry
    ``kind = ...`` and its fields. Raises InputError naming the file, the change and the field."""
    from lvplan.io.textfile import read_text_bounded

    p = Path(path)
    try:
        text = read_text_bounded(p, "a changes file", MAX_CHANGES_BYTES)
    except InputError as exc:  # a folder, unreadable, too large (a device), not UTF-8
        raise InputError(f"--changes {exc}") from None
    suffix = p.suffix.lower()
    try:
        if suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            from lvplan.io.strict_yaml import load_yaml

            data = load_yaml(text)
        else:
            raise InputError(f"--changes {p}: expected a .toml, .yaml or .yml file")
    except InputError:
        raise
    except Exception as exc:  # tomllib.TOMLDecodeError, yaml.YAMLError, RecursionError
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"--changes {p}: malformed file: {first}") from None
    try:
        return Changes.from_dict(data if data is not None else {"changes": []})
    except InputError as exc:
        raise InputError(f"--changes {p}: {exc}") from None
