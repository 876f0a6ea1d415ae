"""Key escaping, hash tags and stable hashing (no server)."""

from __future__ import annotations

import fnmatch
import hashlib
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from redkit.core.errors import InvalidKeyError
from redkit.core.keys import (
    MAX_PART_BYTES,
    canonical_json,
    check_prefix,
    escape,
    hash_tag,
    join,
    stable_hash,
    unescape,
)

text = st.text(min_size=1)
_UNSAFE = set(":*?[]\\{}")


@given(text)
def test_escaped_parts_hold_no_separator_glob_or_brace(part: str) -> None:
    assert not set(escape(part)) & _UNSAFE


@given(text, text)
def test_escaping_is_injective(a: str, b: str) -> None:
    if a != b:
        assert escape(a) != escape(b)


@given(text)
def test_unescape_reverses_escape_for_short_parts(part: str) -> None:
    escaped = escape(part)
    if not escaped.startswith("#"):
        assert unescape(escaped) == part


def test_ordinary_ids_stay_readable() -> None:
    assert escape("alice@example.com") == "alice@example.com"
    assert escape("1.2.3.4") == "1.2.3.4"
    assert escape(42) == "42"
    assert escape("user:42") == "user%3A42"
    assert escape("a*b?[c]") == "a%2Ab%3F%5Bc%5D"
    assert escape("{tag}") == "%7Btag%7D"
    assert escape("100%") == "100%25"
    assert escape("héllo wörld ✓") == "héllo wörld ✓"


def test_a_user_part_cannot_widen_a_pattern() -> None:
    # A pattern built from an escaped part matches that part only, whatever the user sent.
    victim = join("app", escape("alice"), "profile")
    for attack in ("*", "a*", "?lice", "[a]lice", "al\\ice"):
        pattern = join("app", escape(attack), "*")
        assert not fnmatch.fnmatchcase(victim, pattern)


def test_long_parts_are_digested_and_stay_distinct() -> None:
    long_a = "a" * (MAX_PART_BYTES + 1)
    long_b = "a" * MAX_PART_BYTES + "b"
    assert escape(long_a).startswith("#")
    assert len(escape(long_a)) == 33
    assert escape(long_a) != escape(long_b)
    # Multi-byte text is measured in bytes, as Redis stores it.
    assert escape("é" * (MAX_PART_BYTES // 2 + 1)).startswith("#")
    # A user cannot forge a digest: "#" is always escaped.
    assert escape("#" + "0" * 32) == "%23" + "0" * 32


@pytest.mark.parametrize("bad", ["", None, 1.5, b"bytes", True, ["x"]])
def test_unusable_parts_raise_a_typed_error(bad: object) -> None:
    with pytest.raises(InvalidKeyError):
        escape(bad)  # type: ignore[arg-type]


def test_lone_surrogates_are_refused() -> None:
    with pytest.raises(InvalidKeyError, match="Unicode"):
        escape("bad\ud800")


@given(text)
def test_all_keys_of_one_identity_share_a_cluster_slot(identity: str) -> None:
    tag = hash_tag(identity)
    slots = {key_slot(join("rl", tag, suffix).encode()) for suffix in ("a", "b", "1700000")}
    assert len(slots) == 1
    # The tag is exactly the escaped identity: what Redis hashes is what we wrapped.
    assert key_slot(join("rl", tag, "x").encode()) == key_slot(escape(identity).encode())


def test_prefixes_are_kept_verbatim_but_may_not_widen_patterns() -> None:
    assert check_prefix("@upstash/ratelimit") == "@upstash/ratelimit"
    assert check_prefix("app:v2") == "app:v2"
    for bad in ("", "a*", "x{y}", "[a]", "a?"):
        with pytest.raises(InvalidKeyError):
            check_prefix(bad)
    with pytest.raises(InvalidKeyError):
        check_prefix(3)  # type: ignore[arg-type]


def test_canonical_json_ignores_mapping_order_and_set_order() -> None:
    a = {"b": [1, 2], "a": {"y": 1, "x": None}, "s": {3, 1, 2}}
    b = {"s": {2, 3, 1}, "a": {"x": None, "y": 1}, "b": (1, 2)}
    assert canonical_json(a) == canonical_json(b)
    assert canonical_json(a) == '{"a":{"x":null,"y":1},"b":[1,2],"s":[1,2,3]}'
    assert stable_hash(a) == stable_hash(b)
    assert stable_hash({"q": "x"}) != stable_hash({"q": "y"})


def test_stable_hash_is_a_fixed_value_across_processes() -> None:
    query = {"q": "shoes", "filters": {"size": [42, 43], "brand": "ä"}, "page": 2}
    here = stable_hash(query)
    # The canonical text is part of the contract: if it changed, every cached query would miss.
    text = '{"filters":{"brand":"\\u00e4","size":[42,43]},"page":2,"q":"shoes"}'
    assert canonical_json(query) == text
    assert here == hashlib.sha256(text.encode()).hexdigest()[:32]
    code = (
        "import sys; from redkit.core.keys import stable_hash; "
        "print(stable_hash(eval(sys.argv[1])))"
    )
    there = subprocess.run(
        [sys.executable, "-c", code, repr(query)],
        capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "123"},
    ).stdout.strip()  # fmt: skip
    assert there == here


@pytest.mark.parametrize("bad", [{1: "int key"}, float("nan"), float("inf"), object(), b"x"])
def test_values_without_a_canonical_form_are_refused(bad: object) -> None:
    with pytest.raises(TypeError):
        canonical_json(bad)
