"""The README's first command, followed literally on a fresh copy: a new virtual environment,
a temp directory, the demo in a reduced mode (fewer trials and epochs, exit instead of serve)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port

pytestmark = pytest.mark.slow

IGNORED = shutil.ignore_patterns(
    ".git",
    ".venv",
    "__pycache__",
    "*.egg-info",
    "test-artifacts",
    "hpsearch-demo",
    "hpsearch-artifacts",
    ".hypothesis",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "hpsearch.db*",
    "*.pyc",
    "build",
    "dist",
)


def readme_commands() -> list[str]:
    """The commands of the README's 'Two commands' block, in order."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"## Two commands.*?```bash\n(.*?)```", text, re.S)
    assert block, "the README has no 'Two commands' block"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_names_exactly_two_commands_and_ci_runs_the_second() -> None:
    first, second = readme_commands()
    assert first.startswith("scripts/demo.sh") and second.startswith("scripts/test.sh")
    assert "scripts/test.sh" in (REPO / ".ci" / "run").read_text()


def test_quickstart_demo_on_a_fresh_copy(tmp_path: Path) -> None:
    checkout = tmp_path / "hpsearch"
    shutil.copytree(REPO, checkout, ignore=IGNORED)
    first, _ = readme_commands()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HPSEARCH_", "VIRTUAL_ENV"))}
    out = subprocess.run(
        ["bash", "-c", f"{first} --no-serve --trials 4 --epochs 2 --port {port}"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (checkout / ".venv" / "bin" / "hpsearch").exists()
    assert "4/4 trials ended" in out.stdout
    assert "best feasible: trial" in out.stdout
    assert "bias/variance of the best trial" in out.stdout
    assert f"http://127.0.0.1:{port}/studies/1" in out.stdout
