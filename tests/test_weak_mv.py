"""A weak 10 kV network upstream of the LV area: the fast engine's linear MV response is not
exact there (hostile probe, 2026-12-07).

The fast engine solves the customer's LV area exactly and moves everything outside it by the
base case's linear response. Behind a long, weak 10 kV line (kerber's village grid fed through
10 km of 3+j3 ohm/km) that response is volts off, and ``check`` answered ``fits`` where
pandapower took the 10 kV bus below 0.93 pu (145 kW at bus 1), an LV bus below 353.4 V (58.9
kW at bus 13) or the weak line past its rating: the fixed band (0.2 V, 0.2 %) that sends a
check near a limit to the exact load flow is not a bound on that error. Now one Newton step
from every fast "fits" measures it, and where the step moves a judged margin by more than
``FAST_TRUST`` the exact load flow decides; the headroom search does the same at each load it
tries. Every answer below is compared with the independent judge (``tests/reference.py``).
"""

from __future__ import annotations

import copy
import math
import random

import pandapower as pp
import pandapower.networks as pn
import pytest
from reference import OPTS, Reference

import lvplan
from lvplan.decision import FAST_TRUST
from lvplan.model.network import Network


def _kerber():
    """pandapower's kerber village grid, the same every run: it draws its branch cable types
    with Python's ``random`` (unseeded, a bus's map answer moved by 0.7 kW from run to run;
    probe helper-77)."""
    random.seed(0)
    return pn.create_kerber_landnetz_kabel_1()


def _weak(vm_pu: float = 1.02, line_max_i_ka: float = 1.0):
    net = _kerber()
    src = pp.create_bus(net, 10.0, name="MV source")
    net.ext_grid["bus"] = src
    net.ext_grid["vm_pu"] = vm_pu
    pp.create_line_from_parameters(
        net, src, 0, 10.0, 3.0, 3.0, 0.0, line_max_i_ka, name="weak MV line"
    )
    net.trafo["sn_mva"] = 0.63
    net.line.loc[net.line.from_bus != src, "max_i_ka"] = 5.0  # the LV cables do not bind
    return net


@pytest.fixture(scope="module")
def cn():
    return lvplan.load_criteria("cn")


def _agrees(net, cn, bus: int, kws) -> list[str]:
    """lvplan's decisions at ``bus`` for each declared kW, each against the judge's; the
    headroom of a fitting one fits too."""
    network = Network(copy.deepcopy(net), name="weak", source="test")
    ref = Reference(net, cn)
    engines = []
    for kw in kws:
        d = lvplan.check(network, bus=bus, kw=kw, criteria=cn)
        want = ref.decide(bus, d.design_kw)
        assert d.decision == want, (kw, d.decision, want, d.engine)
        if d.decision == "fits":
            assert ref.decide(bus, d.design_kw + d.headroom_kw) == "fits", (kw, d.headroom_kw)
        engines.append(str(d.engine))
    return engines


def test_the_10kv_band_behind_a_weak_line_is_judged_exactly(cn):
    """Bus 0 (the 10 kV side) leaves the 0.93 pu band between 138 and 140 kW of design load
    at bus 1: the fast engine put it at 0.9323 pu at 145 kW (pandapower 0.9262) and said fits."""
    net = _weak()
    engines = _agrees(net, cn, 1, [120.0, 135.0, 140.0, 145.0, 149.0])
    assert "newton" in engines  # the exact load flow decided where the fast state was off
    n = copy.deepcopy(net)
    pp.create_load(n, 1, p_mw=0.145, q_mvar=0.145 * math.tan(math.acos(0.9)))
    pp.runpp(n, **OPTS)
    assert n.res_bus.vm_pu.at[0] < cn.mv_min_voltage_pu  # (the case is what it says)


def test_an_lv_bus_behind_a_weak_line_is_judged_exactly(cn):
    """Bus 13 at 58.9 kW: the fast engine said 353.72 V, pandapower 353.21 V (limit 353.4)."""
    _agrees(_weak(), cn, 13, [50.0, 56.0, 58.9, 62.0])


