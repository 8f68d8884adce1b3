"""Build the bundled district `sz-futian` (run: python networks/build_sz_futian.py).

A hand-built Chinese-style 10 kV district in Futian, Shenzhen: two 10 kV cable feeders from the
two sections of one substation's 10 kV busbar, tied at their ends as a "hand-in-hand" loop with a
normally-open switch; eight public 10/0.4 kV transformers (400-800 kVA) in ring main units; YJV22
LV cables to existing customers. Everything is written as CSV tables beside this file, so that a
change to the network is a reviewable diff. Deterministic: no randomness.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandapower as pp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from lvplan.io.netfolder import write_folder  # noqa: E402
from lvplan.model.catalogue import cable_types, trafo_types  # noqa: E402

SUBSTATION = (114.0550, 22.5400)  # lon, lat: a 110/10 kV substation in Futian
M_PER_DEG_LAT = 110_750.0
M_PER_DEG_LON = 102_800.0  # at 22.5° N

# (name, rating kVA, RMU offset from the substation in metres east/north, LV feeders)
# An LV feeder is a chain of (cable, length m, existing load kW at the far bus, bus label).
AREAS = [
    (
        "T1",
        630,
        (300, 150),
        [
            [("4x240", 60, 90, "T1 Xiangmi Rd box"), ("4x185", 70, 80, "T1 Xiangmi Rd shops")],
            [("4x240", 50, 110, "T1 Futian Rd box"), ("4x150", 80, 70, "T1 Futian Rd end")],
            [("4x185", 90, 85, "T1 lane")],
        ],
    ),
    (
        "T2",
        400,
        (650, 300),
        [
            [("4x240", 40, 120, "T2 market box"), ("4x150", 60, 100, "T2 market stalls")],
            [("4x185", 70, 95, "T2 Shennan Rd")],
        ],
    ),
    (
        "T3",
        800,
        (1000, 420),
        [
            [("4x240", 30, 140, "T3 tower A"), ("4x240", 60, 120, "T3 tower B")],
            [("4x240", 50, 110, "T3 plaza box"), ("4x185", 60, 90, "T3 plaza shops")],
            [("4x185", 80, 60, "T3 car park")],
        ],
    ),
    (
        "T4",
        500,
        (1350, 600),
        [
            [
                ("4x240", 70, 120, "T4 Huanggang box"),
                ("4x185", 60, 90, "T4 Huanggang village"),
                ("4x150", 50, 60, "T4 hot-pot lane"),
            ],
            [("4x185", 60, 50, "T4 school")],
        ],
    ),
    (
        "T5",
        630,
        (-250, 250),
        [
            [("4x240", 50, 120, "T5 office box"), ("4x185", 60, 100, "T5 offices")],
            [("4x240", 70, 110, "T5 Caitian Rd")],
            [("4x150", 60, 40, "T5 kiosk")],
        ],
    ),
    (
        "T6",
        800,
        (-600, 450),
        [
            [("4x240", 40, 100, "T6 mall box"), ("4x240", 50, 140, "T6 mall")],
            [
                ("4x185", 60, 60, "T6 street box"),
                ("4x150", 90, 30, "T6 street"),
                ("4x150", 110, 20, "T6 far end"),
            ],
            [("4x240", 60, 120, "T6 hotel")],
        ],
    ),
    (
        "T7",
        400,
        (-950, 650),
        [
            [("4x240", 40, 140, "T7 food court box"), ("4x185", 40, 105, "T7 food court")],
            [("4x240", 60, 125, "T7 night market")],
        ],
    ),
    (
        "T8",
        630,
        (-1300, 800),
        [
            [("4x240", 60, 100, "T8 clinic box"), ("4x185", 60, 70, "T8 clinic")],
            [("4x185", 80, 80, "T8 residences")],
        ],
    ),
]
LOAD_PF = 0.92
LV_DIRECTIONS = [(1.0, 0.2), (-0.3, 1.0), (0.2, -1.0), (-1.0, -0.2)]


def lonlat(east_m: float, north_m: float) -> tuple[float, float]:
    return (SUBSTATION[0] + east_m / M_PER_DEG_LON, SUBSTATION[1] + north_m / M_PER_DEG_LAT)


def geo(east_m: float, north_m: float) -> str:
    lon, lat = lonlat(east_m, north_m)
    return f'{{"type": "Point", "coordinates": [{lon:.6f}, {lat:.6f}]}}'


def build():
    net = pp.create_empty_network(name="sz-futian")
    cables = cable_types()
    for c in cables.values():
        pp.create_std_type(
            net,
            {
                "r_ohm_per_km": c.r_ohm_per_km,
                "x_ohm_per_km": c.x_ohm_per_km,
                "c_nf_per_km": c.c_nf_per_km,
                "max_i_ka": c.max_i_ka,
                "type": "cs",
            },
            c.name,
            element="line",
        )
    bb1 = pp.create_bus(net, 10.0, name="Futian 10kV busbar I", geo=geo(0, 0))
    bb2 = pp.create_bus(net, 10.0, name="Futian 10kV busbar II", geo=geo(0, 10))
    pp.create_switch(net, bb1, bb2, et="b", closed=True, name="bus coupler")
    pp.create_ext_grid(net, bb1, vm_pu=1.02, name="110/10 kV substation (OLTC-held)")
    mv = cables["YJV22-8.7/15kV 3x300"]
    feeders = {"F1": (bb1, AREAS[:4]), "F2": (bb2, AREAS[4:])}
    ends = {}
    for fname, (start, areas) in feeders.items():
        prev, prev_xy = start, (0.0, 0.0)
        for seg, (tname, kva, (e, n), lv_feeders) in enumerate(areas):
            rmu = pp.create_bus(net, 10.0, name=f"{tname} RMU", geo=geo(e, n))
            length = math.hypot(e - prev_xy[0], n - prev_xy[1]) * 1.3 / 1000.0
            pp.create_line(
                net,
                prev,
                rmu,
                round(length, 3),
                mv.name,
                name=fname if seg == 0 else f"{fname} to {tname} RMU",
            )
            t = trafo_types()[kva]
            board = pp.create_bus(net, 0.4, name=f"{tname} LV board", geo=geo(e + 8, n + 5))
            pp.create_transformer_from_parameters(
                net,
                rmu,
                board,
                sn_mva=kva / 1000.0,
                vn_hv_kv=10.0,
                vn_lv_kv=0.4,
                vk_percent=t.vk_percent,
                vkr_percent=t.vkr_percent,
                pfe_kw=t.pfe_kw,
                i0_percent=t.i0_percent,
                shift_degree=150.0,
                tap_side="hv",
                tap_neutral=0,
                tap_min=-2,
                tap_max=2,
                tap_step_percent=2.5,
                tap_pos=1,
                tap_changer_type="Ratio",
                name=f"{tname} {kva} kVA public transformer",
            )
            for k, chain in enumerate(lv_feeders):
                dx, dy = LV_DIRECTIONS[k % len(LV_DIRECTIONS)]
                at, pos = board, 0.0
                for cable, length_m, load_kw, label in chain:
                    pos += length_m
                    b = pp.create_bus(
                        net, 0.4, name=label, geo=geo(e + 8 + dx * pos, n + 5 + dy * pos)
                    )
                    pp.create_line(
                        net,
                        at,
                        b,
                        length_m / 1000.0,
                        f"YJV22-0.6/1kV {cable}",
                        name=f"{tname} {cable} to {label}",
                    )
                    q = load_kw * math.tan(math.acos(LOAD_PF))
                    pp.create_load(
                        net,
                        b,
                        p_mw=load_kw / 1000.0,
                        q_mvar=round(q / 1000.0, 6),
                        name=f"{label} customers",
                    )
                    at = b
            prev, prev_xy = rmu, (e, n)
        ends[fname] = prev
    tie = pp.create_line(net, ends["F1"], ends["F2"], 0.6, mv.name, name="F1-F2 tie cable")
    pp.create_switch(net, ends["F2"], tie, et="l", closed=False, name="normally-open point")
    return net


if __name__ == "__main__":
    out = HERE / "sz-futian"
    write_folder(
        build(),
        out,
        {
            "name": "sz-futian",
            "description": "Hand-built 10 kV district in Futian, Shenzhen: two feeders in a "
            "hand-in-hand loop, 8 public 10/0.4 kV transformers, YJV22 LV cables",
            "source": "csv",
            "built_by": "networks/build_sz_futian.py",
        },
    )
    print(f"wrote {out}")
