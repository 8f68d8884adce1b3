"""`lvplan synth city`: deterministic, geographic, and a network the engine can map."""

from __future__ import annotations

import numpy as np
import pytest

import lvplan
from lvplan.cli import main
from lvplan.hosting import hosting_capacity
from lvplan.synth import DISTRICTS, build_city


@pytest.fixture(scope="module")
def city_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("city") / "c40"
    assert main(["synth", "city", "--transformers", "40", "--seed", "7", "--out", str(d)]) == 0
    return d


def test_same_seed_same_city_other_seed_other_city():
    a, b, c = build_city(20, seed=3), build_city(20, seed=3), build_city(20, seed=4)
    assert len(a.bus) == len(b.bus) and np.allclose(a.load.p_mw, b.load.p_mw)
    assert np.allclose(a.bus.lon, b.bus.lon)
    assert not (len(a.bus) == len(c.bus) and np.allclose(a.bus.lon, c.bus.lon))


def test_city_structure(city_dir):
    net = lvplan.load_network(str(city_dir))
    pp_net = net.pp
    assert len(pp_net.trafo) == 40
    assert (pp_net.trafo.vn_hv_kv == 10).all() and (pp_net.trafo.vn_lv_kv == 0.4).all()
    assert len(pp_net.ext_grid) == 1  # 40 transformers: 3 feeders of one substation
    lv = (pp_net.bus.vn_kv < 1).sum()
    assert 25 * 40 < lv < 130 * 40
    lon, lat = DISTRICTS[0][1], DISTRICTS[0][2]
    base = net.base_state()
    assert np.isfinite(base.vm_pu).all()
    assert 0.3 < np.nanmax(base.trafo_loading_percent) / 100 < 1.3
    from lvplan.hosting.run import bus_coordinates

    x, y = bus_coordinates(pp_net)
    assert abs(float(x.mean()) - lon) < 0.05 and abs(float(y.mean()) - lat) < 0.05


def test_city_hosting_map_holds_the_contract(city_dir, cn):
    from test_hosting import assert_contract

    from lvplan.io.netfolder import read_folder

    net = lvplan.load_network(str(city_dir))
    df = hosting_capacity(net, criteria=cn).table
    assert len(df) == int((net.pp.bus.vn_kv < 1).sum())
    assert df.hosting_kw.max() > 0
    assert assert_contract(read_folder(city_dir), cn, df, n=12) == 12


def test_bad_transformer_count_exit_2(tmp_path, capsys):
    assert main(["synth", "city", "--transformers", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--transformers must be >= 1" in capsys.readouterr().err
