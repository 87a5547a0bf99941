"""Layers point one way: api → hpsearch ← workers. The core imports neither FastAPI nor torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable

import pytest

from tests.conftest import REPO


def test_core_imports_neither_fastapi_nor_torch() -> None:
    modules = sorted(
        "hpsearch." + ".".join(p.relative_to(REPO / "hpsearch").with_suffix("").parts)
        for p in (REPO / "hpsearch").rglob("*.py")
        if p.name != "__init__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in ('torch', 'fastapi', 'starlette', 'uvicorn', 'api', 'workers')"
        " if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


# The one module that composes layers, and what it may import inside its functions only: the
# CLI the server and the worker. (The notebook's study handle finds the worker's code through
# entry points: hpsearch/worker_code.py.)
_COMPOSING = {"cli.py": {"api", "workers"}}


def _imports(package: str) -> set[str]:
    found: set[str] = set()
    for path in (REPO / package).rglob("*.py"):
        tree = ast.parse(path.read_text())
        lazy_ok = _COMPOSING.get(path.name, set()) if package == "hpsearch" else set()
        top = _names(tree.body)
        assert not top & lazy_ok, f"{path.name} must import {sorted(top & lazy_ok)} lazily"
        found.update(name for name in _names(ast.walk(tree)) if name not in lazy_ok)
    return found


def _names(nodes: Iterable[ast.AST]) -> set[str]:
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("hpsearch", {"api", "workers", "fastapi", "torch"}),
        ("workers", {"api", "fastapi", "sqlalchemy"}),
        ("api", {"workers", "torch"}),
    ],
)
def test_no_import_points_the_wrong_way(package: str, forbidden: set[str]) -> None:
    # Only the composing modules may import across, lazily, inside functions.
    imports = _imports(package)
    assert not imports & forbidden, imports & forbidden
