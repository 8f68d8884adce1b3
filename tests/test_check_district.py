"""Decisions on the bundled Shenzhen district (networks/sz-futian)."""

from __future__ import annotations

import pytest

import lvplan
from lvplan.locate import check_location
from lvplan.model.network import ExtraLoad


def test_district_loads_and_has_eight_public_transformers(sz):
    net = sz.pp
    assert len(net.trafo) == 8
    assert set((net.trafo.sn_mva * 1000).round().astype(int)) == {400, 500, 630, 800}
    assert len(sz.topology.areas) == 8
    # the two feeders are tied by a normally-open switch: the MV network runs radial
    assert set(sz.topology.trafo_feeder.values()) == {"F1", "F2"}


def test_fits_with_demand_factor(sz):
    d = lvplan.check(sz, bus="T3 LV board", kw=160, category="restaurant")
    assert d.decision == "fits"
    assert d.design_kw == pytest.approx(96.0)
    assert d.transformer["name"].startswith("T3")
    assert d.transformer_loading_after_percent > d.transformer_loading_before_percent + 10
    assert d.binding is None and d.closest_limit is not None


def test_line_binds_at_the_far_end(sz):
    d = lvplan.check(sz, bus="T6 far end", kw=200)
    assert d.decision == "does_not_fit"
    assert d.binding.kind == "line"
    assert d.binding.value > 100.0
    assert d.headroom_kw is not None and 0 < d.headroom_kw < 200


def test_hv_required_above_the_policy_limit(sz):
    d = lvplan.check(sz, bus="T8 clinic", kw=200.5)
    assert d.decision == "hv_required"
    assert (
        lvplan.check(
            sz, bus="T8 clinic", kw=200.5, criteria=lvplan.load_criteria("cn", lv_policy_max_kw=250)
        ).decision
        != "hv_required"
    )


def test_pre_existing_violation_in_own_area_blocks(sz):
    d = lvplan.check(sz, bus="T7 food court", kw=5)
    assert d.decision == "does_not_fit"
    assert d.binding.kind == "pre_existing" and d.binding.element == "trafo 6"
    assert d.headroom_kw == 0.0


def test_pre_existing_violation_elsewhere_is_a_warning(sz):
    d = lvplan.check(sz, bus="T8 clinic", kw=20)
    assert d.decision == "fits"
    assert any("trafo 6" in w for w in d.warnings)


def test_check_does_not_mutate_the_network(sz):
    before = (len(sz.pp.load), len(sz.pp.bus), len(sz.pp.line), sz.fingerprint)
    for kw in (10, 150, 199):
        lvplan.check(sz, bus="T1 lane", kw=kw, method="ac")
    check_location(sz, lon=114.0590, lat=22.5415, kw=50)
    assert (len(sz.pp.load), len(sz.pp.bus), len(sz.pp.line)) == before[:3]
    assert sz.fingerprint == before[3]
    assert len(sz._work.load) == before[0] and len(sz._work.bus) == before[1]


@pytest.mark.parametrize(
    "bus", ["T1 lane", "T2 market stalls", "T3 car park", "T6 far end", "T5 kiosk"]
)
def test_headroom_is_consistent_with_check(sz, bus):
    """kw = headroom fits and headroom + max(1 kW, 1 %) does not, in the full AC load flow."""
    h = lvplan.check(sz, bus=bus, kw=1.0).headroom_kw + 1.0
    assert lvplan.check(sz, bus=bus, kw=h, method="ac", headroom=False).decision == "fits"
    over = h + max(1.0, 0.01 * h)
    assert (
        lvplan.check(sz, bus=bus, kw=over, method="ac", headroom=False).decision == "does_not_fit"
    )


def test_auto_and_ac_agree_on_a_grid_of_questions(sz):
    for bus in ("T1 lane", "T3 tower B", "T6 street", "T8 residences"):
        for kw in (20, 60, 100, 140, 180):
            a = lvplan.check(sz, bus=bus, kw=kw, headroom=False)
            b = lvplan.check(sz, bus=bus, kw=kw, method="ac", headroom=False)
            assert a.decision == b.decision, (bus, kw)
            assert a.transformer_loading_after_percent == pytest.approx(
                b.transformer_loading_after_percent, abs=0.01
            )
            assert a.min_voltage_v == pytest.approx(b.min_voltage_v, abs=0.01)


def test_location_picks_the_nearest_feasible_bus_with_a_service_cable(sz):
    d = check_location(sz, lon=114.0590, lat=22.5415, kw=120, category="shop")
    assert d.decision == "fits"
    alts = d.location["alternatives"]
    assert alts and alts[0]["route_m"] <= alts[-1]["route_m"]
    assert d.bus == next(a["bus"] for a in alts if a["decision"] == "fits")
    assert d.service_cable is not None and d.service_cable["length_m"] > 0
    # the customer's terminal voltage is below the connection bus's: the cable drops voltage
    assert d.min_voltage_v < d.bus_voltage_after_v


def test_location_service_cable_matches_pandapower(sz):
    d = check_location(sz, lon=114.0590, lat=22.5415, kw=120, category="shop")
    from lvplan.decision import choose_service_cable

    cable = choose_service_cable(d.design_kw, d.design_kvar, d.service_cable["length_m"])
    ac = sz.run_ac_with(
        [
            ExtraLoad(
                d.bus,
                d.design_kw / 1000,
                d.design_kvar / 1000,
                cable.length_m / 1000,
                cable.r_ohm_per_km,
                cable.x_ohm_per_km,
                cable.max_i_ka,
            )
        ]
    )
    assert ac.customer_vm_pu * 400.0 == pytest.approx(d.min_voltage_v, abs=0.02)


def test_location_outside_every_supply_radius(sz):
    d = check_location(sz, lon=114.20, lat=22.60, kw=50)
    assert d.decision == "does_not_fit" and d.binding.kind == "supply_radius"
    assert d.location["nearest_route_m"] > 150


def test_not_assessable_when_the_load_flow_fails(sz):
    """An absurd load the AC load flow cannot solve is never 'fits'."""
    crit = lvplan.load_criteria("cn", lv_policy_max_kw=1e6)
    d = lvplan.check(sz, bus="T6 far end", kw=50000, criteria=crit, headroom=False)
    assert d.decision in ("not_assessable", "does_not_fit")
    assert d.decision != "fits"


def test_decision_json_is_stable(sz):
    out = lvplan.check(sz, bus="T3 LV board", kw=100).to_dict()
    assert out["decision"] == "fits"
    assert out["criteria"]["profile"] == "cn"
    assert out["network"]["fingerprint"] == sz.fingerprint
    assert out["binding"] is None and out["violations"] == []
    assert isinstance(out["headroom_kw"], float)
