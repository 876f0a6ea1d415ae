"""Typed errors raised by redkit.

Every error redkit raises on purpose derives from :class:`RedkitError`, so an application can
catch them all at once. Errors that describe bad input also derive from the matching builtin
(``ValueError``, ``TypeError``) so code written against the builtins keeps working.
"""

from __future__ import annotations

__all__ = [
    "NO_ANSWER",
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


class RedkitError(Exception):
    """Base class of every error redkit raises on purpose."""


class ConfigurationError(RedkitError, ValueError):
    """A setting is missing or malformed.

    Attributes:
        variable: the environment variable or argument at fault, when there is one.

    """

    def __init__(self, message: str, *, variable: str | None = None) -> None:
        super().__init__(message)
        self.variable = variable


class InvalidArgumentError(RedkitError, ValueError, TypeError):
    """An argument is out of range or of the wrong type; the message says which and why.

    It is both a ``ValueError`` and a ``TypeError``, so code that catches either keeps working.
    """


class InvalidKeyError(RedkitError, ValueError):
    """A key or key part cannot be used: empty, of the wrong type, or otherwise unusable."""


class BackendError(RedkitError):
    """Talking to Redis failed. Subclasses say how."""


class BackendUnavailable(BackendError):
    """Redis could not be reached, or the connection dropped."""


class BackendTimeout(BackendError):
    """Redis did not answer within the configured timeout."""


#: The errors that mean "Redis did not answer", as opposed to Redis answering with an error:
#: what a timeout policy, a fallback or a circuit breaker acts on (``except NO_ANSWER:``).
NO_ANSWER = (BackendTimeout, BackendUnavailable)


class CommandError(BackendError):
    """Redis answered with an error reply (a failed command or script)."""


class UpstreamError(BackendError):
    """The gateway's upstream Redis could not be reached or did not answer in time.

    Raised inside :class:`redkit.gateway.Gateway` by the connection to the Redis it forwards
    to; the gateway answers that request with HTTP 503 and logs the message, whose addresses
    and ports it never sends to the client.
    """


class EmbeddedRedisError(RedkitError):
    """An embedded ``redis-server`` (or cluster) could not be started or stopped."""


class RedisServerNotFound(EmbeddedRedisError):
    """No ``redis-server`` binary was found to start an embedded server."""


class InsecureCookieWarning(UserWarning):
    """A session cookie without the ``Secure`` flag (``secure=False``): for plain-HTTP development.

    To acknowledge the choice (a local demo, a test suite), filter it by its class:
    ``warnings.filterwarnings("ignore", category=InsecureCookieWarning)``.
    """
