"""``redkit advise``: the command line, in process and as a subprocess, on the shipped sample."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

from redkit.advise.readers import read_trace
from redkit.advise.report import check_schema
from redkit.advise.sample import (
    BOT_ADDRESS,
    BOT_USER_AGENT,
    SAMPLE_REQUESTS,
    generate_log,
    sample_log,
)
from redkit.cli import main

SRC = Path(__file__).resolve().parents[2] / "src"


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    """``python -m redkit ...`` in a fresh interpreter, as a user's shell runs it."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run(
        [sys.executable, "-m", "redkit", *argv],
        capture_output=True, text=True, timeout=300, check=False, env=env,
    )  # fmt: skip


def one_line_error(capsys: pytest.CaptureFixture[str], code: int) -> str:
    out, err = capsys.readouterr()
    assert code == 2, err
    assert out == ""
    assert err.startswith("redkit: error: ")
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "access.log"
    generate_log(path, requests=300, seed=3)
    return path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["cache", "--budget", "lots"], "--budget"),
        (["cache", "--budget", "0"], "--budget"),
        (["cache", "--max-stale", "soon"], "--max-stale"),
        (["cache", "--max-stale=-5s"], "--max-stale"),
        (["cache", "--loader-ms=-1"], "--loader-ms"),
        (["cache", "--loader-ms", "fast"], "--loader-ms"),
        (["cache", "--ttl", "forever"], "--ttl"),
        (["cache", "--key-pattern", "no-equals-sign"], "--key-pattern"),
        (["cache", "--key-pattern", "([=users"], "--key-pattern"),
        (["cache", "--format", "xml"], "--format"),
        (["ratelimit", "--by", "mac"], "--by"),
        (["ratelimit", "--by", "header:"], "--by"),
        (["ratelimit", "--protect", "150"], "--protect"),
        (["ratelimit", "--protect", "nan"], "--protect"),
        (["ratelimit", "--tier-by", "plan"], "--tier-by"),
        (["ratelimit", "--format", "xml"], "--format"),
        # A header asked of a log that has none (the Combined format logs no headers).
        (["ratelimit", "--by", "header:X-API-Key"], "header"),
    ],
)
def test_a_bad_flag_is_one_line_naming_it_and_exit_2(
    capsys: pytest.CaptureFixture[str], log: Path, argv: list[str], message: str
) -> None:
    err = one_line_error(capsys, main(["advise", argv[0], str(log), *argv[1:]]))
    assert message in err


def test_a_missing_empty_or_unreadable_log_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "nope.log"
    assert str(missing) in one_line_error(capsys, main(["advise", "cache", str(missing)]))
    empty = tmp_path / "empty.log"
    empty.write_text("")
    assert "empty" in one_line_error(capsys, main(["advise", "ratelimit", str(empty)]))
    assert "directory" in one_line_error(capsys, main(["advise", "cache", str(tmp_path)]))
    garbage = tmp_path / "garbage.log"
    garbage.write_bytes(b"\x00\xff not a log\n" * 3)
    assert "garbage.log" in one_line_error(capsys, main(["advise", "cache", str(garbage)]))


def test_a_log_or_the_sample_is_needed_not_both(
    capsys: pytest.CaptureFixture[str], log: Path
) -> None:
    assert "--sample" in one_line_error(capsys, main(["advise", "cache"]))
    assert "not both" in one_line_error(capsys, main(["advise", "ratelimit", str(log), "--sample"]))


def test_an_html_report_that_cannot_be_written_fails_before_the_analysis(
    capsys: pytest.CaptureFixture[str], log: Path, tmp_path: Path
) -> None:
    err = one_line_error(
        capsys, main(["advise", "cache", str(log), "--html", str(tmp_path / "no" / "r.html")])
    )
    assert "--html" in err
    assert "does not exist" in err
    assert "--html" in one_line_error(
        capsys, main(["advise", "cache", str(log), "--html", str(tmp_path)])
    )


def test_errors_as_a_subprocess_too(tmp_path: Path) -> None:
    done = run("advise", "cache", str(tmp_path / "nope.log"), "--budget", "256MB")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1
    assert "nope.log" in done.stderr
    assert "Traceback" not in done.stderr
    done = run("advise", "ratelimit", "--sample", "--by", "mac")
    assert (done.returncode, done.stderr.count("\n")) == (2, 1)
    assert "--by" in done.stderr


