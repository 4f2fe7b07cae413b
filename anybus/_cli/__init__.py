"""The ``anybus`` command (the ``cli`` extra: ``pip install 'anybus[cli]'``), on click and rich.

Subcommands: ``demo``, ``bench``, ``pub``, ``sub`` and ``inspect``, one module each; the group
and its global options (``--backend``, ``--log-level``, ``--version``) are in ``_group.py``.
Exit codes: 0 success, 1 a runtime failure (Redis unreachable, a refused command, a failed
measurement), 2 bad usage. Expected failures print one line saying what to check, never a
traceback.

Importing this package needs neither click nor rich: :func:`main` (the console script) says
which extra to install when they are missing; ``cli`` (the click group) is imported on first
use.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from ._group import cli as cli

__all__ = ["CLI_EXTRA_HINT", "cli", "main"]

CLI_EXTRA_HINT = "error: the anybus command needs the cli extra: pip install 'anybus[cli]'"


def __getattr__(name: str) -> Any:
    if name == "cli":
        from ._group import cli

        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> NoReturn:
    """The console script's entry point; exits with the command's status.

    Without click or rich (the ``cli`` extra), prints which extra to install and exits 1.
    """
    try:
        from ._group import cli
    except ModuleNotFoundError as exc:
        if exc.name not in ("click", "rich"):
            raise
        sys.stderr.write(CLI_EXTRA_HINT + "\n")
        raise SystemExit(1) from None
    cli.main(args=argv, prog_name="anybus")
    raise SystemExit(0)  # pragma: no cover - click exits by itself
