"""Run Django's cache tests (``BaseCacheTests``) against redkit's Django cache backend.

    PYTHONPATH=src .venv/bin/python tests/django_suite/run_cache_tests.py \
        --django-tests /path/to/django/tests [--topology standalone|cluster|rest]

``--django-tests`` is the ``tests`` directory of Django's source of the installed version
(``pip download django==<version> --no-binary :all: --no-deps``, then unpack). A real
``redis-server`` (or a 3-master cluster; or a server behind redkit's REST gateway, spoken to
as Upstash) is started for the run and stopped after it. The assertions are all Django's;
``tests_redkit.py`` only picks the backend.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from redkit.drivers.embedded import EmbeddedCluster, EmbeddedRedis

HERE = Path(__file__).resolve().parent
SRC = HERE.parents[1] / "src"
REST_TOKEN = "redkit-django-suite-token"


@contextlib.contextmanager
def serve(topology: str) -> Iterator[dict[str, str]]:
    """A real server for the run: the environment that tells ``tests_redkit.py`` where."""
    if topology == "cluster":
        with EmbeddedCluster(3) as cluster:
            yield {"REDKIT_DJANGO_LOCATION": cluster.url}
        return
    with EmbeddedRedis() as server:
        if topology != "rest":
            yield {"REDKIT_DJANGO_LOCATION": server.url}
            return
        sys.path.insert(0, str(HERE.parent))  # tests/support: the gateway served by uvicorn
        from redkit.gateway import Gateway
        from support.web import serve_asgi

        with serve_asgi(Gateway.for_redis(server.url, REST_TOKEN)) as base:
            yield {"REDKIT_DJANGO_LOCATION": base, "REDKIT_DJANGO_TOKEN": REST_TOKEN}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--django-tests", type=Path, required=True)
    parser.add_argument(
        "--topology", choices=("standalone", "cluster", "rest"), default="standalone"
    )
    parser.add_argument("-v", "--verbosity", default="1")
    args = parser.parse_args()
    tests = args.django_tests.resolve()
    if not (tests / "runtests.py").is_file() or not (tests / "cache" / "tests.py").is_file():
        parser.error(f"{tests} is not Django's tests directory (no runtests.py, cache/tests.py)")
    shutil.copy(HERE / "tests_redkit.py", tests / "cache" / "tests_redkit.py")
    with serve(args.topology) as where:
        env = {
            **os.environ,
            **where,
            "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
        }
        command = [sys.executable, "runtests.py", "--settings=test_sqlite", "--parallel=1"]
        command += ["-v", args.verbosity, "cache.tests_redkit"]
        return subprocess.call(command, cwd=tests, env=env)


if __name__ == "__main__":
    raise SystemExit(main())
