"""A realistic access log to try ``redkit advise`` on: a generator and a small shipped sample.

:func:`generate_log` writes a Combined Log Format log (nginx's and Apache's default) of a small
shop's API, the kind of traffic the advice is meant for:

- **Routes**: ``GET /api/users/{id}``, ``GET /api/products/{id}`` (a third of them with
  ``?page=N``, a product's reviews), ``GET /api/search?q=...``, ``POST /api/login``,
  ``POST /api/orders``, the page ``/`` and its static assets (mostly answered ``304`` from the
  browser's cache), a few ``404`` and ``500``.
- **Zipf-distributed ids**: user, product and search-term popularity follow Zipf laws (rank
  ``r`` drawn with weight ``1 / r**s``), so a few keys take most reads, as in real catalogues.
- **Writes**: users ``PUT`` their own profile; an admin ``PATCH``-es popular products' stock
  (drawn from the same Zipf law as the reads, so the invalidations hit hot keys and a TTL
  alone would serve stale values); now and then a product is ``DELETE``-d.
- **Clients**: several hundred ordinary clients with browser user agents, each visiting in
  sessions (a page, its assets, then API calls a few seconds apart), some far more active than
  others; a share of them logged in (the log's ``authuser``, for ``--by user``).
- **A bot**: one address with a ``python-requests`` user agent hammers ``/api/search`` in
  bursts for a quarter of the log's time span, and a polite crawler (``Googlebot``) walks the
  product pages at a steady pace.
- **Diurnal-ish rate**: sessions start at a rate that follows the time of day (lowest at 02:00
  UTC, highest at 14:00).
- **Sizes**: each resource has its own response size (a user ~1 KB, a product ~8 KB, a search
  ~4 KB), so the memory a cache needs can be estimated.

Lines are written in the order requests *end* (a log line is written when its response is
sent), each stamped with the time it arrived, so the log is slightly out of order, as real
ones are. The output depends only on the arguments: the same ``seed`` gives the same bytes
(only :meth:`random.Random.random` is used, whose sequence Python keeps stable).

:func:`sample_log` is the path of ``data/sample-access.log``, shipped with redkit:
``generate_log(path, requests=SAMPLE_REQUESTS, seed=SAMPLE_SEED, start=SAMPLE_START,
duration=SAMPLE_DURATION)``; ``redkit advise cache --sample`` runs on it.

Addresses are from the ranges reserved for documentation (RFC 5737) and the shared address
space (RFC 6598), so no real host is named.
"""

from __future__ import annotations

import bisect
import math
import os
import random
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from redkit.core.errors import InvalidArgumentError

__all__ = [
    "BOT_ADDRESS",
    "BOT_USER_AGENT",
    "SAMPLE_DURATION",
    "SAMPLE_REQUESTS",
    "SAMPLE_SEED",
    "SAMPLE_START",
    "generate_log",
    "sample_log",
]

#: The shipped sample: how many requests, which seed, when it starts (2025-12-02 08:00:00Z)
#: and how long it lasts (2 hours).
SAMPLE_REQUESTS = 3000
SAMPLE_SEED = 14
SAMPLE_START = 1764662400.0
SAMPLE_DURATION = 7200.0

#: The bot's address and user agent (a scraper of the search route).
BOT_ADDRESS = "203.0.113.66"
BOT_USER_AGENT = "python-requests/2.31.0"
_CRAWLER_ADDRESS = "198.51.100.201"
_CRAWLER_USER_AGENT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
_ADMIN_ADDRESS = "192.0.2.250"

_BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
)
# Chrome on Windows is the most common, then the phones.
_BROWSER_WEIGHTS = (34, 14, 5, 18, 17, 8, 4)

