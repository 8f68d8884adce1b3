"""Every bad input gets exit code 2 and one line naming the problem, with no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pandapower as pp
import pytest

from lvplan.cli import main


def small_net():
    """A 10 kV slack, a 400 kVA unit and one LV cable to a 20 kW load."""
    net = pp.create_empty_network()
    mv = pp.create_bus(net, 10.0, name="mv")
    lv = pp.create_bus(net, 0.4, name="lv")
    end = pp.create_bus(net, 0.4, name="end")
    pp.create_ext_grid(net, mv)
    pp.create_transformer(net, mv, lv, "0.4 MVA 10/0.4 kV")
    pp.create_line(net, lv, end, 0.1, "NAYY 4x150 SE")
    pp.create_load(net, end, p_mw=0.02)
    return net


def _net_file(tmp_path, mutate) -> str:
    net = small_net()
    mutate(net)
    path = tmp_path / "net.json"
    pp.to_json(net, str(path))
    return str(path)


def _island(net):
    b = pp.create_bus(net, 0.4, name="island")
    pp.create_load(net, b, p_mw=0.01)


def _run(capsys, argv):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    return rc, err


BAD_QUESTIONS = [
    (["--bus", "999", "--kw", "50"], "unknown bus"),
    (["--bus", "nowhere", "--kw", "50"], "unknown bus"),
    (["--bus", "mv", "--kw", "50"], "not an LV bus"),
    (["--bus", "end", "--kw", "0"], "kw must be at least 0.001 kW"),
    (["--bus", "end", "--kw", "-5"], "kw must be at least 0.001 kW"),
    (["--bus", "end", "--kw", "1e-9"], "kw must be at least 0.001 kW (1 W), got 1e-9"),
    (["--bus", "end", "--kw", "1_000"], "kw must be a number, got 1_000"),
    (["--bus", "end", "--kw", "nan"], "finite"),
    (["--bus", "end", "--kw", "abc"], "kw must be a number"),
    (["--bus", "end", "--kw", "50", "--pf", "1.5"], "pf must be in (0, 1]"),
    (["--bus", "end", "--kw", "50", "--pf", "0"], "pf must be in (0, 1]"),
    (["--bus", "end", "--kw", "50", "--category", "casino"], "unknown category"),
    (["--bus", "end", "--kw", "50", "--set", "nope=1"], "unknown criterion"),
    (["--lon", "114.05", "--kw", "50"], "give both --lon and --lat"),
    (["--kw", "50"], "give either --bus"),
]


@pytest.mark.parametrize(("args", "message"), BAD_QUESTIONS)
def test_bad_questions(tmp_path, capsys, args, message):
    path = _net_file(tmp_path, lambda n: None)
    rc, err = _run(capsys, ["check", path, *args])
    assert rc == 2
    assert message in err
    assert len(err.splitlines()) == 1


def _set(table, col, value, row=0):
    def f(net):
        net[table].loc[net[table].index[row], col] = value

    return f


BAD_NETWORKS = [
    (_island, "islanded"),
    (_set("line", "r_ohm_per_km", 0.0), "no impedance"),
    (
        lambda n: (_set("line", "r_ohm_per_km", 0.0)(n), _set("line", "x_ohm_per_km", 0.0)(n)),
        "no impedance",
    ),
    (_set("line", "max_i_ka", float("nan")), "max_i_ka: ampacity is missing"),
    (_set("line", "max_i_ka", 0.0), "max_i_ka: ampacity must be > 0, got 0.0"),
    (_set("trafo", "sn_mva", float("nan")), "sn_mva: rating is missing"),
    (_set("trafo", "sn_mva", -1.0), "sn_mva: rating must be > 0, got -1.0"),
    (_set("line", "to_bus", 77), "unknown bus"),
    (lambda n: n.ext_grid.drop(n.ext_grid.index, inplace=True), "no in-service external grid"),
]


@pytest.mark.parametrize(("mutate", "message"), BAD_NETWORKS)
def test_bad_networks(tmp_path, capsys, mutate, message):
    if message == "no impedance" and mutate is BAD_NETWORKS[1][0]:
        message = ""  # r = 0 alone is a valid (lossless) impedance: must NOT be an error
    path = _net_file(tmp_path, mutate)
    rc, err = _run(capsys, ["check", path, "--bus", "end", "--kw", "10"])
    if not message:
        assert rc == 0
        return
    assert rc == 2
    assert message in err and "invalid network" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        ("{not json", "malformed JSON"),
        ('{"a": 1}', "not a pandapower network"),
    ],
)
def test_bad_files(tmp_path, capsys, content, message):
    path = tmp_path / "x.json"
    if content is not None:
        path.write_text(content)
    rc, err = _run(capsys, ["check", str(path), "--bus", "1", "--kw", "10"])
    assert rc == 2 and message in err and len(err.splitlines()) == 1


def test_malformed_network_folder(tmp_path, capsys):
    (tmp_path / "network.toml").write_text('name = "x"\n')
    (tmp_path / "bus.csv").write_text("idx,vn_kv\n0,0.4\n")
    rc, err = _run(capsys, ["inspect", str(tmp_path)])
    assert rc == 2 and "missing table" in err


def test_no_traceback_from_the_real_command(tmp_path):
    path = _net_file(tmp_path, lambda n: None)
    proc = subprocess.run(
        [sys.executable, "-m", "lvplan.cli", "check", path, "--bus", "end", "--kw", "-1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "lvplan: error: kw must be at least 0.001 kW (1 W), got -1"


def test_good_question_on_the_same_file_exits_0_with_json(tmp_path, capsys):
    path = _net_file(tmp_path, lambda n: None)
    rc = main(["check", path, "--bus", "end", "--kw", "50", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out["decision"] == "fits" and out["bus"] == 2
    for key in (
        "decision",
        "bus",
        "declared_kw",
        "design_kw",
        "transformer",
        "binding",
        "violations",
        "warnings",
        "transformer_loading_before_percent",
        "transformer_loading_after_percent",
        "min_voltage_v",
        "headroom_kw",
        "criteria",
    ):
        assert key in out


def test_a_bus_given_as_text_that_is_an_index_and_another_buses_name_is_refused(sz):
    """``--bus 4`` where bus 4 exists and bus 17 is named "4": the index was taken without a
    word (probe helper-78). Refused, naming both; a number (JSON, Python) is an index."""
    import copy

    from lvplan.errors import InputError
    from lvplan.model.network import Network

    net = copy.deepcopy(sz.pp)
    net.bus.at[17, "name"] = "4"
    named = Network(net, name="sz named 4", source="test")
    with pytest.raises(
        InputError, match=r"bus '4' is ambiguous: the index of bus 4 and the name of bus 17"
    ):
        named.resolve_bus("4")
    assert named.resolve_bus(4) == 4 and sz.resolve_bus("4") == 4
