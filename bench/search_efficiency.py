"""Search efficiency of the samplers: best-so-far regret per trial budget, and proposal cost.

Compares ``random``, ``grid`` (shuffled), ``coarse_to_fine`` and ``tpe`` (``--samplers`` adds
``qmc``, ``cmaes`` and ``gp``) on

- ``branin``: the Branin function over (log10 lr, log10(1 - beta)): lr on a log scale, beta on
  a reverse_log scale. Known minimum 0.397887, reached at three points far apart.
- ``goldstein_price``: the Goldstein-Price function over the same two parameters. Known minimum
  3 (one global minimum, several local ones).
- ``rosenbrock4``: the 4-D Rosenbrock valley over lr, beta, beta2 and weight_decay (log and
  reverse_log scales), each mapped to [-2, 2]. Known minimum 0.
- ``hartmann6``: the 6-D Hartmann function over six parameters on log, reverse_log and linear
  scales (each parameter's unit coordinate is one Hartmann coordinate). Known minimum -3.32237.
- ``digits``: a real PyTorch MLP trained on scikit-learn's digits for a few epochs
  (``workers.training.train_trial``), minimizing dev error. Its minimum is unknown: regret is
  measured against the best dev error any run of this invocation found.

Every study is sequential, built from a real spec through ``make_sampler``. For each problem and
sampler it prints the median and interquartile range over seeds of the best-so-far regret after
20, 50 and 100 trials, and the mean time per suggestion. It then checks the figure the issue
asks for: does coarse_to_fine reach random search's 100-trial best (same seed) in half the
trials or fewer, on the synthetic functions?

Finally (unless ``--skip-scale``) it measures proposals for a study with 10 000 finished trials:
in memory, a fresh sampler that must load the whole history (the baseline: reload and refit
per request) against the cached sampler that ingests only what finished since (the store keeps
one per study); and end to end through a real SQLite store (``Store.claim``), whose history
read is part of every claim.

Run from the repository root::

    .venv/bin/python bench/search_efficiency.py            # 10 seeds, ~10 minutes on 2 cores
    .venv/bin/python bench/search_efficiency.py --quick    # 5 seeds, 50 trials, no digits
    # Optuna's GP sampler against the others on reaching the optimum (~5 minutes on 2 cores):
    .venv/bin/python bench/search_efficiency.py --samplers random coarse_to_fine tpe gp \
        --problems branin hartmann6 --skip-digits --skip-scale
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hpsearch.samplers import FinishedTrial, Sampler, make_sampler
from hpsearch.space import ParamValue
from hpsearch.spec import StudySpec, parse_spec

CHECKPOINTS = (20, 50, 100)
DEFAULT_SAMPLERS = ("random", "grid", "coarse_to_fine", "tpe")
KINDS = ("random", "grid", "coarse_to_fine", "tpe", "qmc", "cmaes", "gp")
# Four rounds of 20 for a 100-trial budget; top_k and margin keep their defaults (top_k adapts).
COARSE_TO_FINE: dict[str, Any] = {"rounds": 4, "trials_per_round": 20}

# -- problems ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    name: str
    space: dict[str, dict[str, Any]]
    minimum: float | None  # None: the best value any run finds

    def spec(self, sampler: dict[str, Any], trials: int) -> StudySpec:
        return parse_spec(
            {
                "name": f"bench-{self.name}",
                "objective": {"metric": "loss", "direction": "minimize"},
                "space": self.space,
                "sampler": sampler,
                "budget": {"max_trials": trials},
                # The bench evaluates trials itself; a custom trainer that declares the
                # metric keeps the spec valid whatever the parameters are named.
                "task": {
                    "trainer": "custom",
                    "entry_point": "bench.search_efficiency:evaluate",
                    "metrics": ["loss"],
                },
            }
        )


BRANIN = Problem(
    "branin",
    {
        "lr": {"type": "float", "low": 1e-5, "high": 1.0, "scale": "log"},
        "beta": {"type": "float", "low": 0.9, "high": 0.9999, "scale": "reverse_log"},
    },
    0.397887,
)
HARTMANN6 = Problem(
    "hartmann6",
    {
        "lr": {"type": "float", "low": 1e-5, "high": 1.0, "scale": "log"},
        "beta": {"type": "float", "low": 0.9, "high": 0.9999, "scale": "reverse_log"},
        "beta2": {"type": "float", "low": 0.99, "high": 0.99999, "scale": "reverse_log"},
        "weight_decay": {"type": "float", "low": 1e-7, "high": 0.1, "scale": "log"},
        "dropout": {"type": "float", "low": 0.0, "high": 0.5},
        "eps": {"type": "float", "low": 1e-10, "high": 1e-4, "scale": "log"},
    },
    -3.32237,
)
GOLDSTEIN_PRICE = Problem("goldstein_price", BRANIN.space, 3.0)
ROSENBROCK4 = Problem(
    "rosenbrock4", {name: HARTMANN6.space[name] for name in list(HARTMANN6.space)[:4]}, 0.0
)
DIGITS = Problem(
    "digits",
    {
        "lr": {"type": "float", "low": 1e-4, "high": 1.0, "scale": "log"},
        "beta": {"type": "float", "low": 0.5, "high": 0.999, "scale": "reverse_log"},
        "hidden_units": {"type": "int", "low": 8, "high": 256, "scale": "log"},
        "weight_decay": {"type": "float", "low": 1e-6, "high": 0.1, "scale": "log"},
    },
    None,
)
DIGITS_TASK = {
    "trainer": "mlp_classifier",
    "dataset": "digits",
    "epochs": 4,
    "fixed": {"optimizer": "momentum", "layers": 1, "batch_size": 64},
}


def branin(u: Sequence[float]) -> float:
    x1, x2 = -5.0 + 15.0 * u[0], 15.0 * u[1]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def goldstein_price(u: Sequence[float]) -> float:
    x, y = -2.0 + 4.0 * u[0], -2.0 + 4.0 * u[1]
    a = 1 + (x + y + 1) ** 2 * (19 - 14 * x + 3 * x * x - 14 * y + 6 * x * y + 3 * y * y)
    b = 30 + (2 * x - 3 * y) ** 2 * (18 - 32 * x + 12 * x * x + 48 * y - 36 * x * y + 27 * y * y)
    return a * b


def rosenbrock(u: Sequence[float]) -> float:
    x = [-2.0 + 4.0 * v for v in u]
    return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(len(x) - 1))


_H_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_H_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)
_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(u: Sequence[float]) -> float:
    x = np.asarray(u)
    return float(-np.sum(_H_ALPHA * np.exp(-np.sum(_H_A * (x - _H_P) ** 2, axis=1))))


def evaluate(problem: Problem, spec: StudySpec, params: dict[str, ParamValue]) -> float | None:
    """The loss of one trial; None when it failed (a diverged training run)."""
    if problem.name == "digits":
        from workers.training import TrainingDiverged, train_trial

        try:
            result = train_trial(params, DIGITS_TASK, lambda epoch, metrics: False, seed=0)
        except TrainingDiverged:
            return None
        return float(result.metrics["dev_error"])
    units = spec.build_space().to_unit(params)
    return SYNTHETIC[problem.name]([units[name] for name in problem.space])


SYNTHETIC: dict[str, Callable[[Sequence[float]], float]] = {
    "branin": branin,
    "goldstein_price": goldstein_price,
    "rosenbrock4": rosenbrock,
    "hartmann6": hartmann6,
}


# -- one study ----------------------------------------------------------------------------------


def sampler_config(kind: str, seed: int, dimensions: int, trials: int) -> dict[str, Any]:
    if kind == "grid":
        n = max(2, math.ceil(trials ** (1 / dimensions) - 1e-9))
        return {"kind": "grid", "n": n, "shuffle": True, "seed": seed}
    if kind == "coarse_to_fine":
        return {"kind": kind, **COARSE_TO_FINE, "seed": seed}
    return {"kind": kind, "seed": seed}


@dataclass(frozen=True)
class Run:
    problem: str
    sampler: str
    seed: int
    values: list[float | None]
    propose_s: list[float]


def sampler_seed(kind: str, seed: int) -> int:
    """Each sampler its own random stream: coarse_to_fine's first round would otherwise draw
    exactly random search's first trials, and a comparison of the two would not be fair."""
    return seed + 1000 * (1 + sorted(KINDS).index(kind))


