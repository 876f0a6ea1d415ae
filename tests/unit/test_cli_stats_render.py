"""``redkit stats``'s table: timings read as durations, not as counts rounded to 0."""

from __future__ import annotations

import pytest

from redkit.cli.stats import render_stats
from redkit.stats import FleetStats
from redkit.stats.model import NameStats


def test_a_timing_sum_is_shown_as_a_duration(capsys: pytest.CaptureFixture[str]) -> None:
    counts = (("hits", 3), ("load_seconds", 0.25), ("load_timed", 2), ("misses", 2))
    entry = NameStats("cache", "products", ((60, counts),), 1)
    render_stats(FleetStats("minute", 60, 60, 60, (entry,)))
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "products" in line)
    cells = [cell.strip() for cell in row.replace("│", "|").split("|")]
    # name, processes, hits, load_seconds, load_timed, misses, hit ratio
    assert cells == ["products", "1", "3", "250 ms", "2", "2", "60.0%"]
