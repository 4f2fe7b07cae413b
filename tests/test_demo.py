from __future__ import annotations

import io

import pytest

from anybus.__main__ import main
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


def test_the_command_runs_on_both_backends(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "anybus demo on asyncio" in out
    assert "anybus demo on trio" in out
    assert out.count("summary: 2 jobs completed") == 2


def test_a_bad_backend_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["demo", "--backend", "curio"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
