"""Bus positions (lvplan/model/coordinates.py): one reader, in WGS84 degrees.

A network whose coordinates are in a projected system (metres: CGCS2000 Gauss-Krueger exports
have x in the millions) was read as degrees: a location check measured 3,400 km to the nearest
bus and answered ``does_not_fit`` ("no LV bus within the 150 m supply radius"), a lon/lat
demand row was planned as unservable for the same reason, and the map was empty with no word
why. Now such coordinates are read as no positions, and every place that needs one says why.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pandapower as pp
import pytest

import lvplan
from lvplan.cli import main
from lvplan.io.load import networks_dir
from lvplan.io.netfolder import read_folder
from lvplan.locate import check_location
from lvplan.model.coordinates import bus_lonlat, bus_point, given_lonlat
from lvplan.model.network import Network

NOT_DEGREES = "the bus coordinates are not lon/lat degrees (WGS84): bus 0 is at (1.14055e+07"


def _metres(raw):
    """sz-futian's tables with each bus's GeoJSON point scaled by 1e5 (metres-like numbers)."""

    def scaled(g):
        if not isinstance(g, str):
            return g
        x, y = json.loads(g)["coordinates"]
        return json.dumps({"type": "Point", "coordinates": [x * 1e5, y * 1e5]})

    raw.bus["geo"] = raw.bus["geo"].map(scaled)
    return raw


@pytest.fixture(scope="module")
def projected(tmp_path_factory):
    f = tmp_path_factory.mktemp("proj") / "sz_m.json"
    pp.to_json(_metres(read_folder(networks_dir() / "sz-futian")), str(f))
    return f


def test_projected_coordinates_are_no_positions_and_each_use_says_why(projected, capsys):
    net = Network(pp.from_json(str(projected)), name="sz_m", source="test")
    lon, lat = net.bus_lonlat
    assert np.isnan(lon).all() and np.isnan(lat).all()
    assert net.coordinates_note.startswith(NOT_DEGREES)
    # a location check: a one-line refusal naming why (it was DOES_NOT_FIT at 3,400 km, exit 0)
    argv = ["check", str(projected), "--lon", "114.05", "--lat", "22.54", "--kw", "50"]
    assert main([*argv, "--category", "shop"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert err.startswith("lvplan: error: the network has no LV buses with coordinates for a ")
    assert NOT_DEGREES in err
    with pytest.raises(lvplan.InputError, match="not lon/lat degrees"):
        check_location(net, lon=114.05, lat=22.54, kw=50, category="shop")


def test_a_lon_lat_demand_row_on_a_network_without_positions_is_refused(projected, tmp_path, cn):
    """Before: planned, and listed as unservable "no LV bus within the 150 m supply radius"."""
    from lvplan.planning.demand import read_demand

    net = Network(pp.from_json(str(projected)), name="sz_m", source="test")
    d = tmp_path / "d.csv"
    d.write_text("id,kw,category,bus\nB,50,shop,5\n", encoding="utf-8")
    assert [x.bus for x in read_demand(d, net, cn).demands] == [5]  # (by bus: as before)
    d.write_text("id,kw,category,lon,lat\nA,50,shop,114.055,22.54\n", encoding="utf-8")
    with pytest.raises(lvplan.InputError, match=r":2: lon/lat: the network's LV buses have no"):
        read_demand(d, net, cn)
    out = tmp_path / "plan"
    assert main(["plan", str(projected), "--demand", str(d), "--out", str(out)]) == 2
    assert not out.exists()


def test_hosting_says_why_its_map_has_no_positions(projected, tmp_path, capsys):
    out = tmp_path / "map"
    assert main(["hosting", str(projected), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "  positions: " + NOT_DEGREES in said
    s = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert s["coordinates_note"].startswith(NOT_DEGREES) and s["buses"] == 41
    page = (out / "map.html").read_text(encoding="utf-8")
    assert "<i>no bus positions: the bus coordinates are not lon/lat degrees" in page
    # (the legend counts the table's buses, as summary.json does; it read 0 in every class)
    assert "<i>41 buses without a position not drawn</i>" in page
    n = s["classes"]["< 100 kW"]
    assert n > 0 and f"< 100 kW: {n}</div>" in page
    table = (out / "hosting.csv").read_text(encoding="utf-8").splitlines()
    assert all(r.endswith(",,") for r in table[1:])  # (lon, lat empty: not metres as degrees)


def test_lon_lat_columns_and_geojson_points_are_read_alike():
    """The bus table's ``lon``/``lat`` columns (as the synthetic city builds it) or pandapower's
    ``geo`` points: one reader. Before, a location check read ``geo`` only and the maps read
    the columns first, so a network with columns alone had positions on the map and none for
    a check."""
    raw = read_folder(networks_dir() / "sz-futian")
    geo_lon, geo_lat = given_lonlat(raw)
    cols = copy.deepcopy(raw)
    cols.bus["lon"], cols.bus["lat"] = geo_lon, geo_lat
    cols.bus = cols.bus.drop(columns=["geo"])
    lon, _lat, note = bus_lonlat(cols)
    assert note is None
    assert np.array_equal(lon, geo_lon, equal_nan=True) and np.isfinite(lon).sum() > 40
    a = check_location(
        Network(raw, name="geo", source="t"), lon=114.0551, lat=22.5401, kw=30, category="shop"
    )
    b = check_location(
        Network(cols, name="cols", source="t"), lon=114.0551, lat=22.5401, kw=30, category="shop"
    )
    assert a.bus == b.bus and a.decision == b.decision and a.location["alternatives"] is not None
    assert a.to_dict() == {**b.to_dict(), "network": a.to_dict()["network"]}


def test_an_infinite_coordinate_is_none_and_a_missing_column_value_falls_back_to_geo():
    """An infinite lon (a `1e400` or `Infinity` in a file) was read as a position: hosting.csv
    held `inf`, hosting.geojson `Infinity` (not JSON) and the map was centred at infinity
    (review). A bus whose lon/lat columns are empty is read from its `geo` point."""
    raw = read_folder(networks_dir() / "sz-futian")
    lon0, lat0 = given_lonlat(raw)
    b = int(np.flatnonzero(np.isfinite(lon0))[0])
    net = copy.deepcopy(raw)
    net.bus["lon"], net.bus["lat"] = lon0.copy(), lat0.copy()
    net.bus.iloc[b, net.bus.columns.get_loc("lon")] = np.nan  # (its geo point stays)
    net.bus.iloc[b + 1, net.bus.columns.get_loc("lon")] = np.inf
    net.bus.iloc[b + 1, net.bus.columns.get_loc("geo")] = None
    lon, lat = given_lonlat(net)
    assert lon[b] == lon0[b] and lat[b] == lat0[b]
    assert np.isnan(lon[b + 1]) and np.isnan(lat[b + 1])
    assert bus_lonlat(net)[2] is None  # (not "not degrees": one bus has none, that is all)
    # one bus by the same rule (a moved unit's position copied: changes/apply.py)
    idx = net.bus.index
    assert bus_point(net, idx[b]) == (lon0[b], lat0[b]) and bus_point(net, idx[b + 1]) is None
    assert bus_point(raw, idx[b]) == (lon0[b], lat0[b])
