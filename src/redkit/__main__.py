"""``python -m redkit``: the same as the ``redkit`` command."""

from __future__ import annotations

import sys

from redkit.cli import main

sys.exit(main())
