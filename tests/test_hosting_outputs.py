"""`lvplan hosting --out DIR`: the files, the map in a real headless browser, bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from lvplan.cli import main
from lvplan.hosting import COLUMNS


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    d = tmp_path_factory.mktemp("hosting") / "sz"
    assert main(["hosting", "sz-futian", "--out", str(d)]) == 0
    return d


def test_files_are_written(out):
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "hosting.csv",
        "hosting.geojson",
        "map.html",
        "map.png",
        "summary.json",
        "transformers.csv",
    ]
    assert not list(out.glob(".*tmp"))  # no temporary file left behind


def test_hosting_csv_and_transformers_csv_agree(out):
    h = pd.read_csv(out / "hosting.csv", keep_default_na=False)
    assert list(h.columns) == COLUMNS
    assert len(h) == 41
    t = pd.read_csv(out / "transformers.csv").set_index("name")
    assert len(t) == 8
    t7 = t.loc["T7 400 kVA public transformer"]
    assert t7.loading_percent == pytest.approx(104.9, abs=0.05)
    assert t7.headroom_kva < 0 and t7.max_hosting_kw == 0
    for name, row in t.iterrows():
        mine = h[h.transformer == name].hosting_kw
        assert row.buses == len(mine)
        assert row.min_hosting_kw == pytest.approx(mine.min())
        assert row.max_hosting_kw == pytest.approx(mine.max())
        assert row.buses_200kw == int((mine >= 200).sum())
        assert row.headroom_kva == pytest.approx(
            (100.0 - row.loading_percent) / 100.0 * row.rated_kva, abs=0.06
        )


def test_geojson_is_valid_wgs84_points(out):
    gj = json.loads((out / "hosting.geojson").read_text(encoding="utf-8"))
    assert gj["type"] == "FeatureCollection"
    buses = [f for f in gj["features"] if f["properties"]["kind"] == "bus"]
    trafos = [f for f in gj["features"] if f["properties"]["kind"] == "transformer"]
    assert len(buses) == 41 and len(trafos) == 8
    for f in gj["features"]:
        lon, lat = f["geometry"]["coordinates"]
        assert f["geometry"]["type"] == "Point"
        assert 113.7 < lon < 114.7 and 22.4 < lat < 22.9  # Shenzhen
    classes = {f["properties"]["class"] for f in buses}
    assert classes <= {"≥ 200 kW", "100–200 kW", "< 100 kW"}
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert sum(summary["classes"].values()) == 41
    assert summary["network"]["fingerprint"] == summary["network"]["fingerprint"].lower()
    assert summary["binding_kinds"]["pre_existing"] == 9


def test_png_is_a_picture(out):
    data = (out / "map.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def test_map_renders_in_headless_chromium(out, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("LVPLAN_REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed")
    html = (out / "map.html").read_text(encoding="utf-8")
    assert "cdn.jsdelivr" not in html  # Leaflet is inlined: the map works offline
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
        "--enable-logging=stderr",
        "--v=0",
    ]
    res = subprocess.run(
        [browser, *flags, "--dump-dom", (out / "map.html").as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    dom = res.stdout
    # 41 buses drawn as Leaflet vector circles, 42 lines (9 MV sections with coordinates at both
    # ends and 33 LV cables), 8 transformer areas, 8 transformer markers, the legend
    assert dom.count('<path class="lvplan-bus leaflet-interactive"') == 41
    assert dom.count('<path class="lvplan-line leaflet-interactive"') == 42
    assert dom.count('<path class="lvplan-area leaflet-interactive"') == 8
    assert dom.count("lvplan-trafo") >= 8
    assert dom.count('class="leaflet-marker-icon') == 8
    assert "lvplan-legend" in dom and "≥ 200 kW: 2" in dom and "transformer area" in dom
    errors = [ln for ln in res.stderr.splitlines() if "CONSOLE" in ln and "Uncaught" in ln]
    assert not errors, errors
    shot = Path(os.environ.get("LVPLAN_SCREENSHOT_DIR", tmp_path)) / "map.png"
    subprocess.run(
        [
            browser,
            *flags,
            "--window-size=1000,800",
            f"--screenshot={shot}",
            (out / "map.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    assert shot.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-kw", "-5"], "--max-kw must be a positive number"),
        (["--max-kw", "nan"], "--max-kw must be a positive number"),
        (["--workers", "0"], "--workers must be >= 1"),
        (["--workers", "two"], "--workers must be a whole number of at most 18 ASCII digits"),
        (["--pf", "1.5"], "pf must be in (0, 1]"),
        (["--resume", "/nonexistent/run"], "no such folder"),
        (["--resume", __file__], "is a file, not a folder"),
        (["--set", "nothing=1"], "unknown"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, message, tmp_path, capsys):
    target = tmp_path / "o"
    assert main(["hosting", "sz-futian", "--out", str(target), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lvplan: error:") and message in err and "\n" not in err
    assert not (target / "hosting.csv").exists()


def test_unknown_network_exit_2(tmp_path, capsys):
    assert main(["hosting", str(tmp_path / "nope.json"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err


def test_names_in_the_map_are_text_not_markup(tmp_path):
    """A bus or transformer name is the network owner's data: in map.html it is shown as text
    (escaped), never run as markup or script, in tooltips and popups alike."""
    net = tmp_path / "net"
    shutil.copytree(Path(__file__).resolve().parents[1] / "networks" / "sz-futian", net)
    bus = pd.read_csv(net / "bus.csv", index_col=0)
    lv = bus.index[bus.vn_kv < 1][-1]
    evil = "<img src=x onerror=alert(1)>`${x}`"
    bus.loc[lv, "name"] = evil
    bus.to_csv(net / "bus.csv")
    trafo = pd.read_csv(net / "trafo.csv", index_col=0)
    trafo.loc[trafo.index[-1], "name"] = "<script>alert(2)</script>"
    trafo.to_csv(net / "trafo.csv")
    out = tmp_path / "out"
    assert main(["hosting", str(net), "--out", str(out)]) == 0
    page = (out / "map.html").read_text(encoding="utf-8")
    assert "<img src=x" not in page and "<script>alert(2)" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in page


def test_no_maps_removes_an_earlier_runs_maps_and_leaves_a_folder_of_that_name(out, tmp_path):
    """``--no-maps`` writes no map and leaves none of an earlier run's beside its tables (they
    would show that run's figures); a folder named map.html is not this run's to refuse or
    touch."""
    d = tmp_path / "again"
    shutil.copytree(out, d)
    assert (d / "map.html").is_file() and (d / "map.png").is_file()
    assert main(["hosting", "sz-futian", "--no-maps", "--out", str(d)]) == 0
    names = sorted(p.name for p in d.iterdir() if not p.name.startswith("."))
    assert names == ["hosting.csv", "hosting.geojson", "summary.json", "transformers.csv"]
    (d / "map.html").mkdir()
    (d / "map.html" / "mine.txt").write_text("kept", encoding="utf-8")
    assert main(["hosting", "sz-futian", "--no-maps", "--out", str(d)]) == 0
    assert (d / "map.html" / "mine.txt").read_text(encoding="utf-8") == "kept"
    # with the maps, the folder stands where a file goes: one line, exit 2, nothing written
    before = (d / "hosting.csv").stat().st_mtime_ns
    assert main(["hosting", "sz-futian", "--out", str(d)]) == 2
    assert (d / "hosting.csv").stat().st_mtime_ns == before


def test_staged_files_drops_only_what_the_run_did_not_write(tmp_path):
    """``drop`` names an earlier run's files to remove; one this run wrote stays (the check
    looked in the stage after the renames had emptied it, and removed the new file)."""
    from lvplan.io.atomic import staged_files

    (tmp_path / "map.html").write_text("old", encoding="utf-8")
    (tmp_path / "map.png").write_text("old", encoding="utf-8")
    with staged_files(tmp_path, drop=("map.html", "map.png")) as stage:
        (stage / "map.html").write_text("new", encoding="utf-8")
        (stage / "a.csv").write_text("x", encoding="utf-8")
    names = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert names == ["a.csv", "map.html"]
    assert (tmp_path / "map.html").read_text(encoding="utf-8") == "new"


def test_hexagons_hold_every_bus_once_in_the_hexagon_of_its_nearest_centre():
    """The city map's hexagons (:mod:`lvplan.hosting.hexbins`): every bus is counted once, in
    the hexagon whose centre is nearest to it (what a hexagon is), and a hexagon's figures are
    its own buses'."""
    import numpy as np

    from lvplan.hosting.hexbins import M_PER_DEG, hexbins

    rng = np.random.default_rng(7)
    n = 5000
    lon = 114.05 + rng.random(n) * 0.05
    lat = 22.53 + rng.random(n) * 0.03
    kw = rng.choice([0.0, 50.0, 150.0, 250.0, 1000.0], n)
    lon[3], lat[3] = np.nan, np.nan  # (no position: left out)
    cells, grid = hexbins(lon, lat, kw, target=200)
    assert int(cells.buses.sum()) == n - 1
    assert 150 <= len(cells) <= 260 and grid["size_m"] > 150.0
    ok = np.isfinite(lon)
    kx = M_PER_DEG * np.cos(np.radians(grid["lat0"]))
    dx = (lon[ok, None] - cells.lon.to_numpy()[None, :]) * kx
    dy = (lat[ok, None] - cells.lat.to_numpy()[None, :]) * M_PER_DEG
    nearest = np.argmin(np.hypot(dx, dy), axis=1)
    assert np.hypot(dx, dy).min(axis=1).max() <= grid["size_m"] * (1 + 1e-9)
    for j, c in enumerate(cells.itertuples()):
        mine = kw[ok][nearest == j]
        assert c.buses == mine.size
        assert c.buses_200kw == int((mine >= 200).sum())
        assert c.buses_below_100kw == int((mine < 100).sum())
        assert c.min_kw == mine.min() and c.median_kw == np.median(mine)


