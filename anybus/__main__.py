"""``python -m anybus``: the demo of the in-memory bus, on asyncio, trio, or both."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import partial

import anyio

from ._demo import run_demo
from ._version import __version__

BACKENDS = ("asyncio", "trio")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m anybus", description="anybus, a pub/sub worker bus for asyncio and trio"
    )
    parser.add_argument("--version", action="version", version=f"anybus {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run a runner and two workers on the in-memory bus")
    demo.add_argument(
        "--backend",
        choices=[*BACKENDS, "both"],
        default="both",
        help="event loop to run on (default: both, one after the other)",
    )
    args = parser.parse_args(argv)

    backends = BACKENDS if args.backend == "both" else (args.backend,)
    for index, backend in enumerate(backends):
        if index:
            print()
        try:
            anyio.run(partial(run_demo, sys.stdout, backend=backend), backend=backend)
        except ModuleNotFoundError as exc:
            if exc.name != backend:
                raise
            print(f"error: {backend} is not installed: pip install 'anybus[{backend}]'")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
