"""A concurrency limiter: at most ``max_in_flight`` requests in flight per identifier.

Each holder takes a *lease*: a random token in the identifier's sorted set, scored with the
moment its lease ends. A holder that crashes never releases, so its slot frees itself when
the lease ends; a holder that works longer renews it with :meth:`Concurrency.extend`. Every
operation is one atomic script call, written once as a flow (:class:`ConcurrencyFlows`) and run
blocking by :class:`Concurrency` or in asyncio by :class:`AsyncConcurrency`.

Laid out as the rate limiter is: the configuration in :mod:`~redkit.ratelimit.concurrency.limit`,
the answer in :mod:`~redkit.ratelimit.concurrency.lease`, the flows in
:mod:`~redkit.ratelimit.concurrency.flows`, the facades in
:mod:`~redkit.ratelimit.concurrency.facade`. Every name is importable from here.
"""

from __future__ import annotations

from redkit.ratelimit.concurrency.facade import AcquireContext, AsyncConcurrency, Concurrency
from redkit.ratelimit.concurrency.flows import ConcurrencyFlows
from redkit.ratelimit.concurrency.lease import Lease
from redkit.ratelimit.concurrency.limit import ConcurrencyLimit

__all__ = [
    "AcquireContext",
    "AsyncConcurrency",
    "Concurrency",
    "ConcurrencyFlows",
    "ConcurrencyLimit",
    "Lease",
]