def test_the_sample_command_writes_a_generated_log(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "gen.log"
    assert main(["advise", "sample", str(out), "--requests", "400", "--seed", "5"]) == 0
    assert "400" in capsys.readouterr().err
    again = tmp_path / "again.log"
    generate_log(again, requests=400, seed=5, clients=2000)
    assert out.read_bytes() == again.read_bytes()
    assert len(read_trace(out)) == 400
    assert main(["advise", "sample", "-", "--requests", "50"]) == 0
    assert capsys.readouterr().out.count("\n") == 50
    err = one_line_error(capsys, main(["advise", "sample", str(out), "--requests", "0"]))
    assert "requests" in err


def test_the_sample_is_where_the_help_says(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["advise", "--help"])
    assert exited.value.code == 0
    assert "redkit advise cache --sample" in capsys.readouterr().out
    assert sample_log().is_file()


# What the report of each kind must show on the sample: its routes and a recommendation.
ROUTES = {
    "cache": ("/api/search", "/api/products/{id}", "/api/users/{id}"),
    "ratelimit": ("/api/search", "/api/products/{id}", "/api/users/{id}"),
}
CODE = {"cache": "Cache(", "ratelimit": "Ratelimit(redis, "}


@pytest.mark.parametrize("kind", sorted(ROUTES))
def test_the_terminal_report_on_the_sample(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["advise", kind, "--sample"]) == 0
    out, err = capsys.readouterr()
    assert err == ""  # no progress bar off a terminal
    for route in ROUTES[kind]:
        assert route in out
    assert "Recommendation" in out
    assert CODE[kind] in out


@pytest.mark.parametrize("kind", sorted(ROUTES))
def test_json_on_the_sample_is_the_schema_and_nothing_else(kind: str, tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    done = run("advise", kind, "--sample", "--json", "--html", str(html))
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)  # stdout is the JSON alone
    assert check_schema(data) == kind
    assert data["trace"]["requests"] == SAMPLE_REQUESTS
    assert data["trace"]["malformed"] == 0
    names = {entry["name"] for entry in data["routes" if kind == "ratelimit" else "namespaces"]}
    assert set(ROUTES[kind]) <= names
    assert CODE[kind] in data["overall"]["recommendation"]["code"]
    page = html.read_text(encoding="utf-8")
    assert page.lstrip().lower().startswith("<!doctype html")
    assert "<svg" in page or "<img" in page
    assert str(html) in done.stderr


def test_ratelimit_by_user_and_the_bot_on_the_search_route(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["advise", "ratelimit", "--sample", "--json", "--protect", "99.5"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["settings"]["protect"] == 99.5
    search = next(route for route in data["routes"] if route["name"] == "/api/search")
    assert search["top_talkers"][0]["client"] == BOT_ADDRESS
    assert search["top_talkers"][0]["user_agent"] == BOT_USER_AGENT
    assert search["recommendation"]["refused_heavy_clients"] >= 1
    assert main(["advise", "ratelimit", "--sample", "--json", "--by", "user"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["settings"]["by"] == "user"
    assert BOT_ADDRESS not in {t["client"] for t in data["overall"]["top_talkers"]}


def test_ratelimit_by_a_header_with_tiers_from_a_json_log(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # nginx's JSON log with two request headers: an API key and its plan.
    lines = []
    for second in range(1200):
        for key, plan, every in (("k-heavy", "free", 1), ("k-a", "free", 20), ("k-b", "pro", 7)):
            if second % every == 0:
                entry = {
                    "msec": f"{1764662400 + second}.250",
                    "remote_addr": "192.0.2.10",
                    "request": f"GET /api/items/{second % 50} HTTP/1.1",
                    "status": 200,
                    "body_bytes_sent": 900,
                    "http_x_api_key": key,
                    "http_x_plan": plan,
                }
                lines.append(json.dumps(entry))
    log = tmp_path / "api.jsonl"
    log.write_text("\n".join(lines) + "\n")
    argv = ["advise", "ratelimit", str(log), "--by", "header:X-API-Key"]
    assert main([*argv, "--tier-by", "header:X-Plan", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["settings"]["by"] == "header:X-API-Key"
    assert data["settings"]["tier_by"] == "header:X-Plan"
    assert data["overall"]["top_talkers"][0]["client"] == "k-heavy"
    assert "TieredRatelimit" in json.dumps(data)


def test_the_progress_bar_shows_only_on_a_terminal(tmp_path: Path) -> None:
    main_fd, replica = os.openpty()
    try:
        env = {**os.environ, "PYTHONPATH": str(SRC), "TERM": "xterm"}
        env.pop("NO_COLOR", None)
        done = subprocess.run(
            [sys.executable, "-m", "redkit", "advise", "ratelimit", "--sample", "--json"],
            stdout=subprocess.PIPE, stderr=replica, timeout=300, check=False, env=env,
        )  # fmt: skip
        os.close(replica)
        replica = -1
        drawn = b""
        while select.select([main_fd], [], [], 0.5)[0]:
            try:
                chunk = os.read(main_fd, 65536)
            except OSError:  # the terminal is gone once the child has exited
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(main_fd)
        if replica >= 0:
            os.close(replica)
    assert done.returncode == 0
    json.loads(done.stdout)  # the bar never reaches stdout
    assert b"reading the sample log" in drawn


def test_cache_flags_reach_the_advice(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["advise", "cache", "--sample", "--json", "--budget", "64MB", "--max-stale", "30s"]
    assert main([*argv, "--loader-ms", "20", "--ttl", "45s"]) == 0
    data = json.loads(capsys.readouterr().out)
    settings = data["settings"]
    assert settings["budget_bytes"] == 64_000_000
    assert settings["max_stale_s"] == 30.0
    assert settings["loader_ms"] == 20.0
    assert 45.0 in settings["ttls_s"]
    assert settings["ttls_s"] == sorted(settings["ttls_s"])
    assert len(settings["ttls_s"]) >= 13  # the usual ones, and the user's
    for ns in data["namespaces"]:
        stale = ns["recommendation"]["stale_ttl_s"]
        assert stale is None or stale <= 30.0
    # A key pattern names a namespace.
    argv = ["advise", "cache", "--sample", "--json", "--key-pattern", "^/api/users/=people"]
    assert main(argv) == 0
    names = {ns["name"] for ns in json.loads(capsys.readouterr().out)["namespaces"]}
    assert "people" in names
    assert "/api/users/{id}" not in names


def test_the_stale_hits_allowed_is_a_flag(capsys: pytest.CaptureFixture[str]) -> None:
    # The sample's products are written to: at 1 % of stale hits allowed, a short TTL wins;
    # a service that invalidates on every write can allow them all and get the long one.
    products = "/api/products/{id}"
    chosen = {}
    for percent in ("1", "100"):
        argv = ["advise", "cache", "--sample", "--json", "--max-stale-hits", percent]
        assert main(argv) == 0
        data = json.loads(capsys.readouterr().out)
        assert data["settings"]["max_stale_share"] == float(percent) / 100
        ns = next(n for n in data["namespaces"] if n["name"] == products)
        chosen[percent] = ns["recommendation"]
    assert chosen["1"]["stale_hit_share"] <= 0.01
    assert chosen["100"]["ttl_s"] > chosen["1"]["ttl_s"]
    assert chosen["100"]["hit_ratio"] > chosen["1"]["hit_ratio"]
    assert main(["advise", "cache", "--sample", "--max-stale-hits", "101"]) == 2
    assert "--max-stale-hits" in capsys.readouterr().err


def test_a_recorded_trace_is_read_as_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # What TraceRecorder.to_file writes: a header, then events (docs/advise-recorder.md).
    path = tmp_path / "trace.jsonl"
    events = [{"redkit_trace": 1, "sample": 1.0, "hashed": True, "started": 1e9, "keys_id": "k"}]
    for second, (op, key) in enumerate(
        [("miss", "a"), ("load", "a"), ("hit", "a"), ("hit", "a"), ("miss", "b"), ("load", "b")]
    ):
        events.append(
            {"ts": 1e9 + second, "kind": "cache", "op": op, "ns": "users", "key": key,
             "size": 100, "ttl": 300.0, "load_ms": 5.0, "remaining": None}
        )  # fmt: skip
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    assert main(["advise", "cache", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["trace"]["requests"] == 4  # the reads; a load is the cache's, not a caller's
    (users,) = data["namespaces"]
    assert users["name"] == "users"
    assert users["reads"] == 4
    assert users["ttl_rows"][-1]["hits"] == 2
    # Alone, and without --key-pattern: both say so in one line.
    assert main(["advise", "cache", str(path), str(sample_log())]) == 2
    assert "recorded trace" in one_line_error(capsys, 2)
    assert main(["advise", "cache", str(path), "--key-pattern", "a=b"]) == 2
    assert "--key-pattern" in one_line_error(capsys, 2)
