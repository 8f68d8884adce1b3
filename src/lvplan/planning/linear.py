"""The plan's linear physics, in integer units: one home for the CP-SAT model and the greedy.

Conservative where it can be (the AC check corrects the rest, :mod:`lvplan.planning.verify`):

* **Current** (radial path sums). An LV line or a transformer carries its base current plus the
  current of the new loads beyond it, each at most ``P / (pf x vmin)`` (triangle inequality; the
  customer's voltage is at least its limit): ``load <= capacity``, both in load units. An
  upgrade raises the capacity.
* **Voltage** (LinDistFlow). At every leaf of a loaded area and at every chosen terminal, the
  base margin covers the drops the new loads add: ``(R + X tan phi) x load / (V^2 vmin)`` on each
  line of its path, the same on its transformer, on its service cable, and the 10 kV network's
  drop at the area's transformer: for each *source* (an area or a site), its new load times the
  largest sensitivity of that 10 kV bus to a load at any of the source's buses (from the
  Newton-Raphson Jacobian at the base, :func:`mv_response`). An upgrade drops by its new
  impedance, and gives back to every bus beyond it the drop it takes off today's load (its
  impedance lowered under the element's base current: ``Element.up_relief``, a share
  :data:`RELIEF_SHARE` of the linear estimate).
* **Cuts** from the AC check tighten these numbers, or add linear cuts on the options.

**The one scaling**: loads in units of 0.1 kW (each design load rounded up), voltages in units of
1e-7 pu (drop coefficients rounded up, margins down), capacities in load units (rounded down),
costs in whole CNY. Every rounding errs on the safe side. The 10 kV coefficients alone are kept
``MV_SUB`` times finer (1e-9 pu per load unit) and their sum rounded up once into voltage units
(:func:`mv_units`): a 10 kV sensitivity is 1.6-4.8 voltage units per load unit, and rounding each
up on its own overstated the district's 10 kV drops by a quarter (0.7 % of voltage at a site).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from lvplan.planning.candidates import Instance
from lvplan.planning.measures import N1_KINDS, MeasureKind
from lvplan.planning.transfers import grid_terms

#: The share of an upgrade's linear voltage relief of today's load (its lower impedance times the
#: current the element carries at the base) that the model counts: the base current is taken at
#: the new demands' power factor, which today's loads need not have; the AC check judges the
#: rest. Without it a feeder whose margin today's load has spent was held beyond every measure
#: ("the LV voltage ... cannot be held") where a larger cable or transformer gives it back
#: (found by review: 120 kW at bus 54 of SimBench 1-LV-rural2 left unserved; the swap and a
#: parallel cable along its path make it fit).
RELIEF_SHARE = 0.8
#: the end of the name of a cut that withdraws the N-1 demands' options on a feeder whose
#: contingency nothing restores (:func:`lvplan.planning.n1plan._withdraw`)
N1_WITHDRAWN = " (its N-1 demands)"
KW_UNIT = 0.1  # kW per load unit
V_UNIT = 1e-7  # pu per voltage unit
MV_SUB = 100  # LinearGrid.mv's coefficients per voltage unit (1e-9 pu per load unit)


def ceil_int(x: float) -> int:
    return math.ceil(x - 1e-9)


def load_units(kw: float) -> int:
    return ceil_int(kw / KW_UNIT)


def _relief(drop: float, up_drop: float, base_units: float) -> int:
    """Voltage units an upgrade gives back to today's load (``base_units``, the element's base
    current in load units): the drop it takes off per load unit times that load, times
    :data:`RELIEF_SHARE`, rounded down; 0 when it drops no less or carries nothing."""
    if not (base_units > 0 and drop > up_drop) or not math.isfinite(base_units):
        return 0
    return max(0, math.floor((drop - up_drop) * base_units * RELIEF_SHARE))


def mv_units(fine: Any) -> Any:
    """A 10 kV drop summed in ``LinearGrid.mv``'s fine units, in voltage units (rounded up;
    an int or an integer array)."""
    return -(-fine // MV_SUB)


@dataclass
class Cuts:
    """What the AC check taught: extra margin on a modelled constraint, and linear cuts."""

    volt_pu: dict[tuple[str, int], float] = field(default_factory=dict)  # ("bus"|"opt"|"site", id)
    line_kw: dict[int, float] = field(default_factory=dict)
    trafo_kw: dict[int, float] = field(default_factory=dict)
    site_kw: dict[int, float] = field(default_factory=dict)
    #: kW off one transformer upgrade's capacity (a parallel unit whose pair shares the current
    #: unequally: the AC check, :func:`lvplan.planning.verify.tighten`), beside ``trafo_kw``
    upgrade_kw: dict[int, float] = field(default_factory=dict)
    mv_factor: float = 1.0  # scales the 10 kV drop term
    linear: list[tuple[dict[int, float], float]] = field(default_factory=list)  # (pu by option, pu)
    linear_names: list[str] = field(default_factory=list)  # the element each linear cut holds
    #: per linear cut, the upgrades (indices into Instance.upgrades) that lift it: the cut holds
    #: only while none of them is built (an element the new load overloads only through the
    #: voltage it lowers, which reinforcing that element also cures)
    relief: list[tuple[int, ...]] = field(default_factory=list)
    #: per linear cut, the options (indices into Instance.options) that make it hold: the cut
    #: holds only while one of them is chosen (an N-1 contingency's limit, which binds all the
    #: load on the loop once an N-1 demand is connected to it); empty: it always holds
    when: list[tuple[int, ...]] = field(default_factory=list)
    #: upgrades no longer offered (one lifted a bus of its area above its maximum in AC)
    banned: set[int] = field(default_factory=set)
    #: what the AC check found on an element whose capacity it cut ("trafo 3", "line 40"):
    #: its loading in per cent in the plan of the round that found it (the latest such round)
    found: dict[str, float] = field(default_factory=dict)

    def add_linear(
        self,
        coefs: dict[int, float],
        rhs: float,
        name: str,
        relief: tuple[int, ...] = (),
        when: tuple[int, ...] = (),
    ) -> None:
        self.linear.append((coefs, rhs))
        self.linear_names.append(name)
        self.relief.append(tuple(relief))
        self.when.append(tuple(sorted(when)))


@dataclass
class Element:
    """A line or transformer in the model: capacity and drop coefficient, as built and for
    each upgrade (indices into Instance.upgrades)."""

    cap: int  # load units at 100 % (the profile's limit)
    drop: int  # voltage units per load unit
    upgrades: list[int]
    up_cap: list[int]
    up_drop: list[int]
    #: per upgrade, the voltage (voltage units) it gives back to every bus beyond the element
    #: from the load the element carries already: its impedance lowered under today's current
    #: (:data:`RELIEF_SHARE` of the linear estimate, rounded down; none: 0)
    up_relief: list[int] = field(default_factory=list)

    def relief(self, u: int | None) -> int:
        """The voltage upgrade ``u`` of this element gives back to today's load (0: none)."""
        if u is None or not self.up_relief or u not in self.upgrades:
            return 0
        return self.up_relief[self.upgrades.index(u)]


