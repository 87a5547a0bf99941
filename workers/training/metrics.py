"""What a trial measures about its model: loss and accuracy per split, macro precision /
recall / F1, single-example latency, and size."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional

from workers.training.splits import Split


@dataclass(frozen=True)
class Evaluation:
    loss: float
    """Mean cross-entropy, without the L2 penalty (so it compares across weight decays)."""
    accuracy: float
    predictions: torch.Tensor


def evaluate(model: nn.Module, split: Split, batch_size: int = 4096) -> Evaluation:
    """Evaluates in eval mode (dropout off, batch norm on its running statistics)."""
    was_training = model.training
    model.eval()
    loss = torch.zeros((), dtype=torch.float64, device=split.y.device)
    predictions = []
    with torch.inference_mode():
        for start in range(0, len(split), batch_size):
            logits = model(split.x[start : start + batch_size])
            y = split.y[start : start + batch_size]
            loss += functional.cross_entropy(logits, y, reduction="sum").double()
            predictions.append(logits.argmax(dim=1))
    model.train(was_training)
    predicted = torch.cat(predictions)
    correct = (predicted == split.y).sum()
    # One transfer for both numbers: each .item() on a GPU waits for the device.
    total_loss, n_correct = torch.stack([loss, correct.double()]).tolist()
    return Evaluation(total_loss / len(split), n_correct / len(split), predicted)


def macro_scores(y_true: torch.Tensor, y_pred: torch.Tensor) -> dict[str, float]:
    """Precision, recall and F1 averaged over the classes present in either tensor, a class
    with nothing predicted (or no example) scoring 0: scikit-learn's macro with
    zero_division=0."""
    n = int(max(int(y_true.max()), int(y_pred.max()))) + 1
    true_count = torch.bincount(y_true, minlength=n).double()
    pred_count = torch.bincount(y_pred, minlength=n).double()
    hits = torch.bincount(y_true[y_true == y_pred], minlength=n).double()
    present = (true_count + pred_count) > 0
    precision = torch.where(pred_count > 0, hits / pred_count.clamp(min=1), 0.0)
    recall = torch.where(true_count > 0, hits / true_count.clamp(min=1), 0.0)
    denominator = precision + recall
    f1 = torch.where(denominator > 0, 2 * precision * recall / denominator.clamp(min=1e-12), 0.0)
    return {
        "precision": float(precision[present].mean()),
        "recall": float(recall[present].mean()),
        "f1": float(f1[present].mean()),
    }


def latency_ms(model: nn.Module, example: torch.Tensor, runs: int = 50, warmup: int = 5) -> float:
    """Median wall time of one forward pass on a batch of one, in eval mode, after warm-up
    (first calls pay for allocation and kernel selection). The median shrugs off the odd
    scheduler hiccup that a mean would report as latency."""
    was_training = model.training
    model.eval()
    times: list[float] = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            _synchronize(example.device)
            start = time.perf_counter()
            model(example)
            _synchronize(example.device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    model.train(was_training)
    return statistics.median(times) * 1000.0


def _synchronize(device: torch.device) -> None:
    # CUDA and MPS run asynchronously: without this the clock would time the launch only.
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def model_size(model: nn.Module) -> tuple[int, int]:
    """(number of parameters, bytes of parameters and buffers such as batch-norm statistics)."""
    n_params = sum(p.numel() for p in model.parameters())
    n_bytes = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    return n_params, n_bytes
