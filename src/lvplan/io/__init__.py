"""Readers (pandapower JSON, networks/ folders, simbench:CODE) and atomic writers.

Import from the submodules: ``lvplan.io.load``, ``lvplan.io.atomic``.
"""
