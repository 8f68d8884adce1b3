"""The plan as an integer program (OR-Tools CP-SAT), on the linear physics of
:mod:`lvplan.planning.linear`.

Variables: one boolean per connection option (demand -> bus or site), per upgrade (a swap, a
parallel unit, a cable replaced or laid in parallel; at most one per element) and per site, and
one ``served`` boolean per demand. Each demand is served exactly once (or, with a budget, at most
once). Loads on lines, transformers and sites are path sums of the options; each line's and
transformer's voltage drop is its load times the impedance of what is built there (an
``only_enforce_if`` per upgrade). The objective is lexicographic: the most design kW served
(every demand, when some plan can serve them all), then the least total cost (measures, sites,
service cables) for that; with a budget, the most design kW within it, then the least cost.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ortools.sat.python import cp_model

from lvplan.planning import interrupt
from lvplan.planning.candidates import element_key
from lvplan.planning.linear import KW_UNIT, MV_SUB, LinearGrid, load_units, mv_units
from lvplan.planning.mipbound import CutPool, MipBound, Relaxation
from lvplan.planning.parts import Part
from lvplan.planning.strengthen import (
    CapacityRow,
    capacity_row,
    forced_upgrades,
    site_covers,
    sites_alone,
)
from lvplan.planning.transfers import add_model as add_transfers

if TYPE_CHECKING:
    from lvplan.planning.candidates import Instance

#: CP-SAT's linearization level. 2 (the LP of the enforced constraints too) found plans 1-2 %
#: dearer in the same 60 s on the district than the default 1, with the same proven gap.
LINEARIZATION_LEVEL = 1
#: the least time for the MIP bound beside CP-SAT's search (less does not reach past its root)
MIP_BOUND_MIN_S = 10.0
#: beside the two HiGHS threads, CP-SAT searches on one worker for this share of the time: the
#: cheaper plans come from HiGHS's neighbourhood search, which needs the cores (on the district
#: it finds its plan after 11-15 s of one core; see MipBound._dive for the shares tried)
CPSAT_SHARE = 0.1
#: the least time for the neighbourhood search beside the bound (on the district HiGHS finds
#: its plan after 11-15 s of one core); with less, the bound alone runs beside CP-SAT
DIVE_MIN_S = 30.0
#: CP-SAT's time to check the relaxation neighbourhood's plan against the model (all fixed)
DIVE_CHECK_S = 10.0
#: ... and each of its alternatives (the plans its search found before it)
ALTERNATIVE_CHECK_S = 2.0
#: the share of a round's time its first stage (the most kW served) may take
FIRST_STAGE_SHARE = 0.25
#: A round too short for the relaxation's neighbourhood searches its hint's neighbourhoods
#: (:meth:`PlanModel._by_neighbourhoods`) only when it serves more demands than this; with
#: fewer, one neighbourhood of a new substation done without (at most 50 demands,
#: :data:`lvplan.planning.polish.MOST_FREE_CLOSING`) is about the whole model, and CP-SAT's
#: search of the whole model can prove its optimum (it proved the study's plans of the
#: district in their 20 s rounds, `make run`)
NEIGHBOURHOODS_MIN_DEMANDS = 50


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
    #: by part (:func:`solve_by_parts`): demands, options, status, cost, bound, what bounded it,
    #: gap, seconds
    parts: list[dict[str, Any]] = field(default_factory=list)
    #: each solver's proven bound (``cp_sat``; ``highs``, its status and seconds, when the
    #: MIP bound ran beside CP-SAT, :mod:`lvplan.planning.mipbound`) and ``bound_by``
    bounds: dict[str, Any] = field(default_factory=dict)
    #: CP-SAT ran out of time (status unknown) and this is the complete hint it started from
    from_hint: bool = False
    #: plans of the same model, dearer than this one, to fall back on when the AC check breaks
    #: it where its repair costs more (the relaxation neighbourhood's earlier plans; the plans
    #: a repair round did not take): cheapest first, none checked in AC
    alternatives: list[Solution] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        inst: Instance,
        chosen: list[int],
        upgrades: list[int],
        sites: list[int],
        status: str,
        *,
        objective: float | None = None,
        bound: float = math.nan,
        gap: float = math.nan,
        seconds: float = 0.0,
        parts: list[dict[str, Any]] | None = None,
    ) -> Solution:
        """A plan's choices, priced: its measures, sites and service cables (the objective is
        that cost unless given), and which demands it serves."""
        cost = sum(inst.upgrades[u].cost_cny for u in upgrades)
        cost += sum(inst.sites[s].cost_cny for s in sites)
        cost += sum(inst.options[k].cable_cost_cny for k in chosen)
        served = {inst.options[k].demand for k in chosen}
        return cls(
            chosen,
            upgrades,
            sites,
            [i in served for i in range(len(inst.demands))],
            cost,
            status,
            cost if objective is None else objective,
            bound,
            gap,
            seconds,
            parts or [],
        )


def solve_by_parts(
    grid: LinearGrid,
    parts: list[Part],
    incumbent: Solution,
    *,
    time_limit_s: float,
    workers: int = 2,
    memo: dict[int, Solution] | None = None,
    fallback: Solution | None = None,
) -> Solution:
    """The plan, one part at a time (largest first, each with the rest held at
    ``incumbent``), each part's time its share of what is left by its number of options.
    The union's bound is the sum of the parts' bounds: a bound for the plan with the parts'
    coupling (the 10 kV busbar, the AC cuts) held at the incumbent.

    ``memo`` keeps each part's last solution between AC rounds: a part whose share of the
    incumbent still fits the tightened model keeps it, and its bound (cuts only ever tighten,
    so a bound found before stays a bound); only the parts the AC check broke are solved
    again, in the time there is, from ``fallback``'s choices (the verified greedy plan) where
    the incumbent's no longer fit."""
    t0 = time.perf_counter()
    inst = grid.inst
    memo = {} if memo is None else memo
    chosen: list[int] = []
    ups: set[int] = set()
    sites: set[int] = set()
    rows: list[dict[str, Any]] = []
    models = []
    fits: list[bool] = []
    for j, p in enumerate(parts):
        mdl = PlanModel(grid, part=p, fixed=incumbent)
        ok = mdl.hint(incumbent, time_limit_s=10.0)
        keep = ok and j in memo
        if not ok and fallback is not None:
            mdl = PlanModel(grid, part=p, fixed=incumbent)
            ok = mdl.hint(fallback, time_limit_s=10.0)
        fits.append(ok)
        models.append((mdl, keep))
    left_opts = sum(len(p.options) for p, (_m, keep) in zip(parts, models, strict=True) if not keep)
    statuses = []
    by: set[str] = set()  # what bounded each part
    obj = bound = 0.0
    for j, (p, (mdl, keep)) in enumerate(zip(parts, models, strict=True)):
        if keep:
            sol = memo[j]
        else:
            left = time_limit_s - (time.perf_counter() - t0)
            t_p = max(0.2, left * len(p.options) / max(left_opts, 1))
            left_opts -= len(p.options)
            sol = mdl.solve(time_limit_s=t_p, workers=workers)
            if sol.status not in ("optimal", "feasible"):
                if not fits[j]:
                    return PlanModel._failed_solution(sol.status, time.perf_counter() - t0)
                assert mdl.hinted is not None
                sol = mdl.held(mdl.hinted)  # no time to improve it: the hint's part stands
            else:
                memo[j] = sol
        chosen += sol.chosen
        ups.update(sol.upgrades)
        sites.update(sol.sites)
        statuses.append(sol.status)
        obj += sol.objective
        bound += sol.bound
        if sol.bounds.get("bound_by"):
            by.add(sol.bounds["bound_by"])
        rows.append(
            {
                "demands": len(p.demands),
                "options": len(p.options),
                "feeders": len(p.feeders),
                "status": sol.status,
                "cost_cny": round(sol.cost_cny, 2),
                "bound_cny": round(sol.bound, 2) if math.isfinite(sol.bound) else None,
                "bound_by": sol.bounds.get("bound_by"),
                "gap": round(sol.gap, 6) if math.isfinite(sol.gap) else None,
                "seconds": round(sol.seconds, 2),
            }
        )
    status = "optimal" if all(s == "optimal" for s in statuses) else "feasible"
    out = Solution.of(
        inst,
        sorted(chosen),
        sorted(ups),
        sorted(sites),
        status,
        objective=obj,
        bound=bound,
        gap=abs(obj - bound) / max(abs(obj), 1e-9) if obj else 0.0,
        seconds=time.perf_counter() - t0,
        parts=rows,
    )
    # the sum of the parts' bounds: named by what bounded them (each part's row says which)
    out.bounds = {"bound_by": "+".join(sorted(by)) if by else None, "parts": len(parts)}
    return out


