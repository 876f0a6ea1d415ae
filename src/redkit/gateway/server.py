"""``redkit gateway``: settings from flags and the environment, served by uvicorn.

Every flag has an environment variable, which is the better place for tokens (a command
line is visible to every user of the machine):

==============================  ===================================  ==========================
flag                            variable                             meaning
==============================  ===================================  ==========================
``--redis URL``                 ``REDKIT_GATEWAY_REDIS``             the Redis (else
                                                                     ``REDIS_URL``)
``--token T``                   ``REDKIT_GATEWAY_TOKEN``             the read-write token
``--read-only-token T``         ``REDKIT_GATEWAY_READ_ONLY_TOKEN``   a read-only token
``--tokens-file PATH``          ``REDKIT_GATEWAY_TOKENS_FILE``       several tokens (JSON)
``--allow-command CMD``         ``REDKIT_GATEWAY_ALLOW``             denied commands to run
                                                                     (comma list; the flags
                                                                     add to it)
``--host``, ``--port``          ``REDKIT_GATEWAY_HOST``, ``_PORT``   where to listen
``--max-body BYTES``            ``REDKIT_GATEWAY_MAX_BODY``          the request size limit
                                                                     (10 MB)
``--max-response BYTES``        ``REDKIT_GATEWAY_MAX_RESPONSE``      the response size limit
                                                                     (16 MiB)
``--script-timeout SECONDS``    ``REDKIT_GATEWAY_SCRIPT_TIMEOUT``    kill scripts running
                                                                     longer (5; 0: never)
``--max-streams N``             ``REDKIT_GATEWAY_MAX_STREAMS``       subscriptions open at
                                                                     once (100)
==============================  ===================================  ==========================

The tokens file maps each token to its Redis:
``{"<token>": {"redis": "redis://...", "read_only": false}, ...}``.

At shutdown the server ends the open subscriptions first: uvicorn waits for every connection
to close before it stops, and an event stream does not close by itself.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from redkit.core.errors import ConfigurationError
from redkit.drivers.connect import mask_url
from redkit.gateway.app import Gateway
from redkit.gateway.auth import TokenRule
from redkit.gateway.protocol import MAX_BODY, MAX_RESPONSE
from redkit.gateway.pubsub import DEFAULT_MAX_STREAMS
from redkit.gateway.watchdog import DEFAULT_SCRIPT_TIMEOUT

__all__ = ["build", "main"]


def _tokens_file(path: str) -> dict[str, TokenRule]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read the tokens file {path}: {exc}") from exc
    if not isinstance(data, dict) or not data:
        raise ConfigurationError(f"the tokens file {path} must be a non-empty JSON object")
    rules: dict[str, TokenRule] = {}
    for index, (token, entry) in enumerate(data.items(), 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("redis"), str):
            raise ConfigurationError(
                f"entry {index} of the tokens file {path} needs a string 'redis' (a URL)"
            )
        rules[token] = TokenRule(entry["redis"], read_only=bool(entry.get("read_only", False)))
    return rules


def _number(raw: str | None, variable: str, default: float, what: str) -> float:
    """A number from the environment, or ``default`` when the variable is unset."""
    if not raw:
        return default
    try:
        return float(raw) if what == "seconds" else int(raw)
    except ValueError:
        raise ConfigurationError(
            f"{variable} must be a number of {what}, got {raw!r}", variable=variable
        ) from None


def build(
    *,
    redis: str | None = None,
    token: str | None = None,
    read_only_token: str | None = None,
    tokens_file: str | None = None,
    allow: list[str] | None = None,
    max_body: int | None = None,
    max_response: int | None = None,
    script_timeout: float | None = None,
    max_streams: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> Gateway:
    """The gateway the flags (else the environment) describe.

    ``script_timeout=0`` (``REDKIT_GATEWAY_SCRIPT_TIMEOUT=0``) turns the script limit off.

    Raises:
        ConfigurationError: naming the flag and variable to set, when a setting is missing or
            malformed.

    """
    env = os.environ if environ is None else environ
    redis = redis or env.get("REDKIT_GATEWAY_REDIS") or env.get("REDIS_URL")
    token = token or env.get("REDKIT_GATEWAY_TOKEN")
    read_only_token = read_only_token or env.get("REDKIT_GATEWAY_READ_ONLY_TOKEN")
    tokens_file = tokens_file or env.get("REDKIT_GATEWAY_TOKENS_FILE")
    # The flags add to the variable's list: a flag for one more command must not silently
    # take away the ones the deployment's environment allows.
    allow = [
        *(name for name in env.get("REDKIT_GATEWAY_ALLOW", "").split(",") if name.strip()),
        *(allow or ()),
    ]
    if max_body is None:
        max_body = int(
            _number(
                env.get("REDKIT_GATEWAY_MAX_BODY"), "REDKIT_GATEWAY_MAX_BODY", MAX_BODY, "bytes"
            )
        )
    if max_body <= 0:
        raise ConfigurationError("the maximum body size must be positive")
    if max_response is None:
        variable = "REDKIT_GATEWAY_MAX_RESPONSE"
        max_response = int(_number(env.get(variable), variable, MAX_RESPONSE, "bytes"))
    if max_response <= 0:
        raise ConfigurationError(
            "the maximum response size (--max-response, REDKIT_GATEWAY_MAX_RESPONSE) must be "
            "positive"
        )
    if script_timeout is None:
        variable = "REDKIT_GATEWAY_SCRIPT_TIMEOUT"
        script_timeout = _number(env.get(variable), variable, DEFAULT_SCRIPT_TIMEOUT, "seconds")
    if not script_timeout >= 0:  # NaN too
        raise ConfigurationError(
            "the script time limit (--script-timeout, REDKIT_GATEWAY_SCRIPT_TIMEOUT) must be "
            "0 (no limit) or positive seconds"
        )
    if max_streams is None:
        variable = "REDKIT_GATEWAY_MAX_STREAMS"
        max_streams = int(_number(env.get(variable), variable, DEFAULT_MAX_STREAMS, "streams"))
    if max_streams <= 0:
        raise ConfigurationError(
            "the maximum number of streams (--max-streams) must be at least 1",
            variable="REDKIT_GATEWAY_MAX_STREAMS",
        )
    rules: dict[str, TokenRule] = _tokens_file(tokens_file) if tokens_file else {}
    if token or read_only_token:
        if not redis:
            raise ConfigurationError(
                "no Redis: pass --redis URL or set REDKIT_GATEWAY_REDIS (or REDIS_URL)",
                variable="REDKIT_GATEWAY_REDIS",
            )
        if token:
            rules[token] = TokenRule(redis)
        if read_only_token:
            if read_only_token == token:
                raise ConfigurationError("the read-only token must differ from the token")
            rules[read_only_token] = TokenRule(redis, read_only=True)
    if not rules:
        raise ConfigurationError(
            "no token: pass --token T (or set REDKIT_GATEWAY_TOKEN), or --tokens-file",
            variable="REDKIT_GATEWAY_TOKEN",
        )
    try:
        return Gateway(
            rules,
            allow=allow,
            max_body=max_body,
            max_response=max_response,
            script_timeout=script_timeout or None,
            max_streams=max_streams,
        )
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc


def main(out: TextIO, gateway: Gateway, *, host: str, port: int, redis: str | None) -> int:
    """Serve ``gateway`` until interrupted; return the exit status."""
    import uvicorn

    where = mask_url(redis) if redis else "the Redis of the tokens file"
    print(f"redkit gateway on http://{host}:{port}/ in front of {where}", file=out, flush=True)
    config = uvicorn.Config(
        gateway,
        host=host,
        port=port,
        lifespan="on",
        # uvicorn's access log prints query strings, where ?_token= would show: off.
        access_log=False,
        log_level="info",
    )
    server = _server(config, gateway)
    server.run()
    return 0 if server.started else 3  # uvicorn's status for a failed startup


def _server(config: Any, gateway: Gateway) -> Any:
    """A uvicorn server that ends the gateway's streams before it waits for connections."""
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            # uvicorn waits for every connection to close, and only then runs the lifespan's
            # shutdown (where the gateway would end its streams): end them first.
            await gateway.streams.aclose()
            await super().shutdown(sockets)

    return Server(config)