def run_study(problem: Problem, kind: str, seed: int, trials: int) -> Run:
    config = sampler_config(kind, sampler_seed(kind, seed), len(problem.space), trials)
    spec = problem.spec(config, trials)
    sampler: Sampler = make_sampler(spec)
    history: list[FinishedTrial] = []
    values: list[float | None] = []
    times: list[float] = []
    for number in range(trials):
        start = time.perf_counter()
        params = sampler.propose(number, history, [])
        times.append(time.perf_counter() - start)
        if params is None:
            break
        value = evaluate(problem, spec, params)
        values.append(value)
        if value is None:
            history.append(FinishedTrial(number, params, "failed"))
        else:
            history.append(FinishedTrial(number, params, "completed", value, True, 0.0))
    return Run(problem.name, kind, seed, values, times)


def _run_job(job: tuple[Problem, str, int, int, dict[str, Any]]) -> Run:
    problem, kind, seed, trials, coarse_to_fine = job
    COARSE_TO_FINE.update(coarse_to_fine)  # the settings travel with the job to each process
    return run_study(problem, kind, seed, trials)


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


# -- statistics --------------------------------------------------------------------------------


def best_so_far(values: Sequence[float | None], n: int) -> float:
    seen = [v for v in values[:n] if v is not None]
    return min(seen) if seen else math.inf


