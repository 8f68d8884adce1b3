"""One grammar for every number lvplan reads as text (lvplan/numbers.py).

``check --kw 1_000`` was read as 1000 (Python's float) where the same kW in a demand CSV was
refused; ``plan --budget 1_000`` too, ``--set`` and ``--years`` alike. Now each is refused with one
line, wherever it is given.
"""

from __future__ import annotations

import math

import pytest

from lvplan.cli import main
from lvplan.criteria import load_criteria
from lvplan.decision import make_question
from lvplan.errors import InputError
from lvplan.numbers import finite, read_float, read_int

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.mark.parametrize(
    ("text", "value"),
    [("25", 25.0), (" 2.5 ", 2.5), ("-.5", -0.5), ("1e3", 1000.0), ("+7.", 7.0), ("1E-2", 0.01)],
)
def test_decimal_text_is_read(text, value):
    assert read_float(text) == value


def test_inf_and_nan_are_read_for_the_caller_to_refuse():
    assert math.isinf(read_float("-Infinity")) and math.isnan(read_float("NaN"))


@pytest.mark.parametrize("text", ["1_000", "２５", "0x10", "", "1,5", "1e", "٣", "1 000", "—5"])
def test_text_outside_the_grammar_is_refused(text):
    with pytest.raises(ValueError):
        read_float(text)


def test_numbers_not_text_pass_as_float_reads_them():
    assert read_float(3) == 3.0 and read_float(2.5) == 2.5
    with pytest.raises(TypeError):
        read_float(None)


@pytest.mark.parametrize("text", ["2_030", "2030.0", "２０３０", "1" * 19, ""])
def test_whole_numbers_are_ascii_digits(text):
    with pytest.raises(ValueError):
        read_int(text)


def test_whole_number_read():
    assert read_int(" -42 ") == -42 and read_int(2030) == 2030


def test_check_refuses_the_kw_a_demand_file_refuses(sz):
    crit = load_criteria()
    kw = "1_00"
    with pytest.raises(InputError, match="kw must be a number, got 1_00"):
        make_question(sz, bus=6, kw=kw, category=None, pf=None, criteria=crit)
    q = make_question(sz, bus=6, kw=" 1e2 ", category=None, pf=None, criteria=crit)
    assert q.declared_kw == 100.0
    # the smallest kW (1 W): one limit for check, the service and a demand file
    q = make_question(sz, bus=6, kw="0.001", category=None, pf=None, criteria=crit)
    assert q.declared_kw == 0.001
    with pytest.raises(InputError, match=r"at least 0\.001 kW"):
        make_question(sz, bus=6, kw=0.000999, category=None, pf=None, criteria=crit)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["check", "sz-futian", "--bus", "6", "--kw", "1_000"], "kw must be a number"),
        (["check", "sz-futian", "--bus", "6", "--kw", "１００"], "kw must be a number"),
        (
            ["check", "sz-futian", "--bus", "6", "--kw", "10", "--set", "lv_min_voltage_v=3_42"],
            "lv_min_voltage_v",
        ),
        (
            [
                "check",
                "sz-futian",
                "--bus",
                "6",
                "--kw",
                "10",
                "--set",
                "lv_min_voltage_v=" + "9" * 400,
            ],
            "lv_min_voltage_v: must be a finite number, got '" + "9" * 36 + "...",  # (short)
        ),
        (["synth", "demand", "sz-futian", "--count", "1_0", "--out", "{out}"], "--count"),
        (
            ["synth", "demand", "sz-futian", "--count", "5", "--years", "2_026", "--out", "{out}"],
            "--years",
        ),
    ],
)
def test_cli_refuses_underscored_numbers(tmp_path, capsys, argv, says):
    out = tmp_path / "d.csv"
    rc = main([a.replace("{out}", str(out)) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert says in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("option", ["--budget", "--time-limit", "--discount-rate"])
def test_plan_refuses_underscored_numbers(tmp_path, capsys, option):
    demand = tmp_path / "demand.csv"
    demand.write_text("id,kw,bus\na,20,6\n", encoding="utf-8")
    out = tmp_path / "out"
    rc = main(["plan", "sz-futian", "--demand", str(demand), "--out", str(out), option, "1_0"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert option in err and "'1_0'" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(
    ("value", "sep", "want"),
    [
        ("ten", ": ", "kw: must be a number, got 'ten'"),
        (None, ": ", "kw: must be a number, got None"),
        (True, " ", "kw must be a number, got True"),
        ("nan", ": ", "kw: must be a finite number, got 'nan'"),
        ("9" * 400, ": ", "kw: must be a finite number, got '" + "9" * 36 + "..."),
        ("1_000", " ", "kw must be a number, got '1_000'"),
        (float("-inf"), ": ", "kw: must be a finite number, got -inf"),
    ],
)
def test_one_check_that_a_number_is_finite_and_one_short_line_when_not(value, sep, want):
    """The demand file, the parcels file and ``check`` share :func:`finite`: the same values
    are refused, each with the value shown short (a 400-digit kW was shown in full in a parcels
    file's message)."""
    with pytest.raises(InputError) as e:
        finite("kw", value, sep=sep)
    assert str(e.value) == want
    assert finite("kw", " 2.5e1 ") == 25.0 and finite("kw", 7) == 7.0
