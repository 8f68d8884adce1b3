"""A synthetic city for scale tests: real LV grids on 10 kV feeders, laid out over Shenzhen.

``build_city(n_transformers, seed)`` is deterministic (same arguments, same network). It takes
as templates four SimBench LV grids (``1-LV-semiurb4``, ``1-LV-urban6``, ``1-LV-rural2``,
``1-LV-semiurb5``: 43–110 LV buses each, their cables, loads at the high-load case, and their
transformer's impedance) and the LV areas of the bundled ``sz-futian`` district, and builds:

* 110/10 kV substations, each an ext_grid at a 10 kV busbar held at 1.03 pu (the OLTC's job),
  spread over the districts of Shenzhen (Futian, Luohu, Nanshan, ...), about 2 km apart;
* 10 feeders per substation, radial YJV22 3x300 cables of 150–400 m sections, one ring main
  unit per section, each feeding one public 10/0.4 kV transformer (≤ 16 per feeder);
* behind every transformer a copy of a template LV grid, its loads scaled by a factor drawn
  from U(0.4, 0.9) so that the city has both full and empty transformers, with coordinates
  (``lon``/``lat``) around its ring main unit.

The mean is about 78 LV buses per transformer: 13,000 transformers make a city of one million
LV buses. SimBench's static generators are left out (the high-load case has none producing).
"""

from __future__ import annotations

import math
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lvplan.code_id import code_id
from lvplan.errors import InputError
from lvplan.io import signed
from lvplan.io.atomic import atomic_file

SIMBENCH_TEMPLATES = (
    "1-LV-semiurb4--0-sw",
    "1-LV-urban6--0-sw",
    "1-LV-rural2--0-sw",
    "1-LV-semiurb5--0-sw",
)
#: Share of transformers built from each SimBench template; the rest from sz-futian's areas.
WEIGHTS = (0.20, 0.25, 0.28, 0.25)
DISTRICTS = (
    ("Futian", 114.055, 22.541),
    ("Luohu", 114.131, 22.548),
    ("Nanshan", 113.930, 22.533),
    ("Bao'an", 113.884, 22.600),
    ("Longgang", 114.247, 22.720),
    ("Longhua", 114.045, 22.696),
    ("Guangming", 113.936, 22.748),
    ("Pingshan", 114.346, 22.708),
    ("Yantian", 114.237, 22.557),
    ("Dapeng", 114.479, 22.594),
)
FEEDERS_PER_SUBSTATION = 10
TRAFOS_PER_FEEDER = 16
M_PER_DEG_LAT = 111_320.0


@dataclass
class Template:
    name: str
    n_bus: int
    x_m: np.ndarray
    y_m: np.ndarray
    line_from: np.ndarray
    line_to: np.ndarray
    line: pd.DataFrame  # length_km, r_ohm_per_km, x_ohm_per_km, c_nf_per_km, max_i_ka
    load_bus: np.ndarray
    load_p: np.ndarray
    load_q: np.ndarray
    trafo: dict  # sn_mva, vk_percent, vkr_percent, pfe_kw, i0_percent, shift_degree


def _cache_path() -> Path:
    import os

    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    # (keyed by the code and its libraries, as the other kept work: lvplan.code_id)
    safe = "".join(c if c.isalnum() or c in ".-" else "_" for c in code_id())
    return base / "lvplan" / f"synth-templates-{safe}.pkl"


def templates() -> list[Template]:
    """The LV templates (SimBench grids are converted once and cached in ~/.cache/lvplan)."""
    path = _cache_path()
    try:
        with signed.verified(path) as fh:  # (one this user's lvplan did not write: rebuilt)
            out = None if fh is None else pickle.load(fh)
        if isinstance(out, list) and len(out) == len(SIMBENCH_TEMPLATES) + 1:
            return out
    except Exception:  # a stale or broken cache is rebuilt
        pass
    out = [_simbench_template(code) for code in SIMBENCH_TEMPLATES]
    out.append(_futian_template())
    # atomic_file: two processes building it at once write their own temporaries, not one
    # ``.tmp`` both; mode 0600: only its owner may read it, as the islands cache
    try:
        with atomic_file(path, mode=0o600) as fh, signed.signing(fh) as w:
            pickle.dump(out, w)
    except OSError:
        pass
    return out


