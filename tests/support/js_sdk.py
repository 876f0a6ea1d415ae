"""Upstash's JavaScript SDKs (@upstash/ratelimit, @upstash/redis) for tests that run them.

Installed once with npm into the virtual environment (``<venv>/upstash-js``), beside the
Python packages the tests use; a machine without Node.js or npm, or without a way to the
registry, skips those tests and says why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

#: What is installed: the SDKs' current majors (the multi-region key layout is theirs).
PACKAGES = ("@upstash/ratelimit@2", "@upstash/redis@1")
RUNNERS = Path(__file__).resolve().parent / "js"


def upstash_js() -> Path:
    """The directory holding ``node_modules/@upstash/...``; installs it on first use."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("Node.js and npm are not installed: the JavaScript SDK tests need them")
    home = Path(sys.prefix) / "upstash-js"
    if not (home / "node_modules" / "@upstash" / "ratelimit" / "package.json").is_file():
        # Installed aside and moved into place: parallel test processes never see half of it.
        staging = Path(tempfile.mkdtemp(prefix="upstash-js-", dir=sys.prefix))
        done = subprocess.run(
            [npm, "install", "--prefix", str(staging), "--no-audit", "--no-fund", "--silent",
             *PACKAGES],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            pytest.skip(f"npm could not install {' '.join(PACKAGES)}: {done.stderr[-500:]}")
        if home.exists() and not (home / "node_modules").is_dir():
            shutil.rmtree(home, ignore_errors=True)  # what a failed install left
        try:
            os.replace(staging, home)
        except OSError:  # another process installed it first
            shutil.rmtree(staging, ignore_errors=True)
    return home


def run_js(runner: str, env: dict[str, str], *, timeout: float = 60) -> object:
    """Run ``tests/support/js/<runner>`` with ``env`` added; the JSON line it printed."""
    home = upstash_js()
    done = subprocess.run(
        ["node", str(RUNNERS / runner)],
        env={**os.environ, **env, "NODE_PATH": str(home / "node_modules")},
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def installed_version(package: str) -> str:
    """The version of ``package`` (``"@upstash/ratelimit"``) that npm installed."""
    manifest = upstash_js() / "node_modules" / package / "package.json"
    return str(json.loads(manifest.read_text())["version"])
