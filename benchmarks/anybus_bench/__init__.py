"""The benchmark harness of the anybus repository: anybus against its references.

Not part of the anybus package. ``benchmarks/run.py`` runs :func:`harness.main`; it measures
anybus with the package's own workers (``anybus._bench``, what ``anybus bench`` runs) beside
the references of this directory: pipecat's buses, the raw primitive and the bare Redis
clients (``references.py``), and checks the targets of ``docs/benchmarks.md``.
"""
