"""The dashboard in a real browser: Debian's Chromium, driven by Playwright.

Each page is loaded against a Redis that the test filled through redkit, the figures shown are
compared with what the test did, one action is done by clicking (log in, revoke, reset), and
each page is photographed at a desktop and a phone width (``REDKIT_SCREENSHOTS`` names the
directory to keep them in; a temporary one otherwise). The page must load with no console
error: a script, a style or an image that the Content-Security-Policy blocks would log one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from redkit import Ratelimit, SessionStore
from redkit.drivers.connect import Connection
from support.dashboard import (
    ADMIN,
    HOSTILE,
    LIMIT,
    READ,
    fill,
    fill_fleet,
    keys_and_no_ttl,
    running_dashboard,
)  # fmt: skip

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"no Chromium at {CHROMIUM}: `apt-get install chromium` (.ci/run does it as root)",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    kept = os.environ.get("REDKIT_SCREENSHOTS")
    directory = Path(kept) if kept else tmp_path
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=DESKTOP)  # a fresh profile: no cookie of before
    opened = context.new_page()
    errors: list[str] = []
    opened.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    opened.on("pageerror", lambda e: errors.append(str(e)))
    opened.console_errors = errors
    yield opened
    context.close()


def log_in(page: Any, base: str, token: str) -> None:
    page.goto(f"{base}/sessions")
    assert page.url == f"{base}/login"  # sent to the login form first
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")


def photograph(page: Any, shots: Path, name: str) -> None:
    page.set_viewport_size(DESKTOP)
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=str(shots / f"{name}-phone.png"), full_page=True)
    # Nothing wider than the phone: the tables scroll inside their own box.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.set_viewport_size(DESKTOP)


def first_two_columns(table: Any) -> dict[str, str]:
    """A table's rows as {first cell: second cell}, as the browser shows them."""
    cells = table.locator("tbody tr").evaluate_all(
        "rows => rows.map(r => [r.cells[0].innerText, r.cells[1] ? r.cells[1].innerText : ''])"
    )
    return dict(cells)


def charts_drawn(page: Any) -> int:
    """How many chart images the page shows, each one decoded (a broken image has no width)."""
    widths = page.eval_on_selector_all("figure img", "imgs => imgs.map(i => i.naturalWidth)")
    assert all(width > 0 for width in widths)
    return len(widths)


def test_every_page_shows_what_redkit_did(
    server: object, conn: Connection, page: Any, shots: Path
) -> None:
    filled = fill(conn)
    with running_dashboard(conn) as base:
        log_in(page, base, READ)
        servers = page.locator("#servers tbody tr")
        assert servers.count() == (3 if conn.is_cluster else 1)
        keys_column = page.locator("#servers tbody td:nth-child(10)").all_inner_texts()
        assert sum(int(n) for n in keys_column) == keys_and_no_ttl(server)[0]
        photograph(page, shots, "overview")

        page.goto(f"{base}/ratelimits")
        section = page.locator("section[data-prefix='rl']")
        assert section.locator(".totals .allowed").inner_text() == str(sum(filled.allowed.values()))
        assert section.locator(".totals .blocked").inner_text() == str(sum(filled.blocked.values()))
        assert section.locator(".totals .denied").inner_text() == str(sum(filled.denied.values()))
        shown = first_two_columns(section.locator("table.identifiers"))
        assert shown[HOSTILE] == "1"  # the identifier shown as text, exactly as it is
        assert shown["alice"] == "2"
        assert section.locator("ul.deny li").all_inner_texts() == ["bad-actor"]
        assert page.locator("main form").count() == 0  # a read token sees no action
        assert charts_drawn(page) == 1
        photograph(page, shots, "ratelimits")

        page.goto(f"{base}/sessions")
        counts = first_two_columns(page.locator("table.users"))
        assert counts == {str(user): str(len(ids)) for user, ids in filled.sessions.items()}
        assert page.locator(".active").inner_text() == str(
            sum(len(ids) for ids in filled.sessions.values())
        )
        photograph(page, shots, "sessions")

        for name in ("caches", "keyspace"):
            page.goto(f"{base}/{name}")
            assert page.locator("h1").inner_text().lower() == name
            photograph(page, shots, name)
    assert page.console_errors == []


def test_an_admin_revokes_and_resets_by_clicking(conn: Connection, page: Any, shots: Path) -> None:
    filled = fill(conn)
    store = SessionStore(conn)
    with running_dashboard(conn) as base:
        log_in(page, base, ADMIN)
        page.goto(f"{base}/sessions")
        row = page.locator("table.users tbody tr", has_text="carol")
        row.get_by_role("button", name="Revoke all").click()
        page.wait_for_selector(".done")
        assert page.locator(".done").inner_text() == "2 session(s) of user carol revoked"
        assert page.locator("table.users tbody tr", has_text="carol").count() == 0
        photograph(page, shots, "sessions-revoked")

        page.goto(f"{base}/ratelimits")
        section = page.locator("section[data-prefix='rl']")
        section.locator("input[name=identifier]:not([type=hidden])").fill("alice")
        section.locator("form.inline button").click()
        page.wait_for_selector(".done")
        assert "reset alice under rl" in page.locator(".done").inner_text()
    assert all(store.get(sid) is None for sid in filled.sessions["carol"])
    assert all(store.get(sid) is not None for sid in filled.sessions[42])
    limiter = Ratelimit(conn, LIMIT, prefix="rl", ephemeral_cache=False)
    assert limiter.limit("alice").remaining == 1  # a fresh window
    limiter.close()
    assert page.console_errors == []


def test_the_keyspace_scan_from_its_button(
    server: object, conn: Connection, page: Any, shots: Path
) -> None:
    pytest.importorskip("redkit.ops.keyspace", reason="redkit.ops (the keyspace report) is absent")
    fill(conn)
    total, no_ttl = keys_and_no_ttl(server)
    with running_dashboard(conn) as base:
        log_in(page, base, READ)
        page.goto(f"{base}/keyspace")
        page.get_by_role("button", name="Scan the keyspace").click()
        # The page refreshes itself while the scan runs, then shows the report.
        page.wait_for_selector("#scanned", timeout=30_000)
        assert page.locator("#scanned").inner_text() == str(total)
        assert page.locator("#no-ttl").inner_text() == str(no_ttl)
        prefixes = first_two_columns(page.locator("#prefixes"))
        top_level = [int(n) for prefix, n in prefixes.items() if not prefix.startswith("\u00b7")]
        assert sum(top_level) == total  # the tree's first level holds every key once
        assert charts_drawn(page) == 1
        photograph(page, shots, "keyspace-report")
    assert page.console_errors == []


def test_fleet_charts(server: object, conn: Connection, page: Any, shots: Path) -> None:
    pytest.importorskip("redkit.stats", reason="redkit.stats (the fleet statistics) is absent")
    fill_fleet(conn)
    with running_dashboard(conn) as base:
        log_in(page, base, READ)
        assert page.locator("#fleet-hit-ratio").inner_text() == "62.5%"
        assert charts_drawn(page) == 2  # the hit ratio and the decisions over time
        photograph(page, shots, "overview-fleet")
        page.goto(f"{base}/caches")
        section = page.locator("section[data-namespace='fleet']")
        assert section.locator(".hit-ratio").inner_text() == "62.5%"
        assert (section.locator(".hits").inner_text(), section.locator(".misses").inner_text()) == (
            "5", "3",
        )  # fmt: skip
        assert charts_drawn(page) >= 2
        photograph(page, shots, "caches-fleet")
    assert page.console_errors == []
