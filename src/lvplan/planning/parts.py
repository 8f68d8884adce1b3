"""Where a plan splits into parts that can be optimised one at a time.

Two demands are in one part when an option of each connects to the same transformer area or
the same new-substation site, or when their areas or sites hang on the same 10 kV feeder
(their voltage drops add up along it). What couples parts is then only the 10 kV busbar they
share and the AC check's linear cuts; each part is optimised with every other part held at the
incumbent plan (their load on the busbar as a constant, and a share of each cut's room), so the
parts can be solved apart and the union is checked by one AC load flow of the whole network.

Measured: the synthetic city of 1,000 transformers with 2,000 demands falls into 7 parts (the
largest 4,306 of 12,869 options); the SimBench urban district's 10 feeders, whose areas overlap
through the demands' options, are one part, solved as before.
"""

from __future__ import annotations

from dataclasses import dataclass

from lvplan.model.network import Network
from lvplan.model.topology import mv_bus_feeders
from lvplan.planning.candidates import Instance


@dataclass(frozen=True)
class Part:
    demands: tuple[int, ...]  # positions in Instance.demands
    options: tuple[int, ...]  # indices into Instance.options
    feeders: tuple[str, ...]


def split(network: Network, inst: Instance, *, by_feeder: bool = True) -> list[Part]:
    """The independent parts of ``inst``, largest first (one part when nothing splits).
    ``by_feeder=False`` leaves out the coupling along 10 kV feeders: the parts of the
    relaxation that bounds the plan's cost (:func:`lvplan.planning.model.relaxed_bound`)."""
    parent: dict[object, object] = {}

    def find(a: object) -> object:
        parent.setdefault(a, a)
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def union(a: object, b: object) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb

    feeder_of_trafo = network.topology.trafo_feeder
    bus_feeder = mv_bus_feeders(network.pp)
    for o in inst.options:
        d = ("demand", o.demand)
        if o.site is not None:
            key: tuple[str, object] = ("site", o.site)
            feeder = bus_feeder.get(inst.sites[o.site].mv_bus)
        else:
            a = inst.bus_area.get(o.bus) if o.bus is not None else None
            if a is None:
                find(d)
                continue
            key = ("area", a)
            feeder = feeder_of_trafo.get(inst.areas[a].trafo)
        union(d, key)
        if by_feeder and feeder is not None and feeder != "busbar":
            union(key, ("feeder", feeder))
    groups: dict[object, list[int]] = {}
    feeders: dict[object, set[str]] = {}
    for node in list(parent):
        root = find(node)
        if isinstance(node, tuple) and node[0] == "demand":
            groups.setdefault(root, []).append(int(node[1]))
        elif isinstance(node, tuple) and node[0] == "feeder":
            feeders.setdefault(root, set()).add(str(node[1]))
    by_demand: dict[int, list[int]] = {}
    for k, o in enumerate(inst.options):
        by_demand.setdefault(o.demand, []).append(k)
    parts = [
        Part(
            tuple(sorted(ds)),
            tuple(sorted(k for i in ds for k in by_demand.get(i, []))),
            tuple(sorted(feeders.get(root, set()))),
        )
        for root, ds in groups.items()
    ]
    parts = [p for p in parts if p.options]
    parts.sort(key=lambda p: (-len(p.options), p.demands))
    return parts
