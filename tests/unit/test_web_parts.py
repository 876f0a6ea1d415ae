"""The framework-free parts of redkit.web: client IPs, key functions, headers. No server."""

from __future__ import annotations

import ipaddress
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from redkit import (
    GCRA,
    AsyncRatelimit,
    Connection,
    FixedWindow,
    Ratelimit,
    SlidingLog,
    SlidingWindow,
    TokenBucket,
)
from redkit.core.errors import ConfigurationError, InvalidArgumentError
from redkit.ratelimit import MultiLimit, RatelimitResult
from redkit.web import (
    Policy,
    TrustedProxies,
    by_api_key,
    by_client_ip,
    by_user,
    hash_api_key,
    policies_for,
    ratelimit_headers,
    resolve_client_ip,
    retry_after_seconds,
    tier_by_api_key,
    too_many_requests_body,
)
from redkit.web.clientip import forwarded_for, group_address, parse_address, x_forwarded_for
from redkit.web.keys import UnknownClientError
from redkit.web.rule import LimitRule, limiter_from

ip = ipaddress.ip_address
NOW = 1_700_000_000_000  # ms


# -- addresses ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1.2.3.4", "1.2.3.4"),
        (" 1.2.3.4 ", "1.2.3.4"),
        ("1.2.3.4:8080", "1.2.3.4"),
        ('"1.2.3.4:8080"', "1.2.3.4"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("[2001:db8::1]:_port", "2001:db8::1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),  # IPv4-mapped: the IPv4 host
        ("[::ffff:192.0.2.1]:80", "192.0.2.1"),
        ("fe80::1%eth0", "fe80::1"),  # the zone is not part of who the client is
        ("2001:DB8:0:0::1", "2001:db8::1"),
    ],
)
def test_addresses_parse_and_normalise(text: str, expected: str) -> None:
    assert parse_address(text) == ip(expected)


@pytest.mark.parametrize(
    "text",
    [
        None, "", "unknown", "_hidden", "garbage", "1.2.3", "1.2.3.4.5", "256.1.1.1",
        "1.2.3.4:port", "1.2.3.4:99999999", "[2001:db8::1", "[2001:db8::1]x",
        "[1.2.3.4]:80:80", "2001:db8::zz", "<script>", "1.2.3.4/24", "\x00",
        "\u0661.\u0662.\u0663.\u0664",
    ],
)  # fmt: skip
def test_garbage_is_no_address(text: Any) -> None:
    assert parse_address(text) is None


def test_grouping_by_prefix() -> None:
    assert group_address(ip("2001:db8:1:2:3:4:5:6")) == "2001:db8:1:2::/64"
    assert group_address(ip("2001:db8:1:2:ffff::1")) == "2001:db8:1:2::/64"
    assert group_address(ip("2001:db8::1"), ipv6_prefix=128) == "2001:db8::1"
    assert group_address(ip("2001:db8:1:2::1"), ipv6_prefix=48) == "2001:db8:1::/48"
    assert group_address(ip("192.0.2.77")) == "192.0.2.77"
    assert group_address(ip("192.0.2.77"), ipv4_prefix=24) == "192.0.2.0/24"


# -- the headers' lists ------------------------------------------------------------------------


def test_x_forwarded_for_joins_several_headers() -> None:
    assert x_forwarded_for(["1.1.1.1, 2.2.2.2", "3.3.3.3"]) == ["1.1.1.1", "2.2.2.2", "3.3.3.3"]
    assert x_forwarded_for([]) == []


def test_forwarded_syntax() -> None:
    values = [
        'for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711"',
        'For="_gazonk", for=unknown;proto=https',
        'proto=https;host="a,b;c", for="198.51.100.1:80"',  # separators inside quotes
        'for="quo\\"ted"; for=1.1.1.1',  # two for= in one element: names no address
        "by=1.2.3.4",  # no for=: a hop with no address
        'for="10.0.0.1',  # an unterminated quote
    ]
    assert forwarded_for(values) == [
        "192.0.2.60",
        "[2001:db8:cafe::17]:4711",
        "_gazonk",
        "unknown",
        None,  # the element of proto= and host=
        "198.51.100.1:80",
        None,
        None,
        '"10.0.0.1',
    ]


# -- the walk ------------------------------------------------------------------------------------


def test_without_proxies_the_peer_is_the_client() -> None:
    assert resolve_client_ip("10.0.0.1", ["6.6.6.6"]) == ip("10.0.0.1")
    assert resolve_client_ip(None) is None
    assert resolve_client_ip("/run/app.sock") is None


