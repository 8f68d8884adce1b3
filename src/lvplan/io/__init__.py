"""Readers (pandapower JSON, networks/ folders, simbench:CODE) and atomic writers."""

from lvplan.io.load import load_network

__all__ = ["load_network"]
