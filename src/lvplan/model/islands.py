"""MV islands as the unit of state: the network cut at its slack buses into pandapower nets of
their own, one per island (:func:`lvplan.model.topology.mv_islands`).

The boundary. An island's net holds the island's buses and every element attached to them,
plus the slack buses its branches reach (with the ext_grids, slack generators and whatever
else sits on them, and the buses a closed bus-bus switch ties to them). The slack buses hold
their voltage (magnitude and angle) in the whole network's load flow as in the island's, and
they are the only buses islands share, so the island's AC load flow is the whole network's,
restricted to the island: exact, not a model of the rest. An HV/MV transformer fed straight
from the slack belongs to the island of its MV side; an HV network with impedance between
the slack and several HV/MV transformers is inside one island with all of them.

A far end behind an open switch that lies in another island is kept as a bus of its own (with
nothing else attached, pandapower leaves it unsupplied), so the branch is modelled as in the
whole network. The split is refused (``plan`` returns None, the network is then solved whole)
where it could not be exact: a branch between two slack buses, a branch whose supplied ends
lie in two islands (a DC line), or a non-empty table lvplan does not know how to split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from lvplan.io import signed
from lvplan.io.atomic import atomic_file
from lvplan.model.topology import BRANCH_ENDS, island_labels, live_ends
from lvplan.powerflow.ac import NUMBA_KEY

#: Tables a load flow does not read: islands leave them empty.
NOT_SOLVED = {"measurement", "poly_cost", "pwl_cost", "controller", "group"}
#: Tables referring to buses that no split rule covers: a network using them is solved whole.
UNSPLIT = {"dcline", "tcsc", "vsc", "line_dc", "bus_dc", "source_dc", "load_dc", "ssc"}


@dataclass(frozen=True)
class IslandPart:
    """One island: the rows of each table its net holds, and which of them it owns (the
    island's own buses, lines and transformers, whose state it gives)."""

    key: int
    rows: dict[str, np.ndarray]  # table -> row positions in the whole net, ascending
    own_bus_rows: np.ndarray  # rows of net.bus owned by the island (whole net)
    own_bus_sub: np.ndarray  # the same buses' rows in the island's bus table
    line_rows: np.ndarray  # rows of net.line (whole net); the island's lines are these, in order
    trafo_rows: np.ndarray
    slack_bus_rows: np.ndarray  # rows of net.bus of the slack buses it holds (whole net)
    slack_bus_sub: np.ndarray  # the same buses' rows in the island's bus table


@dataclass(frozen=True)
class IslandPlan:
    parts: list[IslandPart]
    bus_island: pd.Series  # bus id -> island key (owned buses of supplied islands only)


def _ends(tab: pd.DataFrame, cols: tuple[str, ...]) -> np.ndarray:
    return np.stack([tab[c].to_numpy(np.int64) for c in cols], axis=1)


def plan(net) -> IslandPlan | None:
    """How to cut ``net`` into its supplied MV islands; None when it has fewer than two or the
    cut could not be exact (see the module docstring)."""
    ids, on, slack, key = island_labels(net)
    if ids.size == 0:
        return None
    pos = pd.Index(ids)
    for name, tab in net.items():
        if isinstance(tab, pd.DataFrame) and name in UNSPLIT and len(tab):
            return None
    # slack groups: slack buses joined by closed bus-bus switches (pandapower fuses them)
    n = ids.size
    sw = net.switch
    group = np.full(n, -1, np.int64)
    if slack.any():
        a = b = np.zeros(0, np.int64)
        if len(sw):
            bb = sw[(sw.et == "b") & sw.closed.astype(bool)]
            a = pos.get_indexer(bb.bus.to_numpy())
            b = pos.get_indexer(bb.element.to_numpy())
            ok = (a >= 0) & (b >= 0)
            a, b = a[ok], b[ok]
            ok = slack[a] & slack[b]
            a, b = a[ok], b[ok]
        g = coo_matrix((np.ones(a.size), (a, b)), shape=(n, n))
        _, lab = connected_components(g, directed=False)
        group[slack] = lab[slack]
    isl = np.where(slack | ~on, -1, key)  # owner island of each bus row; -1: none
    # row -> owner island for every table; -2: belongs to a slack group (see grp)
    owner: dict[str, np.ndarray] = {}
    grp: dict[str, np.ndarray] = {}
    for name, tab in net.items():
        if not isinstance(tab, pd.DataFrame) or name.startswith("res_") or name.startswith("_"):
            continue
        if not len(tab) or name in NOT_SOLVED or name == "switch" or name == "bus":
            continue
        if name in BRANCH_ENDS:
            cols = BRANCH_ENDS[name][0]
            ends = pos.get_indexer(_ends(tab, cols).ravel()).reshape(len(tab), len(cols))
            if (ends < 0).any():
                return None
            live_end = live_ends(net, name)
            e_isl = np.where(live_end, isl[ends], -1)
            lo = np.where(e_isl >= 0, e_isl, np.iinfo(np.int64).max).min(axis=1)
            hi = e_isl.max(axis=1)
            has = hi >= 0
            if (has & (lo != hi)).any():
                return None  # supplied ends in two islands: not a cut at slack buses
            in_svc = tab.in_service.to_numpy(bool) if "in_service" in tab else np.ones(len(tab))
            between_slacks = ~has & in_svc.astype(bool) & (live_end & slack[ends]).all(axis=1)
            if (between_slacks & (live_end.sum(axis=1) >= 2)).any():
                return None  # carries current between two slack buses: in no island
            o = np.where(has, hi, -1)
            if not has.all():  # every end out of service or behind an open switch: any end's
                alt = np.where(isl[ends] >= 0, isl[ends], -1).max(axis=1)
                o = np.where(has, o, alt)
            owner[name] = o
        elif "bus" in tab.columns:
            b = pos.get_indexer(tab.bus.to_numpy(np.int64))
            if (b < 0).any():
                return None
            owner[name] = np.where(slack[b], -2, isl[b])
            grp[name] = np.where(slack[b], group[b], -1)
        elif any(c.endswith("bus") for c in tab.columns):
            return None
    # switches: a bus-bus switch goes with its buses, an element switch with its element
    sw_owner = np.zeros(0, np.int64)
    sw_grp = np.zeros(0, np.int64)
    if len(sw):
        sb = pos.get_indexer(sw.bus.to_numpy(np.int64))
        if (sb < 0).any():
            return None
        sw_owner = np.full(len(sw), -1, np.int64)
        sw_grp = np.full(len(sw), -1, np.int64)
        is_b = (sw.et == "b").to_numpy()
        eb = pos.get_indexer(np.where(is_b, sw.element.to_numpy(np.int64), -1))
        ob = np.where(eb >= 0, isl[np.maximum(eb, 0)], -1)
        own_b = np.where(isl[sb] >= 0, isl[sb], ob)
        both_slack = slack[sb] & (eb >= 0) & slack[np.maximum(eb, 0)]
        sw_owner[is_b] = np.where(both_slack, -2, own_b)[is_b]
        sw_grp[is_b] = np.where(both_slack, group[sb], -1)[is_b]
        for et, name in (("l", "line"), ("t", "trafo"), ("t3", "trafo3w")):
            m = (sw.et == et).to_numpy()
            if m.any() and name in owner:
                rows = net[name].index.get_indexer(sw.element.to_numpy(np.int64)[m])
                if (rows < 0).any():
                    return None
                sw_owner[m] = owner[name][rows]
        owner["switch"] = sw_owner
        grp["switch"] = sw_grp

    keys = np.unique(isl[isl >= 0])
    if keys.size < 2:
        return None
    # the rows of each island, and of each slack group
    rows_of: dict[int, dict[str, np.ndarray]] = {int(k): {} for k in keys}
    grp_rows: dict[int, dict[str, np.ndarray]] = {}
    for name, o in owner.items():
        order = np.argsort(o, kind="stable")
        so = o[order]
        bounds = np.searchsorted(so, keys, side="left"), np.searchsorted(so, keys, side="right")
        for k, lo_, hi_ in zip(keys, *bounds, strict=True):
            if hi_ > lo_:
                rows_of[int(k)][name] = np.sort(order[lo_:hi_])
        if name in grp:
            gs = np.flatnonzero(o == -2)
            for g_ in np.unique(grp[name][gs]):
                grp_rows.setdefault(int(g_), {})[name] = gs[grp[name][gs] == g_]
    group_bus_rows = {int(g_): np.flatnonzero(group == g_) for g_ in np.unique(group[slack])}

    bus_ids_of_table: dict[str, list[np.ndarray]] = {}
    for name in owner:
        tab = net[name]
        if name in BRANCH_ENDS:
            bus_ids_of_table[name] = [tab[c].to_numpy(np.int64) for c in BRANCH_ENDS[name][0]]
        elif name == "switch":
            is_b = (tab.et == "b").to_numpy()
            el = np.where(is_b, tab.element.to_numpy(np.int64), tab.bus.to_numpy(np.int64))
            bus_ids_of_table[name] = [tab.bus.to_numpy(np.int64), el]
        else:
            bus_ids_of_table[name] = [tab.bus.to_numpy(np.int64)]

    parts: list[IslandPart] = []
    own_bus = isl
    for k in keys:
        k = int(k)
        rows = rows_of[k]
        touched = [
            pos.get_indexer(c[r]) for name, r in rows.items() for c in bus_ids_of_table[name]
        ]
        bus_rows = np.unique(np.concatenate([np.flatnonzero(own_bus == k), *touched]))
        groups = np.unique(group[bus_rows[slack[bus_rows]]])
        if groups.size == 0:
            continue  # no slack reached: the island is not supplied
        extra = [group_bus_rows[int(g_)] for g_ in groups]
        for g_ in groups:
            for name, r in grp_rows.get(int(g_), {}).items():
                rows[name] = np.union1d(rows.get(name, np.zeros(0, np.int64)), r)
        bus_rows = np.unique(np.concatenate([bus_rows, *extra]))
        rows["bus"] = bus_rows
        own = np.flatnonzero(own_bus == k)
        held_slack = bus_rows[slack[bus_rows]]
        parts.append(
            IslandPart(
                key=k,
                rows=rows,
                own_bus_rows=own,
                own_bus_sub=np.searchsorted(bus_rows, own),
                line_rows=rows.get("line", np.zeros(0, np.int64)),
                trafo_rows=rows.get("trafo", np.zeros(0, np.int64)),
                slack_bus_rows=held_slack,
                slack_bus_sub=np.searchsorted(bus_rows, held_slack),
            )
        )
    if len(parts) < 2:
        return None
    owned = np.concatenate([p.own_bus_rows for p in parts])
    keys_of = np.concatenate([np.full(p.own_bus_rows.size, p.key) for p in parts])
    return IslandPlan(parts, pd.Series(keys_of, index=ids[owned]))


def island_net(net, part: IslandPart, template=None):
    """The pandapower net of one island: the whole net's rows that ``part`` names (indices
    kept), every other element table empty, the standard types copied. ``template``: an
    empty copy of ``net`` (:func:`empty_like`) to start from, when making many."""
    sub = _fresh(empty_like(net) if template is None else template)
    sub["name"] = f"{net.name or 'net'} island {part.key}"
    for name, rows in part.rows.items():
        sub[name] = net[name].iloc[rows].copy()
    return sub


#: DataFrame columns pandapower's deepcopy copies object by object (they may hold objects).
_DEEP_COLUMNS = {"object", "coords", "geometry"}


def _fresh(template):
    """A copy of ``template`` (an :func:`empty_like` net) to fill with one island's rows: its
    tables copied, as pandapower's deepcopy does (10 against 15 ms a net for the urban
    district's template, measured on a loaded machine), its standard types shared (nothing
    writes them; the whole network's are shared with the template already)."""
    import copy

    cls = template.__class__
    sub = cls.__new__(cls)
    for key, value in template.items():
        if key == "std_types":
            sub[key] = value
        elif isinstance(value, pd.DataFrame) and (
            value.empty or _DEEP_COLUMNS.isdisjoint(value.columns)
        ):
            sub[key] = value.copy()
        else:
            sub[key] = copy.deepcopy(value)
    sub._setattr("_allow_invalid_attributes", template._allow_invalid_attributes)
    return sub


def empty_like(net):
    """``net`` with every element table emptied (tables no element row refers to, such as
    characteristics, kept whole) and no results."""
    import pandapower as pp

    sub = pp.create_empty_network(name=net.name, f_hz=net.f_hz, sn_mva=net.sn_mva)
    owned = owner_tables(net)
    for name, tab in net.items():
        if name.startswith("_") or name.startswith("res_"):
            continue
        if isinstance(tab, pd.DataFrame):
            keep = len(tab) and name not in owned and name not in NOT_SOLVED
            sub[name] = tab.copy() if keep else tab.iloc[0:0].copy()
        elif name == "std_types":
            sub[name] = tab
    return sub


def owner_tables(net) -> set[str]:
    """Tables whose rows belong to an island (a bus column or a branch)."""
    out = {"bus", "switch", *BRANCH_ENDS}
    for name, tab in net.items():
        if isinstance(tab, pd.DataFrame) and "bus" in tab.columns:
            out.add(name)
    return out


class IslandStates:
    """The islands of one network, each a :class:`~lvplan.model.network.Network` of its own
    (its own base load flow, fast engine, linear response, Jacobian factor, reserved loads
    and lock), built from :func:`plan`. A check, an exact load flow near a limit, a
    reservation or a withdrawal at a bus touches only that bus's island."""

    def __init__(self, whole, island_plan: IslandPlan, nets: dict | None = None):
        """``nets``: the islands' networks already made (from :func:`load_cache`)."""
        from lvplan.model.network import Network

        self.plan = island_plan
        self.bus_island = island_plan.bus_island
        self.parts = {p.key: p for p in island_plan.parts}
        self.nets: dict[int, Network] = {}
        if nets is not None:
            self.nets = dict(nets)
        else:
            tpl = empty_like(whole.pp)
            numba = len(whole.pp.bus) >= NUMBA_CITY_BUSES
            for p in island_plan.parts:
                sub = island_net(whole.pp, p, tpl)
                if numba:
                    sub[NUMBA_KEY] = True
                self.nets[p.key] = Network(
                    sub,
                    name=f"{whole.name} island {p.key}",
                    source=whole.source,
                    validate=False,
                    owned=True,
                )
        self._shape = (len(whole.pp.bus), len(whole.pp.line), len(whole.pp.trafo))
        self._composed: tuple[tuple[int, ...], object] | None = None
        #: per criteria profile, what checks see of the islands they do not move
        #: (:func:`lvplan.decision._city`)
        self.judged: dict[int, tuple[object, object]] = {}

    def prepare(self, *, workers: int = 1, progress=None) -> None:
        """Solve every island's base and build its fast engine (every LV area, every root's
        response), in ``workers`` processes when there are enough islands for it to pay
        (:data:`PARALLEL_MIN_ISLANDS`). ``progress(done, total)`` after each island."""
        todo = [k for k, n in self.nets.items() if not n._whole_built()]
        total, done = len(todo), 0
        if workers > 1 and total >= PARALLEL_MIN_ISLANDS:
            from concurrent.futures import as_completed

            from lvplan.workers import process_pool

            with process_pool(workers) as pool:  # a killed driver leaves no worker behind
                futures = {pool.submit(_prepared, self.nets[k]): k for k in todo}
                for fut in as_completed(futures):
                    self.nets[futures[fut]] = fut.result()
                    done += 1
                    if progress is not None:
                        progress(done, total)
            return
        for k in todo:
            _prepared(self.nets[k])
            done += 1
            if progress is not None:
                progress(done, total)

    def __len__(self) -> int:
        return len(self.nets)

    def key_of(self, bus: int) -> int | None:
        k = self.bus_island.get(int(bus))
        return None if k is None else int(k)

    def of(self, bus: int):
        """The network of ``bus``'s island (None: the bus is in no supplied island)."""
        k = self.key_of(bus)
        return None if k is None else self.nets[k]

    def _grouped(self, loads: dict) -> dict[int, dict]:
        out: dict[int, dict] = {}
        for name, e in loads.items():
            k = self.key_of(e.bus)
            if k is not None:  # a load at an unsupplied bus moves nothing
                out.setdefault(k, {})[name] = e
        return out

    def reserve(self, loads: dict) -> str:
        """Add ``loads`` ({key: ExtraLoad}) to their islands; how the islands' bases moved
        (``"exact"`` unless one needed pandapower)."""
        hows = [self.nets[k].reserve(group) for k, group in self._grouped(loads).items()]
        return _how(hows)

    def release(self, loads: dict) -> str:
        """Remove ``loads`` ({key: ExtraLoad}, as reserved) from their islands."""
        hows = [self.nets[k].release(list(group)) for k, group in self._grouped(loads).items()]
        return _how(hows)

    def solve(self, progress=None) -> list[tuple[int, str]]:
        """Every island's base load flow (those not yet solved); the islands whose base failed,
        with the reason. ``progress(done, total)`` after each."""
        from lvplan.errors import PowerFlowError

        failed = []
        for i, (k, net) in enumerate(self.nets.items(), 1):
            try:
                net.base_state()
            except PowerFlowError as exc:
                failed.append((k, str(exc)))
            if progress is not None:
                progress(i, len(self.nets))
        return failed

    def compose(self):
        """The whole network's base, island by island (exact: the islands share only slack
        buses). Raises the error of an island whose base failed (BaseCaseError when it does not
        converge)."""
        from lvplan.errors import BaseCaseError, PowerFlowError
        from lvplan.powerflow.state import GridState

        failed = self.solve()
        if failed:
            k, why = failed[0]
            try:
                self.nets[k].base_state()
            except BaseCaseError:
                raise  # (its one line names the island's network)
            except PowerFlowError:
                pass
            raise PowerFlowError(f"island {k}: {why}")
        versions = tuple(n.version for n in self.nets.values())
        if self._composed is not None and self._composed[0] == versions:
            return self._composed[1]
        nb, nl, nt = self._shape
        vm, line, trafo = np.full(nb, np.nan), np.full(nl, np.nan), np.full(nt, np.nan)
        engines = set()
        for k, net in self.nets.items():
            p, st = self.parts[k], net.base_state()
            vm[p.own_bus_rows] = st.vm_pu[p.own_bus_sub]
            vm[p.slack_bus_rows] = st.vm_pu[p.slack_bus_sub]  # held: the same in every island
            line[p.line_rows] = st.line_loading_percent
            trafo[p.trafo_rows] = st.trafo_loading_percent
            engines.add(st.engine)
        engine = "newton" if "newton" in engines else "pandapower"
        out = GridState(vm, line, trafo, engine=engine)
        self._composed = (versions, out)
        return out


def _how(hows: list[str]) -> str:
    if "pandapower" in hows:
        return "pandapower"
    return "exact" if "exact" in hows else "none"


#: From this many buses in the whole network its islands' pandapower runs use numba (about
#: 300 islands of ~1,300 buses earn its one compilation back; below, each run is dearer but
#: there are too few of them). The state agrees with the run without numba to ~1e-12 pu
#: (tests/test_cold.py).
NUMBA_CITY_BUSES = 400_000
#: Below this many islands to prepare, one process does it (starting a process costs ~3 s).
PARALLEL_MIN_ISLANDS = 48
#: Bumped whenever what a cache file holds changes shape.
CACHE_FORMAT = 2


def _prepared(net):
    """``net`` (an island) with its base solved and its fast engine built: run in a worker."""
    import contextlib

    from lvplan.errors import PowerFlowError
    from lvplan.powerflow.fast import FastEngineUnsupported

    with contextlib.suppress(PowerFlowError):  # kept in the network: not_assessable
        net.base_state()
        with contextlib.suppress(FastEngineUnsupported):
            net.fast_engine().prepare()
        # pandapower's internal model of the run: the fast engine copied what it needs, and
        # the next pandapower run of the island makes it again (a third of its memory)
        net.pp["_ppc"] = None
        net.pp["_pd2ppc_lookups"] = {}  # its bus lookup: an array as long as the largest index
        drop_results(net.pp)
    return net


def drop_results(net) -> None:
    """Empty ``net``'s result tables (``res_*``): the island's base is kept as a GridState and
    by its fast engine, and the next pandapower run of it writes them again (at a million
    buses they held about 0.2 GB)."""
    for name in [k for k in net if k.startswith("res_")]:
        tab = net[name]
        if isinstance(tab, pd.DataFrame) and len(tab):
            net[name] = tab.iloc[0:0].copy()


def cache_path(directory, fingerprint: str) -> Path:
    from lvplan.code_id import code_id

    safe = "".join(c if c.isalnum() or c in ".-" else "_" for c in code_id())
    return Path(directory) / f"islands-{fingerprint[:32]}-{safe}-f{CACHE_FORMAT}.pickle"


def save_cache(islands: IslandStates, whole, directory) -> Path | None:
    """Write the prepared islands to ``directory`` (atomically), keyed by the network's
    fingerprint and the lvplan that wrote it (:func:`lvplan.code_id.code_id`: its version and
    code), which the file also holds and :func:`load_cache`
    compares, signed with this user's key (:mod:`lvplan.io.signed`: a file it did not write is
    not unpickled). Only islands without reserved loads are cached (the register's reservations
    are applied after loading, as after a fresh start). Returns the file, or None when
    there was nothing to cache."""
    import pickle

    from lvplan.code_id import code_id

    if any(n.reserved for n in islands.nets.values()):
        return None
    head = {
        "format": CACHE_FORMAT,
        "fingerprint": whole.fingerprint,
        "lvplan_version": code_id(),
    }
    path = cache_path(directory, whole.fingerprint)
    # streamed (a city's islands are gigabytes), then renamed over: never half a file; a
    # pickle only its owner may read
    with atomic_file(path, mode=0o600) as fh, signed.signing(fh) as w:
        pickle.dump(head, w)
        pickle.dump((head, islands.plan, islands.nets), w, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def load_cache(whole, directory) -> IslandStates | None:
    """The prepared islands of ``whole`` from ``directory``, or None when there is no cache
    for exactly this network (fingerprint) and this lvplan (version and code: a changed network
    or another lvplan writes a new file, never reads the old one) or it cannot be read."""
    import pickle

    from lvplan.code_id import code_id

    path = cache_path(directory, whole.fingerprint)
    want = {"format": CACHE_FORMAT, "fingerprint": whole.fingerprint, "lvplan_version": code_id()}
    try:
        with signed.verified(path) as fh:  # (one this user's lvplan did not write: None)
            if fh is None or pickle.load(fh) != want:
                return None
            head, island_plan, nets = pickle.load(fh)
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ImportError, ValueError):
        return None
    if head != want:
        return None
    return IslandStates(whole, island_plan, nets)
