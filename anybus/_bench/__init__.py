"""``anybus bench``'s measurements: anybus's own workloads, each in a fresh worker process.

The workloads (W1-W7) are defined in ``docs/benchmarks.md``. ``memory`` (``MemoryBus``, W1-W5)
and ``network`` (``RedisBus`` and ``RedisStreamBus``, W6/W7) are the workers, run as ``python -m
anybus._bench.<worker>``, each printing one JSON result line; ``_common``, ``_rss`` and
``_network_common`` are what they share (standard library only). ``_cells`` says what a run
measures, ``_runner`` runs the workers in rounds, ``_plot`` is ``anybus bench --plot``.

The references a bus is compared with (pipecat's buses, the raw primitive, the bare Redis
clients) and the targets are not part of the package: they live in the repository's
``benchmarks/`` (``python benchmarks/run.py``), which runs these workers beside its own.
"""
