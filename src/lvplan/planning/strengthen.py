"""Residual-capacity inequalities: what the plan model's linear relaxation lacks most.

Every capacity in the plan model has one form: the new load on an element (a transformer, an LV
line, or an AC cut's linear estimate of one) stays within the room it has as it stands, unless
an upgrade is built that gives it more:

    sum_k a_k x_k  <=  C0 + sum_u (U_u - C0) y_u        (at most one y_u of an element)

The relaxation meets it by building a *fraction* of an upgrade, in proportion to the load over
``C0``: on the SimBench district, with the greedy plan's connections held, the relaxation paid
44.99 M CNY for upgrades whose whole cost, the exact optimum for those connections, is 52.66 M.

For any set ``S`` of demands (each demand served at most once, every ``a_k >= 0``), with
``a(S)`` the most ``S`` can put on the element:

    sum_{k of S} a_k x_k  <=  C0 + sum_u min(U_u - C0, a(S) - C0)^+ y_u

is valid: with no upgrade it is the capacity itself (less the terms of the demands outside
``S``, each >= 0); with ``y_u`` built, its right side is ``min(U_u, a(S))``, at least both the
capacity as built and all that ``S`` can put there. Where ``a(S)`` is below ``U_u`` it asks a
larger share of the upgrade for each kW over ``C0``; with ``S`` the demands a plan connects
there, it asks the whole upgrade (Magnanti, Mirchandani and Vachani, Math. Program. 60, 1993,
the residual capacity inequalities of single-arc design, here with the options of one demand
added up into its share of the element).

They are too many to write; they are *separated*: given the relaxation's values, each element's
demands are sorted by their share on it, and the most violated of the prefixes is added (for
one upgrade it is the exact separation). On the district (seed 1, the first optimal round's
model), twelve rounds raise the relaxation from 31.86 M to 35.00 M CNY (about 1.7 s of HiGHS
each); in the 60 s plan, 4-5 rounds reach 34.6-34.7 M and HiGHS's bound with them 37.3-37.5 M.
A verification round's model carries the demand sets found before it (:func:`rebuild`,
``mipbound.CutPool``): its rounds start where the last one's ended.

**Site covers** (:func:`site_covers`). A cluster of demands beyond every existing supply
radius can be served only by new substations; when its load is more than one site holds, a
plan builds two. The relaxation does not: it fills one site to its capacity and builds the
rest of the load's share of a second (on the district, seed 2: 0.23 of a 4.8 M CNY site).
For a set ``D`` of demands that must be served, every option of which is at a site of ``T``,

    sum_{d in D} units_d  <=  sum_{s in T} load_s  <=  sum_{s in T} cap_s z_s

so at least ``n`` sites of ``T`` are built, ``n`` the fewest of their capacities, largest
first, that hold ``D``'s load: ``sum_{s in T} z_s >= n`` (the rounding of that sum; an
integer plan meets it, the relaxation did not). Measured on the first optimal round's model
(the greedy plan's demands served): the strengthened relaxation of seed 2 rises from 28.20 M
to 31.37 M CNY, of seed 1 from 34.74 M to 36.37 M; seed 3 has no such cluster.

**Forced upgrades** (:func:`forced_upgrades`). A demand that must be served and whose every
option loads an element puts at least its least coefficient there. When those least loads add
up to more than the element's room ``C0``, an upgrade that holds them is built: the sum of its
``y_u`` over the upgrades with ``U_u >= M`` (any relief of a cut) is at least 1. The relaxation
builds only the share of the excess (seed 1: four 10 kV cuts at 0.72-0.92 of their relief).
Measured with the site covers on seed 1's first optimal round: 36.27 M to 36.53 M CNY.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

#: a violation below this (load units, per unit of ``a(S)``) is not worth a row
MIN_VIOLATION = 1e-4


@dataclass
class CapacityRow:
    """One capacity of the model, in the CP-SAT proto's variable indices."""

    name: str
    #: demand -> its options' (variable index, coefficient) on the element
    terms: dict[int, list[tuple[int, int]]]
    base: int  # C0: the room with nothing built (>= 0)
    #: (the upgrades' variable indices, the room with one of them built; None: unlimited)
    ups: list[tuple[list[int], int | None]]

    def most(self, i: int) -> int:
        """The most demand ``i`` puts on the element (its largest coefficient)."""
        return max(c for _, c in self.terms[i])


