"""Budget spent well: PBT against random search and ASHA at equal total epochs, and Hyperband
against ASHA and no pruning, on two tasks:

- ``nqm`` (default): a noisy quadratic model (Zhang et al., 2019, "Which algorithmic choices
  matter at which batch sizes?"), written as user code that uses the checkpoint API
  (:func:`noisy_quadratic`, run through ``workers.custom.run_custom`` as a worker runs an
  entry point). SGD on a 100-dimensional quadratic whose curvatures fall as ``1 / i``, with
  gradient noise: a high learning rate makes fast progress early but stalls on a noise floor
  that grows with it, a low one gets lower but slowly. So the best learning rate falls during
  training, and a schedule beats any constant: the task PBT is for. It is the expected-loss
  dynamics, in closed form, so a trial's loss is a deterministic function of its learning
  rates over time, and a run of all algorithms over 10 seeds takes seconds.
- ``digits``: the built-in MLP (2 x 64, plain SGD, batch 32) on scikit-learn's digits, lr and
  weight decay log-scaled; on this one every method ends within 0.3 points of accuracy.

Every algorithm runs in this process, with the project's own rules:

- PBT (``hpsearch.pbt``): a population of 8 trains ``interval`` epochs at a time from in-memory
  checkpoints; after each interval every trial in the bottom quantile
  (:func:`hpsearch.pbt.donors`, judged against the whole population: the synchronous variant)
  copies a top trial's checkpoint and goes on with its hyperparameters perturbed
  (:func:`hpsearch.pbt.perturb`).
- random search: 8 trials of the full epochs (the same total epochs as PBT);
- ASHA (``hpsearch.pruning.AshaPruner``): trials sampled one after another and stopped at
  rungs, until the same total epochs are spent;
- no pruning / ASHA / Hyperband (``hpsearch.pruning_hyperband``) on the same N trials: total
  epochs spent and best dev metric reached.

Trials run sequentially (each judged against those before it), with one torch thread, seeds
paired across algorithms. Prints the median over seeds and ratios against random search (PBT)
and no pruning (Hyperband).

Run from the repository root::

    .venv/bin/python bench/pbt_schedules.py --seeds 20              # the NQM, seconds
    .venv/bin/python bench/pbt_schedules.py --task digits --seeds 10  # minutes
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


@dataclass(frozen=True)
class Task:
    """What a bench run trains: its space, the metric it judges by, and how one trial trains
    (``train_task(params, task, report, checkpoints)``)."""

    name: str
    space: Space
    metric: str
    direction: Direction
    task: Callable[[int], dict[str, Any]]
    train: Callable[..., Any]

    def better(self, a: float, b: float) -> float:
        return max(a, b) if self.direction == "maximize" else min(a, b)

    def reached(self, value: float, target: float) -> bool:
        return value >= target if self.direction == "maximize" else value <= target


# -- the noisy quadratic model ------------------------------------------------------------------

NQM_CURVATURES = 1.0 / np.arange(1, 101)  # h_i = 1 / i: a power-law spectrum, as in the paper
NQM_NOISE = 0.01  # gradient noise variance along each direction, per unit curvature
NQM_STEPS = 20  # SGD steps per epoch


def noisy_quadratic(trial: Any) -> dict[str, float]:
    """SGD with learning rate ``trial.params["lr"]`` on ``L(x) = 1/2 sum_i h_i x_i^2`` with
    noisy gradients ``h_i x_i + e_i`` (``Var e_i = NQM_NOISE h_i``), from ``E[x_i^2] = 1``.
    Each step ``E[x_i^2] <- (1 - lr h_i)^2 E[x_i^2] + lr^2 NQM_NOISE h_i`` (exact); an
    epoch is ``NQM_STEPS`` steps and reports the expected loss as ``dev_loss``. Its state
    (the ``E[x_i^2]``) goes through the checkpoint API, so it resumes, forks and is copied
    by PBT like any user code."""
    state = trial.load_checkpoint() or {"epoch": 0, "second_moments": [1.0] * 100}
    moments = np.array(state["second_moments"], dtype=float)
    h, lr = NQM_CURVATURES, float(trial.params["lr"])
    loss = float(0.5 * np.sum(h * moments))
    for epoch in range(int(state["epoch"]) + 1, trial.epochs + 1):
        for _ in range(NQM_STEPS):
            moments = (1 - lr * h) ** 2 * moments + lr**2 * NQM_NOISE * h
        loss = float(0.5 * np.sum(h * moments))
        if not math.isfinite(loss):
            loss = math.inf
        stop = trial.report(epoch, {"dev_loss": loss})
        trial.save_checkpoint({"epoch": epoch, "second_moments": moments.tolist()})
        if stop:
            break
    return {"dev_loss": loss}


def _run_nqm(
    params: dict[str, ParamValue], task: dict[str, Any], report: Any, checkpoints: Any
) -> Any:
    from workers.custom import run_custom

    entry_point = task["entry_point"]
    return run_custom(params, task, report, allowed=[entry_point], checkpoints=checkpoints)


def _run_builtin(
    params: dict[str, ParamValue], task: dict[str, Any], report: Any, checkpoints: Any
) -> Any:
    from workers.training.run import train_trial

    return train_trial(params, task, report, seed=0, checkpoints=checkpoints)


def _nqm_task(epochs: int) -> dict[str, Any]:
    return {
        "trainer": "custom",
        "entry_point": "bench.pbt_schedules:noisy_quadratic",
        "epochs": epochs,
        "checkpoint_every": 1,
    }


def _digits_task(epochs: int) -> dict[str, Any]:
    return {
        "trainer": "mlp_classifier",
        "dataset": "digits",
        "epochs": epochs,
        "fixed": {"optimizer": "sgd", "layers": 2, "hidden_units": 64, "batch_size": 32},
        "checkpoint_every": 1,
    }


NQM = Task(
    "nqm",
    # Stable while lr * max h < 2; the top of the range is the fastest start.
    Space([FloatParam("lr", 1e-3, 1.99, "log")]),
    "dev_loss",
    "minimize",
    _nqm_task,
    _run_nqm,
)
DIGITS = Task(
    "digits",
    Space([FloatParam("lr", 1e-3, 1.0, "log"), FloatParam("weight_decay", 1e-6, 1e-2, "log")]),
    "dev_accuracy",
    "maximize",
    _digits_task,
    _run_builtin,
)
TASKS = {t.name: t for t in (NQM, DIGITS)}


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
    """Epochs spent so far and the best dev metric seen at each point."""

    task: Task
    epochs: int = 0
    curve: list[tuple[int, float]] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.epochs += 1
        best = self.task.better(value, self.curve[-1][1]) if self.curve else value
        self.curve.append((self.epochs, best))

    @property
    def best(self) -> float:
        return self.curve[-1][1] if self.curve else math.nan

    def epochs_to(self, target: float) -> float:
        return next((float(e) for e, b in self.curve if self.task.reached(b, target)), math.inf)


def train(
    params: dict[str, ParamValue],
    until: int,
    spent: Spent,
    memory: Memory | None = None,
    stop: Callable[[int, float], bool] | None = None,
) -> list[float]:
    """Trains up to epoch ``until`` (from ``memory``'s checkpoint); the dev metric's values."""
    from workers.outcomes import TrainingDiverged

    task = spent.task
    worst = -math.inf if task.direction == "maximize" else math.inf
    seen: list[float] = []

    def report(epoch: int, metrics: dict[str, float]) -> bool:
        value = metrics[task.metric]
        value = value if math.isfinite(value) else worst
        seen.append(value)
        spent.add(value)
        return stop is not None and stop(epoch, value)

    with contextlib.suppress(TrainingDiverged):
        task.train(params, task.task(until), report, memory)
    return seen


def sample(space: Space, rng: np.random.Generator) -> dict[str, ParamValue]:
    return space.from_unit({name: float(rng.random()) for name in space})


# -- PBT, random, ASHA at equal epochs --------------------------------------------------------


def run_pbt(task: Task, seed: int) -> Spent:
    rng = np.random.default_rng(seed)
    config = Pbt(POPULATION, interval=2, quantile=0.25, perturb=(0.8, 1.2))
    members = [(sample(task.space, rng), Memory()) for _ in range(POPULATION)]
    spent = Spent(task)
    for end in range(config.interval, EPOCHS + 1, config.interval):
        last: dict[int, float | None] = {}
        for i, (params, memory) in enumerate(members):
            seen = train(params, end, spent, memory)
            last[i] = seen[-1] if seen else None
        if end == EPOCHS:
            break
        for i in list(last):
            top = donors(config, i, last, task.direction)
            if top:
                j = top[int(rng.integers(len(top)))]
                params = perturb(task.space, members[j][0], config, rng)
                members[i] = (params, Memory(members[j][1].data))
    return spent


def run_random(task: Task, seed: int) -> Spent:
    rng = np.random.default_rng(seed)
    spent = Spent(task)
    for _ in range(POPULATION):
        train(sample(task.space, rng), EPOCHS, spent)
    return spent


class Curves:
    """In-memory answers to a pruner's questions (as the store gives them in SQL)."""

    def __init__(self, direction: Direction) -> None:
        self.values: dict[int, dict[int, float]] = {}
        self.number = -1
        self.direction = direction

    def others_at(self, step: int, *, completed_only: bool) -> list[float | None]:
        return [c[step] for n, c in self.values.items() if n != self.number and step in c]

    def numbered_others_at(self, step: int) -> list[tuple[int, float | None]]:
        return [(n, c[step]) for n, c in self.values.items() if n != self.number and step in c]

    def best_so_far(self, step: int) -> float | None:
        mine = [v for s, v in self.values[self.number].items() if s <= step]
        if not mine:
            return None
        return max(mine) if self.direction == "maximize" else min(mine)

    def n_completed(self) -> int:
        return len(self.values)


def run_pruned(task: Task, seed: int, pruner: Any, trials: int | None, budget: int | None) -> Spent:
    """Trials one after another, stopped by ``pruner``, until ``trials`` ran or ``budget``
    epochs were spent."""
    rng = np.random.default_rng(seed)
    spent, curves = Spent(task), Curves(task.direction)
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

        train(sample(task.space, rng), EPOCHS, spent, stop=stop)
        number += 1
    return spent


def best_constant_lr() -> tuple[float, float]:
    """The NQM's best learning rate held constant for all epochs, over a log grid of its
    range: what no schedule-free search can beat."""
    (param,) = NQM.space.values()
    found = []
    for u in np.linspace(0, 1, 100):
        lr = float(param.from_unit(float(u)))
        found.append((train({"lr": lr}, EPOCHS, Spent(NQM))[-1], lr))
    loss, lr = min(found)
    return lr, loss


# -- main -----------------------------------------------------------------------------------


def job(args: tuple[str, str, int, int]) -> tuple[str, int, Spent, float]:
    import torch

    torch.set_num_threads(1)
    task_name, name, seed, hb_trials = args
    task = TASKS[task_name]
    started = time.perf_counter()
    asha = AshaPruner(task.metric, task.direction, 1, 3)
    hyperband = HyperbandPruner(task.metric, task.direction, f"bench-{seed}", 1, EPOCHS, 3)
    runs: dict[str, Callable[[], Spent]] = {
        "pbt": lambda: run_pbt(task, seed),
        "random": lambda: run_random(task, seed),
        "asha@equal": lambda: run_pruned(task, seed, asha, None, POPULATION * EPOCHS),
        "none": lambda: run_pruned(task, seed, None, hb_trials, None),
        "asha": lambda: run_pruned(task, seed, asha, hb_trials, None),
        "hyperband": lambda: run_pruned(task, seed, hyperband, hb_trials, None),
    }
    spent = runs[name]()
    return name, seed, spent, time.perf_counter() - started


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="nqm")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=18, help="trials for the pruner runs")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    task = TASKS[args.task]
    names = ("pbt", "random", "asha@equal", "none", "asha", "hyperband")
    jobs = [(task.name, n, s, args.trials) for s in range(args.seeds) for n in names]
    started = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(job, jobs))
    print(
        f"{len(jobs)} runs, {args.seeds} seeds, task {task.name} ({task.metric}, "
        f"{task.direction}), {EPOCHS} epochs ({time.perf_counter() - started:.0f} s)"
    )
    by = {(n, s): spent for n, s, spent, _ in results}
    seeds = range(args.seeds)
    shown = f"best {task.metric}"

    print(f"\nAt equal total epochs ({POPULATION} x {EPOCHS} = {POPULATION * EPOCHS}):")
    print(f"  {'':<12} {shown:>18} {'epochs to random best':>22}")
    for name in ("random", "asha@equal", "pbt"):
        best = median([by[name, s].best for s in seeds])
        to = median([by[name, s].epochs_to(by["random", s].best) for s in seeds])
        print(f"  {name:<12} {best:18.4g} {to:22.1f}")
    ratio = median(
        [
            by["pbt", s].epochs_to(by["random", s].best)
            / by["random", s].epochs_to(by["random", s].best)
            for s in seeds
        ]
    )
    print(f"  PBT reaches random search's best in {ratio:.2f}x the epochs random needed (median)")
    wins = sum(task.reached(by["pbt", s].best, by["random", s].best) for s in seeds)
    print(f"  PBT's best at least random's on {wins} of {args.seeds} seeds")
    if task is NQM:
        lr, loss = best_constant_lr()
        print(f"  the best constant lr of all (a grid of 100, in hindsight): {lr:.3g}, {loss:.4g}")

    print(f"\nOn the same {args.trials} trials:")
    print(
        f"  {'':<12} {'total epochs':>13} {'x none':>7} {shown:>18} "
        f"{'epochs to none best':>20} {'reached':>8}"
    )
    none = median([by["none", s].epochs for s in seeds])
    for name in ("none", "asha", "hyperband"):
        epochs = median([by[name, s].epochs for s in seeds])
        best = median([by[name, s].best for s in seeds])
        until = [by[name, s].epochs_to(by["none", s].best) for s in seeds]
        reached = sum(math.isfinite(t) for t in until)
        print(
            f"  {name:<12} {epochs:13.0f} {epochs / none:7.2f} {best:18.4g} "
            f"{median(until):20.1f} {reached:>5}/{args.seeds}"
        )


if __name__ == "__main__":
    main()
