"""N-1 per feeder, as the network stands: what ``lvplan inspect`` lists and what a planner or
optimiser reads (:func:`feeder_n1`, also under changes), and the district's N-1 pass rate
(:func:`pass_rate`: the class C target of profile ``cn``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from lvplan.criteria import Criteria
from lvplan.errors import PowerFlowError
from lvplan.model.network import Network
from lvplan.n1.assess import (
    FAIL,
    NO_TIE,
    NOT_ASSESSABLE,
    PASS,
    ContingencyOutcome,
    judge_contingency,
)
from lvplan.n1.assess import n1_context as _n1_context
from lvplan.n1.assess import screening as _screening


@dataclass(frozen=True)
class FeederN1:
    """One feeder's N-1 state: its normal loading, ties, screening indicator, and each of its
    contingencies (its head sections lost) judged by the emergency limits."""

    feeder: str
    head_lines: tuple[int, ...]
    head_loading_percent: float | None
    ties: list[str]
    partners: list[str]
    screening: dict[str, Any] | None
    contingencies: list[ContingencyOutcome] = field(repr=False)

    @property
    def margin(self) -> float:
        """The smallest margin over the feeder's contingencies, each at its best option (pu for
        voltages, fraction of the rating for loadings; negative: an emergency limit broken;
        -inf: a contingency with no restoring tie or no solution)."""
        out = math.inf
        for c in self.contingencies:
            if c.status in (NO_TIE, NOT_ASSESSABLE) or c.best is None:
                return -math.inf
            out = min(out, c.best.min_margin)
        return out

    @property
    def failing(self) -> list[ContingencyOutcome]:
        return [c for c in self.contingencies if c.status in (FAIL, NO_TIE, NOT_ASSESSABLE)]

    @property
    def ok(self) -> bool:
        return not self.failing

    def to_dict(self) -> dict[str, Any]:
        m = self.margin
        return {
            "feeder": self.feeder,
            "head_lines": list(self.head_lines),
            "head_loading_percent": None
            if self.head_loading_percent is None
            else round(self.head_loading_percent, 2),
            "ties": list(self.ties),
            "partners": list(self.partners),
            "screening": self.screening,
            "n1_ok": self.ok,
            "n1_margin": None if not math.isfinite(m) else round(m, 5),
            "contingencies": [c.to_dict() for c in self.contingencies],
            "failing": [c.contingency.id for c in self.failing],
        }


def feeder_n1(network: Network, criteria: Criteria, changes=None) -> list[FeederN1]:
    """Every MV feeder's N-1 state under ``criteria``'s emergency limits; with ``changes``
    (:class:`lvplan.Changes`), of the network with those changes made (the optimiser's
    question: does this set of measures restore N-1?). Raises PowerFlowError when the normal
    state has no solution."""
    if changes is not None and len(changes):
        network = network.with_changes(changes)
    base = network.base_state()
    ctx = _n1_context(network, criteria)
    pos = network.pp.line.index
    out: list[FeederN1] = []
    for name, f in ctx.topology.feeders.items():
        outs = [judge_contingency(ctx, c, None, 0.0, 0.0) for c in f.contingencies]
        loads = [float(base.line_loading_percent[pos.get_loc(h)]) for h in f.heads]
        finite = [x for x in loads if math.isfinite(x)]
        out.append(
            FeederN1(
                feeder=name,
                head_lines=f.heads,
                head_loading_percent=max(finite) if finite else None,
                ties=[t.name for t in f.ties],
                partners=list(f.partners),
                screening=_screening(network, ctx, [name]).get(name),
                contingencies=outs,
            )
        )
    return out


def feeder_n1_or_error(network: Network, criteria: Criteria) -> tuple[list[FeederN1], str | None]:
    try:
        return feeder_n1(network, criteria), None
    except PowerFlowError as exc:
        return [], str(exc)


@dataclass(frozen=True)
class PassRate:
    """The share of feeders (each with every contingency restored within the emergency
    limits) and of contingencies passing N-1, against the profile's class C target (feeder
    basis). Feeders with no head section (no contingency) are not counted."""

    feeders: int
    feeders_passing: int
    contingencies: int
    contingencies_passing: int
    target_percent: float
    classes: tuple[str, ...]  # the area classes whose N-1 rule is this target

    @property
    def feeder_percent(self) -> float | None:
        return None if not self.feeders else 100.0 * self.feeders_passing / self.feeders

    @property
    def contingency_percent(self) -> float | None:
        n = self.contingencies
        return None if not n else 100.0 * self.contingencies_passing / n

    @property
    def meets_target(self) -> bool | None:
        p = self.feeder_percent
        return None if p is None else p >= self.target_percent - 1e-9

    def to_dict(self) -> dict[str, Any]:
        fp, cp = self.feeder_percent, self.contingency_percent
        return {
            "feeders": self.feeders,
            "feeders_passing": self.feeders_passing,
            "feeder_pass_rate_percent": None if fp is None else round(fp, 1),
            "contingencies": self.contingencies,
            "contingencies_passing": self.contingencies_passing,
            "contingency_pass_rate_percent": None if cp is None else round(cp, 1),
            "target_percent": self.target_percent,
            "meets_target": self.meets_target,
            "applies_to_area_classes": list(self.classes),
        }

    def text(self) -> str:
        fp, cp = self.feeder_percent, self.contingency_percent
        if fp is None or cp is None:
            return "N-1 pass rate: no feeder with a head section"
        verdict = "meets" if self.meets_target else "below"
        return (
            f"N-1 pass rate: {self.feeders_passing} of {self.feeders} feeders ({fp:.1f} %), "
            f"{self.contingencies_passing} of {self.contingencies} contingencies ({cp:.1f} %); "
            f"class {', '.join(self.classes) or '-'} target {self.target_percent:g} % of "
            f"feeders: {verdict}"
        )


def pass_rate(outcomes: dict[str, list[ContingencyOutcome]], criteria: Criteria) -> PassRate:
    """The N-1 pass rate of ``outcomes`` (feeder -> its contingencies judged without a new
    load): a contingency passes when one option restores it within the emergency limits
    (``no_restoring_tie`` and ``not_assessable`` do not pass); a feeder when all of its do."""
    counted = {k: v for k, v in outcomes.items() if v}
    return PassRate(
        feeders=len(counted),
        feeders_passing=sum(all(c.status == PASS for c in v) for v in counted.values()),
        contingencies=sum(len(v) for v in counted.values()),
        contingencies_passing=sum(c.status == PASS for v in counted.values() for c in v),
        target_percent=criteria.n1_pass_rate_target_percent,
        classes=tuple(k for k, v in criteria.n1_by_area_class.items() if v == "pass_rate"),
    )
