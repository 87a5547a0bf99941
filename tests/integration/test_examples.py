"""Every example spec validates and runs a trial on a real server and worker."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from hpsearch.spec import load_spec_file
from tests.conftest import REPO, ServerProcess
from tests.unit.workers.test_training_datasets import write_mnist

EXAMPLES = [
    *sorted((REPO / "examples").glob("*.yaml")),
    REPO / "hpsearch" / "examples" / "demo.yaml",
]


def one_trial(path: Path, data_dir: Path) -> dict[str, Any]:
    """The example as written, cut to one short trial; file datasets point at generated files."""
    spec: dict[str, Any] = yaml.safe_load(path.read_text())
    spec["budget"] = {**spec.get("budget", {}), "max_trials": 1, "parallelism": 1}
    spec["task"]["epochs"] = 1
    spec["evaluate_test"] = False
    if spec["task"].get("dataset") in ("mnist", "fashion_mnist"):
        write_mnist(data_dir, n_train=80, n_test=20)
        spec["task"]["data_path"] = str(data_dir)
    return spec


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_runs_a_trial(
    make_server: Callable[..., ServerProcess], path: Path, tmp_path: Path
) -> None:
    load_spec_file(path)
    spec = one_trial(path, tmp_path / "data")
    # `python` in a command example is this environment's, as in a shell that activated it.
    server = make_server(
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    )
    with server.client() as client:
        study_id = client.create_study(spec)["id"]
        allow = ["--allow", "examples.custom_train:train", "--allow-command", "python train.py"]
        worker = server.start_worker("--study", str(study_id), *allow)
        assert worker.wait(timeout=180) == 0
        (trial,) = client.trials(study_id)
    assert trial["state"] == "completed", trial["error"]
    assert trial["metrics"][spec["objective"]["metric"]] is not None
