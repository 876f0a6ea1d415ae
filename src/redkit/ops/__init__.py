"""Operations on a live Redis: the keyspace report, counting and deleting keys by pattern.

An app-level layer (like the CLI and the dashboard, which use it): it may import any layer
below it. Each behaviour is one flow (``core/flow.py``) with a blocking and an asyncio entry.
"""

from __future__ import annotations

from redkit.ops.keys import acount_keys, adelete_keys, count_keys, delete_keys
from redkit.ops.keyspace import ascan_keyspace, scan_keyspace
from redkit.ops.report import BigKey, KeyspaceReport, MasterCount, PrefixNode

__all__ = [
    "BigKey",
    "KeyspaceReport",
    "MasterCount",
    "PrefixNode",
    "acount_keys",
    "adelete_keys",
    "ascan_keyspace",
    "count_keys",
    "delete_keys",
    "scan_keyspace",
]