def quartiles(xs: Sequence[float]) -> tuple[float, float, float]:
    # No interpolation between observations: a count may be inf (never reached).
    q1, q3 = np.percentile(np.array(xs, dtype=float), [25, 75], method="inverted_cdf")
    return float(statistics.median(xs)), float(q1), float(q3)


def trials_to_reach(values: Sequence[float | None], target: float) -> int | None:
    best = math.inf
    for i, v in enumerate(values, start=1):
        if v is not None:
            best = min(best, v)
        if best <= target:
            return i
    return None


def fmt(x: float) -> str:
    if math.isinf(x):
        return "inf"
    return f"{x:.2e}" if x != 0 and (abs(x) < 1e-2 or abs(x) >= 1e3) else f"{x:.3f}"


def print_table(
    runs: list[Run], problems: list[Problem], samplers: Sequence[str], trials: int
) -> None:
    checkpoints = [c for c in CHECKPOINTS if c <= trials] or [trials]
    header = f"{'problem':<16} {'sampler':<15}" + "".join(
        f" {'regret@' + str(c) + ' median [IQR]':<30}" for c in checkpoints
    )
    print(header + " ms/suggestion")
    print("-" * len(header) + "-" * 14)
    for problem in problems:
        mine = [r for r in runs if r.problem == problem.name]
        floor = problem.minimum
        if floor is None:
            floor = min(best_so_far(r.values, len(r.values)) for r in mine)
        for kind in samplers:
            of_kind = [r for r in mine if r.sampler == kind]
            if not of_kind:
                continue
            cells = []
            for c in checkpoints:
                regrets = [max(best_so_far(r.values, c) - floor, 0.0) for r in of_kind]
                med, q1, q3 = quartiles(regrets)
                cells.append(f" {fmt(med):>9} [{fmt(q1)}, {fmt(q3)}]".ljust(31))
            ms = 1000 * statistics.fmean(t for r in of_kind for t in r.propose_s)
            print(f"{problem.name:<16} {kind:<15}" + "".join(cells) + f" {ms:8.2f}")
    if any(p.minimum is None for p in problems):
        print("(digits: regret against the best dev error any run found; its minimum is unknown)")


def print_verdict(runs: list[Run], problems: list[Problem], trials: int) -> None:
    """Two readings: per seed (paired by seed index, independent random streams), and on the
    median curves (when does coarse_to_fine's median regret drop to random's at ``trials``)."""
    half = trials // 2
    print()
    print(f"Does coarse_to_fine reach random search's {trials}-trial best in <= {half} trials?")
    for problem in problems:
        if problem.minimum is None:
            continue
        mine = [r for r in runs if r.problem == problem.name]
        randoms = {r.seed: r for r in mine if r.sampler == "random"}
        zooms = {r.seed: r for r in mine if r.sampler == "coarse_to_fine"}
        seeds = sorted(set(randoms) & set(zooms))
        if not seeds:
            continue
        needed = []
        for seed in seeds:
            n = trials_to_reach(zooms[seed].values, best_so_far(randoms[seed].values, trials))
            needed.append(math.inf if n is None else float(n))
        med = statistics.median(needed)
        within = sum(n <= half for n in needed)
        target = statistics.median(best_so_far(randoms[s].values, trials) for s in seeds)
        curve = next(
            (
                n
                for n in range(1, trials + 1)
                if statistics.median(best_so_far(zooms[s].values, n) for s in seeds) <= target
            ),
            None,
        )
        verdict = "YES" if med <= half else "NO"
        print(
            f"  {problem.name:<16} per seed: median {fmt(med)} trials (ratio {med / trials:.2f}), "
            f"<= {half} on {within}/{len(seeds)} seeds; median curves: "
            f"{curve if curve is not None else '>' + str(trials)} trials -> {verdict}"
        )


