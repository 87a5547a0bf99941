"""The notebook's study handle finds the worker's code through the entry points that
pyproject.toml declares (hpsearch/worker_code.py), never by importing the worker."""

from __future__ import annotations

import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from hpsearch import worker_code
from tests.conftest import REPO


def _declared() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared: dict[str, str] = project["entry-points"][worker_code.GROUP]
    return declared


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The project's entry points as an install writes them, on the path: found by the same
    lookup whether or not this environment's install predates them."""
    info = tmp_path / "hpsearch_entry_points-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hpsearch-entry-points\n")
    lines = [f"[{worker_code.GROUP}]", *(f"{k} = {v}" for k, v in _declared().items())]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    worker_code.worker_code.cache_clear()
    yield
    worker_code.worker_code.cache_clear()


def test_pyproject_declares_the_worker_code_the_core_asks_for() -> None:
    declared = _declared()
    assert set(declared) == {"checkpoint_state", "rebuild_model"}
    state = EntryPoint("checkpoint_state", declared["checkpoint_state"], worker_code.GROUP).load()
    assert callable(state.encode) and callable(state.decode)
    assert callable(
        EntryPoint("rebuild_model", declared["rebuild_model"], worker_code.GROUP).load()
    )


@pytest.mark.usefixtures("installed")
def test_a_notebook_trial_checkpoints_in_the_workers_format() -> None:
    import torch

    from workers import checkpoint_state

    state = {"weights": torch.arange(4.0), "epoch": 3}
    data = worker_code.CheckpointState().encode(state)
    # The worker reads what the notebook wrote, and the other way round.
    assert torch.equal(checkpoint_state.decode(data)["weights"], state["weights"])
    back = worker_code.CheckpointState().decode(checkpoint_state.encode(state))
    assert back["epoch"] == 3 and torch.equal(back["weights"], state["weights"])


def test_code_that_is_not_installed_is_named_with_the_install_that_brings_it() -> None:
    with pytest.raises(worker_code.WorkerCodeMissing, match=r"hpsearch\[worker\]"):
        worker_code.worker_code("no_such_code")


def test_declared_code_whose_packages_are_missing_is_named_with_the_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server-only install: the entry point is declared, its module needs a package that
    # is not there.
    (tmp_path / "needs_torch_here.py").write_text("import no_such_package_here\n")
    info = tmp_path / "needs_torch-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: needs-torch\n")
    (info / "entry_points.txt").write_text(f"[{worker_code.GROUP}]\nlacking = needs_torch_here\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    worker_code.worker_code.cache_clear()
    try:
        with pytest.raises(
            worker_code.WorkerCodeMissing, match=r"no_such_package_here.*hpsearch\[worker\]"
        ):
            worker_code.worker_code("lacking")
    finally:
        worker_code.worker_code.cache_clear()
