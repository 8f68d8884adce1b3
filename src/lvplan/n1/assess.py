"""N-1 states: each contingency option's state, and its network where a new load is judged.

An option (a head section lost, a tie closed) has two levels, each made on first use, kept on
the network and brought up to the network's reservations (:meth:`Network.reserve`):

* its **state** without a new load (:meth:`N1Context.state`): the exact AC load flow of the
  switched model from the network's own base (:func:`lvplan.evaluation.switched_state`:
  the head section's stamp removed, the tie's stamp moved or its buses fused, Newton-Raphson
  to the reference tolerance; no pandapower run). This is all that ``feeder_n1``, ``inspect``,
  the map's choice of options and the "fails already" rule read. Where that model does not
  cover the switching, or finds no solution, pandapower on the switched tables decides;
* its **network** (:meth:`N1Context.prepared`), for a new load: a
  :class:`~lvplan.model.network.Network` of the switched tables (a pandapower load flow as its
  base) whose fast engine and exact AC load flow answer a new load exactly as the check's do
  on the normal network (:func:`lvplan.decision._after_state`).

The N-1 judgement covers the MV network (buses 1-35 kV, lines between them, HV/MV units)
against the profile's emergency limits (:meth:`Criteria.emergency`): the transfer capability
of the loop. LV buses, LV lines and MV/LV units are judged in the normal state by the check.
A contingency passes when one of its options has no element outside an emergency limit; one
with no restoring tie never passes.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lvplan.changes.apply import apply_changes
from lvplan.criteria import Criteria
from lvplan.criteria.judge import Judgement, Limits, Violation
from lvplan.errors import PowerFlowError
from lvplan.evaluation import SwitchingUnsupported, switched_state
from lvplan.kinds import BindingKind, ElementRef, Engine
from lvplan.model.network import Network
from lvplan.model.topology import LV_MAX_KV, MV_MAX_KV
from lvplan.n1.contingency import Contingency, N1Topology, Option, find_contingencies
from lvplan.powerflow.state import GridState

PASS, FAIL, NO_TIE, NOT_ASSESSABLE = "pass", "fail", "no_restoring_tie", "not_assessable"


@dataclass
class Prepared:
    """One option's network (for a new load), its emergency limits and MV scope."""

    option: Option
    network: Network | None
    error: str | None = None
    limits: Limits | None = None
    skips: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    version: tuple = ()


@dataclass
class OptionState:
    """One option's state before any new load, judged by the emergency limits (MV only)."""

    state: GridState | None
    before: Judgement | None
    min_margin: float  # -inf: no solution
    error: str | None
    engine: str | None  # "newton" (the switched model) or "pandapower"
    version: tuple