def _from_lv_part(name, net, lv_board: int, lv_buses: list[int], trafo_row, scale_m=1.0):
    pos = {b: i for i, b in enumerate(lv_buses)}
    lon, lat = _coords(net, lv_buses)
    lat0 = lat[pos[lv_board]]
    x = (lon - lon[pos[lv_board]]) * M_PER_DEG_LAT * math.cos(math.radians(lat0)) * scale_m
    y = (lat - lat0) * M_PER_DEG_LAT * scale_m
    lines = net.line[net.line.from_bus.isin(pos) & net.line.to_bus.isin(pos)]
    lines = lines[lines.in_service.astype(bool)]
    loads = net.load[net.load.bus.isin(pos) & net.load.in_service.astype(bool)]
    tr = {
        k: float(trafo_row[k])
        for k in ("sn_mva", "vk_percent", "vkr_percent", "pfe_kw", "i0_percent", "shift_degree")
    }
    return Template(
        name=name,
        n_bus=len(lv_buses),
        x_m=np.nan_to_num(x),
        y_m=np.nan_to_num(y),
        line_from=lines.from_bus.map(pos).to_numpy(np.int64),
        line_to=lines.to_bus.map(pos).to_numpy(np.int64),
        line=lines[["length_km", "r_ohm_per_km", "x_ohm_per_km", "c_nf_per_km", "max_i_ka"]]
        .astype(float)
        .reset_index(drop=True),
        load_bus=loads.bus.map(pos).to_numpy(np.int64),
        load_p=(loads.p_mw * loads.scaling).to_numpy(float),
        load_q=(loads.q_mvar * loads.scaling).to_numpy(float),
        trafo=tr,
    )


def _coords(net, buses):
    from lvplan.hosting.run import bus_coordinates

    lon, lat = bus_coordinates(net)
    return lon.loc[buses].to_numpy(float), lat.loc[buses].to_numpy(float)


def _simbench_template(code: str) -> Template:
    from lvplan.io.simbench_source import load_simbench

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = load_simbench(code)
    tr = net.trafo.iloc[0]
    lv = net.bus.index[net.bus.vn_kv < 1].tolist()
    return _from_lv_part(code, net, int(tr.lv_bus), lv, tr)


def _futian_template() -> Template:
    """sz-futian's eight LV areas side by side behind one 630 kVA transformer's impedance."""
    from lvplan.io.load import load_network

    network = load_network("sz-futian")
    net = network.pp
    areas = network.topology.areas
    # the largest area of the bundled district as the template
    area = max(areas, key=lambda a: len(a.buses))
    tr = net.trafo.loc[area.trafos[0]]
    return _from_lv_part("sz-futian", net, int(tr.lv_bus), list(area.buses), tr, scale_m=1.0)


