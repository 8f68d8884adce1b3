"""Equipment catalogue: LV/MV cable types and 10/0.4 kV transformer ratings (``catalogue.toml``)."""

from __future__ import annotations

import tomllib
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


def trafo_types() -> dict[int, TrafoType]:
    return {int(k): TrafoType(rated_kva=int(k), **d) for k, d in _raw()["trafo"].items()}


def trafo_type_label(rated_kva: int) -> str:
    """The catalogue's unit of ``rated_kva`` as people name it: its rating and short-circuit
    voltage, e.g. ``800 kVA uk 4.5 %`` (one type per rating in the catalogue)."""
    return f"{rated_kva} kVA uk {trafo_types()[rated_kva].vk_percent:g} %"
