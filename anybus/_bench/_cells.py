"""What a benchmark run measures: the implementations, their cells, and their outcomes.

A *cell* (:class:`Job`) is an implementation on a backend on a workload; a workload id is
``W1``..``W7`` (W6 as ``W6-fanout`` and ``W6-single``), or a fan-out at another number of
subscribers, ``W1@5``. :func:`plan` lists the cells of one round; an :class:`Outcome` holds
every run of one cell.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ._common import SUBSCRIBERS, W4_POLICIES
from ._network_common import W6_WORKLOADS

__all__ = [
    "ANYBUS_W4",
    "BACKENDS",
    "IMPLS",
    "LABELS",
    "MEMORY_WORKLOADS",
    "NETWORK_IMPLS",
    "NETWORK_WORKLOADS",
    "PIPECAT",
    "RAW_ANYIO",
    "Impl",
    "Job",
    "Outcome",
    "Outcomes",
    "base_workload",
    "number",
    "plan",
    "sweep_id",
]

BACKENDS = ("asyncio", "trio")
MEMORY_WORKLOADS = ("W1", "W2", "W3", "W4", "W5")
#: W6 is two workloads (W1 and W2 through Redis); W7 is cross-process round trips.
NETWORK_WORKLOADS = (*W6_WORKLOADS, "W7")
#: W7's cells: pinger's backend + ponger's backend.
PAIRS = tuple(f"{a}+{b}" for a in BACKENDS for b in BACKENDS)


@dataclass(frozen=True)
class Impl:
    """One implementation under test and the worker that measures it.

    ``worker`` is a module of this package: run as ``python -m anybus._bench.<worker>`` when
    ``venv`` is ``"anybus"``, by path with pipecat's Python when it is ``"pipecat"``.
    """

    key: str
    label: str
    worker: str
    backends: tuple[str, ...]
    workloads: tuple[str, ...]
    extra_args: tuple[str, ...] = ()
    venv: str = "anybus"


ANYBUS = Impl("anybus", "anybus MemoryBus", "memory", BACKENDS, ("W1", "W2", "W3", "W5"))
#: W4 measures anybus once per overflow policy.
ANYBUS_W4 = tuple(
    Impl(f"anybus-{policy}", f"anybus {policy}", "memory", BACKENDS, ("W4",), ("--policy", policy))
    for policy in W4_POLICIES
)
PIPECAT = Impl(
    "pipecat",
    "pipecat AsyncQueueBus",
    "_pipecat_memory",
    ("asyncio",),
    MEMORY_WORKLOADS,
    venv="pipecat",
)
RAW_ANYIO = Impl(
    "raw-anyio", "raw anyio stream", "raw", BACKENDS, ("W1", "W2"), ("--primitive", "anyio")
)
RAW_QUEUE = Impl(
    "raw-asyncio-queue",
    "raw asyncio.Queue",
    "raw",
    ("asyncio",),
    ("W1", "W2"),
    ("--primitive", "asyncio-queue"),
)
NETWORK_IMPLS = (
    Impl("anybus-redis", "anybus RedisBus", "network", BACKENDS, W6_WORKLOADS, ("--impl=redis",)),
    Impl(
        "anybus-stream",
        "anybus RedisStreamBus",
        "network",
        BACKENDS,
        W6_WORKLOADS,
        ("--impl=stream",),
    ),
    Impl(
        "pipecat-redis",
        "pipecat RedisBus",
        "_pipecat_network",
        ("asyncio",),
        W6_WORKLOADS,
        ("--impl=redis",),
        "pipecat",
    ),
    # The clients alone, no bus: their rate does not depend on the subscribers, so they run
    # once, with W6-single, and both W6 tables compare with them.
    Impl(
        "raw-glide",
        "raw glide client",
        "network",
        BACKENDS,
        ("W6-single",),
        ("--impl=raw-glide",),
    ),
    Impl(
        "raw-redis-py",
        "raw redis-py client",
        "_pipecat_network",
        ("asyncio",),
        ("W6-single",),
        ("--impl=raw-redis-py",),
        "pipecat",
    ),
    Impl("anybus-redis", "anybus RedisBus", "network", PAIRS, ("W7",), ("--impl=redis",)),
    Impl("anybus-stream", "anybus RedisStreamBus", "network", PAIRS, ("W7",), ("--impl=stream",)),
    Impl(
        "pipecat-redis",
        "pipecat RedisBus",
        "_pipecat_network",
        ("asyncio+asyncio",),
        ("W7",),
        ("--impl=redis",),
        "pipecat",
    ),
)
IMPLS = (ANYBUS, *ANYBUS_W4, PIPECAT, RAW_ANYIO, RAW_QUEUE, *NETWORK_IMPLS)
LABELS = {impl.key: impl.label for impl in IMPLS}


def sweep_id(workload: str, subscribers: int) -> str:
    """The id of a throughput workload's cell with ``subscribers``: ``W1``, or ``W1@5``."""
    return workload if subscribers == SUBSCRIBERS[workload] else f"{workload}@{subscribers}"


