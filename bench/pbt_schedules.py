"""Budget spent well: PBT against random search and ASHA at equal total epochs, and Hyperband
against ASHA and no pruning, on the built-in MLP trained on scikit-learn's digits.

The task is schedule-sensitive: plain SGD (no momentum, no decay) whose best learning rate is
high early and lower later, so a population that anneals its learning rate as it trains can beat
any single fixed one. Every algorithm here runs in this process, with the project's own rules:

- PBT (``hpsearch.pbt``): a population of 8 trains ``interval`` epochs at a time from in-memory
  checkpoints (``workers.training.train_trial`` resumes from them); after each interval every
  trial in the bottom quantile (:func:`hpsearch.pbt.donors`, judged against the whole
  population: the synchronous variant) copies a top trial's checkpoint and goes on with its
  hyperparameters perturbed (:func:`hpsearch.pbt.perturb`).
- random search: 8 trials of the full epochs (the same total epochs as PBT);
- ASHA (``hpsearch.pruning.AshaPruner``): trials sampled one after another and stopped at
  rungs, until the same total epochs are spent;
- no pruning / ASHA / Hyperband (``hpsearch.pruning_hyperband``) on the same N trials: total
  epochs spent and best dev accuracy reached.

Trials run sequentially (each judged against those before it), with one torch thread, seeds
paired across algorithms. Prints the median over seeds and ratios against random search (PBT)
and no pruning (Hyperband).

Run from the repository root::

    .venv/bin/python bench/pbt_schedules.py               # 5 seeds, ~2-5 minutes on 2 cores
    .venv/bin/python bench/pbt_schedules.py --seeds 2     # a smoke run
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

from hpsearch.objective import Direction
from hpsearch.pbt import Pbt, donors, perturb
from hpsearch.pruning import AshaPruner
from hpsearch.pruning_hyperband import HyperbandPruner
from hpsearch.space import FloatParam, ParamValue, Space

EPOCHS = 12
POPULATION = 8
SPACE = Space([FloatParam("lr", 1e-3, 1.0, "log"), FloatParam("weight_decay", 1e-6, 1e-2, "log")])
FIXED = {"optimizer": "sgd", "layers": 2, "hidden_units": 64, "batch_size": 32}


def task(epochs: int) -> dict[str, Any]:
    return {
        "trainer": "mlp_classifier",
        "dataset": "digits",
        "epochs": epochs,
        "fixed": FIXED,
        "checkpoint_every": 1,
    }


@dataclass
class Memory:
    """One trial's checkpoints, in memory (``workers.training.checkpoint.Checkpoints``)."""

    data: bytes | None = None

    def load(self) -> bytes | None:
        return self.data

    def save(self, step: int, data: bytes) -> None:
        self.data = data


@dataclass
class Spent:
    """Epochs spent so far and the best dev accuracy seen at each point."""

    epochs: int = 0
    curve: list[tuple[int, float]] = field(default_factory=list)

    def add(self, accuracy: float) -> None:
        self.epochs += 1
        best = max(accuracy, self.curve[-1][1]) if self.curve else accuracy
        self.curve.append((self.epochs, best))

    @property
    def best(self) -> float:
        return self.curve[-1][1] if self.curve else 0.0

    def epochs_to(self, target: float) -> float:
        return next((float(e) for e, b in self.curve if b >= target), math.inf)


def train(
    params: dict[str, ParamValue],
    until: int,
    spent: Spent,
    memory: Memory | None = None,
    stop: Callable[[int, float], bool] | None = None,
) -> list[float]:
    """Trains up to epoch ``until`` (from ``memory``'s checkpoint); the dev accuracies."""
    from workers.outcomes import TrainingDiverged
    from workers.training.run import train_trial

    seen: list[float] = []

    def report(epoch: int, metrics: dict[str, float]) -> bool:
        value = metrics["dev_accuracy"]
        value = value if math.isfinite(value) else 0.0
        seen.append(value)
        spent.add(value)
        return stop is not None and stop(epoch, value)

    with contextlib.suppress(TrainingDiverged):
        train_trial(params, task(until), report, seed=0, checkpoints=memory)
    return seen


def sample(rng: np.random.Generator) -> dict[str, ParamValue]:
    return SPACE.from_unit({name: float(rng.random()) for name in SPACE})


# -- PBT, random, ASHA at equal epochs --------------------------------------------------------


def run_pbt(seed: int) -> Spent:
    rng = np.random.default_rng(seed)
    config = Pbt(POPULATION, interval=2, quantile=0.25, perturb=(0.8, 1.2))
    members = [(sample(rng), Memory()) for _ in range(POPULATION)]
    spent = Spent()
    for end in range(config.interval, EPOCHS + 1, config.interval):
        last: dict[int, float | None] = {}
        for i, (params, memory) in enumerate(members):
            seen = train(params, end, spent, memory)
            last[i] = seen[-1] if seen else None
        if end == EPOCHS:
            break
        for i in list(last):
            top = donors(config, i, last, "maximize")
            if top:
                j = top[int(rng.integers(len(top)))]
                params = perturb(SPACE, members[j][0], config, rng)
                members[i] = (params, Memory(members[j][1].data))
    return spent


