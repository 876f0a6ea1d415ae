"""``redkit ratelimit``, ``redkit cache`` and ``redkit sessions``: the features' own APIs.

Each command builds the feature's facade on the given prefix or namespace and calls the
method a user would (``get_usage``, ``reset``, ``deny``, ``bump_version``,
``revoke_user_sessions``...), so the command does exactly what the library does. The commands
that change something print what they did.
"""

from __future__ import annotations

import datetime
from typing import Any

import click

from redkit.advise._units import format_count
from redkit.cache.facade import Cache
from redkit.cli.common import as_json, console, json_option, open_redis, redis_option, table, text
from redkit.ratelimit.facade import Ratelimit
from redkit.ratelimit.flows import DEFAULT_PREFIX
from redkit.ratelimit.limiters import (
    GCRA,
    FixedWindow,
    Limiter,
    SlidingLog,
    SlidingWindow,
    TokenBucket,
)
from redkit.ratelimit.rate_strings import parse_rate
from redkit.sessions.flows import user_id_from_text
from redkit.sessions.store import SessionStore

__all__ = ["cache", "ratelimit", "sessions"]

_ALGORITHMS = ("fixed-window", "sliding-window", "sliding-log", "token-bucket", "gcra")

_prefix_option = click.option(
    "--prefix",
    default=DEFAULT_PREFIX,
    show_default=True,
    help="the limiter's prefix (Ratelimit(prefix=...))",
)


def _limiter(algorithm: str, rate: str) -> Limiter:
    """The limiter whose keys ``reset`` and ``usage --identifier`` address."""
    tokens, window = parse_rate(rate)
    if algorithm == "fixed-window":
        return FixedWindow(tokens, window)
    if algorithm == "sliding-window":
        return SlidingWindow(tokens, window)
    if algorithm == "sliding-log":
        return SlidingLog(tokens, window)
    if algorithm == "gcra":
        return GCRA(tokens, window, tokens)
    return TokenBucket(tokens, window, tokens)


def _ratelimiter(conn: object, prefix: str, algorithm: str, rate: str) -> Ratelimit:
    return Ratelimit(
        conn, _limiter(algorithm, rate), prefix=prefix, analytics=True, ephemeral_cache=False
    )


_limiter_options = [
    click.option(
        "--algorithm",
        type=click.Choice(_ALGORITHMS),
        default="sliding-window",
        show_default=True,
        help="the limiter's algorithm",
    ),
    click.option(
        "--rate",
        default="10/10 seconds",
        show_default=True,
        help="the limiter's rate, as Ratelimit was given it (its window names the keys)",
    ),
]


def _with_limiter(fn: Any) -> Any:
    for option in reversed(_limiter_options):
        fn = option(fn)
    return fn


@click.group(short_help="a limiter's usage; reset, deny and allow identifiers")
def ratelimit() -> None:
    """Read a rate limiter's analytics, reset an identifier, edit the deny list."""


