"""Django's own cache and session tests, run on redkit's backend and engine.

The assertions are Django's (its ``BaseCacheTests``, ``SessionTestsMixin`` and
``SessionMiddlewareTests``, from the source of the installed Django, fetched once into the
virtual environment); tests/django_suite picks redkit's backend and engine and says which few
tests do not apply, and why. Each run starts its own real server, cluster or gateway.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
SUITE = HERE.parent / "django_suite"
SRC = HERE.parents[1] / "src"
VERSION = importlib.metadata.version("django")


@pytest.fixture(scope="module")
def django_tests() -> Path:
    """The ``tests`` directory of the installed Django's source (downloaded on first use)."""
    home = Path(sys.prefix) / "django-source"
    tests = home / f"django-{VERSION}" / "tests"
    if not (tests / "runtests.py").is_file():
        home.mkdir(exist_ok=True)
        fetched = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q",
             f"django=={VERSION}", "--no-binary", ":all:", "--no-deps", "--no-build-isolation",
             "-d", str(home)],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        archives = sorted(home.glob(f"[Dd]jango-{VERSION}.tar.gz"))
        if not archives:
            pytest.skip(f"Django {VERSION}'s source could not be downloaded: {fetched.stderr}")
        with tarfile.open(archives[0]) as archive:
            if hasattr(tarfile, "data_filter"):  # no links or paths out of home (3.10.12+)
                archive.extractall(home, filter="data")
            else:
                archive.extractall(home)  # PyPI's own sdist of the installed Django
    return tests


def passed(output: str, ran: int) -> None:
    assert re.search(rf"^Ran {ran} tests? ", output, re.MULTILINE), output[-3000:]
    assert re.search(r"^OK\b", output, re.MULTILINE), output[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("topology", ["standalone", "cluster", "rest"])
def test_djangos_cache_tests_pass_on_redkits_backend(django_tests: Path, topology: str) -> None:
    run = subprocess.run(
        [sys.executable, str(SUITE / "run_cache_tests.py"), "--django-tests", str(django_tests),
         "--topology", topology],
        capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    passed(run.stderr, 55)  # BaseCacheTests; 3 skip themselves (no culling, as Django's Redis)


@pytest.mark.slow
@pytest.mark.parametrize("location", ["embedded://", "embedded+cluster://"])
def test_djangos_session_tests_pass_on_redkits_engine(django_tests: Path, location: str) -> None:
    shutil.copy(SUITE / "tests_redkit_sessions.py", django_tests / "sessions_tests")
    run = subprocess.run(
        [sys.executable, "runtests.py", "--settings=test_sqlite", "--parallel=1",
         "sessions_tests.tests_redkit_sessions"],
        cwd=django_tests, capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "PYTHONPATH": str(SRC), "REDKIT_DJANGO_LOCATION": location},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    passed(run.stderr, 89)
