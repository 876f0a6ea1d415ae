"""``redkit inspect`` (the keyspace report) and ``redkit keys count|delete PATTERN``."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.tree import Tree

from redkit.advise._units import format_bytes, format_count
from redkit.advise.report import progress_callback
from redkit.cli.common import as_json, console, json_option, open_redis, redis_option, table, text
from redkit.ops.keys import count_keys, delete_keys
from redkit.ops.keyspace import scan_keyspace
from redkit.ops.report import TTL_BUCKETS, KeyspaceReport, PrefixNode

__all__ = ["inspect", "keys", "render_keyspace"]


@click.command(
    short_help="the keyspace: prefixes, memory, TTLs, types, biggest keys",
    help="Walk the keyspace with SCAN on every master (never KEYS), a batch at a time with a "
    "pause between batches, and report: keys per prefix with their estimated memory (sampled "
    "MEMORY USAGE), the TTL distribution, keys without a TTL, the types and the biggest keys.",
)
@redis_option
@json_option
@click.option("--match", metavar="GLOB", help="only keys matching this SCAN MATCH glob")
@click.option("--count", type=int, default=1000, show_default=True, help="SCAN COUNT per batch")
@click.option(
    "--pause", type=float, default=0.001, show_default=True, help="seconds between batches"
)
@click.option(
    "--sample-memory",
    type=int,
    default=10,
    show_default=True,
    metavar="N",
    help="MEMORY USAGE of every Nth key (1: all, 0: none)",
)
@click.option("--separator", default=":", show_default=True, help="what splits prefixes")
@click.option("--depth", type=int, default=3, show_default=True, help="prefix levels")
@click.option("--width", type=int, default=20, show_default=True, help="children per prefix")
@click.option("--top", type=int, default=20, show_default=True, help="biggest keys listed")
def inspect(redis_url: str | None, as_json_output: bool, **options: Any) -> int:
    """``redkit inspect``: the flags after ``--json`` are :func:`scan_keyspace`'s keywords."""
    with open_redis(redis_url) as conn, progress_callback("scanning", unit="steps") as progress:
        report = scan_keyspace(conn, progress=progress, **options)
    if as_json_output:
        as_json(report.to_dict())
    else:
        render_keyspace(report)
    return 0


def _memory(size: int | None) -> str:
    return "-" if size is None else format_bytes(size)


def _branch(tree: Tree, node: PrefixNode, total: int) -> None:
    for child in node.children:
        share = f"{child.keys / total:.1%}" if total else "-"
        label = text(child.prefix or "(root)", "bold")
        label.append(f"  {format_count(child.keys)} keys ({share}), {_memory(child.memory_bytes)}")
        _branch(tree.add(label), child, total)


def render_keyspace(report: KeyspaceReport) -> None:
    """Print the report as tables and a prefix tree on stdout."""
    out = console()
    scope = "" if report.match is None else f" matching {report.match}"
    head = text(f"{format_count(report.scanned)} keys scanned{scope}", "bold")
    head.append(
        f" of {format_count(report.total_keys)} (DBSIZE) in {report.seconds:.1f} s; "
        f"memory {_memory(report.memory_bytes)}"
        f" (sampled {format_count(report.memory_sampled)} keys)"
    )
    out.print(head)
    if report.memory_unavailable:
        out.print(text(f"memory not measured: {report.memory_unavailable}", "yellow"))
    if len(report.masters) > 1:
        grid = table("Masters", "master", "DBSIZE", "scanned")
        for master in report.masters:
            grid.add_row(
                text(master.node), format_count(master.dbsize), format_count(master.scanned)
            )
        out.print(grid)
    tree = Tree(text("Prefixes", "bold"))
    _branch(tree, report.tree, report.tree.keys)
    bare = report.tree.keys - sum(child.keys for child in report.tree.children)
    if bare:
        tree.add(f"(no separator)  {format_count(bare)} keys")
    out.print(tree)
    ttl = table("TTL", "bucket", "keys")
    for name, _ in TTL_BUCKETS:
        ttl.add_row(name, format_count(report.ttl.get(name, 0)))
    out.print(ttl)
    out.print(f"keys without TTL: {format_count(report.keys_without_ttl)}")
    types = table("Types", "type", "keys")
    for kind, number in report.types.items():
        types.add_row(text(kind), format_count(number))
    out.print(types)
    if report.biggest:
        big = table("Biggest keys (sampled)", "key", "memory", "type", "TTL")
        for key in report.biggest:
            ttl_s = "none" if key.ttl_ms is None else f"{key.ttl_ms / 1000:.0f} s"
            big.add_row(text(key.key), format_bytes(key.memory_bytes), text(key.type), ttl_s)
        out.print(big)


@click.group(
    short_help="count or delete keys by pattern (SCAN MATCH + UNLINK, every master)",
    help="Count or delete the keys that a SCAN MATCH glob matches, on every master of a "
    "cluster, a batch at a time (never KEYS). The glob's wildcards are yours: * ? [...] and "
    "\\ to match one literally.",
)
def keys() -> None:
    """``redkit keys``."""


@keys.command("count", help="How many keys match PATTERN.")
@click.argument("pattern")
@redis_option
@json_option
def keys_count(pattern: str, redis_url: str | None, as_json_output: bool) -> int:
    """``redkit keys count PATTERN``."""
    with open_redis(redis_url) as conn:
        number = count_keys(conn, pattern)
    if as_json_output:
        as_json({"pattern": pattern, "count": number})
    else:
        line = text(format_count(number), "bold")
        line.append(" keys match ")
        line.append(text(pattern))
        console().print(line)
    return 0


@keys.command(
    "delete",
    help="Delete the keys matching PATTERN (UNLINK in batches). A dry run unless --yes: it "
    "prints how many would go and the first of them.",
)
@click.argument("pattern")
@redis_option
@json_option
@click.option("--yes", is_flag=True, help="delete them (without it, a dry run)")
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="allow a pattern of wildcards alone (*, ?*), which may match every key",
)
@click.option("--batch", type=int, default=1000, show_default=True, help="SCAN COUNT per batch")
@click.option("--pause", type=float, default=0.0, show_default=True, help="seconds between batches")
def keys_delete(
    pattern: str,
    redis_url: str | None,
    as_json_output: bool,
    yes: bool,
    everything: bool,
    batch: int,
    pause: float,
) -> int:
    """``redkit keys delete PATTERN [--yes]``."""
    label = "deleting" if yes else "matching"
    with open_redis(redis_url) as conn, progress_callback(label, unit="steps") as progress:
        done = delete_keys(
            conn, pattern, dry_run=not yes, everything=everything, batch=batch, pause=pause,
            progress=lambda matched, deleted: progress(deleted if yes else matched, 0),
        )  # fmt: skip
    if as_json_output:
        as_json(done.to_dict())
        return 0
    out = console()
    if done.dry_run:
        line = text(f"dry run: {format_count(done.matched)} keys match ")
        line.append(text(pattern))
        line.append("; nothing deleted (add --yes to delete them)")
        out.print(line)
        for key in done.examples:
            out.print(text(f"  {key}"))
        if done.matched > len(done.examples):
            out.print(f"  ... and {format_count(done.matched - len(done.examples))} more")
    else:
        line = text(f"deleted {format_count(done.deleted)} keys matching ", "bold")
        line.append(text(pattern))
        out.print(line)
    sys.stdout.flush()
    return 0
