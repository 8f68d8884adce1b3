"""Judge a GridState against Criteria: violations, margins, and the near-limit test."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from lvplan.criteria import Criteria
from lvplan.kinds import BindingKind, ElementRef
from lvplan.model.topology import LV_MAX_KV, MV_MAX_KV
from lvplan.powerflow.state import GridState

KINDS = tuple(k for k in BindingKind if k not in (BindingKind.CAP, BindingKind.N1_TRANSFER))


@dataclass(frozen=True)
class Violation:
    """One element outside one limit. ``kind`` is the limit's kind (see KINDS)."""

    kind: BindingKind
    element: ElementRef  # "bus 12", "line 40", "trafo 3", "service cable", "customer terminal"
    element_name: str
    value: float
    limit: float
    unit: str  # "V", "pu" or "%"
    #: for kind ``n1_transfer``: the contingency (the section lost, the tie closed)
    contingency: str | None = None

    @property
    def severity(self) -> float:
        """Relative exceedance (value/limit - 1 for maxima, 1 - value/limit for minima)."""
        if self.limit == 0:
            return float("inf")
        r = self.value / self.limit
        return abs(r - 1.0)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "kind": self.kind,
            "element": self.element,
            "element_name": self.element_name,
            "value": round(self.value, 4),
            "limit": round(self.limit, 4),
            "unit": self.unit,
        }
        if self.contingency is not None:
            out["contingency"] = self.contingency
        return out


@dataclass(frozen=True)
class Judgement:
    violations: list[Violation]
    near_limit: bool  # some checked value lies within the band of its limit
    min_margin: Violation | None  # the checked element closest to its limit (value, limit)


