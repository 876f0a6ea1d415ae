"""The terminal report: the advice dict's numbers and code, at any width, with nulls, safely."""

from __future__ import annotations

import copy
import os
import select
import time

import pytest

from redkit.advise import _units
from redkit.advise.report import clean, progress_callback, render_text
from redkit.core.errors import InvalidArgumentError
from support.advise_examples import CACHE, RATELIMIT, emptied, with_nulls


def test_the_cache_report_shows_each_ttl_row_and_the_pasteable_code() -> None:
    text = render_text(CACHE)
    assert "access.log (combined)" in text
    assert "120,000 requests from 120,004 lines" in text
    assert "2025-12-02 09:00:00Z" in text
    # The malformed lines, with their numbers and reasons.
    assert "4 malformed lines" in text
    for line, reason in (("17", "no timestamp"), ("2,291", "status is not a number")):
        assert any(line in row and reason in row for row in text.splitlines())
    users = text[text.index("Namespace /api/users/{id}") :]
    # The recommended TTL's row of /api/users/{id}: hits, misses, ratio, load, stale, coalesced.
    row = next(r for r in users.splitlines() if r.lstrip().startswith("▶"))
    assert row.split() == [
        "▶", "5", "m", "66,348", "9,652", "87.3", "%", "2.68/s", "0.41", "%", "6.9", "MiB", "241",
    ]  # fmt: skip
    # The miss-ratio curve, a column per policy.
    assert "allkeys-lru" in users
    assert "volatile-ttl" in users
    assert any(r.split()[:4] == ["64", "MiB", "81.2", "%"] for r in users.splitlines())
    assert "early refresh (XFetch) would turn 1,830 misses" in users
    assert "stale_ttl of 30 s, 950 more" in users
    assert "stale_ttl 30 s, local_ttl 5 s, memory 64 MiB" in users
    for code_line in CACHE["namespaces"][0]["recommendation"]["code"].splitlines():
        assert code_line in text.splitlines()  # whole lines, unindented: they paste as they are


def test_a_namespace_without_writes_says_staleness_cannot_be_measured() -> None:
    text = render_text(CACHE)
    products = text[text.index("Namespace /api/products/{id}") :]
    users = text[text.index("Namespace /api/users/{id}") : text.index("Namespace /api/products")]
    assert "staleness cannot be measured" in products
    assert "staleness cannot be measured" not in users


def test_the_ratelimit_report_shows_rates_talkers_candidates_and_code() -> None:
    text = render_text(RATELIMIT)
    assert "Clients by ip, protecting 99 %" in text
    assert "refuse at most 1 % of ordinary clients' requests" in text
    search = text[text.index("Route GET /api/search") : text.index("Route POST /api/login")]
    rows = search.splitlines()
    assert next(r for r in rows if "per minute" in r).split() == [
        "per", "minute", "2/min", "9/min", "38/min", "1,480/min",
    ]  # fmt: skip
    assert next(r for r in rows if "busiest 1 s" in r).split()[-3:] == ["—", "6", "52"]
    # Top talkers with their user agents, so the bots show.
    assert any("203.0.113.66" in r and "python-requests/2.31" in r for r in rows)
    assert any("198.51.100.7" in r and "Googlebot/2.1" in r for r in rows)
    # The recommended candidate is marked, with its refused shares.
    chosen = next(r for r in rows if r.lstrip().startswith("▶"))
    assert chosen.split()[:9] == [
        "▶", "sliding_window", "120", "1", "m", "6.1", "%", "1.0", "%",
    ]  # fmt: skip
    assert "sliding_window, 120 per 1 m → refuses 0.61 %" in search
    assert 'search_limit = Ratelimit(redis, SlidingWindow(120, "60 s"))' in rows
    assert "candidate" in search.lower()


@pytest.mark.parametrize("data", [CACHE, RATELIMIT], ids=["cache", "ratelimit"])
def test_every_nullable_field_null_still_renders_with_dashes(data: dict) -> None:
    text = render_text(with_nulls(data))
    assert "— to —" in text  # the trace's unknown start and end
    assert "Traceback" not in text
    if data["kind"] == "cache":
        assert "Memory budget none, staleness budget none" in text
        assert "mean size —" in text
        assert "stale_ttl of" not in text  # no stale_ttl to speak of
        assert "→ hit ratio 87.3 %" in text
    else:
        assert any("192.0.2.14" in r and r.rstrip().endswith("—") for r in text.splitlines())


@pytest.mark.parametrize("data", [CACHE, RATELIMIT], ids=["cache", "ratelimit"])
def test_an_analysis_of_nothing_renders(data: dict) -> None:
    text = render_text(emptied(data))
    assert "malformed" not in text
    assert "Overall" in text
    assert "Namespace" not in text
    assert "Route" not in text


@pytest.mark.parametrize("width", [60, 80, 100, 160])
@pytest.mark.parametrize("data", [CACHE, RATELIMIT], ids=["cache", "ratelimit"])
def test_no_line_is_wider_than_asked(data: dict, width: int) -> None:
    text = render_text(data, width=width)
    assert max(len(line) for line in text.splitlines()) <= width
    # Narrow or wide, the numbers are all there: the recommended TTL or limit.
    assert "87.3 %" in text if data["kind"] == "cache" else "0.61 %" in text


def test_plain_unless_colour_is_asked_for() -> None:
    assert "\x1b[" not in render_text(CACHE)
    assert "\x1b[" in render_text(CACHE, color=True)


