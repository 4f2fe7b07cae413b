"""The targets of ``docs/benchmarks.md``, checked on a run's outcomes.

Each check returns verdicts: dicts with ``target`` (its name), ``summary`` (the figure and the
per-round or per-run detail, one line of text), ``figure`` and ``held`` (the two halves of it,
short), ``met`` (``True``/``False``, or ``None`` for a
line given for reference only, or a target not measured) and the figures behind it.
"""

from __future__ import annotations

from collections.abc import Sequence

from anybus._bench._cells import ANYBUS_W4, BACKENDS, PAIRS, Outcome, Outcomes, number

from .references import LABELS

__all__ = ["Verdict", "check_targets", "targets_document", "verdict_line"]

Verdict = dict[str, object]

#: Each target: (workload, anybus backend, minimum anybus/pipecat ratio). The reference is
#: always pipecat on asyncio, pipecat's only backend.
RATIO_TARGETS = (
    ("W1", "asyncio", 5.0),
    ("W1", "trio", 4.0),
    ("W2", "asyncio", 3.0),
    ("W2", "trio", 3.0),
)
#: W5: anybus's churn at least this fast as pipecat's (pipecat's time over anybus's), on
#: every backend.
W5_SPEED_TARGET = 1.0
#: W3: anybus's p99 latency must stay under this many milliseconds, on every backend.
W3_P99_TARGET_MS = 1.0
#: W4: with a bounded inbox, anybus's peak RSS growth must stay under this many MB.
W4_GROWTH_TARGET_MB = 50.0
#: W6: anybus's RedisBus on asyncio against pipecat's RedisBus.
W6_TARGET = 2.0
#: W6: anybus on trio at least this fraction of anybus on asyncio ("within 20%").
TRIO_TARGET = 0.8
#: W7: anybus's RedisBus p50 at most this multiple of the bare glide client's own ping-pong
#: between two processes, on the same backend pair.
W7_RAW_TARGET = 1.15
#: W6: RedisStreamBus (durable) against pipecat's (non-durable) RedisBus, with its sends
#: pipelined (``durability="queued"``); the default (each send waits for its store) is
#: reported beside it.
W6_STREAM_TARGET = 1.0
#: W7: RedisStreamBus's p50 at most this multiple of RedisBus's, on the same backend pair.
W7_STREAM_TARGET = 1.5


def verdict_line(verdict: Verdict, width: int = 50) -> str:
    """The verdict as one line of the text report, its name padded to ``width``."""
    met = verdict["met"]
    suffix = "" if met is None else "  MET" if met else "  MISSED"
    return f"  {verdict['target']!s:<{width}} {verdict['summary']}{suffix}"


def _not_measured(name: str) -> Verdict:
    return {"target": name, "summary": "not measured", "figure": "-", "held": "", "met": None}


def _reference(name: str, summary: str) -> Verdict:
    return {"target": name, "summary": summary, "figure": summary, "held": "", "met": None}


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _median(outcome: Outcome | None, field: str = "value") -> float | None:
    return None if outcome is None else outcome.median(field)


def _paired(numerator: Outcome, denominator: Outcome) -> list[float]:
    """Ratios of the runs of the same round (they ran seconds apart)."""
    return [
        a / b
        for a, b in zip(numerator.by_round(), denominator.by_round(), strict=True)
        if a is not None and b is not None and b != 0
    ]


def _ratio_verdict(
    name: str, ratio: float, paired: list[float], minimum: float, **fields: object
) -> Verdict:
    held = sum(r >= minimum for r in paired)
    spread = f"per round {min(paired):.2f}x - {max(paired):.2f}x, " if paired else ""
    return {
        "target": name,
        "summary": f"{ratio:5.2f}x  ({spread}held in {held}/{len(paired)})",
        "figure": f"{ratio:.2f}x",
        "held": f"{held}/{len(paired)} rounds",
        "met": ratio >= minimum,
        "minimum_ratio": minimum,
        "ratio_of_medians": ratio,
        "per_round_ratios": paired,
        **fields,
    }


