"""Which lvplan made a piece of kept work: the version and a hash of the package's own code.

lvplan keeps work between runs: the prepared MV islands of a network (the islands cache), a
plan's finished groups (``--resume``, ``DIR/parts/``) and a hosting map's finished chunks
(``--resume``, ``DIR/chunks/``). Each is read back only by the lvplan that wrote it. The
version alone did not say that: it stays ``0.1.0`` from one commit to the next, so a run cut
short under one commit and resumed under a later one kept the earlier code's answers (a fix to
the hosting search would not reach the chunks done before it). :func:`code_id` adds a hash of
every ``.py`` and ``.toml`` file of the installed package (their paths and bytes): any change
to the code, the bundled profiles or the catalogue is another lvplan, whose work is done again.
So is a change of the libraries that compute or pickle that work (:data:`DEPENDENCIES`: a
pandapower release can change the physics, a pandas one the pickles), whose versions are
hashed with the code. The hash is taken when the command starts (``lvplan.cli.main``), so a
long run names the code it started with, not files changed under it meanwhile.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

#: the hash's length in hex digits (48 bits: two builds that differ never share one in practice)
DIGITS = 12


def code_id() -> str:
    """``VERSION+HASH``: the version and the hash of the package's code (:func:`code_hash`)."""
    from lvplan import __version__

    return f"{__version__}+{code_hash()}"


#: the libraries whose versions are part of the hash (the physics, the solvers, the pickles)
DEPENDENCIES = ("pandapower", "pandas", "numpy", "scipy", "networkx", "numba", "ortools",
                "highspy")  # fmt: skip


@functools.cache
def code_hash() -> str:
    """The hash of this package's ``.py`` and ``.toml`` files and of the versions of
    :data:`DEPENDENCIES` (made once a process; about 5 ms)."""
    return tree_hash(Path(__file__).resolve().parent, dependency_versions())


def dependency_versions() -> str:
    """``name==version`` of each of :data:`DEPENDENCIES` (``none`` where not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in DEPENDENCIES:
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            out.append(f"{name}==none")
    return ";".join(out)


def tree_hash(root: Path, extra: str = "") -> str:
    """The first :data:`DIGITS` hex digits of a SHA-256 over ``extra`` and the ``.py`` and
    ``.toml`` files under ``root``: each one's path (relative, ``/``-separated) and bytes, by
    path; a file's time or mode is not part of it."""
    h = hashlib.sha256(extra.encode())
    files = sorted(p for p in root.rglob("*") if p.suffix in (".py", ".toml") and p.is_file())
    for p in files:
        rel = p.relative_to(root).as_posix().encode()
        data = p.read_bytes()
        h.update(len(rel).to_bytes(4, "big") + rel + len(data).to_bytes(8, "big") + data)
    return h.hexdigest()[:DIGITS]