def mv_scope(pp_net) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row masks of the elements the N-1 judgement leaves out: LV buses, lines with an end
    outside the MV range, units whose LV side is below 1 kV (MV/LV transformers)."""
    vn = pp_net.bus.vn_kv
    mv = (vn >= LV_MAX_KV) & (vn <= MV_MAX_KV)
    skip_bus = ~mv.to_numpy(bool)
    line = pp_net.line
    skip_line = ~(
        line.from_bus.map(mv).fillna(False).to_numpy(bool)
        & line.to_bus.map(mv).fillna(False).to_numpy(bool)
    )
    skip_trafo = (pp_net.trafo.vn_lv_kv < LV_MAX_KV).to_numpy(bool)
    return skip_bus, skip_line, skip_trafo


class N1Context:
    """The N-1 machinery of one (network, criteria): contingencies and prepared options."""

    def __init__(self, network: Network, criteria: Criteria):
        self.network = network
        self.criteria = criteria
        self.emergency = criteria.emergency()
        self.topology: N1Topology = find_contingencies(
            network.pp, sections=criteria.n1_contingencies == "sections"
        )
        # switching changes no row of the tables: one set of limits and one MV scope for all
        self.limits = Limits(network.pp, self.emergency)
        self.skips = mv_scope(network.pp)
        self._prepared: dict[Option, Prepared] = {}
        self._states: dict[Option, OptionState] = {}
        self._lock = threading.RLock()

    def state(self, option: Option) -> OptionState:
        """The option's state without a new load, as the network stands (reservations
        included): the switched model's exact load flow, pandapower where it cannot be used."""
        net = self.network
        with self._lock:
            key = (net.version, id(net))
            hit = self._states.get(option)
            if hit is None or hit.version != key:
                hit = self._solve(option, key)
                self._states[option] = hit
            return hit

    def _solve(self, option: Option, key: tuple) -> OptionState:
        st: GridState | None = None
        engine = "newton"
        try:
            st = switched_state(self.network, option.changes)
        except (SwitchingUnsupported, PowerFlowError):
            # not modelled, or no solution from the base's point: pandapower decides
            prep = self.prepared(option)
            engine = "pandapower"
            if prep.network is not None and prep.error is None:
                try:
                    st = prep.network.base_state()
                except PowerFlowError as exc:
                    prep.error = str(exc)
            if st is None:
                err = f"the switched network's load flow: {prep.error}"
                return OptionState(None, None, -math.inf, err, engine, key)
        sk = self.skips
        j = self.limits.judge(st, skip_bus=sk[0], skip_line=sk[1], skip_trafo=sk[2])
        m = self.limits.min_margin(st, skip_bus=sk[0], skip_line=sk[1], skip_trafo=sk[2])
        return OptionState(st, j, m, None, engine, key)

    def prepared(self, option: Option) -> Prepared:
        """The option's network, made on first use and brought up to the network's
        reservations."""
        with self._lock:
            prep = self._prepared.get(option)
            if prep is None:
                prep = self._make(option)
                self._prepared[option] = prep
            self._follow(prep)
            return prep

    def _make(self, option: Option) -> Prepared:
        net = self.network
        changed: Any = apply_changes(net.pp, option.changes.resolve(net))[0]
        # the changed net shares the tables no change wrote with the network's own: copy them
        # all (a reference load flow adds and drops rows in place), not the whole net
        for key, val in list(changed.items()):
            if isinstance(val, pd.DataFrame) and not key.startswith("_"):
                changed[key] = val.copy()
        out = Network(
            changed,
            name=f"{net.name} ({option.name})",
            source=net.source,
            validate=False,
            owned=True,
            as_given=False,
        )
        return Prepared(option, out, limits=self.limits, skips=self.skips)

    def _follow(self, prep: Prepared) -> None:
        net, own = self.network, prep.network
        if own is None or prep.version == (net.version, id(net)):
            return
        mine, theirs = own.reserved, net.reserved
        gone = [k for k in mine if k not in theirs]
        new = {k: v for k, v in theirs.items() if k not in mine}
        if gone:
            own.release(gone)
        if new:
            own.reserve(new)
        try:
            own.base_state()
            prep.error = None
        except PowerFlowError as exc:
            prep.error = str(exc)
        prep.version = (net.version, id(net))

    def relevant(self, feeder: str | None) -> list[Contingency]:
        return self.topology.relevant(feeder)


def n1_context(network: Network, criteria: Criteria) -> N1Context:
    """The N-1 context of (network, criteria), kept on the network: keyed by the emergency
    limits' values (a profile loaded again finds the options already prepared)."""
    key = (
        "n1",
        criteria.n1_mv_min_voltage_pu,
        criteria.n1_mv_max_voltage_pu,
        criteria.n1_line_max_loading_percent,
        criteria.n1_trafo_max_loading_percent,
        criteria.n1_contingencies,
    )
    hit = network.contexts.get(key)
    if hit is None:
        hit = N1Context(network, criteria)
        network.contexts.put(key, hit)
    return hit


@dataclass
class OptionOutcome:
    option: Option
    passed: bool
    violations: list[Violation]
    closest: Violation | None
    min_margin: float  # smallest relative margin (fraction of the limit); -inf: no solution
    engine: Engine | None
    error: str | None = None


@dataclass
class ContingencyOutcome:
    contingency: Contingency
    status: str
    best: OptionOutcome | None
    fails_already: bool
    options: list[OptionOutcome] = field(default_factory=list)

    def violations(self) -> list[Violation]:
        """The contingency's violations (kind ``n1_transfer``), worst first."""
        c = self.contingency
        if self.status == NO_TIE:
            return [
                Violation(
                    BindingKind.N1_TRANSFER,
                    ElementRef("line", c.line),
                    f"no restoring tie: {len(c.cut_off)} MV buses of {c.feeder} stay cut off",
                    0.0,
                    1.0,
                    "ties",
                    contingency=c.id,
                )
            ]
        if self.status != FAIL or self.best is None:
            return []
        return [
            Violation(
                BindingKind.N1_TRANSFER,
                v.element,
                v.element_name,
                v.value,
                v.limit,
                v.unit,
                contingency=f"{c.id}, {self.best.option.name}",
            )
            for v in self.best.violations
        ]

    def to_dict(self) -> dict[str, Any]:
        b = self.best
        return {
            **self.contingency.to_dict(),
            "status": self.status,
            "option": None if b is None else b.option.name,
            "fails_already": self.fails_already,
            "worst_margin": None if b is None or b.closest is None else b.closest.to_dict(),
            "violations": [v.to_dict() for v in self.violations()],
            "engine": None if b is None else b.engine,
        }


