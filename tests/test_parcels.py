"""Land parcels -> customers -> the demand of lvplan plan; densities; synth parcels."""

from __future__ import annotations

import json

import pytest

from lvplan.cli import main
from lvplan.criteria import load_criteria
from lvplan.errors import InputError
from lvplan.planning.demand import read_demand
from lvplan.planning.parcels import (
    customers,
    demand_frame,
    load_densities,
    read_parcels,
    split_by_policy,
)
from lvplan.planning.synth_parcels import parcels_csv, synth_parcels

HEADER = "id,land_use,floor_area_m2,year,lon,lat\n"


def _write(tmp_path, text, name="parcels.csv"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_densities_have_sources_and_status():
    d = load_densities()
    assert {"retail", "restaurant", "office", "residential"} <= set(d)
    for e in d.values():
        assert e.source and e.status in ("V", "U")
        assert 0 < e.w_per_m2 < 1000
        assert (e.unit_m2 or 0) > 0 if e.split == "units" else True


def test_customers_split_units_and_policy(tmp_path):
    dens = load_densities()
    p = _write(
        tmp_path,
        HEADER
        + "R1,retail,300,2027,114.05,22.54\n"  # 2 shops of 150 m²
        + "O1,office,1700,2028,114.05,22.54\n"  # one building: between 160 and 200 kW
        + "H1,residential,10000,2029,114.05,22.54\n",  # always 10 kV
    )
    parcels = read_parcels(p, dens)
    cs = customers(parcels, dens)
    by = {c.id: c for c in cs}
    assert set(by) == {"R1-1", "R1-2", "O1", "H1"}
    shop = by["R1-1"]
    # 90 W/m² x 150 m² = 13.5 kW design; shop factor 0.7 -> 19.3 kW declared
    assert shop.design_kw == pytest.approx(13.5)
    assert shop.declared_kw == pytest.approx(19.3)
    office = by["O1"]  # 70 W/m² x 1700 m² = 119 kW design / 0.65 = 183.1 kW declared
    assert office.design_kw == pytest.approx(119.0)
    assert office.declared_kw == pytest.approx(183.1)
    lv160, mv160 = split_by_policy(cs, 160)
    lv200, mv200 = split_by_policy(cs, 200)
    assert {c.id for c in lv160} == {"R1-1", "R1-2"}
    assert {c.id for c in lv200} == {"R1-1", "R1-2", "O1"}
    assert {c.id for c in mv200} == {"H1"}  # residential is 10 kV whatever the limit
    assert len(mv160) == 2


def test_demand_frame_reads_as_plan_demand(sz, tmp_path):
    dens = load_densities()
    p = _write(tmp_path, HEADER + "R1,retail,450,2027,114.0580,22.5415\n")
    cs = customers(read_parcels(p, dens), dens)
    ds = read_demand(demand_frame(cs), sz, load_criteria("cn"))
    assert [d.id for d in ds] == ["R1-1", "R1-2", "R1-3"]
    # the check's demand factor turns the declared kW back into the parcel's design kW
    assert sum(d.design_kw for d in ds) == pytest.approx(90 * 450 / 1000, rel=1e-3)
    assert all(d.year == 2027 and not d.hv_required for d in ds)


def test_geojson_polygon_centroid(tmp_path):
    dens = load_densities()
    ring = [[114.0, 22.5], [114.002, 22.5], [114.002, 22.502], [114.0, 22.502], [114.0, 22.5]]
    doc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "id": "G1",
                    "land_use": "clinic",
                    "floor_area_m2": 1000,
                    "year": 2028,
                },
            },
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [114.01, 22.51]},
                "properties": {
                    "id": "G2",
                    "land_use": "retail",
                    "floor_area_m2": 150,
                    "year": 2027,
                },
            },
        ],
    }
    p = _write(tmp_path, json.dumps(doc), "parcels.geojson")
    a, b = read_parcels(p, dens)
    assert a.lon == pytest.approx(114.001) and a.lat == pytest.approx(22.501)
    assert (b.lon, b.lat) == (114.01, 22.51)


