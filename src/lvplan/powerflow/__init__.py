"""Power flow: the AC reference (pandapower) and the fast local engine built on its model."""

from lvplan.powerflow.ac import RUNPP_OPTIONS, run_ac
from lvplan.powerflow.state import GridState

__all__ = ["RUNPP_OPTIONS", "GridState", "run_ac"]
