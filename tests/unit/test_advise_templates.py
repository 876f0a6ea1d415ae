"""Route templates, normalised queries and key patterns (redkit.advise.templates)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redkit.advise.templates import (
    Templates,
    is_id,
    key_of,
    normalise_query,
    resource_of,
    response_cache_key,
    route_template,
    split_target,
)
from redkit.errors import InvalidArgumentError
from redkit.web.response_cache import ResponseCachePolicy


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/api/users/17", "/api/users/{id}"),
        ("/api/users/42/orders/9.json", "/api/users/{id}/orders/{id}.json"),
        ("/v1/items/550E8400-e29b-41d4-a716-446655440000", "/v1/items/{id}"),
        ("/blobs/0123456789abcdef0123", "/blobs/{id}"),  # long hex
        ("/blobs/deadbeefdeadbeef", "/blobs/{id}"),  # 16 hex digits, letters only
        ("/commits/5f3a9c01", "/commits/{id}"),  # short hex that mixes digits and letters
        ("/t/dGhpcyBpcyBhIHRva2Vu9x_-", "/t/{id}"),  # base64url
        ("/t/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc123", "/t/{id}"),  # a JWT
        ("/t/k3j4h5g6f7d8s9a0q1w2e3", "/t/{id}"),  # base36, one case, no separators
        ("/img/0123456789abcdef0123.png", "/img/{id}.png"),
        ("/", "/"),
        ("/api/users/", "/api/users/"),
        # Words stay: hex-only words, version tags, slugs, short mixes, percent-encoded text.
        ("/x/deadbeef/facade/v1/api/2fa", "/x/deadbeef/facade/v1/api/2fa"),
        ("/blog/top-10-tips-for-2024-summer", "/blog/top-10-tips-for-2024-summer"),
        (
            "/search/%E4%BD%A0%E5%A5%BD%E4%B8%96%E7%95%8C",
            "/search/%E4%BD%A0%E5%A5%BD%E4%B8%96%E7%95%8C",
        ),
        ("/internationalization-settings", "/internationalization-settings"),
    ],
)
def test_ids_collapse_and_words_stay(path: str, template: str) -> None:
    assert route_template(path) == template


def test_users_17_and_42_are_one_namespace_and_two_keys() -> None:
    templates = Templates()
    assert templates.namespace("/api/users/17") == templates.namespace("/api/users/42")
    assert templates.namespace("/api/users/17") == "/api/users/{id}"
    assert key_of("/api/users/17", "") != key_of("/api/users/42", "")


def test_queries_are_normalised_as_the_response_cache_compares_them() -> None:
    assert normalise_query("b=2&a=1") == normalise_query("a=1&b=2") == "a=1&b=2"
    assert normalise_query("q=a+b&flag") == "flag=&q=a+b"
    assert normalise_query("q=%41") == normalise_query("q=A")
    assert normalise_query("") == ""
    # The key redkit's response cache would use, for both orders, and from the decoded path.
    policy = ResponseCachePolicy(1)
    expected = policy.key("/api/search/é", "q=a&page=2", {})
    assert response_cache_key("/api/search/%C3%A9?" + normalise_query("page=2&q=a")) == expected
    assert response_cache_key("/api/users/1") == policy.key("/api/users/1", "", {})


@given(st.lists(st.tuples(st.text(max_size=8), st.text(max_size=8)), max_size=6), st.randoms())
def test_a_normalised_query_is_equal_exactly_when_the_response_cache_key_is(
    params: list[tuple[str, str]], rnd: object
) -> None:
    from urllib.parse import urlencode

    shuffled = list(params)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    a, b = urlencode(params), urlencode(shuffled)
    assert normalise_query(a) == normalise_query(b)
    assert response_cache_key(key_of("/p", normalise_query(a))) == ResponseCachePolicy(1).key(
        "/p", b, {}
    )
    # Normalising again changes nothing.
    assert normalise_query(normalise_query(a)) == normalise_query(a)


def test_a_write_invalidates_every_query_of_its_path() -> None:
    assert resource_of("/api/search?q=a") == resource_of("/api/search?q=b") == "/api/search"
    assert resource_of("/api/search") == "/api/search"
    assert resource_of("user:42") == "user:42"


def test_targets_split_into_path_and_query() -> None:
    assert split_target("/a/b?x=1&y=2") == ("/a/b", "x=1&y=2")
    assert split_target("http://example.com:8080/a?x=1#frag") == ("/a", "x=1")
    assert split_target("https://example.com") == ("/", "")
    assert split_target("*") == ("*", "")


def test_key_patterns_name_namespaces_first_match_wins() -> None:
    templates = Templates(["^/api/users/[^/]+$=users", r"^/api/=api", "^/@[a-z]+=profiles"])
    assert templates.namespace("/api/users/alice") == "users"
    assert templates.namespace("/api/users/alice/orders") == "api"
    assert templates.namespace("/@bob") == "profiles"
    assert templates.namespace("/static/app.css") == "/static/app.css"
    # A regex may hold "=": the last one separates the name.
    assert Templates([r"a=b=eq"]).namespace("/x?a=b") == "eq"
    assert Templates([("^/x", "pair")]).namespace("/x/1") == "pair"
    assert Templates("^/x=one").namespace("/x") == "one"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("(unclosed=name", "invalid regular expression"),
        ("no-equals-sign", "REGEX=NAME"),
        ("=name", "non-empty"),
        ("^/x=", "non-empty"),
    ],
)
def test_bad_key_patterns_are_refused_at_construction(spec: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match="--key-pattern") as caught:
        Templates([spec])
    assert message in str(caught.value)


def test_cache_trace_keys_take_their_prefix_or_route_as_namespace() -> None:
    templates = Templates(["^session:=sessions"])
    assert templates.key_namespace("user:42:profile") == "user"
    assert templates.key_namespace("session:abc") == "sessions"
    assert templates.key_namespace("/api/users/7?x=1") == "/api/users/{id}"
    assert templates.key_namespace("/files/a:b") == "/files/a:b"  # a path, not a prefix
    assert templates.key_namespace("8f3a2b") == "default"
    assert templates.key_namespace(":x") == "default"


_WORDS = st.sampled_from(
    ["users", "v1", "v2", "api", "orders", "products", "search", "static", "2fa", "me",
     "deadbeef", "facade", "index.html", "app.js", "healthz", "settings", "oauth2", "callback"]
)  # fmt: skip
_IDS = st.one_of(
    st.integers(min_value=0, max_value=10**30).map(str),
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    st.uuids().map(lambda u: u.hex),
)
_SEGMENTS = st.text(
    alphabet=st.characters(blacklist_characters="/", blacklist_categories=("Cs",)), max_size=30
)


@given(st.lists(st.one_of(_WORDS, _IDS, _SEGMENTS), max_size=8))
def test_inference_is_idempotent(segments: list[str]) -> None:
    path = "/" + "/".join(segments)
    once = route_template(path)
    assert route_template(once) == once
    assert once.count("/") == path.count("/")


@given(st.lists(st.tuples(_WORDS, _IDS), min_size=1, max_size=5))
def test_words_never_collapse_and_ids_always_do(pairs: list[tuple[str, str]]) -> None:
    path = "".join(f"/{word}/{id_}" for word, id_ in pairs)
    assert route_template(path) == "".join(f"/{word}/{{id}}" for word, _ in pairs)
    assert all(is_id(id_) for _, id_ in pairs)
    assert not any(is_id(word) for word, _ in pairs)


def test_a_uuid_is_an_id_in_every_spelling() -> None:
    value = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert is_id(str(value))
    assert is_id(value.hex)
    assert is_id(str(value).upper())
