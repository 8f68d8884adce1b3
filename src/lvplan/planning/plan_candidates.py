"""The candidates a plan is made from (:func:`lvplan.planning.plan.plan_network`'s first step).

:func:`lvplan.planning.candidates.build_instance`'s connection options, sites and upgrades,
screened: the places' ties to other feeders are kept only for the demands a plan without them
leaves out (and for N-1 demands a new radial site would serve), the options of N-1 demands at
new sites tied to the source busbar are left out, a city group's sites take its tag, the
upgrades no plan can need are dropped, and transfers (feeder splits) are offered.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from lvplan.criteria import Criteria
from lvplan.model.network import Network
from lvplan.planning import candidates
from lvplan.planning.candidates import Instance, Site, build_instance, prune_upgrades, withhold_ties
from lvplan.planning.demand import DemandSet
from lvplan.planning.greedy import Greedy
from lvplan.planning.linear import Cuts, LinearGrid, MvResponse, mv_response
from lvplan.planning.measures import Measures
from lvplan.planning.n1plan import n1_demands
from lvplan.planning.plan import _improves
from lvplan.planning.transfers import offer_transfers


def plan_candidates(
    network: Network,
    ds: DemandSet,
    crit: Criteria,
    meas: Measures,
    order: list[int],
    say: Callable[[str], None],
    site_tag: str,
) -> tuple[Instance, MvResponse]:
    """The plan's candidates (connection options, sites, upgrades, transfers) and their 10 kV
    response: the ties to other feeders kept only for the demands a plan without them leaves
    out, the radial N-1 options left out, the upgrades no plan can need dropped."""
    inst = build_instance(
        network, ds.demands, crit, meas, other_feeder_ties=candidates.OTHER_FEEDER_TIES
    )
    mv: MvResponse | None = None
    if any(s.tie_of is not None for s in inst.sites):
        # the screen runs on the candidates without any tie (it leaves them aside), so that
        # its 10 kV response is the plan's when no tie is kept (on a 40,000-bus group of the
        # city, the response with every tie took 4.1 s and the screen 6.3 s)
        bare = dataclasses.replace(inst, stats=dict(inst.stats))
        withhold_ties(bare, ())
        mv = mv_response(network, bare)
        short = _left_out(bare, mv, order) | _radial_n1(network, bare, crit)
        dropped = withhold_ties(inst, short)
        if len(inst.sites) != len(bare.sites):
            mv = None  # (the ties kept: their rows and columns)
        say(
            f"ties to other feeders: {inst.stats['other_feeder_ties']} offered for the "
            f"{len(short)} demands a plan without them leaves out ({dropped} left out)"
        )
    radial = _drop_radial_n1(network, inst, crit)
    if radial:
        say(
            f"N-1: {radial} options of N-1 demands at new sites tied to the source busbar left "
            "out (a radial feeder of its own: no tie restores it)"
        )
    if site_tag:
        inst.sites = [dataclasses.replace(s, name=_tagged(inst, s, site_tag)) for s in inst.sites]
    say(
        f"candidates: {inst.stats['options']} connection options, {inst.stats['sites']} sites, "
        f"{inst.stats['upgrades']} upgrades; {len(inst.unservable)} demands unservable"
    )
    if mv is None:
        mv = mv_response(network, inst)
    pruned = prune_upgrades(inst, mv)
    say(f"upgrades: {len(inst.upgrades)} kept, {pruned} that no plan can need dropped")
    if offer_transfers(network, inst):
        say(
            f"transfers (feeder splits): {inst.stats['transfers']} offered "
            f"({inst.stats['transfer_twins']} twin options), "
            f"{inst.stats['transfers_pruned']} candidates left out"
        )
    return inst, mv


def _left_out(inst: Instance, mv: MvResponse, order: list[int]) -> set[int]:
    """The demands that the greedy plan leaves out on the candidates ``inst`` (those without
    the places' ties to other feeders), on the linear model alone (no AC check): the screen
    for which ties are offered (:func:`lvplan.planning.candidates.withhold_ties`). Like the
    plan's greedy, it also tries without the sites between two clusters, and takes the plan
    that serves more."""
    grid = LinearGrid(inst, mv, Cuts())
    between = frozenset(s.id for s in inst.sites if s.between)
    sol = Greedy(grid).run(order, None)
    servable = [i for i in range(len(inst.demands)) if i not in inst.unservable]
    if not all(sol.served[i] for i in servable) and between:
        founded = Greedy(grid, (), between).run(order, None)
        if _improves(inst, founded, sol):
            sol = founded
    return {i for i in servable if not sol.served[i]}


def _radial_n1(network: Network, inst: Instance, crit: Criteria) -> set[int]:
    """The demands of an area class with full N-1 that a new site tied to the source busbar
    reaches: such a site's tie is a new radial feeder, whose loss cuts it off with no tie to
    restore it (the N-1 check withdraws it), so its place's ties to other feeders, whose loops
    may restore it, are kept for them (before, only the linear screen kept them, and a 200 kW
    class-A demand beside the busbar was left unserved)."""
    needs = n1_demands(inst, crit)
    if not needs:
        return set()
    on_busbar = _radial_sites(network, inst)
    return {o.demand for o in inst.options if o.site in on_busbar and o.demand in needs}


def _drop_radial_n1(network: Network, inst: Instance, crit: Criteria) -> int:
    """Leave out the options of N-1 demands at new sites tied to the source busbar, where the
    demand keeps another option, and return how many. Such a site's tie is a radial feeder of
    its own: its loss cuts the site off with nothing to restore it, so the N-1 check withdrew
    each such site the plan took, a few dozen a round (sz-futian, 160 of 300 demands of class
    A+, A or B: 21 and 30 sites in two rounds of 10-90 s each, and no optimal plan in 120 s).
    The place stays for them tied to other feeders, whose loops may restore it
    (:func:`_radial_n1` keeps those ties). Left out with them: such a site restored by a new
    tie of its own, which the N-1 check offers only once the site is built."""
    needs = n1_demands(inst, crit)
    on_busbar = _radial_sites(network, inst) if needs else set()
    if not on_busbar:
        return 0
    # the N-1 demands with an option elsewhere: only theirs are left out
    elsewhere = {o.demand for o in inst.options if o.demand in needs and o.site not in on_busbar}
    keep = [o for o in inst.options if not (o.site in on_busbar and o.demand in elsewhere)]
    for i in {o.demand for o in inst.options if o.site in on_busbar and o.demand in elsewhere}:
        inst.left_out[i] = (
            "its options at new sites tied to the source busbar were left out (a radial "
            "feeder of its own: no tie restores it for the N-1 its area class requires)"
        )
    dropped = len(inst.options) - len(keep)
    inst.options = keep
    inst.stats["options"] = len(keep)
    return dropped


def _radial_sites(network: Network, inst: Instance) -> set[int]:
    """The sites tied to the source busbar (a new radial feeder each)."""
    from lvplan.model.topology import mv_bus_feeders

    feeder_of = mv_bus_feeders(network.pp)
    return {s.id for s in inst.sites if feeder_of.get(s.mv_bus, "busbar") == "busbar"}


def _tagged(inst: Instance, s: Site, tag: str) -> str:
    """A site's name with a city group's tag: ``new substation S<tag>.<n>``, and a tie to
    another feeder named after its place's site."""
    if s.tie_of is None:
        return f"new substation S{tag}.{s.id + 1}"
    base = inst.sites[s.tie_of]
    return f"new substation S{tag}.{base.id + 1}{s.name[len(base.name) :]}"
