"""Parameter importance side by side: hpsearch's own estimate (ω² on each parameter's own
scale, hpsearch/importance.py) against Optuna's maintained evaluators, PED-ANOVA and fANOVA,
on the digits study's space with a known answer.

The objective is made from the unit coordinates (each parameter's own scale): a strong
effect of lr, a weaker one of layers, nothing from beta, hidden_units or batch_size, plus
noise. Printed per trial count, over ``--seeds`` studies: how often each method ranks the
two parameters that matter first and second ("top-2 right"), the share it gives the three
that do not ("noise share", lower is better), and its time. The named baseline is fANOVA,
the evaluator optuna-dashboard shows.

    .venv/bin/python bench/importance_compare.py
    .venv/bin/python bench/importance_compare.py --trials 30 100 300 --seeds 10
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator
from optuna.trial import create_trial

from hpsearch.importance import importance
from hpsearch.space import CategoricalParam, IntParam, ParamValue, Space
from hpsearch.spec import parse_spec
from tests.conftest import digits_spec

SPACE = parse_spec(digits_spec()).build_space()
MATTER = ("lr", "layers")
NOISE = ("beta", "hidden_units", "batch_size")

Trials = list[tuple[dict[str, ParamValue], float]]
Method = Callable[[Trials], dict[str, float]]


def make_trials(n: int, seed: int) -> Trials:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        params = SPACE.from_unit({name: rng.random() for name in SPACE})
        u_lr = SPACE["lr"].to_unit(params["lr"])
        value = -4.0 * (u_lr - 0.6) ** 2 + 0.08 * float(params["layers"]) + rng.gauss(0, 0.05)
        out.append((params, value))
    return out


def ours(trials: Trials) -> dict[str, float]:
    result = importance(SPACE, [p for p, _ in trials], [v for _, v in trials])
    return result.shares if result is not None else {}


def _distribution(space: Space, name: str) -> BaseDistribution:
    p = space[name]
    if isinstance(p, CategoricalParam):
        return CategoricalDistribution(list(p.choices))
    if isinstance(p, IntParam):
        return IntDistribution(p.low, p.high, log=p.scale == "log")
    # Optuna has no reverse-log scale: beta is given as log(1 − β), its own scale.
    if p.scale == "reverse_log":
        return FloatDistribution(math.log(1 - float(p.high)), math.log(1 - float(p.low)))
    return FloatDistribution(float(p.low), float(p.high), log=p.scale == "log")


def _optuna(evaluator: Any) -> Method:
    def run(trials: Trials) -> dict[str, float]:
        distributions = {name: _distribution(SPACE, name) for name in SPACE}
        study = optuna.create_study(direction="maximize")
        for params, value in trials:
            given: dict[str, Any] = dict(params)
            given["beta"] = math.log(1 - float(params["beta"]))
            study.add_trial(create_trial(params=given, distributions=distributions, value=value))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(study, evaluator=evaluator)
        return dict(found)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[30, 100, 300])
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    methods: dict[str, Method] = {
        "fANOVA (baseline)": _optuna(FanovaImportanceEvaluator(seed=0)),
        "PED-ANOVA": _optuna(PedAnovaImportanceEvaluator()),
        "hpsearch ω²": ours,
    }
    print(f"{'trials':>7} {'method':<18} {'top-2 right':>12} {'noise share':>12} {'time':>10}")
    for n in args.trials:
        for name, method in methods.items():
            right, noise, seconds = 0, [], []
            for seed in range(args.seeds):
                trials = make_trials(n, seed)
                start = time.perf_counter()
                shares = method(trials)
                seconds.append(time.perf_counter() - start)
                ranked = sorted(shares, key=lambda k: -shares[k])
                right += set(ranked[:2]) == set(MATTER)
                noise.append(sum(shares.get(k, 0.0) for k in NOISE))
            print(
                f"{n:>7} {name:<18} {right:>6}/{args.seeds:<5} {statistics.mean(noise):>12.3f}"
                f" {statistics.median(seconds) * 1000:>8.0f} ms"
            )


if __name__ == "__main__":
    main()
