"""Trials per hour of the built-in MLP on MNIST-shaped data, packed K at a time, against the
same trials trained one at a time by train_trial (the baseline), in the same run.

    .venv/bin/python bench/packed_training.py                  # CPU (and CUDA if present)
    .venv/bin/python bench/packed_training.py --device cuda --packs 1 4 16 64 128
    .venv/bin/python bench/packed_training.py --examples 10000 --epochs 1   # a quick look

Data: 60 000 train + 10 000 dev examples of 784 uint8 "pixels" in 10 classes (class patterns
plus noise), generated with a fixed seed and written to a temporary .npz, since tasks name
their data by path. Every trial is a full trial as a worker runs it: training, the per-epoch
train and dev evaluations, and the final metrics (latency included).

The trials share the architecture (2 × 64 hidden units, batch 64) and differ in what a random
search varies: optimizer, lr, β, weight decay, dropout. Rows: one trial at a time and one pack
at a time in this process (a worker with one slot, one torch thread: its default), and one
single-threaded worker process per core, training trials one at a time or in packs (a worker
with ``--concurrency`` = cores). Each configuration runs once per round, ``--repeat`` rounds,
and keeps its fastest run: on a shared machine, others' load only ever slows a run down; the
CPU-time columns are the figure their load disturbs least. Utilisation: on CPU, CPU time /
wall time / cores; on CUDA, the mean of nvidia-smi's utilization.gpu sampled while it runs.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from workers.training import train_trial
from workers.training.packed import PackedTrialSpec, train_packed

OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")
LR_RANGES = {
    "sgd": (-2.0, -0.5),
    "momentum": (-2.0, -0.5),
    "rmsprop": (-4.0, -2.5),
    "adam": (-4, -2.5),
}


def mnist_shaped(path: Path, examples: int, seed: int = 0) -> None:
    """``examples`` train + examples/6 dev examples (60 000 + 10 000 by default)."""
    rng = np.random.default_rng(seed)
    n = examples + examples // 6
    patterns = rng.uniform(0, 255, size=(10, 784)).astype(np.float32)
    y = rng.integers(0, 10, size=n)
    x = np.empty((n, 784), dtype=np.uint8)
    for start in range(0, n, 10_000):  # in slices: the float copy of all 70 000 is 220 MB
        part = patterns[y[start : start + 10_000]]
        noise = rng.normal(0, 90, size=part.shape).astype(np.float32)
        x[start : start + 10_000] = np.clip(part + noise, 0, 255).astype(np.uint8)
    np.savez(path, X=x, y=y)


def trial_params(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """What a random search over optimizer settings proposes, architecture held fixed."""
    rng = np.random.default_rng(seed)
    params = []
    for _ in range(count):
        optimizer = str(rng.choice(OPTIMIZERS))
        low, high = LR_RANGES[optimizer]
        params.append(
            {
                "optimizer": optimizer,
                "lr": float(10 ** rng.uniform(low, high)),
                "beta": float(1 - 10 ** rng.uniform(-2, -1)),
                "weight_decay": float(10 ** rng.uniform(-5, -3)),
                "dropout": float(rng.choice([0.0, 0.2])),
            }
        )
    return params


@dataclass
class Measure:
    trials: int
    wall: float
    cpu: float
    """CPU seconds of this process and its children: on a machine others load, the figure
    that their load does not inflate (with one thread per process)."""
    utilisation: str

    @property
    def per_hour(self) -> float:
        return 3600 * self.trials / self.wall


def measure(device: str, run: Callable[[], float | None], trials: int) -> Measure:
    """Times one ``run`` (which trains ``trials`` trials). A ``run`` that returns a number
    returns the CPU seconds its other processes spent."""
    sampler = _GpuSampler() if device == "cuda" else None
    cpu, started = time.process_time(), time.perf_counter()
    elsewhere = run()
    if device == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu + (elsewhere or 0.0)
    if sampler is not None:
        gpu = sampler.stop()
        text = "GPU n/a" if math.isnan(gpu) else f"GPU {gpu:.0f}%"
    else:
        cores = os.cpu_count() or 1
        text = f"CPU {100 * cpu / wall / cores:.0f}% of {cores} cores"
    return Measure(trials, wall, cpu, text)


def best(runs: list[Measure]) -> Measure:
    """On a shared machine the others' load only ever slows a run down: the fastest run
    (and the least CPU time) is the closest to the machine's own speed."""
    fastest = min(runs, key=lambda m: m.wall)
    return Measure(fastest.trials, fastest.wall, min(m.cpu for m in runs), fastest.utilisation)