def test_networks_walk_right_to_left() -> None:
    proxies = TrustedProxies(["10.0.0.0/8", "127.0.0.1"])
    # The peer is a proxy; 203.0.113.9 is the first untrusted from the right.
    assert proxies.resolve("10.0.0.2", ["6.6.6.6, 203.0.113.9, 10.1.1.1"]) == ip("203.0.113.9")
    # A spoofed left-most value never wins.
    assert proxies.resolve("127.0.0.1", ["1.1.1.1, 203.0.113.9"]) == ip("203.0.113.9")
    # An untrusted peer's header is its own word.
    assert proxies.resolve("203.0.113.50", ["1.1.1.1"]) == ip("203.0.113.50")
    # Every hop trusted: the left-most.
    assert proxies.resolve("10.0.0.2", ["10.0.0.9, 10.0.0.3"]) == ip("10.0.0.9")
    # No header: the peer.
    assert proxies.resolve("10.0.0.2", []) == ip("10.0.0.2")


def test_garbage_stops_the_walk_at_the_nearest_known_hop() -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])
    assert proxies.resolve("10.0.0.2", ["6.6.6.6, garbage"]) == ip("10.0.0.2")
    assert proxies.resolve("10.0.0.2", ["6.6.6.6, unknown, 10.0.0.7"]) == ip("10.0.0.7")
    assert proxies.resolve("10.0.0.2", ["6.6.6.6,"]) == ip("10.0.0.2")  # an empty entry
    assert proxies.resolve("10.0.0.2", ["x" * 10_000]) == ip("10.0.0.2")
    # Garbage left of the client is never reached.
    assert proxies.resolve("10.0.0.2", ["<script>, 203.0.113.9"]) == ip("203.0.113.9")


def test_hop_count_takes_the_nth_from_the_right() -> None:
    one = TrustedProxies(hops=1)
    two = TrustedProxies(hops=2)
    assert one.resolve("10.0.0.2", ["6.6.6.6, 203.0.113.9"]) == ip("203.0.113.9")
    assert two.resolve("10.0.0.2", ["6.6.6.6, 203.0.113.9, 10.0.0.5"]) == ip("203.0.113.9")
    # Fewer entries than hops: the header is not the proxies', keep the peer.
    assert two.resolve("10.0.0.2", ["203.0.113.9"]) == ip("10.0.0.2")
    assert two.resolve("10.0.0.2", ["6.6.6.6, bad, 10.0.0.5"]) == ip("10.0.0.5")


def test_forwarded_header_through_proxies() -> None:
    proxies = TrustedProxies(["127.0.0.1/32"], header="forwarded")
    forwarded = ['for="[2001:db8:cafe::17]:4711";proto=https, for=127.0.0.1']
    assert proxies.resolve("127.0.0.1", forwarded) == ip("2001:db8:cafe::17")
    assert proxies.resolve("127.0.0.1", ["for=_hidden"]) == ip("127.0.0.1")
    assert proxies.resolve("127.0.0.1", ['for="::ffff:198.51.100.4"']) == ip("198.51.100.4")


def test_proxy_settings_are_checked() -> None:
    assert TrustedProxies("10.0.0.0/8").networks == (ipaddress.ip_network("10.0.0.0/8"),)
    with pytest.raises(InvalidArgumentError):
        TrustedProxies(["not-a-network"])
    with pytest.raises(InvalidArgumentError):
        TrustedProxies(["10.0.0.0/8"], hops=1)
    with pytest.raises(InvalidArgumentError):
        TrustedProxies(hops=-1)
    with pytest.raises(InvalidArgumentError):
        TrustedProxies(header="x-real-ip")  # type: ignore[arg-type]


@given(st.lists(st.text(max_size=40), max_size=5), st.text(max_size=40))
def test_any_header_never_crashes_and_never_invents_an_address(
    values: list[str], peer: str
) -> None:
    for header in ("x-forwarded-for", "forwarded"):
        proxies = TrustedProxies(["0.0.0.0/0", "::/0"], header=header)  # type: ignore[arg-type]
        found = proxies.resolve(peer, values)
        assert found is None or isinstance(found, ipaddress.IPv4Address | ipaddress.IPv6Address)
        if found is not None:
            assert found == parse_address(peer) or any(
                parse_address(entry) == found for entry in proxies.entries(values)
            )


# -- key functions ---------------------------------------------------------------------------


class FakeRequest:
    def __init__(self, peer: str | None = "192.0.2.1", user: Any = None, **headers: str) -> None:
        self.peer = peer
        self._headers = {k.lower().replace("_", "-"): [v] for k, v in headers.items()}
        self._user = user
        self.native = self

    def headers(self, name: str) -> list[str]:
        return self._headers.get(name.lower(), [])

    def user_id(self) -> object | None:
        return self._user

    def route(self) -> str | None:
        return "/things/{thing_id}"

    def session_pending(self) -> None:
        return None


