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
def sz_pristine():
    """sz-futian's pandapower net read again from its folder, never handed to a Network: what
    the independent reference judges (not ``sz.pp``)."""
    from lvplan.io.load import networks_dir
    from lvplan.io.netfolder import read_folder

    return read_folder(networks_dir() / "sz-futian")


@pytest.fixture(scope="session")
def urban_pristine():
    """The urban district's pandapower net converted again, never handed to a Network."""
    from lvplan.io.simbench_source import load_simbench

    return load_simbench("1-MVLV-urban-all-0-sw", study_case="hL")


@pytest.fixture(scope="session")
def cn():
    return lvplan.load_criteria("cn")
