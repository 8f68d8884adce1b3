"""A second lower bound on the plan's cost, from a MIP solver, beside CP-SAT's search.

CP-SAT finds good plans from the greedy hint, but in the time a plan has it proves little: its
bound on the SimBench district stayed at the plan without any physics. A MIP solver's linear
relaxation, with its cutting planes, proves more on this model. So the one model
(:class:`lvplan.planning.model.PlanModel`) is also written, exactly, as a mixed-integer program
and given to HiGHS through OR-Tools' MathOpt, on its own thread, while CP-SAT searches; the
plan's proven bound is the larger of the two.

The writing is exact: every variable keeps its integer domain; a linear constraint that holds
only when its enforcement literals are true becomes a big-M on the constraint's own range over
the variables' domains (which the model keeps tight for this); ``bool_or``/``bool_and``/
``at_most_one``/``exactly_one`` and a ``max`` of booleans are their usual linear forms. A model
with any other constraint is not written (no second bound; the plan says so).

**A second plan, from the relaxation** (:class:`MipBound` with ``dive_vars``). CP-SAT starts from
the greedy plan and, in a minute on two cores, moves little from it (on the SimBench district
0.4-1.5 % below it): moving one demand at a time rarely pays, as an upgrade shared by several
demands is saved only when all of them move. The linear relaxation moves them together. So this
thread solves the relaxation (its value is itself a bound), holds every connection option and
new site on which the relaxation and the plan CP-SAT starts from agree (both take it whole, or
both leave it out), and lets HiGHS search the rest, started from that plan (the upgrades stay
free): the *relaxation-induced neighbourhood* (RINS: Danna, Rothberg and Le Pape, Math.
Program. 102, 2005), until the deadline; when HiGHS has searched that neighbourhood whole
before it, it searches again around the relaxation as the bounding thread has strengthened it
and the better plan. Its plans satisfy every constraint of the one model; the
caller checks the cheapest with CP-SAT (each variable fixed to it) before taking it.

**Its earlier plans go with it** (:attr:`MipBound.dive_alternatives`): HiGHS writes each plan
its search improves to a temporary file (``mip_improving_solution_save``), and the last two
before the final plan are kept. The final plan is the cheapest in the linear model, but the AC
check may break it where its repair is dear; the caller then also tries these (seed 1 of the
district, ``--time-limit 64``: the dive's 41.42 M CNY plan broke transformer 82 and its repair
cost 41.66 M; its alternative, 41.55 M, repaired twice, gave 41.53 M, and the plan 41.52 M,
15.0 % below greedy, where it had been 41.63 M, 14.8 %).

**The voltage limits are held out** of HiGHS's model (``voltage_rows``: the big-M rows "a
bus's drop within its margin when its area, or an option, is used"; :func:`to_mip` writes them
free). That is a relaxation, so a bound stays a bound; on the district the limits add nothing to
the relaxation, and written as big-Ms they slowed HiGHS's search several times over. The diving
thread checks its plan against them and, when some break, puts those back (only those) and
searches again (:meth:`MipBound._search`); CP-SAT checks whatever plan it takes against the
whole model.

**The bound** runs on a thread of its own: it first strengthens the relaxation with the
residual-capacity inequalities it violates (:mod:`lvplan.planning.strengthen`; a few rounds,
for at most :data:`SEPARATE_SHARE` of the time, on a relaxation HiGHS holds warm between them:
:mod:`lvplan.planning.warmlp`), hands them to the diving thread
(:class:`Relaxation`), and then lets HiGHS bound the model with them (its presolve and root
cuts take most of a minute on the district).

Measured on the district (``benchmarks/bench_plan.py --seed 1``, 60 s), with the warm
relaxation: 8 rounds in 8.6 s raise it from 34.82 M to 36.67 M CNY; the neighbourhood's plan
41.29 M (42.57 M from the first search); HiGHS's bound 37.99 M. Before it (three runs): the
relaxation 31.86 M CNY, strengthened in 4-5 rounds 34.63-34.74 M, HiGHS's bound with it
37.27-37.47 M after 37-40 s; the neighbourhood's plan 41.88-41.95 M in the first optimal round.
(An older model, before 10 kV cuts, transfers and the sites between two clusters: relaxation
38.70 M, HiGHS 42.95-43.00 M.)
"""

from __future__ import annotations

import contextlib
import datetime
import math
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import numpy as np
from ortools.util.python.solve_interrupter import SolveInterrupter

from lvplan.io.owned_temp import owned_temp_folder
from lvplan.planning import interrupt
from lvplan.planning.strengthen import CapacityRow, Inequality, rebuild, separate
from lvplan.planning.warmlp import WarmLp

#: CP-SAT's "unbounded" domain ends
_INF = 2**62
#: the longest the MIP bound runs (a week)
MAX_SECONDS = 7 * 24 * 3600.0
#: the neighbourhood's search ends this long before the deadline (the caller's wait, HiGHS's
#: coarse clock)
DIVE_MARGIN_S = 4.0
#: the first plan is checked in AC (:meth:`MipBound._probed`) only with this long left: the
#: check takes about a second on the district, and the search after it needs the time
PROBE_MIN_LEFT_S = 10.0
#: the residual-capacity rounds (:mod:`lvplan.planning.strengthen`) take at most this share of
#: the thread's time, and stop when a round raises the relaxation by less than
#: :data:`SEPARATE_MIN_GAIN` of its value
SEPARATE_SHARE = 0.4
SEPARATE_MIN_GAIN = 5e-4
#: the most inequalities a :class:`CutPool` carries (the newest): on the district's 120 s plan,
#: round 3 started from 561-630 of them, one to two per capacity row
POOL_MOST = 5000
#: the neighbourhood search keeps this many of the plans it found before its last (the cheapest
#: of them), as the alternatives of its plan (:attr:`MipBound.dive_alternatives`) ...
ALTERNATIVES_MOST = 2
#: ... on a model of at most this many variables (HiGHS writes each plan it finds to a file,
#: every variable's value: on the district, ~10^5 variables, about 1 MB a plan)
ALTERNATIVES_MOST_VARIABLES = 400_000
_KINDS = ("linear", "bool_or", "bool_and", "at_most_one", "exactly_one", "lin_max")


