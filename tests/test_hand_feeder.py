"""A 3-bus LV feeder worked out on paper.

    bus 0 (slack, 400 V) --- 300 m YJV22 4x240 --- bus 1 --- 400 m YJV22 4x150 --- bus 2 (new load)

Cable data (catalogue.toml): 4x240 r = 0.090, x = 0.077 ohm/km; 4x150 r = 0.148, x = 0.080
ohm/km, 330 A. The series impedance from the source to bus 2 is

    R = 0.3 * 0.090 + 0.4 * 0.148 = 0.0862 ohm,   X = 0.3 * 0.077 + 0.4 * 0.080 = 0.0551 ohm.

With a three-phase load P + jQ (Q = P tan(acos 0.9) = 0.4843 P) at bus 2, the line-to-line voltage
U there solves

    U^4 + (2 (P R + Q X) - U0^2) U^2 + (P^2 + Q^2)(R^2 + X^2) = 0,      U0 = 400 V.

For P = 100 kW: P R + Q X = 8620 + 2668.6 = 11288.6 (W ohm), (P^2 + Q^2)|Z|^2 = 1.2922e8, so
U^2 = (137422.8 + sqrt(137422.8^2 - 4 * 1.2922e8)) / 2 = 136476.0 and U = 369.43 V, a 7.64 %
drop of 400 V; the current is S / (sqrt(3) U) = 111.1 kVA / 639.9 V = 173.6 A, 52.6 % of 330 A.

The voltage limit (353.4 V) binds where U = 353.4 in the quartic, a quadratic in P:

    (1 + t^2)|Z|^2 P^2 + 2 (R + t X) U^2 P + U^4 - U0^2 U^2 = 0,   t = 0.4843

which gives P = 145.77 kW; the current there is 264.6 A < 330 A, so the voltage binds first.
"""

import math

import pandapower as pp
import pytest

import lvplan
from lvplan.model.network import Network

R = 0.3 * 0.090 + 0.4 * 0.148
X = 0.3 * 0.077 + 0.4 * 0.080
T = math.tan(math.acos(0.9))
U0 = 400.0


def voltage_at(p_w: float) -> float:
    q = p_w * T
    b = 2 * (p_w * R + q * X) - U0**2
    c = (p_w**2 + q**2) * (R**2 + X**2)
    return math.sqrt((-b + math.sqrt(b * b - 4 * c)) / 2)


def binding_kw(u_min: float = 353.4) -> float:
    a = (1 + T**2) * (R**2 + X**2)
    b = 2 * (R + T * X) * u_min**2
    c = u_min**4 - U0**2 * u_min**2
    return (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a) / 1000.0


@pytest.fixture(scope="module")
def feeder():
    net = pp.create_empty_network()
    b0, b1, b2 = (pp.create_bus(net, 0.4, name=f"bus {i}") for i in range(3))
    pp.create_ext_grid(net, b0, vm_pu=1.0)
    pp.create_line_from_parameters(net, b0, b1, 0.3, 0.090, 0.077, 0.0, 0.430)
    pp.create_line_from_parameters(net, b1, b2, 0.4, 0.148, 0.080, 0.0, 0.330)
    return Network(net, name="hand feeder", source="test")


def test_paper_numbers():
    assert voltage_at(100e3) == pytest.approx(369.43, abs=0.005)
    assert binding_kw() == pytest.approx(145.77, abs=0.005)


def test_voltage_and_loading_at_100kw_match_the_hand_solution(feeder):
    d = lvplan.check(feeder, bus=2, kw=100.0)
    assert d.decision == "fits"
    assert d.bus_voltage_after_v == pytest.approx(voltage_at(100e3), abs=0.01)
    assert d.min_voltage_v == pytest.approx(voltage_at(100e3), abs=0.01)
    current_a = 100e3 / 0.9 / (math.sqrt(3) * voltage_at(100e3))
    assert current_a == pytest.approx(173.6, abs=0.05)
    assert d.closest_limit.kind == "voltage"


@pytest.mark.parametrize("method", ["auto", "ac"])
def test_decision_flips_exactly_at_the_voltage_limit(feeder, method):
    p = binding_kw()
    below = lvplan.check(feeder, bus=2, kw=p - 0.05, method=method)
    above = lvplan.check(feeder, bus=2, kw=p + 0.05, method=method)
    assert below.decision == "fits"
    assert above.decision == "does_not_fit"
    assert above.binding.kind == "voltage" and above.binding.element == "bus 2"
    assert above.binding.value == pytest.approx(353.4, abs=0.05)
    assert above.binding.limit == 353.4


def test_headroom_is_the_paper_limit_less_the_application(feeder):
    d = lvplan.check(feeder, bus=2, kw=100.0)
    # the headroom is reported on the safe side, within 0.5 kW of the exact value
    assert binding_kw() - 100.0 - 0.5 <= d.headroom_kw <= binding_kw() - 100.0


def test_thermal_limit_binds_on_a_short_feeder():
    """10 m of 4x150: the voltage hardly drops, so the 330 A ampacity binds at
    sqrt(3) * U * 330 A * 0.9 ~= 205 kW at U ~= 399 V."""
    net = pp.create_empty_network()
    b0, b1 = pp.create_bus(net, 0.4), pp.create_bus(net, 0.4)
    pp.create_ext_grid(net, b0, vm_pu=1.0)
    pp.create_line_from_parameters(net, b0, b1, 0.01, 0.148, 0.080, 0.0, 0.330)
    n = Network(net, name="short", source="test")
    crit = lvplan.load_criteria("cn", lv_policy_max_kw=1000)
    d = lvplan.check(n, bus=1, kw=210.0, criteria=crit)
    assert d.decision == "does_not_fit" and d.binding.kind == "line"
    assert lvplan.check(n, bus=1, kw=200.0, criteria=crit).decision == "fits"
