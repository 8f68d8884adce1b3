"""lvplan: capacity planning for public 10/0.4 kV distribution transformers.

import lvplan
net = lvplan.load_network("sz-futian")          # or "file.json", "simbench:CODE"
d = lvplan.check(net, bus=12, kw=150.0, category="generic", pf=0.9)
d.decision   # "fits" | "does_not_fit" | "hv_required" | "not_assessable"
d.to_dict()  # the JSON object of `lvplan check --json`
res = lvplan.hosting_capacity(net)              # res.table: one row per LV bus; res.stats

Names are imported on first use, so ``import lvplan`` (and a hosting worker process) does not
load pandapower until it is needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_WHERE = {
    "Decision": "lvplan.decision",
    "check": "lvplan.decision",
    "Criteria": "lvplan.criteria",
    "load_criteria": "lvplan.criteria",
    "InputError": "lvplan.errors",
    "InvalidNetwork": "lvplan.errors",
    "LvplanError": "lvplan.errors",
    "OptimisationError": "lvplan.errors",
    "PowerFlowError": "lvplan.errors",
    "load_network": "lvplan.io.load",
    "Network": "lvplan.model.network",
    "hosting_capacity": "lvplan.hosting",
    "HostingResult": "lvplan.hosting",
    "Changes": "lvplan.changes",
    "load_changes": "lvplan.changes",
    "evaluate": "lvplan.evaluation",
    "Evaluation": "lvplan.evaluation",
    "plan": "lvplan.planning.plan",
    "Plan": "lvplan.planning.plan",
    "RegisterUnavailable": "lvplan.errors",
}

if TYPE_CHECKING:
    from lvplan.changes import Changes, load_changes
    from lvplan.criteria import Criteria, load_criteria
    from lvplan.decision import Decision, check
    from lvplan.errors import (
        InputError,
        InvalidNetwork,
        LvplanError,
        OptimisationError,
        PowerFlowError,
        RegisterUnavailable,
    )
    from lvplan.evaluation import Evaluation, evaluate
    from lvplan.hosting import HostingResult, hosting_capacity
    from lvplan.io.load import load_network
    from lvplan.model.network import Network
    from lvplan.planning.plan import Plan, plan


def __getattr__(name: str) -> Any:
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'lvplan' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


__all__ = [
    "Changes",
    "Criteria",
    "Decision",
    "Evaluation",
    "HostingResult",
    "InputError",
    "InvalidNetwork",
    "LvplanError",
    "Network",
    "OptimisationError",
    "Plan",
    "PowerFlowError",
    "RegisterUnavailable",
    "__version__",
    "check",
    "evaluate",
    "hosting_capacity",
    "load_changes",
    "load_criteria",
    "load_network",
    "plan",
]
