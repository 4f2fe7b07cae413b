"""Redis transports for anybus (the ``redis`` extra: ``pip install 'anybus[redis]'``).

:class:`RedisBus` carries messages over a Redis pub/sub channel (at-most-once, low latency);
:class:`RedisStreamBus` over a Redis stream (durable, at-least-once). The client is
valkey-glide, behind a thin adapter.
"""

from importlib.util import find_spec as _find_spec

# Only the adapter (``_client.py``) imports glide; without it, say which extra to install.
if _find_spec("glide") is None:  # pragma: no cover - exercised without the extra
    raise ModuleNotFoundError(
        "anybus.redis needs valkey-glide: pip install 'anybus[redis]'", name="glide"
    )

from ._base import RedisStatistics as RedisStatistics
from ._buses import RedisBus as RedisBus
from ._buses import RedisStreamBus as RedisStreamBus
from ._client import configure_glide_logging as configure_glide_logging
from ._pubsub import PubSubTransport as PubSubTransport
from ._settings import RedisSettings as RedisSettings
from ._streams import StreamTransport as StreamTransport

__all__ = [
    "PubSubTransport",
    "RedisBus",
    "RedisSettings",
    "RedisStatistics",
    "RedisStreamBus",
    "StreamTransport",
    "configure_glide_logging",
]

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("anybus.redis._"):
        _obj.__module__ = __name__
del _name, _obj
