"""MV islands as the unit of state (lvplan.model.islands): a check, an exact load flow and a
reservation use only their island's network, and give the whole network's answer, judged by
pandapower on the whole network (tests/reference.py)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandapower as pp
import pytest
from reference import OPTS, Reference

import lvplan
from lvplan.model.islands import plan
from lvplan.model.network import ExtraLoad, Network

TAN = float(np.tan(np.arccos(0.9)))


def _substation(net, hv: int, name: str, lv_km: float) -> dict[str, int]:
    """An HV/MV transformer from ``hv``, a 10 kV feeder to one MV/LV transformer and an LV
    cable of ``lv_km`` to a far LV bus with a load."""
    mv = pp.create_bus(net, 20.0, name=f"{name} busbar")
    far = pp.create_bus(net, 20.0, name=f"{name} far")
    lv = pp.create_bus(net, 0.4, name=f"{name} LV board")
    end = pp.create_bus(net, 0.4, name=f"{name} LV end")
    pp.create_transformer(net, hv, mv, "25 MVA 110/20 kV", name=f"{name} HV/MV")
    pp.create_line(net, mv, far, 3.0, "NA2XS2Y 1x185 RM/25 12/20 kV", name=f"{name} feeder")
    pp.create_transformer(net, far, lv, "0.4 MVA 20/0.4 kV", name=f"{name} T")
    pp.create_line(net, lv, end, lv_km, "NAYY 4x150 SE", name=f"{name} LV cable")
    pp.create_load(net, lv, p_mw=0.15, q_mvar=0.05)
    pp.create_load(net, end, p_mw=0.04, q_mvar=0.01)
    return {"mv": mv, "far": far, "lv": lv, "end": end}


def _city():
    """Three islands: A and B straight on the 110 kV slack bus, C and D behind one 110 kV
    line (coupled through it: one island); E on a second section of the slack busbar (a
    closed bus-bus switch); and a tie line between A's and B's far ends, open at B."""
    net = pp.create_empty_network()
    slack = pp.create_bus(net, 110.0, name="slack")
    pp.create_ext_grid(net, slack, vm_pu=1.02)
    a = _substation(net, slack, "A", 0.25)
    b = _substation(net, slack, "B", 0.15)
    hv_far = pp.create_bus(net, 110.0, name="HV far")
    pp.create_line(net, slack, hv_far, 15.0, "149-AL1/24-ST1A 110.0", name="HV line")
    c = _substation(net, hv_far, "C", 0.22)
    d = _substation(net, hv_far, "D", 0.1)
    section = pp.create_bus(net, 110.0, name="slack section 2")
    pp.create_switch(net, slack, section, et="b", closed=True)
    e = _substation(net, section, "E", 0.2)
    tie = pp.create_line(net, a["far"], b["far"], 2.0, "NA2XS2Y 1x185 RM/25 12/20 kV", name="tie")
    pp.create_switch(net, b["far"], tie, et="l", closed=False)
    return net, {"A": a, "B": b, "C": c, "D": d, "E": e}


@pytest.fixture(scope="module")
def city():
    return _city()


def test_the_city_is_cut_at_its_slack_buses_only(city):
    """Islands A, B, C+D and E; island nets share no bus but the slack (and its section)."""
    net, subs = city
    found = plan(net)
    assert found is not None
    isl = found.bus_island
    keys = {name: int(isl[s["lv"]]) for name, s in subs.items()}
    assert keys["C"] == keys["D"] and len(set(keys.values())) == 4
    assert int(isl[net.bus.index[net.bus.name == "HV far"][0]]) == keys["C"]
    section = net.bus.index[net.bus.name == "slack section 2"][0]
    slack_rows = {0, int(net.bus.index.get_loc(section))}
    b_far = int(net.bus.index.get_loc(subs["B"]["far"]))  # behind the tie's open switch
    for i, p in enumerate(found.parts):
        for q in found.parts[i + 1 :]:
            shared = set(p.rows["bus"].tolist()) & set(q.rows["bus"].tolist())
            assert shared <= slack_rows | {b_far}, (p.key, q.key, shared)
            assert shared & slack_rows, (p.key, q.key)  # every island holds the slack
    # the tie line belongs to A (closed at A's end); B's far end is a bus of A's net too
    part_a = next(p for p in found.parts if p.key == keys["A"])
    tie_row = int(net.line.index.get_loc(net.line.index[net.line.name == "tie"][0]))
    assert tie_row in part_a.line_rows.tolist()


def test_a_check_on_an_island_equals_the_whole_network_answer(city, cn):
    """Every island's answer, field by field, equals the check of the same network solved
    whole (islands off), and the decision and voltage equal pandapower's on the whole net."""
    net, subs = city
    islands = Network(net, name="city", source="test")
    whole = Network(net, name="city", source="test")
    whole._islands_tried = True  # solved as one network
    ref = Reference(net, cn)
    assert islands.islands() is not None and len(islands.islands()) == 4
    decisions = set()
    for s in subs.values():
        for bus in (s["lv"], s["end"]):
            for kw in (20.0, 70.0, 120.0, 160.0):
                di = lvplan.check(islands, bus=bus, kw=kw, criteria=cn).to_dict()
                dw = lvplan.check(whole, bus=bus, kw=kw, criteria=cn).to_dict()
                for k in di:
                    if k == "engine":
                        continue
                    got, want = (json.dumps(x[k], sort_keys=True, default=str) for x in (di, dw))
                    assert got == want, (bus, kw, k, got, want)
                assert di["decision"] == ref.decide(bus, kw), (bus, kw)
                decisions.add(di["decision"])
                p = kw / 1000.0
                raw = copy.deepcopy(net)
                pp.create_load(raw, bus, p_mw=p, q_mvar=p * TAN)
                pp.runpp(raw, **OPTS)
                v = float(raw.res_bus.vm_pu.at[bus]) * 400.0
                assert di["bus_voltage_after_v"] == pytest.approx(v, abs=2e-3), (bus, kw)
    assert decisions == {"fits", "does_not_fit"}
    assert islands._fast is None  # the whole network was never solved for these checks


