"""The plan model's linear relaxation, solved again warm after each round of inequalities.

The rounds of :mod:`lvplan.planning.strengthen` solve the relaxation, add the inequalities it
violates, and solve it again. Through MathOpt each solve starts afresh (OR-Tools 9.15's HiGHS
interface rebuilds a model it has solved once it changes): on the SimBench district's first
optimal round (seed 1), 1.2 s for the first round growing to 2.5 s by the sixth on an idle
core, and 2-3 s each beside the plan's other threads, so that the 60 s plan had its 6 rounds
after 17 s. Here the relaxation is handed to HiGHS once, through its own Python interface
(``highspy``), and each round's inequalities are added to the model HiGHS holds: its simplex
goes on from the last basis. Measured on that model: 20 rounds in 14.6 s on an idle core
(0.4-0.9 s each, separation included), and in the 60 s plan 8 rounds in 8.6 s. The first
round's value is MathOpt's to the cent; later ones differ by up to 0.01 %, as an LP with
several optimal vertices gives other inequalities from each (tested against MathOpt with the
same rows added to both: ``tests/test_plan_warmlp.py``).

What the time saved buys (``benchmarks/bench_plan.py``, 60 s): the neighbourhood's search of
:mod:`lvplan.planning.mipbound` starts its second search 5 s earlier, and HiGHS's bound has
more of the minute. Seed 1: 41.87 M CNY after the AC repair (14.3 % below greedy; before:
42.16-42.62 M, 12.8-13.7 %), gap 9.3 % (11.2 %). More rounds (a smaller gain to stop at)
did not pay: 14-15 rounds gave 41.96-41.99 M on seed 1, and on seed 2 CP-SAT, beside them,
kept the greedy plan (0.0 % below it, against 4.9 %).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from lvplan.planning.strengthen import Inequality


class WarmLp:
    """The linear relaxation of a MathOpt model, held by HiGHS (``highspy``) between solves.
    One thread's: HiGHS's object is not shared."""

    def __init__(self, mo: Any):
        """``mo``: the MathOpt model as it stands (its rows held out are free in it, and so here:
        the same relaxation); its integer variables are relaxed."""
        import highspy
        from highspy import _core
        from scipy.sparse import csc_matrix

        mp = mo.export_model()
        n = len(mp.variables.ids)
        m = len(mp.linear_constraints.ids)
        inf = highspy.kHighsInf
        cost = np.zeros(n)
        cost[np.asarray(mp.objective.linear_coefficients.ids, np.int64)] = np.asarray(
            mp.objective.linear_coefficients.values, float
        )
        mat = mp.linear_constraint_matrix
        a = csc_matrix(
            (
                np.asarray(mat.coefficients, float),
                (np.asarray(mat.row_ids, np.int64), np.asarray(mat.column_ids, np.int64)),
            ),
            shape=(m, n),
        )
        lp = highspy.HighsLp()
        lp.num_col_, lp.num_row_ = n, m
        lp.col_cost_ = cost
        lp.col_lower_ = _finite(np.asarray(mp.variables.lower_bounds, float), inf)
        lp.col_upper_ = _finite(np.asarray(mp.variables.upper_bounds, float), inf)
        lp.row_lower_ = _finite(np.asarray(mp.linear_constraints.lower_bounds, float), inf)
        lp.row_upper_ = _finite(np.asarray(mp.linear_constraints.upper_bounds, float), inf)
        lp.offset_ = float(mp.objective.offset)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = a.indptr
        lp.a_matrix_.index_ = a.indices
        lp.a_matrix_.value_ = a.data
        self._inf = inf
        self._ok = highspy.HighsModelStatus.kOptimal
        # (HiGHS's own object: the Python class's first instance in a process prints HiGHS's
        # banner on stdout, where the CLI writes its JSON, and logs through Python callbacks)
        self._h = _core._Highs()
        self._h.setOptionValue("output_flag", False)
        self._h.setOptionValue("threads", 1)
        self._h.passModel(lp)
        self.n = n

    def solve(self, until: float) -> tuple[float, list[float]] | None:
        """The relaxation's value and every variable's, solved by ``until`` (a
        ``time.perf_counter()``); None when HiGHS did not prove it optimal in that time."""
        left = until - time.perf_counter()
        if left <= 0.0:
            return None
        # (HiGHS's clock runs over every solve of this object: the limit is on its total)
        self._h.setOptionValue("time_limit", float(self._h.getRunTime() + left))
        self._h.run()
        if self._h.getModelStatus() != self._ok:
            return None
        value = float(self._h.getInfo().objective_function_value)
        if not math.isfinite(value):
            return None
        return value, list(self._h.getSolution().col_value)

    def add(self, cuts: list[Inequality]) -> None:
        """The inequalities as rows (``lhs - ups <= rhs``); the next solve starts from the last
        basis."""
        if not cuts:
            return
        starts: list[int] = []
        idx: list[int] = []
        val: list[float] = []
        for c in cuts:
            starts.append(len(idx))
            row: dict[int, float] = {}
            for j, k in c.lhs:
                row[j] = row.get(j, 0.0) + k
            for j, k in c.ups:
                row[j] = row.get(j, 0.0) - k
            for j, w in row.items():
                if w:
                    idx.append(j)
                    val.append(w)
        self._h.addRows(
            len(cuts),
            np.full(len(cuts), -self._inf),
            np.asarray([float(c.rhs) for c in cuts]),
            len(idx),
            np.asarray(starts, np.int32),
            np.asarray(idx, np.int32),
            np.asarray(val, float),
        )


def _finite(a: np.ndarray, inf: float) -> np.ndarray:
    """``a`` with its infinities as HiGHS's."""
    a = a.copy()
    a[np.isposinf(a)] = inf
    a[np.isneginf(a)] = -inf
    return a
