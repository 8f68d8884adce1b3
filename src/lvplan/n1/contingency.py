"""N-1 contingencies of the MV feeders, found from the topology.

For each feeder, each head section (a line from the source busbar into the feeder) is lost in
turn: the section is opened (:class:`lvplan.changes.OpenLine`, as its breakers leave it). The
buses that lose their supply are the *cut-off part*; the *restoring ties* are the normally-open
switches with one side in the cut-off part and the other side still supplied. Each way of
restoring supply is an :class:`Option`: the section opened and one tie closed, a set of
switching :class:`~lvplan.changes.Changes`. A feeder fed from the busbar at two points (a
closed ring) loses nothing: its one option opens the section and closes nothing. A cut-off
part with no restoring tie is a contingency with no option: it is reported as such
(``status = "no_restoring_tie"``) and never counts as a pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from lvplan.changes.spec import Changes
from lvplan.model.topology import MvFeeders, mv_feeders


@dataclass(frozen=True)
class Tie:
    """A normally-open point between two MV buses: closing ``switches`` joins ``ends``."""

    switches: tuple[int, ...]
    ends: tuple[int, int]
    line: int | None  # the tie cable, for a line switch
    feeders: tuple[str, str]  # the feeder (or "busbar") on each side

    @property
    def name(self) -> str:
        sw = ", ".join(f"switch {s}" for s in self.switches)
        return f"{sw} ({self.feeders[0]} - {self.feeders[1]})"


@dataclass(frozen=True)
class Option:
    """One way to restore supply after a contingency: ``changes`` on the network."""

    tie: Tie | None  # None: nothing to close (the feeder is fed from elsewhere already)
    changes: Changes

    @property
    def name(self) -> str:
        return "no transfer needed" if self.tie is None else f"close {self.tie.name}"


@dataclass(frozen=True)
class Contingency:
    """The loss of ``line`` (a head section of ``feeder``), and the options that restore it."""

    id: str
    feeder: str
    line: int
    cut_off: frozenset[int]  # MV buses without supply until a tie closes
    options: tuple[Option, ...]

    @property
    def restorable(self) -> bool:
        return bool(self.options)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "feeder": self.feeder,
            "lost_line": self.line,
            "cut_off_mv_buses": len(self.cut_off),
            "options": [o.name for o in self.options],
        }


@dataclass(frozen=True)
class FeederTies:
    """A feeder, its head sections, its ties and the feeders across them (its loop partners)."""

    name: str
    heads: tuple[int, ...]
    ties: tuple[Tie, ...]
    partners: tuple[str, ...]
    contingencies: tuple[Contingency, ...]


@dataclass(frozen=True)
class N1Topology:
    feeders: dict[str, FeederTies]
    ties: tuple[Tie, ...]
    mv: MvFeeders

    def relevant(self, feeder: str | None) -> list[Contingency]:
        """The contingencies a load on ``feeder`` can affect: the feeder's own and its loop
        partners' (whose load comes onto it through a tie)."""
        f = self.feeders.get(feeder or "")
        if f is None:
            return []
        out = list(f.contingencies)
        for p in f.partners:
            if p in self.feeders:
                out += self.feeders[p].contingencies
        return out


def _ties(net, mv: MvFeeders) -> list[Tie]:
    sw = net.switch
    if sw.empty:
        return []
    mv_buses = set(mv.feeder_of)
    opened = sw[~sw.closed.astype(bool)]
    out: list[Tie] = []
    line_sw: dict[int, list[int]] = {}
    for idx, et, b, el in zip(opened.index, opened.et, opened.bus, opened.element, strict=True):
        if et == "l":
            line_sw.setdefault(int(el), []).append(int(idx))
        elif et == "b" and int(b) in mv_buses and int(el) in mv_buses:
            ends = (int(b), int(el))
            out.append(Tie((int(idx),), ends, None, _sides(mv, ends)))
    line = net.line
    for ln, sws in sorted(line_sw.items()):
        if ln not in line.index or not bool(line.at[ln, "in_service"]):
            continue
        ends = (int(line.at[ln, "from_bus"]), int(line.at[ln, "to_bus"]))
        if ends[0] in mv_buses and ends[1] in mv_buses:
            out.append(Tie(tuple(sorted(sws)), ends, ln, _sides(mv, ends)))
    return out


