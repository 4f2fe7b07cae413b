"""What a benchmark run measures: the implementations, their cells, and their outcomes.

A *cell* (:class:`Job`) is an implementation on a backend on a workload; a workload id is
``W1``..``W7`` (W6 as ``W6-fanout`` and ``W6-single``), or a fan-out at another number of
subscribers, ``W1@5``. :func:`plan` lists the cells of one round; an :class:`Outcome` holds
every run of one cell. The workloads are defined in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ._common import SUBSCRIBERS, W4_POLICIES
from ._network_common import W6_IDS

__all__ = [
    "ANYBUS",
    "ANYBUS_W4",
    "BACKENDS",
    "IMPLS",
    "MEMORY_IDS",
    "NETWORK_IMPLS",
    "NETWORK_IDS",
    "PAIRS",
    "Impl",
    "Job",
    "Outcome",
    "Outcomes",
    "base_workload",
    "fmt_spread",
    "fmt_value",
    "number",
    "plan",
    "sweep_id",
]

BACKENDS = ("asyncio", "trio")
MEMORY_IDS = ("W1", "W2", "W3", "W4", "W5")
#: W6 is two workloads (W1 and W2 through Redis); W7 is cross-process round trips.
NETWORK_IDS = (*W6_IDS, "W7")
#: W7's cells: pinger's backend + ponger's backend.
PAIRS = tuple(f"{a}+{b}" for a in BACKENDS for b in BACKENDS)


@dataclass(frozen=True)
class Impl:
    """One implementation under test and the worker that measures it.

    ``worker`` is a module run as ``python -m <worker>`` (anybus's workers:
    ``anybus._bench.memory``), or the path of a script run by path (``*.py``: the references
    of the repository's ``benchmarks/``). ``python`` names the interpreter that runs it:
    ``"anybus"`` is this one, any other name one of :attr:`RunConfig.pythons
    <anybus._bench._runner.RunConfig.pythons>`. An implementation with ``pinned`` runs on its
    own backends whatever the run's backends are (a reference with only one backend).
    """

    key: str
    label: str
    worker: str
    backends: tuple[str, ...]
    workloads: tuple[str, ...]
    extra_args: tuple[str, ...] = ()
    python: str = "anybus"
    pinned: bool = False


MEMORY = "anybus._bench.memory"
NETWORK = "anybus._bench.network"

ANYBUS = Impl("anybus", "anybus MemoryBus", MEMORY, BACKENDS, ("W1", "W2", "W3", "W5"))
#: W4 measures anybus once per overflow policy.
ANYBUS_W4 = tuple(
    Impl(f"anybus-{policy}", f"anybus {policy}", MEMORY, BACKENDS, ("W4",), ("--policy", policy))
    for policy in W4_POLICIES
)
NETWORK_IMPLS = (
    Impl("anybus-redis", "anybus RedisBus", NETWORK, BACKENDS, W6_IDS, ("--impl=redis",)),
    Impl(
        "anybus-stream",
        "anybus RedisStreamBus",
        NETWORK,
        BACKENDS,
        W6_IDS,
        ("--impl=stream",),
    ),
    Impl(
        "anybus-stream-queued",
        "anybus RedisStreamBus queued",
        NETWORK,
        BACKENDS,
        W6_IDS,
        ("--impl=stream-queued",),
    ),
    Impl("anybus-redis", "anybus RedisBus", NETWORK, PAIRS, ("W7",), ("--impl=redis",)),
    Impl("anybus-stream", "anybus RedisStreamBus", NETWORK, PAIRS, ("W7",), ("--impl=stream",)),
    Impl(
        "anybus-stream-queued",
        "anybus RedisStreamBus queued",
        NETWORK,
        PAIRS,
        ("W7",),
        ("--impl=stream-queued",),
    ),
)
#: anybus's own implementations: what ``anybus bench`` measures.
IMPLS = (ANYBUS, *ANYBUS_W4, *NETWORK_IMPLS)


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
    workloads: Sequence[str], backends: Sequence[str], impls: Sequence[Impl] = IMPLS
) -> dict[str, list[Job]]:
    """The jobs of one round, grouped by workload id, in the order of ``impls``.

    ``workloads`` are ids: ``W1``, ``W6-fanout``, or a sweep's ``W1@5``. W7's backends are
    pairs, ``asyncio+trio``, and both must be selected; a ``pinned`` implementation runs on
    its own backends.
    """
    jobs: dict[str, list[Job]] = {}
    for workload in workloads:
        base, _ = base_workload(workload)
        cells = [
            Job(impl, backend, workload)
            for impl in impls
            if base in impl.workloads
            for backend in impl.backends
            if impl.pinned or set(backend.split("+")) <= set(backends)
        ]
        if cells:
            jobs[workload] = cells
    return jobs


def fmt_value(workload: str, value: float | None) -> str:
    """A cell's figure, in the workload's unit."""
    workload, _ = base_workload(workload)
    if value is None:
        return "-"
    if workload in ("W3", "W7"):
        return f"{value:.3f} ms"
    if workload in W6_IDS:
        return f"{value:,.0f}/s"
    if workload == "W4":
        return f"{value:,.1f} MB"
    if workload == "W5":
        return f"{value * 1e3:,.0f} ms"
    return f"{value / 1e3:,.0f}k/s"


def fmt_spread(workload: str, values: Sequence[float]) -> str:
    """The min - max of a cell's figures, in the workload's unit."""
    workload, _ = base_workload(workload)
    if not values:
        return "-"
    low, high = min(values), max(values)
    if workload in ("W3", "W7"):
        return f"{low:.3f} - {high:.3f}"
    if workload in W6_IDS:
        return f"{low:,.0f} - {high:,.0f}"
    if workload == "W4":
        return f"{low:,.1f} - {high:,.1f}"
    if workload == "W5":
        return f"{low * 1e3:,.0f} - {high * 1e3:,.0f}"
    return f"{low / 1e3:,.0f}k - {high / 1e3:,.0f}k"
