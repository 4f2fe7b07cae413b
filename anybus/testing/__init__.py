"""Helpers for testing code that uses anybus, on asyncio and trio alike.

:class:`RecordingSubscriber` records what it is handed and lets a test wait, without sleeping,
until it has seen what the test expects::

    @pytest.mark.anyio
    async def test_worker_answers() -> None:
        async with MemoryBus() as bus:
            recorder = RecordingSubscriber("observer")
            await bus.subscribe(recorder)
            await bus.send(MyRequest(source="test"))
            with anyio.fail_after(5):
                await recorder.wait_for(lambda seen: any(isinstance(m, MyReply) for m in seen))

:mod:`anybus.testing.conformance` holds the behavioural test suite that every bus passes; run
it against your own transport by subclassing :class:`~anybus.testing.conformance.BusConformance`.
"""

from ._recording import RecordingSubscriber as RecordingSubscriber

__all__ = ["RecordingSubscriber"]

RecordingSubscriber.__module__ = __name__