class PlanModel:
    """The CP-SAT model of one instance (``grid``: its coefficients, cuts included)."""

    def __init__(
        self,
        grid: LinearGrid,
        *,
        budget_cny: float | None = None,
        part: Part | None = None,
        fixed: Solution | None = None,
    ):
        """With ``part`` (:mod:`lvplan.planning.parts`), only that part's demands and options;
        the rest of the plan is held at ``fixed``: its load on the 10 kV network as a
        constant, and each AC cut's room shared out by the number of options."""
        self.grid = grid
        self.hinted: Solution | None = None  # the plan :meth:`hint` started from
        #: the hint is a complete feasible assignment (:meth:`hint` returned True): a solve
        #: that runs out of time returns it, with the bound CP-SAT proved
        self.hint_complete = False
        #: the demands :meth:`solve` served are the most design kW any plan serves (every one
        #: with an option, or its first stage proved it); None until a solve without a budget
        self.served_proven: bool | None = None
        inst = self.inst = grid.inst
        m = self.m = cp_model.CpModel()
        opts = list(range(len(inst.options))) if part is None else list(part.options)
        ot = grid.options
        self.x = {k: m.new_bool_var(f"x{k}") for k in opts}
        by_demand: dict[int, list[int]] = {}
        for k in opts:
            by_demand.setdefault(inst.options[k].demand, []).append(k)
        self._options_of = by_demand
        demands = range(len(inst.demands)) if part is None else part.demands
        self.served = {i: m.new_bool_var(f"s{i}") for i in demands if i not in inst.unservable}
        outside: list[int] = []  # the held plan's options outside the part
        if part is not None and fixed is not None:
            mine = set(opts)
            outside = [k for k in fixed.chosen if k not in mine]
        for i, sv in self.served.items():
            m.add(sum(self.x[k] for k in by_demand.get(i, [])) == sv)
        # what some option loads: the options on each line, transformer and site
        line_terms: dict[int, list[int]] = {}
        trafo_terms: dict[int, list[int]] = {}
        site_terms: dict[int, list[int]] = {}
        for k in opts:
            if ot[k].site is not None:
                site_terms.setdefault(ot[k].site, []).append(k)  # type: ignore[arg-type]
            elif ot[k].area is not None:
                trafo_terms.setdefault(grid.areas[ot[k].area].trafo, []).append(k)  # type: ignore[index]
                for line in ot[k].path:
                    line_terms.setdefault(line, []).append(k)
        # each variable's domain is as tight as its definition allows (a load: the sum of what
        # could load it; a drop: that times the largest impedance): CP-SAT's linear relaxation
        # of an enforced constraint is a big-M on these bounds, and a MIP's would be too
        top: dict[int, int] = {}  # variable index -> its upper bound
        low: dict[int, int] = {}  # variable index -> its lower bound, where below 0

        expr_top: dict[int, int] = {}  # id of an expression made here -> its upper bound

        def lb(expr: Any) -> int:
            """A lower bound of a drop made here (below 0 only where an upgrade gives back
            more to today's load than the new load takes), or of a constant."""
            if isinstance(expr, int):
                return min(expr, 0)
            return low.get(getattr(expr, "index", -1), 0)

        def ub(expr: Any) -> int:
            """An upper bound of a variable or expression made here, or of a constant."""
            if isinstance(expr, int):
                return expr
            if id(expr) in expr_top:
                return expr_top[id(expr)]
            return top[expr.index]

        big = sum(o.units for o in ot) + 1
        self.y: dict[int, Any] = {}
        for elements, terms in ((grid.lines, line_terms), (grid.trafos, trafo_terms)):
            for e in terms:
                us = elements[e].upgrades
                for u in us:
                    self.y[u] = m.new_bool_var(f"y{u}")
                if len(us) > 1:
                    m.add_at_most_one(self.y[u] for u in us)
        self.z = {sid: m.new_bool_var(f"z{sid}") for sid in sorted(site_terms)}
        for k in opts:
            if ot[k].site is not None:
                m.add_implication(self.x[k], self.z[ot[k].site])  # type: ignore[index]

        def load_var(name: str, ks: list[int]):
            hi = min(big, sum(ot[k].units for k in ks))
            v = m.new_int_var(0, hi, name)
            top[v.index] = hi
            m.add(v == sum(ot[k].units * self.x[k] for k in ks))
            return v

        def drop(name: str, load, el) -> Any:
            """The element's voltage drop: its load times the impedance built there."""
            cap: Any = el.cap + sum(
                (c - el.cap) * self.y[u] for u, c in zip(el.upgrades, el.up_cap, strict=True)
            )
            if el.cap >= 0:
                self.capacity_cts[name] = m.add(load <= cap).index
            else:  # over its limit at the base: the plan must reinforce it only if it loads it
                loaded = m.new_bool_var(f"{name}_loaded")
                m.add(load == 0).only_enforce_if(loaded.Not())
                m.add(load <= cap).only_enforce_if(loaded)
            if not el.upgrades:
                if not el.drop:
                    return 0
                expr = el.drop * load
                expr_top[id(expr)] = el.drop * ub(load)
                return expr
            hi = max(el.drop, *el.up_drop) * ub(load)
            # (an upgrade also gives back the drop of today's load beyond it: el.relief)
            lo = -max((el.relief(u) for u in el.upgrades), default=0)
            d = m.new_int_var(lo, hi, name)
            top[d.index] = hi
            if lo:
                low[d.index] = lo
            ct = m.add(d >= el.drop * load)
            ct.only_enforce_if([self.y[u].Not() for u in el.upgrades])
            self.voltage_defs.append(ct.index)
            for u, c in zip(el.upgrades, el.up_drop, strict=True):
                ct = m.add(d >= c * load - el.relief(u)).only_enforce_if(self.y[u])
                self.voltage_defs.append(ct.index)
            return d

        #: the proto indices of the voltage limits written as big-Ms (a bus's drop within its
        #: margin when its area, or an option, is used): the HiGHS threads hold them out
        #: (:mod:`lvplan.planning.mipbound`)
        self.voltage_rows: list[int] = []
        #: ... and the rows that only define the drops those limits read (an element's drop by
        #: what is built there, a bus's drop, a 10 kV bus's): nothing else reads them, so the
        #: bounding thread holds them out too (a smaller model for HiGHS; the same relaxation
        #: of every other row)
        self.voltage_defs: list[int] = []
        #: the proto index of each line's and transformer's capacity row (``load <= room +
        #: what an upgrade adds``), by the name of its drop ("DL12", "DT3"): the diving thread
        #: tightens them where the AC check of its first plan found them short (``probe``)
        self.capacity_cts: dict[str, int] = {}
        #: every capacity with an upgrade, for the relaxation's residual-capacity inequalities
        #: (:mod:`lvplan.planning.strengthen`)
        self.capacity_rows: list[CapacityRow] = []
        self._holds: dict[frozenset[int], Any] = {}  # see _cut_holds
        #: the site covers added once the demands served are fixed: (sites, the fewest built)
        self.site_covers: list[tuple[tuple[int, ...], int]] = []
        #: ... and the rows whose forced upgrades were added (:meth:`_must_serve`)
        self.forced: list[str] = []

        def cap_row(name: str, ks: list[int], el) -> None:
            row = capacity_row(
                name,
                [(inst.options[k].demand, self.x[k].index, ot[k].units) for k in ks],
                el.cap,
                [([self.y[u].index], c) for u, c in zip(el.upgrades, el.up_cap, strict=True)],
            )
            if row is not None:
                self.capacity_rows.append(row)

        for ln, ks in line_terms.items():
            cap_row(f"line {ln}", ks, grid.lines[ln])
        for t, ks in trafo_terms.items():
            cap_row(f"trafo {t}", ks, grid.trafos[t])
        self.drop_line = {
            ln: drop(f"DL{ln}", load_var(f"L{ln}", ks), grid.lines[ln])
            for ln, ks in line_terms.items()
        }
        trafo_load = {t: load_var(f"T{t}", ks) for t, ks in trafo_terms.items()}
        self.drop_trafo = {t: drop(f"DT{t}", v, grid.trafos[t]) for t, v in trafo_load.items()}
        site_load = {s: load_var(f"S{s}", ks) for s, ks in site_terms.items()}
        for s, v in site_load.items():  # (in the relaxation, a share of a site carries its share)
            m.add(v <= grid.sites[s].cap * self.z[s])

        src_load: dict[int, Any] = {}  # the new load of each 10 kV source (area or site)
        for ag in grid.areas.values():
            if ag.trafo in trafo_load:
                src_load[ag.mv] = trafo_load[ag.trafo]
        for sid, v in site_load.items():
            src_load[grid.sites[sid].mv] = v
        held: dict[int, int] = {}  # the held plan's load at each 10 kV source outside the part
        for k in outside:
            if ot[k].src >= 0:
                held[ot[k].src] = held.get(ot[k].src, 0) + ot[k].units

        mv_vars: dict[int, Any] = {}

        def mv_drop(row: int) -> Any:
            """The 10 kV drop at one area's or site's transformer (one variable, made once)."""
            if row not in mv_vars:
                coefs = grid.mv[row]
                terms = [int(coefs[c]) * v for c, v in src_load.items() if coefs[c]]
                const = sum(int(coefs[c]) * u for c, u in held.items() if c not in src_load)
                if not terms:
                    mv_vars[row] = mv_units(const)
                else:  # in voltage units: the fine sum rounded up (linear.mv_units)
                    fine = sum(terms) + const
                    hi = const + sum(max(int(coefs[c]), 0) * ub(v) for c, v in src_load.items())
                    hi = max(mv_units(hi), 0)
                    v = m.new_int_var(0, hi, f"MV{row}")
                    top[v.index] = hi
                    self.voltage_defs.append(m.add(MV_SUB * v >= fine).index)
                    mv_vars[row] = v
            return mv_vars[row]

        # the drop at each bus of a used area, root outwards: a variable where the line into it
        # carries new load, else its parent's; a point's drop is that of its *anchor* (the
        # nearest bus towards the transformer whose line carries new load)
        in_area: dict[int, list[int]] = {}
        for k in opts:
            if ot[k].area is not None and ot[k].site is None:
                in_area.setdefault(ot[k].area, []).append(k)  # type: ignore[arg-type]
        self.used: dict[int, Any] = {}
        drop_at: dict[int, Any] = {}
        for a, ks in sorted(in_area.items()):
            used = self.used[a] = m.new_bool_var(f"u{a}")
            m.add_max_equality(used, [self.x[k] for k in ks])
            ag = grid.areas[a]
            tree = inst.areas[a]
            dt, dmv = self.drop_trafo.get(ag.trafo, 0), mv_drop(ag.mv)
            hi = max(ub(dt) + ub(dmv), 0)
            lo = min(lb(dt) + lb(dmv), 0)
            root_drop = m.new_int_var(lo, hi, f"W{tree.root}")
            top[root_drop.index] = hi
            if lo:
                low[root_drop.index] = lo
            self.voltage_defs.append(m.add(root_drop == dt + dmv).index)
            drop_at[tree.root] = root_drop
            anchor = {tree.root: tree.root}
            stack = [tree.root]
            while stack:
                u = stack.pop()
                for v in tree.children.get(u, []):
                    line = tree.parent[v][0]
                    if line in self.drop_line:
                        hi = max(ub(drop_at[u]) + ub(self.drop_line[line]), 0)
                        lo = min(lb(drop_at[u]) + lb(self.drop_line[line]), 0)
                        w = m.new_int_var(lo, hi, f"W{v}")
                        top[w.index] = hi
                        if lo:
                            low[w.index] = lo
                        self.voltage_defs.append(
                            m.add(w == drop_at[u] + self.drop_line[line]).index
                        )
                        drop_at[v], anchor[v] = w, v
                    else:
                        drop_at[v], anchor[v] = drop_at[u], anchor[u]
                    stack.append(v)
            worst: dict[int, int] = {}  # anchor -> the least margin of the leaves behind it
            for b, margin in zip(ag.leaves, ag.leaf_margin.tolist(), strict=True):
                if b in anchor:
                    worst[anchor[b]] = min(worst.get(anchor[b], margin), margin)
            for anc, margin in worst.items():
                self.voltage_rows.append(m.add(drop_at[anc] <= margin).only_enforce_if(used).index)
        volt_checked: set[int] = set()  # options whose terminal voltage is constrained
        for k in opts:
            o = ot[k]
            if o.site is not None:
                st = grid.sites[o.site]
                expr = st.drop * site_load[o.site] + mv_drop(st.mv) + o.cable_drop
            elif o.via != -1:  # a transfer's twin: planning/transfers.py
                continue
            elif o.area is not None and (ob := inst.options[k].bus) is not None and ob in drop_at:
                expr = drop_at[ob] + o.cable_drop
            else:
                continue
            self.voltage_rows.append(m.add(expr <= o.margin).only_enforce_if(self.x[k]).index)
            if o.site is None:
                volt_checked.add(k)
        self._forced(opts, volt_checked)
        # the AC check's linear cuts; one with relief holds until one of its upgrades is built
        fresh: dict[int, list[int]] = {}  # element -> relief upgrades made here
        for u in sorted({u for r in grid.cut_relief for u in r} - set(self.y)):
            self.y[u] = m.new_bool_var(f"y{u}")
            fresh.setdefault(element_key(inst.upgrades[u]), []).append(u)
        for us in fresh.values():
            if len(us) > 1:
                m.add_at_most_one(self.y[u] for u in us)
        chosen_held = set(fixed.chosen) if fixed is not None else set()
        for j, ((coefs, rhs), relief) in enumerate(zip(grid.cuts, grid.cut_relief, strict=True)):
            cut_terms = [c * self.x[k] for k, c in coefs.items() if k in self.x]
            if not cut_terms:
                continue
            holds = self._cut_holds(grid.cut_when[j], chosen_held, part is not None)
            if holds is False:  # none of the options that make it hold can be chosen here
                continue
            # a cut broken with no new load at all (the linear estimate falls short of the AC
            # state) keeps every option it names out
            room = max(rhs, 0)
            if part is not None and len(cut_terms) < len(coefs):
                # this part's share: what it used in the held plan, plus its share of the rest
                held_use = {k: c for k, c in coefs.items() if k in chosen_held}
                mine_use = sum(c for k, c in held_use.items() if k in self.x)
                share = len(cut_terms) / len(coefs)
                room = max(0, math.floor(mine_use + (room - sum(held_use.values())) * share))
            ct = m.add(sum(cut_terms) <= room)
            if holds is not True:  # held only while one of the options it names is chosen
                ct.only_enforce_if([holds, *(self.y[u].Not() for u in relief)])
            elif relief:
                ct.only_enforce_if([self.y[u].Not() for u in relief])
            if relief and holds is True:
                row = capacity_row(
                    f"cut {j}",
                    [
                        (inst.options[k].demand, self.x[k].index, c)
                        for k, c in coefs.items()
                        if k in self.x
                    ],
                    room,
                    [([self.y[u].index for u in relief], None)],
                )
                if row is not None:
                    self.capacity_rows.append(row)
        add_transfers(self, opts, drop_at)  # feeder splits (planning/transfers.py)
        # cost, and design load served
        self.cost = (
            sum(grid.up_cost[u] * v for u, v in self.y.items())
            + sum(grid.sites[s].cost * v for s, v in self.z.items())
            + sum(ot[k].cost * self.x[k] for k in opts)
        )
        self.served_units = sum(
            load_units(inst.demands[i].design_kw) * s for i, s in self.served.items()
        )
        #: the cost of building every option at once: a budget above it does not bind (and a
        #: huge one, e.g. 1e30, would overflow CP-SAT's 64-bit coefficients)
        self.max_cost = (
            sum(grid.up_cost[u] for u in self.y)
            + sum(grid.sites[s].cost for s in self.z)
            + sum(ot[k].cost for k in opts)
        )
        self.budget_cny = budget_cny

    def _cut_holds(self, when: frozenset[int], held: set[int], in_part: bool) -> Any:
        """Whether an AC cut holds: True (always: ``when`` is empty, or an option of it is
        chosen in another part's held plan), False (none of ``when`` can be chosen here), or a
        boolean true whenever one of them is chosen (one per set of options)."""
        if not when:
            return True
        if in_part and any(k in held and k not in self.x for k in when):
            return True
        mine = sorted(k for k in when if k in self.x)
        if not mine:
            return False
        key = frozenset(mine)
        if key not in self._holds:
            w = self.m.new_bool_var(f"holds{len(self._holds)}")
            for k in mine:
                self.m.add_implication(self.x[k], w)
            self._holds[key] = w
        return self._holds[key]

    def _forced(self, opts: list[int], volt_checked: set[int]) -> None:
        """Valid inequalities the linear relaxation lacks (they cut off no integer plan): an
        option whose own load alone is more than an element on its path carries, or whose own
        drop alone at the impedances as built is more than its terminal's margin, is chosen
        only with an upgrade there that suffices. Without them the relaxation pays a fraction of
        an upgrade for a fraction of an option, and proves little (the district's bound was the
        plan without any physics)."""
        grid, m, ot = self.grid, self.m, self.grid.options
        for k in opts:
            o = ot[k]
            if o.area is None or o.site is not None:
                continue
            ag = grid.areas[o.area]
            path = [grid.lines[ln] for ln in o.path] + [grid.trafos[ag.trafo]]
            for el in path:
                if o.units <= el.cap:
                    continue
                enough = [u for u, c in zip(el.upgrades, el.up_cap, strict=True) if c >= o.units]
                if not enough:
                    m.add(self.x[k] == 0)
                    break
                m.add(sum(self.y[u] for u in enough) >= self.x[k])
            own = o.cable_drop + sum(el.drop * o.units for el in path)
            if k in volt_checked and own > o.margin:
                ups = [
                    u
                    for el in path
                    for u, c in zip(el.upgrades, el.up_drop, strict=True)
                    if c < el.drop or el.relief(u) > 0
                ]
                if ups:
                    m.add(sum(self.y[u] for u in ups) >= self.x[k])
                else:
                    m.add(self.x[k] == 0)

    def held(self, sol: Solution) -> Solution:
        """``sol``'s choices in this model's part, as they are (status ``"held"``, no
        bound)."""
        return Solution.of(
            self.inst,
            [k for k in sol.chosen if k in self.x],
            [u for u in sol.upgrades if u in self.y],
            [s for s in sol.sites if s in self.z],
            "held",
        )

    def _failed(self, solver, status, t0: float) -> Solution:
        name = solver.status_name(status).lower()
        return self._failed_solution(name, time.perf_counter() - t0)

    @staticmethod
    def _failed_solution(name: str, secs: float) -> Solution:
        return Solution([], [], [], [], math.nan, name, math.nan, math.nan, math.nan, secs)

    def _hinted_served(self) -> int | None:
        """Design load units the hint serves (None: no hint)."""
        if not self.m.proto.solution_hint.vars:
            return None
        vals = dict(
            zip(self.m.proto.solution_hint.vars, self.m.proto.solution_hint.values, strict=True)
        )
        total = 0
        for i, sv in self.served.items():
            if vals.get(sv.index, 0):
                total += load_units(self.inst.demands[i].design_kw)
        return total

    @property
    def bound_held_out(self) -> list[int]:
        """The rows a bounding HiGHS thread holds out: the voltage limits and the rows that
        only define what they read (:attr:`voltage_defs`). Measured on the district's first
        optimal round (seed 1, 36 s, one thread): 24,370 of its 50,618 rows; HiGHS's bound
        37.38 M CNY with the limits alone held out, 37.79 M with their definitions too."""
        return [*self.voltage_rows, *self.voltage_defs]

    def _must_serve(self, served: list[int]) -> None:
        """Valid inequalities once the model fixes the demands ``served`` (each must be
        served; :mod:`lvplan.planning.strengthen`): the site covers (so many of the sites that
        alone serve a cluster are built) and the forced upgrades (an element that the least
        loads of those demands overfill is upgraded). Noted in :attr:`site_covers` and
        :attr:`forced`."""
        ot = self.grid.options
        only, units = sites_alone({i: [ot[k] for k in self._options_of.get(i, [])] for i in served})
        if only:
            caps = {s: self.grid.sites[s].cap for s in set().union(*only.values())}
            for sites, weights, n in site_covers(only, units, caps):
                self.m.add(sum(w * self.z[s] for s, w in zip(sites, weights, strict=True)) >= n)
                self.site_covers.append((sites, n))
        y_at = {v.index: v for v in self.y.values()}
        options = {i: frozenset(self.x[k].index for k in ks) for i, ks in self._options_of.items()}
        for name, holds in forced_upgrades(self.capacity_rows, served, options):
            self.m.add(sum(y_at[j] for j in holds) >= 1)
            self.forced.append(name)

    def relaxation_bound(
        self, sol: Solution, *, time_limit_s: float, pool: CutPool | None = None
    ) -> tuple[float | None, dict[str, Any]]:
        """A lower bound (CNY, None: none in the time) on the cost of every plan of this model
        that serves the demands ``sol`` serves: the linear relaxation, strengthened by the
        residual-capacity inequalities (:class:`lvplan.planning.mipbound.MipBound`,
        ``lp_only``), with no search. For a city group whose time leaves no room for CP-SAT to
        move from the greedy plan: its 40,000-bus model's relaxation takes ~15 s where a
        search of that length on one core kept the hint and proved 0. This model is spent."""
        served = {self.inst.options[k].demand for k in sol.chosen}
        for i, sv in self.served.items():
            self.m.add(sv == int(i in served))
        self._must_serve([i for i in self.served if i in served])
        self.m.minimize(self.cost)
        rel = Relaxation(self.capacity_rows, pool)
        mb = MipBound(
            self.m.proto,
            time_limit_s,
            relaxation=rel,
            lp_only=True,
            voltage_rows=self.bound_held_out,
        ).start()
        bound = mb.result(wait_s=1.0)
        info: dict[str, Any] = {
            "relaxation": bound,
            "relaxation_rounds": rel.rounds,
            "relaxation_carried": rel.carried,
            "highs_status": mb.status,
            "highs_s": round(mb.seconds, 2),
            "bound_by": "relaxation",
        }
        return bound, info

    def hint(self, sol: Solution, *, time_limit_s: float = 10.0) -> bool:
        """Start the search from ``sol``: its choices are completed (every load, drop and 10 kV
        variable) by a solve with them fixed, and the whole assignment becomes the hint, so
        the search begins with a feasible solution. False when ``sol`` does not fit the model
        (the hint is then the choices alone)."""
        self.hinted = sol
        # (a hint given before, which did not fit, is dropped: CP-SAT with two values hinted
        # for one variable, each fixed, finds no plan at all)
        self.m.clear_hints()
        chosen, ups, sites = set(sol.chosen), set(sol.upgrades), set(sol.sites)
        for k, v in self.x.items():
            self.m.add_hint(v, k in chosen)
        for u, v in self.y.items():
            self.m.add_hint(v, u in ups)
        for sid, v in self.z.items():
            self.m.add_hint(v, sid in sites)
        solver = cp_model.CpSolver()
        solver.parameters.fix_variables_to_their_hinted_value = True
        solver.parameters.max_time_in_seconds = time_limit_s
        solver.parameters.num_workers = 1
        status = interrupt.solve(solver, self.m)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            self.hint_complete = False
            return False
        self.hint_complete = True
        self.m.clear_hints()
        for i in range(len(self.m.proto.variables)):
            v = self.m.get_int_var_from_proto_index(i)
            self.m.add_hint(v, solver.value(v))
        return True

    def _hint_values(self) -> dict[int, int]:
        h = self.m.proto.solution_hint
        return dict(zip(h.vars, h.values, strict=True))

    def _hint_served_now(self) -> dict[int, int]:
        """Whether the hint serves each demand (1 or 0), by the demand's index."""
        hv = self._hint_values()
        return {i: hv.get(sv.index, 0) for i, sv in self.served.items()}

    def _searched_from(self, accept: Callable[[Solution], bool] | None) -> Solution | None:
        """The start of a search of the hint's neighbourhoods (:meth:`_by_neighbourhoods`):
        the hinted plan, given the caller's AC check (``accept``) and a complete hint that
        serves more than :data:`NEIGHBOURHOODS_MIN_DEMANDS` demands; else None."""
        if accept is None or not self.hint_complete:
            return None
        start = self._hinted_plan()
        return start if len(start.chosen) > NEIGHBOURHOODS_MIN_DEMANDS else None

    def _hinted_plan(self) -> Solution:
        """The complete hint as a plan, its objective in the model's units (as CP-SAT would
        report it)."""
        hv = self._hint_values()
        chosen = [k for k, v in self.x.items() if hv.get(v.index, 0)]
        ups = [u for u, v in self.y.items() if hv.get(v.index, 0)]
        sites = [sid for sid, v in self.z.items() if hv.get(v.index, 0)]
        return Solution.of(
            self.inst,
            chosen,
            ups,
            sites,
            "feasible",
            objective=self._model_cost(chosen, ups, sites),
        )

    def _model_cost(self, chosen: list[int], ups: list[int], sites: list[int]) -> float:
        g = self.grid
        return float(
            sum(g.up_cost[u] for u in ups)
            + sum(g.sites[sid].cost for sid in sites)
            + sum(g.options[k].cost for k in chosen)
        )

    def _from_hint(self, solver, t0: float) -> Solution:
        """The complete hint as the answer of a cost solve that found nothing better in its
        time (status ``feasible``), with the bound CP-SAT proved on the cost (NaN if none)."""
        out = self._hinted_plan()
        obj = out.objective
        bound = float(solver.best_objective_bound)
        if not (math.isfinite(bound) and 0 <= bound <= obj):
            bound = math.nan
        out.bound = bound
        out.gap = abs(obj - bound) / max(abs(obj), 1e-9) if math.isfinite(bound) else math.nan
        out.seconds = time.perf_counter() - t0
        out.from_hint = True
        return out

    def _by_neighbourhoods(
        self,
        companion: MipBound,
        start: Solution,
        time_limit_s: float,
        workers: int,
        accept: Callable[[Solution], bool],
        seed: int,
        t0: float,
        probe: Callable[[Solution], dict[str, int]] | None = None,
    ) -> Solution:
        """The cost stage as a large-neighbourhood search from ``start``, the complete hint
        (:func:`lvplan.planning.polish.neighbourhoods`, each cheaper plan taken only when
        ``accept``, the caller's AC check, passes it) on every worker, beside the strengthened
        relaxation (``companion``, which stops there: HiGHS's own bound would take a core from
        the search), for ``time_limit_s`` from now (``t0``: the solve's start).

        Why: with too little time for the neighbourhood of the relaxation, CP-SAT searched the
        whole model from the hint and, on the district's seed 2 (60 s; the greedy plan's three
        passes leave the round 28-31 s), ended where it started (47,561,397 CNY from the greedy
        plan's 47,562,901); so did the relaxation's neighbourhood given the round (its plan
        broke a voltage limit it holds out, and with them back HiGHS found nothing cheaper).
        Neighbourhoods of a few areas' demands from the greedy plan, on two workers for 47 s,
        found 43,682,064 CNY; for the time left (35-38 s), 39.1-44.9 M in 9 runs. ``probe``:
        the caller's AC check as the room each element lacked, for a plan ``accept`` refused
        (the neighbourhood is searched again with those rows tightened: ``shortfall``).
        The plan is ``optimal`` when a neighbourhood that held no connection was solved to
        optimality; its bound is otherwise the relaxation's."""
        from lvplan.planning.polish import neighbourhoods

        t_in = time.perf_counter()
        best, proved = neighbourhoods(
            self,
            start,
            time_limit_s=time_limit_s - (time.perf_counter() - t_in),
            workers=workers,
            seed=seed,
            accept=accept,
            whole_first=True,  # (a small model is proved at once, as CP-SAT's search would)
            shortfall=probe,
        )
        obj = self._model_cost(best.chosen, best.upgrades, best.sites)
        bounds: dict[str, Any] = {"cp_sat": None, "bound_by": None, "plan_by": "neighbourhoods"}
        if proved:
            companion.stop()
            bound, bounds["bound_by"] = obj, "neighbourhoods"
        else:
            bound = self._mip_bound(companion, bounds, -math.inf, obj)
        if not math.isfinite(bound):
            bound = math.nan
        out = Solution.of(
            self.inst,
            best.chosen,
            best.upgrades,
            best.sites,
            "optimal" if proved else "feasible",
            objective=obj,
            bound=bound,
            gap=abs(obj - bound) / max(abs(obj), 1e-9) if math.isfinite(bound) else math.nan,
            seconds=time.perf_counter() - t0,
        )
        out.bounds = bounds
        out.from_hint = best is start
        return out

    @staticmethod
    def _mip_bound(companion: MipBound, bounds: dict[str, Any], bound: float, obj: float) -> float:
        """The larger of ``bound`` and HiGHS's, noted in ``bounds`` (never above the plan
        found: a bound past it would be the MIP's rounding)."""
        other = companion.result()
        bounds.update(highs=other, highs_status=companion.status)
        bounds["highs_s"] = round(companion.seconds, 2)
        rel = companion.relaxation
        if rel is not None and (rel.rounds or rel.carried):
            bounds.update(
                relaxation_strengthened=rel.value,
                relaxation_rounds=rel.rounds,
                relaxation_carried=rel.carried,
            )
        if other is not None and other > bound:
            # the strengthened relaxation's value stands for the bound when HiGHS's own solve
            # was not run, failed, ran past the wait or proved less: then it proved this bound
            lp = companion.lp_bound
            bounds["bound_by"] = "relaxation" if lp is not None and other <= lp else "highs"
            return min(other, obj)
        return bound

    def _run(self, time_limit_s: float, workers: int, gap: float):
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = max(0.05, float(time_limit_s))
        solver.parameters.num_workers = max(1, int(workers))
        solver.parameters.relative_gap_limit = gap
        solver.parameters.linearization_level = LINEARIZATION_LEVEL
        status = interrupt.solve(solver, self.m)
        return solver, status

    def rehint(self, solver) -> None:
        """Every variable hinted at ``solver``'s values (the next search starts from them)."""
        self.m.clear_hints()
        for i in range(len(self.m.proto.variables)):
            v = self.m.get_int_var_from_proto_index(i)
            self.m.add_hint(v, solver.value(v))

    def solve(
        self,
        *,
        time_limit_s: float,
        workers: int = 2,
        gap: float = 0.0,
        mip_bound: bool = False,
        bound_only: bool = False,
        pool: CutPool | None = None,
        probe: Callable[[Solution], dict[str, int]] | None = None,
        accept: Callable[[Solution], bool] | None = None,
        seed: int = 0,
        search_s: float | None = None,
    ) -> Solution:
        """Lexicographic: first the most design kW served (skipped when the hint serves every
        servable demand), then the least cost serving those demands; with a budget, the most kW
        within it, then the least cost. The gap reported is the cost's (with a budget, the
        most kW any plan within it serves is ``bounds["served_units_bound"]``, the least of
        CP-SAT's and HiGHS's, which bounds the first stage alone). With ``mip_bound`` (and
        at least :data:`MIP_BOUND_MIN_S` left for the cost), HiGHS bounds the same model on a
        thread beside CP-SAT's search (:mod:`lvplan.planning.mipbound`); the larger bound is
        reported, and ``Solution.bounds`` says which and both. With ``bound_only`` too, that
        bound is the strengthened relaxation's alone, and no plan is searched beside CP-SAT
        (a city group's worker has one core); given ``accept`` and a complete hint, the cost
        stage is a search of the hint's neighbourhoods (:meth:`_by_neighbourhoods`): on a
        36,000-bus city group CP-SAT's search of the whole model on one core took the greedy
        plan from 120.0 M CNY to 117.0 M, the neighbourhoods to 100.7-101.3 M. ``pool``: the
        residual-capacity inequalities an
        earlier model of the same plan found (one that this model only tightens: a verification
        round's), made again here before the first round of separation, and this model's
        added to it (:class:`lvplan.planning.mipbound.CutPool`). ``probe``: the AC check of
        the neighbourhood's first plan, as the load units to take off the room of each line's
        and transformer's capacity it found short, by the name of the capacity's drop
        (:attr:`capacity_cts`); the diving thread's later searches hold them
        (:meth:`lvplan.planning.mipbound.MipBound._probed`). ``accept``: the caller's AC
        check of a plan; with it, a round with too little time for the neighbourhood of the
        relaxation (:data:`DIVE_MIN_S`) searches neighbourhoods of its complete hint instead of
        the whole model (:meth:`_by_neighbourhoods`; ``seed`` draws them), for ``search_s``
        from the solve's start when that is longer than ``time_limit_s`` (its plans are checked
        as found: the caller needs no time after it for a check or a repair)."""
        t0 = time.perf_counter()
        self.served_proven = None if self.budget_cny is not None else True
        companion: MipBound | None = None
        diver: MipBound | None = None
        if self.budget_cny is not None:
            cap = int(min(math.floor(self.budget_cny), self.max_cost))
            self.m.add(self.cost <= cap)
            if mip_bound and time_limit_s >= MIP_BOUND_MIN_S:
                # HiGHS bounds the most kW within the budget (the first stage alone, as a
                # maximisation: its bound comes back negated), beside CP-SAT on one worker
                most = self.m.clone()
                most.maximize(self.served_units)
                companion = MipBound(
                    most.proto,
                    time_limit_s,
                    relaxation=Relaxation(self.capacity_rows, pool),
                    voltage_rows=self.bound_held_out,
                    negated=True,
                ).start()
            self.m.maximize(self.served_units * (cap + 1) - self.cost)
            solver, status = self._run(
                time_limit_s, workers if companion is None else max(1, workers - 1), gap
            )
        else:
            everyone = sum(load_units(self.inst.demands[i].design_kw) for i in self.served)
            hinted = self._hinted_served()
            first = hinted is None or hinted < everyone  # (a first stage, the most kW)
            # a round that would search its hint's neighbourhoods after the first stage (less
            # than DIVE_MIN_S left of a large model's round, below)
            start = None
            after = (1.0 - FIRST_STAGE_SHARE) * time_limit_s
            if first and mip_bound and not bound_only and MIP_BOUND_MIN_S <= after < DIVE_MIN_S:
                start = self._searched_from(accept)
            if first:
                if start is not None:
                    # ... serves its hint's demands, with no first stage: the model is one too
                    # large for CP-SAT to search whole in the time, and the first stage is such
                    # a search (on the district, seed 2: no plan at all in its 7.4 s, after
                    # which the round served the hint's demands anyway). Not proven the most kW
                    self.served_proven = False
                    now = self._hint_served_now()
                else:  # stage 1: the most kW served
                    self.m.maximize(self.served_units)
                    solver, status = self._run(FIRST_STAGE_SHARE * time_limit_s, workers, 0.0)
                    more = status in (cp_model.OPTIMAL, cp_model.FEASIBLE) and (
                        hinted is None
                        or not self.hint_complete
                        or solver.objective_value > hinted + 0.5
                    )
                    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE) and not more:
                        # no more kW than the (complete) hint serves: its demands, and its plan as
                        # the cost stage's start (another set of as many kW, with a plan made only
                        # to serve them, cost twice the greedy plan on a city group, and its
                        # bound was for other demands than the plan returned)
                        self.served_proven = status == cp_model.OPTIMAL
                        now = self._hint_served_now()
                    elif more:
                        self.served_proven = status == cp_model.OPTIMAL
                        now = {i: int(solver.value(sv)) for i, sv in self.served.items()}
                        self.rehint(solver)
                        # its plan is complete, and a plan of stage 2 too: the search's start, and
                        # the answer if stage 2 finds nothing in its time
                        self.hint_complete = True
                    elif self.hint_complete:  # no time to serve more: the hint's demands
                        self.served_proven = False
                        now = self._hint_served_now()
                    else:
                        return self._failed(solver, status, t0)
                # stage 2 serves exactly these demands (the cost's bound is then for them)
                for i, sv in self.served.items():
                    self.m.add(sv == now[i])
                self._must_serve([i for i, v in now.items() if v])
                self.m.clear_objective()
            else:
                self.m.add(self.served_units >= everyone)
                # (every demand with load must be served; one of none is left to the model)
                loaded = [i for i in self.served if load_units(self.inst.demands[i].design_kw)]
                self._must_serve(loaded)
            self.m.minimize(self.cost)
            left = max(1.0, time_limit_s - (time.perf_counter() - t0))
            if mip_bound and bound_only and left >= MIP_BOUND_MIN_S:
                rel = Relaxation(self.capacity_rows, pool)
                companion = MipBound(
                    self.m.clone().proto,
                    left,
                    relaxation=rel,
                    lp_only=True,
                    voltage_rows=self.bound_held_out,
                )
                companion.start()
                if start is None:
                    start = self._searched_from(accept)
                if accept is not None and start is not None:
                    until = max(time_limit_s, search_s or 0.0) - (time.perf_counter() - t0)
                    return self._by_neighbourhoods(
                        companion, start, until, workers, accept, seed, t0, probe
                    )
            elif mip_bound and (start is not None or MIP_BOUND_MIN_S <= left < DIVE_MIN_S):
                # too little time for the relaxation's neighbourhood: the bound alone, beside
                # CP-SAT on every worker for the whole time; or, given the caller's AC check,
                # the hint's neighbourhoods beside the relaxation (_by_neighbourhoods)
                rel = Relaxation(self.capacity_rows, pool)
                if start is None:
                    start = self._searched_from(accept)
                companion = MipBound(
                    self.m.clone().proto,
                    left,
                    relaxation=rel,
                    lp_only=start is not None,  # (the search's workers need the cores)
                    voltage_rows=self.bound_held_out,
                ).start()
                if accept is not None and start is not None:
                    until = max(time_limit_s, search_s or 0.0) - (time.perf_counter() - t0)
                    return self._by_neighbourhoods(
                        companion, start, until, workers, accept, seed, t0, probe
                    )
            elif mip_bound and left >= DIVE_MIN_S:
                # the options and the sites the relaxation takes whole or leaves out are held
                dive = [v.index for v in (*self.x.values(), *self.z.values())]
                proto = self.m.clone().proto
                # two HiGHS threads beside CP-SAT: one looks for a plan in the relaxation's
                # neighbourhood, the other bounds (measured on the district: the same plans as
                # one thread doing both in turn, and a bound 40.2 M against 38.7 M). The
                # bounding thread strengthens the relaxation first (residual-capacity
                # inequalities, planning/strengthen.py) and the diving one searches again
                # around it when its first search ends early
                rel = Relaxation(self.capacity_rows, pool)
                inc = None
                if self.hint_complete:  # the search's start: a plan of this model
                    hv = self._hint_values()
                    inc = [hv.get(i, 0) for i in range(len(proto.variables))]
                # both hold the voltage limits out (a relaxation; the diver checks its plan
                # against them: MipBound._search)
                decisions = [
                    v.index for vs in (self.x, self.y, self.z, self.served) for v in vs.values()
                ]
                diver = MipBound(
                    proto,
                    left,
                    dive_vars=dive,
                    relaxation=rel,
                    incumbent=inc,
                    voltage_rows=self.voltage_rows,
                    decisions=decisions,
                    probe=self._probe_of(probe) if probe is not None else None,
                ).start()
                companion = MipBound(
                    proto, left, relaxation=rel, voltage_rows=self.bound_held_out
                ).start()
            # (beside the two HiGHS threads, CP-SAT searches on one: two cores are all CI has)
            if diver is None:
                solver, status = self._run(left, workers, gap)
            else:
                solver, status = self._run(CPSAT_SHARE * left, 1, gap)
            if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE) and self.hint_complete:
                out = self._from_hint(solver, t0)
                out.bounds = {"cp_sat": out.bound, "bound_by": "cp_sat"}
                if companion is not None:  # HiGHS may still bound the hint's cost
                    have = out.bound if math.isfinite(out.bound) else -math.inf
                    bound = self._mip_bound(companion, out.bounds, have, out.objective)
                    if bound > have:
                        out.bound = min(bound, out.objective)
                        out.gap = abs(out.objective - out.bound) / max(abs(out.objective), 1e-9)
                    out = self._dived(diver or companion, out, t0)
                return out
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            for c in (companion, diver):
                if c is not None:
                    c.stop()
            return self._failed(solver, status, t0)
        name = solver.status_name(status).lower()
        chosen = [k for k, v in self.x.items() if solver.value(v)]
        ups = [u for u, v in self.y.items() if solver.value(v)]
        sites = [sid for sid, v in self.z.items() if solver.value(v)]
        obj, bound = solver.objective_value, solver.best_objective_bound
        bounds: dict[str, Any] = {"cp_sat": bound, "bound_by": "cp_sat"}
        if self.budget_cny is not None:
            # the objective is kW first (served units x (cap + 1) - cost, cost <= cap), so
            # CP-SAT's bound B caps the units any plan within the budget serves at
            # floor((B + cap) / (cap + 1)); the plan's objective and bound stay its cost (the
            # rounds compare costs), and the kW bound goes to the summary (plan.py)
            units = math.floor((solver.best_objective_bound + cap) / (cap + 1) + 1e-9)
            have = int(solver.value(self.served_units))
            bounds["cp_sat"] = units * KW_UNIT  # (in design kW, as the summary has it)
            if companion is not None:
                if status == cp_model.OPTIMAL:
                    companion.stop()
                other = companion.result()  # the least of -units: at most -other units
                bounds.update(highs_status=companion.status, highs_s=round(companion.seconds, 2))
                if other is not None:
                    bounds["highs"] = -other * KW_UNIT
                    if -other < units:
                        lp = companion.lp_bound
                        by = "relaxation" if lp is not None and other <= lp else "highs"
                        bounds["bound_by"] = by
                        units = int(-other)
            bounds["served_units_bound"] = max(units, have)
            obj = bound = float(solver.value(self.cost))
        elif companion is not None:
            if status == cp_model.OPTIMAL:
                companion.stop()
                if diver is not None:
                    diver.stop()
            else:
                bound = self._mip_bound(companion, bounds, bound, obj)
        if self.budget_cny is None and bound < 0:
            # every cost is >= 0, so 0 is a bound; CP-SAT's own was once below it (the city's
            # group 24: -2,623,713 CNY, a gap of 105.95 %)
            bound = 0.0
        secs = time.perf_counter() - t0
        gap_v = abs(obj - bound) / max(abs(obj), 1e-9) if obj else 0.0
        out = Solution.of(
            self.inst, chosen, ups, sites, name, objective=obj, bound=bound, gap=gap_v, seconds=secs
        )
        out.bounds = bounds
        if diver is not None and status != cp_model.OPTIMAL:
            out = self._dived(diver, out, t0)
        return out

    def _probe_of(
        self, probe: Callable[[Solution], dict[str, int]]
    ) -> Callable[[list[int]], dict[int, int]]:
        """``probe`` as the diving thread calls it: a plan as every proto variable's value, the
        rows to tighten by their proto index."""

        def by_index(values: list[int]) -> dict[int, int]:
            sol = Solution.of(
                self.inst,
                [k for k, v in self.x.items() if values[v.index]],
                [u for u, v in self.y.items() if values[v.index]],
                [s for s, v in self.z.items() if values[v.index]],
                "feasible",
            )
            less = probe(sol)
            return {self.capacity_cts[n]: u for n, u in less.items() if n in self.capacity_cts}

        return by_index

    def _dived(self, companion: MipBound, out: Solution, t0: float) -> Solution:
        """``out``, or the plan HiGHS found in the relaxation's neighbourhood when it costs
        less (:mod:`lvplan.planning.mipbound`), once CP-SAT has checked it against this model
        with every variable fixed to it; ``out.bounds`` notes the neighbourhood either way."""
        companion.result()  # (at most a few seconds past its deadline)
        lp = companion.lp_bound
        if lp is not None and not (math.isfinite(out.bound) and out.bound >= lp):
            out.bound = min(lp, out.objective)
            out.gap = abs(out.objective - out.bound) / max(abs(out.objective), 1e-9)
            out.bounds["bound_by"] = "relaxation"
        vals, obj = companion.dive_values, companion.dive_objective
        rel = companion.relaxation
        out.bounds.update(
            relaxation=lp,
            relaxation_strengthened=(
                rel.value if rel is not None and (rel.rounds or rel.carried) else None
            ),
            relaxation_rounds=rel.rounds if rel is not None else 0,
            relaxation_carried=rel.carried if rel is not None else 0,
            relaxation_rows=len(rel.cuts) if rel is not None else 0,
            dive=obj,
            dive_status=companion.dive_status,
            dive_probe=companion.probe_status,
            dive_s=round(companion.dive_s, 2),
        )
        if companion._thread.is_alive():  # (its values may be half written)
            out.bounds["dive_status"] = "still running at the wait's end"
            return out
        if vals is None or obj is None or obj >= out.objective:
            return out
        dived = self._fixed(vals, out, t0, DIVE_CHECK_S)
        if isinstance(dived, str):
            out.bounds["dive_status"] = dived
            return out
        # the search's plans before its last, for the caller when the AC check breaks this one
        # where its repair is dear (planning/mipbound.py MipBound._earlier): those of this model
        # cheaper than the plan CP-SAT found, each checked as the dive's plan was
        t_alt = time.perf_counter()
        for alt in companion.dive_alternatives:
            got = self._fixed(alt, out, t0, ALTERNATIVE_CHECK_S)
            if not isinstance(got, str):
                dived.alternatives.append(got)
        out.bounds["dive_alternatives"] = [round(a.objective) for a in dived.alternatives]
        out.bounds["dive_alternatives_s"] = round(time.perf_counter() - t_alt, 2)
        dived.bounds = dict(out.bounds, plan_by="highs_dive")
        return dived

    def _fixed(self, vals: list[int], out: Solution, t0: float, limit_s: float) -> Solution | str:
        """The plan whose decisions are ``vals`` (every proto variable's value, HiGHS's) as a
        :class:`Solution` of this model, once CP-SAT has checked it with every decision fixed and
        it costs less than ``out``; else why not (a status for ``dive_status``)."""
        # its decisions (connections, upgrades, sites, demands served) are held, and CP-SAT
        # works out every load and drop from them: HiGHS's values of those, rounded, may be off
        # by its tolerance
        self.m.clear_hints()
        decisions = (*self.x.values(), *self.y.values(), *self.z.values(), *self.served.values())
        for v in decisions:
            self.m.add_hint(v, vals[v.index])
        check = cp_model.CpSolver()
        check.parameters.max_time_in_seconds = limit_s
        check.parameters.num_workers = 1
        check.parameters.fix_variables_to_their_hinted_value = True
        status = interrupt.solve(check, self.m)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):  # not a plan of this model
            return f"rejected ({check.status_name(status).lower()})"
        cost = float(check.objective_value)
        if cost >= out.objective:  # (never a dearer plan in place of the one found)
            return "dearer than CP-SAT's plan"
        bound = out.bound if math.isfinite(out.bound) else math.nan
        bound = min(bound, cost) if math.isfinite(bound) else bound
        fixed = Solution.of(
            self.inst,
            [k for k, v in self.x.items() if check.value(v)],
            [u for u, v in self.y.items() if check.value(v)],
            [sid for sid, v in self.z.items() if check.value(v)],
            "feasible",
            objective=cost,
            bound=bound,
            gap=abs(cost - bound) / max(abs(cost), 1e-9) if math.isfinite(bound) else math.nan,
            seconds=time.perf_counter() - t0,
        )
        fixed.bounds = dict(out.bounds, plan_by="highs_dive")
        return fixed
