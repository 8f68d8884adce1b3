"""lvplan: capacity planning for public 10/0.4 kV distribution transformers.

import lvplan
net = lvplan.load_network("sz-futian")          # or "file.json", "simbench:CODE"
d = lvplan.check(net, bus=12, kw=150.0, category="generic", pf=0.9)
d.decision   # "fits" | "does_not_fit" | "hv_required" | "not_assessable"
d.to_dict()  # the JSON object of `lvplan check --json`
"""

__version__ = "0.1.0"

from lvplan.check import Decision, check
from lvplan.criteria import Criteria, load_criteria
from lvplan.errors import (
    InputError,
    InvalidNetwork,
    LvplanError,
    OptimisationError,
    PowerFlowError,
)
from lvplan.io.load import load_network
from lvplan.model.network import Network

__all__ = [
    "Criteria",
    "Decision",
    "InputError",
    "InvalidNetwork",
    "LvplanError",
    "Network",
    "OptimisationError",
    "PowerFlowError",
    "__version__",
    "check",
    "load_criteria",
    "load_network",
]
