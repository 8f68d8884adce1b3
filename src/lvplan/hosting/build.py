"""Cut a Network into one :class:`AreaProblem` per LV area (after one base load flow).

Everything here is computed once per network and criteria profile: the areas' exact AC
matrices from pandapower's ``Ybus``, their judged limits, the pre-existing-violation rule, and
(through :class:`OutsideModel`) how their roots and the limits outside them respond.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from lvplan.criteria import Criteria
from lvplan.decision import _context
from lvplan.hosting.area import AreaProblem, root_gain_summary
from lvplan.hosting.outside import AreaSummary, OutsideModel
from lvplan.hosting.prepare_pool import EngineView, build_areas
from lvplan.model.network import Network
from lvplan.powerflow.lv_area import AreaCut, AreaUnsupported, branch_incidence, cut_area


@dataclass
class Prepared:
    problems: list[AreaProblem]
    unsupported: list[tuple[np.ndarray, str]]  # (pp buses, reason): decided by full AC
    slack_buses: np.ndarray  # LV buses that are slack buses themselves
    bus_transformer: dict[int, str]  # pp bus -> name of the transformer feeding its area
    area_trafos: dict[int, list[int]]  # engine label -> pp trafo ids
    bus_trafo: dict[int, int]  # pp bus -> the (first) transformer feeding its area
    #: the MV model the problems' outside rows come from, and each problem's roots (internal
    #: buses): what :mod:`lvplan.hosting.secant` checks the answers against
    outside: OutsideModel | None = None
    roots: list[np.ndarray] = field(default_factory=list)


def _group(keys: np.ndarray) -> dict[int, np.ndarray]:
    """Positions of each non-negative key, grouped (one sort, no per-key scan)."""
    idx = np.flatnonzero(keys >= 0)
    if idx.size == 0:
        return {}
    order = idx[np.argsort(keys[idx], kind="stable")]
    k = keys[order]
    cuts = np.flatnonzero(np.diff(k)) + 1
    return {int(g[0]): pos for g, pos in zip(np.split(k, cuts), np.split(order, cuts), strict=True)}


def _local(rows_csr, local_of, ncols: int) -> sp.csr_matrix:
    """The rows with their columns renumbered to the area's local order (sparse)."""
    coo = rows_csr.tocoo()
    out = sp.csr_matrix(
        (coo.data, (coo.row, local_of(coo.col))), shape=(rows_csr.shape[0], ncols), dtype=complex
    )
    out.sum_duplicates()
    return out