def test_a_city_map_draws_every_bus_in_hexagons(tmp_path, monkeypatch):
    """Above MAP_MAX_BUSES (a city: a point per bus is a solid blot) the map draws every bus in
    hexagons coloured by their median hosting kW, with the weakest buses in a layer left off,
    and the legend says so."""
    from lvplan.hosting import outputs
    from lvplan.hosting.hexbins import hexbins

    browser = _chromium()
    if browser is None:
        if os.environ.get("LVPLAN_REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed")
    monkeypatch.setattr(outputs, "MAP_MAX_BUSES", 10)
    d = tmp_path / "city"
    assert main(["hosting", "sz-futian", "--out", str(d)]) == 0
    h = pd.read_csv(d / "hosting.csv")
    cells, _grid = hexbins(h.lon.to_numpy(), h.lat.to_numpy(), h.hosting_kw.to_numpy())
    html = (d / "map.html").read_text(encoding="utf-8")
    assert "the 10 buses with the least room of 41" in html and "median hosting 0" in html
    res = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", "--dump-dom", (d / "map.html").as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    dom = res.stdout
    assert dom.count('<path class="lvplan-hexagon leaflet-interactive"') == len(cells) > 1
    assert dom.count('class="lvplan-bus') == 0  # (their layer is off until chosen)