def test_strings_from_the_log_are_neither_markup_nor_terminal_controls() -> None:
    data = copy.deepcopy(RATELIMIT)
    data["routes"][0]["name"] = "[bold red]GET /x[/bold red]"
    data["routes"][0]["top_talkers"][0]["user_agent"] = "evil\x1b]0;owned\x07\x1b[2J bot"
    data["trace"]["malformed_examples"][0]["text"] = "line\rwith\x00controls"
    text = render_text(data, color=True)
    assert "[bold red]GET /x[/bold red]" in text  # shown as written, not styled
    assert "\x1b]" not in text
    assert "\x07" not in text
    assert "\x1b[2J" not in text
    assert "evil\\x1b]0;owned\\x07\\x1b[2J bot" in text
    assert "line\\x0dwith\\x00controls" in text


def test_clean_keeps_newlines_only_when_asked() -> None:
    assert clean("a\nb\tc\x9b") == "a\\x0ab\\x09c\\x9b"
    assert clean("a\nb\x1b", newlines=True) == "a\nb\\x1b"
    assert clean(None) == ""


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"schema": "other/1", "kind": "cache"}, "schema 'other/1'"),
        ({"schema": "redkit.advise/1", "kind": "sessions"}, "'sessions'"),
    ],
)
def test_a_dict_of_another_schema_is_refused_by_name(data: dict, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        render_text(data)


def test_the_progress_bar_is_silent_off_a_terminal(tmp_path) -> None:
    path = tmp_path / "err.txt"
    with path.open("w") as file, progress_callback("reading access.log", file=file) as update:
        update(10, 100)
        update(100, 100)
    assert path.read_text() == ""


@pytest.mark.parametrize(
    ("unit", "done", "total", "shown"),
    [("bytes", 512 * 1024, 1024 * 1024, b"0.5/1.0 MB"), ("steps", 3, 12, b"3/12")],
)
def test_the_progress_bar_draws_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, unit: str, done: int, total: int, shown: bytes
) -> None:
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.delenv("NO_COLOR", raising=False)
    main, replica = os.openpty()  # a real terminal device, as a user's shell has
    try:
        with os.fdopen(replica, "w", closefd=False) as tty:
            with progress_callback("reading access.log", file=tty, unit=unit) as update:
                update(done, total)
                time.sleep(0.3)  # past rich's refresh period, so a frame is drawn
            tty.flush()
        drawn = b""
        while select.select([main], [], [], 0.5)[0]:
            chunk = os.read(main, 65536)
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(main)
        os.close(replica)
    assert b"reading access.log" in drawn
    assert shown in drawn


def test_the_progress_bar_knows_its_units() -> None:
    with pytest.raises(InvalidArgumentError, match="unit"), progress_callback("x", unit="lines"):
        pass  # pragma: no cover


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("256MB", 256_000_000),
        ("256 MiB", 256 * 2**20),
        ("1.5 GiB", 3 * 2**29),
        ("1.5gib", 3 * 2**29),
        ("1048576", 1048576),
        ("12 B", 12),
        ("2kb", 2000),
    ],
)
def test_sizes_read_si_and_iec_units(text: str, size: int) -> None:
    assert _units.parse_size(text, name="--budget") == size


@pytest.mark.parametrize("text", ["lots", "", "-1MB", "1e9", "5 MBs", "0", "0.1"])
def test_a_bad_size_names_the_flag_and_the_units(text: str) -> None:
    with pytest.raises(InvalidArgumentError, match="--budget") as caught:
        _units.parse_size(text, name="--budget")
    assert "byte" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("30 s", 30.0), ("5m", 300.0), ("1 h", 3600.0), ("250ms", 0.25), ("2.5", 2.5)],
)
def test_durations_read_as_redkit_reads_them(text: str, seconds: float) -> None:
    assert _units.parse_seconds(text, name="--ttl") == seconds


def test_zero_is_a_duration_only_where_allowed() -> None:
    assert _units.parse_seconds("0", name="--max-stale", allow_zero=True) == 0.0
    assert _units.parse_seconds("0s", name="--max-stale", allow_zero=True) == 0.0
    with pytest.raises(InvalidArgumentError, match="--ttl must be at least 1 ms"):
        _units.parse_seconds("0", name="--ttl")


@pytest.mark.parametrize("text", ["soon", "1.5 s", "-3", "30 sec", "20 y"])
def test_a_bad_duration_names_the_flag(text: str) -> None:
    with pytest.raises(InvalidArgumentError, match="--max-stale"):
        _units.parse_seconds(text, name="--max-stale", allow_zero=True)


def test_formats() -> None:
    assert [_units.format_bytes(v) for v in (512, 1280, 64 * 2**20, 2**30, None)] == [
        "512 B", "1.2 KiB", "64 MiB", "1 GiB", "—",
    ]  # fmt: skip
    assert [_units.format_seconds(v) for v in (0.25, 30, 90, 86400, 0, None)] == [
        "250 ms", "30 s", "1.5 m", "1 d", "0 s", "—",
    ]  # fmt: skip
    assert [_units.format_share(v) for v in (0.873, 0.0041, 0, float("nan"))] == [
        "87.3 %", "0.41 %", "0.0 %", "—",
    ]  # fmt: skip
    assert _units.format_rate(1480, "min") == "1,480/min"
    assert _units.format_time(None) == "—"


def test_print_report_writes_plain_text_off_a_terminal() -> None:
    import io

    from redkit.advise.report import print_report

    out = io.StringIO()
    print_report(RATELIMIT, file=out)
    assert "\x1b[" not in out.getvalue()
    assert 'search_limit = Ratelimit(redis, SlidingWindow(120, "60 s"))' in out.getvalue()
