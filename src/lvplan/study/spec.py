"""The study file: YAML, validated whole before anything runs.

::

    name: lv-200kw-citywide                  # required; [A-Za-z0-9._-]
    description: ...                         # optional text for the report
    profile: cn                              # criteria profile
    set: {trafo_max_loading_percent: 100}    # criteria overrides (as --set)
    policies_kw: [160, 200]                  # LV policy limits to compare (declared kW)
    horizon: [2027, 2030]                    # first and last year of the forecast
    run: {inspect: true, hosting: true, replay: true, plan: true}
    out: study-lv-200kw-citywide             # output folder, relative to the file (--out wins)
    networks:
      - network: sz-futian                   # as the NETWORK of every command
        label: Futian (Shenzhen)             # optional, for the report
        parcels: {synth: {count: 12, seed: 1}}          # or {file: parcels.csv|.geojson}
        applications: {synth: {count: 120, seed: 7}}    # or {file: applications.csv}
        plan: {time_limit_s: 10}

A bad file raises :class:`~lvplan.errors.InputError` with one line ``FILE: key.path: message``
(``networks[0].plan.time_limit_s: ...``): unknown keys, wrong types, a network that does not
exist, a parcels or applications file that is not there. Relative paths are relative to the
study file.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from lvplan.criteria import LIMITS
from lvplan.errors import InputError
from lvplan.io.textfile import read_text_bounded

#: the largest study file read (a YAML file is a few kB)
MAX_BYTES = 1024 * 1024
#: the most policies and networks one study compares (each policy replays every network's
#: applications; each network is loaded, mapped and planned)
MAX_POLICIES = 10
MAX_NETWORKS = 20
#: default size distribution of synthetic applications: (lowest, highest declared kW, share)
SIZES_KW: list[tuple[float, float, float]] = [
    (10.0, 60.0, 0.45),
    (60.0, 120.0, 0.25),
    (120.0, 160.0, 0.12),
    (160.0, 200.0, 0.13),
    (200.0, 300.0, 0.05),
]
#: default categories of synthetic applications and their shares
CATEGORIES: dict[str, float] = {"shop": 0.35, "restaurant": 0.25, "office": 0.2, "generic": 0.2}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Run(_Strict):
    inspect: bool = True
    hosting: bool = True
    replay: bool = True
    plan: bool = True


class SynthParcels(_Strict):
    count: int = Field(12, ge=1, le=10_000)
    seed: int = Field(1, ge=0)


class SynthApplications(_Strict):
    count: int = Field(100, ge=1, le=100_000)
    seed: int = Field(1, ge=0)
    sizes_kw: list[list[float]] = Field(default_factory=lambda: [list(x) for x in SIZES_KW])
    categories: dict[str, float] = Field(default_factory=lambda: dict(CATEGORIES))

    @model_validator(mode="after")
    def _shares(self) -> SynthApplications:
        for i, row in enumerate(self.sizes_kw):
            if len(row) != 3:
                raise ValueError(f"sizes_kw[{i}]: need [lowest kW, highest kW, share]")
            lo, hi, share = row
            if not (0 < lo < hi <= 100_000) or not (math.isfinite(share) and share >= 0):
                raise ValueError(
                    f"sizes_kw[{i}]: need 0 < lowest < highest kW and a share >= 0, "
                    f"got [{lo:g}, {hi:g}, {share:g}]"
                )
        if not self.sizes_kw or sum(s for _, _, s in self.sizes_kw) <= 0:
            raise ValueError("sizes_kw: the shares must add up to more than 0")
        from lvplan.criteria import category

        for name, share in self.categories.items():
            try:
                category(name)
            except InputError as exc:
                raise ValueError(f"categories.{name}: {exc}") from None
            if not (math.isfinite(share) and share >= 0):
                raise ValueError(f"categories.{name}: a share must be a finite number >= 0")
        if not self.categories or sum(self.categories.values()) <= 0:
            raise ValueError("categories: the shares must add up to more than 0")
        return self


class FileOrSynth(_Strict):
    file: str | None = None

    @model_validator(mode="after")
    def _one(self) -> FileOrSynth:
        if (self.file is None) == (getattr(self, "synth", None) is None):
            raise ValueError("give either file or synth")
        return self


class Parcels(FileOrSynth):
    synth: SynthParcels | None = None


class Applications(FileOrSynth):
    synth: SynthApplications | None = None


class PlanSettings(_Strict):
    time_limit_s: float = Field(10.0, gt=0, le=3600)
    method: Literal["optimal", "greedy"] = "optimal"
    workers: int = Field(1, ge=1, le=64)


class NetworkStudy(_Strict):
    network: str
    label: str | None = None
    parcels: Parcels | None = None
    applications: Applications | None = None
    plan: PlanSettings = Field(default_factory=lambda: PlanSettings.model_validate({}))


class Study(_Strict):
    name: str
    description: str = ""
    profile: str = "cn"
    set: dict[str, float | int | str | bool] = Field(default_factory=dict)
    policies_kw: list[float] = Field(
        default_factory=lambda: [160.0, 200.0], min_length=1, max_length=MAX_POLICIES
    )
    horizon: list[int] = Field(default_factory=lambda: [2027, 2030], min_length=2, max_length=2)
    run: Run = Field(default_factory=lambda: Run.model_validate({}))
    out: str | None = None
    networks: list[NetworkStudy] = Field(min_length=1, max_length=MAX_NETWORKS)

    @model_validator(mode="after")
    def _check(self) -> Study:
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,80}", self.name):
            raise ValueError("name: letters, digits, '.', '_' and '-' only (1 to 80)")
        lo, hi, _what = LIMITS["lv_policy_max_kw"]  # (the profile's own range: one home)
        for k, p in enumerate(self.policies_kw):
            if not lo <= p <= hi:
                raise ValueError(f"policies_kw[{k}]: must be in [{lo:g}, {hi:g}] kW, got {p:g}")
        if len(set(self.policies_kw)) != len(self.policies_kw):
            raise ValueError("policies_kw: a limit appears twice")
        a, b = self.horizon
        if not 2000 <= a <= b <= 2100:
            raise ValueError(f"horizon: need [FIRST, LAST] within 2000..2100, got [{a}, {b}]")
        return self

    def policy_label(self, p: float) -> str:
        return f"{p:g} kW"


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "tuple", "list"):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "study"


def _message(exc: ValidationError) -> str:
    e = exc.errors()[0]
    loc = _loc(tuple(p for p in e["loc"] if not str(p).startswith("function-")))
    msg = str(e["msg"])
    if e["type"] == "extra_forbidden":
        msg = "unknown key"
    elif e["type"] == "missing":
        msg = "missing"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
        head, sep, rest = msg.partition(": ")
        if sep and re.fullmatch(r"[A-Za-z_][\w.\[\]]*", head):  # the validator named the key
            loc = f"{loc}.{head}" if loc != "study" else head
            msg = rest
    got = e.get("input")
    if e["type"] not in ("extra_forbidden", "missing") and isinstance(got, str | int | float):
        msg += f" (got {str(got)[:40]!r})"
    return f"{loc}: {msg}"


def read_study(path: str | Path) -> Study:
    """The validated study of a YAML file; InputError ``FILE: key.path: message`` else."""
    import yaml

    from lvplan.io.strict_yaml import DuplicateKey, load_yaml

    p = Path(path)
    text = read_text_bounded(p, "a study file", MAX_BYTES)
    try:
        doc = load_yaml(text)
    except DuplicateKey as exc:
        raise InputError(f"{p}: {exc}") from None
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())[:160]
        raise InputError(f"{p}: not a YAML file ({first})") from None
    except RecursionError:  # PyYAML composes nested blocks by recursion
        raise InputError(f"{p}: not a YAML study file (nested too deeply)") from None
    if not isinstance(doc, dict):
        raise InputError(f"{p}: expected a YAML mapping of study keys (name, networks, ...)")
    try:
        study = Study.model_validate(doc)
    except ValidationError as exc:
        raise InputError(f"{p}: {_message(exc)}") from None
    _check_references(study, p)
    return study


def resolve(study_file: Path, rel: str) -> Path:
    q = Path(rel)
    return q if q.is_absolute() else study_file.parent / q


def _check_references(study: Study, p: Path) -> None:
    """What can be checked without loading anything: profile, overrides, networks, files."""
    from lvplan.criteria import load_criteria
    from lvplan.io.load import bundled_networks, check_network_spec, networks_dir

    try:
        load_criteria(study.profile, **study.set)
    except InputError as exc:
        key = "profile" if "profile" in str(exc) else "set"
        raise InputError(f"{p}: {key}: {exc}") from None
    for i, ns in enumerate(study.networks):
        spec = ns.network
        ok = spec.startswith("simbench:") or (networks_dir() / spec).is_dir()
        if not ok:
            local = resolve(p, spec)
            ok = local.exists() or Path(spec).exists()
        if not ok:
            known = ", ".join(bundled_networks()) or "none"
            raise InputError(
                f"{p}: networks[{i}].network: {spec!r} not found: not a bundled network "
                f"({known}), a file or folder, or simbench:CODE"
            )
        try:  # a folder without network.toml, an unknown SimBench code: now, not at its turn
            check_network_spec(network_spec(p, spec))
        except InputError as exc:
            raise InputError(f"{p}: networks[{i}].network: {exc}") from None
        for key, part in (("parcels", ns.parcels), ("applications", ns.applications)):
            if part is not None and part.file is not None and not resolve(p, part.file).is_file():
                f = resolve(p, part.file)
                what = "not a regular file (a folder or a device)" if f.exists() else "no such file"
                raise InputError(f"{p}: networks[{i}].{key}.file: {what} {part.file!r}")
        if ns.parcels is not None and ns.parcels.file is not None:
            # read whole before anything runs (applications need the network: read at its turn)
            from lvplan.planning.parcels import load_densities, read_parcels

            read_parcels(resolve(p, ns.parcels.file), load_densities())


def network_spec(study_file: Path, spec: str) -> str:
    """The NETWORK argument for ``load_network``: bundled names and simbench codes as given,
    a path relative to the study file otherwise."""
    from lvplan.io.load import networks_dir

    if spec.startswith("simbench:") or (networks_dir() / spec).is_dir():
        return spec
    local = resolve(study_file, spec)
    return str(local) if local.exists() else spec