def _within_verdict(
    name: str, ratio: float, paired: list[float], maximum: float, **fields: object
) -> Verdict:
    """A ratio that must stay at or below ``maximum`` (a latency against its floor)."""
    held = sum(r <= maximum for r in paired)
    spread = f"per round {min(paired):.2f}x - {max(paired):.2f}x, " if paired else ""
    return {
        "target": name,
        "summary": f"{ratio:5.2f}x  ({spread}held in {held}/{len(paired)})",
        "figure": f"{ratio:.2f}x",
        "held": f"{held}/{len(paired)} rounds",
        "met": ratio <= maximum,
        "maximum_ratio": maximum,
        "ratio_of_medians": ratio,
        "per_round_ratios": paired,
        **fields,
    }


def _maximum_verdict(
    name: str, median: float, runs: list[float], maximum: float, unit: str, **fields: object
) -> Verdict:
    held = sum(v < maximum for v in runs)
    digits = 3 if unit == "ms" else 1
    return {
        "target": name,
        "summary": (
            f"{median:.{digits}f} {unit}  (per run {min(runs):.{digits}f} -"
            f" {max(runs):.{digits}f}, held in {held}/{len(runs)})"
        ),
        "figure": f"{median:.{digits}f} {unit}",
        "held": f"{held}/{len(runs)} runs",
        "met": median < maximum,
        **fields,
    }


def _compared(
    name: str,
    numerator: Outcome | None,
    denominator: Outcome | None,
    limit: float,
    *,
    field: str = "value",
    at_most: bool = False,
    **fields: object,
) -> Verdict:
    """The verdict on the ratio of two cells' medians of ``field``: at least ``limit``, or
    with ``at_most`` at most ``limit``; not measured where either cell is missing."""
    ratio = _ratio(_median(numerator, field), _median(denominator, field))
    if numerator is None or denominator is None or ratio is None:
        return _not_measured(name)
    verdict = _within_verdict if at_most else _ratio_verdict
    return verdict(name, ratio, _paired(numerator, denominator), limit, **fields)


def _memory_targets(outcomes: Outcomes, workloads: Sequence[str]) -> list[Verdict]:
    verdicts: list[Verdict] = []
    for workload, backend, minimum in RATIO_TARGETS:
        if workload not in workloads:
            continue
        verdicts.append(
            _compared(
                f"{workload} anybus on {backend} >= {minimum:g}x pipecat on asyncio",
                outcomes.get(("anybus", backend, workload)),
                outcomes.get(("pipecat", "asyncio", workload)),
                minimum,
                workload=workload,
                backend=backend,
            )
        )
    for backend in BACKENDS if "W3" in workloads else ():
        outcome = outcomes.get(("anybus", backend, "W3"))
        name = f"W3 anybus on {backend} p99 < {W3_P99_TARGET_MS:g} ms"
        p99 = _median(outcome, "p99_ms")
        if outcome is None or p99 is None:
            verdicts.append(_not_measured(name))
            continue
        runs = outcome.values("p99_ms")
        verdicts.append(
            _maximum_verdict(
                name,
                p99,
                runs,
                W3_P99_TARGET_MS,
                "ms",
                workload="W3",
                backend=backend,
                maximum_p99_ms=W3_P99_TARGET_MS,
                median_p99_ms=p99,
                per_run_p99_ms=runs,
            )
        )
    if "W4" in workloads:
        verdicts.extend(_w4_targets(outcomes))
    if "W5" in workloads:
        verdicts.extend(_w5_targets(outcomes))
    return verdicts


def _w4_targets(outcomes: Outcomes) -> list[Verdict]:
    """W4: anybus's peak RSS growth under each overflow policy stays under the target."""
    verdicts: list[Verdict] = []
    for impl in ANYBUS_W4:
        for backend in BACKENDS:
            outcome = outcomes.get((impl.key, backend, "W4"))
            name = f"W4 {impl.label} on {backend} growth < {W4_GROWTH_TARGET_MB:g} MB"
            growth = _median(outcome)
            if outcome is None or growth is None:
                verdicts.append(_not_measured(name))
                continue
            runs = outcome.values()
            verdicts.append(
                _maximum_verdict(
                    name,
                    growth,
                    runs,
                    W4_GROWTH_TARGET_MB,
                    "MB",
                    workload="W4",
                    backend=backend,
                    policy=impl.extra_args[-1],
                    maximum_growth_mb=W4_GROWTH_TARGET_MB,
                    median_growth_mb=growth,
                    per_run_growth_mb=runs,
                )
            )
    pipecat = outcomes.get(("pipecat", "asyncio", "W4"))
    growth = _median(pipecat)
    if pipecat is not None and growth is not None:
        queued = _median(pipecat, "queued")
        per_message = f", ~{growth * 1e6 / queued:,.0f} bytes per queued message" if queued else ""
        shown = "-" if queued is None else f"{queued:,.0f}"
        verdicts.append(
            _reference(
                "(for reference) W4 pipecat, unbounded",
                f"grew {growth:,.1f} MB with {shown} messages queued{per_message}",
            )
        )
    return verdicts


