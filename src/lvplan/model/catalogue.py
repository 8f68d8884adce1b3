"""Equipment catalogue: LV/MV cable types and 10/0.4 kV transformer ratings (``catalogue.toml``)."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources

from lvplan.errors import InputError


@dataclass(frozen=True)
class CableType:
    name: str
    r_ohm_per_km: float
    x_ohm_per_km: float
    c_nf_per_km: float
    max_i_ka: float
    cost_cny_per_km: float
    voltage: str  # "lv" or "mv"
    rated_kv: float  # U of U0/U: the highest nominal network voltage (kV) it may serve


@dataclass(frozen=True)
class TrafoType:
    rated_kva: int
    vk_percent: float
    vkr_percent: float
    pfe_kw: float
    i0_percent: float


@cache
def _raw() -> dict:
    text = resources.files("lvplan.model").joinpath("catalogue.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def cable_types() -> dict[str, CableType]:
    return {
        name: CableType(name=name, **{k: v for k, v in d.items()})
        for name, d in _raw()["line"].items()
    }


def cable_type(name: str) -> CableType:
    types = cable_types()
    if name not in types:
        raise InputError(f"unknown cable type {name!r}; known: {', '.join(types)}")
    return types[name]


def rated_class(names: Iterable[str], vn_kv: float) -> tuple[str, ...]:
    """Of the cables ``names`` (in their order), those of the least rating that serves a
    network of nominal ``vn_kv``: 8.7/15 kV cables on a 10 kV network (a 12/20 kV one there
    costs more for the same current), 12/20 kV ones on a 20 kV network; () when none is rated
    for it. The one home of the rule that a cable is rated for the network it is laid in."""
    return _rated_class(tuple(names), float(vn_kv))


@cache
def _rated_class(names: tuple[str, ...], vn_kv: float) -> tuple[str, ...]:
    # (cached: a city's instance asks it twice for each of its 10^5 upgradable lines, at
    # 22 us a call uncached)
    types = cable_types()
    rated = [n for n in names if types[n].rated_kv >= vn_kv - 1e-9]
    if not rated:
        return ()
    least = min(types[n].rated_kv for n in rated)
    return tuple(n for n in rated if types[n].rated_kv == least)


def mv_cable_for(vn_kv: float) -> str | None:
    """The catalogue's cheapest MV cable rated for a network of nominal ``vn_kv`` (what a
    change that names no cable lays); None when none is."""
    types = cable_types()
    mv = [n for n, c in types.items() if c.voltage == "mv"]
    rated = rated_class(mv, vn_kv)
    return min(rated, key=lambda n: types[n].cost_cny_per_km) if rated else None


def trafo_types() -> dict[int, TrafoType]:
    return {int(k): TrafoType(rated_kva=int(k), **d) for k, d in _raw()["trafo"].items()}


def trafo_type_label(rated_kva: int) -> str:
    """The catalogue's unit of ``rated_kva`` as people name it: its rating and short-circuit
    voltage, e.g. ``800 kVA uk 4.5 %`` (one type per rating in the catalogue)."""
    return f"{rated_kva} kVA uk {trafo_types()[rated_kva].vk_percent:g} %"