def test_a_reservation_moves_only_its_island_and_equals_pandapower(city, cn):
    net, subs = city
    network = Network(net, name="city", source="test")
    isl = network.islands()
    assert isl is not None
    before = {k: n.base_state().vm_pu.copy() for k, n in isl.nets.items()}
    versions = {k: n.version for k, n in isl.nets.items()}
    bus = subs["C"]["end"]
    load = ExtraLoad(bus, 0.06, 0.06 * TAN)
    assert network.reserve({"a1": load}) == "exact"
    moved = isl.key_of(bus)
    for k, n in isl.nets.items():
        if k == moved:
            assert n.version == versions[k] + 1
        else:  # not touched: same object state, same version
            assert n.version == versions[k]
            assert np.array_equal(n.base_state().vm_pu, before[k], equal_nan=True)
    raw = copy.deepcopy(net)
    pp.create_load(raw, bus, p_mw=load.p_mw, q_mvar=load.q_mvar)
    pp.runpp(raw, **OPTS)
    got = network.base_state()
    assert np.nanmax(np.abs(got.vm_pu - raw.res_bus.vm_pu.to_numpy())) < 1e-8
    # the tie, open at one end, is not judged (no load current), in the whole network too
    assert np.isnan(got.line_loading_percent).sum() == 1
    ok = np.isfinite(got.line_loading_percent)
    dl = np.abs(got.line_loading_percent[ok] - raw.res_line.loading_percent.to_numpy()[ok])
    assert float(dl.max()) < 1e-5
    assert network.release(["a1"]) == "exact"
    back = isl.nets[moved].base_state().vm_pu
    assert np.nanmax(np.abs(back - before[moved])) < 1e-8
    assert isl.nets[moved].version == versions[moved] + 2
    assert network._fast is None  # no load flow of the whole network


