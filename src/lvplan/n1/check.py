"""N-1 in the check: the contingencies of the customer's feeder and of its loop partners, with
the new load, judged by the emergency limits (:mod:`lvplan.n1.assess`).

Where the profile requires full N-1 for the application's area class:

* a decision that fits in the normal state but leaves a contingency without a passing option
  (an emergency limit broken after the transfer, or no restoring tie) becomes
  ``does_not_fit`` with binding kind ``n1_transfer``, naming the contingency, the element and
  its value;
* one whose contingency cannot be solved becomes ``not_assessable`` (never ``fits``);
* a decision that does not fit already gets the N-1 violations added to its list;
* ``headroom_kw`` is the smaller of the normal-state and the N-1 headroom.

Class C (``pass_rate`` in ``cn``) is a district target, not a rule for one application: the
decision stays the normal state's and the ``n1`` section says so, with the target; the pass
rate itself is computed by ``lvplan inspect`` and the N-1 map (:func:`lvplan.n1.feeders.pass_rate`).

The ``n1`` section lists every contingency judged, its status, its best option, its worst
margin, and the k/(k+1) screening indicator of the feeders. A profile without N-1 (``en50160``)
adds nothing; an application whose class needs no full N-1 gets ``{"applied": false}``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from lvplan.criteria import Criteria
from lvplan.errors import InputError, PowerFlowError
from lvplan.kinds import Engine, Verdict
from lvplan.model.network import Network
from lvplan.model.topology import unfed
from lvplan.n1.assess import (
    FAIL,
    NO_TIE,
    NOT_ASSESSABLE,
    ContingencyOutcome,
    N1Context,
    judge_contingency,
    n1_context,
    screening,
)
from lvplan.n1.contingency import Option
from lvplan.powerflow import capacity

_ENGINE_RANK = {Engine.FAST: 0, Engine.NEWTON: 1, Engine.PANDAPOWER: 2}


def with_n1(
    network: Network,
    d,
    q,
    crit: Criteria,
    area_class: str | None,
    *,
    method: str,
    cable,
    headroom: bool,
):
    """``d`` (the normal-state decision) with the N-1 rule of ``crit`` applied. InputError
    for an area class the profile does not know."""
    if area_class is not None and area_class not in crit.n1_by_area_class:
        known = ", ".join(crit.n1_by_area_class)
        raise InputError(f"unknown area class {area_class!r}; known: {known}")
    level = crit.n1_level(area_class)
    cls = area_class or crit.n1_default_area_class or None
    sect: dict[str, Any] = {"applied": False, "level": level, "area_class": cls}
    if level == "pass_rate":
        # class C: a target for the district's share of feeders passing N-1, not a rule for
        # one application; the decision is the normal state's
        sect["pass_rate_target_percent"] = crit.n1_pass_rate_target_percent
        sect["reason"] = (
            f"area class {cls}: N-1 is a district pass-rate target in profile {crit.profile} "
            f"({crit.n1_pass_rate_target_percent:g} % of feeders passing N-1), not a "
            "per-application rule: the decision is the normal state's; the district's pass "
            "rate is in `lvplan inspect` and the N-1 map's summary"
        )
        return dataclasses.replace(d, n1=sect)
    if level != "full":
        sect["reason"] = (
            "the application names no area class (N-1 is judged for classes "
            + ", ".join(k for k, v in crit.n1_by_area_class.items() if v == "full")
            + ")"
            if level == "unknown"
            else f"area class {cls}: N-1 is {level!r} in profile {crit.profile}, "
            "not a per-application rule"
        )
        return dataclasses.replace(d, n1=sect)
    if d.decision not in (Verdict.FITS, Verdict.DOES_NOT_FIT):
        sect["reason"] = f"no N-1 judgement for a {d.decision} answer"
        return dataclasses.replace(d, n1=sect)
    ctx = n1_context(network, crit)
    conts = ctx.relevant(d.feeder)
    f = ctx.topology.feeders.get(d.feeder or "")
    sect.update(
        applied=True,
        feeder=d.feeder,
        partners=list(f.partners) if f else [],
    )
    if unfed(d.feeder) and d.decision == Verdict.FITS:
        # no source busbar found for its 10 kV group: which loss cuts it off is unknown, so
        # N-1 cannot say it fits (it said `fits` with no contingency: the review's false fits,
        # a reactor at a feeder's head, 2026-12-07)
        sect["reason"] = (
            "N-1 cannot be judged: the customer's transformer is on a 10 kV group with no "
            "source busbar lvplan can find (fed through an impedance element or an MV/MV "
            "unit): manual review"
        )
        sect["contingencies"] = []
        return dataclasses.replace(
            d,
            n1=sect,
            decision=Verdict.NOT_ASSESSABLE,
            reason=sect["reason"],
            headroom_kw=None,
            closest_limit=None,
        )
    if not conts:
        sect["reason"] = "the customer's transformer is on no MV feeder with a head section"
        sect["contingencies"] = []
        return dataclasses.replace(d, n1=sect)
    p, qv = q.design_kw / 1000.0, q.design_kvar / 1000.0
    outs = [judge_contingency(ctx, c, q.bus, p, qv, cable, method) for c in conts]
    sect["contingencies"] = [o.to_dict() for o in outs]
    sect["screening"] = screening(network, ctx, [d.feeder, *sect["partners"]])
    engines = [o.best.engine for o in outs if o.best is not None and o.best.engine is not None]
    failed = [o for o in outs if o.status in (FAIL, NO_TIE)]
    unknown = [o for o in outs if o.status == NOT_ASSESSABLE]
    viol = sorted((v for o in failed for v in o.violations()), key=lambda v: -v.severity)
    changes: dict[str, Any] = {"n1": sect}
    if d.decision == Verdict.FITS:
        if engines:
            worst = max(engines, key=lambda e: _ENGINE_RANK[e])
            if _ENGINE_RANK[worst] > _ENGINE_RANK.get(d.engine, 0):
                changes["engine"] = worst
        if viol:
            changes.update(
                decision=Verdict.DOES_NOT_FIT, binding=viol[0], violations=viol, closest_limit=None
            )
        elif unknown:
            c = unknown[0]
            err = c.best.error if c.best is not None else None
            changes.update(
                decision=Verdict.NOT_ASSESSABLE,
                reason=f"N-1: {c.contingency.id}: no solution ({err})",
                closest_limit=None,
            )
    else:
        changes["violations"] = [*d.violations, *viol]
    counted = changes.get("decision", d.decision) == Verdict.FITS
    if changes.get("decision") == Verdict.NOT_ASSESSABLE:
        changes["headroom_kw"] = None  # as for every answer without a load flow's verdict
    elif headroom and d.headroom_kw is not None:
        normal = d.headroom_kw
        if d.decision == Verdict.FITS and not counted:  # it fitted before N-1: its headroom
            normal = math.floor((d.headroom_kw + q.design_kw) * 10.0) / 10.0  # counted it
        hr = n1_headroom_kw(ctx, outs, q, cable, counted=counted, cap_kw=normal)
        sect["headroom_kw"] = round(hr, 1)
        changes["headroom_kw"] = min(normal, hr)
    return dataclasses.replace(d, **changes)


def _option_margin(ctx: N1Context, option: Option, bus: int, p: float, qv: float, cable) -> float:
    """The smallest emergency margin of ``option`` with ``p`` MW at ``bus`` (fast engine;
    pandapower where it cannot model the case); -inf: no solution."""
    from lvplan.decision import _extra_load, _fast_trusted, _service_cable
    from lvplan.powerflow.fast import FastEngineDiverged, FastEngineUnsupported

    prep = ctx.prepared(option)
    net = prep.network
    if net is None or prep.error is not None or prep.limits is None or prep.skips is None:
        return -math.inf
    try:
        try:
            eng = net.fast_engine()
            if eng.has_voltage_dependent_loads:
                raise FastEngineUnsupported("voltage-dependent loads")
            sc = _service_cable(net, bus, cable)
            res = eng.solve(bus, p, qv, sc, remember=False)
            row = net.bus_row(bus)
            if not _fast_trusted(eng, prep.limits, res, prep.skips, row, cable, bus, p, qv, sc):
                res = eng.exact_state(bus, p, qv, sc, res.V)  # (the fast state is not exact)
            st = res.state
        except FastEngineDiverged:  # no solution at this load
            return -math.inf
        except FastEngineUnsupported:  # a case the fast engine does not model: pandapower
            st = net.run_ac_with([_extra_load(bus, p, qv, cable)]).state
    except PowerFlowError:
        return -math.inf
    sk = prep.skips
    return prep.limits.min_margin(st, skip_bus=sk[0], skip_line=sk[1], skip_trafo=sk[2])


def _base_margin(ctx: N1Context, option: Option) -> float:
    return ctx.state(option).min_margin


def n1_headroom_kw(
    ctx: N1Context,
    outs: list[ContingencyOutcome],
    q,
    cable,
    *,
    counted: bool,
    cap_kw: float,
) -> float:
    """The largest extra design kW (same pf) at the bus, up to ``cap_kw`` (the normal-state
    headroom), that keeps every contingency passing, by the one capacity search
    (:func:`lvplan.powerflow.capacity.search`, its safety rule). Each contingency is held to
    the option that restores it best with the application (a lower bound where another option
    would do better at a larger load: never more than what fits); its margin is that option's
    smallest emergency margin. The application's own solves and the options' base states are
    the search's first points; one solve per contingency at the cap settles most buses."""
    if cap_kw <= 0 or any(o.status == NO_TIE or o.best is None for o in outs):
        return 0.0
    if any(o.fails_already for o in outs):
        return 0.0
    opts = [o.best.option for o in outs if o.best is not None]
    tan = q.design_kvar / q.design_kw if q.design_kw > 0 else 0.0
    offset = q.design_kw if counted else 0.0

    def raw(x_kw: float) -> np.ndarray:
        p = (offset + x_kw) / 1000.0
        m = np.array([_option_margin(ctx, o, q.bus, p, p * tan, cable) for o in opts], float)
        m[~np.isfinite(m) & (m < 0)] = np.nan
        return m

    app = np.array([o.best.min_margin for o in outs if o.best is not None], float)
    base = np.array([_base_margin(ctx, o) for o in opts], float)
    start, other = (app, (-q.design_kw, base)) if counted else (base, (q.design_kw, app))
    if not np.isfinite(start).all():
        return 0.0
    m0 = start[:, None]
    if float(np.min(capacity.apply_safety(m0.copy(), m0), initial=np.inf)) < 0:
        return 0.0
    at_cap = raw(cap_kw)[:, None]
    safe_at_cap = capacity.apply_safety(at_cap.copy(), m0)
    if np.isfinite(at_cap).all() and float(np.min(safe_at_cap, initial=np.inf)) >= 0:
        return cap_kw  # N-1 does not bind before the normal state does

    def evaluate(_idx: np.ndarray, xs: np.ndarray) -> np.ndarray:
        out = np.stack([raw(float(x)) for x in xs], 1)
        bad = np.isnan(out).any(axis=0)
        capacity.apply_safety(out, m0)
        out[:, bad] = np.nan
        return out

    seed = None
    x1, m1 = other
    if np.isfinite(m1).all():
        seed = (np.array([x1]), capacity.apply_safety(m1[:, None].copy(), m0))
    found = capacity.search(evaluate, m0, 1, max_kw=cap_kw, tol_rel=0.0, known=seed, secant=True)
    return float(found.kw[0])
