"""``anybus bench --plot``: deliveries per second against the number of subscribers.

Needs matplotlib (the ``bench`` extra). Draws with matplotlib's object API on the Agg canvas,
so it neither needs a display nor touches pyplot's global state.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ._cells import Outcome, Outcomes, base_workload, number

__all__ = ["Series", "plot_subscribers", "series"]

#: One line of the plot: its label, then (subscribers, median, min, max) per point.
Series = tuple[str, list[tuple[int, float, float, float]]]

_COLOURS = {"asyncio": "#1f77b4", "trio": "#d62728"}


def _subscribers(outcome: Outcome) -> int | None:
    for result in outcome.succeeded():
        return int(number(result["subscribers"]))
    return None


def series(outcomes: Outcomes, family: str) -> list[Series]:
    """The lines to draw: one per (implementation, backend) measured on ``family``'s sweep
    (``W1``, ``W6-fanout``), each point a median with its min and max over the runs."""
    lines: dict[tuple[str, str], list[tuple[int, float, float, float]]] = {}
    for (_, backend, workload), outcome in outcomes.items():
        if base_workload(workload)[0] != family:
            continue
        median, subscribers = outcome.median(), _subscribers(outcome)
        if median is None or subscribers is None:
            continue
        values = outcome.values()
        point = (subscribers, median, min(values), max(values))
        lines.setdefault((outcome.job.impl.label, backend), []).append(point)
    return [(f"{label} ({backend})", sorted(points)) for (label, backend), points in lines.items()]


def plot_subscribers(
    lines: Sequence[Series], path: Path, *, title: str, note: str, ylabel: str
) -> None:
    """Write a PNG of ``lines`` to ``path``: one colour per backend, one line style per
    implementation, anybus's lines bold; the band around each is the min-max of the runs.

    Raises :exc:`ModuleNotFoundError` if matplotlib is not installed, and :exc:`OSError` if
    ``path`` cannot be written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    figure = Figure(figsize=(10, 5), dpi=110, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    ticks: set[int] = set()
    # One colour per backend; one line style and marker per implementation.
    styles = [("-", "o"), ("-.", "s"), ("--", "^"), (":", "D"), ("--", "v")]
    implementations: list[str] = []
    for label, points in lines:
        xs = [p[0] for p in points]
        ticks.update(xs)
        implementation, _, backend = label.rpartition(" (")
        backend = backend.rstrip(")").split("+")[0]
        if implementation not in implementations:
            implementations.append(implementation)
        style, marker = styles[implementations.index(implementation) % len(styles)]
        reference = not label.startswith("anybus")
        colour = _COLOURS.get(backend, "#2ca02c")
        axes.plot(
            xs,
            [p[1] for p in points],
            linestyle=style,
            marker=marker,
            color=colour,
            linewidth=1.2 if reference else 2.2,
            label=label,
        )
        if not reference:
            axes.fill_between(
                xs, [p[2] for p in points], [p[3] for p in points], color=colour, alpha=0.12
            )
    axes.set_xscale("log")
    axes.set_xticks(sorted(ticks), [str(t) for t in sorted(ticks)])
    axes.minorticks_off()
    axes.set_ylim(bottom=0)
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value / 1e3:,.0f}k"))
    axes.set_xlabel("subscribers")
    axes.set_ylabel(ylabel)
    figure.suptitle(title)
    axes.set_title(note, fontsize="x-small", color="#555555", loc="left")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.savefig(path, format="png")
