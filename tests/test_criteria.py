"""The `cn` profile is a contract (shared/design/criteria.md): every value is checked here."""

import pytest

import lvplan
from lvplan.criteria import categories, category, load_criteria


def test_cn_profile_matches_the_contract():
    c = load_criteria("cn")
    assert (c.lv_min_voltage_v, c.lv_max_voltage_v) == (353.4, 406.6)
    assert (c.mv_min_voltage_pu, c.mv_max_voltage_pu) == (0.93, 1.07)
    assert c.trafo_max_loading_percent == 100.0
    assert c.line_max_loading_percent == 100.0
    assert c.new_customer_pf == 0.9
    assert c.lv_policy_max_kw == 200.0
    assert c.default_category == "generic"
    assert c.supply_radius_m["A+"] == 150 and c.supply_radius_m["B"] == 250
    assert c.supply_radius_m["C"] == 400 and c.supply_radius_m["D"] == 500


def test_en50160_is_400v_plus_minus_10_percent():
    c = load_criteria("en50160")
    assert (c.lv_min_voltage_v, c.lv_max_voltage_v) == (360.0, 440.0)


def test_demand_factors():
    assert category("generic").demand_factor == 1.0
    assert category("restaurant").demand_factor == 0.6
    assert category("shop").demand_factor == 0.7
    assert category("office").demand_factor == 0.65
    assert all(0 < c.demand_factor <= 1 for c in categories().values())


def test_overrides_are_applied_and_recorded():
    c = load_criteria("cn", trafo_max_loading_percent="80")
    assert c.trafo_max_loading_percent == 80.0
    assert c.to_dict()["overridden"] == ["trafo_max_loading_percent"]


@pytest.mark.parametrize(
    "bad",
    [{"nope": 1}, {"lv_min_voltage_v": "x"}, {"lv_min_voltage_v": 500}, {"new_customer_pf": 1.5}],
)
def test_bad_overrides_raise_input_error(bad):
    with pytest.raises(lvplan.InputError):
        load_criteria("cn", **bad)


def test_unknown_profile():
    with pytest.raises(lvplan.InputError, match="unknown criteria profile"):
        load_criteria("gb")


def test_tighter_trafo_limit_turns_a_fit_into_does_not_fit(sz):
    loose = lvplan.check(sz, bus="T3 LV board", kw=100)
    tight = lvplan.check(
        sz, bus="T3 LV board", kw=100, criteria=load_criteria("cn", trafo_max_loading_percent=80)
    )
    assert loose.decision == "fits"
    assert tight.decision == "does_not_fit" and tight.binding.kind == "transformer"
    assert tight.to_dict()["criteria"]["trafo_max_loading_percent"] == 80.0


def test_the_fingerprint_holds_what_a_decision_depends_on(monkeypatch):
    """A register is decided under one fingerprint: every limit after --set and the demand
    factors change it; the same value given again, the description and the sources do not."""
    import dataclasses

    import lvplan.criteria as crit_mod

    cn = load_criteria("cn")
    fp = cn.fingerprint
    assert len(fp) == 64 and load_criteria("cn").fingerprint == fp
    assert load_criteria("cn", trafo_max_loading_percent=100).fingerprint == fp
    assert load_criteria("cn", trafo_max_loading_percent=101).fingerprint != fp
    assert load_criteria("cn", lv_min_voltage_v=353.40000001).fingerprint != fp
    assert load_criteria("en50160").fingerprint != fp
    assert dataclasses.replace(cn, description="another text").fingerprint == fp
    cats = dict(crit_mod._categories())
    cats["retail"] = dataclasses.replace(cats["retail"], demand_factor=0.9)
    monkeypatch.setattr(crit_mod, "_categories", lambda: cats)
    assert cn.fingerprint != fp  # a demand factor changed: decisions change
    assert load_criteria("cn", lv_min_voltage_v=353.40000001).label == (
        "cn with lv_min_voltage_v=353.40000001"
    )
