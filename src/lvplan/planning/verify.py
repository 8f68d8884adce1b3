"""The exact AC check of a plan, and what its failures teach the model.

A solution becomes :class:`lvplan.Changes` (its measures, new substations, each demand's service
cable to a new terminal bus named ``"<id> terminal"`` and its load there) and is judged by
:func:`lvplan.evaluate` against the profile. A limit counts as broken by the plan when it is
outside its limit with the plan and was not before, or, in the LV network of a bus the plan
connects a demand to, is outside it at all (a limit already broken in the base case elsewhere
is the base's; in a connection's own LV network it must be repaired, as ``check`` and the
reference judge have it): a line on a connection's path or the area's transformer is held by
its capacity in the model (below its base load: it must be reinforced), any other element by a
cut on the options of that LV network lifted by its reinforcement (:func:`_own_network_cuts`).
A bus over its maximum before the plan counts only where the plan raised it. Each broken
limit tightens the model: a modelled constraint (an LV bus's voltage, a line, a transformer, a
terminal, a site) loses the amount by which it was exceeded plus a safety margin; a limit the
model does not hold (a 10 kV bus or line) gets a linear cut on the options, from the margin
sensitivities at the base (:func:`lvplan.powerflow.sensitivity.margin_sensitivity_of`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import numpy as np

from lvplan.changes import Changes
from lvplan.evaluation import Evaluation, evaluate
from lvplan.kinds import BindingKind, ElementRef
from lvplan.model.network import Network
from lvplan.planning.candidates import Instance, service_length_m
from lvplan.planning.linear import Cuts
from lvplan.planning.measures import LINE_KINDS, N1_KINDS, TRAFO_KINDS, MeasureKind
from lvplan.planning.model import Solution
from lvplan.planning.transfers import cable_key, relieving_splits
from lvplan.powerflow.sensitivity import margin_sensitivity_of

#: Each tightening adds this beyond the amount exceeded (pu for voltages, fraction of the
#: rating for loadings).
SAFE_PU = 2e-4
SAFE_LOADING = 2e-3


def terminal_name(demand_id: str) -> str:
    return f"{demand_id} terminal"


def solution_changes(inst: Instance, sol: Solution) -> Changes:
    """The plan as network changes: measures first, then sites, then every connection."""
    ch = Changes()
    tan = math.tan(math.acos(inst.pf))
    for u in sorted(sol.upgrades):
        up = inst.upgrades[u]
        if up.kind == MeasureKind.TRANSFORMER_SWAP:
            ch = ch.replace_transformer(up.element, up.rated_kva, units=up.units)
        elif up.kind == MeasureKind.TRANSFORMER_PARALLEL:
            ch = ch.add_parallel_transformer(up.element, up.rated_kva)
        elif up.kind in (MeasureKind.LV_CABLE_REPLACE, MeasureKind.MV_CABLE_REPLACE):
            ch = ch.replace_line(up.element, up.cable)
        elif up.kind in (MeasureKind.LV_CABLE_PARALLEL, MeasureKind.MV_CABLE_PARALLEL):
            ch = ch.add_parallel_line(up.element, up.cable)
        elif up.kind == MeasureKind.MV_TIE_NEW:
            ch = ch.new_tie(up.element, up.to_bus, cable=up.cable, length_m=up.length_m)
        elif up.kind == MeasureKind.TRANSFORMER_MOVE:
            ch = ch.move_transformer(up.element, up.to_bus, cable=up.cable, length_m=up.length_m)
        elif up.kind == MeasureKind.TRANSFER:  # a feeder split: planning/transfers.py
            ch = ch.transfer(up.element, up.to_bus, up.cable, length_m=up.length_m)
    for s in sorted(sol.sites):
        site = inst.sites[s]
        ch = ch.new_substation(
            site.lon,
            site.lat,
            rated_kva=site.rated_kva // site.units,
            units=site.units,
            mv_bus=site.mv_bus,
            tie_cable=site.tie_cable,
            tie_length_m=site.tie_m,
            name=site.name,
            tap_pos=site.tap_pos,
        )
    for k in sorted(sol.chosen, key=lambda k: inst.options[k].demand):
        o = inst.options[k]
        d = inst.demands[o.demand]
        kw, kvar = d.design_kw, d.design_kw * tan
        if o.site is None and not o.cable:  # given by bus: the load at the bus
            ch = ch.add_load(o.bus, kw, kvar, name=d.id)
            continue
        start = f"{inst.sites[o.site].name} LV board" if o.site is not None else o.bus
        ch = ch.new_lv_cable(
            start,
            o.cable,
            lon=d.lon,
            lat=d.lat,
            length_m=service_length_m(o.route_m),
            name=terminal_name(d.id),
        )
        ch = ch.add_load(terminal_name(d.id), kw, kvar, name=d.id)
    return ch


@dataclass(frozen=True)
class Broken:
    kind: BindingKind
    element: str
    name: str
    side: str
    margin: float  # with the plan (negative)
    base_margin: float | None  # before (None: a new element)


#: how far (pu) a bus over its maximum before the plan may rise with it and still count as not
#: raised (the load flow's tolerance)
OVER_TOL_PU = 1e-6


def broken_limits(
    network: Network, ev: Evaluation, base_margins: dict, own: Collection[ElementRef] = ()
) -> list[Broken]:
    """The limits the plan breaks (see the module docstring). ``own``: the elements of the
    LV networks the plan connects demands to (:func:`own_elements`), where a limit broken
    before the plan counts too: a connection there does not fit unless the plan repairs it
    (the criteria's pre-existing rule, as ``check`` and tests/reference.py apply it). But for
    a bus over its maximum voltage before the plan: new load lowers it, and no measure of the
    plan is a tap change, so it counts only where the plan raised it (the hand-made test
    networks' LV busbars, 409.6 V against 406.6 V at the base, would take no load at all)."""
    m = ev.margins()
    names = (ev.limits.bus_names, ev.limits.line_names, ev.limits.trafo_names)
    out = []
    for pos in np.flatnonzero(m < 0).tolist():
        kind, el, side = ev.limits.margin_label(pos)
        before = base_margins.get((el, side))
        if before is not None and before < 0:
            if el not in own:
                continue  # pre-existing elsewhere: not the plan's
            if side == "max" and kind == BindingKind.VOLTAGE and m[pos] >= before - OVER_TOL_PU:
                continue  # a bus over its maximum before, not raised (see the docstring)
        comp = el.component
        table = {"bus": 0, "line": 1, "trafo": 2}[comp]
        try:
            name = names[table][_row(ev, comp, el.index)]
        except (IndexError, KeyError):
            name = ""
        out.append(Broken(kind, str(el), str(name), side, float(m[pos]), before))
    return out


def _row(ev: Evaluation, comp: str, index) -> int:
    ids = {"bus": ev.limits.bus_ids, "line": ev.limits.line_ids, "trafo": ev.limits.trafo_ids}
    return int(list(ids[comp]).index(index))


def base_margin_map(network: Network, crit) -> dict:
    from lvplan.criteria.judge import Limits

    lim = Limits(network.pp, crit)
    m = lim.margins(network.base_state())
    return {(el, side): float(v) for (_k, el, side), v in zip(lim.margin_labels(), m, strict=True)}


def tighten(
    network: Network,
    inst: Instance,
    sol: Solution,
    ev: Evaluation,
    broken: list[Broken],
    cuts: Cuts,
    *,
    offer: bool = True,
) -> list[str]:
    """Add what ``broken`` teaches to ``cuts``; returns one line per tightening. ``offer``:
    a line no connection loads by its path (a 10 kV section) gets its reinforcements offered
    in ``inst`` (False: ``inst`` is left as it is, and such a line's cut has no relief; the
    optimiser's probe of a plan it is still improving on, ``MipBound._probed``)."""
    pp = ev.net
    by_terminal = {}
    for k in sol.chosen:
        by_terminal[terminal_name(inst.demands[inst.options[k].demand].id)] = k
    site_by_name = {s.name: s.id for s in inst.sites}
    # what the chosen connections load through the model's path sums: a line or transformer
    # outside these is overloaded by the rest of the network (its existing loads draw more
    # current at the lower voltage), which a cut on its own capacity would not reach
    carried_lines: set[int] = set()
    carried_trafos: set[int] = set()
    for k in sol.chosen:
        o = inst.options[k]
        a = inst.bus_area.get(o.bus) if o.bus is not None and o.site is None else None
        if a is not None and a in inst.areas:
            path = inst.areas[a].path(o.bus)  # type: ignore[arg-type]
            if o.via is not None and o.via in path:  # a split's twin: the lines inside only
                path = path[: path.index(o.via)]
            carried_lines.update(path)
            carried_trafos.add(inst.areas[a].trafo)
    notes: list[str] = []
    lim_t = inst.criteria.trafo_max_loading_percent
    generic: list[Broken] = []
    relief: dict[Broken, tuple[int, ...]] = {}
    sites_cut: set[int] = set()
    for b in broken:
        comp, _, ident = b.element.partition(" ")
        idx = int(ident)
        excess = -b.margin
        if comp == "bus":
            name = str(pp.bus.at[idx, "name"]) if idx in pp.bus.index else ""
            vn = float(pp.bus.at[idx, "vn_kv"]) if idx in pp.bus.index else 0.4
            key: tuple[str, int] | None = None
            if name in by_terminal:
                key = ("opt", by_terminal[name])
            elif name.endswith(" LV board") and name[: -len(" LV board")] in site_by_name:
                key = ("site", site_by_name[name[: -len(" LV board")]])
            elif idx in inst.bus_area and vn < 1.0:
                key = ("bus", idx)
            if key is not None and b.side == "min":
                cuts.volt_pu[key] = cuts.volt_pu.get(key, 0.0) + excess + SAFE_PU
                notes.append(f"{b.element} {name}: voltage margin {b.margin:.5f} pu")
                continue
            if name.endswith(" 10 kV") and name[: -len(" 10 kV")] in site_by_name:
                # a new site's 10 kV end, below its minimum: the site carries less (its tie
                # drops less), and its tie's start (an existing bus the base knows) must hold
                # that much more, a linear cut there (none when that bus is held: a slack)
                sid = site_by_name[name[: -len(" 10 kV")]]
                if b.side == "min":
                    cuts.volt_pu[("site", sid)] = (
                        cuts.volt_pu.get(("site", sid), 0.0) + excess + SAFE_PU
                    )
                    notes.append(f"{b.element} {name}: voltage margin {b.margin:.5f} pu")
                mv_bus = inst.sites[sid].mv_bus
                if mv_bus not in set(network.pp.ext_grid.bus.astype(int)):
                    # (named as that bus: it kept the site's name, "bus 14 (new substation S2
                    # 10 kV)" for T3's RMU in a reason, with no site built; probe helper-78)
                    tie_start = str(network.pp.bus.at[mv_bus, "name"])
                    generic.append(dataclasses.replace(b, element=f"bus {mv_bus}", name=tie_start))
                continue
            if b.side == "max" and idx in inst.bus_area:
                # a bus pushed over its maximum: by a stiffer unit or cable of its own area
                # (the model holds no maximum); that measure is not offered again
                banned = _area_measures(inst, sol, inst.bus_area[idx])
                if banned - cuts.banned:
                    cuts.banned |= banned
                    notes.append(
                        f"{b.element} {name}: over its maximum by {excess:.5f} pu; "
                        f"{len(banned)} measure(s) of its area no longer offered"
                    )
                if banned:  # withdrawn now or by another bus of the area this round
                    continue
            generic.append(b)
        elif comp == "line":
            line = idx
            base_lines = network.pp.line.index
            split = _split_cable(inst, pp, idx) if idx not in base_lines else None
            if split is not None:  # a transfer's new cable: its own capacity in the model
                _u, up, sp = split
                vn = inst.areas[sp.area].vn_kv
                kw = (excess + SAFE_LOADING) * up.capacity * math.sqrt(3) * vn * 1000.0 * inst.pf
                ck = cable_key(sp.line)
                cuts.line_kw[ck] = cuts.line_kw.get(ck, 0.0) + kw + 1.0
                notes.append(
                    f"{b.element} (transfer of line {sp.line}): over by {excess * 100:.2f} %"
                )
                continue
            if line not in inst.line_data and idx not in base_lines and idx in pp.line.index:
                # a new line: a parallel cable (same buses as an upgraded line) or a service cable
                fb, tb = int(pp.line.at[idx, "from_bus"]), int(pp.line.at[idx, "to_bus"])
                for cand in (*inst.line_data, *inst.mv_line_data):
                    if cand in pp.line.index and {
                        int(pp.line.at[cand, "from_bus"]),
                        int(pp.line.at[cand, "to_bus"]),
                    } == {fb, tb}:
                        line = cand
                        break
                if line != idx:  # judged as the line it reinforces (the base knows that one)
                    b = dataclasses.replace(b, element=f"line {line}")
            if line in inst.line_data and line in carried_lines:
                _r, _x, imax, _base, vn = inst.line_data[line]
                kw = (excess + SAFE_LOADING) * imax * math.sqrt(3) * vn * 1000.0 * inst.pf
                cuts.line_kw[line] = cuts.line_kw.get(line, 0.0) + kw + 1.0
                cuts.found[f"line {line}"] = inst.criteria.line_max_loading_percent + excess * 100
                notes.append(f"line {line}: loading over by {excess * 100:.2f} %")
                continue
            if offer and line in base_lines and inst.line_info(network, line) is not None:
                # an LV line no connection loads by its path (overloaded by the voltage the new
                # load lowers), or a 10 kV feeder section: a cut reinforcing it lifts
                inst.line_upgrades(network, line)
                times = 1.0 if line in inst.mv_line_data else 2.0  # a 10 kV section: its load
                relief[b] = _relief(inst, sol, False, line, excess, times=times)
            name = str(pp.line.at[idx, "name"]) if idx in pp.line.index else ""
            term = name if name in by_terminal else None
            if term is not None:  # a service cable: forbid that option
                cuts.add_linear({by_terminal[term]: 1.0}, 0.5, f"service cable {b.element}")
                notes.append(f"{b.element}: service cable overloaded; option dropped")
                continue
            generic.append(b)
        elif comp == "trafo":
            t = idx
            if t not in inst.trafo_kva and idx in pp.trafo.index:
                hv, lv = int(pp.trafo.at[idx, "hv_bus"]), int(pp.trafo.at[idx, "lv_bus"])
                lvname = str(pp.bus.at[lv, "name"]) if lv in pp.bus.index else ""
                if lvname.endswith(" LV board") and lvname[: -len(" LV board")] in site_by_name:
                    sid = site_by_name[lvname[: -len(" LV board")]]
                    if sid in sites_cut:  # (a site of two units: both over, equally loaded)
                        continue
                    sites_cut.add(sid)
                    kva = inst.sites[sid].rated_kva  # (its units' together)
                    kw = (excess + SAFE_LOADING) * kva * inst.pf
                    cuts.site_kw[sid] = cuts.site_kw.get(sid, 0.0) + kw + 1.0
                    notes.append(
                        f"site {inst.sites[sid].name}: loading over by {excess * 100:.2f} %"
                    )
                    continue
                for cand in inst.trafo_kva:
                    if cand in pp.trafo.index and (
                        int(pp.trafo.at[cand, "hv_bus"]),
                        int(pp.trafo.at[cand, "lv_bus"]),
                    ) == (hv, lv):
                        t = cand
            pair = _units_beside(pp, idx)
            if t in inst.trafo_kva and t in carried_trafos and len(pair) > 1:
                note = _pair_cut(network, inst, sol, ev, t, idx, pair, excess, cuts)
                if note is not None:
                    cuts.found[f"trafo {t}"] = lim_t + excess * 100
                    notes.append(note)
                    continue
            if t in inst.trafo_kva and t in carried_trafos:
                kw = (excess + SAFE_LOADING) * inst.trafo_kva[t] * inst.pf
                cuts.trafo_kw[t] = cuts.trafo_kw.get(t, 0.0) + kw + 1.0
                cuts.found[f"trafo {t}"] = lim_t + excess * 100
                notes.append(f"trafo {t}: loading over by {excess * 100:.2f} %")
                continue
            if t != idx and idx not in network.pp.trafo.index:
                # a parallel unit: judged as the unit it stands beside (the base knows that
                # one; its sensitivities, the whole current through it, err on the safe side)
                b = dataclasses.replace(b, element=f"trafo {t}", name=f"its parallel unit {b.name}")
            if t in inst.trafo_kva:
                relief[b] = _relief(inst, sol, True, t, excess)
            generic.append(b)
    before = [b for b in generic if b.base_margin is not None and b.base_margin < 0]
    if before:
        notes += _own_network_cuts(network, inst, sol, before, cuts)
    generic = [b for b in generic if b not in before]
    if generic:
        notes += _generic_cuts(network, inst, sol, generic, cuts, relief)
    return notes


def area_buses(network: Network, element: str) -> tuple[int, ...]:
    """The LV buses of the transformer area that holds ``element`` ("bus 5", "line 17",
    "trafo 3"; the base network's), or () when it lies in none (a 10 kV element)."""
    topo, pp = network.topology, network.pp
    comp, _, ident = element.partition(" ")
    if not ident.isdigit():
        return ()
    idx = int(ident)
    bus: int | None = None
    if comp == "bus":
        bus = idx
    elif comp == "line" and idx in pp.line.index:
        bus = int(pp.line.at[idx, "from_bus"])  # (an LV line's ends are its area's buses)
    elif comp == "trafo" and idx in pp.trafo.index:
        bus = int(pp.trafo.at[idx, "lv_bus"])
    a = None if bus is None else topo.bus_area.get(bus)
    return () if a is None else tuple(topo.areas[a].buses)


def _own_network_cuts(
    network: Network, inst: Instance, sol: Solution, broken: list[Broken], cuts: Cuts
) -> list[str]:
    """A limit broken before the plan, in the LV network of a connection, that no capacity of
    the model holds (a line or transformer off the connections' paths; a bus): every
    connection option in that LV network is cut (each 1 pu against 0.5: none fits) unless one
    of the element's reinforcements with room for its loading as planned is built. Not a cut
    from the margin's sensitivities: its right-hand side would start below zero (the base's
    own margin) and hold every option of the 10 kV feeder that lowers the margin at all, in
    other LV networks too; and a bus over its maximum that a measure raised has no option that
    lowers it (the same plan came back each round)."""
    notes = []
    for b in broken:
        buses = set(area_buses(network, b.element))
        coefs = {k: 1.0 for k, o in enumerate(inst.options) if o.site is None and o.bus in buses}
        if not coefs:
            notes.append(f"{b.element}: broken before the plan, in no connection's LV network")
            continue
        comp, _, ident = b.element.partition(" ")
        lift: tuple[int, ...] = ()
        if comp == "line" and int(ident) in inst.line_data:
            lift = _relief(inst, sol, False, int(ident), -b.margin, times=1.0)
        elif comp == "trafo" and int(ident) in inst.trafo_kva:
            lift = _relief(inst, sol, True, int(ident), -b.margin, times=1.0)
        if comp in ("line", "trafo") and not lift:
            lift = _larger(inst, sol, comp == "trafo", int(ident), -b.margin)
        what = "voltage" if b.kind == BindingKind.VOLTAGE else "loading"
        cuts.add_linear(
            coefs, 0.5, f"the {what} of {b.element} ({b.name}), broken before the plan", lift
        )
        notes.append(
            f"{b.element}: {what} broken before the plan (margin {b.base_margin:.5f}, "
            f"{b.margin:.5f} with it), in the LV network of {len(coefs)} option(s): cut"
            + (f" unless one of {len(lift)} reinforcement(s) is built" if lift else "")
        )
    return notes


def _split_cable(inst: Instance, pp, idx: int):
    """(upgrade, upgrade index's Upgrade, FeederSplit) of the transfer whose new cable is line
    ``idx`` of the evaluated network (named by :mod:`lvplan.changes.apply`), or None."""
    name = str(pp.line.at[idx, "name"]) if idx in pp.line.index else ""
    head, _, ident = name.rpartition(" ")
    if head != "transfer of line" or not ident.isdigit() or int(ident) not in inst.transfers:
        return None
    for u, up in enumerate(inst.upgrades):
        if up.kind == MeasureKind.TRANSFER and up.element == int(ident):
            return u, up, inst.transfers[int(ident)]
    return None


def _units_beside(pp, idx: int) -> list[int]:
    """The in-service transformers of ``pp`` between the same two buses as ``idx`` (itself
    included): a unit and the parallel one a plan added, or a pair the network has."""
    tr = pp.trafo
    if idx not in tr.index:
        return []
    hv, lv = int(tr.at[idx, "hv_bus"]), int(tr.at[idx, "lv_bus"])
    same = (tr.hv_bus.to_numpy() == hv) & (tr.lv_bus.to_numpy() == lv)
    if "in_service" in tr:
        same &= tr.in_service.to_numpy().astype(bool)
    return [int(i) for i in tr.index[same]]


def element_label(network: Network, pp, comp: str, idx: int) -> str:
    """An element of the planned network ``pp`` as the engineer finds it in the base network
    and in ``reinforced.json``: an existing one by its id ("trafo 3"); a unit or cable the plan
    laid beside an existing one by that one ("the parallel unit of trafo 3"), since a new
    element's id depends on how many changes came before it (a round's, a group's
    sub-network's); another new line by its end buses where the base has both ("new line bus 5 -
    bus 9": a new tie), else by its name ('new line "move of trafo 3"')."""
    base = network.pp[comp] if comp in ("line", "trafo") else None
    if base is None or idx in base.index or idx not in pp[comp].index:
        return f"{comp} {idx}"
    cols = ("hv_bus", "lv_bus") if comp == "trafo" else ("from_bus", "to_bus")
    a, b = (int(pp[comp].at[idx, c]) for c in cols)
    ends = base[cols[0]].to_numpy(), base[cols[1]].to_numpy()
    same = base.index[((ends[0] == a) & (ends[1] == b)) | ((ends[0] == b) & (ends[1] == a))]
    if len(same):
        what = "parallel unit" if comp == "trafo" else "parallel cable"
        return f"the {what} of {comp} {int(same[0])}"
    if a in network.pp.bus.index and b in network.pp.bus.index:
        return f"new {comp} bus {min(a, b)} - bus {max(a, b)}"
    name = pp[comp].at[idx, "name"] if "name" in pp[comp] else None
    return f'new {comp} "{name}"' if isinstance(name, str) and name else f"new {comp}"


def _pair_cut(
    network: Network,
    inst: Instance,
    sol: Solution,
    ev: Evaluation,
    t: int,
    idx: int,
    pair: list[int],
    excess: float,
    cuts: Cuts,
) -> str | None:
    """The cut for unit ``idx`` of the parallel units ``pair`` (``t`` the one the model holds)
    over its limit by ``excess`` (fraction of its rating), made so that one round corrects it.

    The model holds the pair as one unit of their combined rating; in AC they share the current
    by their impedances, so one unit reaches its limit first. Its current falls by the excess
    only when the pair's falls by the excess / its share of the pair's current: ``excess x
    S_i / s_i`` kVA, ``s_i`` its share from the AC state. And the model may have carried less
    than its capacity (its demands are whole): the capacity is set that much below the load the
    model put on the unit in this plan, not below the capacity, which a small excess would not
    reach (a city group's greedy plan stayed the same for 6 rounds, the cut growing 5 kW a
    round). The cut is on the upgrade built (a parallel unit: only that option), or on the unit
    as it is when none is. None: the AC state does not give the shares."""
    from lvplan.planning.linear import KW_UNIT, load_units
    from lvplan.planning.measures import MeasureKind

    pp = ev.net
    rows = {i: _row(ev, "trafo", i) for i in pair}
    loading = ev.state.trafo_loading_percent
    rated = {
        i: float(pp.trafo.at[i, "sn_mva"]) * 1000.0 * float(pp.trafo.at[i, "parallel"] or 1)
        if "parallel" in pp.trafo
        else float(pp.trafo.at[i, "sn_mva"]) * 1000.0
        for i in pair
    }
    amps = {i: float(loading[rows[i]]) * rated[i] for i in pair}  # current in kVA-% units
    total = sum(amps.values())
    if not (math.isfinite(total) and total > 0 and amps[idx] > 0):
        return None
    share = amps[idx] / total
    lv = int(pp.trafo.at[idx, "lv_bus"])
    try:
        vm = float(ev.state.vm_pu[_row(ev, "bus", lv)])
    except (ValueError, IndexError):
        vm = 1.0
    # kW of new load off the pair (at the voltage the unit sees, at least 1 pu: a kW drawn at a
    # higher voltage is less current)
    off_kw = (excess + SAFE_LOADING) * rated[idx] / share * inst.pf * max(vm, 1.0)
    kinds = (MeasureKind.TRANSFORMER_SWAP, MeasureKind.TRANSFORMER_PARALLEL)
    built = next(
        (
            u
            for u in sol.upgrades
            if inst.upgrades[u].kind in kinds and inst.upgrades[u].element == t
        ),
        None,
    )
    area = next((a for a, tree in inst.areas.items() if tree.trafo == t), None)
    if area is None:
        return None
    vmin = inst.criteria.lv_min_voltage_v / (inst.areas[area].vn_kv * 1000.0)
    lim = inst.criteria.trafo_max_loading_percent / 100.0
    kva = inst.trafo_kva[t] if built is None else inst.upgrades[built].capacity
    cap_kw = (kva * lim - inst.trafo_base_kva[t]) * inst.pf * vmin
    model_kw = 0.0  # the new load the model put on the unit (its own units)
    for k in sol.chosen:
        o = inst.options[k]
        a = inst.bus_area.get(o.bus) if o.bus is not None and o.site is None else None
        if a is not None and a in inst.areas and inst.areas[a].trafo == t:
            model_kw += load_units(inst.demands[o.demand].design_kw) * KW_UNIT
    held = cuts.trafo_kw.get(t, 0.0) + (0.0 if built is None else cuts.upgrade_kw.get(built, 0.0))
    # the capacity left: model_kw - off_kw (and never less of a cut than before)
    more = max(0.0, cap_kw - held - (model_kw - off_kw) + 1.0)
    if built is not None and inst.upgrades[built].kind == MeasureKind.TRANSFORMER_PARALLEL:
        cuts.upgrade_kw[built] = cuts.upgrade_kw.get(built, 0.0) + more
        on = f"{inst.upgrades[built].rated_kva} kVA parallel unit's option"
    elif built is not None:
        cuts.upgrade_kw[built] = cuts.upgrade_kw.get(built, 0.0) + more
        on = f"{inst.upgrades[built].rated_kva} kVA swap"
    else:
        cuts.trafo_kw[t] = cuts.trafo_kw.get(t, 0.0) + more
        on = "unit as it is"
    name = str(pp.trafo.at[idx, "name"]) if "name" in pp.trafo else ""
    who = element_label(network, pp, "trafo", idx)  # a unit of the base: by its own id
    return (
        f"{who} ({name}): loading over by {excess * 100:.2f} %, {share:.0%} of the current of its "
        f"{len(pair)} parallel units; their new load held to {model_kw - off_kw:,.1f} kW "
        f"(the model had {model_kw:,.1f} kW; the {on} -{more:,.1f} kW)"
    )


def _area_measures(inst: Instance, sol: Solution, area: int) -> set[int]:
    """The plan's upgrades of one area's transformer and lines."""
    tree = inst.areas.get(area)
    if tree is None:
        return set()
    lines = {line for line, _parent in tree.parent.values()}
    out = set()
    for u in sol.upgrades:
        up = inst.upgrades[u]
        if up.kind in N1_KINDS:
            continue
        is_t = up.kind in (MeasureKind.TRANSFORMER_SWAP, MeasureKind.TRANSFORMER_PARALLEL)
        if (is_t and up.element == tree.trafo) or (not is_t and up.element in lines):
            out.add(u)
    return out


def _relief(
    inst: Instance,
    sol: Solution,
    is_trafo: bool,
    element: int,
    excess: float,
    *,
    times: float = 2.0,
    limit_percent: float | None = None,
    or_largest: bool = False,
) -> tuple[int, ...]:
    """The upgrades of an element with room for what it carried beyond its limit, ``times``
    over (twice for an overload through the voltage the new load lowers, which grows as the
    load does; once where the overload is the load itself): building one lifts the cut its
    overload made. ``excess`` is the loading margin broken (fraction of 100 %), against
    ``limit_percent`` (the profile's, by default). An element the plan has reinforced already
    gets no relief (its one upgrade did not cure it: the cut then holds as it is). With
    ``or_largest``, where no upgrade has that room, the largest ones that add capacity: the
    cut would otherwise hold the element as it is for good, though a plan serving less may
    fit the upgrade (an N-1 section at 200 % that a parallel cable doubles)."""
    mine, lim = _element_upgrades(inst, is_trafo, element, limit_percent)
    rated = (
        inst.trafo_kva[element]
        if is_trafo
        else (inst.line_data.get(element) or inst.mv_line_data[element])[2]
    )
    if set(mine) & set(sol.upgrades):
        return ()
    need = rated * (1.0 + (times * excess + SAFE_LOADING) * 100.0 / lim)
    out = [u for u in mine if inst.upgrades[u].capacity >= need]
    if not out and or_largest:
        top = max((inst.upgrades[u].capacity for u in mine), default=0.0)
        out = [u for u in mine if inst.upgrades[u].capacity == top and top > rated]
    if not is_trafo and element in inst.line_data:  # an LV line: the splits that relieve it
        out += relieving_splits(inst, sol, element, need - rated)
    return tuple(out)


def _element_upgrades(
    inst: Instance, is_trafo: bool, element: int, limit_percent: float | None = None
) -> tuple[list[int], float]:
    """The upgrades offered for a transformer or line, and its loading limit (%: the
    profile's, unless ``limit_percent``)."""
    kinds = TRAFO_KINDS if is_trafo else LINE_KINDS
    mine = [u for u, up in enumerate(inst.upgrades) if up.kind in kinds and up.element == element]
    if limit_percent is not None:
        return mine, limit_percent
    crit = inst.criteria
    return mine, crit.trafo_max_loading_percent if is_trafo else crit.line_max_loading_percent


def _larger(
    inst: Instance, sol: Solution, is_trafo: bool, element: int, excess: float
) -> tuple[int, ...]:
    """The element's upgrades larger than the one ``sol`` built there, with room for what it
    carried over its limit with it (``excess``: of the built rating; the model lets one
    replace the other): a reinforcement built too small for a limit broken before the plan
    would otherwise close that LV network to new connections for good. () when ``sol`` built
    none there."""
    mine, lim = _element_upgrades(inst, is_trafo, element)
    built = [u for u in mine if u in set(sol.upgrades)]
    if not built:
        return ()
    need = inst.upgrades[built[0]].capacity * (1.0 + (excess + SAFE_LOADING) * 100.0 / lim)
    return tuple(u for u in mine if u not in built and inst.upgrades[u].capacity >= need)


def _generic_cuts(
    network: Network,
    inst: Instance,
    sol: Solution,
    broken: list[Broken],
    cuts: Cuts,
    relief: dict[Broken, tuple[int, ...]] | None = None,
) -> list[str]:
    """Linear cuts from the base-case margin sensitivities, for limits the model lacks; a cut
    on an element the model has upgrades for is lifted by building one (``relief``)."""
    from lvplan.criteria.judge import Limits

    lim = Limits(network.pp, inst.criteria)
    at = {}  # option -> the existing bus its load is drawn from
    for k, o in enumerate(inst.options):
        at[k] = o.bus if o.bus is not None else inst.sites[o.site].mv_bus  # type: ignore[index]
    buses = sorted(set(at.values()))
    cols = [_position(lim, b) for b in broken]
    notes = []
    if all(c is None for c in cols):  # new elements the base does not know: scale the 10 kV
        cuts.mv_factor *= 1.5
        return [f"{b.element}: not modelled; 10 kV drop scaled x1.5" for b in broken]
    sens = np.zeros((len(buses), len(cols)))
    known = [j for j, c in enumerate(cols) if c is not None]
    sens[:, known] = margin_sensitivity_of(network, inst.criteria, [cols[j] for j in known], buses)
    row_of = {b: i for i, b in enumerate(buses)}
    chosen = set(sol.chosen)
    for j, b in enumerate(broken):
        if cols[j] is None:
            continue
        # a line the plan reinforced: the base sensitivities are in fractions of its old
        # rating, the margin broken in fractions of what it carries now (a replacement's
        # rating, or the share of the current the old cable keeps beside a parallel one)
        scale = 1.0
        comp, _, ident = b.element.partition(" ")
        if comp == "line" and ident.isdigit():
            ln = int(ident)
            data = inst.line_data.get(ln) or inst.mv_line_data.get(ln)
            for u in sol.upgrades:
                up = inst.upgrades[u]
                if up.element == ln and up.kind in LINE_KINDS and data and up.capacity > 0:
                    scale = data[2] / up.capacity
        coefs = {}
        used = 0.0
        for k, bus in at.items():
            c = -sens[row_of[bus], j] * scale * inst.demands[inst.options[k].demand].design_kw
            if c > 0:
                coefs[k] = c
                if k in chosen:
                    used += c
        if not coefs:  # no new load lowers this margin: a measure raised it (the AC check)
            notes.append(f"{b.element}: {b.side} limit not caused by any connection; no cut")
            continue
        safe = SAFE_PU if b.kind == BindingKind.VOLTAGE else SAFE_LOADING
        rhs = used + b.margin - safe
        what = "voltage" if b.kind == BindingKind.VOLTAGE else "loading"
        lift = (relief or {}).get(b, ())
        cuts.add_linear(coefs, rhs, f"the {what} of {b.element} ({b.name})", lift)
        if lift:
            _c, _s, ident = b.element.partition(" ")
            how = (
                "a 10 kV section carrying the new load"
                if b.element.startswith("line ") and int(ident) in inst.mv_line_data
                else "through the voltage the new load lowers"
            )
            notes.append(
                f"{b.element}: loading over by {-b.margin * 100:.2f} % ({how}); linear cut "
                f"({len(coefs)} options) unless it is reinforced"
            )
        else:
            notes.append(f"{b.element}: not modelled; linear cut ({len(coefs)} options)")
    return notes


def _position(lim, b: Broken) -> int | None:
    comp, _, ident = b.element.partition(" ")
    try:
        return lim.margin_position(ElementRef(comp, int(ident)), b.side)
    except ValueError:
        return None


def own_elements(network: Network, inst: Instance, sol: Solution) -> set[ElementRef]:
    """The buses, lines and transformers of the transformer areas (the base network's) where
    ``sol`` connects a demand to an existing LV bus: each connection's own LV network."""
    topo = network.topology
    areas = {
        topo.bus_area[o.bus]
        for o in (inst.options[k] for k in sol.chosen)
        if o.site is None and o.bus is not None and o.bus in topo.bus_area
    }
    out: set[ElementRef] = set()
    for a in areas:
        ar = topo.areas[a]
        out.update(ElementRef("bus", b) for b in ar.buses)
        out.update(ElementRef("line", ln) for ln in ar.lines)
        out.update(ElementRef("trafo", t) for t in ar.trafos)
    return out


def worse_elsewhere(
    network: Network, inst: Instance, sol: Solution, ev: Evaluation
) -> list[dict[str, Any]]:
    """The elements outside a limit before the plan, outside the LV networks it connects
    demands to, that it moves further out: the criteria leave them out of the decision
    (``criteria.md``, pre-existing violations: elsewhere a warning, as ``check`` reports them),
    so the plan neither repairs them nor is refused for them, but says so. On sz-futian line 17
    (103.25 % at the base) and T7 (104.88 %) rose by 0.1-0.3 points under plans whose demands
    connect elsewhere, through the 10 kV voltage (found by a hostile probe), and nothing said
    it. Each: element, name, kind, before, after, limit, unit."""
    from lvplan.decision import reservation_floors
    from lvplan.evaluation import _context_limits

    own = own_elements(network, inst, sol)
    # (the limits ``evaluate`` judges by, kept on the network; a bus's two sides apart)
    limits = _context_limits(network, inst.criteria).floored(reservation_floors(network))
    judged = limits.judge(network.base_state())
    before = {(v.element, v.kind, v.limit): v for v in judged.violations if v.element not in own}
    out = []
    for v in ev.violations:
        b = before.get((v.element, v.kind, v.limit))
        if b is None or v.severity <= b.severity + 1e-9:
            continue
        if round(v.value, 4) == round(b.value, 4):  # (a rise too small to show: not listed)
            continue
        out.append(
            {
                "element": str(v.element),
                "name": v.element_name,
                "kind": str(v.kind),
                "before": round(b.value, 4),
                "after": round(v.value, 4),
                "limit": round(v.limit, 4),
                "unit": v.unit,
            }
        )
    return out


def check_plan(network: Network, inst: Instance, sol: Solution, base_margins: dict, *, before=None):
    """(evaluation, broken limits) of a solution; ``before``: changes made before its
    measures (the taps the check of the years moved)."""
    changes = solution_changes(inst, sol)
    if before is not None:
        changes = before + changes
    ev = evaluate(network, changes, inst.criteria)
    return ev, broken_limits(network, ev, base_margins, own_elements(network, inst, sol))
