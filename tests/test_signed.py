"""Pickles lvplan keeps (a plan's groups for ``--resume``, the islands cache, the synthetic
city's templates) are read back only when this user's lvplan wrote them
(:mod:`lvplan.io.signed`): a file put there by anyone else is never unpickled."""

from __future__ import annotations

import os
import pickle
import stat
from pathlib import Path

import pytest

from lvplan.io import signed
from lvplan.io.atomic import atomic_file


class _Runs:
    """A pickle that, when loaded, writes the file it names (what a forged one would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def own_key(tmp_path, monkeypatch):
    path = tmp_path / "conf" / "pickle.key"
    monkeypatch.setenv("LVPLAN_KEY_FILE", str(path))
    return path


def _read(path, data: bytes):
    """What :func:`signed.verified` reads back of a file holding ``data`` (None: refused)."""
    path.write_bytes(data)
    path.chmod(0o600)
    with signed.verified(path) as fh:
        return None if fh is None else pickle.load(fh)


def test_a_signed_pickle_reads_back_and_the_key_is_kept_private(own_key, tmp_path):
    assert _read(tmp_path / "s.pickle", signed.dumps({"a": [1, 2.5, "x"]})) == {"a": [1, 2.5, "x"]}
    assert stat.S_IMODE(own_key.stat().st_mode) == 0o600 and own_key.stat().st_size == 32
    first = signed.key()
    assert own_key.read_bytes() == first
    # streamed, several pickles in one file, as the islands cache writes them
    path = tmp_path / "big.pickle"
    with atomic_file(path, mode=0o600) as fh, signed.signing(fh) as w:
        pickle.dump("head", w)
        pickle.dump(list(range(300_000)), w)
    with signed.verified(path) as fh:
        assert fh is not None
        assert pickle.load(fh) == "head" and pickle.load(fh)[-1] == 299_999


def test_a_pickle_lvplan_did_not_sign_is_never_unpickled(own_key, tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "f.pickle"
    forged = pickle.dumps(_Runs(marker))
    assert _read(path, forged) is None
    assert _read(path, signed.MAGIC + bytes(32) + forged) is None
    good = signed.dumps([1, 2, 3])
    flipped = bytearray(good)
    flipped[-3] ^= 1
    assert _read(path, bytes(flipped)) is None
    assert _read(path, good[:-1]) is None and _read(path, b"") is None
    assert _read(path, good) == [1, 2, 3]
    assert not marker.exists()
    # signed by another key (another user's, or before the key changed): refused too
    mine = signed.dumps(_Runs(marker))
    os.environ["LVPLAN_KEY_FILE"] = str(tmp_path / "other" / "pickle.key")
    assert _read(path, mine) is None
    assert not marker.exists()


def test_the_group_store_reads_back_its_groups_whatever_the_umask(own_key, tmp_path):
    """A group is written 0600 (only its owner may read it: a pickle of a plan) and read back
    through :func:`signed.verified`, under a loose umask too."""
    from lvplan.planning.groups import GroupResult, GroupStore

    store = GroupStore(tmp_path, resume=False)
    res = GroupResult(index=0, key="d" * 64, plan=None, error="none", seconds=1.5)
    old = os.umask(0o002)
    try:
        store.put(res)
    finally:
        os.umask(old)
    kept = tmp_path / "parts" / ("d" * 64 + ".pkl")
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert GroupStore(tmp_path, resume=True).get("d" * 64) == res


def test_a_file_others_may_write_or_a_key_others_may_read_is_not_trusted(
    own_key, tmp_path, capsys, monkeypatch
):
    monkeypatch.delenv("LVPLAN_KEY_FILE_SAID", raising=False)

    def said() -> list[str]:
        return capsys.readouterr().err.splitlines()

    path = tmp_path / "f.pickle"
    with atomic_file(path) as fh, signed.signing(fh) as w:
        pickle.dump(7, w)
    with signed.verified(path) as fh:
        assert fh is not None and pickle.load(fh) == 7
    path.chmod(0o666)  # anyone may have rewritten it
    with signed.verified(path) as fh:
        assert fh is None
    link = tmp_path / "link.pickle"
    path.chmod(0o644)
    link.symlink_to(path)
    with signed.verified(link) as fh:
        assert fh is None
    # a key file others can read is not used: the process draws its own key
    other = tmp_path / "open" / "pickle.key"
    other.parent.mkdir()
    other.write_bytes(b"k" * 32)
    other.chmod(0o644)
    os.environ["LVPLAN_KEY_FILE"] = str(other)
    assert signed.key() != b"k" * 32
    (line,) = said()
    assert line.startswith(f"lvplan: warning: {other}: not used as lvplan's key file (mode 0644")
    short = tmp_path / "short.key"
    short.write_bytes(b"k" * 31)
    short.chmod(0o600)
    os.environ["LVPLAN_KEY_FILE"] = str(short)
    assert len(signed.key()) == signed.KEY_BYTES
    (line,) = said()
    assert line.startswith(f"lvplan: warning: {short}: not used") and "(31 bytes, not 32)" in line
    # a folder or a device named as the key file, or read as a pickle: no key kept, no read
    # (a folder raised IsADirectoryError out of key(): found by trying it)
    for odd in (tmp_path, "/dev/zero"):
        os.environ["LVPLAN_KEY_FILE"] = str(odd)
        assert len(signed.key()) == signed.KEY_BYTES
        (line,) = said()
        assert "(not a regular file of this user's that no one else may write)" in line
        with signed.verified(odd) as fh:
            assert fh is None
    os.environ["LVPLAN_KEY_FILE"] = str(other)
    assert _read(tmp_path / "own.pickle", signed.dumps(1)) == 1  # (its own files it reads)
    assert len(said()) == 1
    # said once per run: a worker process (which inherits the environment) says nothing more
    signed._key = None
    assert signed.key() != b"k" * 32 and said() == []


def test_the_cli_says_in_one_line_that_a_key_file_is_not_used(tmp_path):
    """A key file others may read was passed over in silence: the user learnt nothing of why a
    later ``--resume`` planned every group again. The command now says it, in one line."""
    import subprocess
    import sys

    bad = tmp_path / "pickle.key"
    bad.write_bytes(b"k" * 32)
    bad.chmod(0o644)
    env = dict(os.environ, LVPLAN_KEY_FILE=str(bad))
    code = "import sys; from lvplan.cli import main; sys.exit(main(sys.argv[1:]))"
    demand = Path(__file__).resolve().parents[1] / "studies/demand/sz-futian-30.csv"
    args = ["sz-futian", "--demand", str(demand), "--out", str(tmp_path / "out")]
    done = subprocess.run(
        [sys.executable, "-c", code, "plan", *args, "--time-limit", "5"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-800:]
    said = [ln for ln in done.stderr.splitlines() if "key file" in ln]
    assert said == [
        f"lvplan: warning: {bad}: not used as lvplan's key file (mode 0644: others may read "
        "it); the work this run keeps (--resume groups, the islands cache, templates) is "
        "signed with a key of its own, and a later run does it again"
    ], done.stderr[-800:]
    assert bad.read_bytes() == b"k" * 32  # (left as it was)
