"""How long ``redkit advise`` takes on a large access log, and how much memory it holds.

Writes a Combined Log Format log with :func:`redkit.advise.sample.generate_log` (Zipf ids,
writes, a scraper and a crawler), then times each stage in this one process: reading it
(``read_trace``), the cache advice (12 TTLs, 4 budgets x 3 eviction policies per namespace)
and the rate-limit advice (5 algorithms x 8 limits per route), with the peak resident memory
after each. Run with a second, smaller size too (``--lines``) to see how memory grows.

    .venv/bin/python benchmarks/advise.py                   # 1,000,000 lines
    .venv/bin/python benchmarks/advise.py --lines 250000
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

from redkit.advise import advise_cache, advise_ratelimit, read_trace
from redkit.advise.sample import generate_log


def _peak_mib() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    """Generate the log, run each stage once, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines of the log")
    parser.add_argument("--keep", metavar="PATH", help="write the log here and keep it")
    parser.add_argument("--log", metavar="PATH", help="analyse this log (written by --keep)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(args.log or args.keep or Path(folder) / "access.log")
        started = time.perf_counter()
        if args.log is None:
            generate_log(path, requests=args.lines, seed=1, duration=86_400.0, clients=5_000)
        generated = time.perf_counter() - started
        size_mib = path.stat().st_size / 2**20
        print(f"python {platform.python_version()}, {platform.machine()}, {sys.platform}")
        print(f"log: {path.name}, {size_mib:.0f} MiB (written in {generated:.1f} s)")
        base = _peak_mib()
        rows: list[tuple[str, float, float]] = []

        started = time.perf_counter()
        trace = read_trace(path)
        rows.append(("read_trace", time.perf_counter() - started, _peak_mib()))

        started = time.perf_counter()
        cache = advise_cache(trace, budget="256MB", max_stale="30 s")
        rows.append(("advise_cache", time.perf_counter() - started, _peak_mib()))

        started = time.perf_counter()
        limits = advise_ratelimit(trace, by="ip")
        rows.append(("advise_ratelimit", time.perf_counter() - started, _peak_mib()))

    keys = len(trace.key_names)
    print(f"requests {len(trace):,}, distinct keys {keys:,}, malformed {trace.malformed}")
    print(
        f"cache: {len(cache.namespaces)} namespaces x {len(cache.settings['ttls_s'])} TTLs; "
        f"ratelimit: {len(limits.routes)} routes"
    )
    print(f"{'stage':<18}{'seconds':>9}{'peak RSS MiB':>14}")
    for name, seconds, peak in rows:
        print(f"{name:<18}{seconds:>9.1f}{peak:>14.0f}")
    total = sum(seconds for _, seconds, _ in rows)
    print(f"{'total':<18}{total:>9.1f}{'':>14}")
    grown = rows[-1][2] - base
    per_request = grown * 2**20 / len(trace)
    print(f"memory beyond the interpreter: {grown:.0f} MiB, {per_request:.0f} B/request")


if __name__ == "__main__":
    main()
