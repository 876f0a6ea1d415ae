"""``python -m redkit.ratelimit.scripts [NAME]``: print the script sent for ``NAME``.

Without ``NAME``, list the names. The source is written as it is sent, byte for byte, with
nothing added (no final newline of its own).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from redkit.core.errors import InvalidArgumentError
from redkit.ratelimit.scripts import ALGORITHMS, SCRIPTS, script_named


def main(argv: Sequence[str] | None = None) -> int:
    """Print one script's source (exit 0), the list of names, or a usage error (exit 2)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        names = [*SCRIPTS, *(f"guarded:{name}" for name in ALGORITHMS)]
        names.append("multi:<algorithm>+<algorithm>...  (e.g. multi:sliding_window+fixed_window)")
        sys.stdout.write("\n".join(names) + "\n")
        return 0
    if len(args) > 1:
        sys.stderr.write("usage: python -m redkit.ratelimit.scripts [NAME]\n")
        return 2
    try:
        source = script_named(args[0]).source
    except InvalidArgumentError as error:
        sys.stderr.write(f"{error}\n")
        return 2
    # Bytes, so that the platform's newline translation cannot change what is printed.
    sys.stdout.buffer.write(source.encode("utf-8"))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
