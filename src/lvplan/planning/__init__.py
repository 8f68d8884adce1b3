"""Reinforcement planning: its inputs (demand, the measures catalogue) and the optimiser.

``read_demand`` reads and validates the new demand to plan for (:mod:`.demand`);
``load_measures`` the costed catalogue of measures (:mod:`.measures`); ``synth_demand`` makes
reproducible benchmark demand (:mod:`.synth_demand`).
"""

from __future__ import annotations

from lvplan.planning.demand import Demand, DemandSet, read_demand
from lvplan.planning.measures import MeasureKind, Measures, load_measures

__all__ = [
    "Demand",
    "DemandSet",
    "MeasureKind",
    "Measures",
    "load_measures",
    "read_demand",
]