def _w5_targets(outcomes: Outcomes) -> list[Verdict]:
    """W5: anybus churns at least as fast as pipecat (on the medians, with the per-round
    ratios); after the churn, anybus is back to its live tasks, with no subscriber left alive
    (checked on every run, not on a median: a task left behind once is a leak).
    """
    verdicts: list[Verdict] = []
    pipecat = outcomes.get(("pipecat", "asyncio", "W5"))
    for backend in BACKENDS:
        verdicts.append(
            _compared(
                f"W5 anybus on {backend} >= {W5_SPEED_TARGET:g}x pipecat on asyncio",
                pipecat,  # times: pipecat's over anybus's
                outcomes.get(("anybus", backend, "W5")),
                W5_SPEED_TARGET,
                workload="W5",
                backend=backend,
            )
        )
    for backend in BACKENDS:
        outcome = outcomes.get(("anybus", backend, "W5"))
        name = f"W5 anybus on {backend} nothing left behind"
        runs = [] if outcome is None else outcome.succeeded()
        if not runs:
            verdicts.append(_not_measured(name))
            continue
        tasks_held = sum(r["tasks_back_to_baseline"] is True for r in runs)
        alive_held = sum(number(r["subscribers_alive"]) == 0 for r in runs)
        retained = [number(r["rss_end_growth_mb"]) for r in runs]
        verdicts.append(
            {
                "target": name,
                "summary": (
                    f"tasks back to baseline in {tasks_held}/{len(runs)}, no subscriber alive"
                    f" in {alive_held}/{len(runs)} (RSS at end {min(retained):+.1f} -"
                    f" {max(retained):+.1f} MB)"
                ),
                "figure": "tasks back, none alive",
                "held": f"{min(tasks_held, alive_held)}/{len(runs)} runs",
                "met": tasks_held == alive_held == len(runs),
                "workload": "W5",
                "backend": backend,
                "runs": len(runs),
                "tasks_back_to_baseline": tasks_held,
                "no_subscriber_alive": alive_held,
                "rss_end_growth_mb": retained,
            }
        )
    return verdicts


def _network_targets(outcomes: Outcomes, workloads: Sequence[str]) -> list[Verdict]:
    """W6: anybus's RedisBus on asyncio at least 2x pipecat's RedisBus; anybus on trio within
    20% of asyncio (RedisBus and RedisStreamBus); RedisStreamBus with pipelined sends at least
    1x pipecat's RedisBus. W7: anybus's RedisBus p50 within 1.15x of the bare glide client's,
    and RedisStreamBus's within 1.5x of RedisBus's, on each backend pair; pipecat against its
    bare redis-py client and anybus against pipecat for reference."""
    verdicts: list[Verdict] = []
    for workload in ("W6-fanout", "W6-single"):
        if workload not in workloads:
            continue
        pipecat = outcomes.get(("pipecat-redis", "asyncio", workload))
        verdicts.append(
            _compared(
                f"{workload} anybus RedisBus >= {W6_TARGET:g}x pipecat RedisBus",
                outcomes.get(("anybus-redis", "asyncio", workload)),
                pipecat,
                W6_TARGET,
                workload=workload,
                backend="asyncio",
            )
        )
        for key in ("anybus-redis", "anybus-stream"):
            verdicts.append(
                _compared(
                    f"{workload} {LABELS[key][7:]} trio >= {TRIO_TARGET:.0%} of asyncio",
                    outcomes.get((key, "trio", workload)),
                    outcomes.get((key, "asyncio", workload)),
                    TRIO_TARGET,
                    workload=workload,
                    backend="trio",
                )
            )
        verdicts.extend(_stream_w6_targets(outcomes, workload, pipecat))
    if "W7" in workloads:
        verdicts.extend(_w7_targets(outcomes))
    return verdicts