def prepare(
    network: Network,
    criteria: Criteria,
    *,
    pf: float,
    scope: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    trafos: set[int] | None = None,
    workers: int = 1,
) -> Prepared:
    """The map's area problems. ``scope``: row masks (bus, line, trafo) of elements left out
    of the judgement (the N-1 map judges the MV network only); ``trafos``: build the problems
    of the areas fed by these transformers only; ``workers``: processes that build them, where
    there are enough areas for it to pay (:func:`lvplan.hosting.prepare_pool.build_areas`)."""
    ctx = _context(network, criteria)
    eng = network.fast_engine()
    net = network.pp
    lim = ctx.limits
    n = eng.n
    tan = float(np.tan(np.arccos(pf)))

    # per internal bus: limits, a representative pandapower bus, answered pandapower buses
    pp_ids = net.bus.index.to_numpy()
    ib_all = eng.bus_lookup[pp_ids]
    live = network.live.bus & (ib_all < n)
    vmin_int = np.full(n, -np.inf)
    vmax_int = np.full(n, np.inf)
    judged = live & np.isfinite(lim.vmin)
    if scope is not None:
        judged &= ~scope[0]
    np.maximum.at(vmin_int, ib_all[judged], lim.vmin[judged])
    np.minimum.at(vmax_int, ib_all[judged], lim.vmax[judged])
    rep = np.full(n, -1, np.int64)
    rep[ib_all[live][::-1]] = pp_ids[live][::-1]
    bus_label = _LazyLabels(rep)

    # per internal branch: kind, label, loading factors, limit, judged
    nbr = eng.f_bus.size
    kinds = [""] * nbr
    labels = [""] * nbr
    kf = np.zeros(nbr)
    kt = np.zeros(nbr)
    lim_pct = np.full(nbr, np.inf)
    br_judged = np.zeros(nbr, bool)
    br_trafo_pp = np.full(nbr, -1, np.int64)
    for tab, rows, kfa, kta, limit, live_m, kind, word in (
        (
            "line",
            eng.line_rows,
            "_line_kf",
            "_line_kt",
            lim.line_max,
            network.live.line,
            "line",
            "line",
        ),
        (
            "trafo",
            eng.trafo_rows,
            "_trafo_kf",
            "_trafo_kt",
            lim.trafo_max,
            network.live.trafo,
            "transformer",
            "trafo",
        ),
    ):
        if not len(rows):
            continue
        ids = net[tab].index.to_numpy()
        live_rows = (rows >= 0) & live_m
        if tab == "trafo":  # which unit feeds an area, judged or not
            br_trafo_pp[rows[live_rows]] = ids[live_rows]
        ok = live_rows
        if scope is not None:
            ok = ok & ~scope[1 if tab == "line" else 2]
        r = rows[ok]
        kf[r] = getattr(eng, kfa)[ok]
        kt[r] = getattr(eng, kta)[ok]
        lim_pct[r] = limit
        br_judged[r] = True
        for rr, i in zip(r.tolist(), ids[ok].tolist(), strict=True):
            kinds[rr] = kind
            labels[rr] = f"{word} {i}"

    outside = OutsideModel(
        eng, vmin_int, vmax_int, bus_label, (kinds, labels, kf, kt, lim_pct, br_judged)
    )

    lab = eng.lv_label
    is_ref = np.zeros(n, bool)
    is_ref[eng.ref] = True
    buses_by_label = _group(lab)
    f, t = eng.f_bus, eng.t_bus
    br_lab = np.where(lab[f] >= 0, lab[f], lab[t])
    rows_by_label = _group(br_lab)
    lv_pp = live & (lim.vn_kv < 1.0)
    pp_lab = np.full(pp_ids.size, -1, np.int64)
    pp_lab[lv_pp] = lab[ib_all[lv_pp]]
    pp_by_label = _group(pp_lab)
    slack_pp = pp_ids[lv_pp & is_ref[np.minimum(ib_all, n - 1)]]

    # the pre-existing rule: the most severe base violation inside each area blocks it
    blocked: dict[int, tuple[str, str]] = {}
    line_pos = {int(i): k for k, i in enumerate(net.line.index)}
    trafo_pos = {int(i): k for k, i in enumerate(net.trafo.index)}
    for v in ctx.base_judgement.violations:
        kind_s, _, ident = v.element.partition(" ")
        if not ident.lstrip("-").isdigit():
            continue
        i = int(ident)
        a = -1
        if scope is not None and _out_of_scope(net, scope, kind_s, i):
            continue
        if kind_s == "bus" and i in net.bus.index:
            a = int(lab[eng.bus_lookup[i]]) if eng.bus_lookup[i] < n else -1
        elif kind_s == "line" and i in line_pos:
            r = eng.line_rows[line_pos[i]]
            a = int(br_lab[r]) if r >= 0 else -1
        elif kind_s == "trafo" and i in trafo_pos:
            r = eng.trafo_rows[trafo_pos[i]]
            a = int(br_lab[r]) if r >= 0 else -1
        if a >= 0 and a not in blocked:
            blocked[a] = (v.element, v.element_name)

    limits_int = (vmin_int, vmax_int, bus_label)
    branches = (kinds, labels, kf, kt, lim_pct, br_judged)
    trafo_names = lim.trafo_names
    problems: list[AreaProblem] = []
    unsupported: list[tuple[np.ndarray, str]] = []
    area_trafos: dict[int, list[int]] = {}
    bus_transformer: dict[int, str] = {}
    bus_trafo: dict[int, int] = {}
    roots_of: list[tuple[int, np.ndarray]] = []
    summaries: list[AreaSummary] = []
    tasks: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for label, Lall in buses_by_label.items():
        answered = pp_by_label.get(label)
        rows = rows_by_label.get(label, np.zeros(0, np.int64))
        tr_pp = sorted({int(x) for x in br_trafo_pp[rows] if x >= 0})
        area_trafos[label] = tr_pp
        if tr_pp:
            name = trafo_names[trafo_pos[tr_pp[0]]] or f"trafo {tr_pp[0]}"
            if answered is not None:
                for b in pp_ids[answered].tolist():
                    bus_transformer[int(b)] = name
                    bus_trafo[int(b)] = tr_pp[0]
        if answered is None or (trafos is not None and not trafos.intersection(tr_pp)):
            continue
        ans_pp = pp_ids[answered]
        ans_ib = ib_all[answered]
        keep = ~is_ref[ans_ib]
        ans_pp, ans_ib = ans_pp[keep], ans_ib[keep]
        if ans_pp.size == 0:
            continue
        if eng._vdep_lv_buses:
            unsupported.append((ans_pp, "the network has voltage-dependent loads"))
            continue
        tasks.append((label, Lall, rows, ans_pp, ans_ib))
    view = EngineView.of(eng)
    shared = (view, branch_incidence(eng.f_bus, eng.t_bus, n), limits_int, branches)
    for (label, _L, _r, ans_pp, _ib), built in zip(
        tasks, build_areas(tasks, shared, workers), strict=True
    ):
        if isinstance(built, str):
            unsupported.append((ans_pp, built))
            continue
        p, R, summary = built
        p.blocked = blocked.get(label)
        roots_of.append((len(problems), R))
        problems.append(p)
        summaries.append(summary)
    outside.summaries = summaries
    outside._summary_area = np.arange(len(summaries))
    env = outside.envelopes(roots_of, tan)
    for ai, p in enumerate(problems):
        m, c, kd, lb, sens = env[ai]
        p.out_m, p.out_c, p.out_kinds, p.out_labels, p.sens_R = m, c, kd, lb, sens
    return Prepared(
        problems,
        unsupported,
        slack_pp,
        bus_transformer,
        area_trafos,
        bus_trafo,
        outside,
        [r for _, r in roots_of],
    )


