"""Planning criteria as data: profiles (``cn``, ``en50160``) and customer categories.

Every value lives in a TOML file beside this module, can be overridden by name
(``Criteria.with_overrides(lv_min_voltage_v=360)``, CLI ``--set lv_min_voltage_v=360``) and is
echoed in every result through ``Criteria.to_dict()``.
"""

from __future__ import annotations

import dataclasses
import functools
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from lvplan.errors import InputError
from lvplan.numbers import finite

PROFILES = ("cn", "en50160")

#: the range each number of a profile must fall in (``--set`` included), and why: beyond it a
#: value makes no physical sense and the planner's arithmetic breaks (a loading limit of 1e308
#: overflowed its integer scaling, a minimum voltage of 0 divided by zero, a detour factor of
#: 0 laid every cable at 0 m)
LIMITS: dict[str, tuple[float, float, str]] = {
    "lv_min_voltage_v": (100.0, 1000.0, "volts at an LV bus: below 1 kV, above 100 V"),
    "lv_max_voltage_v": (100.0, 1000.0, "volts at an LV bus: below 1 kV, above 100 V"),
    "mv_min_voltage_pu": (0.5, 1.5, "per unit of the bus's nominal voltage"),
    "mv_max_voltage_pu": (0.5, 1.5, "per unit of the bus's nominal voltage"),
    "trafo_max_loading_percent": (1.0, 1000.0, "percent of the rating"),
    "line_max_loading_percent": (1.0, 1000.0, "percent of the ampacity"),
    "n1_trafo_max_loading_percent": (1.0, 1000.0, "percent of the rating"),
    "n1_line_max_loading_percent": (1.0, 1000.0, "percent of the ampacity"),
    "n1_mv_min_voltage_pu": (0.5, 1.5, "per unit of the bus's nominal voltage"),
    "n1_mv_max_voltage_pu": (0.5, 1.5, "per unit of the bus's nominal voltage"),
    "lv_policy_max_kw": (1.0, 1e6, "declared kW of one customer"),
    "detour_factor": (1.0, 5.0, "route length over straight-line distance: at least 1"),
    "n1_pass_rate_target_percent": (0.0, 100.0, "percent of the feeders"),
}


