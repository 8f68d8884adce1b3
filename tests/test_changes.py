"""Network changes (issue 10): ``evaluate`` against an independent path, the same change made
through pandapower's own API in this file and solved by ``runpp``; bad change files; ``apply``.

Contract: voltages within 1e-6 pu and loadings within 0.01 %-points of pandapower, for every
change kind, on the bundled networks and on grids nobody here wrote.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest
from reference import OPTS, _violations

import lvplan
from lvplan.changes import Changes, load_changes
from lvplan.changes.apply import apply_changes
from lvplan.cli import main
from lvplan.errors import InputError
from lvplan.evaluation import evaluate
from lvplan.model.catalogue import cable_types, trafo_types
from lvplan.model.network import Network

LV_CABLE = "YJV22-0.6/1kV 4x240"
MV_CABLE = "YJV22-8.7/15kV 3x300"
MV_CABLE_20 = "YJV22-12/20kV 3x300"


def _cable(name):
    c = cable_types()[name]
    return dict(
        r_ohm_per_km=c.r_ohm_per_km,
        x_ohm_per_km=c.x_ohm_per_km,
        c_nf_per_km=c.c_nf_per_km,
        max_i_ka=c.max_i_ka,
    )


def _unit(kva):
    t = trafo_types()[kva]
    return dict(
        sn_mva=kva / 1000,
        vk_percent=t.vk_percent,
        vkr_percent=t.vkr_percent,
        pfe_kw=t.pfe_kw,
        i0_percent=t.i0_percent,
    )


# -- the independent path: each change written with pandapower's API ------------------------------
def pp_replace_transformer(net, t, kva):
    for k, v in _unit(kva).items():
        net.trafo.at[t, k] = v


def pp_parallel_transformer(net, t, kva):
    r = net.trafo.loc[t]
    taps = {
        k: r[k]
        for k in (
            "tap_side",
            "tap_neutral",
            "tap_min",
            "tap_max",
            "tap_step_percent",
            "tap_pos",
            "tap_step_degree",
            "tap_changer_type",
        )
        if k in r.index and not (isinstance(r[k], float) and np.isnan(r[k])) and r[k] is not None
    }
    pp.create_transformer_from_parameters(
        net, r.hv_bus, r.lv_bus, vn_hv_kv=r.vn_hv_kv, vn_lv_kv=r.vn_lv_kv,
        shift_degree=r.shift_degree, **taps, **_unit(kva),
    )  # fmt: skip


def pp_replace_line(net, ln, cable):
    for k, v in _cable(cable).items():
        net.line.at[ln, k] = v
    net.line.at[ln, "g_us_per_km"] = 0.0


def pp_parallel_line(net, ln, cable):
    r = net.line.loc[ln]
    pp.create_line_from_parameters(net, r.from_bus, r.to_bus, r.length_km, **_cable(cable))


def pp_new_substation(net, mv_bus, length_m, kva, units=1):
    vn = net.bus.vn_kv.at[mv_bus]
    hv = pp.create_bus(net, vn)
    lv = pp.create_bus(net, 0.4)
    # (a 8.7/15 kV cable on a 10 kV network, a 12/20 kV one on a 20 kV network: SimBench's
    # LV grids hang from 20 kV)
    cable = MV_CABLE if vn <= 15.0 else MV_CABLE_20
    pp.create_line_from_parameters(net, mv_bus, hv, length_m / 1000, **_cable(cable))
    shift = net.trafo.shift_degree[net.trafo.vn_lv_kv < 1].iloc[0]
    for _ in range(units):
        pp.create_transformer_from_parameters(
            net, hv, lv, vn_hv_kv=vn, vn_lv_kv=0.4, shift_degree=shift, **_unit(kva)
        )
    return lv


def pp_new_cable(net, a, b, length_m, cable):
    pp.create_line_from_parameters(net, a, b, length_m / 1000, **_cable(cable))


def _compare(network: Network, changes: Changes, edit, crit) -> None:
    ev = evaluate(network, changes, crit)
    ref = copy.deepcopy(network.pp)
    edit(ref)
    pp.runpp(ref, **OPTS)
    dv = np.abs(ev.state.vm_pu - ref.res_bus.vm_pu.to_numpy())
    dl = np.abs(ev.state.line_loading_percent - ref.res_line.loading_percent.to_numpy())
    dt = np.abs(ev.state.trafo_loading_percent - ref.res_trafo.loading_percent.to_numpy())
    assert np.nanmax(dv) <= 1e-6, changes
    assert np.nanmax(dl, initial=0.0) <= 0.01 and np.nanmax(dt, initial=0.0) <= 0.01, changes
    # the same elements are out of bounds in both (a value within 1e-6 of a limit aside)
    got = {(v.element.split()[0], int(v.element.split()[1])) for v in ev.violations}
    want = {("trafo" if k == "trafo" else k, i) for k, i in _violations(ref, crit)}
    assert got == want, changes


def _pick(network: Network):
    """A public transformer, its most loaded LV line, an LV bus at the far end, an MV bus."""
    net = network.pp
    base = network.base_state()
    tr = net.trafo
    public = tr.index[(tr.vn_lv_kv < 1) & tr.in_service.astype(bool)]
    t = int(public[0])
    area = network.topology.area_of(int(tr.at[t, "lv_bus"]))
    rows = [net.line.index.get_loc(i) for i in area.lines]
    loads = base.line_loading_percent[rows]
    ln = int(area.lines[int(np.nanargmax(loads))])
    far = int(area.buses[-1])
    near = int(tr.at[t, "lv_bus"])
    mv = int(tr.at[t, "hv_bus"])
    return t, ln, far, near, mv


NETWORKS = {
    "sz-futian": lambda: lvplan.load_network("sz-futian"),
    "simbench-urban": lambda: lvplan.load_network("simbench-urban"),
    "simbench:1-LV-rural2--0-sw": lambda: lvplan.load_network("simbench:1-LV-rural2--0-sw"),
    "kerber_vorstadtnetz_kabel_1": lambda: Network(
        pn.create_kerber_vorstadtnetz_kabel_1(), name="kerber", source="pandapower.networks"
    ),
    "lv_schutterwald": lambda: Network(
        pn.lv_schutterwald(), name="schutterwald", source="pandapower.networks"
    ),
}


@pytest.fixture(scope="module", params=sorted(NETWORKS))
def grid(request):
    return NETWORKS[request.param]()


def test_every_change_kind_agrees_with_pandapower(grid, cn):
    t, ln, far, near, _mv = _pick(grid)
    kva = 800 if grid.pp.trafo.sn_mva.at[t] * 1000 < 800 else 1250
    cases = [
        (Changes().replace_transformer(t, kva), lambda n: pp_replace_transformer(n, t, kva)),
        (Changes().add_parallel_transformer(t, 630), lambda n: pp_parallel_transformer(n, t, 630)),
        (Changes().replace_line(ln, LV_CABLE), lambda n: pp_replace_line(n, ln, LV_CABLE)),
        (Changes().add_parallel_line(ln, LV_CABLE), lambda n: pp_parallel_line(n, ln, LV_CABLE)),
        (
            Changes().add_load(far, 40.0, 15.0),
            lambda n: pp.create_load(n, far, p_mw=0.04, q_mvar=0.015),
        ),
        (
            Changes().new_lv_cable(near, LV_CABLE, to_bus=far, length_m=150.0),
            lambda n: pp_new_cable(n, near, far, 150.0, LV_CABLE),
        ),
    ]
    for changes, edit in cases:
        _compare(grid, changes, edit, cn)


def test_a_new_substation_of_two_units_agrees_with_pandapower(grid, cn):
    """``units = 2``: two 630 kVA units side by side between the site's 10 kV bus and its LV
    board, on one tie; the far part of the area moved onto it loads both."""
    _t, ln, _far, _near, mv = _pick(grid)
    ch = Changes().new_substation(
        0.0, 0.0, mv_bus=mv, tie_length_m=600.0, rated_kva=630, units=2, name="S"
    )
    _compare(grid, ch, lambda n: pp_new_substation(n, mv, 600.0, 630, units=2), cn)
    ev = evaluate(grid, ch, cn)
    new = ev.net.trafo.iloc[len(grid.pp.trafo) :]
    assert new.name.tolist() == ["S", "S unit 2"] and new.sn_mva.tolist() == [0.63, 0.63]
    assert new.hv_bus.nunique() == 1 and new.lv_bus.nunique() == 1
    both = ch.transfer(ln, "S LV board", LV_CABLE, length_m=200.0)
    ev2 = evaluate(grid, both, cn)
    pos = [ev2.net.trafo.index.get_loc(i) for i in new.index]
    loads = ev2.state.trafo_loading_percent[pos]
    assert loads[0] > 1.0 and loads[0] == pytest.approx(loads[1], rel=1e-9)
    want = r"change 1 \(new_substation\): units: must be in \[1, 2\], got 3"
    with pytest.raises(InputError, match=want):
        Changes().new_substation(0.0, 0.0, mv_bus=mv, tie_length_m=600.0, units=3).resolve(grid)


def test_new_substation_and_a_transfer_agree_with_pandapower(grid, cn):
    """A new 630 kVA unit 600 m from the MV bus, and the far part of the area moved onto it
    with a new cable (the old section opened): the measure that relieves an area."""
    _t, ln, _far, near, mv = _pick(grid)
    ch = Changes().new_substation(0.0, 0.0, mv_bus=mv, tie_length_m=600.0, rated_kva=630)
    _compare(grid, ch, lambda n: pp_new_substation(n, mv, 600.0, 630), cn)
    # and in one change set: the far part of the most loaded line moved onto its LV board
    both = ch.transfer(ln, "new 630 kVA substation LV board", LV_CABLE, length_m=200.0)
    resolved = both.resolve(grid)
    end = resolved.items[1].far_bus
    board = resolved.items[1].to_bus
    assert board == int(grid.pp.bus.index.max()) + 2 and end not in (near, board)

    def edit(n):
        lv = pp_new_substation(n, mv, 600.0, 630)
        assert lv == board
        n.line.at[ln, "in_service"] = False
        pp_new_cable(n, board, end, 200.0, LV_CABLE)

    _compare(grid, both, edit, cn)
    ev = evaluate(grid, both, cn)
    assert np.isnan(ev.state.line_loading_percent[grid.pp.line.index.get_loc(ln)])


def test_evaluate_leaves_the_network_untouched(sz, cn):
    before = {k: copy.deepcopy(sz.pp[k]) for k in ("bus", "line", "trafo", "load")}
    base = sz.base_state().vm_pu.copy()
    ev = evaluate(sz, Changes().replace_transformer(2, 1000).add_load(16, 100, 30), cn)
    assert len(ev.net.load) == len(sz.pp.load) + 1
    for k, df in before.items():
        assert sz.pp[k].equals(df), k
    assert np.array_equal(sz.base_state().vm_pu, base, equal_nan=True)


def test_a_bigger_transformer_relieves_its_overload(sz, cn):
    """T3 (800 kVA) overloaded by a 400 kW block: replaced by 1250 kVA the overload is gone
    (a value that depends on the new rating, not only the impedance)."""
    load = Changes().add_load(16, 400.0, 190.0)
    before = evaluate(sz, load, cn)
    assert any(v.element == "trafo 2" for v in before.violations)
    after = evaluate(sz, load.replace_transformer(2, 1250), cn)
    assert not any(v.element == "trafo 2" for v in after.violations)
    t_before = before.state.trafo_loading_percent[2]
    t_after = after.state.trafo_loading_percent[2]
    assert t_after == pytest.approx(t_before * 800 / 1250, rel=0.03)


# -- bad changes -----------------------------------------------------------------------------------
def _toml(*entries: dict) -> str:
    out = []
    for e in entries:
        out.append("[[changes]]")
        out += [f"{k} = {json.dumps(v)}" for k, v in e.items()]
    return "\n".join(out) + "\n"


RT, RL, NS, AL = "replace_transformer", "replace_line", "new_substation", "add_load"
BAD = [
    (_toml({"kind": RT, "trafo": 99, "rated_kva": 800}), "(replace_transformer): trafo: no trafo"),
    (_toml({"kind": RT, "trafo": 2, "rated_kva": 700}), "rated_kva: 700 kVA is not on the ladder"),
    (_toml({"kind": RL, "line": 3, "cable": "copper"}), "1 (replace_line): cable: unknown cable"),
    (_toml({"kind": RL, "line": 3, "cable": MV_CABLE}), "cable: YJV22-8.7/15kV 3x300 is a MV"),
    (_toml({"kind": NS, "lon": 114.5, "lat": 22.9}), "(new_substation): lon/lat: the site is"),
    (_toml({"kind": NS, "lon": 114.06, "lat": 95}), "(new_substation): lat: must be within"),
    (_toml({"kind": RL, "line": 3, "cable": LV_CABLE, "volts": 3}), "volts: unknown field"),
    (_toml({"kind": "swap"}), "change 1: kind: must be one of"),
    (_toml({"kind": AL, "bus": 16, "kw": -5}), "change 1 (add_load): kw: must be > 0"),
    (_toml({"kind": AL, "bus": 16, "kw": "x"}), "change 1 (add_load): kw: must be a number"),
    (_toml({"kind": AL, "bus": "T3 nowhere", "kw": 5}), "bus: no bus with index or name"),
    (
        _toml({"kind": AL, "bus": 16, "kw": 5}, {"kind": "add_parallel_line", "line": 3}),
        "change 2 (add_parallel_line): cable: missing",
    ),
    ("extra = 1\n", "extra: unknown key"),
    ("[[changes]\n", "malformed file"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), BAD, ids=[m for _t, m in BAD])
def test_bad_change_files_exit_2_with_one_line(tmp_path, capsys, text, message):
    f = tmp_path / "c.toml"
    f.write_text(text, encoding="utf-8")
    rc = main(["check", "sz-futian", "--bus", "16", "--kw", "10", "--changes", str(f)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and message in err, err


def test_yaml_and_toml_say_the_same(tmp_path, sz):
    y = tmp_path / "c.yaml"
    y.write_text(
        "changes:\n  - {kind: replace_transformer, trafo: 2, rated_kva: 1000}\n"
        "  - {kind: add_parallel_line, line: 11, cable: 'YJV22-0.6/1kV 4x240'}\n",
        encoding="utf-8",
    )
    t = tmp_path / "c.toml"
    t.write_text(
        '[[changes]]\nkind = "replace_transformer"\ntrafo = 2\nrated_kva = 1000\n'
        '[[changes]]\nkind = "add_parallel_line"\nline = 11\ncable = "YJV22-0.6/1kV 4x240"\n',
        encoding="utf-8",
    )
    assert load_changes(y) == load_changes(t)
    assert load_changes(t).resolve(sz).items[0].trafo == 2
    with pytest.raises(InputError, match=r"change 1 .*trafo"):
        Changes().replace_transformer("T9", 800).resolve(sz)
    twice = tmp_path / "twice.yaml"  # the last kw won silently before
    twice.write_text("changes:\n  - {kind: add_load, bus: 16, kw: 5, kw: 500}\n", "utf-8")
    with pytest.raises(InputError, match=r"line 2: 'kw' given twice \(first on line 2\)"):
        load_changes(twice)


def test_apply_writes_a_network_pandapower_loads_with_the_same_verdicts(tmp_path, capsys):
    ch = tmp_path / "c.toml"
    ch.write_text(
        '[[changes]]\nkind = "replace_transformer"\ntrafo = "T3 800 kVA public transformer"\n'
        "rated_kva = 1250\n"
        '[[changes]]\nkind = "add_parallel_line"\nline = 11\ncable = "YJV22-0.6/1kV 4x240"\n',
        encoding="utf-8",
    )
    out = tmp_path / "net.json"
    assert main(["apply", "sz-futian", "--changes", str(ch), "--out", str(out)]) == 0
    net = pp.from_json(str(out))
    assert net.trafo.sn_mva.at[2] == pytest.approx(1.25) and len(net.line) == 43
    capsys.readouterr()
    verdicts = []
    for argv in (
        ["check", "sz-futian", "--changes", str(ch)],
        ["check", str(out)],
    ):
        assert main([*argv, "--bus", "T3 tower A", "--kw", "150", "--json"]) == 0
        d = json.loads(capsys.readouterr().out)
        verdicts.append((d["decision"], d["transformer_loading_after_percent"]))
    assert verdicts[0][0] == verdicts[1][0] == "fits"  # it did not fit before the changes
    assert verdicts[0][1] == pytest.approx(verdicts[1][1], abs=1e-3)
    assert main(["check", "sz-futian", "--bus", "T3 tower A", "--kw", "150", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["decision"] == "does_not_fit"


def test_hosting_compare_adds_before_and_after(tmp_path, sz, cn):
    """``hosting --changes --compare``: per bus the map of the network as it is and of the
    changed one; T3 at 1250 kVA with line 11 doubled lifts T3's buses and no others."""
    ch = tmp_path / "c.toml"
    ch.write_text(
        _toml(
            {"kind": RT, "trafo": 2, "rated_kva": 1250},
            {"kind": "add_parallel_line", "line": 11, "cable": LV_CABLE},
        ),
        encoding="utf-8",
    )
    out = tmp_path / "h"
    argv = ["hosting", "sz-futian", "--changes", str(ch), "--compare", "--out", str(out)]
    assert main([*argv, "--no-maps"]) == 0
    import pandas as pd

    df = pd.read_csv(out / "hosting.csv")
    before = lvplan.hosting_capacity(sz, criteria=cn).table
    after = lvplan.hosting_capacity(sz, criteria=cn, changes=load_changes(ch)).table
    assert np.allclose(df.hosting_kw_before, before.hosting_kw)
    assert np.allclose(df.hosting_kw_after, after.hosting_kw)
    t3 = df.transformer.str.startswith("T3")
    assert (df.delta_kw[t3] > 0).all() and (df.delta_kw[~t3] == 0).all()
    tr = pd.read_csv(out / "transformers.csv").set_index("trafo")
    assert tr.at[2, "rated_kva_before"] == 800 and tr.at[2, "rated_kva"] == 1250
    assert tr.at[2, "delta_min_hosting_kw"] > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["compare"]["buses_gaining"] == int(t3.sum())
    assert main(["hosting", "sz-futian", "--compare", "--out", str(out)]) == 2


