"""The plan as an integer program (OR-Tools CP-SAT).

Variables: one boolean per connection option (demand -> bus or site), per upgrade (a swap, a
parallel unit, a cable replaced or laid in parallel; at most one per element) and per site, and
one ``served`` boolean per demand.

Physics, linear and, where it can be, conservative (the AC check corrects the rest):

* **Current** (radial path sums). Every LV line and transformer carries its base current plus
  the current of the new loads beyond it, each at most ``P / (pf x vmin)`` (the triangle
  inequality, and the customer's voltage at least the limit), so ``Load <= capacity`` in kW is
  never optimistic. An upgrade raises the capacity.
* **Voltage** (LinDistFlow). At every leaf of an area and at every customer terminal the base
  margin must cover the drops the new loads add: ``(R + X tan phi) x Load / (V^2 vmin)`` on
  every line of its path, the same on its transformer, on the service cable, and the 10 kV
  network's drop (the largest sensitivity of the area's 10 kV bus to a load in the area, from
  the Newton-Raphson Jacobian, times the total new load). An upgraded line or transformer drops
  by its new impedance.
* **Cuts** from the AC check (:mod:`lvplan.planning.verify`): a tightening of one constraint,
  or a linear cut on the options for an element the model does not hold (a 10 kV line, say).

**The one scaling** (integers for CP-SAT): loads in units of 0.1 kW (each design load rounded
up), voltages in units of 1e-7 pu (drop coefficients rounded up, margins down), capacities in
0.1 kW (rounded down), costs in whole CNY. Every rounding errs on the safe side.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from ortools.sat.python import cp_model

from lvplan.planning.candidates import Instance, Upgrade
from lvplan.planning.measures import MeasureKind

KW_UNIT = 0.1  # kW per load unit
V_UNIT = 1e-7  # pu per voltage unit
#: Unserved demand costs this many CNY per kW in the objective (served first, then cheapest).
UNSERVED_CNY_PER_KW = 1_000_000


@dataclass
class Cuts:
    """What the AC check taught: extra margin on a modelled constraint, and linear cuts."""

    volt_pu: dict[tuple[str, int], float] = field(default_factory=dict)  # ("bus"|"opt"|"site", id)
    line_kw: dict[int, float] = field(default_factory=dict)
    trafo_kw: dict[int, float] = field(default_factory=dict)
    site_kw: dict[int, float] = field(default_factory=dict)
    mv_factor: float = 1.0  # scales the 10 kV drop term
    linear: list[tuple[dict[int, float], float]] = field(default_factory=list)  # (pu by option, pu)

    @property
    def count(self) -> int:
        return (
            len(self.volt_pu)
            + len(self.line_kw)
            + len(self.trafo_kw)
            + len(self.site_kw)
            + len(self.linear)
            + (self.mv_factor != 1.0)
        )


@dataclass
class Solution:
    chosen: list[int]  # option index per served demand
    upgrades: list[int]  # indices into Instance.upgrades
    sites: list[int]
    served: list[bool]
    cost_cny: float
    status: str
    objective: float
    bound: float
    gap: float
    seconds: float


def _ceil(x: float) -> int:
    return math.ceil(x - 1e-9)


def load_units(kw: float) -> int:
    return _ceil(kw / KW_UNIT)


class PlanModel:
    """The CP-SAT model of one instance, with cuts, for the optimal plan, a budget or one
    greedy step (fixed earlier choices)."""

    def __init__(
        self,
        inst: Instance,
        mv_sens_pu_per_kw: dict[int, float],
        cuts: Cuts,
        *,
        active: list[int] | None = None,
        fixed: Solution | None = None,
        budget_cny: float | None = None,
    ):
        self.inst = inst
        m = self.m = cp_model.CpModel()
        crit = inst.criteria
        tan = math.tan(math.acos(inst.pf))
        active_set = set(range(len(inst.demands)) if active is None else active)
        opts = [k for k, o in enumerate(inst.options) if o.demand in active_set]
        self.x = {k: m.new_bool_var(f"x{k}") for k in opts}
        self.P = {k: load_units(inst.demands[inst.options[k].demand].design_kw) for k in opts}
        by_demand: dict[int, list[int]] = {}
        for k in opts:
            by_demand.setdefault(inst.options[k].demand, []).append(k)
        self.served = {i: m.new_bool_var(f"s{i}") for i in active_set if i not in inst.unservable}
        for i, sv in self.served.items():
            m.add(sum(self.x[k] for k in by_demand.get(i, [])) == sv)
            if budget_cny is None and not by_demand.get(i):
                m.add(sv == 0)
        # upgrades: at most one per element
        self.y: dict[int, cp_model.IntVar] = {}
        per_elem: dict[tuple[str, int], list[int]] = {}
        used_areas = {inst.bus_area.get(inst.options[k].bus or -1) for k in opts}
        used_lines: set[int] = set()
        for k in opts:
            o = inst.options[k]
            if o.bus is not None and inst.bus_area.get(o.bus) is not None:
                used_lines.update(inst.areas[inst.bus_area[o.bus]].path(o.bus))
        for u, up in enumerate(inst.upgrades):
            is_trafo = up.kind in (MeasureKind.TRANSFORMER_SWAP, MeasureKind.TRANSFORMER_PARALLEL)
            if is_trafo and not any(
                a is not None and inst.areas[a].trafo == up.element for a in used_areas
            ):
                continue
            if not is_trafo and up.element not in used_lines:
                continue
            self.y[u] = m.new_bool_var(f"y{u}")
            per_elem.setdefault(("t" if is_trafo else "l", up.element), []).append(u)
        for us in per_elem.values():
            m.add_at_most_one(self.y[u] for u in us)
        used_sites: set[int] = set()
        for k in opts:
            site_id = inst.options[k].site
            if site_id is not None:
                used_sites.add(site_id)
        self.z = {sid: m.new_bool_var(f"z{sid}") for sid in sorted(used_sites)}

        # loads per line, transformer and site (0.1 kW)
        line_terms: dict[int, list[Any]] = {}
        trafo_terms: dict[int, list[Any]] = {}
        site_terms: dict[int, list[Any]] = {}
        total_terms: list[Any] = []
        for k in opts:
            o = inst.options[k]
            term = self.P[k] * self.x[k]
            total_terms.append(term)
            if o.site is not None:
                site_terms.setdefault(o.site, []).append(term)
                m.add_implication(self.x[k], self.z[o.site])
                continue
            b = o.bus if o.bus is not None else -1
            a = inst.bus_area.get(b)
            if a is None:
                continue
            trafo_terms.setdefault(inst.areas[a].trafo, []).append(term)
            for line in inst.areas[a].path(b):
                line_terms.setdefault(line, []).append(term)
        big = sum(self.P.values()) + 1
        self.total = m.new_int_var(0, big, "total")
        m.add(self.total == sum(total_terms))
        self.load_line = {}
        for line, terms in line_terms.items():
            v = m.new_int_var(0, big, f"L{line}")
            m.add(v == sum(terms))
            self.load_line[line] = v
        self.load_trafo = {}
        for t, terms in trafo_terms.items():
            v = m.new_int_var(0, big, f"T{t}")
            m.add(v == sum(terms))
            self.load_trafo[t] = v

        vmin_lv = crit.lv_min_voltage_v
        lim_line = crit.line_max_loading_percent / 100.0
        lim_trafo = crit.trafo_max_loading_percent / 100.0

        def ups(kind: str, element: int) -> list[tuple[int, Upgrade]]:
            return [(u, inst.upgrades[u]) for u in per_elem.get((kind, element), [])]

        # current limits: Load <= capacity (0.1 kW at pf and vmin)
        for line, load in self.load_line.items():
            r, x, imax, base, vn = inst.line_data[line]
            vpu = vmin_lv / (vn * 1000.0)
            to_units = inst.pf * math.sqrt(3) * vn * vpu * 1000.0 / KW_UNIT  # kA -> units
            cut = cuts.line_kw.get(line, 0.0) / KW_UNIT
            keep = math.floor((imax * lim_line - base) * to_units - cut)
            expr: Any = keep
            for u, up in ups("l", line):
                more = math.floor((up.capacity * lim_line - base) * to_units - cut) - keep
                expr += more * self.y[u]
            m.add(load <= expr)
        for t, load in self.load_trafo.items():
            sn, base = inst.trafo_kva[t], inst.trafo_base_kva[t]
            vpu = vmin_lv / (self.inst.areas[self._area_of_trafo(t)].vn_kv * 1000.0)
            to_units = inst.pf * vpu / KW_UNIT
            cut = cuts.trafo_kw.get(t, 0.0) / KW_UNIT
            keep = math.floor((sn * lim_trafo - base) * to_units - cut)
            expr = keep
            for u, up in ups("t", t):
                more = math.floor((up.capacity * lim_trafo - base) * to_units - cut) - keep
                expr += more * self.y[u]
            m.add(load <= expr)
        for sid, terms in site_terms.items():
            site = inst.sites[sid]
            to_units = inst.pf * (vmin_lv / 400.0) / KW_UNIT
            cut = cuts.site_kw.get(sid, 0.0) / KW_UNIT
            m.add(sum(terms) <= math.floor(site.rated_kva * lim_trafo * to_units - cut))

        # voltage drops (1e-7 pu): per line and transformer, by the chosen impedance
        def drop_var(name: str, load, coef_keep: int, alts: list[tuple[int, int]]):
            if not alts:
                return coef_keep * load
            d = m.new_int_var(0, coef_keep * big, name)
            m.add(d >= coef_keep * load).only_enforce_if([self.y[u].Not() for u, _ in alts])
            for u, c in alts:
                m.add(d >= c * load).only_enforce_if(self.y[u])
            return d

        self.drop_line = {}
        for line, load in self.load_line.items():
            r, x, _imax, _base, vn = inst.line_data[line]
            vpu = vmin_lv / (vn * 1000.0)
            k0 = KW_UNIT * 1e-3 / (vn * vn * vpu) / V_UNIT  # pu per ohm per unit load
            alts = [(u, _ceil((up.r + up.x * tan) * k0)) for u, up in ups("l", line)]
            self.drop_line[line] = drop_var(f"DL{line}", load, _ceil((r + x * tan) * k0), alts)
        self.drop_trafo = {}
        for t, load in self.load_trafo.items():
            a = self._area_of_trafo(t)
            vpu = vmin_lv / (inst.areas[a].vn_kv * 1000.0)
            sn = inst.trafo_kva[t]
            r, x = inst.trafo_z[t]
            alts = []
            for u, up in ups("t", t):
                size = up.capacity  # the z of a swap is on its rating, a parallel's on the sum
                alts.append((u, _ceil((up.r + up.x * tan) * KW_UNIT / (size * vpu) / V_UNIT)))
            c0 = _ceil((r + x * tan) * KW_UNIT / (sn * vpu) / V_UNIT)
            self.drop_trafo[t] = drop_var(f"DT{t}", load, c0, alts)

        def mv_term(area_or_none: int | None):
            sens = mv_sens_pu_per_kw.get(-1 if area_or_none is None else area_or_none, 0.0)
            c = _ceil(sens * cuts.mv_factor * KW_UNIT / V_UNIT)
            return c * self.total

        def path_drop(a: int, bus: int):
            tree = inst.areas[a]
            expr: Any = self.drop_trafo.get(tree.trafo, 0) + mv_term(a)
            for line in tree.path(bus):
                expr += self.drop_line.get(line, 0)
            return expr

        # leaves of every loaded area
        loaded = set()
        for k in opts:
            ob = inst.options[k].bus
            if ob is not None and ob in inst.bus_area:
                loaded.add(inst.bus_area[ob])
        for a in sorted(loaded):
            tree = inst.areas[a]
            for b in tree.leaves():
                margin = tree.margin_pu[b] - cuts.volt_pu.get(("bus", b), 0.0)
                m.add(path_drop(a, b) <= math.floor(margin / V_UNIT))
            for (kind, b), extra in cuts.volt_pu.items():
                if kind == "bus" and b in tree.margin_pu and b not in tree.leaves():
                    margin = tree.margin_pu[b] - extra
                    m.add(path_drop(a, b) <= math.floor(margin / V_UNIT))
        # every option's terminal
        self.site_drop = {}
        for sid in self.z:
            site = inst.sites[sid]
            vpu = vmin_lv / 400.0
            c = _ceil((site.r_pu + site.x_pu * tan) * KW_UNIT / (site.rated_kva * vpu) / V_UNIT)
            self.site_drop[sid] = c * sum(site_terms.get(sid, [])) + mv_term(None)
        for k in opts:
            o = inst.options[k]
            vn = 0.4
            vpu = vmin_lv / (vn * 1000.0)
            k0 = KW_UNIT * 1e-3 / (vn * vn * vpu) / V_UNIT
            cable = _ceil((o.cable_r_ohm + o.cable_x_ohm * tan) * k0) * self.P[k]
            extra = cuts.volt_pu.get(("opt", k), 0.0)
            if o.site is not None:
                site = inst.sites[o.site]
                margin = site.board_vm_pu - vpu - extra - cuts.volt_pu.get(("site", o.site), 0.0)
                ok = self.site_drop[o.site] + cable <= math.floor(margin / V_UNIT)
                m.add(ok).only_enforce_if(self.x[k])
                continue
            ob = o.bus
            oa = inst.bus_area.get(ob) if ob is not None else None
            if oa is None or ob is None:
                continue
            margin = inst.areas[oa].margin_pu.get(ob, 0.0) - extra
            m.add(path_drop(oa, ob) + cable <= math.floor(margin / V_UNIT)).only_enforce_if(
                self.x[k]
            )
        # linear cuts from the AC check
        for coefs, rhs in cuts.linear:  # coefs: margin (pu) an option uses; rhs: pu
            terms = [_ceil(c / V_UNIT) * self.x[k] for k, c in coefs.items() if k in self.x]
            if terms:
                m.add(sum(terms) <= math.floor(rhs / V_UNIT))

        # cost
        self.cost_terms = []
        for u, v in self.y.items():
            self.cost_terms.append(round(inst.upgrades[u].cost_cny) * v)
        for sid, v in self.z.items():
            self.cost_terms.append(round(inst.sites[sid].cost_cny) * v)
        for k in opts:
            self.cost_terms.append(round(inst.options[k].cable_cost_cny) * self.x[k])
        cost = sum(self.cost_terms)
        served_kw = sum(load_units(inst.demands[i].design_kw) * sv for i, sv in self.served.items())
        if budget_cny is not None:
            m.add(cost <= math.floor(budget_cny))
            # the most kW served, then the least cost: kW weighs more than any cost in budget
            m.maximize(served_kw * (math.floor(budget_cny) + 1) - cost)
        else:
            unserved_pen = sum(
                round(UNSERVED_CNY_PER_KW * inst.demands[i].design_kw) * (1 - sv)
                for i, sv in self.served.items()
            )
            m.minimize(cost + unserved_pen)
        if fixed is not None:
            for k in fixed.chosen:
                if k in self.x:
                    m.add(self.x[k] == 1)
            for u in fixed.upgrades:
                if u in self.y:
                    m.add(self.y[u] == 1)
            for sid in fixed.sites:
                if sid in self.z:
                    m.add(self.z[sid] == 1)

    def _area_of_trafo(self, t: int) -> int:
        for a, tree in self.inst.areas.items():
            if tree.trafo == t:
                return a
        raise KeyError(t)

    def hint(self, sol: Solution) -> None:
        chosen, ups, sites = set(sol.chosen), set(sol.upgrades), set(sol.sites)
        for k, v in self.x.items():
            self.m.add_hint(v, k in chosen)
        for u, v in self.y.items():
            self.m.add_hint(v, u in ups)
        for sid, v in self.z.items():
            self.m.add_hint(v, sid in sites)

    def solve(self, *, time_limit_s: float, workers: int = 2, gap: float = 0.0) -> Solution:
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = max(0.05, float(time_limit_s))
        solver.parameters.num_workers = max(1, int(workers))
        solver.parameters.relative_gap_limit = gap
        t0 = time.perf_counter()
        status = solver.solve(self.m)
        secs = time.perf_counter() - t0
        name = solver.status_name(status).lower()
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return Solution([], [], [], [], math.nan, name, math.nan, math.nan, math.nan, secs)
        chosen = [k for k, v in self.x.items() if solver.value(v)]
        ups = [u for u, v in self.y.items() if solver.value(v)]
        sites = [sid for sid, v in self.z.items() if solver.value(v)]
        served_ids = {self.inst.options[k].demand for k in chosen}
        cost = sum(self.inst.upgrades[u].cost_cny for u in ups)
        cost += sum(self.inst.sites[sid].cost_cny for sid in sites)
        cost += sum(self.inst.options[k].cable_cost_cny for k in chosen)
        obj, bound = solver.objective_value, solver.best_objective_bound
        gap_v = abs(obj - bound) / max(abs(obj), 1e-9) if obj else 0.0
        return Solution(
            chosen,
            ups,
            sites,
            [i in served_ids for i in range(len(self.inst.demands))],
            cost,
            name,
            obj,
            bound,
            gap_v,
            secs,
        )
