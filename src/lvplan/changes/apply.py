"""What each change does to the pandapower tables: the one home of the changes' semantics.

:func:`apply_changes` returns a new pandapower net (the tables a change touches are copies; the
given net is never mutated) and a :class:`ChangeMap` saying which rows are new or modified.
``lvplan apply`` writes that net; ``evaluate`` builds its admittance updates from those rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pandapower as pp

from lvplan.changes.spec import (
    AddLoad,
    AddParallelLine,
    AddParallelTransformer,
    Changes,
    NewLvCable,
    NewSubstation,
    ReplaceLine,
    ReplaceTransformer,
    SetSwitch,
    Transfer,
)
from lvplan.model.catalogue import cable_types, trafo_types

#: LV board voltage of a new public transformer (kV)
LV_BOARD_KV = 0.4
#: Columns a parallel or replacement unit keeps from the existing transformer.
_TRAFO_KEEP = (
    "vn_hv_kv",
    "vn_lv_kv",
    "shift_degree",
    "tap_side",
    "tap_neutral",
    "tap_min",
    "tap_max",
    "tap_step_percent",
    "tap_step_degree",
    "tap_pos",
    "tap_changer_type",
    "vector_group",
)


@dataclass
class ChangeMap:
    """Rows of the changed net that a change added or modified (pandapower indices)."""

    new_buses: list[int] = field(default_factory=list)
    new_lines: list[int] = field(default_factory=list)
    new_trafos: list[int] = field(default_factory=list)
    new_loads: list[int] = field(default_factory=list)
    modified_lines: list[int] = field(default_factory=list)
    modified_trafos: list[int] = field(default_factory=list)
    opened_lines: list[int] = field(default_factory=list)
    switches: list[int] = field(default_factory=list)

    @property
    def topology_changed(self) -> bool:
        return bool(
            self.new_buses
            or self.new_lines
            or self.new_trafos
            or self.opened_lines
            or self.switches
        )


def _writable(net, src, names: set[str]):
    for name in names:
        if net[name] is src[name]:
            net[name] = src[name].copy()


def _geo(lon: float, lat: float) -> str:
    return json.dumps({"type": "Point", "coordinates": [lon, lat]})


def _trafo_params(rated_kva: int) -> dict:
    t = trafo_types()[rated_kva]
    return {
        "sn_mva": rated_kva / 1000.0,
        "vk_percent": t.vk_percent,
        "vkr_percent": t.vkr_percent,
        "pfe_kw": t.pfe_kw,
        "i0_percent": t.i0_percent,
    }


def _cable_params(name: str) -> dict:
    c = cable_types()[name]
    return {
        "r_ohm_per_km": c.r_ohm_per_km,
        "x_ohm_per_km": c.x_ohm_per_km,
        "c_nf_per_km": c.c_nf_per_km,
        "max_i_ka": c.max_i_ka,
    }


def _kept(row, keys) -> dict:
    out = {}
    for k in keys:
        if k in row.index:
            v = row[k]
            if v is None or (isinstance(v, float) and v != v):
                continue
            out[k] = v.item() if hasattr(v, "item") else v
    return out


def apply_changes(net, changes: Changes) -> tuple[object, ChangeMap]:
    """A new net with ``changes`` (already resolved against ``net``) applied, and its map."""
    out = _container(net)
    m = ChangeMap()
    for c in changes:
        if isinstance(c, AddLoad):
            _writable(out, net, {"load"})
            m.new_loads.append(
                pp.create_load(out, c.bus, p_mw=c.kw / 1000, q_mvar=c.kvar / 1000, name=c.name)
            )
        elif isinstance(c, ReplaceTransformer):
            _writable(out, net, {"trafo"})
            for k, v in _trafo_params(int(c.rated_kva)).items():
                out.trafo.at[c.trafo, k] = v
            if "std_type" in out.trafo.columns:
                out.trafo.at[c.trafo, "std_type"] = None
            m.modified_trafos.append(int(c.trafo))
        elif isinstance(c, AddParallelTransformer):
            _writable(out, net, {"trafo"})
            row = out.trafo.loc[c.trafo]
            kept = _kept(row, _TRAFO_KEEP)
            kept.pop("vector_group", None)
            m.new_trafos.append(
                pp.create_transformer_from_parameters(
                    out,
                    int(row.hv_bus),
                    int(row.lv_bus),
                    name=f"{row.get('name') or 'trafo ' + str(c.trafo)} (parallel)",
                    **kept,
                    **_trafo_params(int(c.rated_kva)),
                )
            )
        elif isinstance(c, ReplaceLine):
            _writable(out, net, {"line"})
            for k, v in _cable_params(str(c.cable)).items():
                out.line.at[c.line, k] = v
            out.line.at[c.line, "g_us_per_km"] = 0.0
            if "std_type" in out.line.columns:
                out.line.at[c.line, "std_type"] = c.cable
            m.modified_lines.append(int(c.line))
        elif isinstance(c, AddParallelLine):
            _writable(out, net, {"line"})
            row = out.line.loc[c.line]
            m.new_lines.append(
                pp.create_line_from_parameters(
                    out,
                    int(row.from_bus),
                    int(row.to_bus),
                    length_km=float(row.length_km),
                    name=f"{c.cable} parallel to line {c.line}",
                    **_cable_params(str(c.cable)),
                )
            )
        elif isinstance(c, NewSubstation):
            _new_substation(out, net, c, m)
        elif isinstance(c, NewLvCable):
            _writable(out, net, {"bus", "line"})
            to = c.to_bus
            if to is None:
                to = pp.create_bus(
                    out,
                    vn_kv=float(out.bus.at[c.from_bus, "vn_kv"]),
                    name=c.name or "new LV bus",
                    geodata=(c.lon, c.lat),
                )
                m.new_buses.append(int(to))
            m.new_lines.append(
                pp.create_line_from_parameters(
                    out,
                    int(c.from_bus),
                    int(to),
                    length_km=float(c.length_m or 0) / 1000,
                    name=c.name or f"new {c.cable}",
                    **_cable_params(c.cable),
                )
            )
        elif isinstance(c, Transfer):
            _writable(out, net, {"line"})
            end = int(c.far_bus)  # type: ignore[arg-type]
            out.line.at[c.subtree_root_line, "in_service"] = False
            m.opened_lines.append(int(c.subtree_root_line))
            m.new_lines.append(
                pp.create_line_from_parameters(
                    out,
                    int(c.to_bus),
                    end,
                    length_km=float(c.length_m or 0) / 1000,
                    name=f"transfer of line {c.subtree_root_line}",
                    **_cable_params(c.cable),
                )
            )
        elif isinstance(c, SetSwitch):
            _writable(out, net, {"switch"})
            out.switch.at[c.switch, "closed"] = bool(c.closed)
            m.switches.append(int(c.switch))
    return out, m


def _container(net):
    """A new net sharing the element tables (copied by a change before it writes) without the
    results and internal model of ``net`` (they describe the unchanged network)."""
    out = pp.pandapowerNet(dict(net))
    for key in list(out.keys()):
        if key.startswith("res_"):  # the results of the unchanged network do not carry over
            if len(net[key]):
                out[key] = net[key].iloc[0:0].copy()
        elif key.startswith("_empty_res"):
            continue  # read-only templates
        elif key in ("_ppc", "_ppc0", "_ppc1", "_ppc2", "_is_elements"):
            out[key] = None
        elif key == "_pd2ppc_lookups":
            out[key] = dict.fromkeys(net[key])
        elif key.startswith("_"):
            del out[key]
    return out


def _public_shift(net) -> float:
    tr = net.trafo
    public = tr[(tr.vn_lv_kv < 1.0) & tr.in_service.astype(bool)]
    return float(public.shift_degree.iloc[0]) if len(public) else 150.0


def _new_substation(out, net, c: NewSubstation, m: ChangeMap) -> None:
    _writable(out, net, {"bus", "line", "trafo"})
    mv = int(c.mv_bus)  # type: ignore[arg-type]
    vn = float(out.bus.at[mv, "vn_kv"])
    name = c.name or f"new {c.rated_kva} kVA substation"
    hv = pp.create_bus(out, vn_kv=vn, name=f"{name} 10 kV", geodata=(c.lon, c.lat))

    lv = pp.create_bus(out, vn_kv=LV_BOARD_KV, name=f"{name} LV board", geodata=(c.lon, c.lat))
    m.new_buses += [int(hv), int(lv)]
    m.new_lines.append(
        pp.create_line_from_parameters(
            out,
            mv,
            hv,
            length_km=float(c.tie_length_m) / 1000,  # type: ignore[arg-type]
            name=f"{name} tie",
            **_cable_params(c.tie_cable),
        )
    )
    m.new_trafos.append(
        pp.create_transformer_from_parameters(
            out,
            hv,
            lv,
            vn_hv_kv=vn,
            vn_lv_kv=LV_BOARD_KV,
            name=name,
            shift_degree=_public_shift(net),
            **_trafo_params(int(c.rated_kva)),
        )
    )
