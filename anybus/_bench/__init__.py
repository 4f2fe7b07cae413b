"""The benchmarks of ``WORKLOADS.md`` (W1-W7): workers, runner, reports; ``anybus bench``.

Every measurement runs in a fresh process that prints one JSON line:

* ``memory`` (anybus ``MemoryBus``, W1-W5), ``raw`` (the raw primitive: anyio memory streams
  or ``asyncio.Queue``, W1/W2) and ``network`` (anybus ``RedisBus`` and ``RedisStreamBus``,
  and the bare glide client, W6/W7) run as ``python -m anybus._bench.<module>``;
* ``_pipecat_memory.py`` (pipecat's ``AsyncQueueBus``, W1-W5) and ``_pipecat_network.py``
  (pipecat's ``RedisBus`` and bare redis-py, W6/W7) run *by path* with a Python that has
  pipecat-ai, usually a virtual environment of its own: they import only the standard
  library, pipecat, and the stdlib-only ``_common.py``, ``_rss.py`` and
  ``_network_common.py`` beside them, never anybus.

``_runner`` plans the cells and runs the workers in rounds; ``_targets`` checks the targets;
``_report`` and ``_network_report`` are the text report of ``harness`` (``benchmarks/run.py``);
``anybus._cli._bench`` is ``anybus bench`` and ``_plot`` its ``--plot``.
"""
