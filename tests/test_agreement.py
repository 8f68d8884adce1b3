"""`check` against an independent full-network pandapower evaluation (tests/reference.py), and
the fast engine against pandapower, on grids nobody here wrote (SimBench, pandapower examples).

Contract (issue 2): the decisions agree for every (bus, kW) at least 2 kW from the boundary, and
`check` never answers `fits` where the reference finds a violation.
"""

from __future__ import annotations

import copy

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest
from reference import Reference

import lvplan
from lvplan.io.simbench_source import load_simbench
from lvplan.model.network import ExtraLoad, Network


def _held_out_pp(make_net, name: str):
    """A Network of a pandapower example and an untouched copy of its net, taken before lvplan
    sees it: the reference judges the network as given, never ``network.pp``."""

    def make():
        net = make_net()
        pristine = copy.deepcopy(net)
        return Network(net, name=name, source="pandapower.networks"), pristine

    return make


def _held_out_simbench(code: str):
    def make():
        return lvplan.load_network(f"simbench:{code}"), load_simbench(code)  # loaded again

    return make


def _behind_an_impedance(make_net):
    """``make_net()`` with its slack moved behind an upstream network's equivalent, a
    pandapower ``impedance`` element (the judged mask did not follow one before 2026-12-07:
    the network was refused as islanded)."""

    def make():
        net = make_net()
        eg = net.ext_grid.index[0]
        old = int(net.ext_grid.at[eg, "bus"])
        up = pp.create_bus(net, float(net.bus.vn_kv.at[old]), name="upstream equivalent")
        net.ext_grid.at[eg, "bus"] = up
        pp.create_impedance(net, up, old, rft_pu=0.002, xft_pu=0.01, sn_mva=1.0)
        return net

    return make


#: name -> () -> (Network, the pandapower net as given, for the reference)
HELD_OUT = {
    "simbench:1-LV-rural2--0-sw": _held_out_simbench("1-LV-rural2--0-sw"),
    "kerber_vorstadtnetz_kabel_1": _held_out_pp(pn.create_kerber_vorstadtnetz_kabel_1, "kerber"),
    "lv_schutterwald": _held_out_pp(pn.lv_schutterwald, "schutterwald"),
    "kerber behind an impedance": _held_out_pp(
        _behind_an_impedance(pn.create_kerber_vorstadtnetz_kabel_1), "kerber-impedance"
    ),
}


def _samples(network: Network, n: int, seed: int):
    rng = np.random.default_rng(seed)
    net = network.pp
    lv = net.bus.index[(net.bus.vn_kv < 1) & network.live.bus].to_numpy()
    for _ in range(n):
        yield int(rng.choice(lv)), float(rng.uniform(1.0, 200.0))


def _agree(network: Network, pristine, crit, n: int, seed: int) -> dict[str, int]:
    ref = Reference(pristine, crit)
    seen: dict[str, int] = {}
    for bus, kw in _samples(network, n, seed):
        d = lvplan.check(network, bus=bus, kw=kw, criteria=crit, headroom=False)
        r = ref.decide(bus, d.design_kw)
        seen[f"{d.decision}/{d.engine}"] = seen.get(f"{d.decision}/{d.engine}", 0) + 1
        if d.decision == r:
            continue
        assert d.decision != "fits", f"false fits at bus {bus}, {kw:.2f} kW"
        # a disagreement is allowed only within 2 kW of the boundary
        assert ref.decide(bus, d.design_kw - 2.0) != ref.decide(bus, d.design_kw + 2.0), (
            f"bus {bus}, {kw:.2f} kW: lvplan {d.decision}, reference {r}"
        )
    return seen


@pytest.mark.parametrize("name", sorted(HELD_OUT))
def test_check_agrees_with_reference_on_held_out_grids(name, cn):
    network, pristine = HELD_OUT[name]()
    seen = _agree(network, pristine, cn, n=40, seed=7)
    assert sum(seen.values()) == 40


def test_check_agrees_with_reference_on_the_urban_district(urban, urban_pristine, cn):
    seen = _agree(urban, urban_pristine, cn, n=40, seed=11)
    # both answers occur, so the test can fail either way
    assert any(k.startswith("fits") for k in seen) and any(k.startswith("does") for k in seen)


