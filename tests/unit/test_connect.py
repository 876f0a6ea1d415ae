"""URL and environment validation: clear, typed errors naming the variable (no server)."""

from __future__ import annotations

import pytest
import redis

from redkit import Connection, RestConnection, connect, from_env
from redkit.core.driver import as_backend, scripts_declare_keys
from redkit.core.errors import ConfigurationError
from redkit.drivers.connect import mask_url


@pytest.mark.parametrize(
    ("url", "cluster"),
    [
        ("redis://localhost:6379/0", False),
        ("redis://:secret@localhost", False),
        ("rediss://user:pw@example.com:6380", False),
        ("unix:///run/redis.sock", False),
        ("redis+cluster://127.0.0.1:7000", True),
        ("rediss+cluster://node.example:7000/0", True),
    ],
)
def test_supported_urls_are_accepted_without_connecting(url: str, cluster: bool) -> None:
    conn = connect(url)
    assert conn.is_cluster is cluster


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("localhost:6379", "unknown scheme"),
        ("memcached://localhost", "unknown scheme"),
        ("redis://", "no host"),
        ("redis://localhost:notaport", "Port"),
        ("redis://localhost:70000", "Port"),
        ("redis://localhost:0", "port 0"),
        ("redis://localhost/abc", "database must be a number"),
        ("redis+cluster://localhost:7000/3", "only database 0"),
        ("unix://", "socket path"),
        ("https://eu1-x.upstash.io", "token"),
    ],
)
def test_malformed_urls_raise_configuration_error(url: str, why: str) -> None:
    with pytest.raises(ConfigurationError, match=why):
        connect(url)


def test_a_non_string_url_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="expected a string"):
        connect(6379)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, -1, "5", True, float("nan")])
def test_timeouts_must_be_positive_numbers(value: object) -> None:
    with pytest.raises(ConfigurationError, match="socket_timeout"):
        connect("redis://localhost", socket_timeout=value)


def test_from_env_reads_redis_url() -> None:
    conn = from_env({"REDIS_URL": "redis+cluster://10.0.0.1:7000"})
    assert conn.is_cluster


def test_from_env_names_the_variable_when_missing() -> None:
    with pytest.raises(ConfigurationError, match="REDIS_URL is not set") as info:
        from_env({})
    assert info.value.variable == "REDIS_URL"


def test_from_env_names_the_variable_when_malformed() -> None:
    with pytest.raises(ConfigurationError, match="REDIS_URL is not a usable Redis URL") as info:
        from_env({"REDIS_URL": "localhost:6379"})
    assert info.value.variable == "REDIS_URL"


@pytest.mark.parametrize(
    ("env", "url", "token_variable"),
    [
        (
            {"UPSTASH_REDIS_REST_URL": "https://x.upstash.io", "UPSTASH_REDIS_REST_TOKEN": "t"},
            "https://x.upstash.io",
            "UPSTASH_REDIS_REST_TOKEN",
        ),
        (
            {"KV_REST_API_URL": "https://kv.upstash.io/", "KV_REST_API_TOKEN": "t"},
            "https://kv.upstash.io",
            "KV_REST_API_TOKEN",
        ),
        (  # Upstash's own variables win over Vercel's
            {
                "KV_REST_API_URL": "https://kv.upstash.io",
                "KV_REST_API_TOKEN": "t",
                "UPSTASH_REDIS_REST_URL": "https://x.upstash.io",
                "UPSTASH_REDIS_REST_TOKEN": "t",
            },
            "https://x.upstash.io",
            "UPSTASH_REDIS_REST_TOKEN",
        ),
    ],
)
def test_from_env_reads_upstash_rest_variables(
    env: dict[str, str], url: str, token_variable: str
) -> None:
    conn = from_env(env)
    assert isinstance(conn, RestConnection)
    assert conn.url == url
    assert not conn.is_cluster
    assert conn.key_locking  # https: Upstash itself
    assert conn._settings.token_name == token_variable


