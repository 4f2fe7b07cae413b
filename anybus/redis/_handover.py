"""A PUBLISH handed to glide's core without a scheduling point: the one place that leans on
glide's internals.

``GlideClient.publish()`` is a coroutine whose first step registers a future and hands the
command to glide's core (a synchronous FFI call); only then does it wait. A bus whose writer
task would otherwise have to be woken for every message sent to an idle bus (a task switch on
the way to the network, on every hop of a ping-pong) takes that first step itself, in the
sending task, and leaves the waiting to the writer. The steps are those of glide 2.6's
``BaseClient._execute_command``; where they are missing (another glide), or glide's own
tracing wants its span, :func:`start_publish` declines and the writer publishes as before. A
step that fails all the same (internals changed under the same names) hands nothing over: it
is logged once, and the hand-over is off for the process from then on. A test checks that the
glide this package installs has the steps.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from typing import Any, final

from glide import ClosingError, GlideClient, OpenTelemetry

__all__ = ["DIRECT", "StartedPublish", "start_publish"]

logger = logging.getLogger("anybus.redis")

try:
    from glide.glide_client import _get_new_future_instance as _new_future
    from glide_shared.request_type import RequestType  # type: ignore[import-untyped]

    _PUBLISH = RequestType.Publish
    _STEPS = ("_get_callback_id", "_register_future", "_to_c_strings", "_check_same_process")
    #: Whether this glide has the steps :func:`start_publish` takes.
    DIRECT = all(hasattr(GlideClient, step) for step in _STEPS)
except (ImportError, AttributeError):
    DIRECT = False


@final
class StartedPublish:
    """A PUBLISH handed to glide's core: its answer, to await from any task of the thread."""

    __slots__ = ("_errors", "_future")

    def __init__(self, future: Any, errors: AbstractContextManager[None]) -> None:
        self._future = future
        self._errors = errors  # translates glide's exceptions (the adapter's map_errors)

    async def result(self) -> int:
        """How many subscribers received it, as ``RedisClient.publish`` returns."""
        with self._errors:
            return int(await self._future)


def start_publish(
    glide_client: Any, channel: str, payload: bytes, errors: AbstractContextManager[None]
) -> StartedPublish | None:
    """Hand ``PUBLISH channel payload`` to ``glide_client``'s core now: when this returns,
    the command is on its way, after every command handed to that client before it.

    ``None`` (nothing was done) for a closed client or one from before a ``fork()`` (then
    the writer's ``publish()`` meets the same refusal and reports it), while glide's tracing
    is on, or where this glide lacks the steps: ``DIRECT`` is false, or a step failed here
    once (logged, and the hand-over is off for the process from then on). ``errors``
    translates what the answer raises.
    """
    global DIRECT
    client = glide_client
    if not DIRECT or OpenTelemetry.is_tracing_enabled():
        return None
    registered = None
    try:
        if client._is_closed:
            return None
        try:
            client._check_same_process()
        except ClosingError:
            return None
        # Converted before the future is registered: the buffers need only live through
        # the call, as glide's core copies them.
        c_args, c_lengths, _buffers = client._to_c_strings([channel, payload])
        callback_id = client._get_callback_id()
        future = _new_future()
        client._register_future(callback_id, future)
        registered = callback_id
        core, null = client._core_client, client._ffi.NULL
        client._lib.command(core, callback_id, _PUBLISH, 2, c_args, c_lengths, null, 0, 0)
    except Exception as exc:  # glide's internals are not what this was written against
        DIRECT = False
        if registered is not None:  # the command was not handed over: nothing answers it
            getattr(client, "_pending_futures", {}).pop(registered, None)
        logger.warning(
            "handing PUBLISH to glide's core failed (%r): this glide's internals differ; "
            "the writer publishes every message from now on",
            exc,
        )
        return None
    return StartedPublish(future, errors)