def test_a_request_without_a_client_address_is_refused_unless_a_policy_says_otherwise() -> None:
    for peer in (None, "testclient"):  # a unix socket; Starlette's TestClient
        with pytest.raises(UnknownClientError, match="TrustedProxies") as caught:
            by_client_ip()(FakeRequest(peer))
        assert "on_unknown_client='share'" in str(caught.value)
        assert isinstance(caught.value, ConfigurationError)
        assert by_user()(FakeRequest(peer, user=7)) == "user:7"  # a user needs no address
        with pytest.raises(UnknownClientError):
            by_user()(FakeRequest(peer))  # the anonymous fallback refuses too
    assert by_client_ip(on_unknown_client="share")(FakeRequest(None)) == "ip:unknown"
    assert by_client_ip(on_unknown_client="allow")(FakeRequest(None)) is None
    with pytest.raises(InvalidArgumentError, match="on_unknown_client"):
        by_client_ip(on_unknown_client="ignore")


def test_each_route_counts_apart_unless_a_scope_is_shared() -> None:
    limiter = Ratelimit(Connection("redis://127.0.0.1:1"), FixedWindow(5, "1 m"))
    rule = LimitRule(limiter)
    assert rule.identifier("ip:1.2.3.4", "/a") == "/a:ip:1.2.3.4"
    assert rule.identifier("ip:1.2.3.4", "/b") != rule.identifier("ip:1.2.3.4", "/a")
    # The route's own ':' and braces are escaped: no name can reach into the key's part, and
    # nothing ends a cluster hash tag early.
    tagged = rule.identifier("ip:1.2.3.4", "/items/{id}:x")
    assert tagged == "/items/%7Bid%7D%3Ax:ip:1.2.3.4"
    shared = LimitRule(limiter, scope="api")
    assert shared.identifier("ip:1.2.3.4", "/a") == shared.identifier("ip:1.2.3.4", "/b")
    assert shared.identifier("ip:1.2.3.4", "/a") == "api:ip:1.2.3.4"
    with pytest.raises(InvalidArgumentError, match="scope"):
        LimitRule(limiter, scope="")


def test_rate_strings_and_config_mistakes_name_the_setting() -> None:
    connection = Connection("redis://127.0.0.1:1")
    made = limiter_from("10/second; 1000 per day", connection, blocking=True)
    assert isinstance(made, Ratelimit)
    assert isinstance(limiter_from("5/minute", connection, blocking=False), AsyncRatelimit)
    with pytest.raises(InvalidArgumentError, match=r"REDKIT_RATELIMIT_DEFAULT.*limits_from"):
        limiter_from(object(), blocking=True, setting="REDKIT_RATELIMIT_DEFAULT")
    with pytest.raises(InvalidArgumentError, match="REDKIT_RATELIMIT_DEFAULT: a rate looks"):
        limiter_from("200 a day", connection, blocking=True, setting="REDKIT_RATELIMIT_DEFAULT")
    connection.close()


def test_a_flask_rate_string_s_options_are_checked_at_decoration() -> None:
    """Wrong options beside a rate string fail where they are written, not at a request."""
    pytest.importorskip("flask")
    from redkit.web.flask import Redkit

    ext = Redkit()  # no app, no connection yet: nothing is opened to check
    with pytest.raises(InvalidArgumentError, match="scope must be a non-empty str"):
        ext.limit("5/minute", scope="")
    with pytest.raises(InvalidArgumentError, match="tier= needs a TieredRatelimit"):
        ext.limit("5/minute", tier="pro")
    with pytest.raises(InvalidArgumentError, match="exempt_when must be a function"):
        ext.limit("5/minute", exempt_when="yes")  # type: ignore[arg-type]
    ext.limit("5/minute; 100/day", scope="search")  # and a right one is accepted


