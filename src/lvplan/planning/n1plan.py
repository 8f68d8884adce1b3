"""N-1 of a plan: the 10 kV loops that serve demands of an area class with full N-1 must still
restore supply after losing a head section, with the plan built and every demand connected.

Which demands: those whose ``area_class`` column names a class the profile gives ``full`` N-1
(``cn``: A+, A, B), or every demand when the profile assumes a class
(``n1_default_area_class``), as ``check`` does; a demand file without the column, under a
profile with no assumed class, plans exactly as without N-1.

Which contingencies: those of the feeders the plan connects such a demand to (its transformer's
or new site's 10 kV bus), and of their loop partners
(:meth:`lvplan.n1.contingency.N1Topology.relevant`), judged with :mod:`lvplan.n1.assess` on the
network with the plan built (the same emergency limits, options and engines as the check). A
transformer on the source busbar itself, on no feeder with a head section, has none, as in the
check.

What a failure teaches the model (as :func:`lvplan.planning.verify.tighten` does for the normal
state):

* a contingency that fails (its best restoring option breaks an emergency limit): for each
  element over its limit in that option, a linear cut on the options from the margin
  sensitivities *in the contingency state with the plan* (``sum c_k x_k <= used + margin -
  safe``); on a 10 kV section the cut holds until the section is reinforced
  (``mv_cable_replace`` / ``mv_cable_parallel``: feeder reinforcement), and the measure's
  "why" names the contingency;
* a contingency with no restoring tie, or with no load-flow solution: the N-1 demands' options
  on that feeder are withdrawn unless a new tie is built; never a silent pass.

Besides reinforcing the section, each cut is lifted by the N-1 measures of
:mod:`lvplan.planning.n1measures`: a new normally-open tie from the contingency's cut-off part
to another feeder (every cut of the contingency, and its withdrawals), or, for an element over
its loading limit, a transformer of the cut-off part moved to a feeder with room. The optimiser
and the greedy choose among them by cost; the next round judges what was built (a moved unit's
new feeder's contingencies too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lvplan.criteria import Criteria
from lvplan.errors import PowerFlowError
from lvplan.model.network import Network
from lvplan.model.topology import unfed
from lvplan.planning.candidates import Instance
from lvplan.planning.linear import N1_WITHDRAWN, Cuts
from lvplan.planning.measures import MeasureKind
from lvplan.planning.model import Solution
from lvplan.planning.n1measures import N1Offers, element_rating_kva

#: Each N-1 cut keeps this much beyond the amount exceeded (pu for voltages, fraction of the
#: rating for loadings), as the normal state's cuts do.
SAFE_PU = 2e-4
SAFE_LOADING = 2e-3
#: At most this many elements of one failing option get a cut per round (the worst first): a
#: transfer overloads the sections of the partner's path one after another, and each round
#: that learns only a few of them is another round. Without N-1 measures (``offers`` None and
#: ``max_cuts`` given by the caller) the plan before them took 5.
MAX_CUTS_PER_CONTINGENCY = 20


def n1_demands(inst: Instance, crit: Criteria) -> set[int]:
    """Positions of the demands whose area class has full N-1 under ``crit``."""
    return demands_needing_n1(inst.demands, crit)


def demands_needing_n1(demands, crit: Criteria) -> set[int]:
    """Positions in ``demands`` of those whose area class has full N-1 under ``crit``."""
    if not crit.has_n1:
        return set()
    return {
        i
        for i, d in enumerate(demands)
        if crit.n1_level(d.area_class if d.area_class_given else None) == "full"
    }


@dataclass(frozen=True)
class N1Failure:
    """One contingency the plan leaves failing: ``status`` fail, no_restoring_tie or
    not_assessable; the feeder whose N-1 demands it concerns."""

    contingency: str
    feeder: str
    status: str
    margin: float  # the best option's smallest margin (-inf: none)
    detail: str


def contingency_label(network: Network, planned_pp, c) -> str:
    """A contingency of the planned pandapower net ``planned_pp`` named as the engineer finds
    it in the network and in ``reinforced.json``, the same whatever round found it: its ``id``
    names the lines it loses in the planned network, and a line the plan added (a cable laid
    beside a head section, lost with it) has an id that depends on the changes before it;
    such a line is named by the existing one it doubles
    (:func:`lvplan.planning.verify.element_label`)."""
    from lvplan.planning.verify import element_label

    lost = c.lost_lines
    base = network.pp.line.index
    if all(ln in base for ln in lost):
        return str(c.id)
    names = [element_label(network, planned_pp, "line", ln) for ln in lost]
    kept = [n for n in names if not any(n == f"the parallel cable of {m}" for m in names)]
    doubled = {m for m in kept if f"the parallel cable of {m}" in names}
    parts = [f"{m} with its parallel cable" if m in doubled else m for m in kept]
    what = parts[0] if len(parts) == 1 else "section of " + ", ".join(parts)
    return f"loss of {what} ({c.feeder})"


#: said of a contingency cut whose contingency fails on the network as it is (no plan, no new
#: load): the measure restores N-1 for the class that requires it; the new load did not break it
FAILS_ALREADY = "the contingency fails already without the new load"


def option_label(network: Network, option) -> str:
    """A restoring option by a name that does not depend on the round: a new tie's switch and
    cable are new elements, named by the buses the tie joins."""
    tie = option.tie
    if tie is None:
        return str(option.name)
    sw = network.pp.switch.index
    known = [s for s in tie.switches if s in sw]
    if known and (tie.line is None or tie.line in network.pp.line.index):
        if len(known) == len(tie.switches):
            return str(option.name)
        # an existing tie with a cable the plan laid beside it (its switch is new): named by
        # the existing switches, as before the cable (not "the new tie")
        names = ", ".join(f"switch {s}" for s in known)
        return f"close {names} ({tie.feeders[0]} - {tie.feeders[1]})"
    a, b = sorted(tie.ends)
    return f"close the new tie bus {a} - bus {b} ({tie.feeders[0]} - {tie.feeders[1]})"


def site_buses(planned: Network) -> dict[str, int]:
    """Each transformer's 10 kV bus in the planned network, by the transformer's name (a new
    substation's is its own new bus, at the end of its tie: :func:`option_feeder`)."""
    t = planned.pp.trafo
    return {str(n): int(b) for n, b in zip(t.name, t.hv_bus, strict=True)}


def option_feeder(
    network: Network,
    inst: Instance,
    k: int,
    feeder_of: dict[int, str],
    sites: dict[str, int],
) -> str:
    """The 10 kV feeder an option's load hangs on ("" when none is known), in ``network`` (the
    planned one: a moved unit hangs on its new feeder). A new substation's load hangs on its
    own 10 kV bus at the end of its tie (``sites``: :func:`site_buses` of ``network``), not on
    the bus it is tied to: tied to the source busbar, its tie is a feeder of its own, whose
    loss cuts it off (its N-1 demands were served with no contingency judged, the plan saying
    N-1 met: found by review)."""
    o = inst.options[k]
    if o.site is not None:
        site = inst.sites[o.site]
        return feeder_of.get(sites.get(site.name, site.mv_bus), "")
    a = inst.bus_area.get(o.bus) if o.bus is not None else None
    if a is None:
        return ""
    t = inst.areas[a].trafo
    return feeder_of.get(int(network.pp.trafo.at[t, "hv_bus"]), "")


def check_plan_n1(
    network: Network,
    inst: Instance,
    sol: Solution,
    needs: set[int],
    cuts: Cuts,
    offers: N1Offers | None = None,
    max_cuts: int = MAX_CUTS_PER_CONTINGENCY,
) -> tuple[list[N1Failure], list[str], list[str]]:
    """The plan's N-1 failures on the feeders of its N-1 demands (and on the feeders its moved
    transformers went to), the cuts they teach (added to ``cuts``; one note per cut), and the
    contingencies judged. ``offers``: the instance's N-1 measures, offered as relief of the
    cuts (None: none offered, the cuts lifted by feeder reinforcement alone and the
    withdrawals by nothing)."""
    from lvplan.n1.assess import FAIL, NOT_ASSESSABLE, PASS, judge_contingency, n1_context
    from lvplan.planning.verify import solution_changes

    mine = [k for k in sol.chosen if inst.options[k].demand in needs]
    if not mine:
        return [], [], []
    planned = network.with_changes(solution_changes(inst, sol))
    ctx = n1_context(planned, inst.criteria)
    topo = ctx.topology
    built = set(sol.upgrades)
    # feeders as the planned network has them (a measure may rename one), by the 10 kV bus
    # each option hangs on in the planned network
    feeder_of = topo.mv.feeder_of
    sites = site_buses(planned)
    on: dict[str, list[int]] = {}  # feeder -> chosen options of N-1 demands
    for k in mine:
        on.setdefault(option_feeder(planned, inst, k, feeder_of, sites), []).append(k)
    failures: list[N1Failure] = []
    notes: list[str] = []
    seen: set[str] = set()
    # the feeder of every option, once per round; and of every N-1 demand's ("" for the others)
    any_feeder = [
        option_feeder(planned, inst, k, feeder_of, sites) for k in range(len(inst.options))
    ]
    opt_feeder = [f if inst.options[k].demand in needs else "" for k, f in enumerate(any_feeder)]
    judged: dict[str, Any] = {}

    def judge(c):
        if c.id not in judged:
            judged[c.id] = judge_contingency(ctx, c, None, 0.0, 0.0)
        return judged[c.id]

    ok: dict[str, bool] = {}

    def feeder_ok(f: str) -> bool:  # a move's target: every contingency it takes part in passes
        if f not in ok:
            ok[f] = all(judge(c).status == PASS for c in topo.relevant(f))
        return ok[f]

    lim = inst.criteria.n1_line_max_loading_percent
    base: list[dict[str, Any]] = []  # the base network's contingencies by id, once needed

    def fails_already(c) -> bool:
        """Whether contingency ``c`` fails on the network as it is, without the plan and its
        new load (as ``check`` says "fails already"): its measures are then needed for the N-1
        the demands' class requires, not for their load."""
        if not base:
            bctx = n1_context(network, inst.criteria)
            base.append(
                {b.id: (bctx, b) for f in bctx.topology.feeders.values() for b in f.contingencies}
            )
        hit = base[0].get(c.id)
        if hit is None:  # (a contingency of a line the plan laid: not in the base)
            return False
        return judge_contingency(hit[0], hit[1], None, 0.0, 0.0).status in (FAIL, NOT_ASSESSABLE)

    labels: dict[str, str] = {}  # contingency id -> its label (see contingency_label)

    def lab(c) -> str:
        if c.id not in labels:
            labels[c.id] = contingency_label(network, planned.pp, c)
        return labels[c.id]

    def fresh(us) -> tuple[int, ...]:
        return tuple(u for u in us if u not in built and u not in cuts.banned)

    for feeder in sorted(on):
        if unfed(feeder):  # (no source busbar found: N-1 cannot be judged, as in the check)
            why = f"N-1 on {feeder}: not judged (no source busbar found for its 10 kV group)"
            failures.append(N1Failure(feeder, feeder, NOT_ASSESSABLE, -math.inf, why))
            # withdrawn at once: no measure makes the group fed (carried, they broke the
            # rounds until the round limit; review)
            notes += _withdraw(opt_feeder, feeder, cuts, why)
            continue
        conts = topo.relevant(feeder) if feeder else []
        # none: a transformer on the source busbar itself, on no feeder with a head section,
        # which has no N-1 contingency (as the check judges it)
        for c in conts:
            if c.id in seen:
                continue
            seen.add(c.id)
            lab(c)
            out = judge(c)
            if out.status == PASS:
                continue
            margin = out.best.min_margin if out.best is not None else -math.inf
            ties = fresh(offers.ties(planned, topo, c, lim)) if offers is not None else ()
            if out.status != FAIL or out.best is None:
                why = f"N-1 {lab(c)}: {out.status.replace('_', ' ')}"
                failures.append(N1Failure(lab(c), feeder, out.status, -math.inf, why))
                for f in sorted({c.feeder, feeder}):  # the loop's, and the demand's feeder
                    notes += _withdraw(opt_feeder, f, cuts, why, ties)
                continue
            failures.append(N1Failure(lab(c), feeder, FAIL, margin, f"N-1 {lab(c)}: fails"))
            # the options this contingency concerns, as the check judges it: those on its
            # feeder or a loop partner (a load elsewhere moves its margin only through the
            # source busbar's voltage: a contingency the check never runs for it); its limits
            # hold while an N-1 demand is connected there, for all the load on the loop
            near = {f for f in topo.feeders if c in topo.relevant(f)}
            ks_near = {k for k, f in enumerate(any_feeder) if f and f in near}
            n1_near = {k for k in ks_near if opt_feeder[k]}

            def moves(v, c=c, option=out.best.option) -> tuple[int, ...]:
                from lvplan.kinds import BindingKind

                if v.kind != BindingKind.LINE:
                    return ()
                el = str(v.element)
                rating = element_rating_kva(planned.pp, el)
                need = (max(v.value - v.limit, 0.0) / 100.0 + SAFE_LOADING) * rating
                if offers is None:
                    return ()
                return fresh(offers.moves(planned, topo, c, option, el, need, feeder_ok, lim))

            learned = _fail_cuts(
                network,
                inst,
                sol,
                ctx,
                c,
                out.best,
                cuts,
                ks_near,
                n1_near,
                ties,
                moves,
                built,
                max_cuts,
                label=lab(c),
                planned_pp=planned.pp,
                already=fails_already(c),
            )
            if not learned:  # nothing the options can change: its N-1 demands go elsewhere
                why = f"N-1 {lab(c)}: fails (margin {margin:.4f}) and no connection relieves it"
                learned = []
                for f in sorted({c.feeder, feeder}):
                    learned += _withdraw(opt_feeder, f, cuts, why, ties)
            notes += learned
    # a moved transformer's new feeder: its contingencies must pass as they did when the move
    # was offered, or the move is withdrawn (the cuts it lifted hold again)
    for u in sorted(built):
        up = inst.upgrades[u]
        if up.kind != MeasureKind.TRANSFORMER_MOVE:
            continue
        f = feeder_of.get(int(planned.pp.trafo.at[up.element, "hv_bus"]), "")
        for c in topo.relevant(f):
            if c.id in seen:
                continue
            seen.add(c.id)
            lab(c)
            out = judge(c)
            if out.status == PASS:
                continue
            why = (
                f"N-1 {lab(c)}: {out.status.replace('_', ' ')} with trafo {up.element} moved onto "
                f"feeder {f}"
            )
            failures.append(N1Failure(lab(c), f, out.status, -math.inf, why))
            cuts.banned.add(u)
            notes.append(f"{why}: that move is no longer offered")
    if failures and not notes:  # nothing learned: never the same plan again
        for f in sorted({x.feeder for x in failures}):
            notes += _withdraw(opt_feeder, f, cuts, "N-1 fails")
    return failures, notes, sorted(set(labels.values()))


def _withdraw(
    opt_feeder: list[str], feeder: str, cuts: Cuts, why: str, ties: tuple[int, ...] = ()
) -> list[str]:
    """Withdraw the options of N-1 demands on ``feeder`` (``opt_feeder``: each option's feeder,
    "" for the options of demands without N-1), unless one of the new ``ties`` is built."""
    ks = [k for k, f in enumerate(opt_feeder) if f and f == feeder]
    if not ks:
        return []
    cuts.add_linear({k: 1.0 for k in ks}, 0.5, f"{why}{N1_WITHDRAWN}", ties)
    unless = f" unless one of {len(ties)} new tie(s) is built" if ties else ""
    return [f"{why}: {len(ks)} option(s) of N-1 demands on feeder {feeder} withdrawn{unless}"]


def _fail_cuts(
    network,
    inst: Instance,
    sol: Solution,
    ctx,
    c,
    best,
    cuts: Cuts,
    scope: set[int],
    when: set[int],
    ties: tuple[int, ...] = (),
    moves=lambda _v: (),
    built: set[int] | None = None,
    max_cuts: int = MAX_CUTS_PER_CONTINGENCY,
    *,
    label: str | None = None,
    planned_pp=None,
    already: bool = False,
) -> list[str]:
    """Linear cuts for the elements over their emergency limit in ``best`` (an option of
    contingency ``c``, on the planned network), from the sensitivities in that state, on the
    options in ``scope``: those on the contingency's loop. Each cut holds while one of the
    options in ``when`` is chosen: those of demands that require N-1 there (as the check
    judges N-1 only for an application whose class requires it, and only its own loop's
    contingencies, with all the load connected). Before stop 52 the cut counted only those
    options and held the others' load as the plan had it: a plan whose other demands filled
    the loop could then serve none of the N-1 demands, even where serving them instead
    served more (sz-futian, 160 of 300 demands of classes A+, A, B: 0 of them served). Each
    cut is lifted by reinforcing its section, by one of the new ``ties``, or by one of
    ``moves(violation)``."""
    from lvplan.kinds import BindingKind
    from lvplan.planning.verify import _relief, element_label
    from lvplan.powerflow.sensitivity import margin_sensitivity_of

    prep = ctx.prepared(best.option)
    if prep.network is None or prep.limits is None:
        return []
    try:
        st = prep.network.base_state()
    except PowerFlowError:
        return []
    margins = prep.limits.margins(st)
    labels = prep.limits.margin_labels()
    pos = {(str(el), side): j for j, (_k, el, side) in enumerate(labels)}
    worst = sorted(best.violations, key=lambda v: -v.severity)[:max_cuts]
    at = {
        k: (o.bus if o.bus is not None else inst.sites[o.site].mv_bus)  # type: ignore[index]
        for k, o in enumerate(inst.options)
    }
    buses = sorted(set(at.values()))
    row = {b: i for i, b in enumerate(buses)}
    chosen = set(sol.chosen)
    notes = []
    for v in worst:
        side = "max"
        if v.kind == BindingKind.VOLTAGE and v.value < v.limit:
            side = "min"
        j = pos.get((str(v.element), side))
        if j is None or not math.isfinite(margins[j]):
            continue
        sens = margin_sensitivity_of(prep.network, ctx.emergency, [j], buses)[:, 0]
        coefs: dict[int, float] = {}
        used = 0.0
        for k, bus in at.items():
            if k not in scope:
                continue
            cf = -sens[row[bus]] * inst.demands[inst.options[k].demand].design_kw
            if cf > 0:
                coefs[k] = cf
                if k in chosen:
                    used += cf
        if not coefs:
            continue
        safe = SAFE_PU if v.kind == BindingKind.VOLTAGE else SAFE_LOADING
        margin = float(margins[j])
        lift: tuple[int, ...] = ()
        el = str(v.element)
        if el.startswith("line ") and int(el.split()[1]) in network.pp.line.index:
            line = int(el.split()[1])
            if inst.line_info(network, line) is not None:
                inst.line_upgrades(network, line)
                lift = _relief(
                    inst,
                    sol,
                    False,
                    line,
                    max(-margin, 0.0),
                    times=1.0,
                    limit_percent=inst.criteria.n1_line_max_loading_percent,
                    or_largest=True,
                )
        n_reinforce = len(lift)
        more = tuple(u for u in (*ties, *moves(v)) if u not in (built or set()))
        lift = tuple(dict.fromkeys((*lift, *more)))
        # named so that the name holds in later rounds and in reinforced.json (a new line's id
        # depends on the changes made before it): see contingency_label
        what = el
        if planned_pp is not None and el.startswith("line ") and el.split()[1].isdigit():
            what = element_label(network, planned_pp, "line", int(el.split()[1]))
        # "loading of line 40", "loading of new line bus 5 - bus 9", "voltage of bus 7"
        limit = "voltage" if v.kind == BindingKind.VOLTAGE else "loading"
        name = f"N-1 {label or c.id} ({option_label(network, best.option)}): {limit} of {what}"
        if already:
            name += f" ({FAILS_ALREADY})"
        cuts.add_linear(coefs, used + margin - safe, name, lift, tuple(when))
        n_tie = sum(1 for u in lift if inst.upgrades[u].kind == MeasureKind.MV_TIE_NEW)
        n_move = len(lift) - n_reinforce - n_tie
        ways = [
            f"{n} {what}"
            for n, what in (
                (n_reinforce, "reinforcement(s)"),
                (n_tie, "new tie(s)"),
                (n_move, "moved transformer(s)"),
            )
            if n
        ]
        notes.append(
            f"{name} at {v.value:.4g} {v.unit} against {v.limit:.4g}: linear cut "
            f"({len(coefs)} options)" + (f" unless one of {', '.join(ways)}" if lift else "")
        )
    return notes
