"""DESIGN.md's "Where does X live" table: every row leads to a file and names that exist.

The table is the map a maintainer reads to find a behaviour in one hop, so a move or a rename
that leaves it behind must fail here, not mislead a reader later. Each row is
``| behaviour | `path` | `name`, `name` |``: the path is relative to the repository's root,
and each name is, in a Python file, something the file itself defines (a function, a class, a
module-level name, or ``Class.member``; an import does not count, so a re-export never passes
for a home), and in a Lua file text that occurs in it verbatim. Every module and script of the
package has a row, so a new one cannot go unmapped.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DESIGN = ROOT / "DESIGN.md"
SECTION = "## Where does X live"
#: Modules that hold no behaviour of their own: old import paths kept for one release.
SHIMS = frozenset(
    {
        "src/redkit/sessions/asgi.py",
        "src/redkit/sessions/flask.py",
        "src/redkit/web/starlette.py",
        "src/redkit/web/fastapi_cache.py",
        "src/redkit/web/flask_cache.py",
    }
)

_TICKED = re.compile(r"`([^`]+)`")


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _rows() -> list[tuple[str, str, list[str]]]:
    """The table's rows as ``(behaviour, path, names)``, in order."""
    text = DESIGN.read_text(encoding="utf-8")
    start = text.index(SECTION)  # the section must exist: a missing map is a failure
    end = text.find("\n## ", start + len(SECTION))
    rows = []
    for line in text[start : end if end != -1 else None].splitlines():
        if not line.startswith("|"):
            continue
        cells = _cells(line)
        if cells[0].lower() == "behaviour" or set("".join(cells)) <= set("-: "):
            continue  # a header or the line under it
        assert len(cells) == 3, f"a row has three cells (behaviour | file | names): {line}"
        behaviour, file_cell, names_cell = cells
        paths = _TICKED.findall(file_cell)
        assert len(paths) == 1, f"a row names exactly one file, in backticks: {line}"
        names = _TICKED.findall(names_cell)
        assert names, f"a row names at least one function, class or name, in backticks: {line}"
        rows.append((behaviour, paths[0], names))
    return rows


ROWS = _rows()


def _defined_in(body: list[ast.stmt]) -> dict[str, ast.stmt]:
    """The names a module or class body defines itself (through ``if`` and ``try`` too)."""
    found: dict[str, ast.stmt] = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.setdefault(node.name, node)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found.setdefault(target.id, node)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            found.setdefault(node.target.id, node)
        elif isinstance(node, ast.If):
            found = {**_defined_in(node.body), **_defined_in(node.orelse), **found}
        elif isinstance(node, ast.Try):
            inner = node.body + node.orelse + node.finalbody
            for handler in node.handlers:
                inner += handler.body
            found = {**_defined_in(inner), **found}
    return found


@cache
def _module(path: str) -> dict[str, ast.stmt]:
    return _defined_in(ast.parse((ROOT / path).read_text(encoding="utf-8")).body)


def _missing_name(path: str, name: str) -> str | None:
    """Why ``name`` is not found in ``path``, or ``None`` when it is there."""
    if not path.endswith(".py"):
        text = (ROOT / path).read_text(encoding="utf-8")
        return None if name in text else f"{name!r} does not occur in {path}"
    scope = _module(path)
    parts = name.split(".")
    for depth, part in enumerate(parts):
        node = scope.get(part)
        if node is None:
            where = ".".join(parts[:depth]) or path
            return f"{part!r} is not defined in {where} ({path})"
        if depth + 1 < len(parts):
            if not isinstance(node, ast.ClassDef):
                return f"{'.'.join(parts[: depth + 1])} in {path} is not a class"
            scope = {**_instance_attributes(node), **_defined_in(node.body)}
    return None


def _instance_attributes(cls: ast.ClassDef) -> dict[str, ast.stmt]:
    """The attributes a class's methods set on ``self`` (``self.blocks = ...``)."""
    found: dict[str, ast.stmt] = {}
    for method in cls.body:
        if not isinstance(method, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(method):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AnnAssign):
                targets = [node.target]
            for target in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "self"
                ):
                    found.setdefault(target.attr, node)
    return found


def test_the_map_is_a_real_map() -> None:
    assert len(ROWS) >= 40
    behaviours = [behaviour.lower() for behaviour, _, _ in ROWS]
    twice = sorted({b for b in behaviours if behaviours.count(b) > 1})
    assert not twice, f"behaviours listed twice: {twice}"


@pytest.mark.parametrize(("behaviour", "path", "names"), ROWS, ids=[row[0] for row in ROWS])
def test_each_row_leads_to_its_file_and_names(behaviour: str, path: str, names: list[str]) -> None:
    assert (ROOT / path).is_file(), f"{behaviour}: {path} does not exist"
    problems = [problem for name in names if (problem := _missing_name(path, name))]
    assert not problems, f"{behaviour}: " + "; ".join(problems)


def test_every_module_and_script_of_the_package_has_a_row() -> None:
    mapped = {path for _, path, _ in ROWS}
    package = ROOT / "src" / "redkit"
    wanted = {
        path.relative_to(ROOT).as_posix()
        for path in [*package.rglob("*.py"), *package.rglob("*.lua")]
        if "__pycache__" not in path.parts
    }
    # A module that only gathers names (a package's __init__, ``python -m``) has none to find.
    wanted = {path for path in wanted - SHIMS if not path.endswith(".py") or _holds_behaviour(path)}
    unmapped = sorted(wanted - mapped)
    assert not unmapped, f"add a row to DESIGN.md's table for each of: {unmapped}"


def _holds_behaviour(path: str) -> bool:
    """Whether a module defines functions or classes of its own (a lazy ``__getattr__`` aside)."""
    return any(
        isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and node.name != "__getattr__"
        for node in _module(path).values()
    )


def test_the_checker_catches_a_stale_row() -> None:
    # The check itself must be able to fail: a renamed method, a class member that is not
    # there, an import mistaken for a definition, a Lua word that is not in the script.
    assert _missing_name("src/redkit/cache/leases.py", "Leases.take_or_wait") is None
    assert _missing_name("src/redkit/cache/leases.py", "Leases.take_or_sleep") is not None
    assert _missing_name("src/redkit/cache/leases.py", "lease_key.x") is not None
    assert _missing_name("src/redkit/cache/leases.py", "load_script") is not None  # imported
    assert _missing_name("src/redkit/cache/flows.py", "CacheFlows.channel") is None  # self.x
    assert _missing_name("src/redkit/cache/flows.py", "CacheFlows.chanel") is not None
    assert _missing_name("src/redkit/core/lua/clock.lua", "NOW_US") is None
    assert _missing_name("src/redkit/core/lua/clock.lua", "LATER_US") is not None