_WORDS = (
    "shoes", "jacket", "red", "socks", "boots", "wool", "rain", "coat", "summer", "dress", "linen",
    "shirt", "kids", "sale", "running", "hat", "scarf", "gloves", "leather", "bag", "belt", "blue",
    "black", "white", "green", "jeans", "slim", "classic", "sport", "trail", "waterproof",
    "cotton", "gift", "winter", "sandals", "denim", "vintage", "hiking", "yoga", "shorts",
)  # fmt: skip
_STATIC = (
    ("/static/css/site.css?v=1.4.2", 18_240),
    ("/static/js/app.js?v=1.4.2", 96_512),
    ("/favicon.ico", 1_150),
)
_SITE = "https://shop.example.com"

# Catalogue sizes and Zipf exponents (typical of web popularity: 0.8-1.2).
_USERS = 5000
_PRODUCTS = 2000
_USER_ZIPF = 1.05
_PRODUCT_ZIPF = 1.1
_WORD_ZIPF = 1.0


# A session's ``add(method, target, status, size, referer)``.
_Add = Callable[[str, str, int, int, str], None]


@dataclass(frozen=True, slots=True)
class _Event:
    """One request: when it arrived, how long it took, and the fields of its line."""

    time: float
    latency: float
    client: str
    user: str
    method: str
    target: str
    status: int
    size: int
    referer: str
    user_agent: str


class _Zipf:
    """Ranks 1..n with weight ``1 / rank**s``, drawn by bisection on the cumulative weights."""

    def __init__(self, n: int, s: float) -> None:
        total = 0.0
        self._cumulative = []
        for rank in range(1, n + 1):
            total += rank**-s
            self._cumulative.append(total)
        self._total = total

    def draw(self, rng: random.Random) -> int:
        return bisect.bisect_left(self._cumulative, rng.random() * self._total) + 1


def _choice(rng: random.Random, items: Sequence[str], weights: Sequence[float]) -> str:
    point = rng.random() * sum(weights)
    for item, weight in zip(items, weights, strict=True):
        point -= weight
        if point < 0:
            return item
    return items[-1]


def _exponential(rng: random.Random, mean: float) -> float:
    # 1 - random() is in (0, 1]: never log(0).
    return -mean * math.log(1.0 - rng.random())


def _geometric(rng: random.Random, mean: float) -> int:
    """At least 1, ``mean`` on average."""
    count = 1
    while rng.random() > 1.0 / mean:
        count += 1
    return count


def _diurnal(epoch: float) -> float:
    """The relative rate of visits at ``epoch``: 0.25 at 02:00 UTC, 1.75 at 14:00 UTC."""
    hour = (epoch % 86_400.0) / 3600.0
    return 1.0 + 0.75 * math.cos(2.0 * math.pi * (hour - 14.0) / 24.0)


def _sized(key: str, mean: int) -> int:
    """A response size of about ``mean`` bytes, the same for the same resource each time."""
    # A stable hash (not hash(), which is salted per process).
    value = zlib.crc32(key.encode())
    return int(mean * (0.4 + 1.2 * (value / 0xFFFFFFFF)))


def _addresses(count: int) -> list[str]:
    """``count`` client addresses: the documentation ranges first, then the shared space."""
    reserved = {BOT_ADDRESS, _CRAWLER_ADDRESS, _ADMIN_ADDRESS}
    found: list[str] = []
    for prefix in ("192.0.2", "198.51.100", "203.0.113"):
        for host in range(1, 255):
            address = f"{prefix}.{host}"
            if address not in reserved:
                found.append(address)
    number = 0
    while len(found) < count:
        # 100.64.0.0/10, host parts 1..254 only.
        found.append(f"100.{64 + number // 64516}.{number // 254 % 254 + 1}.{number % 254 + 1}")
        number += 1
    return found