@dataclass
class Inequality:
    """``sum(coef * x) <= rhs + sum(coef * y)``, in proto variable indices."""

    lhs: list[tuple[int, int]]
    rhs: int
    ups: list[tuple[int, int]]
    #: the row it was found on and its set of demands (:func:`rebuild` makes it again from them)
    row: str = ""
    demands: tuple[int, ...] = ()

    @property
    def key(self) -> tuple[str, tuple[int, ...]]:
        return self.row, self.demands

    def violation(self, values: list[float]) -> float:
        return (
            sum(c * values[j] for j, c in self.lhs)
            - self.rhs
            - sum(c * values[j] for j, c in self.ups)
        )


def capacity_row(
    name: str,
    options: list[tuple[int, int, int]],
    base: int,
    ups: list[tuple[list[int], int | None]],
) -> CapacityRow | None:
    """The row of one capacity: ``options`` as (demand, variable index, coefficient). None when
    no inequality of it can be valid or useful (a negative coefficient; no upgrade)."""
    if not ups or not options or any(c < 0 for _, _, c in options):
        return None
    terms: dict[int, list[tuple[int, int]]] = {}
    for i, j, c in options:
        if c > 0:
            terms.setdefault(i, []).append((j, c))
    return CapacityRow(name, terms, max(base, 0), ups) if terms else None


def separate(rows: list[CapacityRow], values: list[float]) -> list[Inequality]:
    """For each row, the most violated residual-capacity inequality among the prefixes of its
    demands sorted by their share on it (none where none is violated)."""
    out = []
    for row in rows:
        c0 = row.base
        share: dict[int, float] = {}  # demand -> its share of its most on the element
        for i, items in row.terms.items():
            v = sum(c * values[j] for j, c in items)
            if v > 1e-9:
                share[i] = v / row.most(i)
        if not share:
            continue
        order = sorted(share, key=lambda i: (-share[i], i))
        built = [(sum(values[j] for j in js), cap) for js, cap in row.ups]
        best: tuple[float, int] | None = None  # (violation per unit, prefix length)
        a_s = 0
        load = 0.0
        for n, i in enumerate(order, 1):
            a_i = row.most(i)
            a_s += a_i
            load += a_i * share[i]
            if a_s <= c0:
                continue
            room = c0 + sum(_coef(cap, c0, a_s) * y for y, cap in built if cap is None or cap > c0)
            viol = (load - room) / a_s
            if viol > MIN_VIOLATION and (best is None or viol > best[0]):
                best = (viol, n)
        if best is None:
            continue
        got = inequality(row, order[: best[1]])
        if got is not None:
            out.append(got)
    return out


def inequality(row: CapacityRow, demands: Iterable[int]) -> Inequality | None:
    """The residual-capacity inequality of ``row`` for the set ``demands`` (those of them with
    no term on the row are left out); None when they cannot load it past its base room (the
    inequality is then the row itself, or weaker)."""
    s = sorted({i for i in demands if i in row.terms})
    a_s = sum(row.most(i) for i in s)
    c0 = row.base
    if a_s <= c0:
        return None
    lhs = [(j, c) for i in s for j, c in row.terms[i]]
    ups = [(j, _coef(cap, c0, a_s)) for js, cap in row.ups if cap is None or cap > c0 for j in js]
    return Inequality(lhs, c0, ups, row.name, tuple(s))


def rebuild(
    rows: list[CapacityRow], keys: Iterable[tuple[str, tuple[int, ...]]]
) -> list[Inequality]:
    """The inequalities named by ``keys`` (row name, demand set: :attr:`Inequality.key`) made
    again from ``rows``, those of another model. Each is valid for ``rows`` whatever the model
    it was first found in: it is derived afresh from the row of that name as it stands now (its
    room, its upgrades and its options), and only the set of demands is carried; a key whose
    row is gone, or whose demands can no longer load it past its room, gives nothing."""
    by_name = {r.name: r for r in rows}
    out = []
    for name, demands in keys:
        row = by_name.get(name)
        got = None if row is None else inequality(row, demands)
        if got is not None:
            out.append(got)
    return out


