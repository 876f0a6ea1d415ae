"""Tests that count a window's decisions: start early enough in it not to straddle two."""

from __future__ import annotations

import time

__all__ = ["early_in_window"]


def early_in_window(window_s: int, needed_s: float = 3.0) -> None:
    """Wait for the next window when this one ends within ``needed_s``.

    The windows are aligned to the epoch; requests that straddle a boundary are rightly
    counted in two windows (the sliding window weights the previous one), which would blur
    "the 11th request is refused".
    """
    left = window_s - time.time() % window_s
    if left < needed_s:
        time.sleep(left + 0.05)