def test_the_weak_line_s_own_rating_is_judged_exactly(cn):
    """The weak line rated 11.5 A: at 118.37 kW it is 102.5 % loaded in pandapower, and the
    fast engine said fits with 2.5 kW of headroom."""
    net = _weak(vm_pu=1.03, line_max_i_ka=0.0115)
    _agrees(net, cn, 1, [100.0, 111.0, 114.0, 118.37])


def test_on_a_stiff_network_the_fast_engine_still_decides(cn):
    """The step costs one solve and is below FAST_TRUST on the bundled district: every
    answer stays with the fast engine (it is not a check that always falls back)."""
    net = lvplan.load_network("sz-futian")
    engines = {str(lvplan.check(net, bus=b, kw=40, criteria=cn).engine) for b in (15, 16, 30)}
    assert engines == {"fast"} and FAST_TRUST <= 1e-4


def _map_fits_within_2_percent(net, cn):
    """The map of the village's 17 LV buses, each answer judged: it fits, and 2 % + 0.5 kW
    more does not. Returns the network and the table."""
    network = Network(copy.deepcopy(net), name="weak", source="test")
    table = lvplan.hosting_capacity(network, criteria=cn).table
    ref = Reference(net, cn)
    pf = cn.new_customer_pf
    assert len(table) == 17
    for bus, kw in zip(table.bus.tolist(), table.hosting_kw.tolist(), strict=True):
        assert ref.decide(int(bus), kw, pf) == "fits", (bus, kw)
        assert ref.decide(int(bus), kw * 1.02 + 0.5, pf) == "does_not_fit", (bus, kw)
    return network, table


def test_the_hosting_map_behind_a_weak_line_never_exceeds_what_fits(cn):
    """The map's search moves the roots by the linear MV response too: every bus of the village
    was above what pandapower lets fit (bus 1: 148.9 kW against 138.1). Now each area's answers
    are tried on the MV network's own load flow, and a bus whose answer moves it more than
    the linear response said is answered as ``check`` answers it (``lvplan.hosting.secant``):
    every answer fits in pandapower, and none is more than 2 % below what does (10 % on the
    secant, before 2026-12-08)."""
    network, table = _map_fits_within_2_percent(_weak(), cn)
    # the service's area route answers as the map does
    one = lvplan.hosting.area_capacity(network, lv_bus=1, criteria=cn)
    both = one.merge(table, on="bus", suffixes=("", "_map"))
    assert len(both) == 17 and (both.hosting_kw == both.hosting_kw_map).all()


def test_on_a_stiff_network_the_map_is_unchanged_by_the_check(monkeypatch):
    """On the urban district the MV response is linear at every answer within the search's
    safety: the check searches nothing again (it cost 0.4 s of the map's 2.7 s)."""
    from lvplan.hosting import secant

    net = lvplan.load_network("sz-futian")
    seen = []
    real = secant.recheck

    def spy(prep, parts, **kw):
        out = real(prep, parts, **kw)
        seen.append((out[2], len(prep.problems)))
        return out

    monkeypatch.setattr(secant, "recheck", spy)
    lvplan.hosting_capacity(net)
    assert seen == [(0, 8)]


