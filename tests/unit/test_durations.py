"""Durations as people write them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from redkit.core.durations import MAX_DURATION_MS, duration_ms
from redkit.core.errors import InvalidArgumentError


@pytest.mark.parametrize(
    ("value", "ms"),
    [
        ("10 s", 10_000), ("10s", 10_000), ("500 ms", 500), ("500ms", 500), ("1 m", 60_000),
        ("1 h", 3_600_000), ("1 d", 86_400_000), (" 2 m ", 120_000), (1, 1000), (0.25, 250),
        (timedelta(minutes=2), 120_000), (timedelta(milliseconds=1), 1),
    ],
)  # fmt: skip
def test_durations_in_every_accepted_form(value: object, ms: int) -> None:
    assert duration_ms(value) == ms  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10", "must look like"), ("10 sec", "must look like"), ("1.5 s", "must look like"),
        ("-1 s", "must look like"), ("s", "must look like"), ("", "must look like"),
        ("10  s", "must look like"), ("0 s", "at least 1 ms"), (0, "at least 1 ms"),
        (-5, "at least 1 ms"), (0.0001, "at least 1 ms"), (timedelta(0), "at least 1 ms"),
        (float("nan"), "finite"), (float("inf"), "finite"), (10**12, "at most 10 years"),
        ("4000 d", "at most 10 years"),
    ],
)  # fmt: skip
def test_bad_durations_say_what_is_wrong(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message) as raised:
        duration_ms(value, name="window")  # type: ignore[arg-type]
    assert "window" in str(raised.value)


@pytest.mark.parametrize("value", [None, b"10 s", [10], True])
def test_values_that_are_no_duration_at_all(value: object) -> None:
    with pytest.raises(TypeError, match="window must be"):
        duration_ms(value, name="window")  # type: ignore[arg-type]


def test_the_longest_duration_is_ten_years() -> None:
    assert duration_ms(f"{MAX_DURATION_MS // 86_400_000} d") == MAX_DURATION_MS


@pytest.mark.parametrize("text", ["\u0661 s", "1\u0660 ms", "9" * 5000 + " s", "\u00b2s"])
def test_durations_take_few_ascii_digits_only(text: str) -> None:
    with pytest.raises(InvalidArgumentError):
        duration_ms(text)


@pytest.mark.parametrize("text", ["\u0661/minute", "5/\u0662 seconds", "9" * 5000 + "/minute"])
def test_rates_take_few_ascii_digits_only(text: str) -> None:
    from redkit.ratelimit.rates import parse_rate

    with pytest.raises(InvalidArgumentError):
        parse_rate(text)