class _Clients:
    """The ordinary clients: an address, a browser, maybe a logged-in user, an activity."""

    def __init__(self, rng: random.Random, count: int) -> None:
        self.addresses = _addresses(count)[:count]
        # Shuffled so activity is not tied to the address order (Fisher-Yates on random()).
        for index in range(len(self.addresses) - 1, 0, -1):
            other = int(rng.random() * (index + 1))
            self.addresses[index], self.addresses[other] = (
                self.addresses[other],
                self.addresses[index],
            )
        self.agents = [_choice(rng, _BROWSERS, _BROWSER_WEIGHTS) for _ in self.addresses]
        # About 40 % are logged in, each as a user of their own.
        self.users = [
            str(int(rng.random() * _USERS) + 1) if rng.random() < 0.4 else "-"
            for _ in self.addresses
        ]
        # Activity spread as in real audiences: a heavy tail of regulars (lognormal weights).
        weights = [math.exp(0.7 * _normal(rng)) for _ in self.addresses]
        self._cumulative = []
        total = 0.0
        for weight in weights:
            total += weight
            self._cumulative.append(total)
        self._total = total

    def draw(self, rng: random.Random) -> int:
        return bisect.bisect_left(self._cumulative, rng.random() * self._total)


def _normal(rng: random.Random) -> float:
    """A standard normal value (Box-Muller), from random() alone."""
    radius = math.sqrt(-2.0 * math.log(1.0 - rng.random()))
    return radius * math.cos(2.0 * math.pi * rng.random())