def to_mip(
    proto,
    *,
    held_out: Collection[int] = (),
    loose: list[tuple[Any, float, float]] | None = None,
    negated: bool = False,
    upper_rows: dict[int, int] | None = None,
) -> Any | None:
    """The CP-SAT model ``proto`` (a minimisation) as a MathOpt model, or None when it holds a
    constraint this cannot write exactly. The linear constraints whose indices are in
    ``held_out`` are written free (no bounds: a relaxation of the model), their rows and bounds
    listed in ``loose`` so that :func:`restore` can put them back. ``negated``: the model may
    be a maximisation, which CP-SAT stores as its negation minimised; that negation is written
    (its bound is the negation's: the caller turns it round). ``upper_rows``: filled with the
    row that holds each linear constraint's upper bound (by the constraint's index).

    The rows are gathered as arrays and handed to MathOpt as one ``ModelProto`` (a 40,000-bus
    city group's model, 1.2 M terms, took 28.9 s written one expression at a time)."""
    from ortools.math_opt import model_pb2
    from ortools.math_opt.python import mathopt
    from scipy.sparse import coo_matrix

    proto = _message(proto)
    n = len(proto.variables)
    lo_int: list[int] = []
    hi_int: list[int] = []
    for v in proto.variables:
        d = v.domain
        if len(d) != 2:  # a domain with holes
            return None
        lo_int.append(int(d[0]))
        hi_int.append(int(d[1]))
    lb = np.asarray(lo_int, float)
    ub = np.asarray(hi_int, float)
    obj = proto.objective
    if obj.scaling_factor not in ((0, 1, -1) if negated else (0, 1)) or not len(obj.vars):
        return None  # a maximisation (CP-SAT negates it) or no objective
    rows = _Rows()
    held = set(held_out)
    free: list[int] = []  # the rows held out
    for ci, c in enumerate(proto.constraints):
        kind = c.WhichOneof("constraint")
        if kind not in _KINDS:
            return None
        if ci in held and kind != "linear":
            return None
        en = list(c.enforcement_literal)
        # off = the sum of (1 - e) over the enforcement literals: 0 when the row is enforced
        off_v = [e if e >= 0 else -e - 1 for e in en]
        off_c = [-1.0 if e >= 0 else 1.0 for e in en]
        off_k = float(sum(1 for e in en if e >= 0))
        if kind == "linear":
            vs, cs, d = list(c.linear.vars), list(c.linear.coeffs), list(c.linear.domain)
            if len(d) != 2:
                return None
            if any(r < 0 for r in vs):  # a negated literal in a sum: not what CP-SAT writes
                return None
            lo = hi = 0  # the sum's range over the domains (exact, in integers)
            for r, k in zip(vs, cs, strict=True):
                a, b = k * lo_int[r], k * hi_int[r]
                lo, hi = (lo + a, hi + b) if a <= b else (lo + b, hi + a)
            if d[1] < _INF and hi > d[1]:  # expr - (hi - d1) * off <= d1
                m = hi - d[1]
                r = rows.add(vs + off_v, cs + [-m * k for k in off_c], -m * off_k, -math.inf, d[1])
                if ci in held:
                    free.append(r)
                if upper_rows is not None:
                    upper_rows[ci] = r
            if d[0] > -_INF and lo < d[0]:  # expr + (d0 - lo) * off >= d0
                m = d[0] - lo
                r = rows.add(vs + off_v, cs + [m * k for k in off_c], m * off_k, d[0], math.inf)
                if ci in held:
                    free.append(r)
        elif kind == "bool_or":  # sum of the literals + off >= 1
            lv, lc, lk = _literals(c.bool_or.literals)
            rows.add(lv + off_v, lc + off_c, lk + off_k, 1.0, math.inf)
        elif kind == "bool_and":  # each literal + off >= 1
            for r in c.bool_and.literals:
                lv, lc, lk = _literals([r])
                rows.add(lv + off_v, lc + off_c, lk + off_k, 1.0, math.inf)
        elif kind in ("at_most_one", "exactly_one"):
            if en:
                return None
            lv, lc, lk = _literals(getattr(c, kind).literals)
            rows.add(lv, lc, lk, -math.inf if kind == "at_most_one" else 1.0, 1.0)
        else:  # lin_max: a boolean that is the largest of booleans
            t = c.lin_max.target
            if en or len(t.vars) != 1 or t.coeffs[0] != 1 or t.offset:
                return None
            args = []
            for e in c.lin_max.exprs:
                if len(e.vars) != 1 or e.coeffs[0] != 1 or e.offset:
                    return None
                if (lo_int[e.vars[0]], hi_int[e.vars[0]]) != (0, 1):
                    return None
                args.append(e.vars[0])
            tv = t.vars[0]
            for a in args:  # target >= each
                rows.add([tv, a], [1.0, -1.0], 0.0, 0.0, math.inf)
            rows.add([tv, *args], [1.0] + [-1.0] * len(args), 0.0, -math.inf, 0.0)
    mp = model_pb2.ModelProto(name="plan")
    mp.variables.ids.extend(range(n))
    mp.variables.lower_bounds.extend(lb.tolist())
    mp.variables.upper_bounds.extend(ub.tolist())
    mp.variables.integers.extend([True] * n)
    mp.objective.maximize = False
    mp.objective.offset = float(obj.offset)
    ov = np.asarray(list(obj.vars), np.int64)
    oc = np.asarray(list(obj.coeffs), float)
    order = np.argsort(ov, kind="stable")
    ov, oc = ov[order], oc[order]
    if ov.size > 1 and (np.diff(ov) == 0).any():  # (a variable twice: its terms summed)
        keep, at = np.unique(ov, return_index=True)
        ov, oc = keep, np.add.reduceat(oc, at)
    mp.objective.linear_coefficients.ids.extend(ov.tolist())
    mp.objective.linear_coefficients.values.extend(oc.tolist())
    m_rows = len(rows.lo)
    lo_arr, hi_arr = np.asarray(rows.lo, float), np.asarray(rows.hi, float)
    lo_arr[free], hi_arr[free] = -math.inf, math.inf
    mp.linear_constraints.ids.extend(range(m_rows))
    mp.linear_constraints.lower_bounds.extend(lo_arr.tolist())
    mp.linear_constraints.upper_bounds.extend(hi_arr.tolist())
    a = coo_matrix(
        (np.asarray(rows.v, float), (np.asarray(rows.r, np.int64), np.asarray(rows.c, np.int64))),
        shape=(m_rows, n),
    ).tocsr()  # (duplicates summed: a variable that is also an enforcement literal)
    a.sum_duplicates()
    a.eliminate_zeros()
    a.sort_indices()
    mat = mp.linear_constraint_matrix
    mat.row_ids.extend(np.repeat(np.arange(m_rows), np.diff(a.indptr)).tolist())
    mat.column_ids.extend(a.indices.tolist())
    mat.coefficients.extend(a.data.tolist())
    mo = mathopt.Model.from_model_proto(mp)
    if loose is not None:
        for r in free:
            loose.append((mo.get_linear_constraint(r), rows.lo[r], rows.hi[r]))
    return mo


