"""The keyspace report's tally, without a server: buckets, the bounded tree, the estimate."""

from __future__ import annotations

import pytest

from redkit.ops.report import OTHER, Tally, display_key, ttl_bucket


@pytest.mark.parametrize(
    ("pttl", "bucket"),
    [
        (-1, "none"),
        (0, "<1m"),
        (59_999, "<1m"),
        (60_000, "<1h"),
        (3_599_999, "<1h"),
        (3_600_000, "<1d"),
        (86_400_000, "<7d"),
        (7 * 86_400_000 - 1, "<7d"),
        (7 * 86_400_000, ">=7d"),
    ],
)
def test_ttl_buckets_at_their_edges(pttl: int, bucket: str) -> None:
    assert ttl_bucket(pttl) == bucket


def test_non_utf8_bytes_are_escaped_not_an_error() -> None:
    assert display_key(b"a:\xff\xfe") == "a:\\xff\\xfe"
    assert display_key("already text") == "already text"
    assert display_key("é".encode()) == "é"


def test_width_keeps_the_largest_children_and_sums_the_rest() -> None:
    tally = Tally(separator=b":", depth=2, width=2, top=3)
    for prefix, count in (("a", 5), ("b", 3), ("c", 2), ("d", 1)):
        for i in range(count):
            tally.add(f"{prefix}:{i}".encode(), "string", -1, 10)
    tally.add(b"bare", "string", 1000, None)
    report = tally.report(masters=(), match=None, memory_unavailable=None, seconds=0.0)
    assert report.tree.keys == 12
    assert [(c.prefix, c.keys) for c in report.tree.children] == [
        ("a:", 5),
        ("b:", 3),
        (OTHER, 3),
    ]
    # 11 keys sampled at 10 bytes; the bare key unsampled takes the root's mean.
    assert report.tree.memory_bytes == 120
    assert report.memory_sampled == 11
    assert [big.memory_bytes for big in report.biggest] == [10, 10, 10]
    assert report.ttl["none"] == 11
    assert report.ttl["<1m"] == 1


def test_depth_bounds_the_tree_and_vanished_keys_are_apart() -> None:
    tally = Tally(separator=b":", depth=1, width=10, top=0)
    tally.add(b"a:b:c:d", "hash", -1, None)
    tally.add(b"a:gone", "none", -2, None)
    report = tally.report(masters=(), match=None, memory_unavailable="off", seconds=0.0)
    assert report.tree.children[0].prefix == "a:"
    assert report.tree.children[0].children == ()
    assert report.vanished == 1
    assert report.tree.keys == 1
    assert report.memory_bytes is None
    assert report.types == {"hash": 1}


def test_tracked_children_are_bounded_while_scanning() -> None:
    tally = Tally(separator=b":", depth=1, width=1, top=0)
    for i in range(500):  # far more distinct prefixes than are tracked (width x 50)
        tally.add(f"p{i}:k".encode(), "string", -1, None)
    report = tally.report(masters=(), match=None, memory_unavailable=None, seconds=0.0)
    assert len(report.tree.children) == 2
    assert sum(child.keys for child in report.tree.children) == 500


def test_an_unsampled_prefix_takes_the_nearest_sampled_ancestors_mean() -> None:
    # Only a:... keys are sampled; b:c:d has no sample at b: nor at b:c:, so both take the
    # root's mean (10 bytes a key) rather than 0 for the deeper one.
    tally = Tally(separator=b":", depth=3, width=10, top=0)
    for i in range(4):
        tally.add(f"a:{i}".encode(), "string", -1, 10)
    tally.add(b"b:c:d", "string", -1, None)
    report = tally.report(masters=(), match=None, memory_unavailable=None, seconds=0.0)
    b = next(child for child in report.tree.children if child.prefix == "b:")
    assert b.memory_bytes == 10
    assert [(c.prefix, c.memory_bytes) for c in b.children] == [("b:c:", 10)]