class _Generator:
    def __init__(self, rng: random.Random, start: float, duration: float, clients: int) -> None:
        self.rng = rng
        self.start = start
        self.end = start + duration
        self.clients = _Clients(rng, clients)
        self.user_ids = _Zipf(_USERS, _USER_ZIPF)
        self.product_ids = _Zipf(_PRODUCTS, _PRODUCT_ZIPF)
        self.words = _Zipf(len(_WORDS), _WORD_ZIPF)
        self.peak = max(_diurnal(start + duration * i / 96.0) for i in range(97))

    def latency(self, mean: float) -> float:
        return 0.002 + _exponential(self.rng, mean)

    def visit_time(self) -> float:
        """A session's start, drawn with the diurnal rate by rejection."""
        rng = self.rng
        while True:
            when = self.start + rng.random() * (self.end - self.start)
            if rng.random() * self.peak <= _diurnal(when):
                return when

    def session(self, budget: int) -> list[_Event]:
        """One ordinary client's visit: at most ``budget`` requests, all before the end."""
        rng = self.rng
        index = self.clients.draw(rng)
        client = self.clients.addresses[index]
        agent = self.clients.agents[index]
        user = self.clients.users[index]
        now = self.visit_time()
        events: list[_Event] = []

        def add(method: str, target: str, status: int, size: int, referer: str) -> None:
            if len(events) < budget and now < self.end:
                latency = self.latency(0.004 if target.startswith(("/static", "/fav")) else 0.04)
                events.append(
                    _Event(now, latency, client, user, method, target, status, size, referer, agent)
                )

        # A third of the visits open the page (and its assets, most from the browser's cache).
        if rng.random() < 0.35:
            add("GET", "/", 200, 14_880 + int(rng.random() * 400), "-")
            cached = rng.random() < 0.7
            for path, size in _STATIC:
                now += 0.05 + rng.random() * 0.2
                add("GET", path, 304 if cached else 200, 0 if cached else size, f"{_SITE}/")
        if user == "-" and rng.random() < 0.08:
            # Logging in: a typo now and then.
            now += 2.0 + _exponential(rng, 6.0)
            failed = rng.random() < 0.15
            add("POST", "/api/login", 401 if failed else 200, 64 if failed else 412, f"{_SITE}/")
            if not failed:
                user = str(int(rng.random() * _USERS) + 1)
        for _ in range(_geometric(rng, 4.0)):
            now += 0.5 + _exponential(rng, 7.0)
            self.api_call(add, user)
        return events

    def api_call(self, add: _Add, user: str) -> None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.34:
            product = self.product_ids.draw(rng)
            target = f"/api/products/{product}"
            if rng.random() < 0.33:
                target += f"?page={1 + _geometric(rng, 1.6)}"
            self.read(add, target, 8_000, f"{_SITE}/products/{product}")
        elif roll < 0.62:
            # Now and then one's own profile.
            own = user != "-" and rng.random() < 0.3
            uid = int(user) if own else self.user_ids.draw(rng)
            self.read(add, f"/api/users/{uid}", 1_200, f"{_SITE}/")
        elif roll < 0.86:
            words = [_WORDS[self.words.draw(rng) - 1] for _ in range(1 + (rng.random() < 0.3))]
            target = "/api/search?q=" + "+".join(words)
            if rng.random() < 0.12:
                target += "&page=2"
            self.read(add, target, 4_000, f"{_SITE}/search")
        elif roll < 0.93 and user != "-":
            add("PUT", f"/api/users/{user}", 204, 0, f"{_SITE}/account")
        elif roll < 0.96 and user != "-":
            add("POST", "/api/orders", 201, 310 + int(rng.random() * 90), f"{_SITE}/cart")
        elif roll < 0.975:
            # A stale link: an id beyond the catalogue.
            add("GET", f"/api/products/{_PRODUCTS + 1 + int(rng.random() * 5000)}", 404, 52, "-")
        else:
            self.read(add, f"/api/products/{self.product_ids.draw(rng)}", 8_000, f"{_SITE}/")

    def read(self, add: _Add, target: str, mean: int, referer: str) -> None:
        failed = self.rng.random() < 0.003  # a rare server error
        add("GET", target, 500 if failed else 200, 180 if failed else _sized(target, mean), referer)

    def bot(self, count: int) -> list[_Event]:
        """The scraper: bursts on the search route during a quarter of the time span."""
        rng = self.rng
        span = self.end - self.start
        begin = self.start + 0.35 * span
        stop = begin + 0.25 * span
        # Pauses sized so that ``count`` requests fill the window, in bursts of ~25.
        bursts = max(1, count // 25)
        pause = max(0.5, (stop - begin) / bursts - 25 * 0.15)
        events: list[_Event] = []
        now = begin
        number = 0
        while len(events) < count:
            for _ in range(_geometric(rng, 25.0)):
                if len(events) >= count:
                    break
                number += 1
                target = f"/api/search?q=sku+{10_000 + number * 7 % 90_000}"
                events.append(
                    _Event(
                        min(now, self.end - 1.0),
                        self.latency(0.05),
                        BOT_ADDRESS,
                        "-",
                        "GET",
                        target,
                        200,
                        _sized(target, 4_000),
                        "-",
                        BOT_USER_AGENT,
                    )
                )
                now += 0.05 + rng.random() * 0.2
            now += pause * (0.5 + rng.random())
        return events

    def crawler(self, count: int) -> list[_Event]:
        """A polite crawler: product pages in catalogue order, evenly over the time span."""
        step = (self.end - self.start) / max(count, 1)
        events = []
        for number in range(count):
            target = f"/api/products/{number % _PRODUCTS + 1}"
            when = self.start + step * (number + self.rng.random())
            events.append(
                _Event(
                    when,
                    self.latency(0.04),
                    _CRAWLER_ADDRESS,
                    "-",
                    "GET",
                    target,
                    200,
                    _sized(target, 8_000),
                    "-",
                    _CRAWLER_USER_AGENT,
                )
            )
        return events

    def admin(self, count: int) -> list[_Event]:
        """Stock updates of popular products, and a removal now and then."""
        events = []
        for _ in range(count):
            when = self.start + self.rng.random() * (self.end - self.start)
            product = self.product_ids.draw(self.rng)
            method, status = ("DELETE", 204) if self.rng.random() < 0.05 else ("PATCH", 200)
            events.append(
                _Event(
                    when,
                    self.latency(0.03),
                    _ADMIN_ADDRESS,
                    "admin",
                    method,
                    f"/api/products/{product}",
                    status,
                    0 if status == 204 else 96,
                    f"{_SITE}/admin",
                    _BROWSERS[2],
                )
            )
        return events


def _line(event: _Event) -> str:
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(int(event.time)))
    return (
        f'{event.client} - {event.user} [{stamp}] "{event.method} {event.target} HTTP/1.1" '
        f'{event.status} {event.size} "{event.referer}" "{event.user_agent}"\n'
    )


