"""``redkit dashboard``: its flags and environment variables reach the dashboard's server.

They run where the dashboard (``redkit.dashboard.server`` and its extra) is installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from redkit.cli.app import redkit_group
from redkit.drivers.embedded import EmbeddedRedis
from support.probes import closed_port

pytest.importorskip("redkit.dashboard.server", reason="the dashboard (redkit.dashboard) is absent")

SRC = Path(__file__).resolve().parents[2] / "src"


def test_no_auth_off_loopback_is_refused(redis_server: EmbeddedRedis) -> None:
    result = CliRunner().invoke(
        redkit_group, ["dashboard", "--redis", redis_server.url, "--host", "0.0.0.0", "--no-auth"]
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("redkit: error: ")
    assert "loopback" in result.stderr


def test_no_token_is_refused(redis_server: EmbeddedRedis) -> None:
    env = {"REDKIT_DASHBOARD_TOKEN": None, "REDKIT_DASHBOARD_ADMIN_TOKEN": None}
    result = CliRunner().invoke(redkit_group, ["dashboard", "--redis", redis_server.url], env=env)
    assert result.exit_code == 2
    assert "REDKIT_DASHBOARD_TOKEN" in result.stderr


@pytest.mark.parametrize("port", ["0", "70000", "-1"])
def test_a_port_out_of_range_is_one_line(redis_server: EmbeddedRedis, port: str) -> None:
    token = "a-read-token-of-16-chars-or-more"
    args = ["dashboard", "--redis", redis_server.url, "--token", token, "--port", port]
    result = CliRunner().invoke(redkit_group, args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("redkit: error: ")
    assert "1 to 65535" in result.stderr
    assert result.stderr.count("\n") == 1


def test_no_redis_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    result = CliRunner().invoke(redkit_group, ["dashboard", "--no-auth"])
    assert result.exit_code == 2  # a setting missing: a usage error
    assert result.stderr.startswith("redkit: error: redkit dashboard needs a Redis")


def test_the_token_from_the_environment_guards_the_served_pages(
    redis_server: EmbeddedRedis,
) -> None:
    port = closed_port()
    token = "t" * 32
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "REDIS_URL": redis_server.url,
        "REDKIT_DASHBOARD_TOKEN": token,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "redkit", "dashboard", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 30
        with httpx.Client(timeout=5) as client:
            while True:
                try:
                    refused = client.get(base)
                    break
                except httpx.TransportError:
                    assert process.poll() is None, process.stderr.read() if process.stderr else ""
                    assert time.monotonic() < deadline, "the dashboard did not start"
                    time.sleep(0.1)
            assert refused.status_code in (303, 401)  # to the login form, or refused
            allowed = client.get(base, headers={"Authorization": f"Bearer {token}"})
            assert allowed.status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stderr is not None:
            process.stderr.close()
