"""``redkit demo`` as a process: started, its URL read from what it prints, stopped by Ctrl-C."""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass


@dataclass
class Demo:
    """A running ``redkit demo``: its first line, its URL, and (once stopped) what it said."""

    first_line: str
    url: str
    out: str = ""
    err: str = ""
    returncode: int | None = None


@contextlib.contextmanager
def running_demo(env: Mapping[str, str]) -> Iterator[Demo]:
    """Run ``python -m redkit demo --port 0`` with ``env``; SIGINT it when the block ends."""
    process = subprocess.Popen(
        [sys.executable, "-m", "redkit", "demo", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env),
    )
    demo = Demo("", "")
    try:
        assert process.stdout is not None
        demo.first_line = process.stdout.readline()
        demo.url = re.search(r"(http://\S+)/", process.stdout.readline()).group(1)  # type: ignore[union-attr]
        yield demo
    finally:
        process.send_signal(signal.SIGINT)
        demo.out, demo.err = process.communicate(timeout=60)
        demo.returncode = process.returncode
