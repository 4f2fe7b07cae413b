"""The worked example of docs/transports.md is a transport: the conformance suite passes on it.

This is how a new transport is tested: one module implementing :class:`anybus.Transport`,
and :class:`~anybus.testing.conformance.NetworkBusConformance` run against buses given it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from anybus import Transport, WorkerBus
from anybus.testing.conformance import BusFactory, NetworkBusConformance


def _load_example() -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "examples" / "hub_transport.py"
    spec = importlib.util.spec_from_file_location("hub_transport", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


example = _load_example()


class TestHubTransport(NetworkBusConformance):
    @pytest.fixture
    def bus_factory(self) -> BusFactory:
        hub = example.Hub()
        return lambda: WorkerBus(example.HubTransport(hub))


def test_the_example_is_a_transport() -> None:
    transport: Transport = example.HubTransport(example.Hub())
    assert str(transport) == "hub of 0"
