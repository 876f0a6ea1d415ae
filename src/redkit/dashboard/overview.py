"""The overview's server figures: ``INFO`` of every master, the few numbers that matter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redkit.core.flow import Flow
from redkit.core.ops import Masters, OnNode, command
from redkit.core.replies import as_text

__all__ = ["parse_info", "server_rows", "summary"]


def parse_info(reply: Any) -> dict[str, Any]:
    """``INFO`` as a dict, whether redis-py parsed it already or it came as text (REST)."""
    if isinstance(reply, Mapping):
        return dict(reply)
    info: dict[str, Any] = {}
    for line in as_text(reply).splitlines():
        name, sep, value = line.partition(":")
        if sep and not line.startswith("#"):
            info[name] = value
    return info


def _number(info: Mapping[str, Any], name: str) -> float:
    try:
        return float(info.get(name, 0))
    except (TypeError, ValueError):
        return 0.0


def _keys(info: Mapping[str, Any]) -> int:
    """Keys in every database (``db0:keys=...``: a dict from redis-py, text from REST)."""
    total = 0
    for name, value in info.items():
        if not (name.startswith("db") and name[2:].isdigit()):
            continue
        if isinstance(value, Mapping):
            total += int(value.get("keys", 0))
        else:
            fields = dict(part.split("=", 1) for part in str(value).split(",") if "=" in part)
            total += int(fields.get("keys", 0))
    return total


def summary(node: str | None, info: Mapping[str, Any]) -> dict[str, Any]:
    """One server's row: memory, ops/s, keyspace hit ratio, evictions, clients, version."""
    hits, misses = _number(info, "keyspace_hits"), _number(info, "keyspace_misses")
    return {
        "node": node or "standalone",
        "version": str(info.get("redis_version", "?")),
        "used_memory": int(_number(info, "used_memory")),
        "maxmemory": int(_number(info, "maxmemory")),
        "ops_per_sec": int(_number(info, "instantaneous_ops_per_sec")),
        "keyspace_hits": int(hits),
        "keyspace_misses": int(misses),
        "hit_ratio": hits / (hits + misses) if hits + misses else None,
        "evicted_keys": int(_number(info, "evicted_keys")),
        "connected_clients": int(_number(info, "connected_clients")),
        "keys": _keys(info),
        "uptime_s": int(_number(info, "uptime_in_seconds")),
    }


def server_rows() -> Flow[list[dict[str, Any]]]:
    """A row per master (one for a standalone server), in the order ``Masters`` names them."""
    rows = []
    for node in (yield Masters()):
        rows.append(summary(node, parse_info((yield OnNode(node, command("INFO"))))))
    return rows