def voltage_band(criteria: Criteria, vn_kv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The profile's (min, max) voltage, pu, of buses of these nominal voltages: LV buses from
    the profile's volts, MV buses in pu, nan (not judged) above MV."""
    vn = np.asarray(vn_kv, float)
    lv = vn < LV_MAX_KV
    mv = (vn >= LV_MAX_KV) & (vn <= MV_MAX_KV)
    vmin, vmax = np.full(vn.size, np.nan), np.full(vn.size, np.nan)
    vmin[lv] = criteria.lv_min_voltage_v / (vn[lv] * 1000.0)
    vmax[lv] = criteria.lv_max_voltage_v / (vn[lv] * 1000.0)
    vmin[mv], vmax[mv] = criteria.mv_min_voltage_pu, criteria.mv_max_voltage_pu
    return vmin, vmax


class Limits:
    """The per-element limits of ``criteria`` on one network, as arrays in table row order."""

    def __init__(self, pp_net, criteria: Criteria):
        self.criteria = criteria
        vn = pp_net.bus.vn_kv.to_numpy(float)
        self.vn_kv = vn
        self.lv = vn < LV_MAX_KV
        self.vmin, self.vmax = voltage_band(criteria, vn)
        self.bus_ids = pp_net.bus.index.to_numpy()
        self.line_ids = pp_net.line.index.to_numpy()
        self.trafo_ids = pp_net.trafo.index.to_numpy()
        self._tables = (pp_net.bus, pp_net.line, pp_net.trafo)
        self._extra: tuple[tuple[str, ...], ...] = ((), (), ())
        #: bus rows whose name in a violation says why their limit is not the profile's
        self._renamed: dict[int, str] = {}
        self.line_max = criteria.line_max_loading_percent
        self.trafo_max = criteria.trafo_max_loading_percent

    def extended(
        self,
        buses: list[tuple[int, float, str]],
        lines: list[tuple[int, str]],
        trafos: list[tuple[int, str]],
    ) -> Limits:
        """These limits for the same network with new rows appended (id, vn_kv, name) for
        buses, (id, name) for lines and transformers: a network with changes, without building
        its tables."""
        crit = self.criteria
        out = object.__new__(Limits)
        out.__dict__.update(self.__dict__)
        for key in ("bus_names", "line_names", "trafo_names"):
            out.__dict__.pop(key, None)
        vn = np.array([b[1] for b in buses], float)
        lv = vn < LV_MAX_KV
        vmin, vmax = voltage_band(crit, vn)
        out.vn_kv = np.r_[self.vn_kv, vn]
        out.lv = np.r_[self.lv, lv]
        out.vmin = np.r_[self.vmin, vmin]
        out.vmax = np.r_[self.vmax, vmax]
        out.bus_ids = np.r_[self.bus_ids, [b[0] for b in buses]].astype(self.bus_ids.dtype)
        out.line_ids = np.r_[self.line_ids, [x[0] for x in lines]].astype(self.line_ids.dtype)
        out.trafo_ids = np.r_[self.trafo_ids, [x[0] for x in trafos]].astype(self.trafo_ids.dtype)
        out._extra = (
            tuple(b[2] for b in buses),
            tuple(x[1] for x in lines),
            tuple(x[1] for x in trafos),
        )
        if "_unfloored" in self.__dict__:  # (the new rows have no floors)
            out.__dict__["_unfloored"] = self.profile.extended(buses, lines, trafos)
        return out

    def floored(self, floors: dict[int, tuple[float, str]]) -> Limits:
        """These limits with the minimum voltage of some buses raised: ``floors`` maps a bus
        row to (least voltage, pu; why, as the bus's name in a violation). A reserved customer
        behind a service cable puts one at its bus (:func:`lvplan.decision.reserved_load`)."""
        if not floors:
            return self
        out = object.__new__(Limits)
        out.__dict__.update(self.__dict__)
        out.__dict__.pop("bus_names", None)
        out.vmin = self.vmin.copy()
        names = dict(self._renamed)
        for row, (vmin_pu, why) in floors.items():
            if np.isfinite(out.vmin[row]) and vmin_pu <= out.vmin[row]:
                continue
            if not np.isfinite(out.vmax[row]):  # a bus with no limit of its own
                out.vmax = out.vmax.copy()
                out.vmax[row] = np.inf
            out.vmin[row] = vmin_pu
            names[row] = why
        out._renamed = names
        out.__dict__["_unfloored"] = self.profile
        return out

    @property
    def profile(self) -> Limits:
        """These limits without the floors of :meth:`floored`: the profile's band, by which a
        new customer's own service-cable terminal is judged (a reserved neighbour's floor is
        a limit of the bus, not of the newcomer's terminal)."""
        return self.__dict__.get("_unfloored", self)

    # element names are read only when a violation or margin is reported
    @cached_property
    def bus_names(self) -> _Names:
        return _Names(self._tables[0], self._extra[0], self._renamed)

    @cached_property
    def line_names(self) -> _Names:
        return _Names(self._tables[1], self._extra[1])

    @cached_property
    def trafo_names(self) -> _Names:
        return _Names(self._tables[2], self._extra[2])

    def voltage_violation(
        self,
        row: int,
        vm_pu: float,
        kind: BindingKind = BindingKind.VOLTAGE,
        element: ElementRef | None = None,
        name: str | None = None,
    ) -> Violation | None:
        lo, hi = self.vmin[row], self.vmax[row]
        if not np.isfinite(lo) or not np.isfinite(vm_pu):
            return None
        if lo <= vm_pu <= hi:
            return None
        lim = lo if vm_pu < lo else hi
        el = element or ElementRef("bus", self.bus_ids[row])
        nm = self.bus_names[row] if name is None else name
        if self.lv[row]:
            k = self.vn_kv[row] * 1000.0
            return Violation(kind, el, nm, vm_pu * k, lim * k, "V")
        return Violation(kind, el, nm, vm_pu, lim, "pu")

    def judge(
        self,
        state: GridState,
        *,
        skip_bus: np.ndarray | None = None,
        skip_line: np.ndarray | None = None,
        skip_trafo: np.ndarray | None = None,
        band_pu: float = 0.0,
        band_percent: float = 0.0,
    ) -> Judgement:
        """Violations of ``state``; elements under ``skip_*`` (row masks) are left out."""
        vm = state.vm_pu
        checked = np.isfinite(self.vmin) & np.isfinite(vm)
        if skip_bus is not None:
            checked &= ~skip_bus
        lo_m = np.where(checked, vm - self.vmin, np.inf)
        hi_m = np.where(checked, self.vmax - vm, np.inf)
        out: list[Violation] = []
        for row in np.flatnonzero((lo_m < 0) | (hi_m < 0)):
            v = self.voltage_violation(int(row), float(vm[row]))
            if v is not None:
                out.append(v)
        ll = state.line_loading_percent
        lchk = np.isfinite(ll) if skip_line is None else np.isfinite(ll) & ~skip_line
        l_m = np.where(lchk, self.line_max - ll, np.inf)
        for row in np.flatnonzero(l_m < 0):
            out.append(
                Violation(
                    BindingKind.LINE,
                    ElementRef("line", self.line_ids[row]),
                    self.line_names[row],
                    float(ll[row]),
                    self.line_max,
                    "%",
                )
            )
        tl = state.trafo_loading_percent
        tchk = np.isfinite(tl) if skip_trafo is None else np.isfinite(tl) & ~skip_trafo
        t_m = np.where(tchk, self.trafo_max - tl, np.inf)
        for row in np.flatnonzero(t_m < 0):
            out.append(
                Violation(
                    BindingKind.TRANSFORMER,
                    ElementRef("trafo", self.trafo_ids[row]),
                    self.trafo_names[row],
                    float(tl[row]),
                    self.trafo_max,
                    "%",
                )
            )
        v_m = np.minimum(lo_m, hi_m)
        near = bool(
            (np.abs(v_m[np.isfinite(v_m)]) < band_pu).any()
            or (np.abs(l_m[np.isfinite(l_m)]) < band_percent).any()
            or (np.abs(t_m[np.isfinite(t_m)]) < band_percent).any()
        )
        closest = self._closest(vm, v_m, lo_m, ll, l_m, tl, t_m)
        return Judgement(sorted(out, key=lambda v: -v.severity), near, closest)

    def _closest(self, vm, v_m, lo_m, ll, l_m, tl, t_m) -> Violation | None:
        """The checked element with the smallest relative margin (as a Violation-shaped record)."""
        cands: list[tuple[float, Violation]] = []
        if np.isfinite(v_m).any():
            r = int(np.argmin(v_m))
            lim = self.vmin[r] if lo_m[r] <= v_m[r] else self.vmax[r]
            k = self.vn_kv[r] * 1000.0 if self.lv[r] else 1.0
            unit = "V" if self.lv[r] else "pu"
            cands.append(
                (
                    float(v_m[r] / lim),
                    Violation(
                        BindingKind.VOLTAGE,
                        ElementRef("bus", self.bus_ids[r]),
                        self.bus_names[r],
                        float(vm[r] * k),
                        float(lim * k),
                        unit,
                    ),
                )
            )
        if np.isfinite(l_m).any():
            r = int(np.argmin(l_m))
            cands.append(
                (
                    float(l_m[r] / self.line_max),
                    Violation(
                        BindingKind.LINE,
                        ElementRef("line", self.line_ids[r]),
                        self.line_names[r],
                        float(ll[r]),
                        self.line_max,
                        "%",
                    ),
                )
            )
        if np.isfinite(t_m).any():
            r = int(np.argmin(t_m))
            cands.append(
                (
                    float(t_m[r] / self.trafo_max),
                    Violation(
                        BindingKind.TRANSFORMER,
                        ElementRef("trafo", self.trafo_ids[r]),
                        self.trafo_names[r],
                        float(tl[r]),
                        self.trafo_max,
                        "%",
                    ),
                )
            )
        if not cands:
            return None
        return min(cands, key=lambda c: c[0])[1]

    def margins(
        self, state: GridState, *, skip_bus=None, skip_line=None, skip_trafo=None
    ) -> np.ndarray:
        """Every checked margin, in a fixed order (bus minima, bus maxima, lines, trafos): pu
        for voltages, fraction of 100 % for loadings; +inf where an element is not checked.
        The one margins function: a state's arrays may be 2-D (many states, one per row), and
        the margins then are too. ``margin_labels`` names each position."""
        vm = state.vm_pu
        checked = np.isfinite(self.vmin) & np.isfinite(vm)
        if skip_bus is not None:
            checked &= ~skip_bus
        parts = [
            np.where(checked, vm - self.vmin, np.inf),
            np.where(checked, self.vmax - vm, np.inf),
        ]
        for arr, lim, skip in (
            (state.line_loading_percent, self.line_max, skip_line),
            (state.trafo_loading_percent, self.trafo_max, skip_trafo),
        ):
            ok = np.isfinite(arr) if skip is None else np.isfinite(arr) & ~skip
            parts.append(np.where(ok, (lim - arr) / 100.0, np.inf))
        return np.concatenate(parts, axis=-1)

    def violated(self, state: GridState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row masks of the buses, lines and transformers outside a limit (margin < 0)."""
        m = self.margins(state)
        nb, nl = self.vmin.size, self.line_ids.size
        bus = (m[:nb] < 0) | (m[nb : 2 * nb] < 0)
        return bus, m[2 * nb : 2 * nb + nl] < 0, m[2 * nb + nl :] < 0

    def trafo_headroom_kva(self, loading_percent: float, rated_kva: float) -> float | None:
        """kVA a transformer can still take before its loading limit (None when unknown)."""
        if not np.isfinite(loading_percent):
            return None
        return (self.trafo_max - loading_percent) / 100.0 * rated_kva

    def margin_labels(self) -> list[tuple[BindingKind, ElementRef, str]]:
        """What each position of :meth:`margins` is: (kind, element, "min" | "max")."""
        out: list[tuple[BindingKind, ElementRef, str]] = []
        for side in ("min", "max"):
            out += [(BindingKind.VOLTAGE, ElementRef("bus", b), side) for b in self.bus_ids]
        out += [(BindingKind.LINE, ElementRef("line", i), "max") for i in self.line_ids]
        out += [(BindingKind.TRANSFORMER, ElementRef("trafo", i), "max") for i in self.trafo_ids]
        return out

    def _n_margins(self) -> int:
        return 2 * len(self.bus_ids) + len(self.line_ids) + len(self.trafo_ids)

    def margin_label(self, pos: int) -> tuple[BindingKind, ElementRef, str]:
        """What one position of :meth:`margins` is (as in :meth:`margin_labels`, without
        labelling every element: a few broken limits of a large network)."""
        nb, nl = len(self.bus_ids), len(self.line_ids)
        if not 0 <= pos < self._n_margins():
            raise IndexError(pos)
        if pos < 2 * nb:
            side = "min" if pos < nb else "max"
            return BindingKind.VOLTAGE, ElementRef("bus", self.bus_ids[pos % nb]), side
        if pos < 2 * nb + nl:
            return BindingKind.LINE, ElementRef("line", self.line_ids[pos - 2 * nb]), "max"
        i = self.trafo_ids[pos - 2 * nb - nl]
        return BindingKind.TRANSFORMER, ElementRef("trafo", i), "max"

    def margin_position(self, element: ElementRef, side: str) -> int | None:
        """The position of :meth:`margins` of one element's limit (None: not judged)."""
        ids = {"bus": self.bus_ids, "line": self.line_ids, "trafo": self.trafo_ids}
        table = ids.get(element.component)
        if table is None or element.index is None:
            return None
        hit = np.flatnonzero(np.asarray(table) == element.index)
        if not hit.size or (element.component != "bus" and side != "max"):
            return None
        nb, nl = len(self.bus_ids), len(self.line_ids)
        off = {"bus": 0 if side == "min" else nb, "line": 2 * nb, "trafo": 2 * nb + nl}
        return off[element.component] + int(hit[0])

    def min_margin(
        self, state: GridState, *, skip_bus=None, skip_line=None, skip_trafo=None
    ) -> float:
        """The smallest margin over checked elements: pu for voltages, fraction for loadings."""
        m = self.margins(state, skip_bus=skip_bus, skip_line=skip_line, skip_trafo=skip_trafo)
        return float(np.min(m, initial=np.inf))


class _Names:
    """The names of a table's rows, read one at a time (``names[row]``; "" where none): a
    judgement reports a handful of elements, and a city has a million rows. ``extra``: the
    names of rows appended after the table's (a network with changes)."""

    def __init__(self, tab, extra: tuple[str, ...] = (), renamed: dict[int, str] | None = None):
        self._col = tab.name.to_numpy(object) if "name" in tab.columns else None
        self._base = len(tab)
        self._extra = extra
        self._renamed = renamed or {}

    def __len__(self) -> int:
        return self._base + len(self._extra)

    def __getitem__(self, row: Any) -> str:
        if self._renamed and int(row) in self._renamed:
            return self._renamed[int(row)]
        if row >= self._base:
            return self._extra[int(row) - self._base]
        if self._col is None:
            return ""
        v = self._col[row]
        return v if isinstance(v, str) else ""
