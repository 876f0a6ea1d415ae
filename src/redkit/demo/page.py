"""The demo's front page: what to try, with curl lines that work as they are."""

from __future__ import annotations

import html
from collections.abc import Mapping

__all__ = ["index_page"]

_STYLE = """
body { font: 16px/1.5 system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem;
       color: #1d1d1f; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
pre { background: #f4f4f6; padding: .75rem 1rem; overflow-x: auto; border-radius: 6px; }
code { font-size: .9rem; } .muted { color: #666; }
"""


def _section(title: str, text: str, lines: list[str]) -> str:
    commands = "\n".join(html.escape(line) for line in lines)
    return f"<h2>{html.escape(title)}</h2>\n<p>{text}</p>\n<pre><code>{commands}</code></pre>"


def index_page(base: str, api_keys: Mapping[str, str]) -> str:
    """The HTML of ``/`` for a demo served at ``base`` (``http://127.0.0.1:8000``)."""
    free, pro = (next(k for k, tier in api_keys.items() if tier == t) for t in ("free", "pro"))
    jar = "-c jar.txt -b jar.txt"
    sections = [
        _section(
            "Rate limiting by client IP (the seed's route)",
            "10 requests per sliding 10 s per client IP, in <code>@upstash/ratelimit</code>'s "
            "key layout. The 11th gets <code>429</code> with <code>retryAfter</code>, "
            "<code>Retry-After</code> and the <code>RateLimit</code> headers.",
            [
                "for i in $(seq 11); do "
                f"curl -s -o /dev/null -w '%{{http_code}} ' {base}/api/products; done",
                f"curl -si {base}/api/products | grep -i ratelimit",
            ],
        ),
        _section(
            "Cache-aside, and proof that it hits",
            "Products and users are read from SQLite once, then from Redis for 5 minutes. "
            "<code>/api/stats</code> counts the SQL statements: a hit runs none.",
            [
                f"curl -s {base}/api/stats",
                f"curl -s {base}/api/users/1",
                f"curl -s {base}/api/users/1",
                f"curl -s {base}/api/stats",
            ],
        ),
        _section(
            "Sessions: log in, write through, log out everywhere",
            "Log in as <code>alice</code> (password <code>wonderland</code>); <code>bob</code> / "
            "<code>builder</code> and <code>carol</code> / <code>christmas</code> exist too. A "
            "login issues a new session id. Changing your profile writes the database, then "
            "the cache (write-through).",
            [
                f"curl -s {jar} -X POST {base}/api/login -H 'content-type: application/json' "
                '-d \'{"name": "alice", "password": "wonderland"}\'',
                f"curl -s {jar} {base}/api/me",
                f"curl -s {jar} -X PATCH {base}/api/users/1 -H 'content-type: application/json' "
                '-d \'{"bio": "Curiouser and curiouser"}\'',
                f"curl -s {base}/api/users/1",
                f"curl -s {jar} -X POST {base}/api/logout-everywhere",
            ],
        ),
        _section(
            "Hashed query keys",
            "The same filters give the same cache key, in any order and any case.",
            [
                f"curl -s '{base}/api/search?q=kettle&category=kitchen'",
                f"curl -s '{base}/api/search?category=kitchen&q=KETTLE'",
            ],
        ),
        _section(
            "Response caching with ETags",
            "<code>/api/catalog</code> is cached as a whole response: <code>X-Cache</code>, "
            "<code>ETag</code>, and <code>304 Not Modified</code> for a matching "
            "<code>If-None-Match</code>.",
            [
                f"curl -si {base}/api/catalog | grep -iE 'x-cache|etag|cache-control'",
                f"curl -si {base}/api/catalog -H 'If-None-Match: <the etag>' | head -1",
            ],
        ),
        _section(
            "API keys on tiers",
            "The key's tier sets the limit: free 10, pro 100, enterprise 1000 per minute.",
            [
                f"curl -si {base}/api/reports -H 'X-API-Key: {free}' | grep -i ratelimit-policy",
                f"curl -si {base}/api/reports -H 'X-API-Key: {pro}' | grep -i ratelimit-policy",
            ],
        ),
    ]
    body = "\n".join(sections)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>redkit demo</title>
<style>{_STYLE}</style></head>
<body>
<h1>redkit demo</h1>
<p>Caching, rate limiting and sessions on Redis, in one FastAPI service with a SQLite database.
Every line below runs as it is. The API's own documentation: <a href="/docs">/docs</a>.</p>
{body}
<p class="muted">Ctrl-C in the terminal stops the service and the Redis it started.</p>
</body></html>
"""
