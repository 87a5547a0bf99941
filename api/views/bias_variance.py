"""The bias/variance panel of a trial: the error ladder from human-level to test, the gaps
between its rungs as numbers and bars, and the next step for the largest gap."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hpsearch.diagnosis import diagnose

GAP_LABELS = {
    "avoidable_bias": "Avoidable bias",
    "variance": "Variance",
    "data_mismatch": "Data mismatch",
    "dev_overfitting": "Dev overfitting",
}


@dataclass(frozen=True)
class Rung:
    label: str
    value: float


@dataclass(frozen=True)
class Gap:
    key: str
    label: str
    between: str  # "train − human-level"
    value: float
    width: float  # bar length, 0..100 (% of the largest positive gap)
    largest: bool
    note: str = ""  # why a negative gap is not a problem (shown beside it)


@dataclass(frozen=True)
class Panel:
    rungs: list[Rung]
    gaps: list[Gap]
    largest: str
    advice: str
    reference_given: bool


def split_error(metrics: Mapping[str, float | None], split: str) -> float | None:
    """``{split}_error``, or 1 − ``{split}_accuracy`` when only the accuracy is reported."""
    error = metrics.get(f"{split}_error")
    if error is not None:
        return error
    accuracy = metrics.get(f"{split}_accuracy")
    return None if accuracy is None else 1.0 - accuracy


_NEGATIVE = {
    "avoidable_bias": "train error below human-level: the model fits the training set better"
    " than the reference (or the reference is set too high); no bias to remove",
    "variance": "dev error below train error: no overfitting to see (often regularization"
    " that is off at evaluation, or an easy dev set)",
    "data_mismatch": "dev error below train-dev error: no mismatch to see",
    "dev_overfitting": "test error below dev error: the dev set was not overfit",
}


def negative_note(key: str) -> str:
    """What a gap below zero means: nothing to fix on that rung, and why it can happen."""
    return _NEGATIVE.get(key, "below zero: nothing to fix here")


def panel(metrics: Mapping[str, float | None], reference_error: float | None) -> Panel | None:
    """``None`` when the trial reports no train and dev error (nor accuracy) to compare."""
    train, dev = split_error(metrics, "train"), split_error(metrics, "dev")
    if train is None or dev is None:
        return None
    train_dev, test = split_error(metrics, "train_dev"), split_error(metrics, "test")
    human = reference_error if reference_error is not None else 0.0
    d = diagnose(train, dev, human, train_dev, test)
    rungs = [
        Rung("Human-level" if reference_error is not None else "Human-level (0 assumed)", human),
        Rung("Train", train),
    ]
    if train_dev is not None:
        rungs.append(Rung("Train-dev", train_dev))
    rungs.append(Rung("Dev", dev))
    if test is not None:
        rungs.append(Rung("Test", test))
    between = {
        "avoidable_bias": "train − human-level",
        "variance": "train-dev − train" if train_dev is not None else "dev − train",
        "data_mismatch": "dev − train-dev",
        "dev_overfitting": "test − dev",
    }
    top = max([g for g in d.gaps.values() if g > 0], default=0.0)
    gaps = [
        Gap(
            key,
            GAP_LABELS[key],
            between[key],
            value,
            100.0 * max(value, 0.0) / top if top > 0 else 0.0,
            key == d.largest,
            negative_note(key) if value < 0 else "",
        )
        for key, value in d.gaps.items()
    ]
    return Panel(rungs, gaps, d.largest, d.advice, reference_error is not None)
