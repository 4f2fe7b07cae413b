"""The behavioural test suite that every bus passes.

Subclass :class:`BusConformance` in a test module and give it a ``bus_factory`` fixture that
returns a callable making a fresh, unstarted bus::

    from anybus.testing.conformance import BusConformance

    class TestMyBus(BusConformance):
        @pytest.fixture
        def bus_factory(self) -> Callable[[], WorkerBus]:
            return lambda: MyBus(url="...")

The tests are anyio tests: they run on every backend your ``anyio_backend`` fixture names
(parametrize it with ``"asyncio"`` and ``"trio"`` in your ``conftest.py``). Every wait is
bounded by ``anyio.fail_after``; nothing sleeps.

This module imports pytest; import it from tests only.
"""

# The tests live in one private module per theme, each a class of test methods that
# BusConformance and NetworkBusConformance inherit; this module holds the two public suites.

from __future__ import annotations

from typing import ClassVar

import pytest

from ._cancellation import CancellationTests
from ._common import TIMEOUT as TIMEOUT
from ._common import BusFactory as BusFactory
from ._common import ids as ids
from ._common import lane as lane
from ._common import task_count as task_count
from ._delivery import DeliveryTests
from ._lifecycle import LifecycleTests
from ._misuse import MisuseTests
from ._network import NetworkTests
from ._priority import PriorityTests
from ._subscriptions import SubscriptionTests

__all__ = ["BusConformance", "BusFactory", "NetworkBusConformance"]


# pytest collects the tests of the last base first, so the bases are listed last theme first:
# the suite runs lifecycle, cancellation, subscriptions, delivery, then priority.
class BusConformance(
    PriorityTests, DeliveryTests, SubscriptionTests, CancellationTests, LifecycleTests, MisuseTests
):
    """What every bus does, whatever its transport: lifecycle and delivery semantics."""

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.anyio]

    @pytest.fixture
    def bus_factory(self) -> BusFactory:
        """Return a callable that makes a fresh, unstarted bus; override it."""
        raise NotImplementedError("override the bus_factory fixture")


class NetworkBusConformance(NetworkTests, BusConformance):
    """What every network bus does, plus what happens between two buses on one channel.

    Here ``bus_factory`` makes buses that share one channel (a fresh one for each test), so
    that two buses made by it in one test talk to each other.
    """