def _coef(cap: int | None, c0: int, a_s: int) -> int:
    """An upgrade's coefficient: the room it adds, no more than ``S`` can use."""
    return a_s - c0 if cap is None else min(cap - c0, a_s - c0)


def sites_alone(
    options: dict[int, list[Any]],
) -> tuple[dict[int, frozenset[int]], dict[int, int]]:
    """Of the demands ``options`` names (each with its options' terms, each having ``site``
    and ``units``), those whose every option is at a site: their sites and their least load,
    the arguments of :func:`site_covers`."""
    only: dict[int, frozenset[int]] = {}
    units: dict[int, int] = {}
    for i, opts in options.items():
        if opts and all(o.site is not None for o in opts):
            only[i] = frozenset(o.site for o in opts)
            units[i] = min(o.units for o in opts)
    return only, units


def site_covers(
    only_sites: dict[int, frozenset[int]], units: dict[int, int], caps: dict[int, int]
) -> list[tuple[tuple[int, ...], tuple[int, ...], int]]:
    """The site covers (see the module's text) of the demands that must be served and have
    options at sites alone: ``only_sites`` maps each to the sites of its options, ``units``
    gives its load (the least of its options'), ``caps`` each site's capacity. For each
    demand's set of sites, and for each union of overlapping sets, the demands whose sites all
    lie in it: ``(the sites, their weights, n)`` for ``sum w_s z_s >= n``, where n is at least
    2 (one is implied by the rows themselves) and no more than the weights add up to (a set
    that cannot hold its load is left to the model's own rows).

    Where no site holds twice the least capacity ``c`` of the set, every weight is 1 and n is
    the fewest sites, largest first, that hold the load. A site of two units (``Site.units``)
    holds about 2c: then the weights are ``ceil(cap_s / c)`` and n is ``ceil(load / c)``, the
    Chvatal-Gomory rounding of ``sum cap_s z_s >= load`` divided by c (with the weights of 1,
    one twin at half built met the cluster's two units of load)."""
    sets = set(only_sites.values())
    comps: list[set[int]] = []
    for t in sorted(sets, key=sorted):
        merged = set(t)
        rest = []
        for c in comps:
            if c & merged:
                merged |= c
            else:
                rest.append(c)
        comps = [*rest, merged]
    out: dict[tuple[int, ...], tuple[tuple[int, ...], int]] = {}
    for t in [*sets, *map(frozenset, comps)]:
        key = tuple(sorted(t))
        if key in out:
            continue
        load = sum(units[d] for d, ts in only_sites.items() if ts <= t)
        unit = min((caps[s] for s in key if caps[s] > 0), default=0)
        if unit <= 0:
            continue
        if max(caps[s] for s in key) < 2 * unit:
            weights = (1,) * len(key)
            held, n = 0, 0
            for cap in sorted((max(caps[s], 0) for s in t), reverse=True):
                if held >= load:
                    break
                held += cap
                n += 1
            if held >= load and n >= 2:
                out[key] = (weights, n)
        else:
            weights = tuple(max(math.ceil(caps[s] / unit - 1e-9), 0) for s in key)
            n = math.ceil(load / unit)
            if 2 <= n <= sum(weights) and sum(max(caps[s], 0) for s in key) >= load:
                out[key] = (weights, n)
    return [(k, w, n) for k, (w, n) in sorted(out.items())]


def forced_upgrades(
    rows: list[CapacityRow], served: Collection[int], options: dict[int, frozenset[int]]
) -> list[tuple[str, list[int]]]:
    """The forced upgrades (see the module's text) of ``rows`` for the demands ``served`` (each
    must be), ``options`` giving the variable indices of each demand's options in the model
    (a demand counts on a row only when every one of them loads it): for each row whose least
    load from them is more than its room, ``(its name, the variable indices of the upgrades
    that hold that load)``; a row no upgrade of which holds it is left to the model's own rows
    (no plan serves them all)."""
    must = set(served)
    out = []
    for row in rows:
        least = sum(
            min(c for _, c in items)
            for i, items in row.terms.items()
            if i in must and options.get(i) and options[i] <= {j for j, _ in items}
        )
        if least <= row.base:
            continue
        holds = [j for js, cap in row.ups if cap is None or cap >= least for j in js]
        if holds:
            out.append((row.name, holds))
    return out