@dataclass
class AreaGrid:
    """One loaded area: its lines (local order), transformer, and leaf constraints."""

    area: int
    trafo: int
    lines: list[int]
    line_pos: dict[int, int]
    leaves: list[int]  # buses
    leaf_paths: sp.csr_matrix  # (leaves x lines) 0/1
    leaf_margin: np.ndarray  # voltage units
    mv: int  # its row (and column) of LinearGrid.mv


@dataclass
class OptionTerm:
    units: int  # P in load units
    cost: int  # service cable, CNY
    area: int | None
    site: int | None
    path: list[int]  # lines (pandapower ids) from the transformer to its bus
    cable_drop: int  # voltage units, the whole demand through its service cable
    margin: int  # at its terminal, voltage units (before the path, transformer and 10 kV drops)
    src: int  # its column of LinearGrid.mv (its area's or site's); -1: none
    #: a transfer's twin: the transfer's upgrade (its path then ends in the new cable,
    #: :mod:`lvplan.planning.transfers`); -1: none; -2: its transfer is no longer offered
    via: int = -1


@dataclass
class SiteTerm:
    cap: int
    drop: int
    mv: int  # its row (and column) of LinearGrid.mv
    cost: int


@dataclass
class MvResponse:
    """How the 10 kV bus of each area and site drops per kW drawn by each area and site."""

    keys: list[tuple[str, int]]  # ("area", id) | ("site", id): rows and columns alike
    pu_per_kw: np.ndarray  # (rows, cols): the drop at row's 10 kV bus per kW at col

    def index(self) -> dict[tuple[str, int], int]:
        return {k: i for i, k in enumerate(self.keys)}


