"""What a plan may choose from: where each demand may connect, new substation sites, and the
upgrades of the transformers and cables that some connection could load.

*Connection options* of a demand are the existing LV buses within its supply radius (route =
straight line x the profile's detour factor) and the new substation sites within it, each with
its service cable (sized to the design current, as ``check`` sizes it) and that cable's cost.

Pruning, and why it never removes the option that could be optimal: within one transformer
area, a bus ``b`` *dominates* a bus ``c`` when its route is no longer (so its service cable
costs no more and drops no more voltage) and it lies on ``c``'s path to the transformer (so a
load at ``b`` loads a subset of the lines a load at ``c`` loads, and lowers no voltage more).
Every plan that connects at ``c`` stays feasible, at no more cost, connecting at ``b``; so only
undominated buses are kept. After that, at most ``MAX_PER_AREA`` per area (the shortest routes)
are kept: that cap is a heuristic, stated in the plan's summary as ``pruned_by_cap``.

*Sites* come from the demand's geography by leader clustering: the first demand not yet within
reach of a site founds one at the centroid of the demands within half its radius (or at itself
when the centroid would leave it out of reach); each site is tied to the nearest 10 kV bus with
coordinates. Founded so, neighbouring clusters get a site each; so for each two sites within
two radii of each other, where the demands beyond every LV bus that they reach between them are
all within reach of one point, that point (the centre of the least circle about them) is a site
too (:func:`_merged_sites`): the plan may build one site and one tie for both. A cluster with
more than half a new substation's load is clustered again at half the radius, down to the
profile's least supply radius (``split``): at a wide radius (class D, 500 m) it had one place,
and two substations it needed stood side by side. A site within :data:`SAME_PLACE_M` of another
is not founded twice.

*Ties to other feeders*: each place is also offered tied to the nearest 10 kV bus of up to
:data:`OTHER_FEEDER_TIES` other feeders (a tie to the source busbar is a new feeder), as sites
of their own (``Site.tie_of``, named "... (tie to <feeder>)"): where the nearest feeder's
voltage room is spent, one a little farther may have it. They are offered only at the places
that reach a demand the greedy plan without them leaves out, on the linear model alone
(:func:`withhold_ties`; ``plan_network``'s screen): all of them (271 sites for 92 on the SimBench
district) made the model larger and its bound weaker in the minute. That is a heuristic: a
demand that only the AC check finds short of 10 kV room is not screened in. *Upgrade
options* are listed for every transformer feeding an area with a connection option, and for
every line on the path of some connection option.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lvplan.changes.apply import LV_BOARD_KV
from lvplan.changes.resolve import no_load_tap, tap_ratio
from lvplan.changes.spec import MAX_SITE_UNITS, MAX_TIE_LENGTH_M
from lvplan.criteria import Criteria
from lvplan.criteria.judge import Limits
from lvplan.decision import choose_service_cable
from lvplan.locate import bus_lonlat, distance_m
from lvplan.model.catalogue import cable_types, rated_class, trafo_types
from lvplan.model.network import Network
from lvplan.model.topology import LV_MAX_KV, MV_MAX_KV, mv_bus_feeders, mv_label
from lvplan.planning.demand import Demand
from lvplan.planning.measures import N1_KINDS, MeasureKind, Measures

MAX_PER_AREA = 3
MAX_OPTIONS = 8
#: in a plan, each site is offered tied to the nearest 10 kV bus of this many other feeders
#: (within :data:`MAX_TIE_M`) besides the nearest bus's own (:func:`build_instance`)
OTHER_FEEDER_TIES = 2
#: A new tie longer than this (m of route) is not offered: the reach ``new_substation`` accepts.
MAX_TIE_M = MAX_TIE_LENGTH_M


def _capped(mine: list[Option], place: Callable[[int], int]) -> list[Option]:
    """A demand's :data:`MAX_OPTIONS` places to connect: the sites first (each nearest first),
    but never more than leave half the places to existing LV buses when it has that many (sites
    between two clusters add to those of each cluster: on the SimBench district at most 4 sites
    reach one demand), then the shortest routes. A site's ties to other feeders share its place
    (``place``: site id -> the id of the site at that place tied to the nearest 10 kV bus): the
    options kept are every tie of each place kept."""
    sites = sorted((o for o in mine if o.site is not None), key=lambda o: o.route_m)
    buses = sorted((o for o in mine if o.site is None), key=lambda o: o.route_m)
    places = list(dict.fromkeys(place(o.site) for o in sites))  # type: ignore[arg-type]
    n_sites = min(len(places), MAX_OPTIONS - min(len(buses), MAX_OPTIONS // 2))
    keep = set(places[:n_sites])
    return [o for o in sites if place(o.site) in keep] + buses[: MAX_OPTIONS - n_sites]  # type: ignore[arg-type]


@dataclass(frozen=True)
class Site:
    id: int
    name: str
    lon: float
    lat: float
    mv_bus: int
    tie_m: float
    rated_kva: int
    cost_cny: float
    board_vm_pu: float  # the LV board's no-load voltage (the 10 kV bus's base one, the tap)
    r_pu: float  # transformer impedance on its own rating
    x_pu: float
    tap_pos: int
    #: a site between two founded ones (:func:`_merged_sites`): their ids; () for a founded one
    between: tuple[int, ...] = ()
    #: the same place tied to another 10 kV feeder (:data:`OTHER_FEEDER_TIES`): the id of the
    #: site tied to the nearest 10 kV bus; None for that one
    tie_of: int | None = None
    #: the tie's cable: the catalogue's rated for the 10 kV bus's network
    #: (:meth:`Measures.tie_cable_for`)
    tie_cable: str = "YJV22-8.7/15kV 3x300"
    #: the units side by side on the one tie (``rated_kva`` is theirs together)
    units: int = 1
    #: a site of more units at a site's place, on the same tie (:data:`MAX_SITE_UNITS`): the id
    #: of that site of one unit; None for a site of one
    twin_of: int | None = None


@dataclass(frozen=True)
class Option:
    """One way to connect one demand: at an existing bus or at a site, by a service cable."""

    demand: int  # position in the demand list
    bus: int | None  # existing LV bus (pandapower index)
    site: int | None  # Site.id
    route_m: float
    cable: str
    cable_cost_cny: float
    cable_r_ohm: float
    cable_x_ohm: float
    cable_max_i_ka: float
    #: a *twin* (:mod:`lvplan.planning.transfers`): the same connection, its load fed through
    #: the new LV feeder of the transfer (feeder split) opening this line; None: as built
    via: int | None = None


@dataclass(frozen=True)
class Upgrade:
    """One way to reinforce one transformer or line."""

    kind: MeasureKind
    element: int  # pandapower trafo or line index
    cost_cny: float
    rated_kva: int = 0  # transformers: the new unit's rating (swap or the parallel unit)
    cable: str = ""  # lines: the new cable
    capacity: float = 0.0  # kVA (transformer) or kA (line) the element then carries at 100 %
    r: float = 0.0  # impedance after: pu on the unit's own kVA (trafo), ohm (line)
    x: float = 0.0
    #: a swap: the units of ``rated_kva`` the row becomes (a ``parallel`` 2 row's two units)
    units: int = 1
    #: N-1 measures (:data:`lvplan.planning.measures.N1_KINDS`): the 10 kV bus of the other
    #: feeder the new cable starts from, and its route length
    to_bus: int = -1
    length_m: float = 0.0


#: element keys of the N-1 measures, apart from every line id and every ``-1 - trafo``
_TIE_KEY = 1 << 50
_MOVE_KEY = -(1 << 50)
#: element key of a transfer (feeder split): one per line it opens, apart from the line's own
TRANSFER_KEY = 3 << 50


def element_key(up: Upgrade) -> int:
    """The element an upgrade changes, as one integer (a plan changes each element once):
    a line's id, ``-1 - trafo`` for a unit; a new tie its own key per pair of buses, a moved
    transformer one per unit (moved once)."""
    if up.kind == MeasureKind.MV_TIE_NEW:
        return _TIE_KEY + up.element * (1 << 24) + up.to_bus
    if up.kind == MeasureKind.TRANSFORMER_MOVE:
        return _MOVE_KEY - up.element
    if up.kind == MeasureKind.TRANSFER:
        return TRANSFER_KEY + up.element
    return -1 - up.element if up.kind.value.startswith("transformer") else up.element


@dataclass
class AreaData:
    """An existing transformer area that some option connects to: its radial tree."""

    area: int
    trafo: int
    root: int  # the transformer's LV bus
    parent: dict[int, tuple[int, int]]  # bus -> (line, parent bus)
    children: dict[int, list[int]]
    margin_pu: dict[int, float]  # bus -> base voltage margin (vm - vmin), LV judged buses
    vn_kv: float
    margin_max_pu: dict[int, float] = field(default_factory=dict)  # bus -> vmax - vm

    def path(self, bus: int) -> list[int]:
        out = []
        while bus in self.parent:
            line, bus = self.parent[bus]
            out.append(line)
        return out

    def leaves(self) -> list[int]:
        return [b for b in self.margin_pu if not self.children.get(b)]


@dataclass
class Instance:
    demands: tuple[Demand, ...]
    options: list[Option]
    sites: list[Site]
    areas: dict[int, AreaData]  # by topology area id
    bus_area: dict[int, int]
    trafo_kva: dict[int, float]  # rated
    trafo_base_kva: dict[int, float]  # loading-equivalent kVA at the base (current x rating)
    trafo_z: dict[int, tuple[float, float]]  # (r, x) pu on its own rating
    line_data: dict[int, tuple[float, float, float, float, float]]  # r, x ohm; max, base kA; kV
    upgrades: list[Upgrade]
    unservable: dict[int, str]  # demand position -> why no option exists
    pruned_by_cap: int
    pf: float
    criteria: Criteria
    stats: dict[str, int] = field(default_factory=dict)
    measures: Measures | None = None
    #: the network's MV voltage as reasons say it ("10 kV", "20 kV", "MV" where it has two:
    #: :func:`lvplan.model.topology.mv_label`)
    mv: str = "10 kV"
    #: 10 kV lines the AC check found overloaded (:meth:`line_info`), as ``line_data``
    mv_line_data: dict[int, tuple[float, float, float, float, float]] = field(default_factory=dict)
    #: the LV lines :func:`prune_upgrades` found some plan may need reinforced (current or the
    #: voltage beyond them): where a transfer (feeder split) may help
    needed_lines: set[int] = field(default_factory=set)
    #: LV line -> how many of its upgrades :func:`prune_upgrades` dropped by the over-voltage
    #: rule (each would lift a bus beyond it above its maximum in every plan):
    #: :func:`left_out_for_voltage` tells a user whose demand they leave unserved
    raising_voltage: dict[int, int] = field(default_factory=dict)
    #: the transfers (feeder splits) on offer, by the line each opens
    #: (:class:`lvplan.planning.transfers.FeederSplit`)
    transfers: dict[int, Any] = field(default_factory=dict)
    #: options a demand had that were left out before planning, and why (demand position ->
    #: a sentence its unserved reason ends with)
    left_out: dict[int, str] = field(default_factory=dict)

    def line_upgrades(self, network: Network, line: int) -> list[int]:
        """The upgrades of an existing line (indices into ``upgrades``), made now when it had
        none: an LV line of a candidate area that no connection loads by its path, or a 10 kV
        feeder section, which the AC check found overloaded all the same."""
        have = [
            u
            for u, up in enumerate(self.upgrades)
            if up.element == line
            and not up.kind.value.startswith("transformer")
            and up.kind not in N1_KINDS
            and up.kind != MeasureKind.TRANSFER
        ]
        data = self.line_info(network, line)
        if have or data is None or self.measures is None:
            return have
        mv = line not in self.line_data
        new = line_upgrades(network.pp, line, data, self.measures, cable_types(), mv=mv)
        self.upgrades.extend(new)
        return list(range(len(self.upgrades) - len(new), len(self.upgrades)))

    def line_info(
        self, network: Network, line: int
    ) -> tuple[float, float, float, float, float] | None:
        """``line_data`` of a line: a candidate area's LV line, or an existing 10 kV line
        (read from the network and its base state once, kept in ``mv_line_data``); None for
        anything else."""
        if line in self.line_data:
            return self.line_data[line]
        if line in self.mv_line_data:
            return self.mv_line_data[line]
        net = network.pp
        if line not in net.line.index:
            return None
        vn = float(net.bus.at[int(net.line.at[line, "from_bus"]), "vn_kv"])
        if vn < LV_MAX_KV or self.measures is None or not _mv_rated(self.measures, vn):
            return None  # not a section the catalogue's MV cables are rated for
        pos = int(net.line.index.get_loc(line))
        cols = _line_columns(net.line.iloc[pos : pos + 1])
        ld = network.base_state().line_loading_percent[pos]
        self.mv_line_data[line] = _line_data(cols, 0, ld, vn)
        return self.mv_line_data[line]


def _mv_rated(measures: Measures, vn_kv: float) -> bool:
    """Some cable of the MV cable measures is rated for a network of nominal ``vn_kv``."""
    return any(
        rated_class(measures.cable_measure(k).cables, vn_kv)
        for k in (MeasureKind.MV_CABLE_REPLACE, MeasureKind.MV_CABLE_PARALLEL)
    )


_LINE_COLUMNS = ("parallel", "length_km", "max_i_ka", "df", "r_ohm_per_km", "x_ohm_per_km")


def _line_columns(lines: Any) -> dict[str, np.ndarray]:
    """The columns :func:`_line_data` reads, as arrays by row (read once: a ``.loc`` row per
    line took 12 s of a 40,000-bus city group's 36,684 lines)."""
    return {c: lines[c].to_numpy(dtype=float) for c in _LINE_COLUMNS}


def _line_data(cols: dict[str, np.ndarray], row: int, loading_percent: float, vn: float):
    """(r, x ohm; rating and base current kA; kV) of an existing line: row ``row`` of
    :func:`_line_columns`, at ``loading_percent`` in the base state."""
    par = float(cols["parallel"][row])
    km = float(cols["length_km"][row])
    imax = float(cols["max_i_ka"][row]) * float(cols["df"][row]) * par
    ld = float(loading_percent)
    base = imax * (ld / 100.0 if np.isfinite(ld) else 0.0)
    return (
        float(cols["r_ohm_per_km"][row]) * km / par,
        float(cols["x_ohm_per_km"][row]) * km / par,
        imax,
        base,
        vn,
    )


def parallel_capacity_kva(sn1_kva: float, z1_pu: complex, sn2_kva: float, z2_pu: complex) -> float:
    """The most two transformers in parallel carry with neither over its rating (``z_i_pu``:
    each unit's short-circuit impedance on its own rating). They share the current in inverse
    proportion to their impedances in ohms, so the unit with the larger share reaches its rating
    first: two 630 kVA units of uk 4.5 % and 6 % carry 1,102 kVA together, not 1,260. Equal
    per-unit impedances give the sum of the ratings."""
    z1 = z1_pu / sn1_kva  # proportional to ohms on one voltage base
    z2 = z2_pu / sn2_kva
    zs = abs(z1 + z2)
    return min(sn1_kva * zs / abs(z2), sn2_kva * zs / abs(z1), sn1_kva + sn2_kva)


def _trafo_z(vk_percent: float, vkr_percent: float) -> tuple[float, float]:
    r = vkr_percent / 100.0
    return r, math.sqrt(max((vk_percent / 100.0) ** 2 - r * r, 0.0))


def line_upgrades(
    net: Any,
    line: int,
    data: tuple[float, float, float, float, float],
    measures: Measures,
    cables: dict[str, Any],
    *,
    mv: bool = False,
) -> list[Upgrade]:
    """Every catalogue measure for one LV line (``mv``: a 10 kV feeder section): each larger
    cable in its place, and each cable laid beside it (its capacity the current at which the
    first of the two reaches its rating, the current dividing by admittance)."""
    r_o, x_o, imax, _base, vn = data
    km = float(net.line.at[line, "length_km"])
    replace = MeasureKind.MV_CABLE_REPLACE if mv else MeasureKind.LV_CABLE_REPLACE
    parallel = MeasureKind.MV_CABLE_PARALLEL if mv else MeasureKind.LV_CABLE_PARALLEL
    out = []
    for c in rated_class(measures.cable_measure(replace).cables, vn):
        ct = cables[c]
        if ct.max_i_ka > imax * 1.001:
            out.append(
                Upgrade(
                    replace,
                    line,
                    measures.cable_cost_cny(replace, c, km),
                    cable=c,
                    capacity=ct.max_i_ka,
                    r=ct.r_ohm_per_km * km,
                    x=ct.x_ohm_per_km * km,
                )
            )
    for c in rated_class(measures.cable_measure(parallel).cables, vn):
        ct = cables[c]
        z1 = complex(r_o, x_o)
        z2 = complex(ct.r_ohm_per_km * km, ct.x_ohm_per_km * km)
        if abs(z1) == 0 or abs(z2) == 0:
            continue
        zp = z1 * z2 / (z1 + z2)
        s1, s2 = abs(zp / z1), abs(zp / z2)
        cap = min(imax / s1, ct.max_i_ka / s2)
        out.append(
            Upgrade(
                parallel,
                line,
                measures.cable_cost_cny(parallel, c, km),
                cable=c,
                capacity=cap,
                r=zp.real,
                x=zp.imag,
            )
        )
    return out


#: the shortest service cable laid (a demand at its connection point's own coordinates): as a
#: change's cable (lvplan.changes.resolve, at least 1 m), and priced
MIN_SERVICE_M = 1.0


def service_length_m(route_m: float) -> float:
    """The length a service cable of route ``route_m`` is laid and priced at (assignment.csv
    says the same: it said 0.0 m of a cable modelled as 1 m; probe, 2026-12-07)."""
    return max(route_m, MIN_SERVICE_M)


def build_instance(
    network: Network,
    demands: tuple[Demand, ...],
    crit: Criteria,
    measures: Measures,
    *,
    other_feeder_ties: int = 0,
) -> Instance:
    """The candidates of a plan. ``other_feeder_ties``: each site is offered tied to the
    nearest 10 kV bus of that many other feeders too (``Site.tie_of``; the plan passes
    :data:`OTHER_FEEDER_TIES` and then keeps only those :func:`withhold_ties` leaves)."""
    net = network.pp
    st = network.base_state()
    topo = network.topology
    blon, blat = bus_lonlat(network)
    vn = network.bus_vn_kv
    live = network.live.bus
    lv_rows = np.flatnonzero((vn < LV_MAX_KV) & live & np.isfinite(blon))
    lv_ids = net.bus.index.to_numpy()[lv_rows]
    pf = crit.new_customer_pf
    tan = math.tan(math.acos(pf))
    limits = Limits(net, crit)  # the profile's voltage band per bus, from its one home
    vmin_row, vmax_row = limits.vmin, limits.vmax
    cables = cable_types()
    # the catalogue's service cables (a --catalogue may allow fewer than the equipment has)
    allowed = frozenset(measures.cable_measure(MeasureKind.SERVICE_CABLE).cables)

    def service(d: Demand, route_m: float) -> tuple[str, float, float, float, float]:
        # sized for the current at the lowest voltage the profile allows at the terminal (the
        # plan keeps it there), not at 380 V: a cable sized at 380 V runs a few % over
        c = choose_service_cable(
            d.design_kw,
            d.design_kw * tan,
            route_m,
            vn_kv=crit.lv_min_voltage_v / 1000.0,
            allowed=allowed,
        )
        cost = measures.service_cable_cost_cny(c.type_name, service_length_m(route_m))
        km = route_m / 1000.0
        return c.type_name, cost, c.r_ohm_per_km * km, c.x_ohm_per_km * km, c.max_i_ka

    # -- sites -------------------------------------------------------------------------------
    # (the 10 kV buses a site may be tied to: those a catalogue tie cable is rated for)
    tie_rated = {v: measures.tie_cable_for(v) for v in np.unique(vn[vn >= LV_MAX_KV]).tolist()}
    mv_rows = np.flatnonzero((vn >= LV_MAX_KV) & (vn <= MV_MAX_KV) & live & np.isfinite(blon))
    mv_rows = mv_rows[[tie_rated[float(v)] is not None for v in vn[mv_rows]]]
    # (said in a reason: MV networks no tie cable of the catalogue is rated for)
    bare = sorted(v for v, c in tie_rated.items() if c is None and v <= MV_MAX_KV)
    kv = ", ".join(f"{v:g}" for v in bare)
    unrated = f" (no tie cable of the catalogue is rated for the network's {kv} kV buses)"
    unrated = unrated if bare else ""
    mv = mv_label(network)  # (said in reasons: "20 kV" on SimBench's grids)
    sites: list[Site] = []
    ztr = _trafo_z(*_vk(trafo_types(), measures.new_substation.rated_kva))
    located = [i for i, d in enumerate(demands) if d.lon is not None and not d.hv_required]
    # a new board's no-load voltage: 400 V, or the profile's LV maximum where it is lower
    board_max_pu = crit.lv_max_voltage_v / (LV_BOARD_KV * 1000.0)
    if mv_rows.size:
        dl = np.array([demands[i].lon for i in located], float)
        dt = np.array([demands[i].lat for i in located], float)
        rad = np.array([demands[i].supply_radius_m for i in located], float)

        def site_at(
            lon: float,
            lat: float,
            k: int,
            tie: float,
            between: tuple[int, ...],
            units: int = 1,
            **named: Any,
        ) -> None:
            """A site at (lon, lat) tied to the 10 kV bus ``mv_rows[k]`` by ``tie`` m, of
            ``units`` units side by side."""
            tap = no_load_tap(float(st.vm_pu[mv_rows[k]]), board_max_pu)
            cable = tie_rated[float(vn[mv_rows[k]])]
            assert cable is not None  # (mv_rows holds only buses with a rated tie cable)
            sid = len(sites)
            sites.append(
                Site(
                    sid,
                    named.get("name", f"new substation S{sid + 1}"),
                    lon,
                    lat,
                    int(net.bus.index[mv_rows[k]]),
                    max(tie, 1.0),
                    units * measures.new_substation.rated_kva,
                    measures.new_substation_cost_cny(max(tie, 1.0) / 1000.0, cable, units),
                    float(st.vm_pu[mv_rows[k]]) * tap_ratio(tap),
                    *ztr,
                    tap,
                    between,
                    named.get("tie_of"),
                    cable,
                    units,
                    named.get("twin_of"),
                )
            )

        def found(lon: float, lat: float, between: tuple[int, ...] = ()) -> np.ndarray | None:
            """A site at (lon, lat), tied to the nearest 10 kV bus: what it reaches (a mask of
            ``located``), or None when that bus is beyond a tie's reach."""
            dm = distance_m(lon, lat, blon[mv_rows], blat[mv_rows])
            k = int(np.argmin(dm))
            tie = float(dm[k]) * crit.detour_factor
            if tie > MAX_TIE_M:
                return None
            site_at(lon, lat, k, tie, between)
            reach = distance_m(lon, lat, dl, dt) * crit.detour_factor <= rad
            founded.append((len(sites) - 1, reach))
            return reach

        # every site founded, with the located demands within its reach (their own radius)
        founded: list[tuple[int, np.ndarray]] = []
        # by site: the located demands within its reach
        reached = _leader_sites(dl, dt, rad, crit.detour_factor, found)
        far: dict[int, bool] = {}  # located demand -> no existing LV bus within its reach

        def beyond(x: int) -> bool:
            if x not in far:
                route = distance_m(dl[x], dt[x], blon[lv_rows], blat[lv_rows])
                far[x] = not bool(np.any(route * crit.detour_factor <= rad[x]))
            return far[x]

        for lon, lat, pair in _merged_sites(
            sites, reached, beyond, dl, dt, rad, crit.detour_factor
        ):
            found(lon, lat, pair)
        # a cluster with more than half a new substation's load gets sites at half the radius
        # among its demands too, and so on down to the profile's least radius: founded at the
        # radius alone it had one place, and the plan's second substation stood beside the
        # first, tied to another feeder (sz-futian's 30 demands: class B 10.01 M CNY, class D
        # 9.91 M, against class A's 7.49 M); the least radius's own sites stay as they were
        demand_kva = np.array([demands[i].design_kw / pf for i in located], float)
        # (no lower than a tenth of the radius: a profile's least radius of 0 halved it until
        # the recursion gave out)
        floor_m = max(min(crit.supply_radius_m.values(), default=0.0), 0.1 * rad.max(initial=0.0))

        def split(members: np.ndarray, was: np.ndarray) -> None:
            if demand_kva[members].sum() <= 0.5 * measures.new_substation.rated_kva:
                return
            sub_m = np.maximum(0.5 * was, floor_m)
            if not bool(np.any(sub_m < was)):
                return

            def sub(lon: float, lat: float) -> np.ndarray | None:
                at = np.array([(s.lon, s.lat) for s in sites], float).reshape(-1, 2)
                taken = bool(np.any(distance_m(lon, lat, at[:, 0], at[:, 1]) < SAME_PLACE_M))
                if not taken and found(lon, lat) is None:
                    return None
                return distance_m(lon, lat, dl[members], dt[members]) * crit.detour_factor <= sub_m

            for mask in _leader_sites(dl[members], dt[members], sub_m, crit.detour_factor, sub):
                split(members[mask], sub_m[mask])

        for reach in list(reached):
            split(np.flatnonzero(reach), rad[reach])
        # a site whose demands in reach need more than one unit also stands with more units
        # on its one tie (the seed-1 district's plan built two sites 140 m apart, each with
        # its own 1.3-1.5 km tie, for 7 demands all within 150 m of one point). Every site
        # founded, the heavy clusters' too: a wider radius, which adds sites, then keeps
        # every choice a narrower one has (sz-futian's 30 demands at class D cost 0.3 % more
        # than at class A when only the sites at the full radius had them)
        k_of = {int(net.bus.index[r]): k for k, r in enumerate(mv_rows.tolist())}
        most = min(measures.new_substation.units_max, MAX_SITE_UNITS)
        # (a unit holds its rating at the profile's loading limit, less the voltage at its
        # board: the model's room, linear.py; by the rating alone 560 kW in 4 demands, over
        # that room, got two sites of one unit on two ties, 2.00 M CNY against 1.23 M)
        held_kva = crit.trafo_max_loading_percent / 100.0 * crit.lv_min_voltage_v / 400.0
        for sid, reach in founded if most > 1 else []:
            one = sites[sid]
            need = demand_kva[reach].sum() / (one.rated_kva * held_kva)
            units = min(most, math.ceil(need))
            if units > 1:
                site_at(
                    one.lon,
                    one.lat,
                    k_of[one.mv_bus],
                    one.tie_m,
                    one.between,
                    units,
                    twin_of=one.id,
                )
        # each place tied to other feeders too: the nearest feeder's voltage room may be spent
        # (by the loads already on it, or by the plan's own) where a feeder a little farther
        # has room; a tie to the source busbar is a new 10 kV feeder
        feeder_of = mv_bus_feeders(net) if other_feeder_ties > 0 else {}
        mv_feeder = [feeder_of.get(int(b), "") for b in net.bus.index[mv_rows]]
        for base in list(sites) if other_feeder_ties > 0 else []:
            own = feeder_of.get(base.mv_bus, "")
            many = {"units": base.units} if base.units > 1 else {}  # (a site of more units)
            dm = distance_m(base.lon, base.lat, blon[mv_rows], blat[mv_rows]) * crit.detour_factor
            other: dict[str, int] = {}  # feeder -> its nearest bus (position in mv_rows)
            for k in np.argsort(dm, kind="stable").tolist():
                if len(other) == other_feeder_ties or dm[k] > MAX_TIE_M:
                    break
                f = mv_feeder[k]
                if f and f != own and f not in other:
                    other[f] = k
            for f, k in other.items():
                site_at(
                    base.lon,
                    base.lat,
                    k,
                    float(dm[k]),
                    base.between,
                    name=f"{base.name} (tie to {f})",
                    tie_of=base.id,
                    **many,
                )
    site_lon = np.array([s.lon for s in sites], float)
    site_lat = np.array([s.lat for s in sites], float)

    def place(sid: int) -> int:
        return _place(sites, sid)

    # -- connection options --------------------------------------------------------------------
    options: list[Option] = []
    unservable: dict[int, str] = {}
    pruned_by_cap = 0
    tree_cache: dict[int, AreaData] = {}
    for i, d in enumerate(demands):
        if d.hv_required:
            unservable[i] = (
                f"declared {d.declared_kw:.12g} kW is above the LV limit of "
                f"{crit.lv_policy_max_kw:.12g} kW: HV supply"
            )
            continue
        mine: list[Option] = []
        if d.bus is not None:
            mine.append(Option(i, d.bus, None, 0.0, "", 0.0, 0.0, 0.0, math.inf))
        elif d.lon is not None and d.lat is not None:
            route = distance_m(d.lon, d.lat, blon[lv_rows], blat[lv_rows]) * crit.detour_factor
            inside = np.flatnonzero(route <= d.supply_radius_m)
            inside = inside[np.argsort(route[inside], kind="stable")]
            by_area: dict[int, list[tuple[int, float]]] = {}
            for r in inside.tolist():
                b = int(lv_ids[r])
                a = topo.bus_area.get(b)
                if a is None or not topo.areas[a].trafos:
                    continue
                by_area.setdefault(a, []).append((b, float(route[r])))
            for a, cands in by_area.items():
                tree = tree_cache.get(a) or _tree(network, a, st, vmin_row, vmax_row)
                tree_cache[a] = tree
                kept: list[tuple[int, float]] = []
                for b, rt in cands:  # ascending route: a dominator comes first
                    anc = _ancestors(tree, b)
                    if any(k in anc for k, _ in kept):
                        continue
                    kept.append((b, rt))
                pruned_by_cap += max(0, len(kept) - MAX_PER_AREA)
                for b, rt in kept[:MAX_PER_AREA]:
                    mine.append(Option(i, b, None, rt, *service(d, rt)))
            if sites:
                rs = distance_m(d.lon, d.lat, site_lon, site_lat) * crit.detour_factor
                near = np.flatnonzero(rs <= d.supply_radius_m)
                near = near[np.argsort(rs[near], kind="stable")]
                # only the MAX_OPTIONS nearest places can stay (:func:`_capped`): the others'
                # service cables are not sized (874,000 sizings for 3,000 class D demands)
                places: set[int] = set()
                near_kept: list[int] = []
                for sid in near.tolist():
                    if place(sid) not in places:
                        if len(places) == MAX_OPTIONS:
                            continue
                        places.add(place(sid))
                    near_kept.append(sid)
                pruned_by_cap += len(near) - len(near_kept)
                for sid in near_kept:
                    route_s = float(rs[sid])
                    mine.append(Option(i, None, sid, route_s, *service(d, route_s)))
        if len(mine) > MAX_OPTIONS:
            n_was = len(mine)
            mine = _capped(mine, place)
            pruned_by_cap += n_was - len(mine)
        if not mine:
            unservable[i] = (
                f"no LV bus within the {d.supply_radius_m:g} m supply radius and no site for a "
                f"new substation within {MAX_TIE_M:g} m of a {mv} bus{unrated}"
            )
        options.extend(mine)

    # areas of options given by bus
    for o in options:
        if o.bus is not None:
            a = topo.bus_area.get(o.bus)
            if a is not None and a not in tree_cache and topo.areas[a].trafos:
                tree_cache[a] = _tree(network, a, st, vmin_row, vmax_row)

    # -- upgrades --------------------------------------------------------------------------------
    trafo_kva: dict[int, float] = {}
    trafo_base: dict[int, float] = {}
    trafo_z: dict[int, tuple[float, float]] = {}
    upgrades: list[Upgrade] = []
    ttypes = trafo_types()
    tpos = {int(t): k for k, t in enumerate(net.trafo.index)}
    for a_id, tree in tree_cache.items():
        t = tree.trafo
        row = net.trafo.loc[t]
        # a second unit in the same room, not a third: none where the area has two units, or
        # the unit counts two (`parallel`; a plan on a reinforced network offered
        # "800 kVA -> 800 + 1000 kVA" beside the 630 kVA unit already there: probe, 2026-12-07)
        paired = len(topo.areas[a_id].trafos) > 1 or float(row.get("parallel", 1) or 1) > 1
        sn = float(row.sn_mva) * 1000.0 * float(row.get("parallel", 1) or 1)
        trafo_kva[t] = sn
        load = st.trafo_loading_percent[tpos[t]]
        trafo_base[t] = sn * (float(load) / 100.0 if np.isfinite(load) else 0.0)
        trafo_z[t] = _trafo_z(float(row.vk_percent), float(row.vkr_percent))
        # a row of ``parallel`` units (2 x 630 kVA as one row) swaps its units for as many of
        # a larger rating: offered nothing, its 1,260 kVA above the ladder's single units, it
        # served fewer demands than the same pair as two rows, "even with the largest
        # measure" (probe helper-78)
        n = float(row.get("parallel", 1) or 1)
        units = int(n) if n.is_integer() and 2 <= n <= MAX_SITE_UNITS else 1
        for kva in measures.ladder_kva:
            for k in sorted({1, units}):
                if k * kva > sn and kva in ttypes:
                    upgrades.append(
                        Upgrade(
                            MeasureKind.TRANSFORMER_SWAP,
                            t,
                            k * measures.swap_cost_cny(kva),
                            kva,
                            capacity=float(k * kva),
                            r=_trafo_z(*_vk(ttypes, kva))[0],
                            x=_trafo_z(*_vk(ttypes, kva))[1],
                            units=k,
                        )
                    )
        for kva in () if paired else measures.parallel.ratings_kva:
            if kva in ttypes:
                r2, x2 = _trafo_z(*_vk(ttypes, kva))
                r1, x1 = trafo_z[t]
                # both on the combined rating: z_i scaled by (sn_total / sn_i), then in parallel
                tot = sn + kva
                z1 = complex(r1, x1) * tot / sn
                z2 = complex(r2, x2) * tot / kva
                zp = z1 * z2 / (z1 + z2)
                cap = parallel_capacity_kva(sn, complex(r1, x1), kva, complex(r2, x2))
                zp *= cap / tot  # on the pair's capacity, as every unit's on its rating
                upgrades.append(
                    Upgrade(
                        MeasureKind.TRANSFORMER_PARALLEL,
                        t,
                        measures.parallel_cost_cny(kva),
                        kva,
                        capacity=cap,
                        r=zp.real,
                        x=zp.imag,
                    )
                )
    line_data: dict[int, tuple[float, float, float, float, float]] = {}
    lpos = {int(x): k for k, x in enumerate(net.line.index)}
    lcols = _line_columns(net.line)
    loading = st.line_loading_percent
    used_lines: set[int] = set()
    for o in options:
        if o.bus is not None:
            a = topo.bus_area.get(o.bus)
            if a in tree_cache:
                used_lines.update(tree_cache[a].path(o.bus))
    for tree in tree_cache.values():
        for b in tree.parent:
            line = tree.parent[b][0]
            row = lpos[line]
            line_data[line] = _line_data(lcols, row, loading[row], tree.vn_kv)
    for line in sorted(used_lines):
        upgrades += line_upgrades(net, line, line_data[line], measures, cables)
    return Instance(
        mv=mv,
        demands=demands,
        options=options,
        sites=sites,
        areas=tree_cache,
        bus_area={b: a for a, t in tree_cache.items() for b in t.margin_pu},
        trafo_kva=trafo_kva,
        trafo_base_kva=trafo_base,
        trafo_z=trafo_z,
        line_data=line_data,
        upgrades=upgrades,
        unservable=unservable,
        pruned_by_cap=pruned_by_cap,
        pf=pf,
        criteria=crit,
        measures=measures,
        stats={
            "options": len(options),
            "sites": len(sites),
            "areas": len(tree_cache),
            "upgrades": len(upgrades),
            "upgradable_lines": len(used_lines),
            "upgrades_raising_voltage": 0,  # set by prune_upgrades
            "other_feeder_ties": sum(s.tie_of is not None for s in sites),
        },
    )


def withhold_ties(inst: Instance, lacking: Collection[int]) -> int:
    """Keep a site's ties to other feeders (``tie_of`` set) only where its place reaches a
    demand in ``lacking``, and return how many sites are dropped (the site ids renumbered).
    The ties are offered for the demands that a plan without them leaves out (the caller's
    screen: :func:`lvplan.planning.plan.plan_network`); every place's tie to the nearest 10 kV
    bus stays. A heuristic, and it says so: on the SimBench district the ties of every place
    (271 sites for 92) cost the minute's plan 4 % and its bound 3 M CNY."""
    reach = {
        _place(inst.sites, o.site)
        for o in inst.options
        if o.site is not None and o.demand in lacking
    }
    keep = [s for s in inst.sites if s.tie_of is None or _place(inst.sites, s.id) in reach]
    if len(keep) == len(inst.sites):
        return 0
    dropped = len(inst.sites) - len(keep)
    new_id = {s.id: j for j, s in enumerate(keep)}
    # (a tie or twin names the site it is of, which is kept: a place's own site always is)
    inst.sites = [
        dataclasses.replace(
            s,
            id=j,
            tie_of=None if s.tie_of is None else new_id[s.tie_of],
            twin_of=None if s.twin_of is None else new_id[s.twin_of],
        )
        for j, s in enumerate(keep)
    ]
    inst.options = [
        o if o.site is None else dataclasses.replace(o, site=new_id[o.site])
        for o in inst.options
        if o.site is None or o.site in new_id
    ]
    inst.stats["sites"], inst.stats["options"] = len(inst.sites), len(inst.options)
    inst.stats["other_feeder_ties"] = sum(s.tie_of is not None for s in inst.sites)
    return dropped


def _place(sites: list[Site], sid: int) -> int:
    """The site of one unit tied to the nearest 10 kV bus at site ``sid``'s place."""
    s = sites[sid]
    while s.tie_of is not None or s.twin_of is not None:
        s = sites[s.tie_of if s.tie_of is not None else s.twin_of]  # type: ignore[index]
    return s.id


#: a site founded within this of another stands at its place (one site, not two)
SAME_PLACE_M = 5.0


def _leader_sites(
    lon: np.ndarray,
    lat: np.ndarray,
    radius_m: np.ndarray,
    detour: float,
    found: Callable[[float, float], np.ndarray | None],
) -> list[np.ndarray]:
    """Leader clustering of the points: the first point not yet within reach of a site founds
    one (``found(lon, lat)``: what that site reaches, a mask of the points, or None when no
    site can stand there) at the centroid of the points within half its radius, or at itself
    when that centroid would leave it out of reach. The sites' masks, in order."""
    covered = np.zeros(len(lon), bool)
    reached: list[np.ndarray] = []
    for j in range(len(lon)):
        if covered[j]:
            continue
        near = distance_m(lon[j], lat[j], lon, lat) * detour <= 0.5 * radius_m[j]
        c_lon, c_lat = float(lon[near].mean()), float(lat[near].mean())
        if distance_m(c_lon, c_lat, lon[j], lat[j]) * detour > radius_m[j]:
            c_lon, c_lat = float(lon[j]), float(lat[j])
        reach = found(c_lon, c_lat)
        if reach is None:
            continue
        reached.append(reach)
        covered |= reach
    return reached


def _merged_sites(
    sites: list[Site],
    reached: list[np.ndarray],
    beyond: Callable[[int], bool],
    lon: np.ndarray,
    lat: np.ndarray,
    radius_m: np.ndarray,
    detour: float,
) -> list[tuple[float, float, tuple[int, int]]]:
    """One site for two: where the demands beyond every LV bus (``beyond``) that two sites
    reach between them are all within reach of one point, that point (the centre of the least
    circle about them). Leader clustering founds each site at the demands near the first one
    it has not covered, so neighbouring clusters got a site each, each with its own 10 kV tie:
    on the SimBench district the plan built pairs 110-140 m apart, each with a 0.9-2 km tie."""
    out: list[tuple[float, float, tuple[int, int]]] = []
    seen: set[tuple[int, ...]] = set()
    n = len(reached)
    if n < 2:
        return out
    s_lon = np.array([s.lon for s in sites[:n]], float)
    s_lat = np.array([s.lat for s in sites[:n]], float)
    reach_m = 2.0 * float(radius_m.max())
    for a in range(n - 1):
        near = distance_m(s_lon[a], s_lat[a], s_lon[a + 1 :], s_lat[a + 1 :]) * detour <= reach_m
        for b in (a + 1 + np.flatnonzero(near)).tolist():
            both = np.flatnonzero(reached[a] | reached[b])
            must = np.array([x for x in both.tolist() if beyond(x)], int)
            key = tuple(must.tolist())
            if len(must) < 2 or key in seen:
                continue
            seen.add(key)
            if reached[a][must].all() or reached[b][must].all():
                continue  # one of the two reaches them all already
            c_lon, c_lat = _least_circle_centre(lon[must], lat[must])
            d = distance_m(c_lon, c_lat, lon[must], lat[must]) * detour
            if bool(np.all(d <= radius_m[must])):
                out.append((c_lon, c_lat, (a, b)))
    return out


def _least_circle_centre(lon: np.ndarray, lat: np.ndarray, steps: int = 200) -> tuple[float, float]:
    """The centre of the least circle about the points, to within a few metres at a supply
    radius (Badoiu and Clarkson's iteration: step towards the farthest point by 1/(k+1))."""
    c_lon, c_lat = float(lon.mean()), float(lat.mean())
    for k in range(1, steps + 1):
        f = int(np.argmax(distance_m(c_lon, c_lat, lon, lat)))
        c_lon += (float(lon[f]) - c_lon) / (k + 1)
        c_lat += (float(lat[f]) - c_lat) / (k + 1)
    return c_lon, c_lat


def _vk(ttypes, kva: int) -> tuple[float, float]:
    t = ttypes[kva]
    return t.vk_percent, t.vkr_percent


def _ancestors(tree: AreaData, bus: int) -> set[int]:
    out = set()
    while bus in tree.parent:
        bus = tree.parent[bus][1]
        out.add(bus)
    return out


def _tree(network: Network, area_id: int, st, vmin_row: np.ndarray, vmax_row) -> AreaData:
    """The area's radial tree from its (first) transformer's LV bus, breadth first over its
    in-service lines (a meshed area keeps a spanning tree; the AC check sees the rest)."""
    net = network.pp
    topo = network.topology
    area = topo.areas[area_id]
    t = int(area.trafos[0])
    root = int(net.trafo.at[t, "lv_bus"])
    g = topo.lv_graph
    parent: dict[int, tuple[int, int]] = {}
    children: dict[int, list[int]] = {}
    seen = {root}
    frontier = [root]
    while frontier:
        nxt = []
        for u in frontier:
            for v, keys in g[u].items():
                if v in seen:
                    continue
                lines = [k[1] for k in keys if k[0] == "line"]
                if not lines:
                    continue
                seen.add(v)
                parent[v] = (int(lines[0]), u)
                children.setdefault(u, []).append(v)
                nxt.append(v)
        frontier = nxt
    margin: dict[int, float] = {}
    margin_max: dict[int, float] = {}
    for b in area.buses:
        r = network.bus_row(int(b))
        vm = st.vm_pu[r]
        if np.isfinite(vm) and np.isfinite(vmin_row[r]):
            margin[int(b)] = float(vm - vmin_row[r])
        if np.isfinite(vm) and np.isfinite(vmax_row[r]):
            margin_max[int(b)] = float(vmax_row[r] - vm)
    vn_kv = float(net.bus.at[root, "vn_kv"])
    return AreaData(area_id, t, root, parent, children, margin, vn_kv, margin_max)


def prune_upgrades(inst: Instance, mv) -> int:
    """Drop the upgrades no plan can need, and return how many. An element's upgrade relaxes
    only its current limit and the voltages beyond it; with every demand at the option that
    loads that element most (each demand once), if the element's current stays within its
    rating and every voltage beyond it within its margin (by the model's own linear drops,
    the 10 kV drop included), no constraint the upgrade relaxes can bind, so a plan with it
    costs more and is no more feasible: it is never optimal, and safe to drop. A cable
    upgrade that lifts some bus beyond it above its maximum voltage even under the most new
    load any plan puts there is dropped too (no verified plan can hold it: see
    :func:`_raises_over_vmax`), counted in ``stats["upgrades_raising_voltage"]``."""
    crit = inst.criteria
    tan = math.tan(math.acos(inst.pf))
    vmin_v = crit.lv_min_voltage_v
    lim_line = crit.line_max_loading_percent / 100.0
    lim_trafo = crit.trafo_max_loading_percent / 100.0
    p_line: dict[int, float] = {}
    p_trafo: dict[int, float] = {}
    cable_drop: dict[int, float] = {}  # bus -> the worst service cable drop of an option there
    p_site: dict[int, float] = {}
    by_demand: dict[int, list[Option]] = {}
    for o in inst.options:
        by_demand.setdefault(o.demand, []).append(o)
    for i, opts in by_demand.items():
        kw = inst.demands[i].design_kw
        for sid in {o.site for o in opts if o.site is not None}:
            p_site[sid] = p_site.get(sid, 0.0) + kw
        lines: set[int] = set()
        trafos: set[int] = set()
        for o in opts:
            a = inst.bus_area.get(o.bus) if o.bus is not None else None
            if a is None or o.bus is None:
                continue
            tree = inst.areas[a]
            lines.update(tree.path(o.bus))
            trafos.add(tree.trafo)
            vpu = vmin_v / (tree.vn_kv * 1000.0)
            drop = (o.cable_r_ohm + o.cable_x_ohm * tan) * kw * 1e-3 / (tree.vn_kv**2 * vpu)
            cable_drop[o.bus] = max(cable_drop.get(o.bus, 0.0), drop)
        for line in lines:
            p_line[line] = p_line.get(line, 0.0) + kw
        for t in trafos:
            p_trafo[t] = p_trafo.get(t, 0.0) + kw
    mv_idx = mv.index()
    p_src = np.zeros(len(mv.keys))  # the most new load each 10 kV source could draw
    for a, tree in inst.areas.items():
        p_src[mv_idx[("area", a)]] = p_trafo.get(tree.trafo, 0.0)
    for sid, kw in p_site.items():
        p_src[mv_idx[("site", sid)]] = kw
    need_line: set[int] = set()
    need_trafo: set[int] = set()
    room_below: dict[int, float] = {}  # bus -> least vmax room in its subtree, every plan
    line_child: dict[int, tuple[int, int]] = {}  # line -> (parent bus, the bus it feeds)
    for a, tree in inst.areas.items():
        t = tree.trafo
        vpu = vmin_v / (tree.vn_kv * 1000.0)
        sn = inst.trafo_kva[t]
        if inst.trafo_base_kva[t] + p_trafo.get(t, 0.0) / (inst.pf * vpu) > sn * lim_trafo:
            need_trafo.add(t)
        r, x = inst.trafo_z[t]
        d_t = (r + x * tan) * p_trafo.get(t, 0.0) / (sn * vpu)
        d_mv = float(mv.pu_per_kw[mv_idx[("area", a)]] @ p_src)
        for line in {tree.parent[b][0] for b in tree.parent}:
            if line not in inst.line_data or line not in p_line:
                continue
            _r, _x, imax, base, vn = inst.line_data[line]
            i_new = p_line[line] / (math.sqrt(3) * vn * vpu * inst.pf * 1000.0)
            if base + i_new > imax * lim_line:
                need_line.add(line)
        worst = {tree.root: d_t + d_mv}  # the worst-case drop at each bus, root outwards
        stack = [tree.root]
        while stack:
            u = stack.pop()
            for v in tree.children.get(u, []):
                line = tree.parent[v][0]
                r_l, x_l, _i, _b, vn = inst.line_data[line]
                d = (r_l + x_l * tan) * p_line.get(line, 0.0) * 1e-3 / (vn * vn * vpu)
                worst[v] = worst[u] + d
                stack.append(v)
        for b, margin in tree.margin_pu.items():
            if b not in worst:
                continue  # not reached by lines (a switch): left to the AC check
            if worst[b] + cable_drop.get(b, 0.0) >= margin:
                need_trafo.add(t)
                need_line.update(tree.path(b))
        _least_room_above_vmax(tree, worst, room_below, line_child)
    before = len(inst.upgrades)
    kept = []
    raising = 0
    for up in inst.upgrades:
        is_trafo = up.kind in (MeasureKind.TRANSFORMER_SWAP, MeasureKind.TRANSFORMER_PARALLEL)
        if not ((up.element in need_trafo) if is_trafo else (up.element in need_line)):
            continue
        if not is_trafo and _raises_over_vmax(up, inst, room_below, line_child):
            raising += 1
            inst.raising_voltage[up.element] = inst.raising_voltage.get(up.element, 0) + 1
            continue
        kept.append(up)
    inst.upgrades = kept
    inst.needed_lines = need_line
    inst.stats["upgrades"] = len(kept)
    inst.stats["upgrades_pruned"] = before - len(kept)
    inst.stats["upgrades_raising_voltage"] = raising
    return before - len(kept)


def left_out_for_voltage(inst: Instance, demand: int) -> str | None:
    """Words for the reason a user reads when ``demand`` (its position) is unserved: the lines
    on the way from its connections to their transformer that had upgrades dropped by the
    over-voltage rule of :func:`prune_upgrades` (without them a plan may have no measure big
    enough for the line; the greedy's own words name the line only as overloaded), or None."""
    if not inst.raising_voltage:
        return None
    lines: list[int] = []
    for o in inst.options:
        if o.demand != demand or o.bus is None or o.bus not in inst.bus_area:
            continue
        for line in inst.areas[inst.bus_area[o.bus]].path(o.bus):
            if line in inst.raising_voltage and line not in lines:
                lines.append(line)
    if not lines:
        return None
    vmax = f"{inst.criteria.lv_max_voltage_v:g} V"
    return "; ".join(
        f"line {line} on its way to the transformer: {inst.raising_voltage[line]} of its "
        "upgrades were left out because each would lift the voltage of a bus beyond it above "
        f"the {vmax} maximum in every plan"
        for line in sorted(lines)
    )


def _least_room_above_vmax(
    tree: AreaData,
    worst: dict[int, float],
    room_below: dict[int, float],
    line_child: dict[int, tuple[int, int]],
) -> None:
    """For each bus of ``tree``, the least room any bus of its subtree keeps below its
    maximum voltage in every plan: its base room ``vmax - vm`` plus ``worst``, the most the
    new demands could lower it (an upper bound of their drop). Buses already above their
    maximum, or not reached by lines, give no room (they constrain nothing here). Also each
    line of the tree -> (its parent bus, the bus it feeds)."""
    order = [tree.root]
    for u in order:
        order.extend(tree.children.get(u, []))
    for b in reversed(order):
        m = tree.margin_max_pu.get(b)
        low = m + worst[b] if m is not None and m > 0.0 and b in worst else math.inf
        for c in tree.children.get(b, []):
            low = min(low, room_below[c])
        room_below[b] = low
        if b in tree.parent:
            line, up = tree.parent[b]
            line_child[line] = (up, b)


def _raises_over_vmax(
    up: Upgrade,
    inst: Instance,
    room_below: dict[int, float],
    line_child: dict[int, tuple[int, int]],
) -> bool:
    """True when a cable upgrade puts some bus beyond it above its maximum voltage in every
    plan, so no verified plan can hold it (the over-voltage rule of :func:`prune_upgrades`).

    Kept safe: the rise is a lower bound and the room an upper one. The cable carries the
    base load with today's drop ``d = vm(parent) - vm(bus)`` (the AC base state, about
    ``r P + x Q``, the load flowing outwards); with ``r1 <= r0`` and ``x1 <= x0`` the drop after
    is at most ``(1 - k) d``,
    ``k = min(1 - r1/r0, 1 - x1/x0)``, so every bus beyond rises by at least ``k d``. The room
    of each of those buses counts the most any plan's new demand could lower it
    (:func:`_least_room_above_vmax`); a bus already above its maximum is not counted. A
    transformer's upgrades are never dropped by this rule: its base drop is not in the state
    (its tap and 10 kV side)."""
    ends = line_child.get(up.element)
    if ends is None or up.element not in inst.line_data:
        return False
    parent, bus = ends
    tree = inst.areas[inst.bus_area[bus]]
    m_parent, m_bus = tree.margin_max_pu.get(parent), tree.margin_max_pu.get(bus)
    if m_parent is None or m_bus is None:
        return False
    drop = m_bus - m_parent  # vm(parent) - vm(bus): the base drop along the cable
    r0, x0, _imax, _base, _vn = inst.line_data[up.element]
    if drop <= 0.0 or r0 <= 0.0 or up.r > r0 or up.x > x0:
        return False
    k = 1.0 - up.r / r0
    if x0 > 0.0:
        k = min(k, 1.0 - up.x / x0)
    return k * drop > room_below.get(bus, math.inf)
