"""What ``get_or_set`` sends, counted by the server itself (``INFO commandstats``).

Every backend of the conftest: standalone and cluster (summed over the masters), sync and
async, and the REST gateway in front of the standalone server.
"""

from __future__ import annotations

from typing import Any

import pytest

from redkit.cache import AsyncCache, Cache
from support.backends import BackendCase, Blocking


def warm_cache(backend: BackendCase, **options: Any) -> Any:
    """A cache that has read its namespace generation (and trusts it for the whole test), and
    whose scripts the server knows: what is counted after is what every other call sends."""
    facade = AsyncCache if backend.is_async else Cache
    cache = Blocking(facade(backend.conn, namespace="rt", **options), backend)
    cache.target._flows.generation_check_s = 3600.0  # however slow the machine
    assert cache.get_or_set("warm-up", lambda: "w") == "w"
    return cache


def test_a_cold_miss_reads_the_entry_once(backend: BackendCase) -> None:
    cache = warm_cache(backend, lease=None)
    backend.reset_command_stats()
    assert cache.get_or_set("k", lambda: "v") == "v"
    # One GET of the entry, then the SET of the loaded value: nothing is read twice.
    assert backend.command_calls("get") == 1
    assert backend.command_calls("set") == 1
    assert (cache.stats.misses, cache.stats.loads) == (2, 2)  # with the warm-up's


def test_a_cold_miss_under_the_lease_reads_once_before_and_once_after_winning_it(
    backend: BackendCase,
) -> None:
    cache = warm_cache(backend)
    backend.reset_command_stats()
    assert cache.get_or_set("k", lambda: "v") == "v"
    assert backend.command_calls("evalsha", "eval") == 3  # take, store under, release the lease
    # The server counts the GETs its scripts run too: each of the three reads the lease once.
    # The client's own: the read that found the miss, and one after the lease was won, since
    # another process may have stored the value between the two (see test_cache_stampede).
    assert backend.command_calls("get") == 3 + 2
    assert cache.stats.leases_won == 2  # with the warm-up's


@pytest.mark.parametrize("lease", [None, "5 s"], ids=["no-lease", "lease"])
def test_a_hit_is_one_get(backend: BackendCase, lease: str | None) -> None:
    cache = warm_cache(backend, lease=lease, early_refresh=None)
    assert cache.get_or_set("k", lambda: "v") == "v"
    backend.reset_command_stats()
    assert cache.get_or_set("k", lambda: "other") == "v"
    assert backend.command_calls("get") == 1
    assert backend.command_calls("set", "evalsha", "eval") == 0