@pytest.mark.parametrize(
    "row, message",
    [
        ("X1,stadium,100,2027,114,22", ":2: land_use: no load density for 'stadium'"),
        ("X1,retail,-5,2027,114,22", ":2: floor_area_m2: must be more than 0"),
        ("X1,retail,100,1999,114,22", ":2: year: must be a whole year"),
        ("X1,retail,abc,2027,114,22", ":2: floor_area_m2: must be a number"),
        ("X1,retail,100,2027,,22", ":2: lon: missing"),
        ("X;1,retail,100,2027,114,22", ":2: id: must not contain ';' (plan.csv lists"),
    ],
)
def test_bad_parcels_name_row_and_field(tmp_path, row, message):
    p = _write(tmp_path, HEADER + row + "\n")
    with pytest.raises(InputError) as e:
        read_parcels(p, load_densities())
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_bad_parcels_header_and_duplicates(tmp_path):
    dens = load_densities()
    with pytest.raises(InputError, match=r":1: colour: unknown column"):
        read_parcels(_write(tmp_path, HEADER.strip() + ",colour\n"), dens)
    with pytest.raises(InputError, match=r":1: year: missing column"):
        read_parcels(_write(tmp_path, "id,land_use,floor_area_m2,lon,lat\n"), dens)
    dup = HEADER + "A,retail,100,2027,114,22\nA,retail,100,2027,114,22\n"
    with pytest.raises(InputError, match=r":3: id: 'A' appears twice"):
        read_parcels(_write(tmp_path, dup), dens)


def test_bad_densities_table_names_entry(tmp_path):
    p = _write(
        tmp_path,
        '[mall]\nw_per_m2 = 90.0\ncategory = "shop"\nsplit = "units"\n'
        'connection = "auto"\nsource = "x"\nstatus = "U"\n',
        "d.toml",
    )
    with pytest.raises(InputError, match=r"\[mall\]: unit_m2: split = units needs"):
        load_densities(p)


def test_synth_parcels_reproducible_and_valid(sz, tmp_path):
    crit = load_criteria("cn")
    a = synth_parcels(sz, count=20, seed=4, criteria=crit, years=(2027, 2030))
    b = synth_parcels(sz, count=20, seed=4, criteria=crit, years=(2027, 2030))
    c = synth_parcels(sz, count=20, seed=5, criteria=crit, years=(2027, 2030))
    assert parcels_csv(a) == parcels_csv(b) != parcels_csv(c)
    p = _write(tmp_path, parcels_csv(a))
    parcels = read_parcels(p, load_densities())
    assert len(parcels) == 20
    assert all(2027 <= x.year <= 2030 for x in parcels)
    assert all(113.9 < x.lon < 114.2 and 22.4 < x.lat < 22.7 for x in parcels)
    assert len({x.land_use for x in parcels}) >= 3


def test_cli_synth_parcels(tmp_path, capsys):
    out = tmp_path / "p.csv"
    assert (
        main(["synth", "parcels", "sz-futian", "--count", "8", "--seed", "2", "--out", str(out)])
        == 0
    )
    assert "synthetic parcels: 8 on sz-futian" in capsys.readouterr().out
    assert out.read_text().startswith(HEADER)
    assert (
        main(["synth", "parcels", "sz-futian", "--count", "8", "--years", "x", "--out", str(out)])
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--years" in err[0]


@pytest.mark.parametrize("encoding, name", [("utf-16", "UTF-16"), ("utf-32", "UTF-32")])
def test_a_parcels_file_in_utf16_is_named_so(tmp_path, encoding, name):
    """A spreadsheet's "Unicode text" is UTF-16: it read 'not UTF-8 text (byte 0)'."""
    p = tmp_path / "parcels.csv"
    p.write_bytes((HEADER + "X1,retail,100,2027,114,22\n").encode(encoding))
    with pytest.raises(InputError, match=rf"parcels.csv: {name} text: save it as UTF-8$"):
        read_parcels(p, load_densities())
