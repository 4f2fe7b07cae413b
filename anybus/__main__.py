"""``python -m anybus``: the ``anybus`` command (the ``cli`` extra), as the console script.

Without the extra, it prints the one line saying how to install it (``pip install
'anybus[cli]'``) and exits 1.
"""

from __future__ import annotations

from ._cli import main

if __name__ == "__main__":
    main(prog_name="python -m anybus")
