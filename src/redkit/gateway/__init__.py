"""An Upstash-compatible REST gateway in front of any Redis, standalone or cluster.

The official Upstash SDKs (``upstash-redis``, ``upstash-ratelimit``, ``@upstash/redis``...)
speak HTTP and JSON; :class:`Gateway` answers them from a Redis of your own::

    from redkit.gateway import Gateway

    app = Gateway.for_redis("redis://localhost:6379", token="s3cret")
    # uvicorn.run(app) -- or `redkit gateway --redis redis://localhost:6379 --token s3cret`

See ``docs/gateway.md`` for what is supported and refused.
"""

from __future__ import annotations

from redkit.gateway.app import Gateway
from redkit.gateway.auth import TokenRule
from redkit.gateway.protocol import MAX_BODY

__all__ = ["MAX_BODY", "Gateway", "TokenRule"]