def _check(name: str, value: object, low: float, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low:
        raise InvalidArgumentError(f"{name} must be {what}, got {value!r}")


def generate_log(
    out: str | os.PathLike[str] | IO[str],
    *,
    requests: int = SAMPLE_REQUESTS,
    seed: int = SAMPLE_SEED,
    start: float = SAMPLE_START,
    duration: float = SAMPLE_DURATION,
    clients: int = 400,
    bot_share: float = 0.15,
    crawler_share: float = 0.03,
    admin_share: float = 0.01,
) -> int:
    """Write a realistic Combined Log Format access log (see the module docstring).

    Args:
        out: a path (the file is replaced) or a text stream to write to.
        requests: how many lines, at least 1.
        seed: the same seed (and arguments) gives the same bytes.
        start: seconds since the epoch of the first possible request.
        duration: the seconds the log spans (at least 60).
        clients: ordinary clients, at least 1.
        bot_share: the share of lines that are the scraper's (0 for none).
        crawler_share: the share of lines that are the crawler's.
        admin_share: the share of lines that are the admin's product updates.

    Returns:
        The number of lines written (``requests``).

    Raises:
        InvalidArgumentError: for an argument out of range, naming it.

    """
    if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
        raise InvalidArgumentError(f"requests must be a whole number >= 1, got {requests!r}")
    if isinstance(clients, bool) or not isinstance(clients, int) or clients < 1:
        raise InvalidArgumentError(f"clients must be a whole number >= 1, got {clients!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidArgumentError(f"seed must be an int, got {seed!r}")
    _check("start", start, 0, "seconds since the epoch (>= 0)")
    _check("duration", duration, 60, "at least 60 seconds")
    shares = {"bot_share": bot_share, "crawler_share": crawler_share, "admin_share": admin_share}
    for name, share in shares.items():
        _check(name, share, 0, "a share from 0 to 1")
    if not sum(shares.values()) < 1:
        raise InvalidArgumentError(
            f"bot_share + crawler_share + admin_share must be below 1, got {sum(shares.values())}"
        )
    if not math.isfinite(start + duration):
        raise InvalidArgumentError(f"start and duration must be finite, got {start}, {duration}")

    rng = random.Random(seed)
    generator = _Generator(rng, float(start), float(duration), clients)
    bots = round(requests * bot_share)
    crawls = round(requests * crawler_share)
    updates = round(requests * admin_share)
    ordinary = requests - bots - crawls - updates
    events: list[_Event] = []
    while len(events) < ordinary:
        events.extend(generator.session(ordinary - len(events)))
    events.extend(generator.bot(bots))
    events.extend(generator.crawler(crawls))
    events.extend(generator.admin(updates))
    # In the order responses end, as a server writes its log; ties in generation order.
    order = sorted(range(len(events)), key=lambda i: events[i].time + events[i].latency)
    if isinstance(out, (str, os.PathLike)):
        with Path(out).open("w", encoding="utf-8", newline="\n") as file:
            _write(file, events, order)
    else:
        _write(out, events, order)
    return len(events)


def _write(file: IO[str], events: Sequence[_Event], order: Sequence[int]) -> None:
    # In chunks: a million-line log is never one string in memory.
    for begin in range(0, len(order), 8192):
        file.write("".join([_line(events[i]) for i in order[begin : begin + 8192]]))


def sample_log() -> Path:
    """The path of the sample log shipped with redkit (``redkit advise cache --sample``).

    It is ``generate_log(path)`` with the defaults: :data:`SAMPLE_REQUESTS` lines over
    :data:`SAMPLE_DURATION` seconds from :data:`SAMPLE_START`, seed :data:`SAMPLE_SEED`.

    Raises:
        FileNotFoundError: when the installed package lacks it (a broken install).

    """
    path = Path(__file__).resolve().parent / "data" / "sample-access.log"
    if not path.is_file():
        raise FileNotFoundError(
            f"redkit's sample log is missing from {path.parent}: reinstall redkit, or write "
            "one with redkit.advise.sample.generate_log(path)"
        )
    return path
