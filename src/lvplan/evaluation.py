"""``lvplan.evaluate(network, changes)``: the whole network's exact AC state with changes made.

The base (the network's converged load flow, reservations included) is never touched. The
changed model is the base's ``Ybus`` plus the stamps of the branches the changes add, minus the
stamps of those they replace or open (:mod:`lvplan.powerflow.branch`), with new rows for new
buses; new loads change the specified injections. Newton-Raphson on that model, started from the
base voltages (new buses from their feeding bus through the unit's no-load ratio), converges to
the reference tolerance. Where the structure of ``Ybus`` is unchanged (replacements, parallel
units and cables) the base's Jacobian pattern and KLU symbolic analysis are reused; new buses
or branches between new pairs of buses get a pattern of their own.

Closing a normally-open switch is modelled too (:func:`switched_state`, what N-1 solves its
contingency options with): a line switch reconnects its line's open end (the stamp of the line
moves from pandapower's auxiliary bus to the switch's bus, the auxiliary bus leaves the model),
a bus-bus switch fuses its two buses (rows and columns summed, one bus leaves the unknowns).
Other switching (opening a switch, a switch pandapower does not model as open) and networks the
exact load flow does not model (voltage-dependent loads) are solved by pandapower on the
changed tables (``engine = "pandapower"``); ``evaluate`` still sends every switching change
there, and every new tie (its open switch leaves the cable's far end on an auxiliary bus of
pandapower's model). A moved transformer is a modified unit (its HV side on a new bus) and a
new cable: the stamps above.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from lvplan.changes.apply import ChangeMap, Plan, materialise, plan_changes
from lvplan.changes.spec import Changes
from lvplan.criteria import Criteria
from lvplan.criteria.judge import Judgement, Limits, Violation
from lvplan.errors import PowerFlowError
from lvplan.model.network import Network, as_network
from lvplan.powerflow.branch import Stamp, line_row, stamp, trafo_key, trafo_row
from lvplan.powerflow.compensation import Compensation
from lvplan.powerflow.fast import SQRT3, FastEngine
from lvplan.powerflow.jacobian import JacobianPattern
from lvplan.powerflow.newton import newton
from lvplan.powerflow.state import GridState


@dataclass(frozen=True)
class Evaluation:
    """The network with ``changes``: exact state, limits and verdicts. Arrays follow the
    changed tables' row order (new elements last, numbered as pandapower numbers them); the
    tables themselves (``net``) are built on first use."""

    network: str
    changes: Changes
    state: GridState = field(repr=False)
    limits: Limits = field(repr=False)
    judgement: Judgement
    iterations: int
    plan: Plan = field(repr=False)
    base_net: Any = field(repr=False)

    @property
    def change_map(self) -> ChangeMap:
        return self.plan.map

    @cached_property
    def net(self):
        """The changed pandapower net (pandapower's ``create_*``; the base is not touched)."""
        return materialise(self.base_net, self.plan)

    @property
    def violations(self) -> list[Violation]:
        return self.judgement.violations

    @property
    def ok(self) -> bool:
        return not self.judgement.violations

    def margins(self) -> np.ndarray:
        """Every judged element's margin (see :meth:`Limits.margins`)."""
        return self.limits.margins(self.state)

    def to_dict(self) -> dict[str, Any]:
        st = self.state
        lv = self.limits.lv
        vm = st.vm_pu
        with np.errstate(invalid="ignore"):
            lv_v = vm[lv] * self.limits.vn_kv[lv] * 1000.0
        return {
            "network": self.network,
            "changes": self.changes.to_dict()["changes"],
            "engine": st.engine,
            "iterations": self.iterations,
            "violations": [v.to_dict() for v in self.violations],
            "closest_limit": None
            if self.judgement.min_margin is None
            else self.judgement.min_margin.to_dict(),
            "min_lv_voltage_v": _r(np.nanmin(lv_v) if np.isfinite(lv_v).any() else None),
            "max_line_loading_percent": _r(_nanmax(st.line_loading_percent)),
            "max_trafo_loading_percent": _r(_nanmax(st.trafo_loading_percent)),
            "new": {
                "buses": self.change_map.new_buses,
                "lines": self.change_map.new_lines,
                "trafos": self.change_map.new_trafos,
                "loads": self.change_map.new_loads,
            },
        }


#: Above this many branch stamps the low-rank update (dense in the number of buses the changes
#: touch) costs more than Newton-Raphson on the changed admittance matrix: a plan of 400
#: connections on a 15,700-bus city took 18 s and 2.5 GB by compensation, 0.4 s by Newton.
COMPENSATION_MAX_STAMPS = 200


def _nanmax(a: np.ndarray) -> float | None:
    return float(np.nanmax(a)) if a.size and np.isfinite(a).any() else None


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def evaluate(
    network: Network, changes: Changes, criteria: Criteria | str | None = None
) -> Evaluation:
    """The exact AC state of ``network`` with ``changes``, every violation and every margin.
    Raises InputError for a change that does not fit the network, PowerFlowError when the
    changed network has no solution."""
    from lvplan.decision import resolve_criteria

    network = as_network(network)
    crit = resolve_criteria(criteria)
    resolved = changes.resolve(network)
    plan = plan_changes(network.pp, resolved)
    eng = network.fast_engine()
    if (
        plan.map.switches
        or plan.map.new_switches  # a new tie: its open end is pandapower's auxiliary bus
        or eng.has_voltage_dependent_loads
        or network.reserved
    ):
        state, iters = _by_pandapower(network, materialise(network.pp, plan)), 0
    else:
        state, iters = _by_stamps(eng, network, _Rows(network.pp, plan))
    from lvplan.decision import reservation_floors

    # (a reservation behind a service cable puts a floor on its bus, as in every decision)
    limits = (
        _context_limits(network, crit)
        .floored(reservation_floors(network))
        .extended(
            [(b, float(kw["vn_kv"]), str(kw.get("name") or "")) for b, kw in plan.buses.items()],
            [(i, str(kw.get("name") or "")) for i, kw in plan.lines.items()],
            [(i, str(kw.get("name") or "")) for i, kw in plan.trafos.items()],
        )
    )
    return Evaluation(
        network.name, resolved, state, limits, limits.judge(state), iters, plan, network.pp
    )


def switched_state(network: Network, changes: Changes) -> GridState:
    """The exact AC state (``engine = "newton"``) of ``network`` with ``changes`` whose
    switching closes normally-open switches (an N-1 option: a section opened, a tie closed),
    from the network's current base (reservations included) by the stamps and Newton-Raphson of
    :func:`evaluate`; no pandapower run. Raises :class:`SwitchingUnsupported` for a case this
    model does not cover (the caller asks pandapower), PowerFlowError when Newton-Raphson finds
    no solution."""
    eng = network.fast_engine()
    if eng.has_voltage_dependent_loads:
        raise SwitchingUnsupported("voltage-dependent loads")
    plan = plan_changes(network.pp, changes.resolve(network))
    if plan.map.new_buses or plan.map.new_trafos or plan.map.new_switches:
        raise SwitchingUnsupported("new buses, units or switches with switching")
    state, _ = _by_stamps(eng, network, _Rows(network.pp, plan))
    return state


class SwitchingUnsupported(Exception):
    """A switching change the stamps model does not cover: pandapower decides."""


def _context_limits(network: Network, crit: Criteria) -> Limits:
    """The base's limits for ``crit``, kept on the network."""
    hit = network.contexts.get(("limits", crit))
    if hit is None:
        hit = Limits(network.pp, crit)
        network.contexts.put(("limits", crit), hit)
    return hit


class _Rows:
    """The changed network's rows without building its tables: a base row with a plan's
    updates, or a plan's new row with pandapower's defaults."""

    LINE_DEFAULTS: ClassVar[dict] = {"parallel": 1, "df": 1.0, "g_us_per_km": 0.0}
    TRAFO_DEFAULTS: ClassVar[dict] = {"parallel": 1, "df": 1.0}

    def __init__(self, net, plan: Plan):
        self.net, self.plan = net, plan
        self.f_hz = float(net.f_hz)

    def line(self, i: int) -> dict:
        if i in self.plan.lines:
            return {**self.LINE_DEFAULTS, **self.plan.lines[i]}
        return {**self.net.line.loc[i].to_dict(), **self.plan.line_updates.get(i, {})}

    def trafo(self, i: int) -> dict:
        if i in self.plan.trafos:
            return {**self.TRAFO_DEFAULTS, **self.plan.trafos[i]}
        return {**self.net.trafo.loc[i].to_dict(), **self.plan.trafo_updates.get(i, {})}

    def vn_kv(self, bus: int) -> float:
        if bus in self.plan.buses:
            return float(self.plan.buses[bus]["vn_kv"])
        return float(self.net.bus.at[bus, "vn_kv"])

    def line_pos(self, i: int) -> int:
        if i in self.plan.lines:
            return len(self.net.line) + self.plan.map.new_lines.index(i)
        return int(self.net.line.index.get_loc(i))

    def trafo_pos(self, i: int) -> int:
        if i in self.plan.trafos:
            return len(self.net.trafo) + self.plan.map.new_trafos.index(i)
        return int(self.net.trafo.index.get_loc(i))


# -- the incremental exact load flow -------------------------------------------------------------
class _Model:
    """The changed admittance model under construction."""

    def __init__(self, eng: FastEngine, rows: _Rows):
        self.eng = eng
        self.rows = rows
        cmap = rows.plan.map
        self.base_n = eng.n
        self.new_index = {b: eng.n + k for k, b in enumerate(cmap.new_buses)}
        self.n = eng.n + len(cmap.new_buses)
        self.delta: list[Stamp] = []
        self.negative: list[Stamp] = []
        #: branch rows whose currents the base Yf/Yt no longer give: ppci row -> stamp or None
        self.replaced: dict[int, Stamp | None] = {}
        self.baseMVA = eng.baseMVA
        self.f_hz = rows.f_hz
        #: closed switches: auxiliary buses left out, fused bus -> the bus it joins, tie lines
        self.dropped: set[int] = set()
        self.fused: dict[int, int] = {}
        self.closed_lines: list[int] = []

    def root(self, i: int) -> int:
        while i in self.fused:
            i = self.fused[i]
        return i

    def internal(self, pp_bus: int) -> int:
        if pp_bus in self.new_index:
            return self.new_index[pp_bus]
        return int(self.eng.bus_lookup[pp_bus])

    def base_kv(self, pp_bus: int) -> float:
        return self.rows.vn_kv(pp_bus)

    def old_stamp(self, row: int) -> Stamp:
        e = self.eng
        return stamp(e.branch[row], int(e.f_bus[row]), int(e.t_bus[row]))

    def line_stamp(self, line: int, f: int | None = None, t: int | None = None) -> Stamp:
        r = self.rows.line(line)
        fb, tb = int(r["from_bus"]), int(r["to_bus"])
        row = line_row(
            r_ohm_per_km=float(r["r_ohm_per_km"]),
            x_ohm_per_km=float(r["x_ohm_per_km"]),
            c_nf_per_km=float(r["c_nf_per_km"]),
            g_us_per_km=float(r.get("g_us_per_km", 0.0) or 0.0),
            length_km=float(r["length_km"]),
            parallel=float(r["parallel"]),
            base_kv=self.base_kv(fb),
            baseMVA=self.baseMVA,
            f_hz=self.f_hz,
        )
        return stamp(
            row, self.internal(fb) if f is None else f, self.internal(tb) if t is None else t
        )

    def trafo_stamp(self, trafo: int) -> tuple[Stamp, complex]:
        r = self.rows.trafo(trafo)
        hv, lv = int(r["hv_bus"]), int(r["lv_bus"])
        key = trafo_key(r, self.base_kv(hv), self.base_kv(lv))
        row, ratio = trafo_row(key, self.baseMVA, self.f_hz)
        return stamp(row, self.internal(hv), self.internal(lv)), ratio


def _by_stamps(eng: FastEngine, network: Network, rows: _Rows) -> tuple[GridState, int]:
    m = _Model(eng, rows)
    cmap = rows.plan.map
    for ln in dict.fromkeys(cmap.modified_lines + cmap.opened_lines):
        row = int(eng.line_rows[rows.line_pos(ln)])
        if row < 0:
            raise PowerFlowError(f"line {ln} is not in the load flow model")
        m.negative.append(m.old_stamp(row))
        if ln in cmap.modified_lines and ln not in cmap.opened_lines:
            s = m.line_stamp(ln, int(eng.f_bus[row]), int(eng.t_bus[row]))
            m.delta.append(s)
            m.replaced[row] = s
        else:
            m.replaced[row] = None
    V_init_new: dict[int, complex] = {}
    for t in cmap.modified_trafos:
        row = int(eng.trafo_rows[rows.trafo_pos(t)])
        m.negative.append(m.old_stamp(row))
        s, _ratio = m.trafo_stamp(t)
        m.delta.append(s)
        m.replaced[row] = s
    _close_switches(m, network, rows)
    new_lines = {ln: m.line_stamp(ln) for ln in cmap.new_lines}
    new_trafos = {}
    for t in cmap.new_trafos:
        s, ratio = m.trafo_stamp(t)
        new_trafos[t] = s
        V_init_new[s.t] = ratio  # the LV side of a new unit: hv voltage x no-load ratio
    m.delta += list(new_lines.values()) + list(new_trafos.values())

    n = m.n
    V0 = np.r_[eng.V0, np.ones(n - m.base_n, complex)]
    # new buses: from the bus that feeds them, outwards from the base (a tie line, its unit,
    # then the cables from the new LV board), so each starts near its magnitude and angle
    known = np.zeros(n, bool)
    known[: m.base_n] = True
    grew = True
    while grew:
        grew = False
        for s in new_lines.values():
            if known[s.f] != known[s.t]:
                a, b = (s.f, s.t) if known[s.f] else (s.t, s.f)
                V0[b], known[b], grew = V0[a], True, True
        for s in new_trafos.values():
            if known[s.f] and not known[s.t]:
                V0[s.t], known[s.t], grew = V0[s.f] * V_init_new[s.t], True, True
    S = np.r_[eng.S0, np.zeros(n - m.base_n, complex)]
    for ld in cmap.new_loads:
        kw = rows.plan.loads[ld]
        S[m.internal(int(kw["bus"]))] -= complex(float(kw["p_mw"]), float(kw["q_mvar"])) / m.baseMVA
    pq = np.r_[eng.pq, np.arange(m.base_n, n)].astype(np.int64)
    pv = eng.pv
    if m.fused or m.dropped:
        gone = np.array(sorted([*m.fused, *m.dropped]), np.int64)
        pq, pv = np.setdiff1d(pq, gone), np.setdiff1d(pv, gone)
        for drop, keep in m.fused.items():
            S[keep] += S[drop]
            S[drop] = 0.0
        Ybus = _fuse(_assemble(eng.Ybus, n, m.delta, m.negative), m.fused)
        V0[gone] = 1.0  # left out of the equations (empty rows and columns)
        V, iters = newton(Ybus, S, V0, pv, pq, eng.tol_pu, pattern=JacobianPattern(Ybus, pv, pq))
        for drop, keep in m.fused.items():
            V[drop] = V[keep]
        return _state(m, V, new_lines, new_trafos), iters
    try:  # the base's factor, updated for the few buses the changes touch
        if len(m.delta) + len(m.negative) > COMPENSATION_MAX_STAMPS:
            raise PowerFlowError("too many changes for a low-rank update")
        comp = Compensation(
            eng.Ybus,
            eng._response.factor(),
            eng._response.V0,
            eng.pv,
            eng.pq,
            V0[m.base_n :],
            m.delta,
            m.negative,
        )
        V, iters = comp.run(S, V0, eng.tol_pu)
    except PowerFlowError:  # a change too large for chord steps: Newton-Raphson on Y'
        Ybus = _assemble(eng.Ybus, n, m.delta, m.negative)
        same = n == m.base_n and _same_structure(Ybus, eng.Ybus)
        pattern = (
            eng._response.pattern.with_ybus(Ybus) if same else JacobianPattern(Ybus, eng.pv, pq)
        )
        like = eng._response.factor() if same else None
        V, iters = newton(Ybus, S, V0, eng.pv, pq, eng.tol_pu, pattern=pattern, like=like)
    return _state(m, V, new_lines, new_trafos), iters


def _close_switches(m: _Model, network: Network, rows: _Rows) -> None:
    """The stamps of the switches the plan closes (see the module docstring); anything else
    raises :class:`SwitchingUnsupported`."""
    eng, plan = m.eng, rows.plan
    if not plan.switch_updates:
        return
    sw = network.pp.switch
    pp_internal = set(eng.bus_lookup[network.pp.bus.index.to_numpy()].tolist())
    live = network.live
    for s_id, closed in plan.switch_updates.items():
        if bool(sw.at[s_id, "closed"]) == closed:
            continue
        if not closed:
            raise SwitchingUnsupported(f"switch {s_id} opened")
        et, bus = str(sw.at[s_id, "et"]), int(sw.at[s_id, "bus"])
        if not live.bus[network.bus_row(bus)]:
            raise SwitchingUnsupported(f"switch {s_id}: bus {bus} not energised")
        ib = int(eng.bus_lookup[bus])
        if et == "l":
            ln = int(sw.at[s_id, "element"])
            pos = rows.line_pos(ln)
            row = int(eng.line_rows[pos])
            if row < 0 or row in m.replaced or ln in plan.map.opened_lines:
                raise SwitchingUnsupported(f"switch {s_id}: line {ln} not in the model")
            f, t = int(eng.f_bus[row]), int(eng.t_bus[row])
            if (f in pp_internal) == (t in pp_internal):  # exactly one auxiliary end
                raise SwitchingUnsupported(f"switch {s_id}: no open end of line {ln}")
            aux = f if t in pp_internal else t
            f2, t2 = (ib, t) if aux == f else (f, ib)
            new = stamp(eng.branch[row], f2, t2)
            m.negative.append(m.old_stamp(row))
            m.delta.append(new)
            m.replaced[row] = new
            m.dropped.add(aux)
            m.closed_lines.append(ln)
        elif et == "b":
            other = int(sw.at[s_id, "element"])
            if not live.bus[network.bus_row(other)]:
                raise SwitchingUnsupported(f"switch {s_id}: bus {other} not energised")
            a, b = m.root(ib), m.root(int(eng.bus_lookup[other]))
            if a == b:
                continue
            pq = set(eng.pq.tolist())
            if b not in pq:
                a, b = b, a
            if b not in pq:
                raise SwitchingUnsupported(f"switch {s_id} joins two voltage-set buses")
            m.fused[b] = a
        else:
            raise SwitchingUnsupported(f"switch {s_id}: element type {et!r}")
    for drop in list(m.fused):
        m.fused[drop] = m.root(drop)


def _fuse(Y: sp.csr_matrix, fused: dict[int, int]) -> sp.csr_matrix:
    """``Y`` with each fused bus's row and column added to the bus it joins (left empty)."""
    if not fused:
        return Y
    to = np.arange(Y.shape[0])
    for drop, keep in fused.items():
        to[drop] = keep
    c = Y.tocoo()
    out = sp.csr_matrix((c.data, (to[c.row], to[c.col])), shape=Y.shape)
    out.sum_duplicates()
    out.sort_indices()
    return out


def _assemble(Y0: sp.csr_matrix, n: int, plus: list[Stamp], minus: list[Stamp]) -> sp.csr_matrix:
    rows, cols, vals = [], [], []
    for sign, group in ((1.0, plus), (-1.0, minus)):
        for s in group:
            idx = (s.f, s.t)
            for a in range(2):
                for b in range(2):
                    rows.append(idx[a])
                    cols.append(idx[b])
                    vals.append(sign * s.Y[a, b])
    Y = Y0
    if Y0.shape[0] != n:  # new buses: empty rows and columns, filled by their branches
        Y = sp.csr_matrix((Y0.data, Y0.indices, np.r_[Y0.indptr, [Y0.nnz] * (n - Y0.shape[0])]))
        Y.resize((n, n))
    D = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
    out = (Y + D).tocsr()
    out.sort_indices()
    return out


def _same_structure(a: sp.csr_matrix, b: sp.csr_matrix) -> bool:
    return (
        a.shape == b.shape
        and a.nnz == b.nnz
        and np.array_equal(a.indptr, b.indptr)
        and np.array_equal(a.indices, b.indices)
    )


def _state(m: _Model, V, new_lines, new_trafos) -> GridState:
    eng, rows = m.eng, m.rows
    cmap = rows.plan.map
    base = eng._state(V[: m.base_n], "newton")
    vm = np.r_[base.vm_pu, np.abs([V[m.new_index[b]] for b in cmap.new_buses])]
    new_kv = [rows.vn_kv(b) for b in cmap.new_buses]
    i_base = eng.baseMVA / (SQRT3 * np.r_[eng.base_kv, new_kv])

    def current(s: Stamp) -> tuple[float, float]:
        v = np.array([V[s.f], V[s.t]])
        return abs(complex(s.yf @ v)) * i_base[s.f], abs(complex(s.yt @ v)) * i_base[s.t]

    line = np.r_[base.line_loading_percent, np.full(len(cmap.new_lines), np.nan)]
    for ln in cmap.modified_lines + cmap.opened_lines + m.closed_lines + cmap.new_lines:
        k = rows.line_pos(ln)
        if ln in cmap.opened_lines:
            line[k] = np.nan
            continue
        s = new_lines.get(ln) or m.replaced[int(eng.line_rows[k])]
        assert s is not None
        i_f, i_t = current(s)
        r = rows.line(ln)
        i_max = float(r["max_i_ka"]) * float(r["df"]) * float(r["parallel"])
        line[k] = max(i_f, i_t) / i_max * 100.0
    trafo = np.r_[base.trafo_loading_percent, np.full(len(cmap.new_trafos), np.nan)]
    for t in cmap.modified_trafos + cmap.new_trafos:
        k = rows.trafo_pos(t)
        s = new_trafos[t] if t in new_trafos else m.replaced[int(eng.trafo_rows[k])]
        assert s is not None
        i_f, i_t = current(s)
        r = rows.trafo(t)
        sn = float(r["sn_mva"]) * float(r["parallel"]) * float(r["df"])
        hv = i_f * float(r["vn_hv_kv"]) * SQRT3 / sn
        lv = i_t * float(r["vn_lv_kv"]) * SQRT3 / sn
        trafo[k] = max(hv, lv) * 100.0
    return GridState(vm, line, trafo, engine="newton")


def _by_pandapower(network: Network, net) -> GridState:
    """pandapower on the changed tables (the network's reserved loads counted)."""
    import copy

    changed = Network(
        copy.deepcopy(net),
        name=network.name,
        source="",
        validate=False,
        owned=True,
        as_given=False,
    )
    if network.reserved:
        changed.reserve(network.reserved)
    return changed.base_state()