@pytest.mark.parametrize("name", ["sz-futian", "simbench-urban"])
def test_margin_sensitivity_matches_a_small_load(name, cn, sz, urban):
    """The linear model the optimiser plans with: d margin / d kW at a bus, times 2 kW, is the
    margins' change that the exact load flow of the network with a 2 kW load shows (to 2 % of
    the largest change, every margin at once, with Limits.margins vectorised over states)."""
    from lvplan.criteria.judge import Limits
    from lvplan.powerflow.sensitivity import margin_sensitivity

    network = sz if name == "sz-futian" else urban
    lv = network.pp.bus.index[(network.pp.bus.vn_kv < 1) & network.live.bus]
    buses = [int(lv[3]), int(lv[len(lv) // 2]), int(lv[-1])]
    sens = margin_sensitivity(network, cn, buses)
    limits = Limits(network.pp, cn)
    base = limits.margins(network.base_state())
    states = [evaluate(network, Changes().add_load(b, 2.0, 2.0 * 0.4843), cn).state for b in buses]
    from lvplan.powerflow.state import GridState

    stacked = GridState(
        np.vstack([s.vm_pu for s in states]),
        np.vstack([s.line_loading_percent for s in states]),
        np.vstack([s.trafo_loading_percent for s in states]),
        engine="newton",
    )
    after = limits.margins(stacked)
    assert after.shape == (3, base.size)
    ok = np.isfinite(base)
    for k in range(3):
        exact = after[k][ok] - base[ok]
        linear = 2.0 * sens[k][ok]
        scale = np.max(np.abs(exact))
        assert scale > 1e-5  # the load moves something
        assert np.max(np.abs(linear - exact)) <= 0.02 * scale
    labels = limits.margin_labels()
    assert labels[0][1] == f"bus {network.pp.bus.index[0]}" and labels[-1][0] == "transformer"


def test_identity_cache_keys():
    """Objects by identity (a profile), plain values by value: a tuple key with a float that is
    equal but another object still hits; another profile object with equal fields does not."""
    from lvplan.model.network import IdentityCache

    c = IdentityCache(max_items=2)
    a, b = lvplan.load_criteria("cn"), lvplan.load_criteria("cn", lv_policy_max_kw=160)
    c.put(("limits", a, 0.9), 1)
    assert c.get(("limits", a, float("0.9"))) == 1
    assert c.get(("limits", b, 0.9)) is None and c.get(("other", a, 0.9)) is None
    c.put(b, 2)
    c.put("x", 3)  # evicts the oldest
    assert c.get(("limits", a, 0.9)) is None and c.get(b) == 2


def test_the_newton_fallback_agrees_too(sz, cn, monkeypatch):
    """When the compensation steps do not converge (forced here), Newton-Raphson on the
    assembled model decides: same answers as pandapower, for a change that keeps Ybus's
    structure and for one that adds buses."""
    from lvplan.powerflow import compensation

    monkeypatch.setattr(compensation, "MAX_STEPS", 0)
    _compare(
        sz, Changes().replace_transformer(2, 1250), lambda n: pp_replace_transformer(n, 2, 1250), cn
    )
    ch = Changes().new_substation(0.0, 0.0, mv_bus=2, tie_length_m=600.0, rated_kva=630)
    _compare(sz, ch, lambda n: pp_new_substation(n, 2, 600.0, 630), cn)
    assert evaluate(sz, ch, cn).iterations >= 1


def test_a_cable_length_from_coordinates_over_50_km_is_refused(sz, tmp_path):
    """Found by a review: a bus with bad coordinates (another continent) gave apply a new LV
    cable of 16,207 km; a given length was capped at 50 km, a computed one was not."""
    import copy

    import lvplan

    net = copy.deepcopy(sz.pp)
    net.bus.at[34, "geo"] = '{"type": "Point", "coordinates": [-74.0, 40.7]}'  # New York
    path = tmp_path / "far.json"
    pp.to_json(net, str(path))
    far = lvplan.load_network(str(path))
    with pytest.raises(InputError, match=r"change 1 \(new_lv_cable\): length_m: buses 15 and "
                       r"34 are 16,\d{3}\.\d km apart .* over the 50 km"):  # fmt: skip
        Changes().new_lv_cable(15, LV_CABLE, to_bus=34).resolve(far)
    given = Changes().new_lv_cable(15, LV_CABLE, to_bus=34, length_m=120.0).resolve(far)
    assert given.items[0].length_m == 120.0  # a length given is taken as given
    with pytest.raises(InputError, match=r"bus 15 and the site are 16,\d{3}\.\d km apart"):
        Changes().new_lv_cable(15, LV_CABLE, lon=-74.0, lat=40.7).resolve(sz)  # (a review)


def test_lengths_from_coordinates(sz):
    """Without length_m a new cable's route is the straight distance x 1.3 (the detour factor
    of service cables), and a new substation's tie runs to the nearest 10 kV bus."""
    from lvplan.locate import bus_lonlat, distance_m

    lon, lat = bus_lonlat(sz)
    r15, r34 = sz.bus_row(15), sz.bus_row(34)
    want = float(distance_m(lon[r15], lat[r15], lon[r34], lat[r34])) * 1.3
    got = Changes().new_lv_cable(15, LV_CABLE, to_bus=34).resolve(sz).items[0].length_m
    assert got == pytest.approx(want, rel=1e-9) and got > 50
    sub = Changes().new_substation(float(lon[r15]) + 0.001, float(lat[r15])).resolve(sz).items[0]
    mv = sz.pp.bus.index[(sz.pp.bus.vn_kv > 1) & (sz.pp.bus.vn_kv <= 35)]
    d = [
        float(distance_m(lon[r15] + 0.001, lat[r15], lon[sz.bus_row(b)], lat[sz.bus_row(b)]))
        for b in mv
    ]
    assert sub.mv_bus == int(mv[int(np.nanargmin(d))])
    assert sub.tie_length_m == pytest.approx(np.nanmin(d) * 1.3, rel=1e-9)


def test_the_same_element_changed_twice_counts_once(sz, cn):
    """Two changes of one line (the last cable wins) and two of one unit: the base's branch
    is removed once, not twice (pandapower on the same tables agrees)."""
    ch = (
        Changes()
        .replace_line(11, LV_CABLE)
        .replace_line(11, "YJV22-0.6/1kV 4x95")
        .replace_transformer(2, 1000)
        .replace_transformer(2, 1250)
    )

    def edit(n):
        pp_replace_line(n, 11, "YJV22-0.6/1kV 4x95")
        pp_replace_transformer(n, 2, 1250)

    _compare(sz, ch, edit, cn)


def test_cables_from_a_new_board_to_new_buses_agree_with_pandapower(grid, cn):
    """Three new units, each on its off-load tap, with new cables from their LV boards to new
    customer buses and a load at each: what a reinforcement plan builds. The new buses must
    start from the board that feeds them (its 150° shift), or the load flow diverges; a cable
    from a board that does not exist yet must take the board's voltage."""
    _t, _ln, _far, _near, mv = _pick(grid)
    ch = Changes()
    for k, tap in enumerate((1, 0, -1)):
        ch = ch.new_substation(
            0.001 * k, 0.0, mv_bus=mv, tie_length_m=500.0 + 100 * k, rated_kva=630,
            name=f"S{k}", tap_pos=tap,
        )  # fmt: skip
    for k in range(3):
        ch = ch.new_lv_cable(
            f"S{k} LV board", LV_CABLE, lon=0.001 * k, lat=0.001, length_m=120.0,
            name=f"D{k} terminal",
        )  # fmt: skip
        ch = ch.add_load(f"D{k} terminal", 80.0, 38.7, name=f"D{k}")

    def edit(n):  # in the order the changes make them: the units, then the cables
        boards = []
        for k, tap in enumerate((1, 0, -1)):
            boards.append(pp_new_substation(n, mv, 500.0 + 100 * k, 630))
            t = n.trafo.index[-1]
            for col, v in (
                ("tap_side", "hv"), ("tap_neutral", 0), ("tap_min", -2), ("tap_max", 2),
                ("tap_step_percent", 2.5), ("tap_step_degree", 0.0), ("tap_pos", tap),
                ("tap_changer_type", "Ratio"),
            ):  # fmt: skip
                n.trafo.at[t, col] = v
        for lv in boards:
            end = pp.create_bus(n, 0.4)
            pp_new_cable(n, lv, end, 120.0, LV_CABLE)
            pp.create_load(n, end, p_mw=0.08, q_mvar=0.0387)

    _compare(grid, ch, edit, cn)
    ev = evaluate(grid, ch, cn)
    names = list(ev.net.bus.name)
    vm = [float(ev.state.vm_pu[names.index(f"S{k} LV board")]) for k in range(3)]
    assert vm[0] < vm[1] < vm[2]  # a higher tap position: a lower LV voltage


def test_a_large_change_set_goes_to_newton_and_agrees(urban, cn, monkeypatch):
    """Above COMPENSATION_MAX_STAMPS branch stamps (a plan's hundreds of measures) evaluate
    skips the low-rank update, dense in the buses touched, for Newton-Raphson on the changed
    admittance matrix: the same state as pandapower for 120 cable replacements (240 stamps)."""
    from lvplan import evaluation as ev_mod

    net = urban.pp
    lv_lines = [int(i) for i in net.line.index[net.bus.vn_kv.loc[net.line.from_bus].to_numpy() < 1]]
    lines = lv_lines[:120]
    assert 2 * len(lines) > ev_mod.COMPENSATION_MAX_STAMPS
    ch = Changes()
    for ln in lines:
        ch = ch.replace_line(ln, LV_CABLE)

    def edit(n):
        for ln in lines:
            pp_replace_line(n, ln, LV_CABLE)

    def no_compensation(*_a, **_k):
        raise AssertionError("the low-rank update was tried")

    monkeypatch.setattr(ev_mod, "Compensation", no_compensation)
    _compare(urban, ch, edit, cn)


@pytest.mark.parametrize("name", ["sz-futian", "simbench-urban"])
def test_voltage_drop_by_transposed_solves_equals_margin_sensitivity(name, cn, sz, urban):
    """The optimiser's 10 kV response (a few observed buses, many loading buses, one
    transposed solve per observed bus) is the voltage block of margin_sensitivity."""
    from lvplan.powerflow.sensitivity import margin_sensitivity, voltage_drop_per_kw

    network = sz if name == "sz-futian" else urban
    bus = network.pp.bus
    lv = [int(b) for b in bus.index[(bus.vn_kv < 1) & network.live.bus][::7][:40]]
    mv = [int(b) for b in bus.index[(bus.vn_kv > 1) & network.live.bus][:25]]
    want = -margin_sensitivity(network, cn, lv)[:, [network.bus_row(b) for b in mv]]
    got = voltage_drop_per_kw(network, mv, lv, cn.new_customer_pf)
    assert got.shape == (len(lv), len(mv))
    assert np.abs(want).max() > 1e-7  # the loads do move the 10 kV voltages
    assert np.abs(got - want).max() <= 1e-9 * np.abs(want).max()


@pytest.mark.parametrize("name", ["sz-futian", "simbench-urban"])
def test_a_few_margins_by_transposed_solves_equal_margin_sensitivity(name, cn, sz, urban):
    """The AC loop's cuts need a few margins (the limits a plan broke: voltages of both sides,
    line and transformer loadings) against every option's bus: by one transposed solve per
    margin, the same numbers as the columns of the full margin_sensitivity."""
    from lvplan.criteria.judge import Limits
    from lvplan.powerflow.sensitivity import margin_sensitivity, margin_sensitivity_of

    network = sz if name == "sz-futian" else urban
    bus = network.pp.bus
    lv = [int(b) for b in bus.index[(bus.vn_kv < 1) & network.live.bus][::5][:60]]
    full = margin_sensitivity(network, cn, lv)
    n = len(Limits(network.pp, cn).margin_labels())
    nb, nl = len(bus), len(network.pp.line)
    moved = np.argsort(-np.abs(full).max(axis=0))[:30].tolist()  # the most sensitive margins
    kinds = [0, nb, 2 * nb, 2 * nb + nl, n - 1]  # bus min, bus max, a line, a trafo
    pos = moved + kinds
    got = margin_sensitivity_of(network, cn, pos, lv)
    want = full[:, pos]
    assert np.abs(want).max() > 1e-4
    assert np.abs(got - want).max() <= 1e-9 * np.abs(want).max()


def test_lvplan_evaluate_stays_the_function():
    """The module is lvplan.evaluation: importing it never rebinds lvplan.evaluate (the
    function) to a module, as a submodule of the same name did."""
    import importlib

    import lvplan as pkg

    importlib.import_module("lvplan.evaluation")
    assert callable(pkg.evaluate) and pkg.evaluate.__name__ == "evaluate"


def test_apply_refuses_a_folder_or_a_link_at_out_in_one_line(tmp_path, capsys, monkeypatch):
    """``apply --out q/..`` names a folder (the working one) though ``q`` does not exist: it was
    a failed rename, exit 1 ("cannot write the output: Is a directory"); a link at ``--out``
    was replaced by a file. Both are now refused before the network loads, exit 2, and the
    link and its target are kept."""
    monkeypatch.chdir(tmp_path)
    ch = tmp_path / "c.toml"
    ch.write_text(
        '[[changes]]\nkind = "replace_transformer"\ntrafo = 0\nrated_kva = 800\n', encoding="utf-8"
    )
    (tmp_path / "mine.json").write_text("keep", encoding="utf-8")
    (tmp_path / "lk.json").symlink_to(tmp_path / "mine.json")
    for out, phrase in (("q/..", "is a folder"), ("lk.json", "is a symbolic link")):
        assert main(["apply", "sz-futian", "--changes", str(ch), "--out", out]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"lvplan: error: --out {out}: {phrase}") and err.count("\n") == 1
    # a name over 255 bytes, through ``..``: one line, exit 2 (was a traceback-free exit 1,
    # "cannot write the output", from a check that raised on it)
    long = "x/../" + "图" * 90 + ".json"
    assert main(["apply", "sz-futian", "--changes", str(ch), "--out", long]) == 2
    err = capsys.readouterr().err
    assert "File name too long" in err and err.count("\n") == 1, err
    assert (tmp_path / "lk.json").is_symlink()
    assert (tmp_path / "mine.json").read_text(encoding="utf-8") == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml", "lk.json", "mine.json"]


def test_an_output_that_is_an_input_or_inside_the_network_is_refused(tmp_path, capsys):
    """``apply --out`` naming its ``--changes`` file or a file of the network folder, and
    ``synth demand``/``synth parcels`` writing into the network folder, replaced the input:
    each is refused in one line, exit 2, before any work, and the inputs are kept."""
    import shutil

    net = tmp_path / "net"
    shutil.copytree(Path(lvplan.load_network("sz-futian").source), net)
    ch = tmp_path / "c.toml"
    text = '[[changes]]\nkind = "replace_transformer"\ntrafo = 0\nrated_kva = 800\n'
    ch.write_text(text, encoding="utf-8")
    before = {p.name: p.read_bytes() for p in net.iterdir()}
    cases = [
        (["apply", str(net), "--changes", str(ch), "--out", str(ch)], "is --changes"),
        (["apply", str(net), "--changes", str(ch), "--out", str(net / "bus.csv")], "inside"),
        (["synth", "demand", str(net), "--count", "5", "--out", str(net / "load.csv")], "inside"),
        (["synth", "parcels", str(net), "--count", "5", "--out", str(net / "p.csv")], "inside"),
    ]
    for argv, phrase in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert phrase in err and err.count("\n") == 1, err
    assert {p.name: p.read_bytes() for p in net.iterdir()} == before
    assert ch.read_text(encoding="utf-8") == text


def test_a_device_or_an_oversized_file_as_an_input_is_refused_unread(tmp_path, capsys):
    """--changes, --token-file and an applications file are read with a bound: /dev/zero (an
    endless stream) and a token file of 70 kB are refused in one line, not read to the end."""
    big = tmp_path / "token.txt"
    big.write_text("x" * 70_000, encoding="utf-8")
    reg = str(tmp_path / "r.db")
    cases = [
        (["check", "sz-futian", "--bus", "16", "--kw", "10", "--changes", "/dev/zero"],
         "--changes /dev/zero: larger than 16 MB: not a changes file"),
        (["serve", "sz-futian", "--register", reg, "--token-file", "/dev/zero"],
         "--token-file /dev/zero: larger than 64 kB: not a token file"),
        (["serve", "sz-futian", "--register", reg, "--token-file", str(big)],
         f"--token-file {big}: larger than 64 kB"),
        (["check-batch", "sz-futian", "/dev/zero", "--register", reg,
          "--out", str(tmp_path / "o.csv")],
         "/dev/zero: larger than 64 MB: not an applications file"),
    ]  # fmt: skip
    for argv, message in cases:
        rc = main(argv)
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and message in err, (argv, err)
    assert not (tmp_path / "o.csv").exists()


def test_a_cable_on_a_20_kv_network_is_one_rated_for_it(cn):
    """A new substation's tie, a new tie or a moved unit's cable, and a 10 kV section's new
    cable are catalogue cables rated for the network they are laid in: the 8.7/15 kV cable
    went onto SimBench's 20 kV buses (a review found it; no AC limit catches it). Named, a
    cable rated below the network is refused in one line; not named, the catalogue's cheapest
    rated one is laid (12/20 kV at 20 kV, 8.7/15 kV at 10 kV)."""
    grid = NETWORKS["simbench:1-LV-rural2--0-sw"]()
    mv = int(grid.pp.trafo.hv_bus.iat[0])
    assert grid.pp.bus.vn_kv.at[mv] == 20.0
    ch = Changes().new_substation(0.0, 0.0, mv_bus=mv, tie_length_m=600.0)
    (res,) = ch.resolve(grid).items
    assert res.tie_cable == MV_CABLE_20
    net = grid.with_changes(ch).pp
    tie = net.line[net.line.name.astype(str).str.endswith(" tie")]
    assert len(tie) == 1
    assert tie.x_ohm_per_km.tolist() == [cable_types()[MV_CABLE_20].x_ohm_per_km]
    assert tie.c_nf_per_km.tolist() == [cable_types()[MV_CABLE_20].c_nf_per_km]
    with pytest.raises(InputError) as err:
        Changes().new_substation(
            0.0, 0.0, mv_bus=mv, tie_cable=MV_CABLE, tie_length_m=600.0
        ).resolve(grid)
    assert str(err.value) == (
        "change 1 (new_substation): tie_cable: YJV22-8.7/15kV 3x300 is rated 15 kV, not for a "
        "20 kV network"
    )
    # on sz-futian's 10 kV network the 8.7/15 kV cable, named or not; a 10 kV section may take
    # the 12/20 kV cable (rated above its network) when named
    sz = lvplan.load_network("sz-futian")
    mv10 = int(sz.pp.trafo.hv_bus.iat[0])
    (res10,) = Changes().new_substation(114.05, 22.54, mv_bus=mv10).resolve(sz).items
    assert res10.tie_cable == MV_CABLE
    ln10 = int(sz.pp.line.index[sz.pp.bus.vn_kv.loc[sz.pp.line.from_bus].to_numpy() > 1][0])
    (rl,) = Changes().replace_line(ln10, MV_CABLE_20).resolve(sz).items
    assert rl.cable == MV_CABLE_20


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("{kind: add_load, bus: 16, kw: 1:30}", "kw"),  # base 60 in YAML 1.1: 90 kW
        ("{kind: add_load, bus: 16, kw: 1_000}", "kw"),  # 1000
        ("{kind: add_load, bus: 16, kw: 0x10}", "kw"),  # 16
        ("{kind: set_switch, switch: 0, closed: off}", "closed"),  # False
        ("{kind: set_switch, switch: 0, closed: yes}", "closed"),  # True
        ("{kind: replace_transformer, trafo: 2, rated_kva: 0o1750}", "rated_kva"),  # 1000
    ],
)
def test_yaml_reads_numbers_and_booleans_only_as_the_command_line_does(tmp_path, line, field):
    """A plain YAML value that is not a decimal number, true/false or null is text, which the
    field refuses by name (PyYAML's YAML 1.1 resolvers read each of these as a number or a
    Boolean, silently); decimal numbers, 1e3 and true/false still read as before."""
    f = tmp_path / "c.yaml"
    f.write_text(f"changes:\n  - {line}\n", encoding="utf-8")
    with pytest.raises(InputError, match=rf"change 1 \(\w+\): {field}: must be"):
        load_changes(f)
    f.write_text(
        "changes:\n  - {kind: add_load, bus: 16, kw: 1e3, kvar: -2.5}\n"
        "  - {kind: set_switch, switch: 0, closed: True}\n"
        "  - {kind: add_load, bus: 010, kw: 08}\n",  # (decimal: PyYAML read 010 as 8, 08 failed)
        encoding="utf-8",
    )
    got = load_changes(f).items
    assert (got[0].kw, got[0].kvar, got[1].closed) == (1000.0, -2.5, True)
    assert (got[2].bus, got[2].kw) == (10, 8.0)


def test_only_the_users_network_failing_its_base_is_a_bad_input():
    """A network as given whose base does not converge is a bad network (``BaseCaseError``:
    the CLI's exit 2); the same failure on a network lvplan made from it with changes (a
    plan, an N-1 option) is lvplan's own load flow failing (``PowerFlowError``, exit 1), not
    the user's input, and it is not worded as the network's own loads."""
    from lvplan.errors import BaseCaseError, PowerFlowError

    sz = lvplan.load_network("sz-futian")
    changed = sz.with_changes(Changes().add_load(6, 100000, 0.0).add_load(7, 100000, 0.0))
    with pytest.raises(PowerFlowError) as failed:
        changed.base_state()
    assert not isinstance(failed.value, BaseCaseError)
    assert str(failed.value) == "base case: AC load flow did not converge"
    net = copy.deepcopy(sz.pp)
    net.load.loc[net.load.index[0], "p_mw"] = 1e6
    with pytest.raises(BaseCaseError, match=r"^network big \(test\): its base case \(its own"):
        Network(net, name="big", source="test").base_state()


def test_a_swap_of_a_row_of_parallel_units_is_one_new_unit(sz, cn):
    """A transformer row of ``parallel`` 2 (two units) and ``df`` 0.9 swapped for 1250 kVA is
    one 1250 kVA unit at its full rating: it stayed two units (2,500 kVA built where the plan
    costs and describes one of 1,250; review, 2026-12-08)."""
    net = copy.deepcopy(sz.pp)
    net.trafo.loc[2, ["parallel", "df"]] = [2, 0.9]
    twin = Network(net, name="sz two units", source="test")

    def one_unit(n):
        pp_replace_transformer(n, 2, 1250)
        n.trafo.loc[2, ["parallel", "df"]] = [1, 1.0]

    _compare(twin, Changes().replace_transformer(2, 1250), one_unit, cn)
    out, _map = apply_changes(net, Changes().replace_transformer(2, 1250).resolve(twin))
    assert out.trafo.loc[2, ["sn_mva", "parallel", "df"]].tolist() == [1.25, 1, 1.0]
    assert net.trafo.at[2, "parallel"] == 2  # (the caller's network untouched)


def test_a_swapped_unit_leaves_the_old_units_tap_dependent_impedance(sz, cn):
    """A unit whose vk follows its tap from a characteristic table (pandapower's
    ``tap_dependency_table``), 12 % here, swapped for a 630 kVA catalogue unit has the catalogue
    unit's vk: the row kept the old table, so pandapower gave the new unit 12 %."""
    import pandas as pd

    net = copy.deepcopy(sz.pp)
    net.trafo_characteristic_table = pd.DataFrame(
        {
            "id_characteristic": [0] * 5,
            "step": [-2, -1, 0, 1, 2],
            "voltage_ratio": [1.0] * 5,
            "angle_deg": [0.0] * 5,
            "vk_percent": [12.0] * 5,
            "vkr_percent": [1.5] * 5,
        }
    )
    net.trafo["tap_dependency_table"] = False
    net.trafo.loc[2, ["tap_dependency_table", "id_characteristic_table", "tap_changer_type"]] = [
        True, 0, "Ratio",
    ]  # fmt: skip
    tabled = Network(net, name="sz tabled", source="test")

    def catalogue_unit(n):
        pp_replace_transformer(n, 2, 630)
        n.trafo.at[2, "tap_dependency_table"] = False

    _compare(tabled, Changes().replace_transformer(2, 630), catalogue_unit, cn)
    out, _map = apply_changes(net, Changes().replace_transformer(2, 630).resolve(tabled))
    assert not out.trafo.at[2, "tap_dependency_table"]
    assert pd.isna(out.trafo.at[2, "id_characteristic_table"])
    assert net.trafo.at[2, "tap_dependency_table"]  # (the caller's network untouched)


def test_a_row_of_two_units_swapped_for_two_larger_ones(sz, cn, tmp_path):
    """``units`` 2: the two units of a ``parallel`` 2 row swapped for two of 800 kVA, as
    pandapower writes them (the plan offers it: a 2 x 630 kVA row above the ladder's single
    units was offered nothing; probe helper-78). More units than a room holds are refused."""
    net = copy.deepcopy(sz.pp)
    net.trafo.loc[2, ["parallel", "df"]] = [2, 1.0]
    twin = Network(net, name="sz two units", source="test")

    def two_800(n):
        pp_replace_transformer(n, 2, 800)
        n.trafo.at[2, "parallel"] = 2

    _compare(twin, Changes().replace_transformer(2, 800, units=2), two_800, cn)
    out, _map = apply_changes(net, Changes().replace_transformer(2, 800, units=2).resolve(twin))
    assert out.trafo.loc[2, ["sn_mva", "parallel"]].tolist() == [0.8, 2]
    with pytest.raises(InputError, match=r"units: must be in \[1, 2\], got 3"):
        Changes().replace_transformer(2, 800, units=3).resolve(twin)
    toml = 'changes = [{kind = "replace_transformer", trafo = 2, rated_kva = 800, units = 2}]'
    path = Path(tmp_path) / "two.toml"
    path.write_text(toml)
    assert load_changes(path).items[0].units == 2


def test_a_units_off_load_tap_set_as_pandapower_sets_it(sz, cn):
    """``set_tap``: the unit's tap position as pandapower's ``tap_pos`` gives it; a unit laid
    beside it by the same changes takes the same tap, whichever comes first (two taps on one
    pair drive a current round it); a unit with no tap changer gets a 10/0.4 kV unit's (hv
    side, 2.5 % a step, ±2); a position outside the unit's range is refused."""

    def tap(n, t, pos):
        n.trafo.at[t, "tap_pos"] = pos

    _compare(sz, Changes().set_tap(2, 2), lambda n: tap(n, 2, 2), cn)

    def with_pair(n):
        tap(n, 2, -1)
        pp_parallel_transformer(n, 2, 630)

    _compare(sz, Changes().set_tap(2, -1).add_parallel_transformer(2, 630), with_pair, cn)
    _compare(sz, Changes().add_parallel_transformer(2, 630).set_tap(2, -1), with_pair, cn)
    net = copy.deepcopy(sz.pp)
    net.trafo.loc[2, ["tap_step_percent", "tap_min", "tap_max", "tap_pos"]] = np.nan
    bare = Network(net, name="sz no changer", source="test")

    def new_changer(n):
        n.trafo.loc[2, ["tap_side", "tap_changer_type"]] = ["hv", "Ratio"]
        n.trafo.loc[2, ["tap_neutral", "tap_min", "tap_max", "tap_step_percent"]] = [0, -2, 2, 2.5]
        n.trafo.loc[2, ["tap_step_degree", "tap_pos"]] = [0.0, 1]

    _compare(bare, Changes().set_tap(2, 1), new_changer, cn)
    ev = evaluate(bare, Changes().set_tap(2, 1), cn)
    lv = int(sz.pp.trafo.at[2, "lv_bus"])
    assert (
        ev.state.vm_pu[list(bare.pp.bus.index).index(lv)]
        < bare.base_state().vm_pu[list(bare.pp.bus.index).index(lv)]
    )  # (a step up on the 10 kV side: the LV side lower)
    with pytest.raises(InputError, match=r"tap_pos: must be in \[-2, 2\], got 3"):
        Changes().set_tap(2, 3).resolve(sz)
