"""Layers point one way: api → hpsearch ← workers. The core imports neither FastAPI nor torch."""

from __future__ import annotations

import ast
import subprocess
import sys

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


def _imports(package: str) -> set[str]:
    found: set[str] = set()
    for path in (REPO / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
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
    # The CLI composes the layers, lazily, inside its subcommands: the one allowed exception.
    imports = _imports(package)
    if package == "hpsearch":
        imports -= _cli_lazy_imports()
    assert not imports & forbidden, imports & forbidden


def _cli_lazy_imports() -> set[str]:
    tree = ast.parse((REPO / "hpsearch" / "cli.py").read_text())
    top = {n.module.split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
    lazy = {"api", "workers"}
    assert not top & lazy, "the CLI must import the server and the worker lazily"
    return lazy
