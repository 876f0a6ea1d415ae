"""Rate-limit response headers from a decision: the IETF draft's, the legacy ones, Retry-After.

- ``RateLimit-Policy`` and ``RateLimit``, in the syntax of
  draft-ietf-httpapi-ratelimit-headers-10 (Structured Field lists):
  ``RateLimit-Policy: "default";q=10;w=60`` (quota ``q`` per window of ``w`` seconds) and
  ``RateLimit: "default";r=7;t=42`` (``r`` left, more in ``t`` seconds; a delay, not a date).
- ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset``, where Reset is
  the Unix time in seconds (rounded up) when the window ends or the next token comes, as
  GitHub and Flask-Limiter send it.
- ``Retry-After`` on a refusal: whole seconds, rounded up, at least 1 (RFC 9110 allows no
  fraction, and 0 would invite an immediate retry that is refused again).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from redkit.ratelimit.limiters import Limiter
from redkit.ratelimit.multi import MultiLimit
from redkit.ratelimit.result import RatelimitResult

__all__ = [
    "Policy",
    "policies_for",
    "ratelimit_headers",
    "retry_after_seconds",
    "sf_string",
]


@dataclass(frozen=True)
class Policy:
    """One quota policy, as ``RateLimit-Policy`` announces it.

    Attributes:
        name: the policy's name; ``RateLimit`` refers to it.
        quota: requests (or tokens) the window admits.
        window: the window in whole seconds; 0 when the algorithm has none to tell.

    """

    name: str
    quota: int
    window: int

    def header_item(self) -> str:
        """This policy as one item of the ``RateLimit-Policy`` list."""
        item = f"{sf_string(self.name)};q={self.quota}"
        return f"{item};w={self.window}" if self.window > 0 else item


def _seconds(ms: float) -> int:
    return max(1, math.ceil(ms / 1000))


def policies_for(limiter: Limiter, name: str = "default") -> tuple[Policy, ...]:
    """The policies ``limiter`` enforces, named ``name`` (``name-0``, ``name-1``... for several).

    A token bucket's window is the time an emptied bucket takes to fill up again; GCRA's is
    the time a full burst takes to come back.
    """
    if isinstance(limiter, MultiLimit):
        return tuple(_policy(sub, f"{name}-{index}") for index, sub in enumerate(limiter.limiters))
    return (_policy(limiter, name),)


def _policy(limiter: Limiter, name: str) -> Policy:
    window = limiter.policy_window_ms
    return Policy(name, limiter.limit, _seconds(window) if window > 0 else 0)


def retry_after_seconds(result: RatelimitResult) -> int:
    """The ``Retry-After`` of a refusal: ``result.retry_after`` rounded up, at least 1."""
    return max(1, math.ceil(result.retry_after))


def ratelimit_headers(
    result: RatelimitResult,
    policies: tuple[Policy, ...],
    *,
    ietf: bool = True,
    legacy: bool = True,
    now_ms: float | None = None,
) -> list[tuple[str, str]]:
    """The headers that tell a client about ``result``.

    Args:
        result: the decision.
        policies: the limiter's policies (:func:`policies_for`); with several, the result's
            ``refused_by`` says which one the numbers are about.
        ietf: send ``RateLimit-Policy`` and ``RateLimit``.
        legacy: send ``X-RateLimit-Limit``, ``-Remaining`` and ``-Reset`` (epoch seconds).
        now_ms: the current Unix time in ms (this machine's clock by default).

    Returns:
        ``(name, value)`` pairs; on a refusal ``Retry-After`` comes last, whatever the
        switches say. When Redis did not answer (``reason="timeout"``), nothing is known of
        what is left: only the static policy (and ``X-RateLimit-Limit``) is sent.

    """
    now = time.time() * 1000 if now_ms is None else now_ms
    index = result.refused_by if result.refused_by is not None else 0
    policy = policies[min(index, len(policies) - 1)]
    known = result.reason != "timeout"
    retry = retry_after_seconds(result) if not result.success else 0
    # Seconds until more quota: the retry delay of a refusal, else the time to ``reset``.
    if retry:
        delay: int | None = retry
    elif result.reset > 0:
        delay = max(0, math.ceil((result.reset - now) / 1000))
    else:
        delay = None
    headers: list[tuple[str, str]] = []
    if ietf:
        headers.append(("RateLimit-Policy", ", ".join(p.header_item() for p in policies)))
        if known:
            item = f"{sf_string(policy.name)};r={max(0, result.remaining)}"
            headers.append(("RateLimit", f"{item};t={delay}" if delay is not None else item))
    if legacy:
        headers.append(("X-RateLimit-Limit", str(result.limit)))
        if known:
            headers.append(("X-RateLimit-Remaining", str(max(0, result.remaining))))
            if result.reset > 0:
                reset_s = math.ceil(result.reset / 1000)
            else:
                reset_s = math.ceil(now / 1000) + (delay or 0)
            headers.append(("X-RateLimit-Reset", str(reset_s)))
    if not result.success:
        headers.append(("Retry-After", str(retry)))
    return headers


def sf_string(text: str) -> str:
    """``text`` as a Structured Field string (RFC 9651): quoted, printable ASCII only."""
    safe = "".join(ch if " " <= ch <= "~" else "?" for ch in text)
    return '"' + safe.replace("\\", "\\\\").replace('"', '\\"') + '"'