def _sides(mv: MvFeeders, ends: tuple[int, int]) -> tuple[str, str]:
    return (mv.feeder_of.get(ends[0], "unknown"), mv.feeder_of.get(ends[1], "unknown"))


def find_contingencies(net) -> N1Topology:
    """Every MV feeder's head-section contingencies and their restoring options."""
    mv = mv_feeders(net)
    ties = _ties(net, mv)
    g = mv.graph
    feeders: dict[str, FeederTies] = {}
    for name, buses in mv.buses.items():
        if name.startswith("unfed MV group"):
            continue
        my_ties = tuple(t for t in ties if name in t.feeders and t.feeders[0] != t.feeders[1])
        partners = tuple(
            sorted({p for t in my_ties for p in t.feeders if p != name and p != "busbar"})
        )
        conts = []
        for section in _sections(net, mv.heads[name]):
            head = section[0]
            cut = _cut_off(g, mv.busbar, buses, section)
            options: list[Option] = []
            lost = Changes()
            for ln in section:
                lost = lost.open_line(ln)
            if not cut:
                options.append(Option(None, lost))
            else:
                for t in ties:
                    a, b = t.ends
                    if (a in cut) != (b in cut) and _supplied(mv, cut, b if a in cut else a):
                        ch = lost
                        for s in t.switches:
                            ch = ch.set_switch(s, True)
                        options.append(Option(t, ch))
            what = f"line {head}" if len(section) == 1 else "lines " + "+".join(map(str, section))
            conts.append(Contingency(f"loss of {what} ({name})", name, head, cut, tuple(options)))
        feeders[name] = FeederTies(name, mv.heads[name], my_ties, partners, tuple(conts))
    return N1Topology(feeders, tuple(ties), mv)


def _sections(net, heads: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The head lines as the sections lost: each on its own, except a cable laid beside one
    (``add_parallel_line``, named ``"... parallel to line N"``: a plan's feeder reinforcement
    in the same trench), which is lost with the line it doubles. Two circuits the network
    already has between the same buses stay two contingencies."""
    group = {h: h for h in heads}
    names = net.line.name if "name" in net.line else None
    for h in heads:
        nm = names.get(h) if names is not None else None
        if isinstance(nm, str) and " parallel to line " in nm:
            of = nm.rsplit(" parallel to line ", 1)[1]
            if of.isdigit() and int(of) in group:
                group[h] = int(of)
    out: dict[int, list[int]] = {}
    for h, g in group.items():
        out.setdefault(g, []).append(h)
    return sorted(tuple(sorted(v)) for v in out.values())


def _cut_off(
    g: nx.MultiGraph, busbar: frozenset[int], buses: frozenset[int], section: tuple[int, ...]
):
    """The feeder's buses without a path to the busbar once the lines of ``section`` are
    open."""
    lost = {("line", ln) for ln in section}
    sub = nx.MultiGraph()
    nodes = set(buses) | set(busbar)
    sub.add_nodes_from(nodes)
    for a, b, key in g.edges(keys=True):
        if a in nodes and b in nodes and key not in lost:
            sub.add_edge(a, b, key=key)
    fed: set[int] = set()
    for s in busbar:
        if s not in fed:
            fed |= nx.node_connected_component(sub, s)
    return frozenset(b for b in buses if b not in fed)


def _supplied(mv: MvFeeders, cut: frozenset[int], bus: int) -> bool:
    """Whether ``bus`` (outside the cut-off part) is still supplied: a fed feeder's or the
    busbar's."""
    side = mv.feeder_of.get(bus)
    return side is not None and not side.startswith("unfed MV group") and bus not in cut