def test_a_network_that_cannot_be_cut_exactly_is_solved_whole(city):
    """A line between the slack and another slack bus carries current that no island owns."""
    net, _ = city
    two = copy.deepcopy(net)
    other = pp.create_bus(two, 110.0)
    pp.create_ext_grid(two, other, vm_pu=1.0)
    pp.create_line(two, 0, other, 5.0, "149-AL1/24-ST1A 110.0")
    assert plan(two) is None
    assert Network(two, name="x", source="test").islands() is None
    single = pp.create_empty_network()
    s = pp.create_bus(single, 110.0)
    pp.create_ext_grid(single, s)
    _substation(single, s, "only", 0.1)
    assert plan(single) is None  # one island: nothing to cut


def _answers(network, subs, cn) -> list[dict]:
    out = []
    for s in subs.values():
        d = lvplan.check(network, bus=s["end"], kw=60.0, criteria=cn).to_dict()
        out.append({k: v for k, v in d.items() if k != "network"})
    return out


def test_prepared_islands_are_cached_per_network_and_version(city, cn, tmp_path, monkeypatch):
    """The first start prepares and writes the cache; the next start of the same network
    reads it and answers the same; a changed network or another lvplan version never reads
    it (and writes its own)."""
    import lvplan.code_id as code_id_mod
    import lvplan.model.islands as islands_mod

    net, subs = city
    first = Network(net, name="city", source="test")
    assert first.prepare_islands(cache_dir=tmp_path) == "prepared"
    files = sorted(tmp_path.iterdir())
    assert len(files) == 1 and first.fingerprint[:32] in files[0].name
    again = Network(net, name="city", source="test")
    assert again.prepare_islands(cache_dir=tmp_path) == "cache"
    assert again._islands is not None and all(
        n._base is not None for n in again._islands.nets.values()
    )
    assert _answers(again, subs, cn) == _answers(first, subs, cn)
    assert again.reserve({"r": ExtraLoad(subs["A"]["end"], 0.05, 0.02)}) == "exact"

    changed = copy.deepcopy(net)
    changed.load.loc[changed.load.index[0], "p_mw"] += 0.01
    other = Network(changed, name="city", source="test")
    assert other.fingerprint != first.fingerprint
    assert other.prepare_islands(cache_dir=tmp_path) == "prepared"
    assert len(list(tmp_path.iterdir())) == 2

    monkeypatch.setattr(lvplan, "__version__", "0.0.0-other")
    newer = Network(net, name="city", source="test")
    assert newer.prepare_islands(cache_dir=tmp_path) == "prepared"
    assert len(list(tmp_path.iterdir())) == 3
    # the first file copied under this version's name still says what it holds: not read
    monkeypatch.setattr(lvplan, "__version__", "0.0.0-third")
    islands_mod.cache_path(tmp_path, first.fingerprint).write_bytes(files[0].read_bytes())
    assert islands_mod.load_cache(Network(net, name="city", source="test"), tmp_path) is None
    # the same version with other code (a later commit: the version stays 0.1.0) never reads
    # what the earlier code prepared
    monkeypatch.setattr(lvplan, "__version__", "0.0.0-other")
    assert islands_mod.load_cache(Network(net, name="city", source="test"), tmp_path) is not None
    monkeypatch.setattr(code_id_mod, "code_hash", lambda: "0123456789ab")
    assert islands_mod.load_cache(Network(net, name="city", source="test"), tmp_path) is None


def test_islands_prepared_in_two_processes_answer_the_same(city, cn, monkeypatch):
    import lvplan.model.islands as islands_mod

    net, subs = city
    monkeypatch.setattr(islands_mod, "PARALLEL_MIN_ISLANDS", 2)
    serial = Network(net, name="city", source="test")
    assert serial.prepare_islands(workers=1) == "prepared"
    seen: list[tuple[int, int]] = []
    parallel = Network(net, name="city", source="test")
    assert parallel.prepare_islands(workers=2, progress=lambda d, t: seen.append((d, t))) == (
        "prepared"
    )
    assert seen[-1] == (4, 4) and len(seen) == 4
    assert _answers(parallel, subs, cn) == _answers(serial, subs, cn)