def mv_response(network, inst: Instance) -> MvResponse:
    """For every pair of sources, the largest drop (pu per kW) of the first's 10 kV bus for a
    load at any of the second's buses (every option's bus; a site's own 10 kV bus), from the
    linear response (:func:`lvplan.powerflow.sensitivity.voltage_drop_per_kw`)."""
    from lvplan.powerflow.sensitivity import voltage_drop_per_kw

    keys = [("area", a) for a in sorted(inst.areas)] + [("site", s.id) for s in inst.sites]
    idx = {k: i for i, k in enumerate(keys)}
    rows = [int(network.pp.trafo.at[inst.areas[a].trafo, "hv_bus"]) for a in sorted(inst.areas)]
    rows += [s.mv_bus for s in inst.sites]
    src: dict[int, list[int]] = {}  # bus -> source columns
    for o in inst.options:
        if o.bus is not None and o.bus in inst.bus_area:
            src.setdefault(o.bus, []).append(idx[("area", inst.bus_area[o.bus])])
    for s in inst.sites:
        src.setdefault(s.mv_bus, []).append(idx[("site", s.id)])
    out = np.zeros((len(keys), len(keys)))
    buses = sorted(src)
    pf = inst.criteria.new_customer_pf
    for lo in range(0, len(buses), 2000):
        chunk = buses[lo : lo + 2000]
        sens = voltage_drop_per_kw(network, rows, chunk, pf)  # (chunk, rows)
        for j, b in enumerate(chunk):
            for c in src[b]:
                np.maximum(out[:, c], sens[j], out=out[:, c])
    return MvResponse(keys, np.maximum(out, 0.0))