def _message(proto):
    """CP-SAT's model as a protobuf message (its Python wrapper reads a field in ~40 us, which
    made most of a city group's 28.9 s): written by CP-SAT to a file and read back."""
    from ortools.sat import cp_model_pb2
    from ortools.sat.python import cp_model

    from lvplan.io.owned_temp import owned_temp_folder

    if isinstance(proto, cp_model_pb2.CpModelProto):
        return proto
    m = cp_model.CpModel()
    m.proto.copy_from(proto)
    # (a private folder under TMPDIR, removed after, and by the next run if this one is killed)
    with owned_temp_folder("mip") as d:
        path = Path(d) / "model.pb"
        if not m.export_to_file(str(path)):
            raise OSError(f"CP-SAT could not write its model to {path}")
        return cp_model_pb2.CpModelProto.FromString(path.read_bytes())


class _Rows:
    """Linear rows as triplets: ``lo <= sum(coef * x) <= hi``, a constant moved to the bounds."""

    def __init__(self) -> None:
        self.r: list[int] = []
        self.c: list[int] = []
        self.v: list[float] = []
        self.lo: list[float] = []
        self.hi: list[float] = []

    def add(self, vs: list[int], cs: list[float], const: float, lo: float, hi: float) -> int:
        row = len(self.lo)
        self.r.extend([row] * len(vs))
        self.c.extend(vs)
        self.v.extend(cs)
        self.lo.append(lo - const)
        self.hi.append(hi - const)
        return row


def _literals(lits) -> tuple[list[int], list[float], float]:
    """The sum of CP-SAT literals (``r`` is x_r, ``-r-1`` is 1 - x_r) as variables,
    coefficients and a constant."""
    vs = [r if r >= 0 else -r - 1 for r in lits]
    cs = [1.0 if r >= 0 else -1.0 for r in lits]
    return vs, cs, float(sum(1 for r in lits if r < 0))


def restore(loose: list[tuple[Any, float, float]]) -> None:
    """The rows :func:`to_mip` wrote free, with their bounds again."""
    for row, lo, hi in loose:
        row.lower_bound, row.upper_bound = lo, hi


class CutPool:
    """The residual-capacity inequalities found so far for one plan, by row name and demand set
    (:attr:`lvplan.planning.strengthen.Inequality.key`), carried from one verification round's
    model to the next. Only the demand sets are carried: each inequality is derived afresh from
    the new model's row of that name (:func:`lvplan.planning.strengthen.rebuild`), so it holds
    there whatever changed (a cut's room, an upgrade banned). The next round's separation then
    starts where the last one's ended (a round's bound thread has seconds; a round ~2 s)."""

    def __init__(self, most: int | None = None) -> None:
        self._keys: dict[tuple[str, tuple[int, ...]], None] = {}
        self._lock = threading.Lock()
        self.most = POOL_MOST if most is None else most

    def add(self, cuts: list[Inequality]) -> None:
        """Adds their keys; past :attr:`most`, the oldest go first (each model's HiGHS gets every
        carried row before its first relaxation, unfiltered). A key found again is renewed."""
        with self._lock:
            for c in cuts:
                self._keys.pop(c.key, None)
                self._keys[c.key] = None
            while len(self._keys) > self.most:
                del self._keys[next(iter(self._keys))]

    def keys(self) -> list[tuple[str, tuple[int, ...]]]:
        with self._lock:
            return list(self._keys)

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys)


