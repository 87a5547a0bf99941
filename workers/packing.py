"""``hpsearch worker --pack K``: claim up to K trials of one study and train those that share
an architecture as one packed model (:mod:`workers.training.packed`).

Claims go through the ordinary ``POST /claims``, one per trial, the first from any study and
the others from the first's study; every claimed trial keeps its own lease (heartbeats from
the moment it is claimed), its own reports, stop requests and outcome. Claimed trials are
grouped by :func:`hpsearch.packing.pack_key`; each group trains as one pack, one group after
the other, so a trial that does not fit the first pack still runs, a little later, and nothing
claimed is handed back (a handed-back trial would be the oldest queued one: the next claim
would take it straight back). A study sampled with ``sampler: {..., pack: K}`` hands out
groups of K that fit one pack.

What is not packed goes the ordinary way (``Worker.run_trial``): custom trainers, a trial with
a checkpoint to resume from (the trials of a pack step together from epoch 1), and the final
test evaluation that a claim may return (run at once: someone is waiting for it).

The study's ``budget.parallelism`` caps the trials running at once: a worker gets K trials of
a study only if it allows K (or K per worker).
"""

from __future__ import annotations

import os
import socket
import traceback
from collections.abc import Mapping
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from hpsearch.claimed_job import ClaimedJob
from hpsearch.client import ApiError
from hpsearch.packing import PackKey, pack_key
from workers.devices import bind
from workers.lease import Lease
from workers.outcomes import HandBackNow, TrainingDiverged, short

if TYPE_CHECKING:  # the slot that runs the pack: types only, loop.py imports this module
    from workers.loop import Worker

Claim = ClaimedJob


def packable(claim: Claim) -> bool:
    """A trial of a built-in trainer that starts from scratch."""
    return (
        claim.get("kind", "train") == "train"
        and claim.get("resume_step") is None
        and not claim.get("schedule")
        and _key(claim) is not None
    )


def run_pack(worker: Worker, first: Claim, size: int) -> int:
    """Claims up to ``size - 1`` partners for ``first`` (a :func:`packable` claim) from its
    study, trains them all, and returns how many trials it ran (for ``trials_run``)."""
    claims, others = [first], []
    host, devices = socket.gethostname(), list(worker.opts.devices or (worker.device,))
    with ExitStack() as held:
        leases = {first["id"]: held.enter_context(worker.lease_for(first))}
        while len(claims) < size and not worker.stopping and worker.budget.take():
            reply = worker.client.claim(
                worker.opts.worker_id,
                host,
                devices,
                first["study_id"],
                labels=worker.opts.labels,
            )
            claim = reply["trial"]
            if claim is None:
                worker.budget.give_back()
                break
            if claim.get("kind") == "evaluate_test":
                worker.run_final_evaluation(claim)  # short, and someone is waiting for it
                others.append(claim)
                continue
            if not packable(claim):
                others.append(claim)  # held (heartbeats) until the packs are done
                held.enter_context(worker.lease_for(claim))
                continue
            claims.append(claim)
            leases[claim["id"]] = held.enter_context(worker.lease_for(claim))
        groups: dict[PackKey | None, list[Claim]] = {}
        for claim in claims:
            groups.setdefault(_key(claim), []).append(claim)
        for group in groups.values():
            _train_group(worker, group, [leases[c["id"]] for c in group])
    for claim in others:  # their own leases start now: run_trial heartbeats itself
        if claim.get("kind") != "evaluate_test":
            worker.run_trial(claim)
    return len(claims) + len(others)


def _key(claim: Claim) -> PackKey | None:
    task = claim["task"]
    return pack_key(task.get("trainer", ""), task.get("fixed", {}), claim["params"])


def _train_group(worker: Worker, claims: list[Claim], leases: list[Lease]) -> None:
    if worker.stopping:
        for lease in leases:
            worker.release(lease, "worker shutting down")
        return
    task = claims[0]["task"]
    worker.say(
        f"pack of {len(claims)} trials (study {claims[0]['study_id']}): "
        + "; ".join(f"{c['number']}: {short(c['params'])}" for c in claims)
    )
    specs = [_spec(worker, c, lease) for c, lease in zip(claims, leases, strict=True)]
    try:
        outcomes = _train(worker, specs, task)
    except HandBackNow:
        for lease in leases:
            worker.release(lease, "worker interrupted")
        return
    except Exception:  # the task itself (data, split): every trial of the pack fails with it
        error = traceback.format_exc()
        worker.say(f"pack failed:\n{error}")
        for lease in leases:
            worker.fail(lease, error)
        return
    for claim, lease, outcome in zip(claims, leases, outcomes, strict=True):
        if not isinstance(outcome, Exception):
            # Shown with the trial's metrics: its train_seconds are the whole pack's.
            outcome.metrics["pack_size"] = float(len(claims))
        _finish(worker, claim, lease, outcome)


def _train(worker: Worker, specs: list[Any], task: Mapping[str, Any]) -> list[Any]:
    # torch is imported only when a pack trains, so `hpsearch worker --help` stays instant.
    import torch

    from workers.training.packed import train_packed

    torch.set_num_threads(worker.opts.threads or int(os.environ.get("OMP_NUM_THREADS", "1")))
    bind(worker.device)
    return train_packed(specs, task, worker.device)


def _spec(worker: Worker, claim: Claim, lease: Lease) -> Any:
    from workers.training.packed import PackedTrialSpec

    number, epochs = claim["number"], int(claim["task"].get("epochs", 0))
    report = worker.reporter(lease, number, epochs)
    return PackedTrialSpec(claim["params"], number, report, lease.checkpoints(worker.say))


def _finish(worker: Worker, claim: Claim, lease: Lease, outcome: Any) -> None:
    """As Worker.run_trial ends a trial, for one trial of a pack."""
    number = claim["number"]
    if isinstance(outcome, TrainingDiverged):  # a real outcome, not a crash
        worker.say(f"trial {number} diverged: {outcome}")
        outcome = outcome.result(claim["task"])
    if isinstance(outcome, ApiError) and outcome.status == 409:
        worker.say(f"trial {number}: lease lost ({outcome.message}); dropping it")
    elif isinstance(outcome, Exception):
        error = "".join(traceback.format_exception(outcome))
        worker.say(f"trial {number} failed:\n{error}")
        worker.fail(lease, error)
    elif lease.lost:
        worker.say(f"trial {number}: lease lost; dropping its result")
    elif worker.stopping and outcome.stopped_early and lease.stop_reason is None:
        worker.release(lease, "worker shutting down")
    else:
        worker.complete(lease, number, outcome)
