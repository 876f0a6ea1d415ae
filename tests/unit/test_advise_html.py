"""The HTML report: one page needing nothing else, charts as inline SVG, log strings only text."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from redkit.advise.html import render_html
from support.advise_examples import CACHE, RATELIMIT, emptied, with_nulls

ROOT = Path(__file__).resolve().parents[2]


class Page(HTMLParser):
    """Every element and attribute of a page, the text of each element, the text of all."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._open: list[str] = []
        self.rows: list[tuple[dict[str, str | None], list[str]]] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "tr":
            self.rows.append((dict(attrs), []))
        if tag in ("td", "th"):
            self.rows[-1][1].append("")

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self.rows and self.rows[-1][1] and self._in_cell():
            self.rows[-1][1][-1] += data

    def _in_cell(self) -> bool:
        return any(tag in ("td", "th") for tag, _ in self.tags[-1:])

    def all_text(self) -> str:
        return "".join(self.text)

    def elements(self, name: str) -> list[dict[str, str | None]]:
        return [attrs for tag, attrs in self.tags if tag == name]


@pytest.mark.parametrize("data", [CACHE, RATELIMIT], ids=["cache", "ratelimit"])
def test_the_page_needs_nothing_from_outside(data: dict) -> None:
    page = render_html(data)
    parsed = Page(page)
    assert "http://" not in page
    assert "https://" not in page
    for tag, attrs in parsed.tags:
        assert tag not in ("script", "link", "img", "iframe", "object", "embed"), tag
        for name, value in attrs.items():
            assert "//" not in (value or ""), (tag, name, value)
            assert not name.startswith("on"), (tag, name)
    hrefs = [a.get("href") or "" for a in parsed.elements("a")]
    assert hrefs
    assert all(h.startswith("#") for h in hrefs)  # the contents link inside the page only
    assert "<!DOCTYPE svg" not in page  # the SVG doctype names a remote DTD: dropped
    assert "<?xml" not in page
    csp = next(m for m in parsed.elements("meta") if m.get("http-equiv"))
    assert "default-src 'none'" in (csp["content"] or "")
    assert len(parsed.elements("style")) >= 1  # the CSS is inline


def test_the_cache_page_has_its_charts_numbers_and_code() -> None:
    page = render_html(CACHE)
    parsed = Page(page)
    # Overall and two namespaces, two charts each: by TTL and the miss-ratio curve.
    assert len(parsed.elements("svg")) == 6
    text = parsed.all_text()
    assert "Hit ratio and origin load by TTL: /api/users/{id}" in text
    assert "Miss ratio by memory: /api/products/{id}" in text
    assert "allkeys-lfu" in text
    chosen = [cells for attrs, cells in parsed.rows if attrs.get("class") == "chosen"]
    assert ["5 m", "66,348", "9,652", "87.3 %", "2.68/s", "0.41 %", "6.9 MiB", "241"] in chosen
    assert CACHE["namespaces"][0]["recommendation"]["code"] in text
    assert "staleness cannot be measured" in text
    assert "no timestamp" in text
    assert "2,291" in text


def test_the_ratelimit_page_has_its_charts_numbers_and_code() -> None:
    parsed = Page(render_html(RATELIMIT))
    assert len(parsed.elements("svg")) == 6  # rates and refusals, for overall and two routes
    text = parsed.all_text()
    assert "Requests per client: GET /api/search" in text
    assert "Refusals per candidate limit: POST /api/login" in text
    chosen = [cells for attrs, cells in parsed.rows if attrs.get("class") == "chosen"]
    assert chosen[0][:6] == ["sliding_window", "120", "1 m", "6.1 %", "1.0 %", "0.61 %"]
    assert any(
        cells[0] == "203.0.113.66" and cells[3] == "python-requests/2.31"
        for _, cells in parsed.rows
    )
    assert 'search_limit = Ratelimit(redis, SlidingWindow(120, "60 s"))' in text


ATTACKS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(2)>',
    "'><svg onload=alert(3)>",
    "</code></pre><script>alert(4)</script>",
    "--><script>alert(5)</script><!--",
    "$\\frac{1}{0}$ costs $5",  # mathtext, if matplotlib were handed it raw
]


