"""An ordinary PyTorch training script: argparse flags, a loop, a JSON line per epoch.

It knows nothing of hpsearch. Run it by hand::

    python train.py --lr 0.05 --hidden 64 --epochs 10

or let hpsearch search it (examples/command-study.yaml): the study's ``task.command`` fills
the flags from each trial's parameters, every printed JSON line with a ``step`` is a report,
and ``--checkpoint-dir`` (a folder hpsearch keeps for the trial) lets a trial whose worker
died resume where it stopped instead of at epoch 1.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from torch import nn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-dir", default=None)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    x_train, y_train, x_dev, y_dev = x[:1200], y[:1200], x[1200:], y[1200:]
    model = nn.Sequential(nn.Linear(64, args.hidden), nn.ReLU(), nn.Linear(args.hidden, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)

    first = 1
    saved = Path(args.checkpoint_dir, "state.pt") if args.checkpoint_dir else None
    if saved is not None and saved.exists():
        state = torch.load(saved)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        first = state["epoch"] + 1

    for epoch in range(first, args.epochs + 1):
        model.train()
        for batch in torch.randperm(len(x_train)).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x_train[batch]), y_train[batch]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            train_accuracy = (model(x_train).argmax(1) == y_train).float().mean().item()
            dev_accuracy = (model(x_dev).argmax(1) == y_dev).float().mean().item()
            start = time.perf_counter()
            model(x_dev[:1])
            latency_ms = (time.perf_counter() - start) * 1000
        if saved is not None:
            state = {
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
            }
            torch.save(state, saved.with_suffix(".tmp"))
            saved.with_suffix(".tmp").replace(saved)  # never half a file
        line = {
            "step": epoch,
            "train_accuracy": train_accuracy,
            "dev_accuracy": dev_accuracy,
            "latency_ms": latency_ms,
        }
        print(json.dumps(line))


if __name__ == "__main__":
    main()
