"""The optimiser's inputs: demand files, synthetic benchmark demand, the measures catalogue."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lvplan.cli import main
from lvplan.errors import InputError
from lvplan.locate import bus_lonlat, distance_m
from lvplan.model.catalogue import cable_type
from lvplan.planning import MeasureKind, load_measures, read_demand
from lvplan.planning.synth_demand import synth_demand

SHOP = "YJV22-0.6/1kV 4x240"


def _write(tmp_path, text: str | bytes, name: str = "d.csv"):
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


# -- read_demand: values ---------------------------------------------------------------------
def test_design_kw_radius_coordinates_and_policy(tmp_path, sz, cn):
    """shop 100 kW at bus 5 -> design 70 kW (factor 0.7), lon/lat of bus 5 (bus wins over the
    given lon/lat, 103 m away); restaurant 50 kW by lon/lat in class C -> 30 kW, radius 400 m;
    office by bus name, class B -> 250 m; 200 kW is LV, 200.5 kW needs HV; no category ->
    generic (1.0)."""
    p = _write(
        tmp_path,
        "id,kw,category,bus,lon,lat,year,area_class\n"
        "a,100,shop,5,114.0602,22.5413,2027,\n"
        "b,50,restaurant,,114.06,22.541,,C\n"
        "c,200,office,T2 market stalls,,,2029,B\n"
        "d,200.5,,12,,,,\n",
    )
    ds = read_demand(p, sz, cn)
    a, b, c, d = ds.demands
    from lvplan.decision import make_question

    q = make_question(sz, bus=5, kw=100, category="shop", pf=None, criteria=cn)
    assert a.design_kw == q.design_kw == pytest.approx(70.0)
    assert (a.bus, a.lon, a.lat, a.year) == (5, 114.059261, 22.541634, 2027)
    assert (a.area_class, a.supply_radius_m) == ("A", 150.0)
    assert b.bus is None and (b.lon, b.lat) == (114.06, 22.541)
    # (no year in a file that gives years: there from the file's first year, 2027)
    assert (b.design_kw, b.supply_radius_m, b.year) == (pytest.approx(30.0), 400.0, 2027)
    assert d.year == 2027
    assert (c.bus, c.design_kw, c.supply_radius_m) == (12, pytest.approx(130.0), 250.0)
    assert not c.hv_required and d.hv_required
    assert (d.category, d.design_kw) == ("generic", 200.5)
    df = ds.to_frame()
    assert list(df.index) == ["a", "b", "c", "d"]
    assert str(df["bus"].dtype) == "Int64" and pd.isna(df.at["b", "bus"])
    assert df.at["c", "supply_radius_m"] == 250.0
    assert json.loads(json.dumps(a.to_dict()))["design_kw"] == pytest.approx(70.0)


def test_profile_limit_and_default_area_class_come_from_criteria(tmp_path, sz, cn):
    p = _write(tmp_path, "id,kw,lon,lat\na,170,114.06,22.541\n")
    crit = cn.with_overrides(lv_policy_max_kw=160, default_area_class="D")
    (d,) = read_demand(p, sz, crit).demands
    assert d.hv_required and (d.area_class, d.supply_radius_m) == ("D", 500.0)
    (d,) = read_demand(p, sz, cn).demands
    assert not d.hv_required and d.supply_radius_m == 150.0


def test_dataframe_same_as_csv_and_line_is_row_plus_2(tmp_path, sz, cn):
    df = pd.DataFrame(
        {"id": ["a", "b"], "kw": [100, 40.0], "category": ["shop", None], "bus": [5, np.nan],
         "lon": [np.nan, 114.06], "lat": [np.nan, 22.541], "year": [2028.0, np.nan]}
    )  # fmt: skip
    from_frame = read_demand(df, sz, cn)
    p = _write(
        tmp_path, "id,kw,category,bus,lon,lat,year\na,100,shop,5,,,2028\nb,40,,,114.06,22.541,\n"
    )
    from_csv = read_demand(p, sz, cn)
    strip = [{**d.to_dict(), "line": None} for d in from_frame]
    assert strip == [{**d.to_dict(), "line": None} for d in from_csv]
    assert from_frame.demands[0].bus == 5 and from_frame.demands[0].year == 2028
    bad = df.assign(kw=[100, -1])
    with pytest.raises(InputError) as e:
        read_demand(bad, sz, cn)
    assert str(e.value) == "<DataFrame>:3: kw: must be at least 0.001 kW (1 W), got -1"


# -- read_demand: every bad input names FILE:LINE: field --------------------------------------
H = "id,kw,category,bus,lon,lat,year,area_class\n"
BAD_ROWS = [
    # (file text, line, expected text after "FILE:LINE: ")
    ("id,kw,bus,colour,size\na,1,5,red,x\n", 1, "colour, size: unknown columns (known: id, kw"),
    ("kw,bus\n1,5\n", 1, "id: missing column"),
    ("id,kw,bus,bus\na,1,5,5\n", 1, "bus: column appears twice"),
    ("id,kw,category\na,1,shop\n", 1, "bus: missing column: give bus or both lon and lat"),
    ("id,kw,lon\na,1,114\n", 1, "lat: missing column (lon needs lat)"),
    ('{"id": 1, "kw": 2}\n', 1, "header: not a demand CSV"),
    (H + ",10,,5,,,,\n", 2, "id: missing"),
    (H + "a/b,10,,5,,,,\n", 2, "id: must not contain '/'"),
    (H + "a;b,10,,5,,,,\n", 2, "id: must not contain ';' (plan.csv lists a measure's demands"),
    (H + "a,,,5,,,,\n", 2, "kw: missing"),
    (H + "a,10,,,,,,\n", 2, "bus: missing: give bus or both lon and lat"),
    (H + "a,10,,,114.06,,,\n", 2, "lat: missing: give bus or both lon and lat"),
    (H + "a,-5,,5,,,,\n", 2, "kw: must be at least 0.001 kW (1 W), got '-5'"),
    (H + "a,0,,5,,,,\n", 2, "kw: must be at least 0.001 kW (1 W), got '0'"),
    (H + "a,nan,,5,,,,\n", 2, "kw: must be a finite number, got 'nan'"),
    (H + "a,inf,,5,,,,\n", 2, "kw: must be a finite number, got 'inf'"),
    (H + "a,ten,,5,,,,\n", 2, "kw: must be a number, got 'ten'"),
    (H + "a,150000,,5,,,,\n", 2, "kw: 150000 kW is more than 100000 kW"),
    (H + "a,100000.0000001,,5,,,,\n", 2, "kw: 100000.0000001 kW is more than 100000 kW"),
    (H + "a,10,,,nan,22.5,,\n", 2, "lon: must be a finite number, got 'nan'"),
    (H + "a,10,,,114,95,,\n", 2, "lat: must be within ±90 degrees, got '95'"),
    (H + "a,10,,,200,22,,\n", 2, "lon: must be within ±180 degrees, got '200'"),
    (H + "a,10,,9999,,,,\n", 2, "bus: unknown bus '9999': no bus with that index or name"),
    (H + "a,10,,nowhere,,,,\n", 2, "bus: unknown bus 'nowhere'"),
    (H + "a,10,,2,,,,\n", 2, "bus: bus 2 is not an LV bus (vn_kv = 10)"),
    (H + "a,10,bakery,5,,,,\n", 2, "category: unknown category 'bakery'; known:"),
    (H + "a,10,,5,,,1999,\n", 2, "year: must be within 2000..2100, got 1999"),
    (H + "a,10,,5,,,2027.5,\n", 2, "year: must be a whole number, got '2027.5'"),
    (H + "a,10,,5,,,1e400,\n", 2, "year: must be a whole number, got '1e400'"),
    (H + "a,10,,5,,,2027.0.0,\n", 2, "year: must be a whole number, got '2027.0.0'"),
    (H + "a,10,,5,,,,Z\n", 2, "area_class: unknown area class 'Z'; known: A+, A, B"),
    (  # a bus and lon/lat that disagree (bus 5 is at 114.05926, 22.54163): one is wrong
        H + "a,10,,5,0,0,,\n",
        2,
        "lon/lat: (0, 0) is 12,467,088 m from bus '5' at (114.05926, 22.54163), more than "
        "1,000 m: give bus or lon/lat, or make them agree",
    ),
    (H + "a,10,,5,114.0593,22.5326,,E\n", 2, "lon/lat: (114.059, 22.5326) is 1,005 m from"),
    (H + "a,10,,5,,,,\nb,10,,6,,,,\na,20,,7,,,,\n", 4, "id: 'a' appears twice (first on line 2)"),
    ("id,kw,bus\n\na,10,5\n\nb,-1,5\n", 5, "kw: must be at least 0.001 kW"),  # blank lines count
    ("id,kw,bus\na,10,5,7\n", 2, "row: 4 cells, more than the header's 3"),
    # a quote never closed (it read to the end of the file as one cell: "kw: missing")
    ('id,kw,bus\na,10,5\n"b,10,5\nc,10,5\n', 3, "not a readable CSV row (a quoted cell opened"),
    # a row whose quoted cell spans lines is named by its first line (it was its last)
    ('id,kw,bus\n\n"a\nb",10,5\n', 3, "id: must not contain control, format or separator"),
]


def test_a_year_written_as_a_whole_decimal_is_read(tmp_path, sz, cn):
    """A year "2027.0", as a spreadsheet writes a number column, is 2027 (a DataFrame's 2027.0 was
    read and the same CSV refused: probe, 2026-12-07)."""
    p = _write(tmp_path, H + "a,10,,5,,,2027.0,\nb,10,,5,,,2028,\n")
    assert [d.year for d in read_demand(p, sz, cn)] == [2027, 2028]


@pytest.mark.parametrize(("text", "line", "want"), BAD_ROWS)
def test_bad_row_one_line_with_file_line_field(tmp_path, sz, cn, text, line, want):
    p = _write(tmp_path, text)
    with pytest.raises(InputError) as e:
        read_demand(p, sz, cn)
    msg = str(e.value)
    assert msg.startswith(f"{p}:{line}: {want}"), msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    ("content", "want"),
    [
        ("", "empty file"),
        ("\n\n", "empty file"),
        ("id,kw,bus\n", "no demands (a header and no rows)"),
        ("id,kw,bus\na,10,5\n".encode("utf-16"), "UTF-16 text: save it as UTF-8"),
        (b"id,kw,bus\na,10,5\x00\n", "not a demand CSV file (binary content)"),
        (b"id,kw,bus\na\xff,10,5\n", "not UTF-8 text (byte 11)"),
    ],
)
def test_bad_file(tmp_path, sz, cn, content, want):
    p = _write(tmp_path, content)
    with pytest.raises(InputError) as e:
        read_demand(p, sz, cn)
    assert str(e.value) == f"{p}: {want}" or str(e.value).startswith(f"{p}: {want}")


def test_folder_missing_file_and_wrong_type(tmp_path, sz, cn):
    with pytest.raises(InputError, match=r": is a folder, not a demand CSV file$"):
        read_demand(tmp_path, sz, cn)
    with pytest.raises(InputError) as e:
        read_demand(tmp_path / "nope.csv", sz, cn)
    assert str(e.value) == f"{tmp_path / 'nope.csv'}: No such file or directory"
    with pytest.raises(
        InputError, match="expected a CSV file name or a pandas DataFrame, got dict"
    ):
        read_demand({"id": "a"}, sz, cn)  # type: ignore[arg-type]


# -- synth demand ---------------------------------------------------------------------------------
def test_synth_far_clusters_beyond_every_radius_near_ones_within(sz, cn):
    s = synth_demand(sz, count=200, seed=3, criteria=cn)
    lon, lat = bus_lonlat(sz)
    lv = (sz.bus_vn_kv < 1) & np.isfinite(lon)
    largest = max(cn.supply_radius_m.values())  # 500 m (D, E)
    assert s.clusters == 40 and s.far_clusters == 4  # 10 % of the clusters
    far = set(s.far_ids)
    assert 4 <= len(far) < 200
    for r in s.rows:
        d = distance_m(float(r["lon"]), float(r["lat"]), lon[lv], lat[lv]).min()
        if r["id"] in far:
            assert d > largest  # no area class lets it reach an existing LV bus
        else:  # class A (the default): an LV bus within 150 m of route
            assert d * cn.detour_factor <= cn.supply_radius_m["A"]
    one = next(r for r in s.rows if r["id"] in far)
    from lvplan.locate import check_location

    dec = check_location(
        sz, lon=float(one["lon"]), lat=float(one["lat"]), kw=10, criteria=cn, area_class="D"
    )
    assert dec.binding is not None and dec.binding.kind == "supply_radius"


def test_synth_values(sz, cn):
    s = synth_demand(sz, count=300, seed=11, criteria=cn, years=(2027, 2029), area_class="B")
    assert s.columns == ("id", "kw", "category", "lon", "lat", "year", "area_class")
    assert [r["id"] for r in s.rows[:2]] == ["D0001", "D0002"] and s.rows[-1]["id"] == "D0300"
    kw = np.array([float(r["kw"]) for r in s.rows])
    assert kw.min() >= 20 and kw.max() <= 200 and (kw % 5 == 0).all()
    assert np.median(kw) < 70 and (kw <= 60).mean() > 0.5  # most are small
    assert {r["year"] for r in s.rows} == {"2027", "2028", "2029"}
    assert {r["category"] for r in s.rows} <= {"shop", "office", "restaurant", "generic", "motor"}
    assert {r["area_class"] for r in s.rows} == {"B"}
    lon, lat = bus_lonlat(sz)
    lv = (sz.bus_vn_kv < 1) & np.isfinite(lon)
    far = set(s.far_ids)
    for r in s.rows:  # class B: 250 m of route
        d = distance_m(float(r["lon"]), float(r["lat"]), lon[lv], lat[lv]).min()
        assert (d > 500) if r["id"] in far else (d * cn.detour_factor <= 250.0)
    none = synth_demand(sz, count=5, seed=1, criteria=cn, years=None)
    assert none.columns == ("id", "kw", "category", "lon", "lat") and none.far_clusters == 0


def test_cli_synth_reproducible_and_readable(tmp_path, sz, cn, capsys):
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    for out, seed in ((a, "5"), (b, "5"), (c, "6")):
        rc = main(
            ["synth", "demand", "sz-futian", "--count", "60", "--seed", seed, "--out", str(out)]
        )
        assert rc == 0
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    assert a.read_text().splitlines()[0] == "id,kw,category,lon,lat,year"
    ds = read_demand(a, sz, cn)
    assert len(ds) == 60 and {d.year for d in ds} <= {2027, 2028, 2029}
    assert "60 demands in 12 clusters (1 beyond every supply radius" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "want"),
    [
        (["--count", "0"], "lvplan: error: --count must be >= 1, got 0"),
        (["--count", "ten"], "lvplan: error: --count must be a whole number of at most 18 ASCII"),
        (["--count", "١٢"], "lvplan: error: --count must be a whole number of at most 18 ASCII"),
        (["--count", "5", "--seed", "9" * 23], "lvplan: error: --seed must be a whole number of"),
        (["--count", "5", "--seed", "-1"], "lvplan: error: --seed must be >= 0, got -1"),
        (["--count", "5", "--years", "2029-2027"], "lvplan: error: --years must be FIRST-LAST"),
        (["--count", "5", "--far-share", "2"], "lvplan: error: --far-share must be a number"),
        (["--count", "5", "--area-class", "Q"], "lvplan: error: --area-class: unknown area class"),
        (["--count", "1000001"], "lvplan: error: --count must be <= 1000000, got 1000001"),
    ],
)
def test_cli_synth_bad_arguments_exit_2_one_line(tmp_path, capsys, args, want):
    out = tmp_path / "x.csv"
    rc = main(["synth", "demand", "sz-futian", *args, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(want), err
    assert err.count("\n") == 1 and "Traceback" not in err and not out.exists()


def test_cli_synth_network_without_coordinates_exit_2(tmp_path, sz, capsys):
    import copy

    import pandapower as pp

    net = copy.deepcopy(sz.pp)
    net.bus = net.bus.drop(columns=["geo"])
    f = tmp_path / "nogeo.json"
    pp.to_json(net, str(f))
    rc = main(["synth", "demand", str(f), "--count", "10", "--out", str(tmp_path / "x.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "has no LV buses with coordinates" in err


@pytest.mark.slow
def test_synth_on_simbench_urban(urban, cn):
    s = synth_demand(urban, count=500, seed=2, criteria=cn)
    lon, lat = bus_lonlat(urban)
    lv = (urban.bus_vn_kv < 1) & np.isfinite(lon)
    for i in s.far_ids:
        r = next(r for r in s.rows if r["id"] == i)
        assert distance_m(float(r["lon"]), float(r["lat"]), lon[lv], lat[lv]).min() > 500


# -- measures -------------------------------------------------------------------------------
def test_measures_costs_come_from_one_place():
    m = load_measures()
    assert m.ladder_kva == (200, 315, 400, 500, 630, 800, 1000, 1250)
    assert m.swap_cost_cny(630) == 225_000  # criteria.md ¥15–30万, midpoint
    assert m.swap_cost_cny(800) == 300_000  # ¥20–40万, midpoint
    assert m.parallel_cost_cny(800) == 300_000 + 50_000
    assert m.tap.cost_cny == 3_000 and m.tap.status == "U"  # an off-load tap moved
    mv = cable_type("YJV22-8.7/15kV 3x300").cost_cny_per_km
    assert m.new_substation_cost_cny(0.4) == pytest.approx(475_000 + 0.4 * mv)
    lv = cable_type(SHOP).cost_cny_per_km
    assert m.cable_cost_cny(MeasureKind.LV_CABLE_REPLACE, SHOP, 0.25) == pytest.approx(0.25 * lv)
    assert m.cable_cost_cny(MeasureKind.TRANSFER, SHOP, 0.25) == pytest.approx(30_000 + 0.25 * lv)
    small = cable_type("YJV22-0.6/1kV 4x95").cost_cny_per_km
    assert m.service_cable_cost_cny("YJV22-0.6/1kV 4x95", 40) == pytest.approx(40 * small / 1000)
    assert small < lv  # branch cables are cheaper
    with pytest.raises(InputError, match=r"no cost for 900 kVA; ladder: 200, 315"):
        m.swap_cost_cny(900)
    with pytest.raises(InputError, match="not allowed"):
        m.parallel_cost_cny(400)
    with pytest.raises(InputError, match="length_km: must be a finite, non-negative"):
        m.cable_cost_cny(MeasureKind.LV_CABLE_PARALLEL, SHOP, -1)
    import tomllib
    from importlib import resources

    from lvplan.model.catalogue import cable_types

    text = resources.files("lvplan.planning").joinpath("measures.toml").read_text("utf-8")

    def numbers(x):
        if isinstance(x, dict):
            return [n for v in x.values() for n in numbers(v)]
        if isinstance(x, list):
            return [n for v in x for n in numbers(v)]
        return [x] if isinstance(x, int | float) and not isinstance(x, bool) else []

    per_km = {c.cost_cny_per_km for c in cable_types().values()}
    assert not per_km & set(numbers(tomllib.loads(text)))  # cable costs: the catalogue's only
    d = m.to_dict()
    entries = [*d["transformer_swap"]] + [d[k] for k in MeasureKind if k != "transformer_swap"]
    assert len(entries) == 8 + 11 and all(
        e["status"] in ("V", "U") and e["source"] for e in entries
    )
    assert d["cable_cost_cny_per_km"][SHOP] == lv


GOOD = 'source = "quote 2026"\nstatus = "V"\n'
NS = '[new_substation]\nrated_kva = 630\ntie_cable = "YJV22-8.7/15kV 3x300"\n'


def test_measures_override_replaces_whole_entries(tmp_path):
    p = _write(
        tmp_path,
        f"{NS}cost_cny = 600000\n{GOOD}"
        f"[[transformer_swap]]\nto_kva = 630\ncost_cny = 250000\n{GOOD}",
        "m.toml",
    )
    m = load_measures(p)
    assert m.new_substation_cost_cny(0) == 600_000 and m.new_substation.status == "V"
    assert m.swap_cost_cny(630) == 250_000 and m.swap_cost_cny(800) == 300_000
    assert m.parallel_cost_cny(630) == 250_000 + 50_000
    assert m.source.endswith(f" + {p}")


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (NS + f"cost_cny = -5\n{GOOD}", "new_substation: cost_cny: must be a finite, non-negative"),
        (NS + f'cost_cny = "lots"\n{GOOD}', "new_substation: cost_cny: must be a number of CNY"),
        (NS + 'cost_cny = 5\nstatus = "V"\n', "new_substation: source: missing (every entry"),
        (NS + 'cost_cny = 5\nsource = "x"\nstatus = "maybe"\n', "new_substation: status: must"),
        (NS + f"cost_cny = 5\ncolour = 1\n{GOOD}", "new_substation: colour: unknown field"),
        (f"[teleport]\ncost_cny = 1\n{GOOD}", "teleport: unknown measure"),
        (f'[transfer]\ncables = ["copper rope"]\nfixed_cny = 1\n{GOOD}',
         "transfer: cables: 'copper rope' is not in the cable catalogue"),
        (f'[transfer]\ncables = ["YJV22-8.7/15kV 3x300"]\nfixed_cny = 1\n{GOOD}',
         "transfer: cables: 'YJV22-8.7/15kV 3x300' is a MV cable, need LV"),
        (f"[[transformer_swap]]\nto_kva = 0\ncost_cny = 1\n{GOOD}",
         "transformer_swap[0]: to_kva: must be a positive whole number"),
        (f"[transformer_parallel]\nratings_kva = [700]\nextra_cny = 1\n{GOOD}",
         "transformer_parallel: ratings_kva: 700 kVA is not a transformer of the equipment "
         "catalogue (model/catalogue.toml: 200, 315, 400, 500, 630, 800, 1000, 1250 kVA)"),
        # a rating the equipment catalogue lacks: KeyError traceback (new substation) or
        # silently dropped (swap, parallel unit); a cost of 1e308 planned, then failed to
        # write its summary (inf), and 1e25 made a plan of 1.3e26 CNY
        (NS.replace("630", "5000") + f"cost_cny = 1\n{GOOD}",
         "new_substation: rated_kva: 5000 kVA is not a transformer of the equipment catalogue"),
        (NS.replace("630", "1") + f"cost_cny = 1\n{GOOD}",
         "new_substation: rated_kva: 1 kVA is not a transformer of the equipment catalogue"),
        (f"[[transformer_swap]]\nto_kva = 5000\ncost_cny = 1\n{GOOD}",
         "transformer_swap[0]: to_kva: 5000 kVA is not a transformer of the equipment catalogue"),
        (NS + f"cost_cny = 1e308\n{GOOD}", "new_substation: cost_cny: must be at most 1e+12 CNY"),
        # a site's units: 1 or 2 (changes/spec.py MAX_SITE_UNITS)
        (NS + f"cost_cny = 1\nunits_max = 3\n{GOOD}",
         "new_substation: units_max: must be a whole number of units from 1 to 2, got 3"),
        (NS + f"cost_cny = 1\nunits_max = 1.5\n{GOOD}",
         "new_substation: units_max: must be a whole number of units from 1 to 2, got 1.5"),
        (NS + f"cost_cny = 1\nunits_max = true\n{GOOD}",
         "new_substation: units_max: must be a whole number of units from 1 to 2, got True"),
        (NS + f"cost_cny = 1e25\n{GOOD}", "new_substation: cost_cny: must be at most 1e+12 CNY"),
        (f"[transformer_parallel]\nratings_kva = [630]\nextra_cny = 2e12\n{GOOD}",
         "transformer_parallel: extra_cny: must be at most 1e+12 CNY"),
        ("new_substation = [", "not a valid TOML file"),
        # an integer past a float was an OverflowError traceback; past 4300 digits a ValueError
        (NS + f"cost_cny = {'9' * 400}\n{GOOD}", "new_substation: cost_cny: must be at most 1e+12"),
        (NS + f"cost_cny = -{'9' * 400}\n{GOOD}", "new_substation: cost_cny: must be a finite"),
        (NS + f"cost_cny = {'9' * 5000}\n{GOOD}", "not a valid TOML file"),
        # an empty override (or a file of comments) planned with the built-in prices, silently
        ("", "no measures (an override names at least one of: transformer_swap"),
        ("# prices of 2027\n", "no measures"),
        ("transformer_swap = []\n", "transformer_swap: must be an array of tables"),
    ],
)  # fmt: skip
def test_measures_override_bad_entry_one_line(tmp_path, text, want):
    p = _write(tmp_path, text, "m.toml")
    with pytest.raises(InputError) as e:
        load_measures(p)
    assert str(e.value).startswith(f"{p}: {want}"), str(e.value)
    assert "\n" not in str(e.value)


def test_measures_duplicate_check_is_linear():
    """The duplicate ``to_kva`` check counted each rating in the whole list (quadratic): a file
    of 150,000 entries ran for minutes. 100,000 here: a second or so, minutes before."""
    import time

    from lvplan.model.catalogue import cable_types
    from lvplan.planning.measures import _validated

    entry = {"cost_cny": 1, "source": "x", "status": "U"}
    raw = {"transformer_swap": [{"to_kva": int("630"), **entry} for _ in range(100_000)]}
    t0 = time.perf_counter()
    with pytest.raises(InputError, match="to_kva: 630 kVA appears twice"):
        _validated(raw, "m.toml", cable_types(), complete=False)
    assert time.perf_counter() - t0 < 10
    # a parallel unit's ratings and a measure's cables alike (200,000 ratings hung a plan past
    # two minutes, and a cable listed 20,000 times was taken: 120,018 candidate upgrades)
    lv = "YJV22-0.6/1kV 4x240"
    for raw, want in [
        ({"transformer_parallel": {"ratings_kva": [630] * 200_000 + [800] * 2}},
         "transformer_parallel: ratings_kva: lists 630, 800 kVA more than once"),
        ({"lv_cable_parallel": {"cables": [lv] * 20_000, "fixed_cny": 0}},
         f"lv_cable_parallel: cables: lists {lv!r} more than once"),
    ]:  # fmt: skip
        for v in raw.values():
            v.update(source="x", status="U", **({"extra_cny": 1} if "ratings_kva" in v else {}))
        t0 = time.perf_counter()
        with pytest.raises(InputError) as e:
            _validated(raw, "m.toml", cable_types(), complete=False)
        assert str(e.value) == f"m.toml: {want}"  # (the list is not echoed)
        assert time.perf_counter() - t0 < 10


def test_measures_override_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match="No such file or directory"):
        load_measures(tmp_path / "none.toml")
    with pytest.raises(InputError, match="is a folder"):
        load_measures(tmp_path)


def test_design_kw_is_the_checks_own_function(tmp_path, sz, cn, monkeypatch):
    """The demand's design kW and the check's come from one function (Category.design_kw): a
    changed rule moves both."""
    from lvplan.criteria import Category
    from lvplan.decision import make_question

    monkeypatch.setattr(Category, "design_kw", lambda self, kw: kw * self.demand_factor + 1.0)
    p = _write(tmp_path, "id,kw,category,bus\na,40,restaurant,5\n")
    (d,) = read_demand(p, sz, cn).demands
    q = make_question(sz, bus=5, kw=40, category="restaurant", pf=None, criteria=cn)
    assert d.design_kw == q.design_kw == pytest.approx(25.0)


def test_every_csv_reader_names_the_row_a_quote_never_closes_on(tmp_path):
    """Demand, parcel and application files share one strict reader (io/csvread.py): a quote
    opened on line 3 and never closed is one line naming line 3 (the lenient reader read the
    rest of the file as one cell), and a row past it is not read."""
    from lvplan.planning.parcels import load_densities, read_parcels
    from lvplan.register.batch import read_queue

    parcels = tmp_path / "parcels.csv"
    parcels.write_text(
        "id,land_use,floor_area_m2,year,lon,lat\n"
        "p1,retail,1000,2027,114.06,22.54\n"
        '"p2,retail,1000,2027,114.06,22.54\n'
        "p3,retail,1000,2027,114.06,22.54\n"
    )
    with pytest.raises(InputError, match=r"parcels.csv:3: not a readable CSV row \(a quoted cell"):
        read_parcels(parcels, load_densities())
    queue = tmp_path / "queue.csv"
    queue.write_text('id,bus,kw\na1,5,10\n"a2,5,10\na3,5,10\n')
    with pytest.raises(InputError, match=r"queue.csv:3: not a readable CSV row \(a quoted cell"):
        read_queue(queue)
    # a column given twice (the reader kept the last cell: kw 500, silently)
    queue.write_text("id,kw, kw,bus\na1,5,500,3\n")
    with pytest.raises(InputError, match=r"queue.csv:1: kw: column appears twice"):
        read_queue(queue)
