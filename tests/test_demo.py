"""The demo of the in-memory bus, as a library function (the ``anybus demo`` command is
tested in test_cli.py)."""

from __future__ import annotations

import io
import logging

import anyio
import pytest

from anybus._demo import run_demo


@pytest.mark.anyio
async def test_the_cancel_overtakes_queued_work(anyio_backend: str) -> None:
    out = io.StringIO()
    summary = await run_demo(out, backend=anyio_backend)
    assert summary == {"completed": 2, "cancelled_mid_job": 1, "overtaken": 3}
    lines = out.getvalue().splitlines()
    assert (
        lines[0]
        == f"anybus demo on {anyio_backend}: a runner and two workers on the in-memory bus"
    )

    def position(text: str) -> int:
        return next(i for i, line in enumerate(lines) if text in line)

    cancel = position("cancel received while job-a1 runs")
    assert cancel < position("job-a1: cancelled mid-way")
    for job in ("job-a2", "job-a3", "job-a4"):
        assert cancel < position(f"{job}: cancelled before it started")
    assert "job-a2: started" not in out.getvalue()
    assert lines[-1].startswith("summary: 2 jobs completed, 1 cancelled mid-job, 3 cancelled")


class ClosedAfter(io.StringIO):
    """An output whose reader goes away after ``lines`` lines, as ``| head`` does."""

    def __init__(self, lines: int) -> None:
        super().__init__()
        self.left = lines

    def write(self, text: str) -> int:
        if self.left == 0:
            raise BrokenPipeError(32, "Broken pipe")
        self.left -= 1
        return super().write(text)


@pytest.mark.anyio
@pytest.mark.parametrize("lines", [0, 2, 5, 12])
async def test_a_closed_output_ends_the_demo_at_once(
    anyio_backend: str, lines: int, caplog: pytest.LogCaptureFixture
) -> None:
    out = ClosedAfter(lines)
    # Before, the workers' handlers failed (logged), and the runner waited 10 s for them.
    with anyio.fail_after(3), pytest.raises(BrokenPipeError):
        await run_demo(out, backend=anyio_backend)
    assert len(out.getvalue().splitlines()) == lines
    assert [
        record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR
    ] == []