def build_city(n_transformers: int, *, seed: int = 1):
    """A pandapower net of ``n_transformers`` public transformers (see the module docstring)."""
    import pandapower as pp

    if n_transformers < 1:
        raise InputError(f"--transformers must be >= 1, got {n_transformers}")
    rng = np.random.default_rng(seed)
    tps = templates()
    weights = np.array([*WEIGHTS, 1.0 - sum(WEIGHTS)])
    choice = rng.choice(len(tps), size=n_transformers, p=weights / weights.sum())
    scale = rng.uniform(0.4, 0.9, size=n_transformers)
    n_feeders = math.ceil(n_transformers / TRAFOS_PER_FEEDER)
    n_subs = math.ceil(n_feeders / FEEDERS_PER_SUBSTATION)

    # substations: round-robin over districts, on a 2 km grid around each district centre
    sub_lon = np.zeros(n_subs)
    sub_lat = np.zeros(n_subs)
    sub_name = []
    for s in range(n_subs):
        d = s % len(DISTRICTS)
        k = s // len(DISTRICTS)
        ring = math.ceil((math.sqrt(k + 1) - 1) / 2)
        ang = rng.uniform(0, 2 * math.pi)
        r_m = 2000.0 * (ring + rng.uniform(0.2, 1.0)) if k else 0.0
        name, lon0, lat0 = DISTRICTS[d]
        sub_lat[s] = lat0 + r_m * math.sin(ang) / M_PER_DEG_LAT
        sub_lon[s] = lon0 + r_m * math.cos(ang) / (M_PER_DEG_LAT * math.cos(math.radians(lat0)))
        sub_name.append(f"{name} S{k + 1}")

    # MV buses: busbars, then one ring main unit per transformer
    feeder_of = np.arange(n_transformers) // TRAFOS_PER_FEEDER
    pos_in_feeder = np.arange(n_transformers) % TRAFOS_PER_FEEDER
    sub_of_feeder = np.arange(n_feeders) // FEEDERS_PER_SUBSTATION
    f_angle = 2 * math.pi * (
        np.arange(n_feeders) % FEEDERS_PER_SUBSTATION
    ) / FEEDERS_PER_SUBSTATION + rng.uniform(-0.15, 0.15, n_feeders)
    sec_m = rng.uniform(150.0, 400.0, n_transformers)
    dist = np.zeros(n_transformers)
    for f in range(n_feeders):  # cumulative distance along each feeder
        sel = slice(f * TRAFOS_PER_FEEDER, min((f + 1) * TRAFOS_PER_FEEDER, n_transformers))
        dist[sel] = np.cumsum(sec_m[sel])
    s_of_t = sub_of_feeder[feeder_of]
    ang_t = f_angle[feeder_of]
    coslat = np.cos(np.radians(sub_lat[s_of_t]))
    rmu_lat = sub_lat[s_of_t] + dist * np.sin(ang_t) / M_PER_DEG_LAT
    rmu_lon = sub_lon[s_of_t] + dist * np.cos(ang_t) / (M_PER_DEG_LAT * coslat)

    net = pp.create_empty_network(name=f"synthetic city, {n_transformers} transformers", sn_mva=1.0)
    bb = pp.create_buses(
        net, n_subs, vn_kv=10.0, name=[f"{n} 10kV busbar" for n in sub_name], type="b"
    )
    rmu = pp.create_buses(
        net,
        n_transformers,
        vn_kv=10.0,
        name=[f"F{f + 1} RMU{k + 1}" for f, k in zip(feeder_of, pos_in_feeder, strict=True)],
        type="n",
    )
    for s in range(n_subs):
        pp.create_ext_grid(net, int(bb[s]), vm_pu=1.03, name=f"{sub_name[s]} 110/10 kV")
    from lvplan.model.catalogue import cable_type

    mv = cable_type("YJV22-8.7/15kV 3x300")
    prev = np.where(pos_in_feeder == 0, bb[s_of_t], np.r_[rmu[0], rmu[:-1]])
    pp.create_lines_from_parameters(
        net,
        from_buses=prev,
        to_buses=rmu,
        length_km=sec_m / 1000.0,
        r_ohm_per_km=mv.r_ohm_per_km,
        x_ohm_per_km=mv.x_ohm_per_km,
        c_nf_per_km=mv.c_nf_per_km,
        max_i_ka=mv.max_i_ka,
        name=[f"F{f + 1} section {k + 1}" for f, k in zip(feeder_of, pos_in_feeder, strict=True)],
    )

    # LV grids: every array built by repeating the templates with offsets
    counts = np.array([tps[c].n_bus for c in choice])
    first = len(net.bus) + np.r_[0, np.cumsum(counts)[:-1]]
    n_lv = int(counts.sum())
    lv_lon = np.empty(n_lv)
    lv_lat = np.empty(n_lv)
    names: list[str] = []
    lf, lt, ltab, ldb, lp, lq = [], [], [], [], [], []
    for t, c in enumerate(choice):
        tp = tps[c]
        o = first[t] - first[0]
        lv_lat[o : o + tp.n_bus] = rmu_lat[t] + (tp.y_m + 15.0) / M_PER_DEG_LAT
        lv_lon[o : o + tp.n_bus] = rmu_lon[t] + (tp.x_m + 15.0) / (M_PER_DEG_LAT * coslat[t])
        names.extend(f"T{t + 1} b{i}" for i in range(tp.n_bus))
        lf.append(tp.line_from + first[t])
        lt.append(tp.line_to + first[t])
        ltab.append(c)
        ldb.append(tp.load_bus + first[t])
        lp.append(tp.load_p * scale[t])
        lq.append(tp.load_q * scale[t])
    lv = pp.create_buses(net, n_lv, vn_kv=0.4, name=names, type="n")
    assert int(lv[0]) == int(first[0])
    line_tab = pd.concat([tps[c].line for c in ltab], ignore_index=True)
    pp.create_lines_from_parameters(
        net,
        from_buses=np.concatenate(lf),
        to_buses=np.concatenate(lt),
        length_km=line_tab.length_km.to_numpy(),
        r_ohm_per_km=line_tab.r_ohm_per_km.to_numpy(),
        x_ohm_per_km=line_tab.x_ohm_per_km.to_numpy(),
        c_nf_per_km=line_tab.c_nf_per_km.to_numpy(),
        max_i_ka=line_tab.max_i_ka.to_numpy(),
    )
    pp.create_loads(net, np.concatenate(ldb), p_mw=np.concatenate(lp), q_mvar=np.concatenate(lq))
    tr = [tps[c].trafo for c in choice]
    pp.create_transformers_from_parameters(
        net,
        hv_buses=rmu,
        lv_buses=first,
        sn_mva=[x["sn_mva"] for x in tr],
        vn_hv_kv=10.0,
        vn_lv_kv=0.4,
        vk_percent=[x["vk_percent"] for x in tr],
        vkr_percent=[x["vkr_percent"] for x in tr],
        pfe_kw=[x["pfe_kw"] for x in tr],
        i0_percent=[x["i0_percent"] for x in tr],
        shift_degree=[x["shift_degree"] for x in tr],
        name=[f"T{t + 1} {x['sn_mva'] * 1000:g} kVA" for t, x in enumerate(tr)],
    )
    lon = np.r_[sub_lon, rmu_lon, lv_lon]
    lat = np.r_[sub_lat, rmu_lat, lv_lat]
    net.bus["lon"] = np.round(lon, 7)
    net.bus["lat"] = np.round(lat, 7)
    return net


def write_network(net, out: Path, *, name: str) -> None:
    """A networks/ folder (CSV tables), or a pandapower JSON file when ``out`` ends in .json;
    either written whole or not at all (a failure is one line, :class:`InputError`)."""
    if out.suffix.lower() == ".json":
        import pandapower as pp

        from lvplan.io.atomic import write_output_file

        geo = net.bus[["lon", "lat"]].copy()
        net.bus["geo"] = [
            f'{{"type": "Point", "coordinates": [{x}, {y}]}}'
            for x, y in zip(geo.lon, geo.lat, strict=True)
        ]
        net.bus.drop(columns=["lon", "lat"], inplace=True)
        write_output_file(out, pp.to_json(net))
        return
    from lvplan.io.netfolder import write_folder

    write_folder(
        net,
        out,
        {
            "name": name,
            "description": f"synthetic city: {len(net.trafo)} transformers, {len(net.bus)} buses",
            "source": "csv",
            "built_by": "lvplan synth city",
        },
    )