# Reaching the optimum: within 1 % of each function's value range (max - min over the domain)
# of its known minimum. Branin's maximum is at (-5, 0); Hartmann6's is 0 to within 1e-3.
VALUE_RANGE = {"branin": 308.129 - 0.397887, "hartmann6": 3.32237}
# scikit-optimize's published gp_minimize means ("Mean f_calls to min", benchmarks/README.md,
# 10 runs of 200 calls): evaluations until its best value reached the run's final minimum.
SKOPT_GP_MEAN = {"branin": 33.1, "hartmann6": 57.3}


def print_reach(runs: list[Run], problems: list[Problem], samplers: Sequence[str]) -> None:
    """Per sampler, the trials needed to come within 1 % of the value range of the minimum."""
    print()
    print("Trials to reach within 1 % of the value range of the known minimum (median [IQR]):")
    for problem in problems:
        if problem.name not in VALUE_RANGE or problem.minimum is None:
            continue
        target = problem.minimum + 0.01 * VALUE_RANGE[problem.name]
        anchor = SKOPT_GP_MEAN[problem.name]
        for kind in samplers:
            of_kind = [r for r in runs if r.problem == problem.name and r.sampler == kind]
            if not of_kind:
                continue
            needed = [trials_to_reach(r.values, target) for r in of_kind]
            counts = [math.inf if n is None else float(n) for n in needed]
            med, q1, q3 = quartiles(counts)
            reached = sum(n is not None for n in needed)
            print(
                f"  {problem.name:<10} {kind:<15} {fmt(med):>7} [{fmt(q1)}, {fmt(q3)}]  "
                f"reached on {reached}/{len(needed)} seeds; "
                f"x scikit-optimize's GP mean ({anchor}): {med / anchor:.2f}"
            )


# -- proposals at scale ---------------------------------------------------------------------------


def scale_history(spec: StudySpec, n: int, seed: int = 0) -> list[FinishedTrial]:
    rng = np.random.default_rng(seed)
    space = spec.build_space()
    out = []
    for number in range(n):
        params = space.from_unit({name: float(rng.random()) for name in space})
        units = space.to_unit(params)
        value = hartmann6([units[name] for name in HARTMANN6.space])
        out.append(FinishedTrial(number, params, "completed", value, True, 0.0))
    return out


def bench_in_memory(samplers: Sequence[str], n: int, repeats: int) -> None:
    print()
    print(f"Proposing with {n} finished trials (hartmann6 space), in memory:")
    print(
        f"  {'sampler':<15} {'fresh object (reload all)':>26} {'cached (incremental)':>22}"
        f" {'ratio':>7}"
    )
    for kind in samplers:
        spec = HARTMANN6.spec(sampler_config(kind, 0, 6, n + repeats + 1), n + repeats + 1)
        history = scale_history(spec, n)
        if kind == "grid":
            continue  # a grid reads no history
        cold = []
        for _ in range(2):
            sampler = make_sampler(spec)
            start = time.perf_counter()
            sampler.propose(n, history, [])
            cold.append(time.perf_counter() - start)
        warm = []
        grown = list(history)
        for number in range(n + 1, n + 1 + repeats):
            # One more trial finished since the previous claim.
            done = grown[-1]
            grown.append(FinishedTrial(number - 1, done.params, "completed", done.value, True, 0.0))
            start = time.perf_counter()
            sampler.propose(number, grown, [])
            warm.append(time.perf_counter() - start)
        c, w = min(cold), statistics.median(warm)
        print(f"  {kind:<15} {1000 * c:23.1f} ms {1000 * w:19.1f} ms {c / w:6.1f}x")


