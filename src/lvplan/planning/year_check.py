"""Each year of a dated plan checked in AC, and measures brought forward where that mends it.

:mod:`lvplan.planning.years` dates a transformer or LV cable measure by the first year the
linear model shows it needed, which may be later than its first demand's year. The AC check of
the rounds sees the plan whole (every demand, every measure), so nothing had checked the years
between: in a year where some demands are connected and such a measure is not yet built, the
network was taken to hold on the linear model's word (review, 2026-12-08). Nor is a year whose
measures are all built safe by that alone: with its load not yet come, a stiffer unit raises
the voltage (probe, 2026-12-08: a busbar already over its maximum raised further in 2027).

:func:`check_years` evaluates, in AC, every year of the plan but its last: the demands of that
year and before, connected as the plan connects them, with the measures built by then. Where
that breaks a limit the base did not break (the rounds' own test,
:func:`lvplan.planning.verify.check_plan`), the postponed measures built later are brought
forward to that year, if that mends it and breaks nothing new; else every measure built later,
on the same terms. The cost is the same; only the years (and the discounted cost) move. A year
that still breaks a limit is said (summary.json ``years_checked.broken``, a warning on the
CLI): the plan's last year, which the rounds verified, holds, and no measure of the catalogue
lowers a voltage that the load to come would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from lvplan.changes import Changes
from lvplan.changes.resolve import has_tap_changer, tap_lowers_lv, tap_range
from lvplan.errors import PowerFlowError
from lvplan.kinds import BindingKind
from lvplan.model.network import Network
from lvplan.planning.candidates import Instance
from lvplan.planning.measures import tap_cost_cny
from lvplan.planning.model import Solution
from lvplan.planning.verify import base_margin_map, check_plan, terminal_name

#: a year whose AC load flow has no solution, as its broken limits say it
NO_SOLUTION = "no AC load flow solution"


@dataclass
class YearCheck:
    """What :func:`check_years` did (summary.json's ``years_checked``)."""

    #: the years evaluated in AC
    years: list[int] = field(default_factory=list)
    #: measures brought forward (their place in the plan's measure list), by the year
    forward: dict[int, list[int]] = field(default_factory=dict)
    #: the limits a year still broke with its demands and measures (those of the years before too)
    broken: dict[int, list[str]] = field(default_factory=dict)
    #: the off-load taps moved: unit -> (its tap before, after, the year)
    taps: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    #: what each tap mended: unit -> the limits of its year it took back within the maximum
    tap_mended: dict[int, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "years": list(self.years),
            "measures_brought_forward": sum(len(v) for v in self.forward.values()),
            "taps_moved": len(self.taps),
            "broken": {str(y): v for y, v in self.broken.items()},
        }


def check_years(
    network: Network,
    inst: Instance,
    sol: Solution,
    keys: Sequence[int],
    years: list[int | None],
    postponed: set[int],
    tap_room_cny: float | None = None,
) -> YearCheck:
    """Check, and where needed move forward, the years of a plan's measures. ``keys``: each
    measure's upgrade index (a new substation's: ``-1 - site``); ``years``: their years, which
    are changed in place; ``postponed``: the places of the measures dated later than their
    first demand's year. Every year of the demands but the last (whose
    state is the plan the rounds verified) is evaluated. A move is kept only where it mends
    something and breaks nothing new (the limits broken after it a strict subset of those
    before): bringing a stiffer unit forward raises the voltage of a year whose load has not
    come yet (probe, 2026-12-08: 16 measures brought forward to 2027 put 25 buses over their
    maximum, 408.2 V at one within its limits before). A year that still breaks a limit is
    reported as it stands (:attr:`YearCheck.broken`)."""
    out = YearCheck()
    demand_year = {k: inst.demands[inst.options[k].demand].year for k in sol.chosen}
    dated = {y for y in demand_year.values() if y is not None}
    if len(dated) < 2 or any(y is None for y in demand_year.values()):
        return out
    base = base_margin_map(network, inst.criteria)

    def later(places, y: int) -> list[int]:
        return [i for i in places if years[i] is not None and years[i] > y]

    raw: dict[tuple, list] = {}  # (year, taps) -> the limits broken, as Broken

    def broken_raw(y: int, taps: dict[int, tuple[int, int, int]]) -> list:
        key = (y, tuple(years), tuple(sorted(taps.items())))
        if key not in raw:
            chosen = [k for k in sol.chosen if (demand_year[k] or y) <= y]
            built = [k for k, when in zip(keys, years, strict=True) if when is None or when <= y]
            state = Solution.of(
                inst, chosen, [u for u in built if u >= 0], [-1 - s for s in built if s < 0], "x"
            )
            tapped = tap_changes({t: v for t, v in taps.items() if v[2] <= y})
            try:
                _ev, raw[key] = check_plan(network, inst, state, base, before=tapped)
            except PowerFlowError:  # (the plan was lost with it: review helper-80)
                raw[key] = [NO_SOLUTION]
        return raw[key]

    def broken_in(y: int, taps: dict[int, tuple[int, int, int]] | None = None) -> set[str]:
        got = broken_raw(y, out.taps if taps is None else taps)
        return {b if isinstance(b, str) else _label(b) for b in got}

    all_years = sorted(dated)
    for y in all_years[:-1]:
        out.years.append(y)
        broken = broken_in(y)
        # first the postponed measures built later, then every measure built later
        for movable in (later(postponed, y), later(range(len(keys)), y)):
            if not broken or not movable:
                continue
            kept = {i: years[i] for i in movable}
            for i in movable:
                years[i] = y
            after = broken_in(y)
            if after < broken:
                out.forward.setdefault(y, []).extend(movable)
                broken = after
            else:
                for i, was in kept.items():
                    years[i] = was
        if broken:
            broken = _tap_down(
                network, inst, sol, out, y, all_years, broken, broken_raw, broken_in,
                tap_room_cny, tap_cost_cny(inst.measures),
            )  # fmt: skip
        if broken:
            out.broken[y] = sorted(broken)
    return out


def _tap_down(
    network, inst, sol, out, y, all_years, broken, broken_raw, broken_in, tap_room_cny, tap_cost
) -> set[str]:
    """A year still over an LV maximum after the moves (its load not come, the 10 kV source
    high, a stiffer unit built: probe helper-78, the source at 1.07 pu, D0023's terminal at
    407.6 V in 2027): the off-load tap of each existing unit whose LV network holds such a bus
    is moved a step down in voltage from that year on, while that mends the year and breaks
    nothing new in it or in any later year (the last, the plan the rounds verified, included:
    its heavier load may need the voltage). Returns what the year still breaks."""
    for t in _units_over(inst, sol, broken_raw(y, out.taps)):
        row = network.pp.trafo.loc[t]
        kind = row.get("tap_changer_type")
        if has_tap_changer(row) and kind == kind and kind not in (None, "Ratio"):
            continue  # (a phase shifter or a tabular changer: not an off-load ratio tap)
        lo, hi = tap_range(row)
        p = row.get("tap_pos")
        was = int(p) if has_tap_changer(row) and p is not None and p == p else 0
        down = tap_lowers_lv(row)
        while True:
            left = None if tap_room_cny is None else tap_room_cny - len(out.taps) * tap_cost
            if t not in out.taps and left is not None and left < tap_cost - 1e-6:
                break  # (--budget: a new tap only within what the plan leaves of it)
            now = out.taps[t][1] if t in out.taps else was
            pos = now + down
            if not lo <= pos <= hi:
                break
            # one position a unit, from its first year: a further step found in a later year
            # is built in that first year too, so every year from it on is judged again
            # (review helper-83: the years between were not)
            since = min(y, out.taps[t][2]) if t in out.taps else y
            trial = dict(out.taps)
            trial[t] = (was, pos, since)
            after = broken_in(y, trial)
            if not after < broken or any(
                not broken_in(z, trial) <= broken_in(z) for z in all_years if z >= since and z != y
            ):
                break
            out.tap_mended.setdefault(t, []).extend(sorted(broken - after))
            out.taps = trial
            broken = after
            if t not in _units_over(inst, sol, broken_raw(y, out.taps)):
                break
    return broken


def _units_over(inst: Instance, sol: Solution, broken: list) -> list[int]:
    """The existing units whose LV network holds a bus of ``broken`` over its maximum (a
    demand's terminal counts as the bus it is connected at); a new substation's is set by
    its own no-load tap."""
    at = {
        terminal_name(inst.demands[inst.options[k].demand].id): inst.options[k].bus
        for k in sol.chosen
        if inst.options[k].site is None
    }
    units: set[int] = set()
    for b in broken:
        if isinstance(b, str) or b.side != "max" or b.kind != BindingKind.VOLTAGE:
            continue
        comp, _, ident = b.element.partition(" ")
        if comp != "bus":
            continue
        bus = int(ident) if b.base_margin is not None else at.get(b.name)
        area = inst.bus_area.get(bus) if bus is not None else None
        if area is not None:
            units.add(int(inst.areas[area].trafo))
    return sorted(units)


def tap_changes(taps: dict[int, tuple[int, int, int]]) -> Changes:
    """The taps moved (unit -> (before, after, year)) as network changes, to be made before
    the plan's measures (a unit laid beside one takes its tap)."""
    ch = Changes()
    for t, (_was, pos, _y) in sorted(taps.items()):
        ch = ch.set_tap(t, pos)
    return ch


def _label(b) -> str:
    """A broken limit as the summary and the CLI say it: an element of the network by its
    index (``bus 15 (max)``), one the year's changes made (a demand's terminal, a new unit)
    by its name: its index is the year's own network's, and another element's in
    ``reinforced.json`` (probe helper-78: "bus 49", T8's clinic there, for D0023's terminal)."""
    if b.base_margin is None and b.name:
        return f"{b.element.partition(' ')[0]} {b.name!r} ({b.side})"
    return f"{b.element} ({b.side})"


def joined_years(checks: list[dict]) -> dict:
    """The groups' ``years_checked`` (:meth:`YearCheck.to_dict`) as one: the years any group
    checked, the measures they brought forward, the limits each year broke in any group."""
    checks = [c for c in checks if c]
    if not checks:
        return {}
    broken: dict[str, list[str]] = {}
    for c in checks:
        for y, els in c.get("broken", {}).items():
            broken[y] = sorted({*broken.get(y, []), *els})
    return {
        "years": sorted({y for c in checks for y in c.get("years", [])}),
        "measures_brought_forward": sum(c.get("measures_brought_forward", 0) for c in checks),
        "taps_moved": sum(c.get("taps_moved", 0) for c in checks),
        "broken": dict(sorted(broken.items())),
    }
