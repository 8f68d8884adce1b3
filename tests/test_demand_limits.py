"""A demand CSV file is read a line at a time within named limits: junk fails at its first bad
line in bounded memory (before: 200 MB of junk were read whole, decoded and copied, 1.5 GB of
memory, before line 1 was judged), and ``lvplan plan`` refuses it before it loads a network."""

from __future__ import annotations

import os
import random
import tracemalloc

import pytest

from lvplan.cli import main
from lvplan.errors import InputError
from lvplan.planning import demand as demand_mod
from lvplan.planning import read_demand

WHAT = "a demand CSV file"


def _junk_lines(size: int, seed: int = 1) -> bytes:
    """``size`` bytes of printable junk in lines of 76 characters (no header, no row)."""
    rnd = random.Random(seed)
    alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/;. "
    line = bytes(rnd.choice(alphabet) for _ in range(76)) + b"\n"
    return (line * (size // len(line) + 1))[:size]


def _peak_mb(fn) -> float:
    tracemalloc.start()
    try:
        fn()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak / 2**20


@pytest.mark.parametrize("head", [b"", b"id,kw,bus\n"], ids=["junk", "header+junk"])
def test_junk_fails_at_its_first_bad_line_in_bounded_memory(tmp_path, sz, cn, head):
    """64 MB of junk, with and without a demand header: the header (line 1) or the first row
    (line 2) is refused after reading a few kB (before: the whole file, its text and a copy of
    it in a StringIO, some 6 bytes of memory per byte of file)."""
    p = tmp_path / "junk.csv"
    p.write_bytes(head + _junk_lines(64 * 2**20))
    caught: list[str] = []

    def read() -> None:
        with pytest.raises(InputError) as e:
            read_demand(p, sz, cn)
        caught.append(str(e.value))

    peak = _peak_mb(read)
    want = f"{p}:2: " if head else f"{p}:1: header: not a demand CSV"
    assert caught[0].startswith(want), caught
    assert peak < 4, f"{peak:.1f} MB of Python memory for 64 MB of junk"


def _fifo(tmp_path):
    p = tmp_path / "fifo.csv"
    os.mkfifo(p)
    return p


def _file(content: bytes):
    def make(tmp_path):
        p = tmp_path / "d.csv"
        p.write_bytes(content)
        return p

    return make


def _sparse(size: int):
    def make(tmp_path):
        p = tmp_path / "d.csv"
        with p.open("wb") as fh:
            fh.truncate(size)
        return p

    return make


LINE = 65_536  # demand.MAX_LINE_CHARS
TOO_LONG = f"a line of more than 65,536 characters: not {WHAT}"
BINARY = f"not {WHAT} (binary content)"
HOSTILE = [
    ("10 MB line", _file(b"x" * 10 * 2**20), f":1: {TOO_LONG}"),
    ("PNG", _file(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), ": not UTF-8 text (byte 0)"),
    ("NUL on line 2", _file(b"id,kw,bus\na\x00,10,6\n"), f": {BINARY}"),
    ("UTF-16", _file("id,kw,bus\na,10,6\n".encode("utf-16")),
     f": UTF-16 text: save it as UTF-8 ({WHAT} is UTF-8)"),
    ("UTF-16 no BOM", _file("id,kw,bus\n".encode("utf-16-le")), f": {BINARY}"),
    ("UTF-32", _file("id,kw,bus\n".encode("utf-32")),
     f": UTF-32 text: save it as UTF-8 ({WHAT} is UTF-8)"),
    ("BOM + junk", _file(b"\xef\xbb\xbfq;w;e\n" * 1000), ":1: header: not a demand CSV"),
    ("BOM + bad byte", _file(b"\xef\xbb\xbfid,kw,bus\na\xff,10,6\n"), ": not UTF-8 text (byte 14)"),
    ("blank lines", _file(b"id,kw,bus\n" + b"\n" * 1_000_000),
     f": more than 1,000,000 lines: not {WHAT}"),
    ("over 256 MB", _sparse(256 * 2**20 + 1), f": larger than 256 MB: not {WHAT}"),
    ("a line too long", _file(b"id,kw,bus" + b" " * (LINE - 8) + b"\r\na,10,6\r\n"),
     f":1: {TOO_LONG}"),
    ("a folder", lambda tmp_path: tmp_path, f": is a folder, not {WHAT}"),
    ("a FIFO no one writes", _fifo, ": empty file (expected a header: id, kw, bus or lon, lat)"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "want"), [c[1:] for c in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_hostile_demand_files_are_one_line(tmp_path, sz, cn, make, want):
    p = make(tmp_path)
    with pytest.raises(InputError) as e:
        read_demand(p, sz, cn)
    msg = str(e.value)
    assert msg.startswith(f"{p}{want}"), msg
    assert "\n" not in msg


def test_what_the_limits_let_through(tmp_path, sz, cn):
    """A header line of exactly 65,536 characters and its CRLF; a BOM; lines ended by CR alone
    (a spreadsheet's "CSV (Macintosh)"), their line numbers right; 1,000,000 lines."""
    p = tmp_path / "d.csv"
    p.write_bytes(b"\xef\xbb\xbfid,kw,bus" + b" " * (LINE - 9) + b"\r\na,10,6\r\n")
    assert [d.id for d in read_demand(p, sz, cn)] == ["a"]
    p.write_bytes(b"id,kw,bus\ra,10,6\rb,20,6\r")
    assert [(d.id, d.line) for d in read_demand(p, sz, cn)] == [("a", 2), ("b", 3)]
    p.write_bytes(b"id,kw,bus\ra,10,6\rb,-1,6\r")
    with pytest.raises(InputError, match=r":3: kw: must be at least 0.001 kW \(1 W\)"):
        read_demand(p, sz, cn)
    p.write_bytes(b"id,kw,bus\na,10,6\n" + b"\n" * (1_000_000 - 2))
    assert len(read_demand(p, sz, cn)) == 1


def test_the_line_limit_counts_rows(tmp_path, sz, cn, monkeypatch):
    monkeypatch.setattr(demand_mod, "MAX_LINES", 5)
    p = tmp_path / "d.csv"
    p.write_text("id,kw,bus\n" + "".join(f"d{i},10,6\n" for i in range(4)), encoding="utf-8")
    assert len(read_demand(p, sz, cn)) == 4
    p.write_text("id,kw,bus\n" + "".join(f"d{i},10,6\n" for i in range(5)), encoding="utf-8")
    with pytest.raises(InputError) as e:
        read_demand(p, sz, cn)
    assert str(e.value) == f"{p}: more than 5 lines: not {WHAT}"


def test_plan_refuses_a_junk_demand_file_before_loading_the_network(tmp_path, capsys, monkeypatch):
    """``lvplan plan`` judges the demand file's header before it loads the network (a city
    takes minutes and gigabytes to load): one line, exit 2, no network loaded, no folder."""
    import lvplan.io.load

    def no_load(*a, **kw):
        raise AssertionError("the network was loaded for a junk demand file")

    monkeypatch.setattr(lvplan.io.load, "load_network", no_load)
    out = tmp_path / "out"
    cases = {
        "junk.csv": (_junk_lines(2**20), ":1: header: not a demand CSV"),
        "wide.csv": ("id,kw,bus\n".encode("utf-16"), ": UTF-16 text: save it as UTF-8"),
        "long.csv": (b"y" * 10**6, ":1: a line of more than 65,536 characters"),
    }
    for name, (content, want) in cases.items():
        p = tmp_path / name
        p.write_bytes(content)
        rc = main(["plan", "sz-futian", "--demand", str(p), "--out", str(out)])
        err = capsys.readouterr().err
        assert rc == 2, err
        assert err.startswith(f"lvplan: error: {p}{want}") and err.count("\n") == 1, err
        assert not out.exists()


@pytest.mark.parametrize(
    ("row", "want"),
    [
        ("a,{big},shop,0\n", ":2: kw: must be a number"),
        ("a,20,shop,{big}\n", ":2: bus: "),
        ("a,20,{big},0\n", ":2: category: unknown category"),
    ],
    ids=["kw", "bus", "category"],
)
def test_a_huge_value_is_not_repeated_whole_in_the_error(tmp_path, sz, cn, row, want):
    """A 60,000-character value (under the line limit) in an error: the one line names the
    field and the line, and stays under 1,100 characters (before: the value whole, 60 kB)."""
    big = "Ω" * 60_000
    p = tmp_path / "d.csv"
    p.write_text("id,kw,category,bus\n" + row.format(big=big), encoding="utf-8")
    with pytest.raises(InputError) as e:
        read_demand(p, sz, cn)
    text = str(e.value)
    assert len(text) <= 1_100, len(text)
    assert "\n" not in text
    assert want in text, text[:300]


def test_an_error_line_keeps_its_start_and_end():
    """:class:`InputError` cuts only the middle of a long text, and says how much it cut."""
    text = str(InputError("x: " + "a" * 5_000 + " (first on line 7)"))
    assert len(text) <= 1_100
    assert text.startswith("x: aaa") and text.endswith("(first on line 7)")
    assert "characters cut" in text
    assert str(InputError("short")) == "short"
