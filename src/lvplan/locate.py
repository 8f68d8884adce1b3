"""Location-based applications: from lon/lat to the best LV connection point.

The LV buses within the supply radius of the area class (route length = straight-line distance
x detour factor) are candidates; each is checked with a service cable of that route length, sized
to the design current. The answer is the feasible candidate with the shortest cable (ties: more
headroom), with every candidate considered listed under ``location.alternatives``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from lvplan.criteria import Criteria
from lvplan.criteria.judge import Violation
from lvplan.decision import (
    Decision,
    _decide,
    _number,
    choose_service_cable,
    given,
    make_question,
    resolve_criteria,
)
from lvplan.errors import InputError
from lvplan.kinds import BindingKind, ElementRef, Verdict
from lvplan.model.network import Network, as_network

EARTH_RADIUS_M = 6_371_000.0
MAX_CANDIDATES = 8


def bus_lonlat(network: Network) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude of every bus row, in degrees (NaN where the network has none, or
    everywhere when its coordinates are not degrees: :mod:`lvplan.model.coordinates`)."""
    return network.bus_lonlat


def _no_positions(network: Network) -> str:
    """What a refusal for want of bus positions adds: why, when the network has coordinates
    that are not degrees."""
    return f" ({network.coordinates_note})" if network.coordinates_note else ""


def distance_m(lon1, lat1, lon2, lat2):
    """Great-circle distance in metres (haversine)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lon2) - lon1)
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(a))


def _dead_within(network: Network, route: np.ndarray, radius: float) -> str:
    """What a refusal by radius should add when LV buses within it exist but nothing supplies
    them (behind an open switch, a transformer switched out): they are why, not their absence."""
    n = int((network.unsupplied_lv_bus & (route <= radius)).sum())
    if not n:
        return ""
    return f" that is supplied ({n} LV bus{'es' if n > 1 else ''} within it, not supplied)"


def check_location(
    network: Network,
    *,
    lon: Any,
    lat: Any,
    kw: Any,
    category: str | None = None,
    pf: Any = None,
    criteria: Criteria | str | None = None,
    area_class: str | None = None,
    method: str = "auto",
) -> Decision:
    network = as_network(network)
    crit = resolve_criteria(criteria)
    x = _number("lon", lon)
    if not -180 <= x <= 180:
        raise InputError(f"lon must be in [-180, 180] (degrees east), got {given(lon)}")
    y = _number("lat", lat)
    if not -90 <= y <= 90:
        raise InputError(f"lat must be in [-90, 90] (degrees north), got {given(lat)}")
    cls = crit.default_area_class if area_class is None else area_class
    if cls not in crit.supply_radius_m:
        known = ", ".join(crit.supply_radius_m)
        raise InputError(f"area_class must be one of {known}, got {given(cls)}")
    radius = crit.supply_radius_m[cls]
    blon, blat = bus_lonlat(network)
    pp_bus = network.pp.bus
    lv = (pp_bus.vn_kv.to_numpy(float) < 1.0) & network.live.bus & np.isfinite(blon)
    if not lv.any():
        raise InputError(
            "the network has no LV buses with coordinates for a location check"
            + _no_positions(network)
        )
    d = distance_m(x, y, blon, blat)
    route = d * crit.detour_factor
    rows = np.flatnonzero(lv & (route <= radius))
    rows = rows[np.argsort(route[rows])][:MAX_CANDIDATES]
    loc: dict[str, Any] = {
        "lon": x,
        "lat": y,
        "area_class": cls,
        "supply_radius_m": radius,
        "detour_factor": crit.detour_factor,
        "alternatives": [],
    }
    if rows.size == 0:
        nearest = int(np.nanargmin(np.where(lv, route, np.nan)))
        b = int(pp_bus.index[nearest])
        q = make_question(network, bus=b, kw=kw, category=category, pf=pf, criteria=crit)
        base = _decide(
            network, q, crit, method=method, cable=None, headroom=False, area_class=area_class
        )
        why = Violation(
            BindingKind.SUPPLY_RADIUS,
            ElementRef("bus", b),
            base.bus_name,
            float(route[nearest]),
            radius,
            "m",
        )
        loc["nearest_route_m"] = round(float(route[nearest]), 1)
        return dataclasses.replace(
            base,
            decision=Verdict.DOES_NOT_FIT
            if base.decision in (Verdict.FITS, Verdict.DOES_NOT_FIT)
            else base.decision,
            binding=why if base.decision in (Verdict.FITS, Verdict.DOES_NOT_FIT) else base.binding,
            violations=[why, *base.violations],
            location=loc,
            reason=f"no LV bus within the {radius:g} m supply radius of area class {cls}"
            + _dead_within(network, route, radius),
        )
    results: list[Decision] = []
    for r in rows:
        b = int(pp_bus.index[r])
        q = make_question(network, bus=b, kw=kw, category=category, pf=pf, criteria=crit)
        cable = choose_service_cable(q.design_kw, q.design_kvar, float(route[r]))
        dec = _decide(
            network, q, crit, method=method, cable=cable, headroom=True, area_class=area_class
        )
        results.append(dec)
        if dec.decision == "hv_required":
            return dataclasses.replace(dec, location=loc)
        loc["alternatives"].append(
            {
                "bus": b,
                "bus_name": dec.bus_name,
                "route_m": round(float(route[r]), 1),
                "decision": dec.decision,
                "headroom_kw": dec.to_dict()["headroom_kw"],
                "binding": None if dec.binding is None else dec.binding.to_dict(),
            }
        )
    fits = [r for r in results if r.decision == "fits"]
    best = fits[0] if fits else results[0]
    return dataclasses.replace(best, location=loc)