def test_key_functions() -> None:
    assert by_client_ip()(FakeRequest(x_forwarded_for="6.6.6.6")) == "ip:192.0.2.1"
    trusting = by_client_ip(TrustedProxies(["192.0.2.0/24"]))
    assert trusting(FakeRequest(x_forwarded_for="6.6.6.6")) == "ip:6.6.6.6"
    assert by_client_ip()(FakeRequest("2001:db8::5")) == "ip:2001:db8::/64"
    assert by_client_ip(ipv6_prefix=128)(FakeRequest("2001:db8::5")) == "ip:2001:db8::5"
    with pytest.raises(InvalidArgumentError):
        by_client_ip(ipv6_prefix=129)

    assert by_user()(FakeRequest(user=42)) == "user:42"
    assert by_user()(FakeRequest()) == "ip:192.0.2.1"
    assert by_user(anonymous=False)(FakeRequest()) is None
    assert by_user(lambda request: "ada")(FakeRequest()) == "user:ada"

    raw = "sk_live_0123456789"
    key = by_api_key()(FakeRequest(x_api_key=raw))
    assert key == "apikey:" + hash_api_key(raw)
    assert isinstance(key, str)
    assert raw not in key
    assert len(hash_api_key(raw)) == 32
    assert by_api_key()(FakeRequest()) == "ip:192.0.2.1"
    assert by_api_key("Authorization")(FakeRequest(authorization=raw)) == key

    # Made-up keys must not each get a bucket: only known ones count as keys.
    checked = by_api_key(known={raw})
    assert checked(FakeRequest(x_api_key=raw)) == key
    assert checked(FakeRequest(x_api_key="made-up-1")) == "ip:192.0.2.1"
    assert by_api_key(known=lambda k: k == raw)(FakeRequest(x_api_key="x")) == "ip:192.0.2.1"

    async def lookup(candidate: str) -> bool:
        return candidate == raw

    import asyncio

    answered = by_api_key(known=lookup)(FakeRequest(x_api_key="made-up-2"))
    assert asyncio.run(answered) == "ip:192.0.2.1"  # type: ignore[arg-type]
    assert asyncio.run(by_api_key(known=lookup)(FakeRequest(x_api_key=raw))) == key  # type: ignore[arg-type]


def test_tier_resolvers() -> None:
    tier = tier_by_api_key({"k-pro": "pro"}, default="free")
    assert tier(FakeRequest(x_api_key="k-pro")) == "pro"
    assert tier(FakeRequest(x_api_key="other")) == "free"
    assert tier(FakeRequest()) == "free"
    by_function = tier_by_api_key(
        lambda raw: "enterprise" if raw == "big" else None, default="free"
    )
    assert by_function(FakeRequest(x_api_key="big")) == "enterprise"
    assert by_function(FakeRequest(x_api_key="small")) == "free"


def test_framework_free_parts_import_no_framework() -> None:
    code = (
        "import sys, redkit, redkit.web, redkit.web.keys, redkit.web.headers, redkit.web.rule\n"
        "import redkit.web.response_cache, redkit.sessions, redkit.cache, redkit.ratelimit\n"
        "assert not any(m.split('.')[0] in ('starlette', 'fastapi', 'flask') for m in sys.modules)"
    )
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True)


#: The frameworks' top-level packages: only ``redkit.web``'s adapters may import them.
_FRAMEWORKS = {"starlette", "fastapi", "flask", "werkzeug", "django"}
#: The deprecated re-exports of old paths, kept for one release: the only modules of the
#: features that reach the web adapters (and, through them, a framework). ``redkit.sessions``
#: names them for type checkers only; at run time it imports them on first use.
_OLD_PATHS = {"sessions/__init__.py", "sessions/asgi.py", "sessions/flask.py"}