def _stream_w6_targets(
    outcomes: Outcomes, workload: str, pipecat: Outcome | None
) -> list[Verdict]:
    """W6: RedisStreamBus with pipelined sends at least 1.0x pipecat's RedisBus, on each
    backend; the default durability beside it, for reference."""
    verdicts: list[Verdict] = []
    for backend in BACKENDS:
        verdicts.append(
            _compared(
                f"{workload} RedisStreamBus queued {backend} >= {W6_STREAM_TARGET:g}x pipecat"
                " RedisBus",
                outcomes.get(("anybus-stream-queued", backend, workload)),
                pipecat,
                W6_STREAM_TARGET,
                workload=workload,
                backend=backend,
            )
        )
        stored = outcomes.get(("anybus-stream", backend, workload))
        ratio = _ratio(_median(stored), _median(pipecat))
        if ratio is not None:
            verdicts.append(
                _reference(
                    f"(no target) {workload} RedisStreamBus stored {backend} vs pipecat",
                    f"{ratio:5.2f}x  (each send waits until Redis stored it)",
                )
            )
    return verdicts


def _w7_targets(outcomes: Outcomes) -> list[Verdict]:
    """W7: anybus's RedisBus p50 against the bare glide client's, and RedisStreamBus's
    against RedisBus's, backend pair by pair (the figure is each cell's median p50; the
    per-round ratios pair the runs of one round)."""
    verdicts: list[Verdict] = []
    # (the measured cell, its floor, the target's words, the most the ratio may be)
    checks = (
        (
            "anybus-redis",
            "raw-glide",
            "anybus RedisBus {} p50 within {:g}x of raw glide",
            W7_RAW_TARGET,
        ),
        (
            "anybus-stream",
            "anybus-redis",
            "RedisStreamBus {} p50 within {:g}x of RedisBus",
            W7_STREAM_TARGET,
        ),
    )
    for key, floor_key, words, maximum in checks:
        for backend in PAIRS:
            verdicts.append(
                _compared(
                    "W7 " + words.format(backend, maximum),
                    outcomes.get((key, backend, "W7")),
                    outcomes.get((floor_key, backend, "W7")),
                    maximum,
                    field="p50_ms",
                    at_most=True,
                    workload="W7",
                    backend=backend,
                )
            )
    pipecat_p50 = _median(outcomes.get(("pipecat-redis", "asyncio+asyncio", "W7")), "p50_ms")
    redis_py_p50 = _median(outcomes.get(("raw-redis-py", "asyncio+asyncio", "W7")), "p50_ms")
    ratio = _ratio(pipecat_p50, redis_py_p50)
    if ratio is not None:
        verdicts.append(
            _reference(
                "(no target) W7 pipecat RedisBus p50 vs raw redis-py",
                f"{ratio:5.2f}x  ({pipecat_p50:.3f} ms against {redis_py_p50:.3f} ms)",
            )
        )
    if pipecat_p50 is not None:
        for backend in ("asyncio+trio", "trio+asyncio"):
            p50 = _median(outcomes.get(("anybus-redis", backend, "W7")), "p50_ms")
            if p50 is None:
                continue
            verdicts.append(
                _reference(
                    f"(no target) W7 anybus RedisBus {backend} p50",
                    f"{p50:.3f} ms vs pipecat RedisBus asyncio+asyncio {pipecat_p50:.3f} ms",
                )
            )
    return verdicts


def check_targets(outcomes: Outcomes, workloads: Sequence[str]) -> list[Verdict]:
    """The verdicts of every target that ``workloads`` (ids) speak of."""
    return [*_memory_targets(outcomes, workloads), *_network_targets(outcomes, workloads)]


def targets_document(verdicts: list[Verdict]) -> list[Verdict]:
    """The verdicts of the targets that were measured (not the reference lines)."""
    return [verdict for verdict in verdicts if verdict["met"] is not None]