def _out_of_scope(net, scope, kind: str, i: int) -> bool:
    tab = {"bus": net.bus, "line": net.line, "trafo": net.trafo}.get(kind)
    if tab is None or i not in tab.index:
        return False
    mask = scope[{"bus": 0, "line": 1, "trafo": 2}[kind]]
    return bool(mask[tab.index.get_loc(i)])


class _LazyLabels:
    def __init__(self, rep: np.ndarray):
        self.rep = rep

    def __getitem__(self, i: int) -> str:
        return f"bus {int(self.rep[i])}"


def build_area(eng, incidence, limits_int, branches, label, L_all, rows, ans_pp, ans_ib):
    """One area's problem, its roots and its summary for the outside model; or, when the
    area cannot be modelled on its own, why (its buses are then decided by full AC)."""
    try:
        cut = cut_area(
            eng.Ybus, eng.f_bus, eng.t_bus, L_all, ref=eng.ref, pv=eng.pv, incidence=incidence
        )
    except AreaUnsupported as exc:
        return str(exc)
    p = _problem(eng, label, cut, rows, ans_pp, ans_ib, limits_int, branches)
    return p, cut.R, root_gain_summary(p, int(cut.R[0]))


def _problem(eng, label, cut: AreaCut, rows, ans_pp, ans_ib, limits_int, branches) -> AreaProblem:
    """The area's problem: its cut (:func:`lvplan.powerflow.lv_area.cut_area`) with the limits
    it judges (``limits_int``: vmin, vmax, bus labels per internal bus; ``branches``: kinds,
    labels, loading factors, limits and judged flags per branch row)."""
    vmin_int, vmax_int, bus_label = limits_int
    kinds, labels, kf, kt, lim_pct, br_judged = branches
    L, R = cut.L, cut.R
    loc_ids = np.concatenate([L, R])
    order = np.argsort(loc_ids)
    sorted_ids = loc_ids[order]

    def local_of(c: np.ndarray) -> np.ndarray:
        return order[np.searchsorted(sorted_ids, c)]

    def inside(c: np.ndarray) -> np.ndarray:
        return sorted_ids[np.searchsorted(sorted_ids, c).clip(max=sorted_ids.size - 1)] == c

    nL, nR = L.size, R.size
    # the judged branches of the area: its rows with both ends in the area or its roots
    rows = rows[inside(eng.f_bus[rows]) & inside(eng.t_bus[rows])]
    rows = rows[br_judged[rows]]
    bnd = cut.bnd_rows
    Y_root = np.where(
        cut.bnd_root_is_from[:, None],
        _local(eng.Yf[bnd], local_of, nL + nR).toarray(),
        _local(eng.Yt[bnd], local_of, nL + nR).toarray(),
    )
    root_loc = nL + cut.bnd_root_pos
    root_of_bnd = np.zeros((nR, bnd.size))
    root_of_bnd[cut.bnd_root_pos, np.arange(bnd.size)] = 1.0
    V0_L, V0_R = eng.V0[L], eng.V0[R]
    full = np.concatenate([V0_L, V0_R])
    S_export0 = root_of_bnd @ (full[root_loc] * np.conj(Y_root @ full))
    p = AreaProblem(
        label=int(label),
        buses=ans_pp.astype(np.int64),
        bus_pos=np.searchsorted(L, ans_ib).astype(np.int64),
        base_mva=eng.baseMVA,
        Y_LL=cut.Y_LL,
        Y_LR=cut.Y_LR,
        S0=eng.S0[L].copy(),
        V0_L=V0_L.copy(),
        V0_R=V0_R.copy(),
        S_export0=S_export0,
        Y_root=Y_root,
        root_loc=root_loc,
        root_of_bnd=root_of_bnd,
        sens_R=np.zeros((2 * nR, nR), complex),
        vmin=vmin_int[L].copy(),
        vmax=vmax_int[L].copy(),
        bus_labels=[bus_label[int(i)] for i in L],
        Yf_j=_local(eng.Yf[rows], local_of, nL + nR),
        Yt_j=_local(eng.Yt[rows], local_of, nL + nR),
        kf_j=kf[rows],
        kt_j=kt[rows],
        lim_j=lim_pct[rows],
        branch_kinds=[kinds[r] for r in rows],
        branch_labels=[labels[r] for r in rows],
    )
    p._solver = cut.solver  # kept with the problem (not pickled: built again in a worker)
    return p