def test_the_features_and_the_core_import_no_framework_and_no_web_adapter() -> None:
    """Every web adapter lives under ``redkit.web``: the features stay framework-free."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "src" / "redkit"
    reaching = set()
    for package in ("core", "cache", "ratelimit", "sessions"):
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    assert name.split(".")[0] not in _FRAMEWORKS, f"{path}: imports {name}"
                    if name.startswith("redkit.web"):
                        reaching.add(str(path.relative_to(root)))
    assert reaching == _OLD_PATHS


# -- headers ------------------------------------------------------------------------------------


def test_policies_of_each_algorithm() -> None:
    assert policies_for(FixedWindow(10, "1 m")) == (Policy("default", 10, 60),)
    assert policies_for(SlidingWindow(5, "500 ms"), "burst") == (Policy("burst", 5, 1),)
    assert policies_for(SlidingLog(3, "1 h")) == (Policy("default", 3, 3600),)
    # A bucket of 10 refilled by 2 every second is full again 5 s after it is emptied.
    assert policies_for(TokenBucket(2, "1 s", 10)) == (Policy("default", 10, 5),)
    # GCRA: 10 per minute in bursts of 5: a burst comes back in 30 s.
    assert policies_for(GCRA(10, "1 m", 5)) == (Policy("default", 5, 30),)
    multi = MultiLimit.of([SlidingWindow(10, "1 s"), FixedWindow(1000, "1 d")])
    assert policies_for(multi, "api") == (Policy("api-0", 10, 1), Policy("api-1", 1000, 86400))


def test_headers_of_an_admitted_request() -> None:
    result = RatelimitResult(True, 10, 7, NOW + 42_500)
    headers = ratelimit_headers(result, policies_for(FixedWindow(10, "1 m")), now_ms=NOW)
    assert headers == [
        ("RateLimit-Policy", '"default";q=10;w=60'),
        ("RateLimit", '"default";r=7;t=43'),
        ("X-RateLimit-Limit", "10"),
        ("X-RateLimit-Remaining", "7"),
        ("X-RateLimit-Reset", str(NOW // 1000 + 43)),
    ]


def test_headers_of_a_refusal() -> None:
    result = RatelimitResult(False, 10, 0, NOW + 30_000, retry_after=12.2)
    headers = dict(ratelimit_headers(result, (Policy("default", 10, 60),), now_ms=NOW))
    assert headers["RateLimit"] == '"default";r=0;t=13'  # never earlier than Retry-After
    assert headers["Retry-After"] == "13"
    assert headers["X-RateLimit-Reset"] == str(NOW // 1000 + 30)
    assert list(headers)[-1] == "Retry-After"


def test_header_switches() -> None:
    refusal = RatelimitResult(False, 10, 0, NOW + 1000, retry_after=0.2)
    policies = (Policy("default", 10, 60),)
    assert ratelimit_headers(refusal, policies, ietf=False, legacy=False, now_ms=NOW) == [
        ("Retry-After", "1")
    ]
    names = [n for n, _ in ratelimit_headers(refusal, policies, ietf=False, now_ms=NOW)]
    assert names == [
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
        "Retry-After",
    ]
    names = [n for n, _ in ratelimit_headers(refusal, policies, legacy=False, now_ms=NOW)]
    assert names == ["RateLimit-Policy", "RateLimit", "Retry-After"]


def test_headers_when_redis_did_not_answer() -> None:
    policies = (Policy("default", 10, 60),)
    allowed = RatelimitResult(True, 10, 0, 0, 0.0, "timeout")
    assert ratelimit_headers(allowed, policies, now_ms=NOW) == [
        ("RateLimit-Policy", '"default";q=10;w=60'),
        ("X-RateLimit-Limit", "10"),
    ]
    denied = RatelimitResult(False, 10, 0, 0, 0.0, "timeout")
    assert dict(ratelimit_headers(denied, policies, now_ms=NOW))["Retry-After"] == "1"


def test_headers_of_several_limits_name_the_one_that_refused() -> None:
    policies = policies_for(MultiLimit.of([SlidingWindow(10, "1 s"), FixedWindow(100, "1 d")]))
    refused = RatelimitResult(False, 100, 0, NOW + 5000, retry_after=5, refused_by=1)
    headers = dict(ratelimit_headers(refused, policies, now_ms=NOW))
    assert headers["RateLimit-Policy"] == '"default-0";q=10;w=1, "default-1";q=100;w=86400'
    assert headers["RateLimit"] == '"default-1";r=0;t=5'


@pytest.mark.parametrize(
    ("retry_after", "expected"), [(0.0, 1), (0.001, 1), (1.0, 1), (1.0001, 2), (59.5, 60)]
)
def test_retry_after_rounds_up_to_at_least_one(retry_after: float, expected: int) -> None:
    refusal = RatelimitResult(False, 1, 0, 0, retry_after=retry_after)
    assert retry_after_seconds(refusal) == expected


def test_body_and_policy_names_are_safe() -> None:
    assert too_many_requests_body(3) == b'{"error":"Too many requests","retryAfter":3}'
    assert Policy('a"b\\c\n', 1, 0).header_item() == '"a\\"b\\\\c?";q=1'


# A process where the framework is not installed: its modules cannot be found.
_WITHOUT = """
import sys
class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == sys.argv[1]:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Missing())
try:
    __import__(sys.argv[2])
except ModuleNotFoundError as exc:
    print(exc)
"""


@pytest.mark.parametrize(
    ("framework", "module", "extra"),
    [
        ("starlette", "redkit.web.fastapi", "fastapi"),
        ("starlette", "redkit.web.asgi", "starlette"),
        ("starlette", "redkit.web.starlette", "starlette"),  # the old path, for one release
        ("flask", "redkit.web.flask", "flask"),
    ],
)
def test_a_missing_framework_names_the_extra_to_install(
    framework: str, module: str, extra: str
) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT, framework, module],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert f"pip install 'redkit[{extra}]'" in done.stdout, done.stdout + done.stderr
