"""The fast engine: an exact AC solve of one LV area on pandapower's own admittance model.

After one converged pandapower load flow of the whole network (the *base*), a new load in an LV
area is evaluated by

1. solving that area's AC equations exactly (implicit Z-bus iteration,
   ``V_L = M V_R + Z_LL · conj(S_L / V_L)``) with its root buses (the MV side of the feeding
   transformers) held at given voltages, on the rows of pandapower's ``Ybus`` — the same
   transformer, tap and cable model the reference uses;
2. moving the root voltages, and every bus outside the area, by the base-case Newton-Raphson
   Jacobian's response to the extra power the area now draws at its roots (linear; the error is
   second order in a change that is itself a fraction of a percent), and re-solving the area;
3. computing every branch current from pandapower's ``Yf``/``Yt``.

The result is a :class:`GridState` judged by the same criteria code as the reference. The caller
(``check``) lets the full pandapower load flow decide whenever a value lies within a small band of
its limit, so the approximation in step 2 never decides a close call. The agreement with
pandapower is measured in ``tests/test_fast_engine.py``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
from pandapower.pypower.idx_brch import F_BUS, T_BUS
from pandapower.pypower.idx_bus import BASE_KV
from scipy.sparse.csgraph import connected_components

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
    L: np.ndarray  # internal bus indices of the area
    R: np.ndarray  # root buses (outside, adjacent)
    pos: dict[int, int]
    Z: np.ndarray  # inv(Y_LL)
    M: np.ndarray  # -Z @ Y_LR
    S0: np.ndarray  # base net injections at L (pu)
    bnd_rows: np.ndarray  # branch rows joining R and L
    bnd_root_is_from: np.ndarray
    bnd_root_pos: np.ndarray  # position in R of each boundary row's root
    S_export0: np.ndarray  # base power exported from each root into the area (pu)
    Yf_b: sp.csr_matrix  # Yf/Yt rows of the boundary branches
    Yt_b: sp.csr_matrix


@dataclass(frozen=True)
class FastResult:
    state: GridState
    customer_vm_pu: float  # voltage at the customer terminal (after the service cable), pu
    cable_loading_percent: float  # NaN without a service cable
    iterations: int


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
        self.f_bus = ppci["branch"][:, F_BUS].real.astype(np.int64)
        self.t_bus = ppci["branch"][:, T_BUS].real.astype(np.int64)
        self.ref = np.asarray(ppci["ref"], dtype=np.int64)
        self.pv = np.asarray(ppci["pv"], dtype=np.int64)
        self.pq = np.asarray(ppci["pq"], dtype=np.int64)
        self.bus_lookup = np.asarray(net._pd2ppc_lookups["bus"], dtype=np.int64).copy()
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
        self._response = LinearResponse(self.Ybus, self.V0, self.pv, self.pq)
        self._bg_key: tuple | None = None
        self._bg: tuple | None = None

    def inherit(self, old: FastEngine) -> None:
        """Reuse what ``old`` computed for the same network with other loads: the areas'
        admittance matrices (loads are not in Ybus). The MV response is computed afresh at the
        new operating point (reusing the old one measurably widened the error). Used when
        reservations are folded into a new base."""
        same = (
            old.n == self.n
            and old.Ybus.nnz == self.Ybus.nnz
            and np.array_equal(old.bus_lookup, self.bus_lookup)
        )
        if not same:
            return
        for label, a in list(old._areas.items()):
            na = replace(a, S0=self.S0[a.L].copy())
            na.S_export0 = self._export(na, self.V0)
            self._areas[label] = na

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
            return hit
        L = np.flatnonzero(self.lv_label == label)
        if self._vdep_lv_buses:
            raise FastEngineUnsupported("the network has voltage-dependent loads")
        # a slack inside the LV area holds its voltage: it becomes one of the area's roots
        L = L[~np.isin(L, self.ref)]
        if L.size == 0:
            raise FastEngineUnsupported("the LV area is only a slack bus")
        if np.isin(L, self.pv).any():
            raise FastEngineUnsupported("a voltage-controlled bus lies inside the LV area")
        rows = self.Ybus[L]
        cols = np.unique(rows.indices)
        R = np.setdiff1d(cols, L)
        if R.size == 0:
            raise FastEngineUnsupported("the LV area has no supply")
        Y_LL = rows[:, L].toarray()
        Y_LR = rows[:, R].toarray()
        Z = np.linalg.inv(Y_LL)
        M = -Z @ Y_LR
        inL = np.zeros(self.n, bool)
        inL[L] = True
        inR = np.zeros(self.n, bool)
        inR[R] = True
        fwd = inR[self.f_bus] & inL[self.t_bus]
        bwd = inL[self.f_bus] & inR[self.t_bus]
        bnd = np.flatnonzero(fwd | bwd)
        root_is_from = fwd[bnd]
        root = np.where(root_is_from, self.f_bus[bnd], self.t_bus[bnd])
        rpos = np.searchsorted(R, root)
        area = _Area(
            L=L,
            R=R,
            pos={int(b): i for i, b in enumerate(L)},
            Z=Z,
            M=M,
            S0=self.S0[L].copy(),
            bnd_rows=bnd,
            bnd_root_is_from=root_is_from,
            bnd_root_pos=rpos,
            S_export0=np.zeros(R.size, complex),
            Yf_b=self.Yf[bnd],
            Yt_b=self.Yt[bnd],
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
        extra: tuple[tuple[int, complex], ...] = (),
    ) -> tuple[np.ndarray, complex, int]:
        """Voltages of the area with ``s_load`` (pu, consumed) at position ``k`` (``k < 0``: none)
        and the constant-power loads ``extra`` ((position, s pu), e.g. reservations)."""
        base = a.M @ V_R
        V = V_start.copy()
        v_cust = V[k]
        for it in range(1, max_iter + 1):
            I = np.conj(a.S0 / V)
            for kx, sx in extra:
                I[kx] -= np.conj(sx / V[kx])
            if k < 0:
                pass
            elif cable is None:
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
            V_new = base + a.Z @ I
            err = float(np.max(np.abs(V_new - V)))
            V = V_new
            if not np.isfinite(err):
                raise FastEngineDiverged("the local solve diverged")
            if err < tol:
                return V, v_cust, it
        raise FastEngineDiverged("the local solve did not converge")

    def _group(self, background) -> dict[int, list[tuple[int, complex]]]:
        loads: dict[int, list[tuple[int, complex]]] = {}
        for b, p, q in background:
            jb = int(self.bus_lookup[b])
            lb = self.area_of(jb) if jb < self.n else -1
            if lb < 0:
                raise FastEngineUnsupported("a background load is not in an LV area")
            area_b = self._area(lb)
            if jb not in area_b.pos:
                raise FastEngineUnsupported("a background load sits on a slack bus")
            loads.setdefault(lb, []).append((area_b.pos[jb], complex(p, q) / self.baseMVA))
        return loads

    def _joint(self, loads, offset: np.ndarray | None, new=None):
        """Areas with their loads solved exactly, their roots moved by the MV response to what
        all of them draw (a fixed point), on top of ``offset`` (a field from elsewhere)."""
        areas = {lb: self._area(lb) for lb in loads}
        sens = {lb: [self._sensitivity(int(r)) for r in ar.R] for lb, ar in areas.items()}
        base = self.V0 if offset is None else self.V0 + offset
        V_R = {lb: base[ar.R].copy() for lb, ar in areas.items()}
        V_L = {lb: self.V0[ar.L].copy() for lb, ar in areas.items()}
        d = {lb: np.zeros(ar.R.size, complex) for lb, ar in areas.items()}
        v_cust: complex = 0j
        iters = 0
        for _ in range(8):
            new_d = {}
            for lb, ar in areas.items():
                if new is not None and lb == new[0]:
                    kk, ss, cb = new[1], new[2], new[3]
                else:
                    kk, ss, cb = -1, 0j, None
                V_L[lb], vc, it = self._solve_area(
                    ar, V_R[lb], kk, ss, cb, V_L[lb], extra=tuple(loads[lb])
                )
                iters += it
                if new is not None and lb == new[0]:
                    v_cust = vc
                V = self.V0.copy()
                V[ar.R] = V_R[lb]
                V[ar.L] = V_L[lb]
                new_d[lb] = self._export(ar, V) - ar.S_export0
            change = max(float(np.max(np.abs(new_d[lb] - d[lb]), initial=0.0)) for lb in d)
            d = new_d
            if change < 1e-10:
                break
            for lb, ar in areas.items():
                dv = np.zeros(ar.R.size, complex)
                for lb2, pairs in sens.items():
                    for (sp_, sq_), ds in zip(pairs, d[lb2], strict=True):
                        dv += sp_[ar.R] * ds.real + sq_[ar.R] * ds.imag
                V_R[lb] = base[ar.R] + dv
        dV_of = {}
        for lb, pairs in sens.items():
            dv_full = np.zeros(self.n, complex)
            for (sp_, sq_), ds in zip(pairs, d[lb], strict=True):
                dv_full += sp_ * ds.real + sq_ * ds.imag
            dV_of[lb] = dv_full
        return areas, V_L, V_R, dV_of, v_cust, iters

    def _background_field(self, background):
        """The background loads solved (each loaded area exactly, the MV by the linear
        response), kept between calls: when the set grows or shrinks, only the areas whose
        loads changed are solved again, and the others follow their field change to first
        order. Returns (loads, areas, V_L, V_R, dV per area, total dV)."""
        key = tuple(background)
        if self._bg_key == key and self._bg is not None:
            return self._bg
        loads = self._group(background)
        old = self._bg
        changed = set(loads) ^ set(old[0]) if old is not None else set(loads)
        if old is not None:
            changed |= {lb for lb in loads if lb in old[0] and loads[lb] != old[0][lb]}
        if old is None or len(changed) > 8:
            areas, V_L, V_R, dV_of, _vc, _it = self._joint(loads, None)
            total = np.zeros(self.n, complex)
            for v in dV_of.values():
                total += v
        else:
            _l, areas, V_L, V_R, dV_of, total = old
            areas, V_L, V_R, dV_of = dict(areas), dict(V_L), dict(V_R), dict(dV_of)
            total = total.copy()
            for lb in sorted(changed):
                prev = dV_of.pop(lb, None)
                offset = total if prev is None else total - prev
                areas.pop(lb, None)
                V_L.pop(lb, None)
                V_R.pop(lb, None)
                if lb in loads:
                    ar1, vl1, vr1, dv1, _vc, _it = self._joint({lb: loads[lb]}, offset)
                    now_dv = dv1[lb]
                else:
                    ar1, vl1, vr1, now_dv = {}, {}, {}, np.zeros(self.n, complex)
                delta = now_dv - (0 if prev is None else prev)
                total += delta
                for lb2, ar in areas.items():  # the others follow to first order
                    V_R[lb2] = V_R[lb2] + delta[ar.R]
                    V_L[lb2] = V_L[lb2] + ar.M @ delta[ar.R]
                if lb in loads:
                    areas[lb], V_L[lb], V_R[lb], dV_of[lb] = ar1[lb], vl1[lb], vr1[lb], now_dv
        self._bg = (loads, areas, V_L, V_R, dV_of, total)
        self._bg_key = key
        return self._bg

    def solve(
        self,
        pp_bus: int,
        p_mw: float,
        q_mvar: float,
        cable: ServiceCable | None = None,
        background: tuple[tuple[int, float, float], ...] = (),
    ) -> FastResult:
        """The state of the whole network with an extra load at pandapower bus ``pp_bus``.

        ``background`` holds further loads (pandapower bus, MW, Mvar), e.g. reservations not yet
        in the base. They are solved once per set (each LV area exactly, the MV through the
        linear response) and kept; the new load's area is then solved exactly with its own
        background loads, on top of the field of the others, and the other loaded areas follow
        the new load's MV response to first order. Near a limit the caller's full AC decides.
        """
        ib = int(self.bus_lookup[pp_bus])
        label = self.area_of(ib) if ib < self.n else -1
        if label < 0:
            raise FastEngineUnsupported("the bus is not in an LV area of the model")
        a = self._area(label)
        if ib not in a.pos:
            raise FastEngineUnsupported("the bus is a slack bus")
        k = a.pos[ib]
        s_load = complex(p_mw, q_mvar) / self.baseMVA
        offset = None
        bg_areas: dict = {}
        own: list[tuple[int, complex]] = []
        if background:
            loads, bg_areas, bV_L, bV_R, bdV, total = self._background_field(background)
            own = loads.get(label, [])
            offset = total - bdV[label] if label in bdV else total
        _areas, V_L, V_R, dV_of, v_cust, iters = self._joint(
            {label: own}, offset, new=(label, k, s_load, cable)
        )
        dV_new = dV_of[label]
        V = self.V0 + dV_new if offset is None else self.V0 + offset + dV_new
        # the change of the new load's area's draw, against the background solution
        change = dV_new - bdV[label] if background and label in bdV else dV_new
        for lb, ar in bg_areas.items():
            if lb == label:
                continue
            V[ar.R] = bV_R[lb] + change[ar.R]
            V[ar.L] = bV_L[lb] + ar.M @ change[ar.R]
        V[a.R] = V_R[label]
        V[a.L] = V_L[label]
        state = self._state(V)
        cust_vm = float(abs(v_cust))
        if cable is None:
            cable_pct = float("nan")
        else:
            i_c = abs(s_load / v_cust)
            cable_pct = float(i_c * cable.i_base_ka / cable.max_i_ka * 100.0)
        return FastResult(state, cust_vm, cable_pct, iters)

    def _state(self, V: np.ndarray) -> GridState:
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
        return GridState(vm, line, trafo, engine="fast")

    def base_state(self) -> GridState:
        return self._state(self.V0)