def test_the_map_where_a_new_load_reverses_a_generator_s_export(cn):
    """A 100 kW generator on the 10 kV side exports through a 1 km line rated 6 A: a new load
    first lowers that line's current, so its linear row said the margin grows without end,
    and the map gave bus 1 496.3 kW where pandapower fits 118 kW (the line at 219 %; review,
    2026-12-07). Such a row is bounded by no secant: the area is answered by full AC."""
    net = _kerber()
    src = pp.create_bus(net, 10.0, name="MV source")
    net.ext_grid["bus"] = src
    pp.create_line_from_parameters(net, src, 0, 1.0, 0.2, 0.1, 0.0, 0.006, name="MV line")
    pp.create_sgen(net, 0, p_mw=0.1, q_mvar=0.0, name="MV PV")
    net.trafo["sn_mva"] = 0.63
    net.line.loc[net.line.from_bus != src, "max_i_ka"] = 5.0
    table = lvplan.hosting_capacity(Network(copy.deepcopy(net), name="r", source="t"), criteria=cn)
    ref = Reference(net, cn)
    pf = cn.new_customer_pf
    rows = list(zip(table.table.bus.tolist(), table.table.hosting_kw.tolist(), strict=True))
    assert len(rows) == 17 and rows[0][0] == 1 and 110 < rows[0][1] < 118.1
    for bus, kw in rows:
        assert ref.decide(int(bus), kw, pf) == "fits", (bus, kw)
        assert ref.decide(int(bus), kw + 1.0, pf) == "does_not_fit", (bus, kw)


def test_a_diverged_exact_solve_leaves_the_trust_test_sound(cn):
    """An exact solve past the collapse point left its Jacobian factored where it stopped (|V|
    up to 11 pu); the step on it was 5,000 times smaller than the fast engine's error, and
    the trust test passed a fast state 6e-3 pu off (review, 2026-12-07). The step is taken on
    the base's Jacobian, and a diverged solve leaves none of its own."""
    from lvplan.powerflow.fast import FastEngineDiverged

    net = _weak()
    network = Network(copy.deepcopy(net), name="weak", source="test")
    lvplan.check(network, bus=1, kw=10, criteria=cn)
    eng = network.fast_engine()
    with pytest.raises(FastEngineDiverged):
        eng.exact([(3, 0.37, 0.37 * math.tan(math.acos(0.9)), None)])
    assert eng._newton is eng._response
    d = lvplan.check(network, bus=1, kw=145, criteria=cn)
    assert d.decision == Reference(net, cn).decide(1, d.design_kw) == "does_not_fit"


def _two_units(r: float, x: float, km2: float, mesh: bool, pv_kw: float):
    """The village fed through 10 km of a weak 10 kV line (r + jx ohm/km), with a second 630
    kVA unit on a 10 kV bus ``km2`` further on feeding LV bus 13: one LV area with two roots
    on two 10 kV buses; PV of ``pv_kw`` at eight load buses, about balancing their load."""
    net = _weak(vm_pu=1.0)
    net.line.loc[net.line.name == "weak MV line", ["r_ohm_per_km", "x_ohm_per_km"]] = [r, x]
    m2 = pp.create_bus(net, 10.0, name="MV 2")
    pp.create_line_from_parameters(net, 0, m2, km2, r, x, 0.0, 1.0, name="MV 2 line")
    t = net.trafo.loc[0]
    pp.create_transformer_from_parameters(
        net, m2, 13, sn_mva=0.63, vn_hv_kv=10.0, vn_lv_kv=0.4, vkr_percent=t.vkr_percent,
        vk_percent=t.vk_percent, pfe_kw=t.pfe_kw, i0_percent=t.i0_percent,
        shift_degree=t.shift_degree, name="second unit",
    )  # fmt: skip
    net.line.loc[net.line.from_bus != net.ext_grid.bus.iat[0], "max_i_ka"] = 0.275
    net.line.loc[net.line.name.isin(["weak MV line", "MV 2 line"]), "max_i_ka"] = 1.0
    if mesh:
        pp.create_line_from_parameters(net, 9, 17, 0.1, 0.2067, 0.080425, 0.0, 0.275)
    for b in (3, 5, 7, 9, 11, 13, 15, 17):
        pp.create_sgen(net, b, p_mw=pv_kw / 1000.0, q_mvar=0.0)
    return net


