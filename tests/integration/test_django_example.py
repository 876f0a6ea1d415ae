"""examples/django_project runs as its README says: migrated, served by uvicorn in a process of
its own on a standalone Redis and on a cluster, and driven over HTTP."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from redkit.drivers.embedded import EmbeddedCluster, EmbeddedRedis
from support.probes import closed_port

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "examples" / "django_project"


#: Whether redkit's cache backend is here (it comes from another branch of issue 18).
HAS_CACHE = importlib.util.find_spec("redkit.web.django.cache") is not None


def _env(server: EmbeddedRedis | EmbeddedCluster, db: Path) -> dict[str, str]:
    env = dict(os.environ)
    if not HAS_CACHE:  # Django's own backend meanwhile: sessions and limits read its LOCATION
        env["EXAMPLE_CACHE_BACKEND"] = "django.core.cache.backends.redis.RedisCache"
    env.update(
        REDIS_URL=server.url,
        EXAMPLE_DB=str(db),
        DJANGO_SETTINGS_MODULE="exampleproject.settings",
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(PROJECT)]),
    )
    return env


def _manage(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", *args], cwd=PROJECT, env=env, check=True, timeout=120
    )


@pytest.fixture
def site(server: EmbeddedRedis | EmbeddedCluster, tmp_path: Path) -> Iterator[str]:
    env = _env(server, tmp_path / "db.sqlite3")
    _manage(env, "migrate", "--verbosity", "0")
    create = "from django.contrib.auth.models import User; User.objects.create_user('demo', password='demo-pw')"  # noqa: E501
    _manage(env, "shell", "-c", create)
    port = closed_port()
    command = [sys.executable, "-m", "uvicorn", "exampleproject.asgi:application"]
    command += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    process = subprocess.Popen(command, cwd=PROJECT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                # A view of its own: the probe takes nothing from the limits the test counts.
                if httpx.get(base + "/logout", timeout=1).status_code == 405:  # POST only
                    break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the example did not start") from None
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(30)


def test_the_example_project_serves_sessions_and_rate_limits(site: str) -> None:
    with (
        httpx.Client(base_url=site, timeout=30) as one,
        httpx.Client(base_url=site, timeout=30) as two,
    ):
        assert one.get("/").json() == {"user": None, "visits": 1}
        assert one.get("/").json() == {"user": None, "visits": 2}
        before = one.cookies.get("sessionid")
        assert one.post("/login", data={"username": "demo", "password": "no"}).status_code == 403
        assert one.post("/login", data={"username": "demo", "password": "demo-pw"}).json() == {
            "ok": True
        }
        assert one.cookies.get("sessionid") != before  # rotated on login
        assert one.get("/").json() == {"user": "demo", "visits": 3}

        two.post("/login", data={"username": "demo", "password": "demo-pw"})
        assert two.get("/").json()["user"] == "demo"
        assert one.post("/logout-everywhere").json() == {"ended": 1}
        assert two.get("/").json()["user"] is None
        assert one.get("/").json()["user"] == "demo"

        # The async view degrades past 10 an hour; the middleware's headers are on it.
        replies = [one.get("/search", params={"q": "x"}) for _ in range(11)]
        assert replies[0].json() == {"results": ["x"]}
        assert replies[-1].json() == {"results": [], "note": "slow down"}
        assert "RateLimit-Policy" in replies[0].headers

        # Password guessing for one account name is refused after 5 an hour.
        guesses = [
            one.post("/login", data={"username": "victim", "password": str(n)}).status_code
            for n in range(6)
        ]
        assert guesses == [403] * 5 + [429]


@pytest.mark.skipif(not HAS_CACHE, reason="redkit.web.django.cache (another branch) not merged")
def test_the_example_project_caches(site: str) -> None:
    with httpx.Client(base_url=site, timeout=30) as client:
        assert client.get("/cached").json() == {"answer": 42}