def judge_option(
    ctx: N1Context,
    option: Option,
    bus: int | None,
    p_mw: float,
    q_mvar: float,
    cable=None,
    method: str = "auto",
) -> OptionOutcome:
    """One option with a new load at ``bus`` (None: without one), judged by the emergency
    limits on the MV network; near a limit the exact AC load flow decides."""
    from lvplan.decision import _after_state, _context

    if bus is None:
        return base_outcome(ctx, option)
    prep = ctx.prepared(option)
    if prep.network is None or prep.error is not None:
        return OptionOutcome(option, False, [], None, -math.inf, None, prep.error)
    assert prep.limits is not None and prep.skips is not None
    net = prep.network
    if not net.live.bus[net.bus_row(bus)]:
        return OptionOutcome(option, False, [], None, -math.inf, None, "bus not supplied")
    octx = _context(net, ctx.emergency)
    try:
        st, engine, _, _ = _after_state(net, octx, bus, p_mw, q_mvar, cable, method, prep.skips)
    except PowerFlowError as exc:
        return OptionOutcome(option, False, [], None, -math.inf, None, str(exc))
    j = prep.limits.judge(
        st, skip_bus=prep.skips[0], skip_line=prep.skips[1], skip_trafo=prep.skips[2]
    )
    m = prep.limits.min_margin(
        st, skip_bus=prep.skips[0], skip_line=prep.skips[1], skip_trafo=prep.skips[2]
    )
    return OptionOutcome(option, not j.violations, list(j.violations), j.min_margin, m, engine)


def base_outcome(ctx: N1Context, option: Option) -> OptionOutcome:
    """An option as it is, without a new load (:meth:`N1Context.state`)."""
    st = ctx.state(option)
    j = st.before
    if j is None:
        return OptionOutcome(option, False, [], None, -math.inf, None, st.error)
    return OptionOutcome(
        option, not j.violations, list(j.violations), j.min_margin, st.min_margin, None
    )


def judge_contingency(
    ctx: N1Context,
    c: Contingency,
    bus: int | None,
    p_mw: float,
    q_mvar: float,
    cable=None,
    method: str = "auto",
) -> ContingencyOutcome:
    """A contingency with a new load: it passes when one of its options passes.

    The rule, as for a pre-existing violation in the customer's own area: a contingency whose
    every option already breaks an emergency limit without the application (or has no
    solution) *fails already*, whatever the application; no load flow is run for it. Otherwise
    the options are tried best first (by their margin without the application) until one
    passes with it."""
    if not c.options:
        return ContingencyOutcome(c, NO_TIE, None, True)
    before = [base_outcome(ctx, o) for o in c.options]
    if not any(b.passed for b in before):
        solved = [b for b in before if b.error is None]
        if not solved:
            return ContingencyOutcome(c, NOT_ASSESSABLE, before[0], True, before)
        return ContingencyOutcome(c, FAIL, max(solved, key=lambda b: b.min_margin), True, before)
    if bus is None:
        best = max((b for b in before if b.passed), key=lambda b: b.min_margin)
        return ContingencyOutcome(c, PASS, best, False, before)
    order = sorted(before, key=lambda b: -b.min_margin)
    outs: list[OptionOutcome] = []
    for b in order:
        out = judge_option(ctx, b.option, bus, p_mw, q_mvar, cable, method)
        outs.append(out)
        if out.passed:
            return ContingencyOutcome(c, PASS, out, False, outs)
    solved = [o for o in outs if o.error is None]
    if not solved:
        return ContingencyOutcome(c, NOT_ASSESSABLE, outs[0], False, outs)
    return ContingencyOutcome(c, FAIL, max(solved, key=lambda o: o.min_margin), False, outs)


def screening(network: Network, ctx: N1Context, feeders: list[str]) -> dict[str, Any]:
    """The k/(k+1) indicator of each feeder: normal loading of its most loaded head section
    against k/(k+1) of its rating, k = the feeder's ties. An indicator, never a decision."""
    out: dict[str, Any] = {}
    try:
        base = network.base_state()
    except PowerFlowError:
        return out
    pos = network.pp.line.index
    for name in feeders:
        f = ctx.topology.feeders.get(name)
        if f is None:
            continue
        loads = [float(base.line_loading_percent[pos.get_loc(h)]) for h in f.heads]
        loading = max((x for x in loads if math.isfinite(x)), default=math.nan)
        k = len(f.ties)
        limit = 100.0 * k / (k + 1)
        out[name] = {
            "ties": k,
            "head_loading_percent": None if not math.isfinite(loading) else round(loading, 2),
            "screening_limit_percent": round(limit, 1),
            "within": bool(math.isfinite(loading) and k > 0 and loading <= limit),
        }
    return out