@pytest.mark.parametrize(
    "r, x, km2, mesh, pv_kw",
    [(3.0, 1.0, 2.0, False, 8.0), (1.0, 3.0, 2.0, True, 8.0), (1.0, 3.0, 3.0, False, 8.0),
     (1.0, 3.0, 1.0, True, 7.0)],
)  # fmt: skip
def test_the_map_of_an_area_with_two_units_behind_a_weak_line_never_exceeds_what_fits(
    cn, r, x, km2, mesh, pv_kw
):
    """Two units on two 10 kV buses behind a weak line feed one LV area: the secant search
    scaled the roots' response by one gain, which scaled the voltage difference between them
    too and moved the new load's share to the nearer unit, so the far unit's cable looked less
    loaded (and a gain taken from near-zero base currents, PV balancing the load, bounded no
    voltage): answers up to 1.49 kW above what fits (probe helper-77; line 11 at 100.8 %, bus
    5 at 353.04 V). Such buses are answered as ``check`` answers them: every answer fits, and
    none is more than 2 % below what does."""
    _map_fits_within_2_percent(_two_units(r, x, km2, mesh, pv_kw), cn)


def test_a_rejection_by_the_fast_engine_is_tried_exactly_where_it_is_not_trusted(cn):
    """The village behind 9.7 km of a weak 10 kV line, a second unit on a 10 kV bus 2.3 km
    further feeding LV bus 15, a mesh 8-17, loads doubled and PV at four buses: at bus 14 the
    fast engine put line 13 at 100.73 % where the exact load flow has 99.64 %, and ``check``
    said does_not_fit at 125.7 kW where the judge and the map say fits (a fast rejection was
    never tried exactly); its headroom at 124.7 kW was 0.0 (probe helper-82: 37 buses of 213
    fuzzed networks). A rejection is now kept only where the fast state passes the step test,
    and a headroom search whose decision needed the exact load flow uses it throughout."""
    random.seed(811)
    net = pn.create_kerber_landnetz_kabel_1()
    net.ext_grid["vm_pu"] = 0.9954
    net.trafo["sn_mva"] = 0.63
    net.load[["p_mw", "q_mvar"]] *= 2.0208
    src = pp.create_bus(net, 10.0, name="MV source")
    mid = pp.create_bus(net, 10.0, name="MV mid")
    net.ext_grid["bus"] = src
    for a, b in ((src, mid), (mid, 0)):
        pp.create_line_from_parameters(net, a, b, 4.82955, 1.524, 0.8991, 0.0, 1.0)
    m2 = pp.create_bus(net, 10.0, name="MV 2")
    pp.create_line_from_parameters(net, 0, m2, 2.3098, 1.524, 0.8991, 0.0, 1.0)
    t = net.trafo.loc[0]
    pp.create_transformer_from_parameters(
        net, m2, 15, sn_mva=0.63, vn_hv_kv=10.0, vn_lv_kv=0.4, vkr_percent=t.vkr_percent,
        vk_percent=t.vk_percent, pfe_kw=t.pfe_kw, i0_percent=t.i0_percent,
        shift_degree=t.shift_degree,
    )  # fmt: skip
    pp.create_line_from_parameters(net, 8, 17, 0.2409, 0.2067, 0.080425, 0.0, 0.275)
    for b in (10, 1, 8, 8, 8, 1, 8, 15):
        pp.create_sgen(net, b, p_mw=0.013499, q_mvar=0.0)
    network = Network(copy.deepcopy(net), name="two units", source="test")
    ref = Reference(net, cn)
    for kw in (124.7, 125.2, 125.7):
        d = lvplan.check(network, bus=14, kw=kw, criteria=cn)
        assert d.decision == ref.decide(14, d.design_kw) == "fits", (kw, d.decision, d.engine)
        assert ref.decide(14, d.design_kw + d.headroom_kw) == "fits"
        assert ref.decide(14, d.design_kw + d.headroom_kw + 0.6) == "does_not_fit"
    d = lvplan.check(network, bus=14, kw=127.0, criteria=cn)
    assert d.decision == ref.decide(14, d.design_kw) == "does_not_fit"