class _GpuSampler:
    """Mean utilization.gpu from nvidia-smi, sampled every 0.2 s in a thread."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        if shutil.which("nvidia-smi"):
            self._thread.start()

    def _run(self) -> None:
        query = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
        index = torch.cuda.current_device()
        while not self._done.wait(0.2):
            out = subprocess.run(query, capture_output=True, text=True, check=False).stdout
            lines = out.strip().splitlines()
            if len(lines) > index and lines[index].strip().isdigit():
                self.samples.append(float(lines[index]))

    def stop(self) -> float:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()
        return sum(self.samples) / len(self.samples) if self.samples else math.nan


def _never(epoch: int, metrics: dict[str, float]) -> bool:
    return False


def one_at_a_time(params: list[dict[str, Any]], task: dict[str, Any], device: str) -> None:
    for i, p in enumerate(params):
        train_trial(p, task, _never, device=device, seed=i)


def _warm(task: dict[str, Any]) -> None:
    torch.set_num_threads(1)
    train_trial({}, {**task, "epochs": 1}, _never)  # imports, reads the data, warms up


def _one_thread_trial(args: tuple[dict[str, Any], dict[str, Any], int]) -> float:
    """Trains one trial in a pool process; returns the CPU seconds it took there."""
    params, task, seed = args
    started = time.process_time()
    train_trial(params, task, _never, seed=seed)
    return time.process_time() - started


def _one_thread_pack(args: tuple[list[dict[str, Any]], dict[str, Any], int]) -> float:
    """Trains one pack in a pool process; returns the CPU seconds it took there."""
    params, task, first_seed = args
    started = time.process_time()
    specs = [PackedTrialSpec(p, first_seed + i) for i, p in enumerate(params)]
    for outcome in train_packed(specs, task):
        if isinstance(outcome, Exception):
            raise outcome
    return time.process_time() - started


class WorkerPool:
    """One single-threaded worker process per core, started and warmed up (torch imported,
    data read) before any timing: what ``hpsearch worker --concurrency N`` keeps running."""

    def __init__(self, processes: int, task: dict[str, Any]) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self.task = task
        self.pool = ProcessPoolExecutor(processes, context, initializer=_warm, initargs=(task,))
        list(self.pool.map(abs, range(processes)))  # starts (and warms) every process

    def run(self, params: list[dict[str, Any]]) -> float:
        """Trains ``params``; returns the CPU seconds the processes spent."""
        work = [(p, self.task, i) for i, p in enumerate(params)]
        return sum(self.pool.map(_one_thread_trial, work))

    def run_packed(self, params: list[dict[str, Any]], k: int) -> float:
        """Trains ``params`` in packs of ``k``, one pack per process at a time."""
        work = [(params[i : i + k], self.task, i) for i in range(0, len(params), k)]
        return sum(self.pool.map(_one_thread_pack, work))

    def close(self) -> None:
        self.pool.shutdown()


def packed(params: list[dict[str, Any]], task: dict[str, Any], device: str, k: int) -> None:
    """Trains ``params`` in packs of ``k``."""
    for start in range(0, len(params), k):
        chunk = params[start : start + k]
        specs = [PackedTrialSpec(p, start + i) for i, p in enumerate(chunk)]
        for outcome in train_packed(specs, task, device):
            if isinstance(outcome, Exception):
                raise outcome  # the benchmark's trials are all trainable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packs", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument(
        "--pool-packs",
        type=int,
        nargs="*",
        default=[16],
        help="K for one single-threaded worker per core, each training packs of K",
    )
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--examples", type=int, default=60_000, help="train examples")
    parser.add_argument("--baseline-trials", type=int, default=4, help="trials the baseline runs")
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads in this process (a worker's default)"
    )
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs")
    parser.add_argument(
        "--no-processes", action="store_true", help="skip the one-worker-per-core baseline"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mnist_shaped.npz"
        mnist_shaped(path, args.examples)
        split = {"train": 6 / 7, "dev": 1 / 7, "test": 0.0}
        task = {
            "trainer": "mlp_classifier",
            "dataset": "file",
            "data_path": str(path),
            "epochs": args.epochs,
            "split": split,
            "fixed": {"layers": 2, "hidden_units": 64, "batch_size": 64},
        }
        train_trial({}, {**task, "epochs": 1}, _never)  # reads and caches the data
        print(
            f"MLP 784-64-64-10, batch 64, {args.examples} train examples, {args.epochs} epoch(s), "
            f"torch {torch.__version__}, {args.threads} thread(s)"
        )
        for device in devices:
            run_device(device, task, args)


def run_device(device: str, task: dict[str, Any], args: argparse.Namespace) -> None:
    """Measures every configuration once per round, ``args.repeat`` rounds, so that a change
    in the machine's load hits all of them alike; keeps each one's best run."""
    name = torch.cuda.get_device_name() if device == "cuda" else f"CPU × {os.cpu_count()}"
    print(f"\n{device}: {name}, load average {_load()} before", flush=True)
    params = trial_params(
        max(
            *args.packs, *[k * (os.cpu_count() or 1) for k in args.pool_packs], args.baseline_trials
        )
    )
    packed(params[:2], {**task, "epochs": 1}, device, 2)  # warm-up: allocator, kernels
    n = args.baseline_trials
    runs: dict[str, tuple[Callable[[], float | None], int]] = {
        "one at a time (train_trial)": (partial(one_at_a_time, params[:n], task, device), n)
    }
    cores, pool = os.cpu_count() or 1, None
    if device == "cpu" and not args.no_processes and cores > 1:
        pool, n = WorkerPool(cores, task), max(args.baseline_trials, cores)
        runs[f"{cores} worker processes × 1 thread"] = (partial(pool.run, params[:n]), n)
    for k in args.packs:
        runs[f"packed K={k}"] = (partial(packed, params[:k], task, device, k), k)
    if pool is not None:
        for k in args.pool_packs:
            label = f"{cores} worker processes × packed K={k}"
            runs[label] = (partial(pool.run_packed, params[: cores * k], k), cores * k)
    measured: dict[str, list[Measure]] = {label: [] for label in runs}
    for round_ in range(args.repeat):
        for label, (run, trials) in runs.items():
            measured[label].append(measure(device, run, trials))
        print(f"  round {round_ + 1}/{args.repeat} done, load average {_load()}", flush=True)
    if pool is not None:
        pool.close()
    results = {label: best(m) for label, m in measured.items()}
    baseline = results["one at a time (train_trial)"]
    print(f"  {'':<32} {'wall clock (×: vs one at a time)':<40}  | {'CPU time':<22}  | utilisation")
    for label, result in results.items():
        _row(label, result, baseline)


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _row(label: str, m: Measure, baseline: Measure) -> None:
    cpu_ratio = (baseline.cpu / baseline.trials) / (m.cpu / m.trials)
    print(
        f"  {label:<32} {m.per_hour:>8.0f} trials/h  {m.wall / m.trials:6.2f} s/trial "
        f"×{m.per_hour / baseline.per_hour:5.2f}  | CPU {m.cpu / m.trials:6.2f} s/trial "
        f"×{cpu_ratio:5.2f}  | {m.utilisation}"
    )


if __name__ == "__main__":
    main()
