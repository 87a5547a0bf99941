"""Bias / variance: which gap is largest, and the orthogonal next step for it.

With human-level (≈ Bayes) error as the reference: avoidable bias = train − human,
variance = dev − train (or train-dev − train when a train-dev set exists, with
data mismatch = dev − train-dev), and dev overfitting = test − dev once the test set is used.
"""

from __future__ import annotations

from dataclasses import dataclass

ADVICE: dict[str, str] = {
    "avoidable_bias": "fight bias: a bigger network, train longer, a better optimizer "
    "(momentum/Adam) or architecture",
    "variance": "fight variance: more data, regularization (L2, dropout), data augmentation",
    "data_mismatch": "make the training data more like dev/test (collect or synthesize it)",
    "dev_overfitting": "the dev set is overfit by the search: get a bigger dev set",
}


@dataclass(frozen=True)
class Diagnosis:
    human_error: float
    train_error: float
    dev_error: float
    train_dev_error: float | None
    test_error: float | None
    gaps: dict[str, float]
    largest: str
    advice: str

    def summary(self) -> str:
        parts = [f"{name.replace('_', ' ')} {gap:.2%}" for name, gap in self.gaps.items()]
        return f"{', '.join(parts)} → {self.advice}"


def diagnose(
    train_error: float,
    dev_error: float,
    human_error: float = 0.0,
    train_dev_error: float | None = None,
    test_error: float | None = None,
) -> Diagnosis:
    gaps: dict[str, float] = {"avoidable_bias": train_error - human_error}
    if train_dev_error is not None:
        gaps["variance"] = train_dev_error - train_error
        gaps["data_mismatch"] = dev_error - train_dev_error
    else:
        gaps["variance"] = dev_error - train_error
    if test_error is not None:
        gaps["dev_overfitting"] = test_error - dev_error
    largest = max(gaps, key=lambda k: gaps[k])
    return Diagnosis(
        human_error,
        train_error,
        dev_error,
        train_dev_error,
        test_error,
        gaps,
        largest,
        ADVICE[largest],
    )