class Relaxation:
    """The relaxation as strengthened once, shared by the two HiGHS threads: the bounding thread
    solves it and separates (:mod:`lvplan.planning.strengthen`) before its own solve; the diving
    one then searches the strengthened relaxation's neighbourhood too."""

    def __init__(self, rows: list[CapacityRow], pool: CutPool | None = None):
        """``pool``: the inequalities an earlier model of the same plan found, made again from
        these rows before the first round (:func:`lvplan.planning.strengthen.rebuild`), and
        where this one's go for the next."""
        self.rows = rows
        self.pool = pool
        self.cuts: list[Inequality] = []
        self.value: float | None = None  # the strengthened relaxation's value
        self.values: list[float] | None = None  # ... and its variables' values
        self.rounds = 0
        self.carried = 0  # inequalities made again from the pool
        self.done = threading.Event()


class MipBound:
    """HiGHS's dual bound on one CP-SAT model, computed on a thread (OR-Tools releases the GIL
    while it solves): :meth:`start` before CP-SAT's search, :meth:`result` after it."""

    def __init__(
        self,
        proto,
        time_limit_s: float,
        *,
        dive_vars: list[int] | None = None,
        relaxation: Relaxation | None = None,
        incumbent: list[int] | None = None,
        lp_only: bool = False,
        voltage_rows: Collection[int] = (),
        decisions: list[int] | None = None,
        negated: bool = False,
        probe: Callable[[list[int]], dict[int, int]] | None = None,
    ):
        """``dive_vars``: the proto indices of the booleans the relaxation may hold (connection
        options, sites); with them the thread looks for a plan in the relaxation's
        neighbourhood instead of bounding (its bound is then the relaxation's value).
        ``relaxation``: the one strengthened relaxation of both threads; the bounding one makes
        it, the diving one searches its neighbourhood second. ``incumbent``: a plan of the
        model, every proto variable's value (the CP-SAT hint): the neighbourhoods then hold
        only what it and the relaxation agree on, and start from it. ``lp_only``: the bound is
        the strengthened relaxation's, no MIP solve (a city group's worker has one core).
        ``voltage_rows``: the proto indices of the voltage limits, held out of HiGHS's model
        (a relaxation: the bound stays a bound); ``decisions``: the proto indices of the
        variables that make a plan (connections, upgrades, sites, demands served), with which
        the diving thread checks its plan against those limits (see :meth:`_search`).
        ``negated``: ``proto`` may be a maximisation (a budget's most kW); the bound is then on
        its negation, as CP-SAT stores it (:func:`to_mip`). ``probe``: the AC check of the
        diving thread's first plan (every proto variable's value), as the room (in the row's
        units) to take off each capacity row it found short, by the row's proto index (see
        :meth:`_probed`)."""
        # a limit of years is a limit of none; past this, timedelta and a thread's join overflow
        self.deadline = time.perf_counter() + min(time_limit_s, MAX_SECONDS)
        self.bound: float | None = None
        self.status = "not run"
        self.seconds = 0.0
        #: the relaxation's value (a bound), and the neighbourhood's plan: its objective and
        #: every proto variable's value (None: no plan found)
        self.lp_bound: float | None = None
        self.dive_objective: float | None = None
        self.dive_values: list[int] | None = None
        #: the plans the search that found :attr:`dive_values` found before it, cheapest first
        #: (every proto variable's value; at most :data:`ALTERNATIVES_MOST`): the caller's
        #: fallbacks when its plan breaks a limit in AC whose repair costs more than they do
        self.dive_alternatives: list[list[int]] = []
        self.dive_status = "not run"
        self.dive_s = 0.0
        self._dive_vars = list(dive_vars or [])
        self.relaxation = relaxation
        self._incumbent = list(incumbent) if incumbent is not None else None
        self._lp_only = lp_only
        self._held_out = frozenset(voltage_rows)
        self._decisions = list(decisions or [])
        self._negated = negated
        self._probe = probe
        self._upper_rows: dict[int, int] = {}
        #: the plan held broke the AC check: a plan of the tightened model replaces it even
        #: when dearer
        self._broke = False
        self.probe_status = "not run"
        #: the voltage limits held out, and their bounds (:func:`to_mip` writes them); those a
        #: plan of the search broke are put back (:meth:`_search`), the others still free
        self._loose: list[tuple[Any, float, float]] = []
        self._free = np.zeros(0, bool)
        self._loose_terms: tuple[Any, Any, Any] | None = None
        self._proto = proto
        self._stop = SolveInterrupter()
        self._stopped = threading.Event()
        self._thread = interrupt.native(
            threading.Thread(target=self._run, name="mip-bound", daemon=True)
        )

    def start(self) -> MipBound:
        self._thread.start()
        return self

    def _run(self) -> None:
        from ortools.math_opt.python import mathopt

        t0 = time.perf_counter()
        try:
            mo = to_mip(
                self._proto,
                held_out=self._held_out,
                loose=self._loose,
                negated=self._negated,
                upper_rows=self._upper_rows if self._probe is not None else None,
            )
            self._proto = None
            self._free = np.ones(len(self._loose), bool)
            left = self.deadline - time.perf_counter()
            if mo is None:
                self.status = "model not writable as a MIP"
                return
            if left < 1.0:
                self.status = "no time left"
                return
            if self._dive_vars:
                self._dive(mo)
                self.status = "relaxation only"
                return
            if self.relaxation is not None:  # strengthened first, for both threads
                self._strengthen(mo, self.relaxation)
                self.relaxation.done.set()
                if self._lp_only:
                    self.status = "relaxation only"
                    return
                left = self.deadline - time.perf_counter()
                if left < 1.0:
                    self.status = "no time left"
                    return
            params = mathopt.SolveParameters(time_limit=_seconds(left))
            res = mathopt.solve(mo, mathopt.SolverType.HIGHS, params=params, interrupter=self._stop)
            dual = res.termination.objective_bounds.dual_bound
            self.status = res.termination.reason.name.lower()
            infeasible = res.termination.reason == mathopt.TerminationReason.INFEASIBLE
            if math.isfinite(dual) and not infeasible:  # (infeasible: a plan exists; no bound)
                self.bound = _integral_bound(dual)
        except Exception as exc:  # a failed companion costs the plan its second bound only
            self.status = f"failed: {type(exc).__name__}: {exc}"[:200]
        finally:
            if not self._dive_vars and self.relaxation is not None:
                self.relaxation.done.set()  # (also when this thread failed: never a wait)
            if self.lp_bound is not None and (self.bound is None or self.lp_bound > self.bound):
                self.bound = self.lp_bound  # (the bound solve found less, or did not run)
            self.seconds = time.perf_counter() - t0

    def _relax(self, mo) -> tuple[float, list[float]] | None:
        """The linear relaxation of ``mo``: its value and every variable's (None: not solved)."""
        from ortools.math_opt.python import mathopt

        xs = list(mo.variables())
        try:
            for v in xs:
                v.integer = False
            lp = mathopt.solve(
                mo,
                mathopt.SolverType.HIGHS,
                params=mathopt.SolveParameters(
                    time_limit=_seconds(self.deadline - time.perf_counter())
                ),
                interrupter=self._stop,
            )
        finally:
            for v in xs:
                v.integer = True
        if lp.termination.reason != mathopt.TerminationReason.OPTIMAL:
            return None
        return lp.objective_value(), list(lp.variable_values(xs))

    def _strengthen(self, mo, rel: Relaxation) -> None:
        """Rounds of the relaxation and its violated residual-capacity inequalities
        (:mod:`lvplan.planning.strengthen`), added to ``mo`` and published in ``rel``, for at
        most :data:`SEPARATE_SHARE` of the time, until a round gains little."""
        t0 = time.perf_counter()
        stop_at = t0 + SEPARATE_SHARE * (self.deadline - t0)
        lp = WarmLp(mo)  # (held by HiGHS between the rounds: each starts from the last basis)
        if rel.pool is not None:  # where the last model's rounds ended
            again = rebuild(rel.rows, rel.pool.keys())
            _add(mo, again)
            lp.add(again)
            rel.cuts += again
            rel.carried = len(again)
        while not self._stopped.is_set():
            got = lp.solve(self.deadline)
            if got is None:
                return
            value, vals = got
            gained = rel.value is None or _gained(rel.value, value)
            rel.value, rel.values = value, vals
            self.lp_bound = _integral_bound(value)
            if not gained or time.perf_counter() > stop_at:
                return
            found = separate(rel.rows, vals)
            if not found:
                return
            _add(mo, found)
            lp.add(found)
            rel.cuts += found
            rel.rounds += 1
            if rel.pool is not None:
                rel.pool.add(found)

    def _dive(self, mo) -> None:
        """A plan in the relaxation's neighbourhood (see the module's text), searched until the
        deadline; when HiGHS has searched it all before, a second in the neighbourhood of the
        relaxation the bounding thread has strengthened (its values lie nearer a plan's: fewer
        upgrades paid in fractions). The cheapest stands. (The first search needs its time: on
        the district, HiGHS found its 48.4 M CNY plan after 11-15 s of one core, and a search
        cut at 45 % of the time (CP-SAT on a quarter) found a plan in 1 of 4 runs; at 60 % (CP-SAT
        on a tenth) in 0 of 2.)"""
        t0 = time.perf_counter()
        got = self._relax(mo)
        if got is None:
            self.dive_status = "relaxation: not solved"
            self.dive_s = time.perf_counter() - t0
            return
        self.lp_bound = _integral_bound(got[0])
        rel = self.relaxation
        statuses = [self._search(mo, got[1], self.deadline - DIVE_MARGIN_S)]
        if (
            self._probe is not None
            and self.dive_values is not None
            and not self._stopped.is_set()
            and self.deadline - time.perf_counter() >= PROBE_MIN_LEFT_S
        ):
            self.probe_status = self._probed(mo)
        if rel is not None:
            while not rel.done.wait(0.2):
                if self._stopped.is_set() or time.perf_counter() > self.deadline:
                    break
            left = self.deadline - DIVE_MARGIN_S - time.perf_counter()
            if (
                rel.done.is_set()
                and not self._stopped.is_set()  # (CP-SAT proved its plan: no search needed)
                and rel.values is not None
                and (rel.rounds or rel.carried)  # (strengthened here, or by earlier rounds)
                and left >= 2.0
            ):
                _add(mo, rel.cuts)
                statuses.append(
                    "strengthened: " + self._search(mo, rel.values, self.deadline - DIVE_MARGIN_S)
                )
        self.dive_status = "; ".join(statuses)
        self.dive_s = time.perf_counter() - t0

    def _search(self, mo, vals: list[float], until: float) -> str:
        """The neighbourhood of the relaxation ``vals`` searched (:meth:`_neighbourhood`), its
        plan kept when it costs less than the one held and meets the voltage limits held out of
        ``mo``. When it breaks some, those limits (:meth:`_broken`) are put back for good and
        the neighbourhood is searched again in the time left, until a plan breaks none. Returns
        the searches' statuses.

        Only the broken limits come back: all of them, written as big-Ms, slow HiGHS as below.
        (Before, all came back at the first break; on seed 2 a check of the plan against all
        of them, every decision fixed, said only that one broke.)

        Why the limits are held out: on the district they never bind a plan's cost (the
        greedy plan without them costs the same, and so does the relaxation), but, written as
        big-Ms, they slowed HiGHS's search several times over (the same neighbourhoods of 30-120
        demands: 48.4 M CNY after 10 searches without them, 50.2 M after 18 with them).

        A plan that breaks one with no time left is dropped (one whose limits could not be read
        in the time goes to the caller's check instead, below): on the district (seed 1, 60 s)
        the strengthened neighbourhood's 41.63 M CNY plan went so in some runs, and the plan
        returned cost 42.9 M instead of 41.4-41.5 M. Tried (2026-12-04): a crossover in the
        seconds left, HiGHS with the limits back and every decision on which the broken plan
        and the plan held agree fixed (Rothberg, INFORMS J. Comput. 19, 2007): 447 decisions
        free with CP-SAT's start as a third plan, 199 without; no plan either time in the 2-3
        s, as the plan held breaks the capacity rows the AC check tightened (:meth:`_probed`),
        so HiGHS has no start."""
        status, values, obj, earlier = self._neighbourhood(mo, vals, until)
        unchecked = None  # a plan the limits could not be read at in the time
        while values is not None:
            broken, what = self._broken(mo, values, until), "broken"
            if broken is None:  # (all come back, as before this was done one at a time)
                unchecked = (values, obj, earlier)
                broken, what = np.flatnonzero(self._free).tolist(), "not read in the time"
            if not broken:
                break
            # (only the limits it breaks come back: the search stays as fast as without them)
            restore([self._loose[k] for k in broken])
            self._free[broken] = False
            status += f"; {len(broken)} voltage limit{'s' if len(broken) > 1 else ''} {what}"
            status += ": again with them"
            if until - time.perf_counter() < 2.0:
                status += " (no time left)"
                values = None
                break
            more, values, obj, earlier = self._neighbourhood(mo, vals, until)
            status += ": " + more
        if values is None and unchecked is not None:
            # the caller checks a plan against the whole model, voltage limits and all, with
            # CP-SAT (model.PlanModel._fixed) before it takes it: a plan the limits could not be
            # read at goes to that check rather than away (seed 1 of the district, 60 s, on a
            # busy machine: the search's 40.5 M CNY plan, its limits' reading cut at the
            # deadline, was dropped and the greedy plan's 46.6 M stood)
            values, obj, earlier = unchecked
            status += "; its plan unchecked: to CP-SAT's check"
        if (
            values is not None
            and obj is not None
            and (self.dive_objective is None or obj < self.dive_objective or self._broke)
            and (self._incumbent is None or obj < self._objective(self._incumbent, mo))
        ):
            # (the values first: a reader takes the objective as the sign they are there)
            self.dive_alternatives = earlier
            self.dive_values = values
            self.dive_objective = obj
            self._broke = False
        return status

    def _broken(self, mo, values: list[int], until: float) -> list[int] | None:
        """The voltage limits held out of ``mo`` and still free (their places in
        :attr:`_loose`) that the plan ``values`` breaks. The drops they read are bounded only
        from below in the model (an element's drop at least its load times its impedance), so
        the search leaves them anywhere above; here they are taken at their least, every
        decision fixed to the plan (:meth:`_least`), and each limit is read there (the rows
        are integral: half a unit is the tolerance). None when that fails (no answer in the
        time): :meth:`_search` then puts every limit still free back."""
        if not self._free.any():
            return []
        r, c, v = self._terms()
        least = self._least(mo, values, np.unique(c[v > 0]), until)
        if least is None:
            return None
        act = np.bincount(r, weights=np.asarray(least, float)[c] * v, minlength=len(self._loose))
        lo = np.fromiter((b for _, b, _ in self._loose), float, len(self._loose))
        hi = np.fromiter((b for _, _, b in self._loose), float, len(self._loose))
        return np.flatnonzero(self._free & ((act > hi + 0.5) | (act < lo - 0.5))).tolist()

    def _terms(self) -> tuple[Any, Any, Any]:
        """The terms of the voltage limits held out: each term's limit (its place in
        :attr:`_loose`), variable and coefficient (made once)."""
        if self._loose_terms is None:
            r, c, v = [], [], []
            for k, (row, _, _) in enumerate(self._loose):
                for t in row.terms():
                    r.append(k)
                    c.append(t.variable.id)
                    v.append(t.coefficient)
            self._loose_terms = (np.asarray(r, np.int64), np.asarray(c, np.int64), np.asarray(v))
        return self._loose_terms

    def _least(self, mo, values: list[int], drops, until: float) -> list[int] | None:
        """Every variable's value at the plan ``values`` (its decisions fixed) with the
        variables ``drops`` (those the voltage limits read) as small as the model lets them be:
        HiGHS on ``mo`` with their sum as the objective, the limits still free. None: no
        answer in the time. The model's objective and bounds are restored after."""
        from ortools.math_opt.python import mathopt

        xs = list(mo.variables())
        held = [(xs[i], xs[i].lower_bound, xs[i].upper_bound) for i in self._decisions]
        obj = mo.objective
        saved = [(t.variable, t.coefficient) for t in obj.linear_terms()]
        offset, maximise = obj.offset, obj.is_maximize
        for i in self._decisions:
            xs[i].lower_bound = xs[i].upper_bound = float(values[i])
        try:
            obj.clear()
            obj.is_maximize = False
            for i in drops.tolist():
                obj.set_linear_coefficient(xs[i], 1.0)
            left = max(1.0, min(DIVE_MARGIN_S, until + DIVE_MARGIN_S - time.perf_counter()))
            res = mathopt.solve(
                mo,
                mathopt.SolverType.HIGHS,
                params=mathopt.SolveParameters(time_limit=_seconds(left)),
                interrupter=self._stop,
            )
            if not res.has_primal_feasible_solution():
                return None
            return [round(x) for x in res.variable_values(xs)]
        finally:
            obj.clear()
            for var, k in saved:
                obj.set_linear_coefficient(var, k)
            obj.offset, obj.is_maximize = offset, maximise
            for var, lo, hi in held:
                var.lower_bound, var.upper_bound = lo, hi

    def _neighbourhood(
        self, mo, vals: list[float], until: float
    ) -> tuple[str, list[int] | None, float | None, list[list[int]]]:
        """HiGHS's search with every option and site the relaxation ``vals`` takes whole or
        leaves out held so, until ``until``, started from the plan held. The model's bounds
        are restored after. Returns the search's status, its plan (every variable's value) and
        objective (None, None: none found), and the plans it found before that one
        (:meth:`_earlier`)."""
        from ortools.math_opt.python import mathopt

        xs = list(mo.variables())
        held = []
        inc = self.dive_values if self.dive_values is not None else self._incumbent
        for i in self._dive_vars:
            v, val = xs[i], vals[i]
            if val <= 1e-6 or val >= 1.0 - 1e-6:
                if inc is not None and inc[i] != round(val):
                    continue  # (the incumbent and the relaxation differ: free)
                held.append((v, v.lower_bound, v.upper_bound))
                v.lower_bound = v.upper_bound = float(round(val))
        params = mathopt.SolveParameters(time_limit=_seconds(max(1.0, until - time.perf_counter())))
        start = None
        if inc is not None:  # the search starts from it (a MIP start)
            hint = mathopt.SolutionHint(variable_values=dict(zip(xs, map(float, inc), strict=True)))
            start = mathopt.ModelSolveParameters(solution_hints=[hint])
        files = contextlib.ExitStack()
        saved = None
        if len(xs) <= ALTERNATIVES_MOST_VARIABLES:
            with contextlib.suppress(OSError):  # (none could be made: no alternatives)
                saved = _improving_file(params, files.enter_context(owned_temp_folder("highs")))
        read = saved
        try:
            try:
                res = mathopt.solve(
                    mo,
                    mathopt.SolverType.HIGHS,
                    params=params,
                    model_params=start,
                    interrupter=self._stop,
                )
            except Exception:  # (a start, or an option, HiGHS refuses: search without it)
                if start is None and saved is None:
                    raise
                from ortools.math_opt.solvers import highs_pb2

                params.highs = highs_pb2.HighsOptionsProto()
                read = None  # (the file is removed below all the same)
                res = mathopt.solve(
                    mo, mathopt.SolverType.HIGHS, params=params, interrupter=self._stop
                )
            status = res.termination.reason.name.lower()
            if not res.has_primal_feasible_solution():
                return status, None, None, []
            values = [round(x) for x in res.variable_values(xs)]
            earlier = self._earlier(read, mo, values) if read is not None else []
            return status, values, float(round(res.objective_value())), earlier
        finally:
            for v, lo, hi in held:
                v.lower_bound, v.upper_bound = lo, hi
            files.close()  # (the folder and the file, removed)

    def _earlier(self, saved: Path, mo, values: list[int]) -> list[list[int]]:
        """The plans the search found before its last (``values``), as HiGHS wrote them to
        ``saved`` (every improving plan: :func:`_improving_file`), the cheapest first: at most
        :data:`ALTERNATIVES_MOST`, each with its own connections and sites (``dive_vars``).
        Why: the last plan is the cheapest in the linear model, but the AC check may break it
        where its repair is dear (seed 1 of the district, 60 s: the 41.42 M CNY plan broke
        transformer 82, and its repair cost 41.66 M, where the search's plan before it, 41.55
        M, was repaired to 41.53 M). None of these is checked here: the caller checks them
        against its model (CP-SAT) and in AC before taking one."""
        try:
            plans = _read_improving(saved, len(values), ALTERNATIVES_MOST + 1)
        except OSError:  # (a full disk, a file HiGHS could not write)
            return []
        last = [values[i] for i in self._dive_vars]
        out: list[list[int]] = []
        seen = {tuple(last)}
        for plan in reversed(plans):
            key = tuple(plan[i] for i in self._dive_vars)
            if key in seen:
                continue
            seen.add(key)
            out.append(plan)
        out.sort(key=lambda p: self._objective(p, mo))
        return out[:ALTERNATIVES_MOST]

    def _probed(self, mo) -> str:
        """The first plan checked in AC (``probe``, the caller's), and each capacity row it found
        short tightened in ``mo`` for the searches that follow: a restriction of the model, so
        their plans are still its plans. A plan of the tightened model replaces the one held
        even when dearer (that one breaks a limit; it stays the fallback). Why: the
        neighbourhood's plans fill elements to the last kW of the linear model, and the AC
        check then finds a few transformers and cables over by a fraction of a per cent; on the
        district (seed 1, 60 s) repairing the final plan cost 0.27-0.61 M CNY, and the first
        plan broke mostly the same elements (its AC check: line 6126, transformers 100 and 121;
        the final plan's: transformers 82, 100, 121). With the rows tightened, the second
        search's plan broke 1 limit, and its repair cost nothing (41,550,855 to 41,530,105 CNY).

        Tried: the options of the tightened rows left free in the next neighbourhood (not held
        where the plan and the relaxation agree): its plan (41,157,124 CNY) broke a voltage
        limit held out of the model, and no time was left to search again with them (with them
        from the start, no plan in 23 s)."""
        if self._probe is None or self.dive_values is None:
            return "not run"
        try:
            less = self._probe(list(self.dive_values))
        except Exception as exc:  # (a failed check costs the searches their tightening only)
            return f"failed: {type(exc).__name__}: {exc}"[:200]
        n = 0
        for ci, units in less.items():
            r = self._upper_rows.get(ci)
            if r is None or units <= 0:
                continue
            row = mo.get_linear_constraint(r)
            row.upper_bound = row.upper_bound - units
            n += 1
        if n:
            self._broke = True
        return f"{n} capacities tightened" if n else "passed AC (as far as capacities go)"

    @staticmethod
    def _objective(values: list[int], mo) -> float:
        """The objective of ``mo`` at ``values`` (every variable's, in order)."""
        obj = mo.objective
        at = dict(zip(mo.variables(), values, strict=True))
        return obj.offset + sum(t.coefficient * at[t.variable] for t in obj.linear_terms())

    def stop(self) -> None:
        """CP-SAT has proved its plan optimal: no second bound or plan is needed. The thread
        starts nothing more (no further round of inequalities, no second neighbourhood), and
        returns at once. A HiGHS solve already running goes on to its own time limit, at the
        latest the deadline: MathOpt's HiGHS does not heed the interrupter (OR-Tools 9.15), so
        waiting for it here would only hold the plan up."""
        self._stopped.set()
        self._stop.interrupt()

    def result(self, wait_s: float = 5.0) -> float | None:
        """The bound (None: none), waiting at most ``wait_s`` past the deadline; if a solve is
        still running then (it ends at its own time limit), the relaxation's value stands for
        its bound."""
        if self._thread.ident is None:  # never started
            return self.bound
        self._thread.join(max(0.0, self.deadline - time.perf_counter()) + wait_s)
        if self._thread.is_alive():
            self._stop.interrupt()
            return self.lp_bound
        return self.bound