def run_random(seed: int) -> Spent:
    rng = np.random.default_rng(seed)
    spent = Spent()
    for _ in range(POPULATION):
        train(sample(rng), EPOCHS, spent)
    return spent


class Curves:
    """In-memory answers to a pruner's questions (as the store gives them in SQL)."""

    def __init__(self, direction: Direction = "maximize") -> None:
        self.values: dict[int, dict[int, float]] = {}
        self.number = -1
        self.direction = direction

    def others_at(self, step: int, *, completed_only: bool) -> list[float | None]:
        return [c[step] for n, c in self.values.items() if n != self.number and step in c]

    def numbered_others_at(self, step: int) -> list[tuple[int, float | None]]:
        return [(n, c[step]) for n, c in self.values.items() if n != self.number and step in c]

    def best_so_far(self, step: int) -> float | None:
        mine = [v for s, v in self.values[self.number].items() if s <= step]
        return max(mine) if mine else None

    def n_completed(self) -> int:
        return len(self.values)


def run_pruned(seed: int, pruner: Any, trials: int | None, budget: int | None) -> Spent:
    """Trials one after another, stopped by ``pruner``, until ``trials`` ran or ``budget``
    epochs were spent."""
    rng = np.random.default_rng(seed)
    spent, curves = Spent(), Curves()
    number = 0
    while (trials is None or number < trials) and (budget is None or spent.epochs < budget):
        curves.number = number
        curves.values[number] = {}

        def stop(epoch: int, value: float, number: int = number) -> bool:
            curves.values[number][epoch] = value
            if budget is not None and spent.epochs >= budget:
                return True
            if pruner is None or epoch >= EPOCHS or not pruner.judges(epoch):
                return False
            return pruner.decide(epoch, value, curves) is not None

        train(sample(rng), EPOCHS, spent, stop=stop)
        number += 1
    return spent


# -- main -----------------------------------------------------------------------------------


def job(args: tuple[str, int, int]) -> tuple[str, int, Spent, float]:
    import torch

    torch.set_num_threads(1)
    name, seed, hb_trials = args
    started = time.perf_counter()
    asha = AshaPruner("dev_accuracy", "maximize", 1, 3)
    hyperband = HyperbandPruner("dev_accuracy", "maximize", f"bench-{seed}", 1, EPOCHS, 3)
    runs: dict[str, Callable[[], Spent]] = {
        "pbt": lambda: run_pbt(seed),
        "random": lambda: run_random(seed),
        "asha@equal": lambda: run_pruned(seed, asha, None, POPULATION * EPOCHS),
        "none": lambda: run_pruned(seed, None, hb_trials, None),
        "asha": lambda: run_pruned(seed, asha, hb_trials, None),
        "hyperband": lambda: run_pruned(seed, hyperband, hb_trials, None),
    }
    spent = runs[name]()
    return name, seed, spent, time.perf_counter() - started


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=18, help="trials for the pruner runs")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    names = ("pbt", "random", "asha@equal", "none", "asha", "hyperband")
    jobs = [(n, s, args.trials) for s in range(args.seeds) for n in names]
    started = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(job, jobs))
    print(
        f"{len(jobs)} runs, {args.seeds} seeds, MLP on digits, SGD, {EPOCHS} epochs "
        f"({time.perf_counter() - started:.0f} s)"
    )
    by = {(n, s): spent for n, s, spent, _ in results}
    seeds = range(args.seeds)

    print(f"\nAt equal total epochs ({POPULATION} x {EPOCHS} = {POPULATION * EPOCHS}):")
    print(f"  {'':<12} {'best dev accuracy':>18} {'epochs to random best':>22}")
    for name in ("random", "asha@equal", "pbt"):
        best = median([by[name, s].best for s in seeds])
        to = median([by[name, s].epochs_to(by["random", s].best) for s in seeds])
        print(f"  {name:<12} {best:18.4f} {to:22.1f}")
    ratio = median(
        [
            by["pbt", s].epochs_to(by["random", s].best)
            / by["random", s].epochs_to(by["random", s].best)
            for s in seeds
        ]
    )
    print(f"  PBT reaches random search's best in {ratio:.2f}x the epochs random needed (median)")

    print(f"\nOn the same {args.trials} trials:")
    print(f"  {'':<12} {'total epochs':>13} {'x none':>7} {'best dev accuracy':>18}")
    none = median([by["none", s].epochs for s in seeds])
    for name in ("none", "asha", "hyperband"):
        epochs = median([by[name, s].epochs for s in seeds])
        best = median([by[name, s].best for s in seeds])
        print(f"  {name:<12} {epochs:13.0f} {epochs / none:7.2f} {best:18.4f}")


if __name__ == "__main__":
    main()