class LinearGrid:
    """Every coefficient of the plan model for one instance, 10 kV sensitivities and cuts."""

    def __init__(self, inst: Instance, mv: MvResponse, cuts: Cuts):
        self.inst = inst
        mv_idx = mv.index()
        scaled = mv.pu_per_kw * cuts.mv_factor * KW_UNIT / V_UNIT * MV_SUB
        #: the 10 kV drop at each row's bus per load unit at each column's source, in 1/MV_SUB
        #: voltage units (a sum of them goes through :func:`mv_units`)
        self.mv = np.where(scaled > 0, np.ceil(scaled - 1e-9), 0).astype(np.int64)
        crit = inst.criteria
        tan = math.tan(math.acos(inst.pf))
        vmin_v = crit.lv_min_voltage_v
        lim_line = crit.line_max_loading_percent / 100.0
        lim_trafo = crit.trafo_max_loading_percent / 100.0
        self.up_cost = [round(u.cost_cny) for u in inst.upgrades]

        def vpu(vn_kv: float) -> float:
            return vmin_v / (vn_kv * 1000.0)

        ups_of: dict[tuple[str, int], list[int]] = {}
        for u, up in enumerate(inst.upgrades):
            if u in cuts.banned or up.kind in N1_KINDS:  # N-1 measures: only in relief
                continue
            if up.kind == MeasureKind.TRANSFER:  # its own terms (planning/transfers.py)
                continue
            is_t = up.kind in (MeasureKind.TRANSFORMER_SWAP, MeasureKind.TRANSFORMER_PARALLEL)
            ups_of.setdefault(("t" if is_t else "l", up.element), []).append(u)

        self.lines: dict[int, Element] = {}
        for line, (r, x, imax, base, vn) in inst.line_data.items():
            to_u = inst.pf * math.sqrt(3) * vn * vpu(vn) * 1000.0 / KW_UNIT  # kA -> units
            cut = cuts.line_kw.get(line, 0.0) / KW_UNIT
            k0 = KW_UNIT * 1e-3 / (vn * vn * vpu(vn)) / V_UNIT  # voltage units per ohm-unit
            us = ups_of.get(("l", line), [])
            self.lines[line] = Element(
                math.floor((imax * lim_line - base) * to_u - cut),
                ceil_int((r + x * tan) * k0),
                us,
                [
                    math.floor((inst.upgrades[u].capacity * lim_line - base) * to_u - cut)
                    for u in us
                ],
                [ceil_int((inst.upgrades[u].r + inst.upgrades[u].x * tan) * k0) for u in us],
                [
                    _relief((r + x * tan) * k0, (up.r + up.x * tan) * k0, base * to_u)
                    for up in (inst.upgrades[u] for u in us)
                ],
            )
        self.trafos: dict[int, Element] = {}
        self.areas: dict[int, AreaGrid] = {}
        for a, tree in inst.areas.items():
            t = tree.trafo
            v = vpu(tree.vn_kv)
            sn, base = inst.trafo_kva[t], inst.trafo_base_kva[t]
            cut = cuts.trafo_kw.get(t, 0.0) / KW_UNIT
            to_u = inst.pf * v / KW_UNIT
            r, x = inst.trafo_z[t]
            us = ups_of.get(("t", t), [])
            self.trafos[t] = Element(
                math.floor((sn * lim_trafo - base) * to_u - cut),
                ceil_int((r + x * tan) * KW_UNIT / (sn * v) / V_UNIT),
                us,
                [
                    math.floor(
                        (inst.upgrades[u].capacity * lim_trafo - base) * to_u
                        - cut
                        - cuts.upgrade_kw.get(u, 0.0) / KW_UNIT
                    )
                    for u in us
                ],
                [
                    ceil_int(
                        (inst.upgrades[u].r + inst.upgrades[u].x * tan)
                        * KW_UNIT
                        / (inst.upgrades[u].capacity * v)
                        / V_UNIT
                    )
                    for u in us
                ],
                [
                    _relief(
                        (r + x * tan) * KW_UNIT / (sn * v) / V_UNIT,
                        (up.r + up.x * tan) * KW_UNIT / (up.capacity * v) / V_UNIT,
                        base * to_u,
                    )
                    for up in (inst.upgrades[u] for u in us)
                ],
            )
            lines = sorted({tree.parent[b][0] for b in tree.parent})
            pos = {ln: i for i, ln in enumerate(lines)}
            leaves = [b for b in tree.leaves() if b in tree.parent or b == tree.root]
            extra = [
                b
                for (kind, b) in cuts.volt_pu
                if kind == "bus" and b in tree.margin_pu and b not in leaves
            ]
            leaves += [b for b in extra if b in tree.parent or b == tree.root]
            rows, cols = [], []
            for i, b in enumerate(leaves):
                for ln in tree.path(b):
                    rows.append(i)
                    cols.append(pos[ln])
            paths = sp.csr_matrix(
                (np.ones(len(rows), np.int64), (rows, cols)), shape=(len(leaves), len(lines))
            )
            margin = np.array(
                [
                    math.floor((tree.margin_pu[b] - cuts.volt_pu.get(("bus", b), 0.0)) / V_UNIT)
                    for b in leaves
                ],
                np.int64,
            )
            self.areas[a] = AreaGrid(a, t, lines, pos, leaves, paths, margin, mv_idx[("area", a)])
        self.sites: dict[int, SiteTerm] = {}
        for s in inst.sites:
            v = vpu(0.4)
            cut = cuts.site_kw.get(s.id, 0.0) / KW_UNIT
            self.sites[s.id] = SiteTerm(
                math.floor(s.rated_kva * lim_trafo * inst.pf * v / KW_UNIT - cut),
                ceil_int((s.r_pu + s.x_pu * tan) * KW_UNIT / (s.rated_kva * v) / V_UNIT),
                mv_idx[("site", s.id)],
                round(s.cost_cny),
            )
        self.options: list[OptionTerm] = []
        for k, o in enumerate(inst.options):
            d = inst.demands[o.demand]
            units = load_units(d.design_kw)
            vn = 0.4
            oa = inst.bus_area.get(o.bus) if o.bus is not None else None
            if oa is not None:
                vn = inst.areas[oa].vn_kv
            k0 = KW_UNIT * 1e-3 / (vn * vn * vpu(vn)) / V_UNIT
            cable = ceil_int((o.cable_r_ohm + o.cable_x_ohm * tan) * k0) * units
            more = cuts.volt_pu.get(("opt", k), 0.0)
            if o.site is not None:
                site = inst.sites[o.site]
                m_pu = site.board_vm_pu - vpu(0.4) - more - cuts.volt_pu.get(("site", o.site), 0.0)
                path: list[int] = []
            elif oa is not None and o.bus is not None:
                m_pu = inst.areas[oa].margin_pu.get(o.bus, 0.0) - more
                path = inst.areas[oa].path(o.bus)
            else:  # a bus outside every modelled area: the AC check judges it
                m_pu, path = 1.0, []
            self.options.append(
                OptionTerm(
                    units,
                    round(o.cable_cost_cny),
                    oa,
                    o.site,
                    path,
                    cable,
                    math.floor(m_pu / V_UNIT),
                    mv_idx[("site", o.site)]
                    if o.site is not None
                    else (mv_idx[("area", oa)] if oa is not None else -1),
                )
            )
        self.cuts = [
            ({k: ceil_int(c / V_UNIT) for k, c in coefs.items()}, math.floor(rhs / V_UNIT))
            for coefs, rhs in cuts.linear
        ]
        self.cut_names = list(cuts.linear_names) + [""] * (
            len(cuts.linear) - len(cuts.linear_names)
        )
        self.banned = frozenset(cuts.banned)
        self.splits: dict[int, Any] = {}  # transfers (feeder splits) by upgrade
        grid_terms(self, cuts)
        relief = list(cuts.relief) + [()] * (len(cuts.linear) - len(cuts.relief))
        self.cut_relief = [tuple(u for u in r if u not in cuts.banned) for r in relief]
        #: per cut, the options that make it hold (empty: always), as ``Cuts.when``
        self.cut_when = [frozenset(w) for w in cuts.when]