def base_workload(workload: str) -> tuple[str, int | None]:
    """``("W1", 5)`` for ``"W1@5"``; ``("W1", None)`` for ``"W1"``."""
    base, at, subscribers = workload.partition("@")
    return base, int(subscribers) if at else None


@dataclass(frozen=True)
class Job:
    """One (implementation, backend, workload) cell of the results table."""

    impl: Impl
    backend: str
    workload: str

    @property
    def key(self) -> tuple[str, str, str]:
        """The cell's key in the outcomes: ``(impl key, backend, workload id)``."""
        return (self.impl.key, self.backend, self.workload)

    def describe(self) -> str:
        """``"W1 anybus MemoryBus on trio"``."""
        return f"{self.workload} {self.impl.label} on {self.backend}"


def number(value: object) -> float:
    """Read a number from a worker's JSON result line."""
    if not isinstance(value, int | float):
        raise TypeError(f"worker result field is not a number: {value!r}")
    return float(value)


@dataclass
class Outcome:
    """Every run of one job, in round order (``None`` where a run failed)."""

    job: Job
    results: list[dict[str, object] | None] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def values(self, field: str = "value") -> list[float]:
        """``field`` of every run that succeeded and has it."""
        return [
            number(r[field]) for r in self.results if r is not None and r.get(field) is not None
        ]

    def median(self, field: str = "value") -> float | None:
        """The median of :meth:`values`, or ``None`` if there are none."""
        values = self.values(field)
        return statistics.median(values) if values else None

    def by_round(self, field: str = "value") -> list[float | None]:
        """``field`` of every run, ``None`` where it failed."""
        return [None if r is None else number(r[field]) for r in self.results]

    def succeeded(self) -> list[dict[str, object]]:
        """The result lines of the runs that succeeded."""
        return [r for r in self.results if r is not None]

    def failed(self) -> int:
        """How many runs failed."""
        return sum(r is None for r in self.results)


Outcomes = Mapping[tuple[str, str, str], Outcome]


def plan(
    workloads: Sequence[str],
    backends: Sequence[str],
    *,
    pipecat: bool,
    pipecat_network: bool | None = None,
    raw: bool = True,
) -> dict[str, list[Job]]:
    """The jobs of one round, grouped by workload id, in a fixed base order.

    ``workloads`` are ids: ``W1``, ``W6-fanout``, or a sweep's ``W1@5``. pipecat runs on
    asyncio only and is the reference for every anybus backend; W7's backends are pairs,
    ``asyncio+trio``, and both must be selected. ``pipecat_network`` (default: ``pipecat``)
    decides for W6/W7 alone.
    """
    if pipecat_network is None:
        pipecat_network = pipecat
    jobs: dict[str, list[Job]] = {}
    for workload in workloads:
        base, _ = base_workload(workload)
        with_pipecat = pipecat_network if base in NETWORK_WORKLOADS else pipecat
        cells: list[Job] = []
        for impl in IMPLS:
            if impl.venv == "pipecat" and not with_pipecat:
                continue
            if base not in impl.workloads or (not raw and impl.key.startswith("raw-")):
                continue
            for backend in impl.backends:
                if impl.venv == "pipecat" or set(backend.split("+")) <= set(backends):
                    cells.append(Job(impl, backend, workload))
        if cells:
            jobs[workload] = cells
    return jobs
