"""A city's plan split by MV island: groups of islands, each planned on its own sub-network.

An *MV island* (:func:`lvplan.model.topology.mv_islands`) is what stays connected when the slack
buses are cut out. Islands are independent in the AC load flow: the only buses they share are
slack buses, which hold a fixed voltage magnitude and angle, so a load or a measure in one
island moves no voltage and no current in another (Newton-Raphson solves each island's block
of the Jacobian on its own; the slack rows are not unknowns). In a synthetic city each 10 kV
feeder of a substation is an island (its ext_grid busbar is the slack).

Two islands are in one *group* when some demand could connect to both: an LV bus of each lies
within its supply radius (the route the candidates take, straight line x detour factor), or
one holds the 10 kV bus nearest to it (where a new substation for it would be tied). A group's
*sub-network* is its islands' buses, the slack buses they hang on (shared between groups:
their voltage is fixed), and every element whose buses are all among them. The plan of each
group is found and AC-verified on its sub-network alone, exactly as for a whole network: the
sub-network's load flow *is* the whole network's on those buses, so the union of the groups'
verified plans passes the AC check of the whole network (``tests/test_plan_islands.py`` runs
that check). What splitting can change against planning the whole network at once is only
which candidates exist: new-substation sites are clustered from each group's own demands and
tied to the nearest 10 kV bus of the group's sub-network; and where a group would grow beyond
``MAX_GROUP_BUSES`` or ``MAX_GROUP_DEMANDS``, a demand that reaches a second group is offered
only its own group's options (the demands this touches are counted per group, ``capped``): the
plan stays verified, it may only cost more than the unsplit optimum.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lvplan.locate import EARTH_RADIUS_M, bus_lonlat
from lvplan.model.network import Network
from lvplan.model.topology import (
    BRANCH_ENDS,
    LV_MAX_KV,
    MV_MAX_KV,
    _closed_branch_graph,
    live_ends,
    mv_islands,
)
from lvplan.planning.demand import Demand

#: element tables and their bus columns (pandapower's element_bus_tuples, switch apart)
_BUS_COLUMNS: dict[str, tuple[str, ...]] = {}
for _el, _col in (
    ("sgen", "bus"),
    ("load", "bus"),
    ("ext_grid", "bus"),
    ("gen", "bus"),
    ("ward", "bus"),
    ("xward", "bus"),
    ("shunt", "bus"),
    ("storage", "bus"),
    ("asymmetric_load", "bus"),
    ("asymmetric_sgen", "bus"),
    ("motor", "bus"),
    ("ssc", "bus"),
    ("svc", "bus"),
    ("line", "from_bus"),
    ("line", "to_bus"),
    ("impedance", "from_bus"),
    ("impedance", "to_bus"),
    ("trafo", "hv_bus"),
    ("trafo", "lv_bus"),
    ("trafo3w", "hv_bus"),
    ("trafo3w", "mv_bus"),
    ("trafo3w", "lv_bus"),
    ("dcline", "from_bus"),
    ("dcline", "to_bus"),
):
    _BUS_COLUMNS[_el] = (*_BUS_COLUMNS.get(_el, ()), _col)

#: a route a little longer than the candidates' own still counts (rounding of the projection)
REACH_SLACK = 1.01
#: A group grows by the demands that couple its islands up to these sizes (a sub-network's
#: candidates, greedy, 10 kV response and AC checks cost about its demands x its buses; at
#: 13,000 transformers the districts' feeders overlap and would make 4 groups, the largest of
#: 519,116 buses and 10,073 demands). Measured at 2,000 transformers / 3,000 demands: a group
#: of 31,471 buses and 602 demands plans (greedy, verified) in 46 s on one busy core.
MAX_GROUP_BUSES = 40_000
MAX_GROUP_DEMANDS = 500


@dataclass(frozen=True)
class IslandGroup:
    """Islands some demand couples, the demands that may connect only there, and the buses of
    its sub-network (the islands' own buses and the slack buses they hang on)."""

    islands: tuple[int, ...]  # island keys (mv_islands)
    demands: tuple[int, ...]  # positions in the demand list
    buses: np.ndarray  # sorted bus ids of the sub-network
    #: its demands that could also reach another group's islands, left out by the caps
    capped: tuple[int, ...] = ()


def _xy(lon: np.ndarray, lat: np.ndarray, lat0: float) -> np.ndarray:
    """Local metres (equirectangular about ``lat0``); within REACH_SLACK of haversine over a
    city."""
    k = math.pi / 180.0 * EARTH_RADIUS_M
    return np.column_stack([lon * k * math.cos(math.radians(lat0)), lat * k])


def island_groups(
    network: Network,
    demands: tuple[Demand, ...],
    detour: float,
    *,
    max_group_buses: int = MAX_GROUP_BUSES,
    max_group_demands: int = MAX_GROUP_DEMANDS,
) -> list[IslandGroup]:
    """The groups of ``network``'s MV islands that ``demands`` couple (largest first), each with
    its demands; islands no demand reaches are in no group. Demands are taken in file order;
    one whose reach would join two groups beyond ``max_group_buses`` or ``max_group_demands``
    stays in the group of its nearest LV bus, without its options in the other group (counted
    in the group's ``capped``)."""
    from scipy.cluster.hierarchy import DisjointSet
    from scipy.spatial import cKDTree

    net = network.pp
    isl = mv_islands(net)
    ids = net.bus.index.to_numpy()
    key = isl.reindex(ids).to_numpy(dtype=float)  # NaN: out of service
    slack = _slack_like(net, isl)
    lon, lat = bus_lonlat(network)
    vn = network.bus_vn_kv
    live = network.live.bus
    has = np.isfinite(lon) & np.isfinite(lat) & np.isfinite(key) & live
    lv = np.flatnonzero(has & (vn < LV_MAX_KV))
    mv = np.flatnonzero(has & (vn >= LV_MAX_KV) & (vn <= MV_MAX_KV))
    lat0 = float(np.mean(lat[has])) if has.any() else 0.0
    lv_tree = cKDTree(_xy(lon[lv], lat[lv], lat0)) if lv.size else None
    mv_tree = cKDTree(_xy(lon[mv], lat[mv], lat0)) if mv.size else None
    all_rows = np.flatnonzero(has)
    all_tree = cKDTree(_xy(lon[all_rows], lat[all_rows], lat0)) if all_rows.size else None
    pos = pd.Series(np.arange(ids.size), index=ids)

    fin = np.isfinite(key)
    order = np.argsort(key[fin], kind="stable")
    kf, bf = key[fin][order].astype(np.int64), ids[fin][order]
    cut = np.flatnonzero(np.diff(kf)) + 1
    island_buses = {
        int(k[0]): b for k, b in zip(np.split(kf, cut), np.split(bf, cut), strict=True) if k.size
    }

    ds: DisjointSet = DisjointSet()
    n_bus: dict[int, int] = {}  # by root: buses, demands
    n_dem: dict[int, int] = {}
    home: list[int | None] = []  # each demand's first island (None: it reaches none)
    capped: list[int] = []  # demands with options left out by the caps
    for i, d in enumerate(demands):
        mine: list[int] = []  # its islands, the nearest LV bus's first
        if d.bus is not None and d.bus in pos.index:
            k = key[int(pos[d.bus])]
            if np.isfinite(k):
                mine.append(int(k))
        elif d.lon is not None and d.lat is not None:
            p = _xy(np.array([d.lon]), np.array([d.lat]), lat0)[0]
            if lv_tree is not None:
                r = d.supply_radius_m / max(detour, 1e-9) * REACH_SLACK + 1.0
                near = lv_tree.query_ball_point(p, r)
                if near:
                    dist = np.hypot(*(lv_tree.data[near] - p).T)
                    mine += [int(key[lv[near[j]]]) for j in np.argsort(dist, kind="stable")]
            if mv_tree is not None:
                _dist, j = mv_tree.query(p)
                mine.append(int(key[mv[int(j)]]))
            if not set(mine) - slack and all_tree is not None:  # out of reach: its nearest
                _dist, js = all_tree.query(p, k=min(64, all_rows.size))
                mine += [int(key[all_rows[int(j)]]) for j in np.atleast_1d(js)]
        mine = [k for k in dict.fromkeys(mine) if k not in slack]  # a slack couples nothing
        for k in mine:
            if k not in ds:
                ds.add(k)
                n_bus[k], n_dem[k] = int(island_buses[k].size), 0
        first = mine[0] if mine else None
        if first is not None:
            for k in mine[1:]:
                ra, rb = int(ds[first]), int(ds[k])
                if ra == rb:
                    continue
                if (
                    n_bus[ra] + n_bus[rb] > max_group_buses
                    or n_dem[ra] + n_dem[rb] + 1 > max_group_demands
                ):
                    if not capped or capped[-1] != i:
                        capped.append(i)  # its options there are left out: groups stay apart
                    continue
                ds.merge(ra, rb)
                root = int(ds[ra])
                n_bus[root], n_dem[root] = n_bus[ra] + n_bus[rb], n_dem[ra] + n_dem[rb]
            n_dem[int(ds[first])] += 1
        home.append(first)
    by_root: dict[int, list[int]] = {}
    loose: list[int] = []
    for i, k in enumerate(home):
        if k is None:
            loose.append(i)
        else:
            by_root.setdefault(int(ds[k]), []).append(i)
    members: dict[int, list[int]] = {}
    for k in ds:
        members.setdefault(int(ds[k]), []).append(int(k))
    ties = _slack_ties(net, isl, slack)
    capped_set = set(capped)
    groups = []
    for root, dem in by_root.items():
        islands = tuple(sorted(members[root]))
        buses = np.concatenate([island_buses[k] for k in islands])
        more: set[int] = set()
        for k in islands:
            more |= ties.get(k, set())
        mine_capped = tuple(i for i in dem if i in capped_set)
        groups.append(IslandGroup(islands, tuple(dem), np.union1d(buses, list(more)), mine_capped))
    if loose:  # demands no bus is near (no coordinates anywhere): planned with the first group
        if groups:
            g = groups[0]
            groups[0] = dataclasses.replace(g, demands=tuple(sorted(g.demands + tuple(loose))))
        else:
            groups.append(IslandGroup((), tuple(loose), np.zeros(0, np.int64)))
    groups.sort(key=lambda g: (-g.buses.size, g.demands))
    return groups


def _slack_like(net, isl: pd.Series) -> set[int]:
    """The slack buses (each its own island, holding its voltage), with the buses a closed
    bus-bus switch ties to them."""
    from lvplan.model.topology import _slack_buses

    out = {int(b) for b in _slack_buses(net) if b in isl.index}
    sw = net.switch
    if not sw.empty:
        bb = sw[(sw.et == "b") & sw.closed.astype(bool)]
        pairs = list(zip(bb.bus.astype(int), bb.element.astype(int), strict=True))
        grew = True
        while grew:
            grew = False
            for a, b in pairs:
                if (a in out) != (b in out):
                    out.add(b if a in out else a)
                    grew = True
    return out


def _slack_ties(net, isl: pd.Series, slack: set[int]) -> dict[int, set[int]]:
    """Island key -> the slack buses a closed branch ties it to (with every slack bus tied to
    those through other slack buses): one pass over the branches."""
    isl = mv_islands(net)
    ids, _pos, _on, ra, rb = _closed_branch_graph(net, impedance=True)
    a, b = ids[ra], ids[rb]
    slack_arr = np.fromiter(slack, np.int64, len(slack))
    sa, sb = np.isin(a, slack_arr), np.isin(b, slack_arr)
    among: dict[int, set[int]] = {}  # slack bus -> slack buses tied to it directly
    for x, y in zip(a[sa & sb].tolist(), b[sa & sb].tolist(), strict=True):
        among.setdefault(x, set()).add(y)
        among.setdefault(y, set()).add(x)
    ties: dict[int, set[int]] = {}
    for s_end, other in ((a[sa & ~sb], b[sa & ~sb]), (b[sb & ~sa], a[sb & ~sa])):
        keys = isl.reindex(other).to_numpy()
        for s_bus, k in zip(s_end.tolist(), keys.tolist(), strict=True):
            if k == k:  # not NaN
                ties.setdefault(int(k), set()).add(int(s_bus))
    for k, ss in ties.items():  # close over slack-slack ties
        todo = list(ss)
        while todo:
            for t in among.get(todo.pop(), ()):
                if t not in ss:
                    ss.add(t)
                    todo.append(t)
        ties[k] = ss
    return ties


def subnetwork(network: Network, buses: np.ndarray, name: str) -> Network:
    """The network of ``buses`` alone: every element whose buses are all among them, pandapower
    indices kept (so measures and results name the same elements as on the whole network)."""
    return SubNetworks(network, [buses]).make(0, name)


class SubNetworks:
    """The sub-networks of several bus sets, cut from one network: each element table's rows
    are labelled once by the set that holds all their buses (a row on a bus shared by several
    sets, a slack bus, is settled per set), so a city of a million buses cuts into its groups
    without a pass over it per group."""

    def __init__(self, network: Network, bus_sets: list[np.ndarray]):
        net = self.net = network.pp
        self.network = network
        bus_sets = _with_open_far_ends(net, bus_sets)
        self.sets = [pd.Index(b) for b in bus_sets]
        ids = net.bus.index
        label = np.full(len(ids), -1, np.int64)  # set of each bus; -2: in several
        for j, b in enumerate(bus_sets):
            at = ids.get_indexer(b)
            at = at[at >= 0]
            label[at] = np.where(label[at] == -1, j, -2)
        self.label = pd.Series(label, index=ids)
        self.rows: dict[str, dict[int, np.ndarray]] = {}  # table -> set -> row positions
        for key, cols in _BUS_COLUMNS.items():
            tab = net.get(key)
            if not isinstance(tab, pd.DataFrame) or tab.empty:
                continue
            labs = np.column_stack(
                [self.label.reindex(tab[c].to_numpy()).fillna(-1).to_numpy(np.int64) for c in cols]
            )
            first = labs[:, 0]
            plain = (first >= 0) & (labs == first[:, None]).all(axis=1)
            by: dict[int, list[np.ndarray]] = {}
            order = np.flatnonzero(plain)
            if order.size:
                srt = order[np.argsort(first[order], kind="stable")]
                cuts = np.flatnonzero(np.diff(first[srt])) + 1
                for chunk in np.split(srt, cuts):
                    by.setdefault(int(first[chunk[0]]), []).append(chunk)
            shared = np.flatnonzero((labs == -2).any(axis=1) & (labs != -1).all(axis=1))
            if shared.size:  # rows on a shared (slack) bus: settled set by set
                sub = tab.iloc[shared]
                for j, keep in enumerate(self.sets):
                    ok = np.ones(shared.size, bool)
                    for c in cols:
                        ok &= sub[c].isin(keep).to_numpy()
                    if ok.any():
                        by.setdefault(j, []).append(shared[ok])
            self.rows[key] = {j: np.sort(np.concatenate(v)) for j, v in by.items()}

    def make(self, j: int, name: str) -> Network:
        import copy

        net, keep = self.net, self.sets[j]
        sub = type(net)(dict(net.items()))  # a shallow pandapowerNet: each table replaced below
        for key in list(sub.keys()):
            tab = net[key]
            if not isinstance(tab, pd.DataFrame):
                continue
            if key.startswith("res_"):
                sub[key] = tab.iloc[0:0].copy()
            elif key == "bus":
                sub[key] = tab.loc[tab.index.isin(keep)].copy()
            elif key == "switch":
                sub[key] = _switches(net, keep)
            elif key in _BUS_COLUMNS:
                rows = self.rows.get(key, {}).get(j)
                sub[key] = tab.iloc[rows].copy() if rows is not None else tab.iloc[0:0].copy()
            else:
                sub[key] = tab.copy()
        sub["std_types"] = copy.deepcopy(net.std_types)
        return Network(sub, name=name, source=self.network.source, validate=False, owned=True)


def _with_open_far_ends(net, bus_sets: list[np.ndarray]) -> list[np.ndarray]:
    """Each bus set with the far ends of the branches it energises up to an open switch: a line
    (or transformer) from a bus of the set to a bus of another set, open at that far end (a
    normally-open tie between two feeders), is connected at the set's end in the whole
    network's load flow, and its charging current flows there. Cut out with its far bus, it
    was missing from the sub-network: on sz-futian the 0.6 km F1-F2 tie cable's charging moved
    line 17's loading from 103.2516 % (whole network) to 103.2531 % (its group alone), a
    sub-network no longer the whole network's load flow. With the far bus kept (with whatever
    sits on it, but no branch to the rest of its own set: pandapower leaves it unsupplied, and
    the candidates and limits skip a bus that is not live), the branch is modelled as in the
    whole network, as :mod:`lvplan.model.islands` cuts an island for ``check``."""
    near_all: list[np.ndarray] = []
    far_all: list[np.ndarray] = []
    for name, (cols, et) in BRANCH_ENDS.items():
        tab = net.get(name)
        if et is None or tab is None or tab.empty:
            continue
        live = live_ends(net, name)  # (the rule of topology and of check's islands)
        on = tab.in_service.to_numpy(bool) if "in_service" in tab else np.ones(len(tab), bool)
        part = on & live.any(axis=1) & ~live.all(axis=1)  # energised, open at some end
        if not part.any():
            continue
        buses = np.stack([tab[c].to_numpy(np.int64)[part] for c in cols], axis=1)
        lv = live[part]
        for i in range(len(cols)):  # each (live end, open end) pair of those rows
            for j in range(len(cols)):
                m = lv[:, i] & ~lv[:, j] & (buses[:, i] != buses[:, j])
                near_all.append(buses[m, i])
                far_all.append(buses[m, j])
    if not near_all:
        return bus_sets
    near, far = np.concatenate(near_all), np.concatenate(far_all)
    out = []
    for b in bus_sets:
        m = np.isin(near, b) & ~np.isin(far, b)
        out.append(np.union1d(b, far[m]) if m.any() else b)
    return out


def _switches(net, keep: pd.Index) -> pd.DataFrame:
    sw = net.switch
    if sw.empty:
        return sw.copy()
    ok = sw.bus.isin(keep).to_numpy()
    et = sw.et.to_numpy()
    el = sw.element.to_numpy()
    for name, (cols, kind) in BRANCH_ENDS.items():
        tab = net.get(name)
        if kind is None or tab is None or tab.empty:
            continue
        inside = np.ones(len(tab), bool)
        for c in cols:
            inside &= tab[c].isin(keep).to_numpy()
        sel = et == kind
        ok[sel] &= np.isin(el[sel], tab.index[inside])
    sel = et == "b"
    ok[sel] &= np.isin(el[sel], keep)
    return sw.loc[ok].copy()
