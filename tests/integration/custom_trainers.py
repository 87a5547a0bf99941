"""Custom entry points for the worker tests: fast, deterministic, and observable.

Importing this module writes the file named by ``HPSEARCH_TEST_IMPORT_MARKER`` (when set), so a
test can tell whether a worker ever imported it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

_marker = os.environ.get("HPSEARCH_TEST_IMPORT_MARKER")
if _marker:
    Path(_marker).write_text(f"imported by pid {os.getpid()}\n")


def curve(trial: Any) -> dict[str, float]:
    """A learning curve fixed by the parameters: ``quality * (1 - 0.6**step)``, so trials
    never cross and the one with the highest quality is best at every step."""
    quality = float(trial.params["quality"])
    value = 0.0
    for step in range(1, trial.epochs + 1):
        value = quality * (1 - 0.6**step)
        if trial.report(step, {"dev_accuracy": value, "dev_loss": 1 - value}):
            break
    return {"dev_accuracy": value, "dev_loss": 1 - value, "steps": float(step)}


def gated(trial: Any) -> dict[str, float]:
    """Reports step 1, then waits until the file ``params.gate`` exists (or the worker asks
    the trial to stop), then runs its remaining steps."""
    gate = Path(trial.params["gate"])
    deadline = time.monotonic() + 120
    for step in range(1, trial.epochs + 1):
        if trial.report(step, {"dev_accuracy": 0.1 * step}):
            return {"dev_accuracy": 0.1 * step}
        while not gate.exists() and not trial.should_stop:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{gate} never appeared")
            time.sleep(0.02)
    return {"dev_accuracy": 0.1 * trial.epochs, "latency_ms": 1.0}


def stubborn(trial: Any) -> dict[str, float]:
    """Reports step 1, then waits for ``params.gate`` without ever checking should_stop: an
    epoch that will not end by itself (only a second signal hands the trial back)."""
    gate = Path(trial.params["gate"])
    trial.report(1, {"dev_accuracy": 0.1})
    deadline = time.monotonic() + 120
    while not gate.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{gate} never appeared")
        time.sleep(0.02)
    return {"dev_accuracy": 0.2}


def crash(trial: Any) -> dict[str, float]:
    trial.report(1, {"dev_accuracy": 0.5})
    raise ZeroDivisionError("the user's training code divided by zero")


def checkpointed(trial: Any) -> dict[str, float]:
    """Reports steps 1..epochs, saving a checkpoint after each; a first attempt (no
    checkpoint to resume from) stops making progress after step ``params.hold_at`` until the
    worker is killed or asks it to stop."""
    state = trial.load_checkpoint()
    first = 1 if state is None else int(state["step"]) + 1
    for step in range(first, trial.epochs + 1):
        trial.report(step, {"dev_accuracy": 0.1 * step})
        trial.save_checkpoint({"step": step})
        if state is None and step == int(trial.params["hold_at"]):
            deadline = time.monotonic() + 120
            while not trial.should_stop and time.monotonic() < deadline:
                time.sleep(0.05)
            return {"dev_accuracy": 0.1 * step}
    return {"dev_accuracy": 0.1 * trial.epochs, "first_step": float(first)}


def outcome(trial: Any) -> dict[str, float] | None:
    """Ends as ``params.outcome`` says: ``good`` reports the objective, ``typo`` a near miss
    of its name, ``nan`` a NaN objective, ``silent`` nothing at all."""
    kind = trial.params["outcome"]
    if kind == "silent":
        return None
    if kind == "typo":
        return {"dev_acc": 0.9}
    return {"dev_accuracy": float("nan") if kind == "nan" else 0.5}


def missing_data(trial: Any) -> dict[str, float]:
    """A trial whose data is not on this worker: a setup error, not the trial's."""
    raise FileNotFoundError(f"dataset folder {trial.params['quality']:.2f}/ does not exist")


def broken_here(trial: Any) -> dict[str, float]:
    """Trains on a healthy worker; crashes on one started with HPSEARCH_TEST_BROKEN set."""
    if os.environ.get("HPSEARCH_TEST_BROKEN"):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")
    return {"dev_accuracy": float(trial.params["quality"])}


def paced(trial: Any) -> dict[str, float]:
    """A trainer whose pace the test sets, for population-based training: each epoch adds
    ``params.quality`` to its score (``dev_accuracy``), so which trials are the worst and the
    best at an epoch is known from their parameters. It trains epoch ``e`` only once the file
    ``params.gates/<trial number>`` holds a number >= ``e``.

    Its checkpoint holds the score and, per epoch, the trial number and the quality that
    trained it: whatever resumes or copies it carries its lineage's history on.
    """
    state = trial.load_checkpoint() or {"step": 0, "score": 0.0, "by": [], "quality": []}
    gate = Path(trial.params["gates"]) / str(trial.number)
    deadline = time.monotonic() + 120
    for step in range(int(state["step"]) + 1, trial.epochs + 1):
        while not trial.should_stop and int(_read(gate) or 0) < step:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{gate} never allowed epoch {step}")
            time.sleep(0.02)
        if trial.should_stop:
            break
        quality = float(trial.params["quality"])
        state = {
            "step": step,
            "score": float(state["score"]) + quality,
            "by": [*state["by"], trial.number],
            "quality": [*state["quality"], quality],
        }
        stop = trial.report(step, {"dev_accuracy": state["score"]})
        trial.save_checkpoint(state)
        if stop:
            break
    return {"dev_accuracy": float(state["score"])}


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None
