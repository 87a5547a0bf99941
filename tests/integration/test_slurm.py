"""deploy/slurm/workers.sbatch on a real single-node Slurm cluster (tests/slurm.py), against a
real server: an array of 2 workers completes a study and ends by itself, and ``scancel`` of
the array task holding a trial mid-way hands that trial to the other worker, which resumes it
from its checkpoint."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, ServerProcess, wait_for
from tests.slurm import SlurmCluster, slurm_cluster  # noqa: F401  (a fixture)

MODULE = "tests.integration.custom_trainers"
SBATCH = REPO / "deploy" / "slurm" / "workers.sbatch"


@pytest.mark.slow
def test_an_array_of_workers_completes_a_study_and_survives_a_scancel(
    slurm_cluster: SlurmCluster,  # noqa: F811
    make_server: Callable[..., ServerProcess],
    tmp_path: Path,
) -> None:
    server = make_server()
    # Two trials: hold_at 2 stops making progress after its checkpoint at step 2 until its
    # worker is told to stop; hold_at 99 runs straight through.
    spec: dict[str, Any] = {
        "name": "slurm",
        "objective": {"metric": "dev_accuracy", "direction": "maximize"},
        "space": {"hold_at": {"type": "categorical", "choices": [2, 99]}},
        "sampler": {"kind": "grid"},
        "budget": {"max_trials": 2, "parallelism": 2},
        "task": {"trainer": "custom", "entry_point": f"{MODULE}:checkpointed", "epochs": 4},
    }
    with server.client() as client:
        study = client.create_study(spec)
    env = {
        **slurm_cluster.env,
        "HPSEARCH_SERVER": server.url,
        "HPSEARCH_DEVICE": "cpu",
        "HPSEARCH_VENV": str(Path(sys.executable).parent.parent),
        "HPSEARCH_WORKER_ARGS": f"--quiet --allow {MODULE}:checkpointed",
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
    }
    slurm_cluster.env = env
    submitted = slurm_cluster.run(
        "sbatch",
        "--parsable",
        "--array=0-1",
        "--cpus-per-task=1",
        f"--output={tmp_path}/worker-%a.log",
        f"--chdir={REPO}",
        str(SBATCH),
    )
    job = submitted.stdout.strip().split(";")[0]

    def holding() -> dict[str, Any] | None:
        with server.client() as c:
            for t in c.trials(study["id"]):
                held = t["state"] == "running" and (t["checkpoint_step"] or 0) >= 2
                if held and t["params"]["hold_at"] == 2:
                    return dict(t)
        return None

    held = wait_for(holding, 45, "a worker to checkpoint the held trial at step 2")
    task = held["worker_id"].rsplit("-", 1)[1]
    assert held["worker_id"] == f"slurm-{job}-{task}"
    slurm_cluster.run("scancel", f"{job}_{task}")

    def array_ended() -> bool:
        return slurm_cluster.run("squeue", "-h", "-j", job, check=False).stdout.strip() == ""

    wait_for(array_ended, 60, f"array {job} to end by itself: {slurm_cluster.logs()}")
    with server.client() as c:
        assert c.study(study["id"])["state"] == "completed"
        trials = {t["params"]["hold_at"]: t for t in c.trials(study["id"])}
        resumed = c.trial(trials[2]["id"])
    assert all(t["state"] == "completed" for t in trials.values())
    assert resumed["attempt"] == 2 and resumed["worker_id"] != held["worker_id"]
    assert resumed["metrics"]["first_step"] == 3  # resumed after its checkpoint at step 2
