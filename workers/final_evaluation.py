"""The final test evaluation job: a claim of ``kind: evaluate_test``.

The trial's model is its last checkpoint (``train_trial`` saves one after the last epoch), so
evaluating it reads the test set once and trains nothing. Where the trial has no checkpoint of
its last epoch (checkpoints were off), the trial is retrained from its parameters and seed
first. The job holds a lease like a trial, kept by heartbeats while it runs.
"""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable

from hpsearch.claimed_job import ClaimedJob
from hpsearch.client import ApiError, Client, ServerUnreachable
from workers.devices import bind
from workers.heartbeat import Heartbeat


def run_final_evaluation(
    client: Client,
    claim: ClaimedJob,
    *,
    worker_id: str,
    device: str,
    heartbeat_seconds: float,
    threads: int | None,
    say: Callable[[str], None],
) -> None:
    trial_id, attempt, number = claim["id"], claim["attempt"], claim["number"]
    say(f"trial {number} (study {claim['study_id']}): evaluating its final model on the test set")
    metrics: dict[str, float] | None = None
    error = ""
    with _Heartbeat(client, trial_id, worker_id, attempt, heartbeat_seconds):
        try:
            metrics = _test_metrics(client, claim, worker_id, device, threads, say)
        except ApiError as e:
            if e.status == 409:
                say(f"trial {number}: test evaluation lease lost ({e.message})")
                return
            error = traceback.format_exc()
        except Exception:
            error = traceback.format_exc()
    try:
        if metrics is None:
            say(f"trial {number}: test evaluation failed:\n{error}")
            client.fail_test_evaluation(trial_id, worker_id, attempt, error)
            return
        client.complete_test_evaluation(trial_id, worker_id, attempt, metrics)
    except (ApiError, ServerUnreachable) as e:
        say(f"trial {number}: the server did not take the test evaluation ({e})")
        return
    shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items()) if v is not None)
    say(f"trial {number} on the test set: {shown}")


def _test_metrics(
    client: Client,
    claim: ClaimedJob,
    worker_id: str,
    device: str,
    threads: int | None,
    say: Callable[[str], None],
) -> dict[str, float]:
    task, params = claim["task"], claim["params"]
    if task.get("trainer") == "custom":
        raise ValueError(
            "a custom trainer's trial cannot be evaluated on the test set by the worker: "
            "the built-in trainers know their test split, a user's train(trial) does not"
        )
    # torch is imported only when a job runs, so `hpsearch worker --help` stays instant.
    import torch

    from workers.training import CheckpointError, evaluate_checkpoint, train_and_evaluate_test

    torch.set_num_threads(threads or int(os.environ.get("OMP_NUM_THREADS", "1")))
    bind(device)
    # Read as the evaluation's lease holder: a worker token reads no other trial's model.
    data = client.download_checkpoint(claim["id"], worker_id, claim["attempt"])
    if data is not None:
        try:
            return evaluate_checkpoint(params, task, data, device, epoch=claim["resume_step"])
        except CheckpointError as e:
            say(f"trial {claim['number']}: {e}; retraining it instead")
    result = train_and_evaluate_test(params, task, device=device, seed=claim["number"])
    return {k: v for k, v in result.metrics.items() if k.startswith("test_")}


class _Heartbeat(Heartbeat):
    def __init__(
        self, client: Client, trial_id: int, worker_id: str, attempt: int, every: float
    ) -> None:
        super().__init__(every)
        self._args = (trial_id, worker_id, attempt)
        self._client = client

    def beat(self) -> None:
        self._client.test_evaluation_heartbeat(*self._args)