def test_from_env_prefers_redis_url_over_rest_variables() -> None:
    env = {"REDIS_URL": "redis://localhost", "UPSTASH_REDIS_REST_URL": "https://x.upstash.io"}
    assert isinstance(from_env(env), Connection)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"UPSTASH_REDIS_REST_URL": "https://x.upstash.io"}, "UPSTASH_REDIS_REST_TOKEN"),
        ({"KV_REST_API_URL": "https://x.upstash.io", "KV_REST_API_TOKEN": ""}, "KV_REST_API_TOKEN"),
    ],
)
def test_from_env_names_a_missing_rest_token(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named) as info:
        from_env(env)
    assert info.value.variable == named


def test_from_env_names_a_malformed_rest_url() -> None:
    env = {"UPSTASH_REDIS_REST_URL": "ftp://x.upstash.io", "UPSTASH_REDIS_REST_TOKEN": "t"}
    with pytest.raises(ConfigurationError, match="UPSTASH_REDIS_REST_URL") as info:
        from_env(env)
    assert info.value.variable == "UPSTASH_REDIS_REST_URL"


def test_connect_gives_a_rest_connection_for_http_urls_with_a_token() -> None:
    conn = connect("https://eu1-x.upstash.io/", token="secret-token")
    assert isinstance(conn, RestConnection)
    assert conn.url == "https://eu1-x.upstash.io"
    assert conn.key_locking
    assert conn.scripts_declare_keys
    assert "secret-token" not in repr(conn)
    local = connect("http://127.0.0.1:8080", token="t")
    assert isinstance(local, RestConnection)
    assert not local.key_locking  # a local gateway (or SRH) may not strip the line
    assert connect("http://127.0.0.1:8080", token="t", key_locking=True).key_locking


@pytest.mark.parametrize(
    ("url", "options", "why"),
    [
        ("https://x.upstash.io", {}, "token"),
        ("https://x.upstash.io", {"token": ""}, "token is missing"),
        ("https://x.upstash.io", {"token": "a b"}, "whitespace"),
        ("https://user:pw@x.upstash.io", {"token": "t"}, "not in the URL"),
        ("https://x.upstash.io?_token=t", {"token": "t"}, "query"),
        ("https://", {"token": "t"}, "no host"),
        ("https://x.upstash.io", {"token": "t", "socket_timeout": 0}, "socket_timeout"),
        ("https://x.upstash.io", {"token": "t", "retries": -1}, "retries"),
    ],
)
def test_malformed_rest_settings_raise_configuration_error(
    url: str, options: dict[str, object], why: str
) -> None:
    with pytest.raises(ConfigurationError, match=why):
        connect(url, **options)  # type: ignore[arg-type]


def test_redis_py_connections_let_scripts_build_keys() -> None:
    assert not scripts_declare_keys(connect("redis://localhost"))
    assert not scripts_declare_keys(as_backend(redis.Redis()))
    assert not scripts_declare_keys(object())


def test_passwords_never_appear_in_reprs_or_errors() -> None:
    assert mask_url("redis://user:hunter2@host:1/0") == "redis://user:***@host:1/0"
    assert "hunter2" not in repr(connect("redis://user:hunter2@host:6379"))
    with pytest.raises(ConfigurationError) as info:
        connect("redis://:hunter2@host:99999")
    assert "hunter2" not in str(info.value)


def test_connection_is_a_backend_and_strings_and_clients_adapt() -> None:
    conn = connect("redis://localhost")
    assert as_backend(conn) is conn
    assert isinstance(as_backend("redis://localhost"), Connection)
    client = redis.Redis()
    backend = as_backend(client)
    assert backend.sync_driver().client is client  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="Async"):
        backend.async_driver()
    with pytest.raises(TypeError, match="expected a redkit Connection"):
        as_backend(42)


def test_a_text_decoding_client_is_refused_up_front() -> None:
    with pytest.raises(ConfigurationError, match="decode_responses=False"):
        as_backend(redis.Redis(decode_responses=True)).sync_driver()