@dataclass(frozen=True)
class Criteria:
    """The limits a connection is judged by. Voltages of LV buses in volts, MV buses in pu."""

    profile: str
    description: str
    lv_min_voltage_v: float
    lv_max_voltage_v: float
    mv_min_voltage_pu: float
    mv_max_voltage_pu: float
    trafo_max_loading_percent: float
    line_max_loading_percent: float
    new_customer_pf: float
    default_category: str
    lv_policy_max_kw: float
    detour_factor: float
    default_area_class: str
    #: the standard service cable, validated and echoed; every service cable is sized by its
    #: design current instead (:func:`lvplan.decision.choose_service_cable`)
    service_cable: str
    supply_radius_m: dict[str, float] = field(default_factory=dict)
    #: N-1 per area class ("full", "pass_rate", "none"); empty: the profile has no N-1 rule
    n1_by_area_class: dict[str, str] = field(default_factory=dict)
    #: the area class assumed for an application that names none ("": N-1 only when named)
    n1_default_area_class: str = ""
    #: emergency limits after a transfer (MV buses in pu, MV lines and HV/MV units in %)
    n1_line_max_loading_percent: float = 100.0
    n1_trafo_max_loading_percent: float = 100.0
    n1_mv_min_voltage_pu: float = 0.93
    n1_mv_max_voltage_pu: float = 1.07
    n1_screening_rule: str = ""
    #: class C ("pass_rate"): the share of feeders (percent) that should pass N-1
    n1_pass_rate_target_percent: float = 0.0
    #: "heads": each feeder's head sections lost; "sections": also each section between switches
    n1_contingencies: str = "heads"
    n1_sources: dict[str, str] = field(default_factory=dict)
    overridden: tuple[str, ...] = ()

    def with_overrides(self, **values: Any) -> Criteria:
        """A copy with some values replaced; names are the field names of this class."""
        if not values:
            return self
        names = {f.name for f in dataclasses.fields(self)} - {"profile", "overridden"}
        clean: dict[str, Any] = {}
        for key, raw in values.items():
            if key == "profile":  # (it chooses the file the other values come from)
                raise InputError("criterion profile cannot be set: use --profile cn|en50160")
            if key not in names:
                raise InputError(f"unknown criterion {key!r}; known: {', '.join(sorted(names))}")
            current = getattr(self, key)
            if isinstance(current, float):
                clean[key] = finite(f"criterion {key}", raw)
            elif isinstance(current, dict):
                raise InputError(f"criterion {key} cannot be overridden from a single value")
            else:
                clean[key] = str(raw)
        out = dataclasses.replace(
            self, **clean, overridden=tuple(sorted({*self.overridden, *clean}))
        )
        out.validate()
        return out

    def validate(self) -> None:
        for name, (lo, hi, why) in LIMITS.items():
            x = getattr(self, name)
            if not lo <= x <= hi:
                raise InputError(f"criteria: {name} must be in [{lo:g}, {hi:g}] ({why}), got {x:g}")
        if not self.lv_min_voltage_v < self.lv_max_voltage_v:
            raise InputError("criteria: lv_min_voltage_v must be below lv_max_voltage_v")
        if not self.mv_min_voltage_pu < self.mv_max_voltage_pu:
            raise InputError("criteria: mv_min_voltage_pu must be below mv_max_voltage_pu")
        for name in ("trafo_max_loading_percent", "line_max_loading_percent", "lv_policy_max_kw"):
            if not getattr(self, name) > 0:
                raise InputError(f"criteria: {name} must be positive")
        if not 0 < self.new_customer_pf <= 1:
            raise InputError("criteria: new_customer_pf must be in (0, 1]")
        if self.default_category not in categories():
            raise InputError(f"criteria: unknown default_category {self.default_category!r}")
        if self.supply_radius_m and self.default_area_class not in self.supply_radius_m:
            known = ", ".join(self.supply_radius_m)
            raise InputError(
                f"criteria: default_area_class must be one of {known}, "
                f"got {self.default_area_class!r}"
            )
        from lvplan.model.catalogue import cable_types

        cable = cable_types().get(self.service_cable)
        if cable is None or cable.voltage != "lv":
            known = ", ".join(n for n, c in cable_types().items() if c.voltage == "lv")
            raise InputError(
                f"criteria: service_cable must be an LV cable of the equipment catalogue "
                f"({known}), got {self.service_cable!r}"
            )
        if self.n1_by_area_class:
            cls = self.n1_default_area_class
            if cls and cls not in self.n1_by_area_class:
                known = ", ".join(self.n1_by_area_class)
                raise InputError(
                    f"criteria: n1_default_area_class must be empty or one of {known}, got {cls!r}"
                )
            if not self.n1_mv_min_voltage_pu < self.n1_mv_max_voltage_pu:
                raise InputError(
                    "criteria: n1_mv_min_voltage_pu must be below n1_mv_max_voltage_pu"
                )
            for name in ("n1_line_max_loading_percent", "n1_trafo_max_loading_percent"):
                if not getattr(self, name) > 0:
                    raise InputError(f"criteria: {name} must be positive")
            if "pass_rate" in self.n1_by_area_class.values() and not (
                0 < self.n1_pass_rate_target_percent <= 100
            ):
                raise InputError("criteria: n1_pass_rate_target_percent must be in (0, 100]")
            if self.n1_contingencies not in ("heads", "sections"):
                raise InputError(
                    "criteria: n1_contingencies must be 'heads' or 'sections', "
                    f"got {self.n1_contingencies!r}"
                )

    @property
    def has_n1(self) -> bool:
        """Whether the profile has an N-1 rule at all (``en50160`` has none)."""
        return bool(self.n1_by_area_class)

    def n1_level(self, area_class: str | None) -> str:
        """The N-1 requirement for an application of ``area_class`` (None: the application
        names none, the profile's ``n1_default_area_class`` applies): ``full``,
        ``pass_rate``, ``none``, or ``unknown`` when no class is given nor assumed."""
        if not self.has_n1:
            return "none"
        cls = area_class or self.n1_default_area_class
        if not cls:
            return "unknown"
        return self.n1_by_area_class.get(cls, "none")

    def emergency(self) -> Criteria:
        """This profile with the emergency limits that apply after a transfer in place of the
        normal MV voltage band and loading limits (the one place they are swapped)."""
        return dataclasses.replace(
            self,
            mv_min_voltage_pu=self.n1_mv_min_voltage_pu,
            mv_max_voltage_pu=self.n1_mv_max_voltage_pu,
            line_max_loading_percent=self.n1_line_max_loading_percent,
            trafo_max_loading_percent=self.n1_trafo_max_loading_percent,
        )

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the values decisions depend on (every limit and rule, and the categories'
        demand factors; not the description, the sources or the list of overridden names):
        a register is decided under one set of them (:func:`lvplan.register.desk.bind_criteria`)."""
        import hashlib
        import json

        text = {"description", "n1_sources", "n1_screening_rule", "overridden"}
        values = {k: v for k, v in self.to_dict().items() if k not in text}
        # the demand factors turn declared kW into design kW: a decision depends on them too
        values["demand_factors"] = {n: c.demand_factor for n, c in sorted(categories().items())}
        blob = json.dumps(values, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def label(self) -> str:
        """The profile's name and what was overridden: ``cn``, ``cn with
        trafo_max_loading_percent=1000``."""
        if not self.overridden:
            return self.profile
        sets = ", ".join(f"{k}={getattr(self, k):.12g}" if isinstance(getattr(self, k), float)
                         else f"{k}={getattr(self, k)}" for k in self.overridden)  # fmt: skip
        return f"{self.profile} with {sets}"

    def to_dict(self) -> dict[str, Any]:
        cached = self.__dict__.get("_as_dict")
        if cached is None:  # computed once per (immutable) instance; copied on every call
            cached = dataclasses.asdict(self)
            object.__setattr__(self, "_as_dict", cached)
        out = {
            **cached,
            "supply_radius_m": dict(self.supply_radius_m),
            "n1_by_area_class": dict(self.n1_by_area_class),
            "n1_sources": dict(self.n1_sources),
            "overridden": list(self.overridden),
        }
        if not self.has_n1:  # a profile without N-1 echoes what it did before
            for key in [k for k in out if k.startswith("n1_")]:
                del out[key]
        return out


def _read_toml(name: str) -> dict[str, Any]:
    text = resources.files("lvplan.criteria").joinpath(name).read_text(encoding="utf-8")
    return tomllib.loads(text)


def load_criteria(profile: str = "cn", /, **overrides: Any) -> Criteria:
    """The built-in profile ``profile`` with ``overrides`` applied."""
    if profile not in PROFILES:
        raise InputError(f"unknown criteria profile {profile!r}; known: {', '.join(PROFILES)}")
    raw = _read_toml(f"{profile}.toml")
    loc = raw["location"]
    crit = Criteria(
        profile=raw["name"],
        description=raw["description"],
        lv_min_voltage_v=float(raw["lv_voltage"]["min_v"]),
        lv_max_voltage_v=float(raw["lv_voltage"]["max_v"]),
        mv_min_voltage_pu=float(raw["mv_voltage"]["min_pu"]),
        mv_max_voltage_pu=float(raw["mv_voltage"]["max_pu"]),
        trafo_max_loading_percent=float(raw["loading"]["trafo_max_percent"]),
        line_max_loading_percent=float(raw["loading"]["line_max_percent"]),
        new_customer_pf=float(raw["new_customer"]["pf"]),
        default_category=str(raw["new_customer"]["default_category"]),
        lv_policy_max_kw=float(raw["new_customer"]["lv_policy_max_kw"]),
        detour_factor=float(loc["detour_factor"]),
        default_area_class=str(loc["default_area_class"]),
        service_cable=str(loc["service_cable"]),
        supply_radius_m={k: float(v) for k, v in loc["supply_radius_m"].items()},
        **_n1_fields(raw.get("n1")),
    )
    crit.validate()
    return crit.with_overrides(**overrides)


def _n1_fields(n1: dict[str, Any] | None) -> dict[str, Any]:
    """The profile's ``[n1]`` table as Criteria fields (none: the profile has no N-1 rule)."""
    if not n1:
        return {}
    em = n1["emergency"]
    return {
        "n1_by_area_class": {str(k): str(v) for k, v in n1["by_area_class"].items()},
        "n1_default_area_class": str(n1.get("default_area_class", "")),
        "n1_line_max_loading_percent": float(em["line_max_percent"]),
        "n1_trafo_max_loading_percent": float(em["trafo_max_percent"]),
        "n1_mv_min_voltage_pu": float(em["mv_min_pu"]),
        "n1_mv_max_voltage_pu": float(em["mv_max_pu"]),
        "n1_screening_rule": str(n1.get("screening_rule", "")),
        "n1_pass_rate_target_percent": float(n1.get("pass_rate_target_percent", 0.0)),
        "n1_contingencies": str(n1.get("contingencies", "heads")),
        "n1_sources": {str(k): str(v) for k, v in n1.get("sources", {}).items()},
    }


@dataclass(frozen=True)
class Category:
    name: str
    demand_factor: float
    source: str

    def design_kw(self, declared_kw: float) -> float:
        """Declared equipment capacity (kW) -> design kW: the one place the demand factor is
        applied (the check, the desk and the optimiser's demand all call it)."""
        return declared_kw * self.demand_factor


def categories() -> dict[str, Category]:
    """Customer categories with their demand factors (declared kW -> design kW)."""
    return dict(_categories())


@functools.cache
def _categories() -> dict[str, Category]:
    raw = _read_toml("categories.toml")
    return {
        name: Category(name, float(v["demand_factor"]), str(v["source"])) for name, v in raw.items()
    }


def category(name: str) -> Category:
    cats = _categories()
    if name not in cats:
        raise InputError(f"unknown category {name!r}; known: {', '.join(sorted(cats))}")
    return cats[name]