def bench_store(samplers: Sequence[str], n: int, claims: int) -> None:
    from sqlalchemy import insert, update

    from hpsearch.store import Database, Store, upgrade
    from hpsearch.store.clock import utcnow
    from hpsearch.store.models import Study, Trial

    print()
    print(f"Claims through a real SQLite store with {n} finished trials (median of {claims}):")
    print(f"  {'sampler':<15} {'first claim':>12} {'later claims':>13} {'history read':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        upgrade(url)
        db = Database(url)
        store = Store(db, lease_seconds=600)
        for kind in samplers:
            spec = HARTMANN6.spec(sampler_config(kind, 0, 6, n + claims), n + claims)
            study = store.create_study(spec.model_dump(mode="json"))
            history = scale_history(spec, n)
            now = utcnow()
            rows = [
                {
                    "study_id": study.id,
                    "number": t.number,
                    "params": t.params,
                    "state": "completed",
                    "source": "sampler",
                    "attempt": 1,
                    "stop_requested": False,
                    "value": t.value,
                    "feasible": True,
                    "violation": 0.0,
                    "metrics": {"loss": t.value},
                    "created_at": now,
                    "finished_at": now,
                }
                for t in history
            ]
            with db.write() as s:
                s.execute(insert(Trial), rows)
                s.execute(
                    update(Study).where(Study.id == study.id).values(next_number=n, n_completed=n)
                )
            times = []
            for _ in range(claims):
                start = time.perf_counter()
                claim = store.claim(
                    "bench", study_id=study.id, entry_points=["bench.search_efficiency:evaluate"]
                )
                times.append(time.perf_counter() - start)
                assert claim is not None
                store.complete(claim.holder("bench"), {"loss": 0.0})
            reads = []
            for _ in range(3):
                start = time.perf_counter()
                store.history(study.id)
                reads.append(time.perf_counter() - start)
            read = statistics.median(reads)
            later = statistics.median(times[1:])
            print(
                f"  {kind:<15} {1000 * times[0]:9.1f} ms {1000 * later:10.1f} ms"
                f" {1000 * read:10.1f} ms"
            )
        db.dispose()


# -- main -----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 seeds, 50 trials, no digits")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per sampler (default 10)")
    parser.add_argument("--trials", type=int, default=None, help="trials per study (default 100)")
    parser.add_argument("--samplers", nargs="+", default=list(DEFAULT_SAMPLERS))
    parser.add_argument("--skip-digits", action="store_true")
    parser.add_argument(
        "--problems", nargs="+", help="a subset of branin goldstein_price rosenbrock4 hartmann6"
    )
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument(
        "--scale", type=int, default=10_000, help="finished trials for the scale test"
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--coarse-to-fine",
        metavar="ROUNDS,PER_ROUND,TOP_K,MARGIN",
        help="coarse_to_fine settings (default 4,20 and the sampler's own top_k and margin)",
    )
    args = parser.parse_args(argv)
    if args.coarse_to_fine:
        rounds, per_round, top_k, margin = args.coarse_to_fine.split(",")
        COARSE_TO_FINE.update(
            rounds=int(rounds),
            trials_per_round=int(per_round),
            top_k=int(top_k),
            margin=float(margin),
        )
    seeds = args.seeds or (5 if args.quick else 10)
    trials = args.trials or (50 if args.quick else 100)
    problems = [BRANIN, GOLDSTEIN_PRICE, ROSENBROCK4, HARTMANN6]
    if not (args.quick or args.skip_digits):
        problems.append(DIGITS)
    if args.problems:
        problems = [p for p in problems if p.name in args.problems]

    jobs = [
        (p, kind, seed, trials, COARSE_TO_FINE)
        for p in problems
        for kind in args.samplers
        for seed in range(seeds)
    ]
    print(
        f"{len(jobs)} studies: {trials} trials x {seeds} seeds x {len(args.samplers)} samplers x "
        f"{len(problems)} problems; coarse_to_fine {COARSE_TO_FINE}; {args.jobs} processes"
    )
    started = time.perf_counter()
    # Slow (digits) studies first so the pool's tail is short.
    jobs.sort(key=lambda j: j[0].name != "digits")
    with ProcessPoolExecutor(args.jobs, initializer=_worker_init) as pool:
        runs = list(pool.map(_run_job, jobs))
    print(f"({time.perf_counter() - started:.0f} s)\n")
    print_table(runs, problems, args.samplers, trials)
    print_verdict(runs, problems, trials)
    print_reach(runs, problems, args.samplers)
    if not args.skip_scale:
        n = 1000 if args.quick else args.scale
        scale_samplers = [k for k in args.samplers if k != "grid"]
        bench_in_memory(scale_samplers, n, repeats=5)
        bench_store(scale_samplers, n, claims=6)


if __name__ == "__main__":
    main()