def _attacked(data: dict) -> dict:
    data = copy.deepcopy(data)
    data["trace"]["source"] = ATTACKS[0]
    data["trace"]["format"] = ATTACKS[1]
    data["trace"]["malformed_examples"][0]["text"] = ATTACKS[3]
    data["trace"]["malformed_examples"][1]["reason"] = ATTACKS[2]
    if data["kind"] == "cache":
        data["settings"]["budget_bytes"] = None
        for index, ns in enumerate(data["namespaces"]):
            ns["name"] = ATTACKS[index]
            ns["recommendation"]["code"] = ATTACKS[3] + "\n" + ATTACKS[4]
            ns["recommendation"]["reason"] = ATTACKS[2]
            for row in ns["memory_rows"]:
                row["policy"] = ATTACKS[5] if row["policy"] == "allkeys-lru" else ATTACKS[1]
        data["overall"]["name"] = ATTACKS[5]
    else:
        data["settings"]["by"] = ATTACKS[2]
        for index, route in enumerate(data["routes"]):
            route["name"] = ATTACKS[index]
            route["recommendation"]["code"] = ATTACKS[3]
            for talker_index, talker in enumerate(route["top_talkers"]):
                talker["user_agent"] = ATTACKS[talker_index % len(ATTACKS)]
                talker["client"] = ATTACKS[(talker_index + 1) % len(ATTACKS)]
            for candidate in route["candidates"]:
                candidate["refused_top"][0]["client"] = ATTACKS[4]
                if candidate["algorithm"] == "gcra":
                    candidate["algorithm"] = ATTACKS[5]
        data["overall"]["name"] = ATTACKS[5]
    return data


@pytest.mark.parametrize("data", [CACHE, RATELIMIT], ids=["cache", "ratelimit"])
def test_strings_from_the_log_stay_text_in_the_page_and_its_charts(data: dict) -> None:
    page = render_html(_attacked(data))
    parsed = Page(page)
    assert parsed.elements("script") == []
    assert parsed.elements("img") == []
    assert len(parsed.elements("svg")) == 6  # matplotlib's own, and no injected one
    assert all(not name.startswith("on") for _, attrs in parsed.tags for name in attrs)
    text = parsed.all_text()
    for attack in ATTACKS:
        assert attack in text, attack  # shown, as text
    assert "<script" not in page
    assert "<img" not in page
    # Inside the charts too: a chart title carries a namespace or route name, escaped, and a
    # "$" stays a dollar (matplotlib would otherwise typeset it as mathematics).
    charts = "".join(part.split("</svg>")[0] for part in page.split("<svg")[1:])
    assert ": &lt;script&gt;alert(1)&lt;/script&gt;</text>" in charts
    assert ": $\\frac{1}{0}$ costs $5</text>" in charts


@pytest.mark.parametrize("data", [CACHE, RATELIMIT], ids=["cache", "ratelimit"])
def test_every_nullable_field_null_still_renders(data: dict) -> None:
    parsed = Page(render_html(with_nulls(data)))
    text = parsed.all_text()
    assert "— to —" in text
    assert len(parsed.elements("svg")) == 6


@pytest.mark.parametrize("data", [CACHE, RATELIMIT], ids=["cache", "ratelimit"])
def test_an_analysis_of_nothing_renders_without_charts(data: dict) -> None:
    parsed = Page(render_html(emptied(data)))
    # Only the rates chart of a route is left: its percentiles are numbers, not rows.
    assert len(parsed.elements("svg")) == (0 if data["kind"] == "cache" else 1)
    assert "Overall" in parsed.all_text()


def test_the_callers_matplotlib_backend_and_pyplot_are_left_alone() -> None:
    code = f"""
import json, sys
import matplotlib
matplotlib.use("pdf")
sys.path.insert(0, {str(ROOT / "tests")!r})
from support.advise_examples import CACHE, RATELIMIT
from redkit.advise.html import render_html
render_html(CACHE)
render_html(RATELIMIT)
print(json.dumps([matplotlib.rcParams["backend"], "matplotlib.pyplot" in sys.modules,
                  matplotlib.rcParams["svg.fonttype"]]))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    backend, pyplot_loaded, fonttype = json.loads(done.stdout.splitlines()[-1])
    assert backend == "pdf"
    assert pyplot_loaded is False
    assert fonttype == "path"  # the page's chart settings were undone
