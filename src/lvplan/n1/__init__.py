"""N-1 on 10 kV hand-in-hand loops: contingencies from the topology (:mod:`.contingency`),
their states judged by the emergency limits (:mod:`.assess`), in the check (:mod:`.check`),
per feeder (:mod:`.feeders`)."""

from lvplan.n1.contingency import (
    Contingency,
    FeederTies,
    N1Topology,
    Option,
    Tie,
    find_contingencies,
)

__all__ = ["Contingency", "FeederTies", "N1Topology", "Option", "Tie", "find_contingencies"]
