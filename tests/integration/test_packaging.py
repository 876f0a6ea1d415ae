"""The package as another project installs it: the sdist and wheel build, pass ``twine check``,
and the wheel, installed into a clean virtual environment, runs (its Lua scripts included)."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

from redkit.drivers.embedded import find_redis_server

ROOT = Path(__file__).resolve().parents[2]

# What a user's project does first with redkit: a limit and a cached value on embedded://.
USE_IT = """
import redkit, redkit.cache
redis = redkit.connect("embedded://")
limiter = redkit.Ratelimit(redis, redkit.SlidingWindow(2, "1 m"))
assert [bool(limiter.limit("u")) for _ in range(3)] == [True, True, False]
cache = redkit.cache.Cache(redis, namespace="n")
assert cache.get_or_set("k", lambda: {"v": 1}) == {"v": 1} == cache.get("k")
from redkit.advise.sample import sample_log
assert sample_log().read_text().count("\\n") == 3000, sample_log()
print(redkit.__file__)
"""


@pytest.mark.slow
def test_the_wheel_installs_into_a_clean_venv_and_runs(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, ROOT],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    wheel = next(dist.glob("redkit-*.whl"))
    sdist = next(dist.glob("redkit-*.tar.gz"))
    checked = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", wheel, sdist],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    names = zipfile.ZipFile(wheel).namelist()
    assert "redkit/py.typed" in names
    assert any(name.endswith(".lua") for name in names)
    # The sample log that `redkit advise cache --sample` reads.
    assert "redkit/advise/data/sample-access.log" in names
    with tarfile.open(sdist) as archive:
        assert any(
            n.endswith("src/redkit/advise/data/sample-access.log") for n in archive.getnames()
        )

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    # Not the caller's PYTHONPATH: with PYTHONPATH=src the build's src/redkit.egg-info reads as
    # redkit installed already, and pip skips the wheel.
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel],
        check=True, capture_output=True, timeout=300, env=clean,
    )  # fmt: skip
    used = subprocess.run(
        [python, "-c", USE_IT],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
        env={"REDKIT_REDIS_SERVER": find_redis_server(), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert used.returncode == 0, used.stderr
    assert used.stdout.strip().startswith(str(env_dir))  # the installed copy, not the source
