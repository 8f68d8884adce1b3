"""The greedy plan, eDisGo style: the comparison for the optimum, and its hint.

Demands are taken one at a time (by year, then file order). For each connection option the
greedy finds the cheapest measures that make it fit, on the same linear physics as the
optimiser (:class:`lvplan.planning.linear.LinearGrid`): for current, the cheapest upgrade of
each overloaded line and transformer that carries the new load; for voltage, while a leaf or a
terminal of the area is below its margin, the upgrade on the worst point's path with the most
voltage gained per CNY. It takes the option of least total cost (service cable, measures, a new
substation). A connection is never moved; a measure it planned gives way to another on the
same element that carries the load when a later demand overloads that element (as eDisGo
reinforces an element again: the plan builds the last one, and the option costs the
difference, which may be nothing or less), unless the planned
measure lifts an AC cut or was kept from an earlier round. A demand no option can serve stays
unserved. With a budget, a demand whose cheapest fit costs more than what is left is passed
over; the plan (``plan.py``) then also runs the demands by cost per kW
(:meth:`Greedy.by_cost_per_kw`) and keeps the plan that serves more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from lvplan.planning.candidates import element_key
from lvplan.planning.linear import N1_WITHDRAWN, Element, LinearGrid, mv_units
from lvplan.planning.model import Solution
from lvplan.planning.transfers import line_label, split_leaf_slack

_INF = 1 << 62


@dataclass
class _State:
    line_load: dict[int, int] = field(default_factory=dict)
    trafo_load: dict[int, int] = field(default_factory=dict)
    site_load: dict[int, int] = field(default_factory=dict)
    built: dict[int, int] = field(default_factory=dict)  # element key -> upgrade chosen
    sites: set[int] = field(default_factory=set)
    src: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # load per source
    #: the 10 kV drop at every area's and site's row with the committed loads (grid.mv @ src, in
    #: grid.mv's fine units: :func:`~lvplan.planning.linear.mv_units`), kept up to date on
    #: each commit: a trial adds one column, so a check is linear
    mv_drop: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    terminals: dict[int, list[int]] = field(default_factory=dict)  # area -> chosen options
    site_terms: dict[int, list[int]] = field(default_factory=dict)
    cut_used: list[int] = field(default_factory=list)
    #: per cut, whether it holds: it always does, or an option that makes it hold
    #: (``LinearGrid.cut_when``) is taken
    cut_on: list[bool] = field(default_factory=list)
    slack: dict[int, int] = field(default_factory=dict)  # area -> slack without the 10 kV drop
    site_slack: dict[int, int] = field(default_factory=dict)
    #: options taken at a site of one unit, moved with it to its site of two (old -> new)
    moved: dict[int, int] = field(default_factory=dict)


def _cap(el: Element, up: int | None) -> int:
    return el.cap if up is None else el.up_cap[el.upgrades.index(up)]


def _key(g: LinearGrid, u: int) -> int:
    """The element key of an upgrade (as in _State.built): a line id, or -1 - trafo id."""
    return element_key(g.inst.upgrades[u])


def _coef(el: Element, up: int | None) -> int:
    return el.drop if up is None else el.up_drop[el.upgrades.index(up)]


class Greedy:
    def __init__(
        self, grid: LinearGrid, keep: tuple[int, ...] = (), skip_sites: frozenset[int] = frozenset()
    ):
        """``keep``: upgrades built before any demand is taken (the N-1 measures an earlier
        round of the same plan built: kept, so that the rounds' N-1 measures only grow).
        ``skip_sites``: sites whose options :meth:`run` does not take."""
        self.g = grid
        self._skip_sites = skip_sites
        self.why = ""
        self.st = _State(
            cut_used=[0] * len(grid.cuts),
            cut_on=[not w for w in grid.cut_when],
            src=np.zeros(grid.mv.shape[1], np.int64),
            mv_drop=np.zeros(grid.mv.shape[0], np.int64),
        )
        for u in keep:
            if u not in grid.banned:
                self.st.built[element_key(grid.inst.upgrades[u])] = u
        self._kept = frozenset(keep)
        #: (rows, slacks, area or -1, site or -1) of the areas and sites with a slack: arrays
        #: remade after a commit changed them
        self._slack_arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._explaining: Solution | None = None  # the plan :meth:`explain` has built in
        self._options_of: dict[int, list[int]] | None = None  # each demand's options
        inst = grid.inst
        #: a site of two units -> the site of one at its place and tie (``Site.twin_of``)
        self._single_of = {s.id: s.twin_of for s in inst.sites if s.twin_of is not None}
        #: a plan's own choices being committed as they are (:meth:`explain`, :meth:`extend`):
        #: a plan may build a site of one unit and its site of two, each with its own
        #: connections, which no move may merge
        self._replaying = False
        #: (demand, site) -> its option there
        self._at = {(o.demand, o.site): k for k, o in enumerate(inst.options) if o.site is not None}

    # -- voltage slack of one area under given loads and upgrades --------------------------------
    def _area_slack(
        self,
        a: int,
        line_load: dict[int, int],
        trafo_load: int,
        built: dict[int, int],
        extra_term: int | None,
    ) -> tuple[int, list[int]]:
        """The smallest (margin - drop) over the area's leaves and chosen terminals (plus
        ``extra_term``), the 10 kV term left out, and the worst point's path (lines)."""
        g = self.g
        ag = g.areas[a]
        terms = list(self.st.terminals.get(a, []))
        if extra_term is not None:
            terms.append(extra_term)
        # only the lines on a connection's path carry new load (every other drop is 0)
        d = np.zeros(len(ag.lines), np.int64)
        for ln in {ln for k in terms for ln in g.options[k].path}:
            if ln in g.lines and ln in ag.line_pos:
                d[ag.line_pos[ln]] = _coef(g.lines[ln], built.get(ln)) * line_load.get(ln, 0)
        # what a built upgrade gives back to today's load, on every bus beyond it
        for ln in ag.lines:
            if ln in built and ln in g.lines:
                d[ag.line_pos[ln]] -= g.lines[ln].relief(built[ln])
        tr = g.trafos[ag.trafo]
        d_t = _coef(tr, built.get(-1 - ag.trafo)) * trafo_load - tr.relief(built.get(-1 - ag.trafo))
        # a transfer's new cable (not a line of the area's tree): its own drop
        cable = {
            ln: g.lines[ln].drop * line_load.get(ln, 0)
            for k in terms
            for ln in g.options[k].path
            if ln not in ag.line_pos and ln in g.lines
        }
        worst, path = _INF, []
        if len(ag.leaves):
            leaf = ag.leaf_margin - (ag.leaf_paths @ d) - d_t
            i = int(np.argmin(leaf))
            worst = int(leaf[i])
            cols = ag.leaf_paths.indices[ag.leaf_paths.indptr[i] : ag.leaf_paths.indptr[i + 1]]
            path = [ag.lines[c] for c in cols]
        if g.splits:
            ups = {u for u in built.values() if u in g.splits}
            v = split_leaf_slack(g, a, d, d_t, ups, cable) if ups else _INF
            if v < worst:
                worst, path = v, []
        for k in terms:
            o = g.options[k]
            v = o.margin - o.cable_drop - d_t
            v -= sum(int(d[ag.line_pos[ln]]) if ln in ag.line_pos else cable[ln] for ln in o.path)
            if v < worst:
                worst, path = v, o.path
        return worst, path

    def _drop(self, row: int, col: int, units: int) -> int:
        """The 10 kV drop at ``row`` with the committed loads and ``units`` more at ``col``
        (none: -1)."""
        d = int(self.st.mv_drop[row])
        return mv_units(d + int(self.g.mv[row, col]) * units if col >= 0 else d)

    def _mv_ok(self, col: int, units: int, skip_area: int | None, skip_site: int | None) -> bool:
        """Every other area and site keeps its voltage with ``units`` more at source ``col``
        (one vectorised pass: the committed drops plus that column)."""
        if self._slack_arrays is None:
            g, st = self.g, self.st
            at = [g.areas[a].mv for a in st.slack] + [g.sites[s].mv for s in st.site_slack]
            self._slack_arrays = (
                np.array(at, np.int64),
                np.array([*st.slack.values(), *st.site_slack.values()], np.int64),
                np.array([*st.slack, *([-1] * len(st.site_slack))], np.int64),
                np.array([*([-1] * len(st.slack)), *st.site_slack], np.int64),
            )
        rows, slack, area, site = self._slack_arrays
        if not rows.size:
            return True
        drop = self.st.mv_drop[rows]
        if col >= 0:
            drop = drop + self.g.mv[rows, col] * units
        bad = slack < mv_units(drop)
        if skip_area is not None:
            bad &= area != skip_area
        if skip_site is not None:
            bad &= site != skip_site
        return not bool(bad.any())

    def _site_slack(
        self, sid: int, load: int, extra: int | None, terms: list[int] | None = None
    ) -> int:
        g = self.g
        if terms is None:
            terms = list(self.st.site_terms.get(sid, []))
        terms = terms + ([] if extra is None else [extra])
        worst = _INF
        for k in terms:
            o = g.options[k]
            worst = min(worst, o.margin - o.cable_drop - g.sites[sid].drop * load)
        return worst

    # -- one option ----------------------------------------------------------------------------
    def _no(self, why: str) -> tuple[int, dict[int, int]] | None:
        """No fit, and why (for :meth:`explain`)."""
        self.why = why
        return None

    def explain(self, sol: Solution, demand: int) -> str:
        """Why no option of ``demand`` fits the plan ``sol`` (its choices taken as built). The
        plan is built into this greedy's state once: explain every unserved demand of one plan
        with one instance (a fresh one for another plan)."""
        inst = self.g.inst
        if self._explaining is None:
            self._explaining = sol
            self._replaying = True
            for k in sol.chosen:
                self._commit(k, {})
            self._replaying = False
            for u in sol.upgrades:
                if u in self.g.banned:  # not in the model any more: taken as not built
                    continue
                self.st.built[element_key(inst.upgrades[u])] = u
        elif self._explaining is not sol:
            raise ValueError("Greedy.explain: one plan per instance")
        if self._options_of is None:  # (once: a loop over every option per demand was
            # quadratic, minutes for 20,000 unserved demands)
            self._options_of = {}
            for k, o in enumerate(inst.options):
                self._options_of.setdefault(o.demand, []).append(k)
        by_why: dict[str, list[str]] = {}
        for k in self._options_of.get(demand, []):
            o = inst.options[k]
            self.why = ""
            if self._try(k) is None:
                where = inst.sites[o.site].name if o.site is not None else f"bus {o.bus}"
                by_why.setdefault(self.why or "no room", []).append(where)
        parts = []
        for why, wheres in by_why.items():
            more = f", +{len(wheres) - 2} more" if len(wheres) > 2 else ""
            parts.append(f"{why} (at {', '.join(wheres[:2])}{more})")
        return "; ".join(parts) or (
            "an option fits the linear model once measures this plan did not build are added; "
            "the plan left it out (their cost over the budget, the greedy's order, or no plan "
            "serving it found in the time given)"
        )

    def cheapest_fit(self, demand: int) -> int | None:
        """The cost (CNY) of the cheapest fit of ``demand`` on the network as this greedy holds
        it (a service cable, measures, a new substation); None: no option fits."""
        fits = [
            r[0]
            for k, o in enumerate(self.g.inst.options)
            if o.demand == demand and (r := self._try(k)) is not None
        ]
        return min(fits) if fits else None

    def _try(self, k: int) -> tuple[int, dict[int, int]] | None:
        """(cost, new upgrades by element key) that make option ``k`` fit, or None."""
        g = self.g
        relief = self._relief(k)
        if relief is None:
            return None
        r = self._try_measures(k)
        if r is None:
            return None
        cost, new = r
        for key, (u, lifts) in relief.items():
            if key in new:  # the option's own measure on that element must also lift the cut
                if new[key] not in lifts:
                    return self._no(f"element {key} needs two different measures")
                continue
            new[key] = u
            cost += g.up_cost[u]
        return cost, new

    def _relief(self, k: int) -> dict[int, tuple[int, tuple[int, ...]]] | None:
        """The upgrades that lift the AC cuts option ``k`` would break (by element key), or
        None when a cut it breaks has none left to lift it."""
        g, st = self.g, self.st
        out: dict[int, tuple[int, tuple[int, ...]]] = {}
        built = set(st.built.values())
        for c, (coefs, rhs) in enumerate(g.cuts):
            add = coefs.get(k, 0)
            # a cut that does not hold yet holds once one of its options is taken: then the
            # load already counted must fit too
            wakes = not st.cut_on[c] and k in g.cut_when[c]
            if not (st.cut_on[c] or wakes) or (add <= 0 and not wakes):
                continue
            if st.cut_used[c] + add <= max(rhs, 0):
                continue
            relief = g.cut_relief[c]
            if any(u in built for u in relief) or any(v[0] in relief for v in out.values()):
                continue
            free = [u for u in relief if _key(g, u) not in st.built and self._split_ok(u, k)]
            if not free:
                name = g.cut_names[c]
                if name.endswith(N1_WITHDRAWN):  # (a feeder whose N-1 nothing restores)
                    self._no(f"{name[: -len(N1_WITHDRAWN)]} (found by the N-1 check)")
                else:
                    self._no(f"{name} has no room (found by the AC check)")
                return None
            u = min(free, key=lambda u: g.up_cost[u])
            out[_key(g, u)] = (u, relief)
        return out

    def _split_ok(self, u: int, k: int) -> bool:
        """Transfer ``u`` may be built with option ``k``: neither ``k`` nor a connection taken
        already lies in its subtree as built (they would have to move to their twins)."""
        g = self.g
        sp = g.splits.get(u)
        if sp is None:
            return True
        opts = g.inst.options

        def inside(j: int) -> bool:
            return g.options[j].via == -1 and opts[j].bus in sp.buses

        return not inside(k) and not any(inside(j) for j in self.st.terminals.get(sp.area, []))

    def _moves(self, sid: int) -> dict[int, int] | None:
        """The options taken at the site of one unit that site ``sid`` (of two) would take in,
        each to its option at ``sid`` (old -> new): empty when ``sid`` is no such site, it is
        built, or that one is not; None when one of them has no option at ``sid`` or moving it
        would break an AC cut."""
        one = self._single_of.get(sid)
        st = self.st
        if one is None or self._replaying or sid in st.sites or one not in st.sites:
            return {}
        out: dict[int, int] = {}
        for j in st.site_terms.get(one, []):
            n = self._at.get((self.g.inst.options[j].demand, sid))
            if n is None:
                return None
            out[j] = n
        for c, (coefs, rhs) in enumerate(self.g.cuts):  # (the same load, on the same tie)
            more = sum(coefs.get(n, 0) - coefs.get(j, 0) for j, n in out.items())
            if more > 0 and st.cut_used[c] + more > max(rhs, 0):
                return None
        return out

    def _try_measures(self, k: int) -> tuple[int, dict[int, int]] | None:
        g, st = self.g, self.st
        o = g.options[k]
        col, units = o.src, o.units
        if o.site is not None:
            s = g.sites[o.site]
            # a site of two units where its one unit is built: that one's connections move
            # to it, and the plan pays the difference (the eDisGo-style "cheapest measure
            # that makes it fit": a second unit, not a second site with a tie of its own)
            moves = self._moves(o.site)
            if moves is None:
                return self._no(f"{g.inst.sites[o.site].name} cannot take its one unit's load")
            one = self._single_of.get(o.site) if moves else None
            had = st.site_load.get(o.site if one is None else one, 0)
            load = had + o.units
            if load > s.cap:
                return self._no(f"{g.inst.sites[o.site].name} would be over its rating")
            terms = list(moves.values()) if moves else None
            if self._site_slack(o.site, load, k, terms) < self._drop(s.mv, col, units):
                return self._no(f"the voltage at {g.inst.sites[o.site].name}'s customers")
            if not self._mv_ok(col, units, None, o.site if one is None else one):
                return self._no(f"the {self.g.inst.mv} voltage drop it adds elsewhere")
            if one is not None:
                moved = sum(g.options[n].cost - g.options[j].cost for j, n in moves.items())
                return o.cost + s.cost - g.sites[one].cost + moved, {}
            return o.cost + (0 if o.site in st.sites else s.cost), {}
        if o.area is None:
            if not self._mv_ok(col, units, None, None):
                return self._no(f"the {self.g.inst.mv} voltage drop it adds elsewhere")
            return o.cost, {}
        a = o.area
        ag = g.areas[a]
        line_load = dict(st.line_load)
        for ln in o.path:
            line_load[ln] = line_load.get(ln, 0) + o.units
        t_load = st.trafo_load.get(ag.trafo, 0) + o.units
        new: dict[int, int] = {}
        replaced: dict[int, int] = {}  # element key -> the planned measure another replaces
        built = dict(st.built)
        # a transfer's twin builds its transfer; an option inside a built transfer's subtree
        # connects only as its twin
        if o.via == -2:
            return self._no("its transfer is no longer offered")
        if o.via >= 0 and _key(g, o.via) not in built:
            if not self._split_ok(o.via, k):
                return self._no(f"a connection inside the subtree of line {g.splits[o.via].line}")
            new[_key(g, o.via)] = built[_key(g, o.via)] = o.via
        elif o.via == -1 and g.splits:
            bus = g.inst.options[k].bus
            for u in built.values():
                if u in g.splits and bus in g.splits[u].buses:
                    return self._no(f"the subtree of line {g.splits[u].line} is transferred")
        # current: the cheapest sufficient upgrade of each overloaded element
        for key, el, load in [(-1 - ag.trafo, g.trafos[ag.trafo], t_load)] + [
            (ln, g.lines[ln], line_load[ln]) for ln in o.path if ln in g.lines
        ]:
            if load <= _cap(el, built.get(key)):
                continue
            what = f"trafo {ag.trafo}" if key < 0 else line_label(key)
            was = built.get(key)
            if was is not None and (key in new or not self._replaceable(was)):
                return self._no(f"{what} is full, already reinforced")
            # (in place of a planned measure: any other that carries the load, dearer or not:
            # one planned for voltage may cost as much as a larger cable)
            fits = [
                (g.up_cost[u], u)
                for u, c in zip(el.upgrades, el.up_cap, strict=True)
                if c >= load and u != was
            ]
            if not fits:
                return self._no(f"{what} would be overloaded even with the largest measure")
            _c, u = min(fits)
            if was is not None:  # the planned measure gives way to this one on the element
                replaced[key] = was
            new[key] = built[key] = u
        # voltage: the best gain per CNY on the worst point's path, until every point holds
        for _ in range(64):
            slack, path = self._area_slack(a, line_load, t_load, built, k)
            need = self._drop(ag.mv, col, units) - slack
            if need <= 0:
                break
            best: tuple[float, int, int] | None = None
            cands = [(-1 - ag.trafo, g.trafos[ag.trafo], t_load)] + [
                (ln, g.lines[ln], line_load.get(ln, 0)) for ln in path if ln in g.lines
            ]
            for key, el, load in cands:
                if key in built:
                    continue
                if load <= 0:  # (an element no new load crosses has no upgrade in the
                    continue  # model: one built here for its relief alone would not fit it)
                now = el.drop * load
                for u, c, dc in zip(el.upgrades, el.up_cap, el.up_drop, strict=True):
                    gain = now - dc * load + el.relief(u)  # (today's load's drop too)
                    if gain <= 0 or c < load:
                        continue
                    score = min(gain, need) / max(g.up_cost[u], 1)
                    if best is None or score > best[0]:
                        best = (score, key, u)
            if best is None:
                return self._no(f"the LV voltage in the area of trafo {ag.trafo} cannot be held")
            new[best[1]] = built[best[1]] = best[2]
        else:
            return self._no(f"the LV voltage in the area of trafo {ag.trafo} cannot be held")
        if not self._mv_ok(col, units, a, None):
            return self._no(f"the {self.g.inst.mv} voltage drop it adds elsewhere")
        return (
            o.cost
            + sum(g.up_cost[u] for u in new.values())
            - sum(g.up_cost[u] for u in replaced.values()),
            new,
        )

    def _replaceable(self, u: int) -> bool:
        """A planned measure another on the same element may replace: not a transfer, not an
        N-1 measure kept from an earlier round, and not the relief of an AC cut (the cut holds
        only while one of its reliefs is built)."""
        g = self.g
        if u in self._kept or u in g.splits:
            return False
        return not any(u in relief for relief in g.cut_relief)

    def _commit(self, k: int, new: dict[int, int]) -> None:
        g, st = self.g, self.st
        o = g.options[k]
        if o.src >= 0:
            st.src[o.src] += o.units
            st.mv_drop += g.mv[:, o.src] * o.units
        self._slack_arrays = None
        for c, (coefs, _rhs) in enumerate(g.cuts):
            st.cut_used[c] += coefs.get(k, 0)
            if k in g.cut_when[c]:
                st.cut_on[c] = True
        st.built.update(new)
        if o.site is not None:
            moves = self._moves(o.site)
            if moves:  # (checked by _try: its one unit's connections move with it)
                one = self._single_of[o.site]
                for j, n in moves.items():
                    self._move(j, n)
                st.sites.discard(one)
                st.site_load[o.site] = st.site_load.pop(one)
                st.site_terms[o.site] = list(moves.values())
                st.site_terms.pop(one)
                st.site_slack.pop(one, None)
                st.moved.update(moves)
            st.sites.add(o.site)
            st.site_load[o.site] = st.site_load.get(o.site, 0) + o.units
            st.site_terms.setdefault(o.site, []).append(k)
            st.site_slack[o.site] = self._site_slack(o.site, st.site_load[o.site], None)
            return
        if o.area is None:
            return
        ag = g.areas[o.area]
        st.trafo_load[ag.trafo] = st.trafo_load.get(ag.trafo, 0) + o.units
        for ln in o.path:
            st.line_load[ln] = st.line_load.get(ln, 0) + o.units
        st.terminals.setdefault(o.area, []).append(k)
        st.slack[o.area] = self._area_slack(
            o.area, st.line_load, st.trafo_load[ag.trafo], st.built, None
        )[0]

    def _move(self, j: int, n: int) -> None:
        """Taken option ``j`` becomes option ``n`` (the same demand at another site)."""
        g, st = self.g, self.st
        a, b = g.options[j], g.options[n]
        if a.src >= 0:
            st.src[a.src] -= a.units
            st.mv_drop -= g.mv[:, a.src] * a.units
        if b.src >= 0:
            st.src[b.src] += b.units
            st.mv_drop += g.mv[:, b.src] * b.units
        self._slack_arrays = None
        for c, (coefs, _rhs) in enumerate(g.cuts):
            st.cut_used[c] += coefs.get(n, 0) - coefs.get(j, 0)
            if n in g.cut_when[c]:
                st.cut_on[c] = True

    def complete(self, held: list[int], order: list[int]) -> Solution | None:
        """A plan with the options ``held`` first, as they are, and then each demand of
        ``order`` connected greedily (the repair of a plan the AC check broke,
        :mod:`lvplan.planning.repair`); None when a held option or a demand does not fit."""
        sol = self.extend(held, order)
        return sol if sol is not None and sum(sol.served) == len(held) + len(order) else None

    def extend(self, held: list[int], order: list[int]) -> Solution | None:
        """A plan with the options ``held`` first, as they are, and then each demand of
        ``order`` connected greedily where it fits; None when a held option does not fit."""
        self._replaying = True
        try:
            for k in held:
                r = self._try(k)
                if r is None:
                    return None
                self._commit(k, r[1])
        finally:
            self._replaying = False
        return self.run(order, chosen=list(held))

    def by_cost_per_kw(self, order: list[int]) -> list[int]:
        """``order`` sorted by the cost per design kW of each demand's cheapest fit on the
        network as this greedy holds it (none: last; ties keep ``order``): the order in which a
        budget buys the most kW first, as a knapsack's greedy takes items by value per cost."""
        inst = self.g.inst
        by_demand: dict[int, list[int]] = {}
        for k, o in enumerate(inst.options):
            by_demand.setdefault(o.demand, []).append(k)

        def per_kw(i: int) -> float:
            fits = [r[0] for k in by_demand.get(i, []) if (r := self._try(k)) is not None]
            return min(fits) / max(inst.demands[i].design_kw, 1e-9) if fits else math.inf

        rank = {i: (per_kw(i), j) for j, i in enumerate(order)}
        return sorted(order, key=rank.__getitem__)

    def run(
        self, order: list[int], budget_cny: float | None = None, *, chosen: list[int] | None = None
    ) -> Solution:
        """The greedy plan; with a budget, a demand whose cheapest fit costs more than what is
        left of it is passed over. ``chosen``: options committed before (:meth:`complete`)."""
        inst = self.g.inst
        by_demand: dict[int, list[int]] = {}
        for k, o in enumerate(inst.options):
            by_demand.setdefault(o.demand, []).append(k)
        chosen = [] if chosen is None else chosen
        left = math.inf if budget_cny is None else float(budget_cny)
        for i in order:
            best: tuple[int, int, dict[int, int]] | None = None
            for k in by_demand.get(i, []):
                if self._skip_sites and inst.options[k].site in self._skip_sites:
                    continue
                r = self._try(k)
                if r is not None and r[0] <= left and (best is None or r[0] < best[0]):
                    best = (r[0], k, r[1])
            if best is not None:
                self._commit(best[1], best[2])
                chosen.append(best[1])
                left -= best[0]
        moved = self.st.moved  # (options moved to a site of two units with its one unit's)
        return Solution.of(
            inst,
            [moved.get(k, k) for k in chosen],
            sorted(self.st.built.values()),
            sorted(self.st.sites),
            "feasible",
        )
