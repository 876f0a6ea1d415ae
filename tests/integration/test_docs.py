"""Every Python block of the README and docs/ runs as written, on a real Redis.

The blocks of one page run in order in one namespace, as a reader pastes them into one
session (a later block may use a name an earlier one made), in a fresh process with
``REDIS_URL=embedded://``. A block that serves forever or needs a service from outside (an
Upstash database, a running gateway) says so in an HTML comment just before it,
``<!-- not run: why -->``: it is compiled, names and syntax checked, not run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(
    r"(?:<!-- not run: (?P<why>[^>]*?) -->\n)?^```python\n(?P<code>.*?)^```", re.S | re.M
)

# Marks the outcome lines, so that a block may print anything (a dict, JSON) itself.
MARK = "@@docs-block-outcome@@ "
# Runs in the child: each block in one shared namespace, one JSON line of outcome per block.
RUNNER = (
    f"MARK = {MARK!r}\n"
    + """
import ast, asyncio, json, sys, traceback, warnings
# The docs show no deprecated path: a DeprecationWarning at a block's own line fails it.
warnings.filterwarnings("error", category=DeprecationWarning, module="__docs__")
blocks = json.load(sys.stdin)
namespace = {"__name__": "__docs__"}
for code, why in blocks:
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    try:
        compiled = compile(code, "<block>", "exec", flags=flags)
        if not why:
            result = eval(compiled, namespace)
            if asyncio.iscoroutine(result):
                asyncio.run(result)
        print(MARK + json.dumps({"ok": True}), flush=True)
    except BaseException:
        print(MARK + json.dumps({"ok": False, "error": traceback.format_exc(limit=3)}), flush=True)
"""
)


def blocks_of(page: str) -> list[tuple[str, str | None]]:
    text = (ROOT / page).read_text()
    return [(m["code"], m["why"]) for m in _BLOCK.finditer(text)]


@pytest.mark.parametrize("page", [p for p in PAGES if blocks_of(p)])
def test_every_python_block_runs(page: str) -> None:
    blocks = blocks_of(page)
    env = {**os.environ, "REDIS_URL": "embedded://"}
    for name in ("UPSTASH_REDIS_REST_URL", "KV_REST_API_URL"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-c", RUNNER], input=json.dumps(blocks),
        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT, check=False,
    )  # fmt: skip
    outcomes = [
        json.loads(line.removeprefix(MARK))
        for line in done.stdout.splitlines()
        if line.startswith(MARK)
    ]
    assert len(outcomes) == len(blocks), done.stderr
    failed = [
        f"block {index + 1} of {page}:\n{code}\n{outcome['error']}"
        for index, ((code, _why), outcome) in enumerate(zip(blocks, outcomes, strict=True))
        if not outcome["ok"]
    ]
    assert not failed, "\n\n".join(failed)
