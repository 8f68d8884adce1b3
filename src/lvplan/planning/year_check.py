"""Each year of a dated plan checked in AC: a measure the linear model dated later than its first
demand is brought forward where the year before it breaks a limit.

:mod:`lvplan.planning.years` dates a transformer or LV cable measure by the first year the
linear model shows it needed, which may be later than its first demand's year. The AC check of
the rounds sees the plan whole (every demand, every measure), so nothing had checked the years
between: in a year where some demands are connected and such a measure is not yet built, the
network was taken to hold on the linear model's word (review, 2026-12-08).

:func:`check_years` evaluates, in AC, each year in which such a measure is postponed: the
demands of that year and before, connected as the plan connects them, with the measures built
by then. Where that breaks a limit the base did not break (the rounds' own test,
:func:`lvplan.planning.verify.check_plan`), the postponed measures built later are brought
forward to that year, and the year is checked again; where it still breaks one, every measure
built later is. The cost is the same; only the years (and the discounted cost) move. Measures
every year of which is its first demand's (new substations, feeder splits, 10 kV sections, N-1
measures, the rest) need no check: each year's demands find every measure they use built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from lvplan.model.network import Network
from lvplan.planning.candidates import Instance
from lvplan.planning.model import Solution
from lvplan.planning.verify import base_margin_map, check_plan


@dataclass
class YearCheck:
    """What :func:`check_years` did (summary.json's ``years_checked``)."""

    #: the years evaluated in AC
    years: list[int] = field(default_factory=list)
    #: measures brought forward (their place in the plan's measure list), by the year
    forward: dict[int, list[int]] = field(default_factory=dict)
    #: the limits a year still broke with every measure built by then (none expected)
    broken: dict[int, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "years": list(self.years),
            "measures_brought_forward": sum(len(v) for v in self.forward.values()),
            "broken": {str(y): v for y, v in self.broken.items()},
        }


def check_years(
    network: Network,
    inst: Instance,
    sol: Solution,
    keys: Sequence[int],
    years: list[int | None],
    postponed: dict[int, int],
) -> YearCheck:
    """Check, and where needed move forward, the years of a plan's measures. ``keys``: each
    measure's upgrade index (a new substation's: ``-1 - site``); ``years``: their years, which
    are changed in place; ``postponed``: the places of the measures dated later than their
    first demand's year, each with that year. Only the years in which one of those is not yet
    built, and its first demand is connected, are evaluated."""
    out = YearCheck()
    demand_year = {k: inst.demands[inst.options[k].demand].year for k in sol.chosen}
    if not postponed or any(y is None for y in demand_year.values()):
        return out
    todo = sorted(
        {
            y
            for y in demand_year.values()
            if y is not None
            and any(since <= y < (years[i] or since) for i, since in postponed.items())
        }
    )
    if not todo:
        return out
    base = base_margin_map(network, inst.criteria)

    def later(places, y: int) -> list[int]:
        return [i for i in places if years[i] is not None and years[i] > y]

    def broken_in(y: int) -> list[str]:
        chosen = [k for k in sol.chosen if (demand_year[k] or y) <= y]
        built = [key for key, when in zip(keys, years, strict=True) if when is None or when <= y]
        state = Solution.of(
            inst, chosen, [u for u in built if u >= 0], [-1 - s for s in built if s < 0], "x"
        )
        _ev, broken = check_plan(network, inst, state, base)
        return [f"{b.element} ({b.side})" for b in broken]

    for y in todo:
        out.years.append(y)
        broken = broken_in(y)
        # first the postponed measures built later, then, if the year still breaks a limit,
        # every measure built later
        for movable in (later(postponed, y), later(range(len(keys)), y)):
            if not broken or not movable:
                continue
            for i in movable:
                years[i] = y
            out.forward.setdefault(y, []).extend(movable)
            broken = broken_in(y)
        if broken:
            out.broken[y] = broken
    return out