def _hour(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:00 UTC")


@ratelimit.command(
    "usage",
    help="Allowed, blocked and denied requests per identifier and per hour (the limiter's "
    "analytics, Ratelimit(analytics=True); @upstash/ratelimit's layout), the deny list, and "
    "with --identifier what each identifier has left now.",
)
@redis_option
@json_option
@_prefix_option
@_with_limiter
@click.option("--hours", type=int, default=24, show_default=True, help="hours to read")
@click.option("--identifier", multiple=True, help="show what it has left (repeat for more)")
def ratelimit_usage(
    redis_url: str | None,
    as_json_output: bool,
    prefix: str,
    algorithm: str,
    rate: str,
    hours: int,
    identifier: tuple[str, ...],
) -> int:
    """``redkit ratelimit usage``."""
    with open_redis(redis_url) as conn:
        limiter = _ratelimiter(conn, prefix, algorithm, rate)
        try:
            usage = limiter.get_usage(hours)
            per_hour = limiter.get_usage_over_time(hours)
            denied = sorted(limiter.denied())
            remaining = {ident: limiter.get_remaining(ident) for ident in identifier}
        finally:
            limiter.close()
    if as_json_output:
        as_json(
            {
                "prefix": prefix,
                "hours": hours,
                "identifiers": dict(sorted(usage.items())),
                "per_hour": per_hour,
                "deny_list": denied,
                "remaining": {
                    ident: {"remaining": left.remaining, "reset": left.reset, "limit": left.limit}
                    for ident, left in remaining.items()
                },
            }
        )
        return 0
    out = console()
    grid = table(f"Usage of {prefix}, last {hours} h", "identifier", "allowed", "blocked", "denied")
    for ident, counts in sorted(usage.items(), key=lambda item: -sum(item[1].values())):
        grid.add_row(
            text(ident),
            *(format_count(counts[outcome]) for outcome in ("allowed", "blocked", "denied")),
        )
    out.print(grid)
    hourly = table("Per hour", "hour", "allowed", "blocked", "denied")
    for row in per_hour:
        if row["allowed"] or row["blocked"] or row["denied"]:
            hourly.add_row(
                _hour(row["time"]),
                *(format_count(row[outcome]) for outcome in ("allowed", "blocked", "denied")),
            )
    out.print(hourly)
    out.print(text(f"deny list: {', '.join(denied) if denied else '(empty)'}"))
    for ident, left in remaining.items():
        line = text(ident, "bold")
        line.append(f": {left.remaining} of {left.limit} left")
        out.print(line)
    return 0


@ratelimit.command(
    "reset",
    help="Delete an identifier's state (Ratelimit.reset): it starts again with a full limit. "
    "Give the limiter's --algorithm and --rate, which name its keys.",
)
@click.argument("identifiers", nargs=-1, required=True, metavar="IDENTIFIER...")
@redis_option
@_prefix_option
@_with_limiter
def ratelimit_reset(
    identifiers: tuple[str, ...], redis_url: str | None, prefix: str, algorithm: str, rate: str
) -> int:
    """``redkit ratelimit reset IDENTIFIER...``."""
    with open_redis(redis_url) as conn:
        limiter = _ratelimiter(conn, prefix, algorithm, rate)
        try:
            for ident in identifiers:
                deleted = limiter.reset(ident)
                line = text(f"reset {ident}")
                line.append(f" under {prefix}: {deleted} keys deleted")
                console().print(line)
        finally:
            limiter.close()
    return 0


def _deny_list_command(name: str, help_text: str) -> Any:
    @ratelimit.command(name, help=help_text)
    @click.argument("values", nargs=-1, required=True, metavar="VALUE...")
    @redis_option
    @_prefix_option
    def command(values: tuple[str, ...], redis_url: str | None, prefix: str) -> int:
        with open_redis(redis_url) as conn:
            limiter = Ratelimit(conn, FixedWindow(1, "1 s"), prefix=prefix, ephemeral_cache=False)
            try:
                if name == "deny":
                    changed = limiter.deny(*values)
                    what = f"added {changed} of {len(values)} to the deny list of {prefix}"
                else:
                    changed = limiter.allow(*values)
                    what = f"removed {changed} of {len(values)} from the deny list of {prefix}"
            finally:
                limiter.close()
        console().print(text(f"{what}: {', '.join(values)}"))
        # The list is consulted only by limiters that ask for it: say so, or a user believes
        # the identifiers are refused everywhere.
        console().print(text("(limiters read it when made with enable_protection=True)"))
        return 0

    command.__doc__ = f"``redkit ratelimit {name} VALUE...``."
    return command


ratelimit_deny = _deny_list_command(
    "deny",
    "Put identifiers, IPs, user agents or countries on the deny list (Ratelimit.deny; "
    "limiters with enable_protection=True refuse them).",
)
ratelimit_allow = _deny_list_command("allow", "Take values off the deny list (Ratelimit.allow).")


@click.group(short_help="invalidate a cache namespace or tags")
def cache() -> None:
    """Invalidate a cache: a whole namespace (a version bump) or the entries of tags."""


@cache.command(
    "bump",
    help="Leave every entry of NAMESPACE behind at once (Cache.bump_version): O(1), old "
    "entries expire on their own. Other processes see it within a second.",
)
@click.argument("namespace")
@redis_option
@click.option("--version", "version", help="the Cache's version=, if it was given one")
def cache_bump(namespace: str, redis_url: str | None, version: str | None) -> int:
    """``redkit cache bump NAMESPACE``."""
    with open_redis(redis_url) as conn:
        store = Cache(conn, namespace=namespace, version=version)
        try:
            generation = store.bump_version()
        finally:
            store.close()
    console().print(text(f"bumped {namespace} to generation {generation}"))
    return 0


@cache.command(
    "invalidate-tag",
    help="Invalidate every entry of NAMESPACE stamped with one of TAGS (Cache.invalidate_tags).",
)
@click.argument("namespace")
@click.argument("tags", nargs=-1, required=True, metavar="TAG...")
@redis_option
@click.option("--version", "version", help="the Cache's version=, if it was given one")
def cache_invalidate_tag(
    namespace: str, tags: tuple[str, ...], redis_url: str | None, version: str | None
) -> int:
    """``redkit cache invalidate-tag NAMESPACE TAG...``."""
    with open_redis(redis_url) as conn:
        store = Cache(conn, namespace=namespace, version=version)
        try:
            changed = store.invalidate_tags(*tags)
        finally:
            store.close()
    console().print(text(f"invalidated {changed} tags of {namespace}: {', '.join(tags)}"))
    return 0


@click.group(short_help="list or revoke a user's sessions")
def sessions() -> None:
    """A user's sessions: list them, or end them all (log out everywhere)."""


_session_prefix = click.option(
    "--prefix", default="session", show_default=True, help="the store's prefix"
)


def _time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


@sessions.command(
    "list",
    help="USER's live sessions, oldest first (SessionStore.list_user_sessions). USER as JSON "
    "names an int user id (42) or a str one ('\"42\"'); other text is a str (alice).",
)
@click.argument("user")
@redis_option
@json_option
@_session_prefix
def sessions_list(user: str, redis_url: str | None, as_json_output: bool, prefix: str) -> int:
    """``redkit sessions list USER``."""
    user_id = user_id_from_text(user)
    with open_redis(redis_url) as conn:
        found = SessionStore(conn, prefix=prefix).list_user_sessions(user_id)
    if as_json_output:
        as_json(
            {
                "user": user_id,
                "count": len(found),
                "sessions": [
                    {
                        "handle": info.handle,
                        "created_at": info.created_at,
                        "last_seen_at": info.last_seen_at,
                        "expires_at": info.expires_at,
                        "absolute_expires_at": info.absolute_expires_at,
                        "user_agent": info.user_agent,
                        "ip": info.ip,
                    }
                    for info in found
                ],
            }
        )
        return 0
    grid = table(
        f"{len(found)} sessions of {user}", "handle", "created", "last seen", "expires", "ip"
    )
    grid.columns[-1].justify = "left"
    for info in found:
        grid.add_row(
            text(info.handle),
            _time(info.created_at),
            _time(info.last_seen_at),
            _time(info.expires_at),
            text(info.ip or "-"),
        )
    console().print(grid)
    return 0


@sessions.command(
    "revoke-user",
    help="End every session of USER: log out everywhere (SessionStore.revoke_user_sessions). "
    "USER as in sessions list: 42 is an int user id, '\"42\"' a str.",
)
@click.argument("user")
@redis_option
@_session_prefix
def sessions_revoke_user(user: str, redis_url: str | None, prefix: str) -> int:
    """``redkit sessions revoke-user USER``."""
    with open_redis(redis_url) as conn:
        ended = SessionStore(conn, prefix=prefix).revoke_user_sessions(user_id_from_text(user))
    console().print(text(f"revoked {ended} sessions of {user}"))
    return 0
