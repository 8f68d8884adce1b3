"""The names lvplan answers with, as string enums: their values are the strings of the JSON and
CSV contracts (``"fits"``, ``"line"``, ``"newton"``), and they compare equal to them."""

from __future__ import annotations

from enum import StrEnum


class Verdict(StrEnum):
    """``Decision.decision``."""

    FITS = "fits"
    DOES_NOT_FIT = "does_not_fit"
    HV_REQUIRED = "hv_required"
    NOT_ASSESSABLE = "not_assessable"


class BindingKind(StrEnum):
    """``Violation.kind``: which limit an element breaks (``hosting.csv`` adds ``cap``)."""

    TRANSFORMER = "transformer"
    LINE = "line"
    VOLTAGE = "voltage"
    PRE_EXISTING = "pre_existing"
    SUPPLY_RADIUS = "supply_radius"
    N1_TRANSFER = "n1_transfer"
    CAP = "cap"


class Engine(StrEnum):
    """Which load flow decided: the fast engine, the exact AC load flow, or pandapower."""

    FAST = "fast"
    NEWTON = "newton"
    PANDAPOWER = "pandapower"


class ElementRef(str):
    """An element of the network: its pandapower ``component`` (``bus``, ``line``, ``trafo``)
    and ``index``, or a named part of the question with no index (``service cable``,
    ``customer terminal``). It *is* its display string (``"line 40"``), so the JSON and CSV
    contracts are unchanged; code reads ``component`` and ``index`` instead of parsing it."""

    component: str
    #: the pandapower index (it shadows ``str.index``, which nothing calls on an element)
    index: int | None  # type: ignore[assignment]

    def __new__(cls, component: str, index: int | None = None) -> ElementRef:
        text = component if index is None else f"{component} {int(index)}"
        obj = super().__new__(cls, text)
        obj.component = component
        obj.index = None if index is None else int(index)
        return obj

    def __reduce__(self):  # pickles as itself (hosting chunks cross processes)
        return (ElementRef, (self.component, self.index))