def _add(mo, cuts: list[Inequality]) -> None:
    """The inequalities as rows of the MathOpt model ``mo``."""
    from ortools.math_opt.python import mathopt

    xs = list(mo.variables())
    for c in cuts:
        lhs = mathopt.fast_sum(k * xs[j] for j, k in c.lhs)
        ups = mathopt.fast_sum(k * xs[j] for j, k in c.ups)
        mo.add_linear_constraint(lhs - ups <= c.rhs)


def _improving_file(params, folder: Path) -> Path:
    """The file in ``folder`` into which HiGHS writes every improving plan of the solve with
    ``params`` (its options ``mip_improving_solution_save``/``_file``), set in ``params``. The
    folder is the caller's, private and swept if this process dies
    (:func:`lvplan.io.owned_temp.owned_temp_folder`)."""
    from ortools.math_opt.solvers import highs_pb2

    path = folder / "improving.sol"
    opts = highs_pb2.HighsOptionsProto()
    opts.bool_options["mip_improving_solution_save"] = True
    opts.string_options["mip_improving_solution_file"] = str(path)
    params.highs = opts
    return path


def _read_improving(path: Path, n: int, most: int) -> list[list[int]]:
    """The last ``most`` plans of a HiGHS improving-solution file, in the order found, each the
    values of its ``n`` columns rounded (a block ``Objective v``, ``# Columns n``, then ``name
    value`` per column); a block cut short (HiGHS stopped while writing it) is left out."""
    # (only the file's tail: a column's line is under 40 bytes; HiGHS may have written
    # hundreds of plans)
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - most * (40 * n + 200)))
        blocks = f.read().decode(errors="replace").split("Objective ")[1:]
    out = []
    for block in blocks[-most:]:
        lines = block.split("\n", n + 2)
        if len(lines) < n + 2 or lines[1].strip() != f"# Columns {n}":
            continue
        try:
            out.append([round(float(ln.rsplit(" ", 1)[-1])) for ln in lines[2 : n + 2]])
        except (ValueError, OverflowError):  # (a value HiGHS wrote as nan or inf)
            continue
    return out


def _seconds(s: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=max(0.0, min(s, MAX_SECONDS)))


def _gained(before: float, after: float) -> bool:
    """Whether a round of inequalities raised the relaxation's value (a minimum) by at least
    :data:`SEPARATE_MIN_GAIN` of its size; the size, not the value, as a budget model's value
    is a negated kW and below zero."""
    return after > before + SEPARATE_MIN_GAIN * abs(before)


def _integral_bound(dual: float) -> float:
    """The objective is integral CNY: a solver's bound, less its tolerance, rounded up."""
    return float(math.ceil(dual - 1e-6 * max(1.0, abs(dual))))
