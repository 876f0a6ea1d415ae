"""``tasks.py``, the README's two commands: what a user sees when they stop one with Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# A child that, like ``redkit demo``, stops cleanly on Ctrl-C and exits 0.
CHILD = textwrap.dedent(
    """
    import signal, sys, time
    signal.signal(signal.SIGINT, lambda *_: (print("child stopped", flush=True), sys.exit(0)))
    print("child ready", flush=True)
    while True:
        time.sleep(0.1)
    """
)
# The parent is tasks.run, as ``tasks.py demo`` calls it.
PARENT = "import sys, tasks; sys.exit(tasks.run(sys.executable, '-c', sys.argv[1], check=False))"


def test_ctrl_c_gives_the_childs_exit_status_and_no_traceback() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", PARENT, CHILD],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's Ctrl-C reaches it
    )
    try:
        assert process.stdout is not None
        # tasks.run echoes the command first (the child's code spans several lines).
        while process.stdout.readline() not in ("child ready\n", ""):
            pass
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert "child stopped" in out
    assert "Traceback" not in err, err
    assert process.returncode == 0
