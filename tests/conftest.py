"""Shared fixtures: networks are loaded once per test session."""

from __future__ import annotations

import warnings

import pytest

import lvplan

warnings.filterwarnings("ignore")


@pytest.fixture(scope="session")
def sz():
    return lvplan.load_network("sz-futian")


@pytest.fixture(scope="session")
def urban():
    """The SimBench urban district (10,458 buses), bundled as networks/simbench-urban."""
    return lvplan.load_network("simbench-urban")


@pytest.fixture(scope="session")
def cn():
    return lvplan.load_criteria("cn")
