"""The errors redkit raises: see :mod:`redkit.core.errors`."""

from __future__ import annotations

from redkit.core.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    CommandError,
    ConfigurationError,
    EmbeddedRedisError,
    InsecureCookieWarning,
    InvalidArgumentError,
    InvalidKeyError,
    RedisServerNotFound,
    RedkitError,
    UpstreamError,
)

__all__ = [
    "BackendError",
    "BackendTimeout",
    "BackendUnavailable",
    "CommandError",
    "ConfigurationError",
    "EmbeddedRedisError",
    "InsecureCookieWarning",
    "InvalidArgumentError",
    "InvalidKeyError",
    "RedisServerNotFound",
    "RedkitError",
    "UpstreamError",
]
