"""The ``anybus`` command (the ``cli`` extra: ``pip install 'anybus[cli]'``), on click and rich.

Subcommands: ``demo``, ``bench``, ``pub``, ``sub``, ``inspect``, ``workers`` and ``postgres
schema``, one module each; the group and its global options (``--backend``, ``--log-level``,
``--version``) are in ``_group.py``. Exit codes: 0 success, 1 a runtime failure (Redis or Postgres
unreachable, a refused command, a failed measurement, a closed stdout), 2 bad usage, 130 a
Ctrl-C (but for ``sub`` and ``workers``, which end there with 0). Expected
failures print one line saying what to check, never a traceback; a closed stdout (``anybus
sub ... | head``) ends the command quietly.

Importing this package needs neither click nor rich: :func:`main` (the console script, and
``python -m anybus``) says which extra to install when they are missing; ``cli`` (the click
group) is imported on first use.
"""

from __future__ import annotations

import errno
import os
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


def main(argv: list[str] | None = None, *, prog_name: str = "anybus") -> NoReturn:
    """The console script's entry point (and ``python -m anybus``'s); exits with the
    command's status.

    Without click or rich (the ``cli`` extra), prints which extra to install and exits 1.
    """
    try:
        from ._group import cli
    except ModuleNotFoundError as exc:
        if exc.name not in ("click", "rich"):
            raise
        sys.stderr.write(CLI_EXTRA_HINT + "\n")
        raise SystemExit(1) from None
    try:
        cli.main(args=argv, prog_name=prog_name)
    except SystemExit as exc:
        status = exc.code
    else:  # pragma: no cover - click exits by itself
        status = 0
    raise SystemExit(1 if _closed_output() else status)


def _closed_output() -> bool:
    """Flush stdout and stderr; if a reader closed one, point it at /dev/null (so that the
    interpreter's own flush at exit does not complain) and return True.

    This is Python's documented recipe for SIGPIPE (the signal module's notes): a closed pipe
    is not an error worth a traceback, and SIGPIPE's default action is not restored because
    it would also kill the process on a closed socket.
    """
    closed = False
    # The interpreter's own streams: click may have wrapped sys.stdout in a flush-pacifier.
    for stream in (sys.__stdout__, sys.__stderr__):
        if stream is None:
            continue
        try:
            stream.flush()
        except OSError as exc:
            if exc.errno not in (errno.EPIPE, errno.EINVAL):
                raise
            closed = True
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
            os.close(devnull)
    return closed
