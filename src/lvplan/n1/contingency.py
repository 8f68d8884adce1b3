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

With ``sections=True`` (profile value ``n1_contingencies = "sections"``) every *section
between switches* is lost in turn as well: the feeder's lines grouped where they meet at a bus
with no switch between them (a closed line switch at a line's end, or a bus-bus switch, bounds a
section). A section's loss opens all its lines; the buses beyond it are the cut-off part,
restored through a tie as for a head section. Only sections switched at every end (no bus
inside the faulted section, which would lose supply for good) are lost this way; a section
with a line end and no switch at it (no switches modelled there, as on ``sz-futian`` or
SimBench's ``no_sw`` grids) is not, and is counted in ``N1Topology.sections_skipped``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import networkx as nx

from lvplan.changes.spec import Changes
from lvplan.model.topology import MvFeeders, mv_feeders, unfed


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
    """The loss of ``line`` (a head section of ``feeder``; with ``lines``, a section of
    several lines, ``line`` its first), and the options that restore it."""

    id: str
    feeder: str
    line: int
    cut_off: frozenset[int]  # MV buses without supply until a tie closes
    options: tuple[Option, ...]
    lines: tuple[int, ...] = ()  # every line the contingency opens (empty: ``line`` alone)

    @property
    def lost_lines(self) -> tuple[int, ...]:
        return self.lines or (self.line,)

    @property
    def restorable(self) -> bool:
        return bool(self.options)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "feeder": self.feeder,
            "lost_line": self.line,
            "lost_lines": list(self.lost_lines),
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
    #: with sections: sections not lost (buses strictly inside them, see the module docstring)
    sections_skipped: int = 0

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
    # the open cables between the same two buses are one tie, closed together (a cable laid
    # in parallel with a tie has its own open switch: closing one alone would leave it idle)
    by_ends: dict[tuple[int, int], tuple[int, list[int]]] = {}
    for ln, sws in sorted(line_sw.items()):
        if ln not in line.index or not bool(line.at[ln, "in_service"]):
            continue
        ends = (int(line.at[ln, "from_bus"]), int(line.at[ln, "to_bus"]))
        if ends[0] in mv_buses and ends[1] in mv_buses:
            key = (min(ends), max(ends))
            by_ends.setdefault(key, (ln, []))[1].extend(sws)
    for ln, sws in by_ends.values():
        ends = (int(line.at[ln, "from_bus"]), int(line.at[ln, "to_bus"]))
        out.append(Tie(tuple(sorted(sws)), ends, ln, _sides(mv, ends)))
    return out


def _sides(mv: MvFeeders, ends: tuple[int, int]) -> tuple[str, str]:
    return (mv.feeder_of.get(ends[0], "unknown"), mv.feeder_of.get(ends[1], "unknown"))


def find_contingencies(net, *, sections: bool = False) -> N1Topology:
    """Every MV feeder's head-section contingencies and their restoring options; with
    ``sections``, also the loss of each section between switches (see the module docstring)."""
    mv = mv_feeders(net)
    ties = _ties(net, mv)
    g = mv.graph
    feeders: dict[str, FeederTies] = {}
    skipped = 0
    for name, buses in mv.buses.items():
        if unfed(name):
            continue
        my_ties = tuple(t for t in ties if name in t.feeders and t.feeders[0] != t.feeders[1])
        partners = tuple(
            sorted({p for t in my_ties for p in t.feeders if p != name and p != "busbar"})
        )
        lost_sets: list[tuple[int, ...]] = _head_sections(net, mv.heads[name])
        if sections:
            found, n_skipped = _sections(net, g, mv.busbar, buses, set(mv.heads[name]))
            lost_sets += found
            skipped += n_skipped
        conts = []
        for lost_lines in lost_sets:
            cut = _cut_off(g, mv.busbar, buses, lost_lines)
            options: list[Option] = []
            lost = Changes()
            for ln in lost_lines:
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
            what = (
                f"line {lost_lines[0]}"
                if len(lost_lines) == 1
                else "section of lines " + ", ".join(map(str, lost_lines))
            )
            conts.append(
                Contingency(
                    f"loss of {what} ({name})",
                    name,
                    lost_lines[0],
                    cut,
                    tuple(options),
                    lost_lines if len(lost_lines) > 1 else (),
                )
            )
        feeders[name] = FeederTies(name, mv.heads[name], my_ties, partners, tuple(conts))
    return N1Topology(feeders, tuple(ties), mv, skipped)


def _head_sections(net, heads: tuple[int, ...]) -> list[tuple[int, ...]]:
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


def _sections(
    net, g: nx.MultiGraph, busbar: frozenset[int], buses: frozenset[int], heads: set[int]
) -> tuple[list[tuple[int, ...]], int]:
    """The feeder's sections between switches other than its head sections (each a tuple
    of line ids), and how many sections were left out (buses strictly inside them)."""
    sw = net.switch
    switched: set[tuple[int, int]] = set()
    if not sw.empty:
        ls = sw[(sw.et == "l") & sw.closed.astype(bool)]
        switched = {(int(e), int(b)) for e, b in zip(ls.element, ls.bus, strict=True)}
    # the feeder's in-service lines (ties are open: not in the graph) and their end buses
    at_bus: dict[int, list[int]] = {}
    lines: set[int] = set()
    for a, b, key in g.edges(keys=True):
        if key[0] != "line" or not (a in buses or b in buses):
            continue
        ln = int(key[1])
        lines.add(ln)
        for end in (a, b):
            at_bus.setdefault(int(end), []).append(ln)
    h = nx.Graph()
    h.add_nodes_from(lines)
    for bus, here in at_bus.items():
        if bus in busbar:
            continue
        free = [ln for ln in here if (ln, bus) not in switched]
        for x, y in itertools.pairwise(free):
            h.add_edge(x, y)
    out: list[tuple[int, ...]] = []
    skipped = 0
    for comp in nx.connected_components(h):
        sec = tuple(sorted(comp))
        if len(sec) == 1 and sec[0] in heads:
            continue  # a head section: lost already
        # a bus where a line of the section ends with no switch lies inside the faulted
        # section: it would lose supply for good (not modelled: the section is left out)
        inner = any(
            b not in busbar and any(ln in comp and (ln, b) not in switched for ln in here)
            for b, here in at_bus.items()
        )
        if inner:
            skipped += 1
            continue
        out.append(sec)
    return out, skipped


def _cut_off(
    g: nx.MultiGraph, busbar: frozenset[int], buses: frozenset[int], lost: tuple[int, ...]
):
    """The feeder's buses without a path to the busbar once the ``lost`` lines are open."""
    sub = nx.MultiGraph()
    nodes = set(buses) | set(busbar)
    sub.add_nodes_from(nodes)
    gone = {("line", ln) for ln in lost}
    for a, b, key in g.edges(keys=True):
        if a in nodes and b in nodes and key not in gone:
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
    return side is not None and not unfed(side) and bus not in cut
