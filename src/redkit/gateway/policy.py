"""Which commands the gateway runs: deny list, blocking commands, read-only tokens.

Four kinds of refusal, each a plain ``ERR``/``NOPERM`` message answered with HTTP 400:

- *unsupported*: commands that change a pooled connection's state (``SELECT``, ``AUTH``,
  ``CLIENT``...), transactions outside ``/multi-exec``, and streams of replies (``SUBSCRIBE``,
  ``MONITOR``). No option allows them: over a shared pool they would leak between requests.
  ``SUBSCRIBE`` and ``PSUBSCRIBE`` have routes of their own, ``/subscribe/<channel>`` and
  ``/psubscribe/<pattern>`` (:mod:`redkit.gateway.pubsub`), each on a connection of its own.
- *blocking*: ``BLPOP`` and the other commands that wait; ``XREAD``/``XREADGROUP`` with
  ``BLOCK``; ``WAIT``. A REST request holds a pooled connection; Upstash refuses them too.
- *denied*: administration (``FLUSHALL``, ``CONFIG``, ``SHUTDOWN``, ``CLUSTER``...), refused
  unless the gateway is started with ``allow=`` (``--allow-command``) naming them. The list
  covers commands sent directly: a script (``EVAL``) can run any of them, as on Redis, so a
  read-write token can do whatever a script can.
- *read-only*: a read-only token runs only the commands in :data:`READ_ONLY`; ``SCAN`` and
  ``KEYS`` are not among them, as on Upstash.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from redkit.core.errors import InvalidArgumentError
from redkit.gateway.protocol import command_name

__all__ = ["BLOCKING", "DENIED", "READ_ONLY", "UNSUPPORTED", "CommandPolicy"]

#: Never run: they change the state of a pooled connection, or answer with a stream.
UNSUPPORTED = frozenset(
    {
        "AUTH", "HELLO", "SELECT", "QUIT", "RESET", "READONLY", "READWRITE", "ASKING",
        "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH",
        "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "SUNSUBSCRIBE",
        "MONITOR", "SYNC", "PSYNC", "REPLCONF",
    }
)  # fmt: skip

#: Commands that wait for data or for replicas.
BLOCKING = frozenset(
    {
        "BLPOP", "BRPOP", "BRPOPLPUSH", "BLMOVE", "BLMPOP",
        "BZPOPMIN", "BZPOPMAX", "BZMPOP", "WAIT", "WAITAOF",
    }
)  # fmt: skip

#: Administration: refused unless allowed by name.
DENIED = frozenset(
    {
        "FLUSHALL", "FLUSHDB", "CONFIG", "SHUTDOWN", "DEBUG", "MODULE", "SLAVEOF",
        "REPLICAOF", "CLUSTER", "ACL", "SAVE", "BGSAVE", "BGREWRITEAOF", "SWAPDB", "MIGRATE",
        "FAILOVER", "CLIENT", "LATENCY", "SLOWLOG", "RESTORE-ASKING", "PFDEBUG", "PFSELFTEST",
        "MOVE",
    }
)  # fmt: skip
#: Subcommands refused unless their command is allowed by name: Upstash serves FUNCTION, but
#: FLUSH drops every library, as FLUSHALL drops every key.
_DENIED_SUBCOMMANDS = {"FUNCTION": frozenset({b"FLUSH"})}

#: Subcommands that change the state of the connection they run on, whatever is allowed: on a
#: pooled connection they would reach the next request, whoever sends it.
_CONNECTION_STATE = {
    "SCRIPT": frozenset({b"DEBUG"}),
    "CLIENT": frozenset({b"REPLY", b"TRACKING", b"CACHING", b"SETNAME", b"NO-EVICT", b"NO-TOUCH"}),
}
#: Subcommands a read-only token may run of commands that can also change things.
_READ_ONLY_SUBCOMMANDS = {
    "MEMORY": frozenset({b"USAGE", b"STATS", b"DOCTOR", b"MALLOC-STATS", b"HELP"}),
    "OBJECT": frozenset({b"ENCODING", b"FREQ", b"IDLETIME", b"REFCOUNT", b"HELP"}),
    "FUNCTION": frozenset({b"LIST"}),
}

#: What a read-only token may run (SCAN and KEYS excluded, as on Upstash).
READ_ONLY = frozenset(
    {
        "PING", "ECHO", "TIME", "DBSIZE", "RANDOMKEY", "INFO", "COMMAND", "LOLWUT",
        "GET", "MGET", "STRLEN", "GETRANGE", "SUBSTR", "LCS", "EXISTS", "TYPE", "TOUCH",
        "TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME", "DUMP", "OBJECT", "MEMORY",
        "HGET", "HMGET", "HGETALL", "HKEYS", "HVALS", "HLEN", "HEXISTS", "HSTRLEN",
        "HRANDFIELD", "HSCAN", "HTTL", "HPTTL", "HEXPIRETIME", "HPEXPIRETIME",
        "LRANGE", "LINDEX", "LLEN", "LPOS",
        "SMEMBERS", "SISMEMBER", "SMISMEMBER", "SCARD", "SRANDMEMBER", "SINTER", "SINTERCARD",
        "SUNION", "SDIFF", "SSCAN",
        "ZRANGE", "ZRANGEBYSCORE", "ZRANGEBYLEX", "ZREVRANGE", "ZREVRANGEBYSCORE",
        "ZREVRANGEBYLEX", "ZSCORE", "ZMSCORE", "ZCARD", "ZCOUNT", "ZLEXCOUNT", "ZRANK",
        "ZREVRANK", "ZRANDMEMBER", "ZINTER", "ZUNION", "ZDIFF", "ZINTERCARD", "ZSCAN",
        "XRANGE", "XREVRANGE", "XLEN", "XINFO", "XPENDING", "XREAD",
        "GEOPOS", "GEODIST", "GEOHASH", "GEOSEARCH", "GEORADIUS_RO", "GEORADIUSBYMEMBER_RO",
        "BITCOUNT", "BITPOS", "GETBIT", "BITFIELD_RO", "PFCOUNT",
        "EVAL_RO", "EVALSHA_RO", "FCALL_RO", "FUNCTION",
        "JSON.GET", "JSON.MGET", "JSON.TYPE", "JSON.STRLEN", "JSON.ARRLEN", "JSON.OBJKEYS",
        "JSON.OBJLEN", "JSON.ARRINDEX",
    }
)  # fmt: skip


def _waits(name: str, command: Sequence[bytes]) -> bool:
    if name in BLOCKING:
        return True
    if name in ("XREAD", "XREADGROUP"):
        # BLOCK is an option before STREAMS; after STREAMS come key names, which may be
        # spelled "block" too.
        for argument in command[1:]:
            word = argument.upper()
            if word == b"STREAMS":
                return False
            if word == b"BLOCK":
                return True
    return False


class CommandPolicy:
    """The gateway's command rules; ``allow`` names denied commands to run anyway."""

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self.allow = frozenset(name.strip().upper() for name in allow if name.strip())
        cannot = sorted(self.allow & (UNSUPPORTED | BLOCKING))
        if cannot:
            raise InvalidArgumentError(
                f"cannot allow {', '.join(cannot)}: blocking commands and commands that change "
                "a pooled connection's state never run through the gateway"
            )

    def refusal(self, command: Sequence[bytes], *, read_only: bool) -> str | None:
        """Why ``command`` may not run (the error message), or ``None`` when it may."""
        name = command_name(command)
        if name in UNSUPPORTED:
            if name in ("MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH"):
                return f"ERR {name} is not supported: send a transaction to /multi-exec"
            if name in ("SUBSCRIBE", "PSUBSCRIBE"):
                route = name.lower()
                return (
                    f"ERR {name} is not supported as a command: POST /{route}/<channel> "
                    "with Accept: text/event-stream streams the messages"
                )
            return f"ERR {name} is not supported over REST"
        sub = command[1].upper() if len(command) > 1 else b""
        if sub in _CONNECTION_STATE.get(name, ()):
            return f"ERR {name} {sub.decode('latin-1')} is not supported over REST"
        if _waits(name, command):
            return f"ERR blocking command {name} is not supported over REST"
        if name == "COPY" and any(arg.upper() == b"DB" for arg in command[3:]):
            return "ERR COPY to another database is not allowed by this gateway"
        denied = name in DENIED or sub in _DENIED_SUBCOMMANDS.get(name, ())
        if denied and name not in self.allow:
            return (
                f"ERR command {name} is not allowed by this gateway "
                f"(start it with --allow-command {name} to allow it)"
            )
        if read_only and (
            name not in READ_ONLY or sub not in _READ_ONLY_SUBCOMMANDS.get(name, {sub})
        ):
            return f"NOPERM this token is read-only: {name} is not allowed"
        return None
