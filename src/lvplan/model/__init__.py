"""The network model: a validated pandapower net plus its derived topology."""

from lvplan.model.network import Network

__all__ = ["Network"]
