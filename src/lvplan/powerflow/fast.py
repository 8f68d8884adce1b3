"""The fast engine and the exact AC load flow, both on pandapower's own admittance model.

After one converged pandapower load flow of the whole network (the *base*), a new load in an LV
area is evaluated by

1. solving that area's AC equations exactly (implicit Z-bus iteration,
   ``V_L = M V_R + Z_LL · conj(S_L / V_L)``) with its root buses (the MV side of the feeding
   transformers) held at given voltages, on the rows of pandapower's ``Ybus`` — the same
   transformer, tap and cable model the reference uses (each step a product with the dense
   ``Z_LL = inv(Y_LL)`` in a small area, one sparse LU solve with ``Y_LL`` in a large one:
   :mod:`lvplan.powerflow.area_lu`);
2. moving the root voltages, and every bus outside the area, by the Newton-Raphson Jacobian's
   response to the extra power the area now draws at its roots (linear; the error is second
   order in a change that is itself a fraction of a percent), and re-solving the area;
3. computing every branch current from pandapower's ``Yf``/``Yt``.

The result is a :class:`GridState` judged by the same criteria code as the reference. Whenever a
value lies within a small band of its limit, the caller (``check``) lets an exact AC load flow
decide instead: :meth:`FastEngine.exact`, Newton-Raphson on the whole network with pandapower's
``Ybus``, injections, equations and convergence tolerance, started from the fast solution (one
to three steps with the factored Jacobian), or pandapower itself where that cannot be used.

Reservations (approved applications) move the base: :meth:`FastEngine.exact` solves the network
with them and :meth:`FastEngine.rebase` makes that solution the new base, without a pandapower
run. ``tests/test_agreement.py`` and ``tests/test_exact.py`` measure both against pandapower.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp
from pandapower.pypower.idx_brch import F_BUS, T_BUS
from pandapower.pypower.idx_bus import BASE_KV
from scipy.sparse.csgraph import connected_components

from lvplan.powerflow.ac import RUNPP_OPTIONS
from lvplan.powerflow.area_lu import AreaSolver
from lvplan.powerflow.lv_area import AreaUnsupported, branch_incidence, cut_area
from lvplan.powerflow.response import LinearResponse
from lvplan.powerflow.state import GridState, LiveMasks

SQRT3 = np.sqrt(3.0)


class FastEngineUnsupported(Exception):
    """The fast engine cannot model this case; the caller uses the full AC load flow."""


class FastEngineDiverged(FastEngineUnsupported):
    """The local solve found no solution (the load is beyond what the area can carry)."""


@dataclass(frozen=True)
class ServiceCable:
    """A series impedance between the connection bus and the customer (no shunt), in pu."""

    z_pu: complex
    i_base_ka: float  # base current at the connection bus
    max_i_ka: float


@dataclass
class _Area:
    L: np.ndarray  # internal bus indices of the area, ascending
    R: np.ndarray  # root buses (outside, adjacent)
    solver: AreaSolver  # V_L = Y_LL^-1 (I_L - Y_LR V_R): dense inverse or sparse LU by size
    S0: np.ndarray  # base net injections at L (pu)
    bnd_rows: np.ndarray  # branch rows joining R and L
    bnd_root_is_from: np.ndarray
    bnd_root_pos: np.ndarray  # position in R of each boundary row's root
    S_export0: np.ndarray  # base power exported from each root into the area (pu)
    Yf_b: sp.csr_matrix  # Yf/Yt rows of the boundary branches
    Yt_b: sp.csr_matrix
    version: int = 0  # the engine version S0 and S_export0 belong to


@dataclass(frozen=True)
class FastResult:
    state: GridState
    customer_vm_pu: float  # voltage at the customer terminal (after the service cable), pu
    cable_loading_percent: float  # NaN without a service cable
    iterations: int
    V: np.ndarray  # complex voltages of the internal model (pu)
    root_draw: np.ndarray = field(default_factory=lambda: np.zeros(0, complex))
    key: tuple[int, int] = (-1, -1)  # (internal bus, engine version): what a warm start needs


@dataclass(frozen=True)
class ExactResult:
    V: np.ndarray  # converged complex voltages of the internal model (pu)
    S_spec: np.ndarray  # the specified injections it converged to (pu, cables excluded)
    terminals: list[complex]  # customer terminal voltages, one per cabled load
    iterations: int


#: Steps the exact load flow may take (pandapower's max_iteration for the reference is 30).
EXACT_MAX_ITER = 30
#: When reservations have moved some bus this far (pu) from where the fast path's linear
#: response was taken, it is taken again at the new base (one LU; sensitivities follow on use).
#: Measured on the urban district after 1,500 random applications (147 approved): never taken
#: again, the fast engine's error grew to 5.7e-5 pu and 0.05 % (a quarter of the band); with
#: 0.04 it was taken 6 times and the error stayed below 2.7e-5 pu and 0.017 % (under a tenth).
RELINEARISE_DRIFT_PU = 0.04


def _terminal(v_bus: complex, s: complex, z: complex) -> complex:
    """Voltage at the far end of a series impedance ``z`` drawing constant power ``s``."""
    v_c = v_bus
    for _ in range(100):
        v_new = v_bus - z * np.conj(s / v_c)
        if abs(v_new - v_c) < 1e-14:
            return complex(v_new)
        v_c = v_new
    raise FastEngineDiverged("the service cable cannot carry the load")


class BusLookup:
    """pandapower's bus lookup (pandapower bus index -> internal bus), kept for the net's own
    buses: pandapower's is an array as long as the largest bus index, 8 MB for each island of
    a million-bus city. Indexed like it (an int or an array of ints); an index that is no bus
    of the net gives :data:`NO_BUS` (never a bus of the model)."""

    NO_BUS = np.int64(2**62)

    def __init__(self, lookup: np.ndarray, bus_ids: np.ndarray):
        ids = np.sort(np.asarray(bus_ids, np.int64))
        ok = (ids >= 0) & (ids < lookup.size)
        self.ids = ids[ok]
        self.values = lookup[self.ids].copy()

    def __getitem__(self, key):
        k = np.asarray(key, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.ids, k), max(self.ids.size - 1, 0))
        if self.ids.size == 0:
            out = np.full(k.shape, self.NO_BUS)
        else:
            out = np.where(self.ids[pos] == k, self.values[pos], self.NO_BUS)
        return out if out.ndim else np.int64(out)


class FastEngine:
    """Built from a pandapower net right after a converged ``runpp`` (it copies what it needs)."""

    def __init__(self, net, live: LiveMasks, *, max_cached_areas: int = 256):
        ppci = net._ppc["internal"]
        self.baseMVA = float(ppci["baseMVA"])
        self.Ybus = sp.csr_matrix(ppci["Ybus"], copy=True)
        self.Ybus.eliminate_zeros()
        self.Yf = sp.csr_matrix(ppci["Yf"], copy=True)
        self.Yt = sp.csr_matrix(ppci["Yt"], copy=True)
        self.V0 = np.asarray(ppci["V"], dtype=complex).copy()
        self.n = self.V0.size
        self.base_kv = ppci["bus"][:, BASE_KV].real.astype(float).copy()
        #: pandapower's internal branch rows (the stamps of evaluate's changes start from them)
        self.branch = np.array(ppci["branch"], copy=True)
        self.f_bus = ppci["branch"][:, F_BUS].real.astype(np.int64)
        self.t_bus = ppci["branch"][:, T_BUS].real.astype(np.int64)
        self.ref = np.asarray(ppci["ref"], dtype=np.int64)
        self.pv = np.asarray(ppci["pv"], dtype=np.int64)
        self.pq = np.asarray(ppci["pq"], dtype=np.int64)
        self.bus_lookup = BusLookup(
            np.asarray(net._pd2ppc_lookups["bus"], dtype=np.int64), net.bus.index.to_numpy()
        )
        # the net injections of the base (pu): what the exact load flow holds specified
        self.S0 = self.V0 * np.conj(self.Ybus @ self.V0)
        self.live = live
        # the engine models loads as constant power; voltage-dependent ones go to full AC
        self._vdep_lv_buses: set[int] = set()
        if len(net.load):
            cols = [
                c
                for c in (
                    "const_z_p_percent",
                    "const_i_p_percent",
                    "const_z_q_percent",
                    "const_i_q_percent",
                )
                if c in net.load.columns
            ]
            if cols:
                vdep = net.load[cols].fillna(0.0).abs().sum(axis=1).to_numpy() > 0
                vdep &= net.load.in_service.to_numpy(bool)
                buses = net.load.bus.to_numpy()[vdep]
                self._vdep_lv_buses = {int(b) for b in self.bus_lookup[buses]}
        self.has_voltage_dependent_loads = bool(self._vdep_lv_buses)
        self._pp_bus_idx = self.bus_lookup[net.bus.index.to_numpy()]
        self._pp_bus_ok = live.bus & (self._pp_bus_idx < self.n)

        lk = net._pd2ppc_lookups["branch"]
        # ppc branch rows -> ppci rows (ppci keeps only the branches pandapower solves)
        branch_is = np.asarray(ppci.get("branch_is", np.ones(len(self.f_bus), bool)), dtype=bool)
        if branch_is.size != len(self.f_bus):
            internal_row = np.where(branch_is, np.cumsum(branch_is) - 1, -1)
        else:
            internal_row = np.arange(len(self.f_bus))
        lf, lt = lk.get("line", (0, 0))
        tf, tt = lk.get("trafo", (0, 0))
        self.line_rows = internal_row[lf:lt]
        self.trafo_rows = internal_row[tf:tt]
        i_base_from = self.baseMVA / (SQRT3 * self.base_kv[self.f_bus])
        i_base_to = self.baseMVA / (SQRT3 * self.base_kv[self.t_bus])

        def at(arr: np.ndarray, rows: np.ndarray) -> np.ndarray:
            return np.where(rows >= 0, arr[np.maximum(rows, 0)], np.nan)

        if len(self.line_rows):
            line = net.line
            i_max = (line.max_i_ka * line.df * line.parallel).to_numpy(dtype=float)
            self._line_kf = at(i_base_from, self.line_rows) / i_max * 100.0
            self._line_kt = at(i_base_to, self.line_rows) / i_max * 100.0
        if len(self.trafo_rows):
            tr = net.trafo
            denom = (tr.sn_mva * tr.parallel * tr.df).to_numpy(dtype=float)
            self._trafo_kf = (
                at(i_base_from, self.trafo_rows)
                * tr.vn_hv_kv.to_numpy(float)
                * SQRT3
                / denom
                * 100.0
            )
            self._trafo_kt = (
                at(i_base_to, self.trafo_rows) * tr.vn_lv_kv.to_numpy(float) * SQRT3 / denom * 100.0
            )

        # LV islands of the internal model: buses below 1 kV joined by branches
        lv = self.base_kv < 1.0
        coo = self.Ybus.tocoo()
        keep = lv[coo.row] & lv[coo.col] & (coo.row != coo.col)
        adj = sp.csr_matrix(
            (np.ones(int(keep.sum())), (coo.row[keep], coo.col[keep])), shape=(self.n, self.n)
        )
        _, labels = connected_components(adj, directed=False)
        labels[~lv] = -1
        self.lv_label = labels
        self._areas: OrderedDict[int, _Area] = OrderedDict()
        self._max_areas = max_cached_areas
        self._sens: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        #: the branches at each bus while :meth:`prepare` cuts every area (lv_area.cut_area)
        self._incidence: tuple[np.ndarray, np.ndarray] | None = None
        # the fast path's linear response is taken again when the base drifts (rebase); the
        # exact load flow keeps its own factored Jacobian, refactored when a step gains little
        self._response = LinearResponse(self.Ybus, self.V0, self.pv, self.pq)
        self._newton = self._response
        self.tol_pu = float(RUNPP_OPTIONS["tolerance_mva"]) / self.baseMVA
        self.version = 0  # bumped by rebase(): the areas' base data follow lazily
        self.refactors = 0
        self.relinearisations = 0
        self.last_solution: tuple[tuple[int, float, float], np.ndarray] | None = None

    # -- the network-wide linear response ------------------------------------------------------
    def _factor(self):
        return self._response.factor()

    def _sensitivity(self, bus: int) -> tuple[np.ndarray, np.ndarray]:
        """dV (complex, all buses) per unit of P and of Q *drawn* at internal ``bus``."""
        hit = self._sens.get(bus)
        if hit is not None:
            self._sens.move_to_end(bus)
            return hit
        dV = self._response.drawn(np.array([bus]))
        out = (dV[:, 0].copy(), dV[:, 1].copy())
        self._sens[bus] = out
        if len(self._sens) > 4 * self._max_areas:
            self._sens.popitem(last=False)
        return out

    # -- one area -------------------------------------------------------------------------------
    def area_of(self, internal_bus: int) -> int:
        return int(self.lv_label[internal_bus])

    def _area(self, label: int) -> _Area:
        hit = self._areas.get(label)
        if hit is not None:
            self._areas.move_to_end(label)
            if hit.version != self.version:  # the base moved (reservations): follow it
                hit.S0 = self.S0[hit.L].copy()
                hit.S_export0 = self._export(hit, self.V0)
                hit.version = self.version
            return hit
        if self._vdep_lv_buses:
            raise FastEngineUnsupported("the network has voltage-dependent loads")
        try:
            cut = cut_area(
                self.Ybus,
                self.f_bus,
                self.t_bus,
                np.flatnonzero(self.lv_label == label),
                ref=self.ref,
                pv=self.pv,
                incidence=self._incidence,
            )
        except AreaUnsupported as exc:
            raise FastEngineUnsupported(str(exc)) from exc
        L, bnd = cut.L, cut.bnd_rows
        area = _Area(
            L=L,
            R=cut.R,
            solver=cut.solver,
            S0=self.S0[L].copy(),
            bnd_rows=bnd,
            bnd_root_is_from=cut.bnd_root_is_from,
            bnd_root_pos=cut.bnd_root_pos,
            S_export0=np.zeros(cut.R.size, complex),
            Yf_b=self.Yf[bnd],
            Yt_b=self.Yt[bnd],
            version=self.version,
        )
        area.S_export0 = self._export(area, self.V0)
        self._areas[label] = area
        if len(self._areas) > self._max_areas:
            self._areas.popitem(last=False)
        return area

    def _export(self, a: _Area, V: np.ndarray) -> np.ndarray:
        """Power flowing from each root bus into the area (pu), from branch currents."""
        rows = a.bnd_rows
        i_f = a.Yf_b @ V
        i_t = a.Yt_b @ V
        s = np.where(
            a.bnd_root_is_from,
            V[self.f_bus[rows]] * np.conj(i_f),
            V[self.t_bus[rows]] * np.conj(i_t),
        )
        out = np.zeros(a.R.size, complex)
        np.add.at(out, a.bnd_root_pos, s)
        return out

    def _solve_area(
        self,
        a: _Area,
        V_R: np.ndarray,
        k: int,
        s_load: complex,
        cable: ServiceCable | None,
        V_start: np.ndarray,
        tol: float = 1e-11,
        max_iter: int = 200,
    ) -> tuple[np.ndarray, complex, int]:
        """Voltages of the area with ``s_load`` (pu, consumed) at position ``k``."""
        term = a.solver.root_term(V_R)
        V = V_start.copy()
        v_cust = V[k]
        for it in range(1, max_iter + 1):
            I = np.conj(a.S0 / V)
            if cable is None:
                v_cust = V[k]
                I[k] -= np.conj(s_load / V[k])
            else:
                # customer terminal behind a series impedance: V_c = V_k - z I_c, I_c = conj(S/V_c)
                for _ in range(50):
                    i_c = np.conj(s_load / v_cust)
                    v_new = V[k] - cable.z_pu * i_c
                    if abs(v_new - v_cust) < tol:
                        v_cust = v_new
                        break
                    v_cust = v_new
                I[k] -= np.conj(s_load / v_cust)
            V_new = a.solver.step(I, term)
            err = float(np.max(np.abs(V_new - V)))
            V = V_new
            if not np.isfinite(err):
                raise FastEngineDiverged("the local solve diverged")
            if err < tol:
                return V, v_cust, it
        raise FastEngineDiverged("the local solve did not converge")

    # -- one load: its area exactly, the rest of the network by the linear response ------------
    def _locate(self, pp_bus: int) -> tuple[int, _Area, int]:
        ib = int(self.bus_lookup[pp_bus])
        label = self.area_of(ib) if ib < self.n else -1
        if label < 0:
            raise FastEngineUnsupported("the bus is not in an LV area of the model")
        a = self._area(label)
        at = int(np.searchsorted(a.L, ib))  # L ascending: no dict of positions per area
        if at == a.L.size or a.L[at] != ib:
            raise FastEngineUnsupported("the bus is a slack bus")
        return ib, a, at

    def solve(
        self,
        pp_bus: int,
        p_mw: float,
        q_mvar: float,
        cable: ServiceCable | None = None,
        *,
        remember: bool = True,
        start: FastResult | None = None,
    ) -> FastResult:
        """The state of the whole network with an extra load at pandapower bus ``pp_bus``: its
        area exactly, its roots and every other bus moved by the linear response to what the
        area draws (a fixed point of the two). Near a limit the caller lets :meth:`exact` or
        pandapower decide. ``remember``: keep the solution as the warm start of a reservation
        of this very load (see ``last_solution``). ``start``: an earlier result at the same
        bus (another load) to iterate from; the fixed point, to its tolerance, is the same."""
        ib, a, k = self._locate(pp_bus)
        s_load = complex(p_mw, q_mvar) / self.baseMVA
        sens = [self._sensitivity(int(r)) for r in a.R]
        if start is not None and start.key == (ib, self.version) and start.root_draw.size:
            V_R = start.V[a.R].copy()
            V_L = start.V[a.L].copy()
            d = start.root_draw.copy()
        else:
            V_R = self.V0[a.R].copy()
            V_L = self.V0[a.L].copy()
            d = np.zeros(a.R.size, complex)
        v_cust: complex = 0j
        iters = 0
        V = self.V0.copy()
        for _ in range(8):
            V_L, v_cust, it = self._solve_area(a, V_R, k, s_load, cable, V_L)
            iters += it
            V[a.R] = V_R
            V[a.L] = V_L
            new_d = self._export(a, V) - a.S_export0
            change = float(np.max(np.abs(new_d - d), initial=0.0))
            d = new_d
            if change < 1e-10:
                break
            dv = np.zeros(a.R.size, complex)
            for (sp_, sq_), ds in zip(sens, d, strict=True):
                dv += sp_[a.R] * ds.real + sq_[a.R] * ds.imag
            V_R = self.V0[a.R] + dv
        dV = np.zeros(self.n, complex)
        for (sp_, sq_), ds in zip(sens, d, strict=True):
            dV += sp_ * ds.real + sq_ * ds.imag
        V = self.V0 + dV
        V[a.R] = V_R
        V[a.L] = V_L
        if cable is None and remember:
            self.last_solution = ((int(pp_bus), float(p_mw), float(q_mvar)), V)
        res = self._result(V, v_cust, s_load, cable, iters)
        return replace(res, root_draw=d, key=(ib, self.version))

    def _result(
        self,
        V: np.ndarray,
        v_cust: complex,
        s_load: complex,
        cable: ServiceCable | None,
        it: int,
        engine: str = "fast",
    ) -> FastResult:
        cust_vm = float(abs(v_cust))
        if cable is None:
            cable_pct = float("nan")
        else:
            i_c = abs(s_load / v_cust)
            cable_pct = float(i_c * cable.i_base_ka / cable.max_i_ka * 100.0)
        return FastResult(self._state(V, engine), cust_vm, cable_pct, it, V)

    # -- the exact AC load flow ------------------------------------------------------------------
    def exact(
        self,
        loads: list[tuple[int, float, float, ServiceCable | None]],
        V_start: np.ndarray | None = None,
    ) -> ExactResult:
        """The full AC load flow of the network with ``loads`` ((pandapower bus, MW, Mvar,
        service cable or None), constant power) added: Newton-Raphson on pandapower's own
        ``Ybus`` and injections, converged to the reference tolerance (``RUNPP_OPTIONS``).

        It iterates with the factored Jacobian (a chord step costs one LU solve) and factors it
        afresh at the current point when a step gains less than 3x: from a warm start (the
        fast solution) it converges in one to three steps. A service cable is the series
        impedance of :class:`ServiceCable` to a customer terminal, solved at every step. Raises
        FastEngineUnsupported (voltage-dependent loads) or FastEngineDiverged (no solution).
        """
        if self.has_voltage_dependent_loads:
            raise FastEngineUnsupported("the network has voltage-dependent loads")
        S, cabled = self._injections(loads)
        V_init = (self.V0 if V_start is None else V_start).copy()
        pvpq, pq, npvpq = self._newton.pvpq, self.pq, self._newton.pvpq.size

        def mismatch(V: np.ndarray) -> tuple[np.ndarray, float, list[complex]]:
            return self._mismatch(S, cabled, V)

        V = V_init.copy()
        Va, Vm = np.angle(V), np.abs(V)
        F, nf, terminals = mismatch(V)
        restarted = False
        prev = np.inf
        for it in range(EXACT_MAX_ITER + 1):
            if nf < self.tol_pu:
                if not cabled and len(loads) == 1:
                    b, p, q, _c = loads[0]
                    self.last_solution = ((int(b), float(p), float(q)), V)
                return ExactResult(V, S, terminals, it)
            if it == EXACT_MAX_ITER:
                break
            if nf > 1e3:  # the chord steps ran away: full Newton from the start, once
                if restarted:
                    self._newton = self._response  # (not a factor of where it ran away to)
                    raise FastEngineDiverged("the AC load flow diverged")
                restarted = True
                V = V_init.copy()
                Va, Vm = np.angle(V), np.abs(V)
                self.refactor(V)
                F, nf, terminals = mismatch(V)
                prev = np.inf
                continue
            if nf > prev / 3:  # the Jacobian is too far from here: a true Newton step
                self.refactor(V)
            prev = nf
            dx = self._newton.factor().solve(F)
            Va[pvpq] -= dx[:npvpq]
            Vm[pq] -= dx[npvpq:]
            V = Vm * np.exp(1j * Va)
            F, nf, terminals = mismatch(V)
        self._newton = self._response  # (not a factor of where it stopped)
        raise FastEngineDiverged("the AC load flow did not converge")

    def _injections(
        self, loads: list[tuple[int, float, float, ServiceCable | None]]
    ) -> tuple[np.ndarray, list[tuple[int, complex, ServiceCable]]]:
        """The specified injections with ``loads`` added (pu), and the cabled loads apart."""
        S = self.S0.copy()
        cabled: list[tuple[int, complex, ServiceCable]] = []
        for b, p, q, cable in loads:
            ib = int(self.bus_lookup[b])
            if ib >= self.n:
                raise FastEngineUnsupported(f"bus {b} is not in the load flow model")
            s = complex(p, q) / self.baseMVA
            if cable is None:
                S[ib] -= s
            else:
                cabled.append((ib, s, cable))
        return S, cabled

    def _mismatch(
        self, S: np.ndarray, cabled: list[tuple[int, complex, ServiceCable]], V: np.ndarray
    ) -> tuple[np.ndarray, float, list[complex]]:
        """The load flow equations' mismatch at ``V`` (pvpq P, then pq Q), its largest
        magnitude, and the customer terminals' voltages."""
        S_it = S
        terminals: list[complex] = []
        if cabled:
            S_it = S.copy()
            for ib, s, cable in cabled:
                v_c = _terminal(V[ib], s, cable.z_pu)
                terminals.append(v_c)
                i_c = np.conj(s / v_c)  # the customer's current, through the cable
                S_it[ib] -= V[ib] * np.conj(i_c)  # what the cable draws at its bus
        mis = V * np.conj(self.Ybus @ V) - S_it
        F = np.r_[mis[self._newton.pvpq].real, mis[self.pq].imag]
        nf = float(np.max(np.abs(F), initial=0.0))
        return F, (nf if np.isfinite(nf) else np.inf), terminals

    def stepped(
        self, res: FastResult, pp_bus: int, p_mw: float, q_mvar: float, cable: ServiceCable | None
    ) -> FastResult:
        """One Newton step (the factored Jacobian) from the fast solution ``res`` of this load:
        how far it moves each judged value estimates the fast engine's error there. The fast
        engine moves everything outside the area by the base's linear response, whose error
        is second order in the move: negligible on a stiff 10 kV network (below 1e-8 pu at
        200 kW), volts behind a weak one (probe, 2026-12-07: a 10 km 10 kV line of 3+j3 ohm/km,
        or a three-winding unit's star point), where the caller lets the exact load flow
        decide (:data:`lvplan.decision.FAST_TRUST`)."""
        S, cabled = self._injections([(pp_bus, p_mw, q_mvar, cable)])
        F, nf, _t = self._mismatch(S, cabled, res.V)
        if not np.isfinite(nf):
            raise FastEngineDiverged("the fast solution has no finite mismatch")
        # the step on the base's Jacobian (the linear response the fast state came from), not
        # the exact load flow's: an exact solve that diverged leaves that factored wherever it
        # stopped (|V| up to 11 pu), and a step on it was 5,000 times smaller than the error
        # (review, 2026-12-07)
        npvpq = self._response.pvpq.size
        dx = self._response.factor().solve(F)
        Va, Vm = np.angle(res.V), np.abs(res.V)
        Va[self._response.pvpq] -= dx[:npvpq]
        Vm[self.pq] -= dx[npvpq:]
        V = Vm * np.exp(1j * Va)
        s_load = complex(p_mw, q_mvar) / self.baseMVA
        ib = int(self.bus_lookup[pp_bus])
        v_cust = V[ib] if cable is None else _terminal(V[ib], s_load, cable.z_pu)
        return self._result(V, v_cust, s_load, cable, 1)

    def exact_state(
        self, pp_bus: int, p_mw: float, q_mvar: float, cable: ServiceCable | None, V_start
    ) -> FastResult:
        """:meth:`exact` for one new load, as a FastResult (customer voltage, cable loading)."""
        res = self.exact([(pp_bus, p_mw, q_mvar, cable)], V_start)
        s_load = complex(p_mw, q_mvar) / self.baseMVA
        ib = int(self.bus_lookup[pp_bus])
        v_cust = res.terminals[0] if cable is not None else res.V[ib]
        return self._result(res.V, v_cust, s_load, cable, res.iterations, engine="newton")

    def refactor(self, V: np.ndarray) -> None:
        """Factor the exact load flow's Jacobian afresh at ``V`` (one sparse LU)."""
        old = self._newton
        self._newton = LinearResponse(
            self.Ybus, V.copy(), self.pv, self.pq, pattern=old.pattern, like=old
        )
        self._newton.factor()
        self.refactors += 1

    def prepare(self, max_areas: int | None = None) -> int:
        """Build every LV area's matrices and every root's sensitivity now (one LU solve with
        all roots), so that no decision pays for them. Returns the number of areas prepared
        (at most the cache size)."""
        labels = np.unique(self.lv_label[self.lv_label >= 0])[: max_areas or self._max_areas]
        roots: set[int] = set()
        done = 0
        # every area at once: its rows found by each bus's branches, not by a scan of all
        self._incidence = branch_incidence(self.f_bus, self.t_bus, self.n)
        try:
            for label in labels:
                try:
                    roots.update(int(r) for r in self._area(int(label)).R)
                    done += 1
                except FastEngineUnsupported:
                    continue
        finally:
            self._incidence = None
        todo = np.array(sorted(r for r in roots if r not in self._sens), dtype=np.int64)
        for chunk in np.array_split(todo, max(1, todo.size // 64)) if todo.size else []:
            dV = self._response.drawn(chunk)
            for j, r in enumerate(chunk):
                self._sens[int(r)] = (dV[:, 2 * j].copy(), dV[:, 2 * j + 1].copy())
        return done

    def rebase(self, V: np.ndarray, S_spec: np.ndarray) -> None:
        """Make the converged state ``V`` of injections ``S_spec`` (from :meth:`exact`) the
        base: loads were reserved or released. The areas' base injections and exports follow
        on next use; the Jacobian is kept until :meth:`exact` finds it too far away."""
        self.V0 = V.copy()
        self.S0 = S_spec.copy()
        self.version += 1
        self.last_solution = None
        drift = float(np.max(np.abs(self.V0 - self._response.V0), initial=0.0))
        if drift > RELINEARISE_DRIFT_PU:  # the fast path's linear response follows the base
            fresh = float(np.max(np.abs(self.V0 - self._newton.V0), initial=0.0))
            if fresh > RELINEARISE_DRIFT_PU / 4:
                self.refactor(self.V0)
            self._response = self._newton
            self._sens.clear()
            self.relinearisations += 1

    def _state(self, V: np.ndarray, engine: str = "fast") -> GridState:
        vm = np.full(self._pp_bus_idx.size, np.nan)
        ok = self._pp_bus_ok
        vm[ok] = np.abs(V[self._pp_bus_idx[ok]])
        i_f = np.abs(self.Yf @ V)
        i_t = np.abs(self.Yt @ V)
        line = np.zeros(0)
        trafo = np.zeros(0)
        if len(self.line_rows):
            r = np.maximum(self.line_rows, 0)
            line = np.maximum(i_f[r] * self._line_kf, i_t[r] * self._line_kt)
            line[~self.live.line | (self.line_rows < 0)] = np.nan
        if len(self.trafo_rows):
            r = np.maximum(self.trafo_rows, 0)
            trafo = np.maximum(i_f[r] * self._trafo_kf, i_t[r] * self._trafo_kt)
            trafo[~self.live.trafo | (self.trafo_rows < 0)] = np.nan
        return GridState(vm, line, trafo, engine=engine)

    def base_state(self) -> GridState:
        """The base: pandapower's solution, or after :meth:`rebase` the exact load flow's."""
        return self._state(self.V0, "newton" if self.version else "pandapower")