def test_near_limit_cases_agree_on_the_urban_district(urban, urban_pristine, cn):
    """kW placed 0.3-3 kW either side of each bus's boundary: the hardest cases."""
    ref = Reference(urban_pristine, cn)
    rng = np.random.default_rng(3)
    lv = urban.pp.bus.index[urban.pp.bus.vn_kv < 1].to_numpy()
    checked = 0
    for bus in rng.choice(lv, 25, replace=False):
        h = lvplan.check(urban, bus=int(bus), kw=1.0, criteria=cn).headroom_kw
        if h is None or h <= 5 or h >= 199:
            continue
        cap = h + 1.0  # headroom counted the 1 kW application
        for delta in (-3.0, -0.3, 0.3, 3.0):
            kw = cap + delta
            d = lvplan.check(urban, bus=int(bus), kw=kw, criteria=cn, headroom=False)
            # the reference (a full AC load flow of the district, 0.25 s) is asked where its
            # answer is held against lvplan's: a fits, or 2 kW or more from the boundary (0.3 kW
            # past it, a does_not_fit may be either)
            if d.decision == "fits" or abs(delta) >= 2.0:
                r = ref.decide(int(bus), kw)
                if d.decision == "fits":
                    assert r == "fits", f"false fits at bus {bus}, {kw:.2f} kW"
                if abs(delta) >= 2.0:
                    assert d.decision == r
            checked += 1
    assert checked >= 20


@pytest.mark.parametrize("name", sorted(HELD_OUT))
def test_fast_engine_matches_pandapower(name):
    network, _ = HELD_OUT[name]()
    _fast_vs_ac(network, n=15, seed=5)


def test_fast_engine_matches_pandapower_on_the_urban_district(urban):
    _fast_vs_ac(urban, n=15, seed=9)


def _fast_vs_ac(network: Network, n: int, seed: int) -> None:
    eng = network.fast_engine()
    worst_v = worst_l = 0.0
    for bus, kw in _samples(network, n, seed):
        p, q = kw / 1000.0, kw / 1000.0 * 0.4843
        try:
            fast = eng.solve(bus, p, q).state
        except Exception as exc:  # the fast engine may refuse a case; it must say so by type
            from lvplan.powerflow.fast import FastEngineUnsupported

            assert isinstance(exc, FastEngineUnsupported)
            continue
        ac = network.run_ac_with([ExtraLoad(bus, p, q)]).state
        ok = np.isfinite(ac.vm_pu)
        assert np.array_equal(ok, np.isfinite(fast.vm_pu))
        worst_v = max(worst_v, float(np.max(np.abs(fast.vm_pu[ok] - ac.vm_pu[ok]))))
        for a, b in (
            (fast.line_loading_percent, ac.line_loading_percent),
            (fast.trafo_loading_percent, ac.trafo_loading_percent),
        ):
            m = np.isfinite(b)
            worst_l = max(worst_l, float(np.max(np.abs(a[m] - b[m]), initial=0.0)))
    # the judging band is 5e-4 pu and 0.2 %: the engine must be well inside it
    assert worst_v < 5e-5, worst_v
    assert worst_l < 0.02, worst_l


def test_voltage_dependent_loads_are_decided_by_full_ac():
    """The fast engine assumes constant-power loads; a const-Z load sends checks to pandapower."""
    net = pn.create_kerber_landnetz_kabel_2()
    plain = Network(net, name="k", source="pandapower.networks")
    lv = int(net.bus.index[net.bus.vn_kv < 1][-1])
    assert lvplan.check(plain, bus=lv, kw=5.0).engine == "fast"
    net2 = pn.create_kerber_landnetz_kabel_2()
    net2.load.loc[net2.load.index[0], "const_z_p_percent"] = 100.0
    vdep = Network(net2, name="k2", source="pandapower.networks")
    d = lvplan.check(vdep, bus=lv, kw=5.0)
    assert d.engine == "pandapower" and d.decision in ("fits", "does_not_fit")
