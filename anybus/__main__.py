"""``python -m anybus``: the ``anybus`` command.

``python -m anybus demo`` runs the demo of the in-memory bus without the ``cli`` extra (on
argparse); every other command needs it (``pip install 'anybus[cli]'``) and is handed to
:mod:`anybus._cli`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import partial

import anyio

from ._cli import CLI_EXTRA_HINT
from ._demo import run_demo
from ._version import __version__

BACKENDS = ("asyncio", "trio")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m anybus`` with ``argv`` (default: ``sys.argv[1:]``).

    Returns the exit code of the argparse demo; the other commands raise ``SystemExit``.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["demo"]:
        return demo(args)
    try:
        from ._cli import cli
    except ModuleNotFoundError as exc:
        if exc.name not in ("click", "rich"):
            raise
        if not args or args[0] in ("-h", "--help", "--version"):
            return demo(args)
        print(CLI_EXTRA_HINT, file=sys.stderr)
        return 1
    # click exits by itself (SystemExit with the command's exit code).
    cli.main(args=args, prog_name="python -m anybus")
    return 0  # pragma: no cover


def demo(argv: Sequence[str]) -> int:
    """The demo, on argparse: works without the ``cli`` extra."""
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
