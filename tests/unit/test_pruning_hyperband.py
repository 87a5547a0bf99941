"""Hyperband: brackets and decisions against Optuna's HyperbandPruner on the same reports, and
the store's report path deciding by bracket."""

from __future__ import annotations

import random
from typing import Any

import optuna
import pytest

from hpsearch.objective import Direction
from hpsearch.pruning import make_pruner
from hpsearch.pruning_hyperband import HyperbandPruner
from hpsearch.spec import SpecError, parse_spec
from hpsearch.store import Store
from tests.conftest import digits_spec
from tests.unit.test_pruning import Study

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _optuna_pruner(study_name: str, low: int, high: int, eta: int) -> Any:
    """Optuna's pruner, initialized for ``study_name`` as its first ``prune`` call does."""
    pruner = optuna.pruners.HyperbandPruner(low, high, eta)
    pruner._try_initialization(optuna.create_study(study_name=study_name))
    return pruner


@pytest.mark.parametrize(("low", "high", "eta"), [(1, 81, 3), (1, 27, 3), (2, 40, 2), (1, 9, 4)])
def test_brackets_are_optunas(low: int, high: int, eta: int) -> None:
    ours = HyperbandPruner("dev_loss", "minimize", "hb-study", low, high, eta)
    theirs = _optuna_pruner("hb-study", low, high, eta)
    assert ours.n_brackets == theirs._n_brackets
    assert list(ours.budgets) == theirs._trial_allocation_budgets
    study = optuna.create_study(study_name="hb-study")
    for number in range(300):
        trial = optuna.trial.create_trial(value=0.0)
        trial.number = number
        assert ours.bracket(number) == theirs._get_bracket_id(study, trial)
    # Every bracket gets trials, the aggressive ones most (the paper's allocation).
    counts = [sum(ours.bracket(n) == b for n in range(3000)) for b in range(ours.n_brackets)]
    assert all(c > 0 for c in counts) and counts[0] == max(counts)


def _curves(seed: int, n_trials: int, steps: int) -> list[list[float]]:
    """Noisy learning curves: each trial converges towards its own level at its own rate."""
    rng = random.Random(seed)
    out = []
    for _ in range(n_trials):
        level, rate = rng.uniform(0.2, 1.0), rng.uniform(0.05, 0.6)
        out.append(
            [level * (1 - (1 - rate) ** s) + rng.gauss(0, 0.02) for s in range(1, steps + 1)]
        )
    return out


@pytest.mark.parametrize(
    ("seed", "direction", "low", "high", "eta"),
    [(0, "maximize", 1, 27, 3), (1, "minimize", 1, 16, 2), (2, "maximize", 2, 18, 3)],
)
def test_decisions_match_optuna_on_interleaved_reports(
    seed: int, direction: Direction, low: int, high: int, eta: int
) -> None:
    """60 trials report in a shuffled, interleaved order (as parallel workers do); at every
    report both pruners must agree on stopping the trial."""
    name = f"hb-{seed}"
    curves = _curves(seed, 60, high)
    ours = HyperbandPruner("m", direction, name, low, high, eta)
    mine = Study(direction=direction)
    theirs = optuna.create_study(
        study_name=name,
        direction=direction,
        pruner=optuna.pruners.HyperbandPruner(low, high, eta),
    )
    trials = [theirs.ask() for _ in curves]
    assert [t.number for t in trials] == list(range(len(curves)))
    # Each trial advances one step per turn; turns are shuffled, and a trial joins late.
    rng = random.Random(seed)
    order = [n for n in range(len(curves)) for _ in range(high)]
    rng.shuffle(order)
    next_step = [1] * len(curves)
    stopped: set[int] = set()
    decisions = 0
    for n in order:
        step = next_step[n]
        if n in stopped or step > high:
            continue
        next_step[n] += 1
        value = curves[n][step - 1]
        mine.curves.setdefault(n, {})[step] = value
        mine.judged = n
        trials[n].report(value, step)
        we_stop = ours.judges(step) and ours.decide(step, value, mine) is not None
        assert we_stop == trials[n].should_prune(), (n, step)
        decisions += 1
        if we_stop:
            stopped.add(n)
            theirs.tell(trials[n], state=optuna.trial.TrialState.PRUNED)
    assert decisions > 300 and 10 < len(stopped) < 55  # both outcomes were exercised


def test_bracket_zero_prunes_at_the_first_rung_and_the_last_bracket_never() -> None:
    pruner = HyperbandPruner("dev_accuracy", "maximize", "s", 1, 9, 3)
    assert pruner.n_brackets == 3
    by_bracket: dict[int, list[int]] = {}
    for n in range(200):
        by_bracket.setdefault(pruner.bracket(n), []).append(n)
    study = Study()
    # Two strong trials per bracket first, then a weak one: at step 1 only bracket 0 judges.
    for b, numbers in sorted(by_bracket.items()):
        strong, weak = numbers[:2], numbers[2]
        for n in strong:
            study.curves[n] = {1: 0.9, 3: 0.9}
        study.curves[weak], study.judged = {1: 0.1}, weak
        reason = pruner.decide(1, 0.1, study)
        assert (reason is not None) == (b == 0), (b, reason)
        study.curves[weak][3] = 0.1
        reason = pruner.decide(3, 0.1, study)
        assert (reason is not None) == (b <= 1), (b, reason)
        if reason is not None:
            assert reason.startswith(f"hyperband bracket {b} of 3: dev_accuracy 0.1 at rung")
    study.judged = by_bracket[0][3]
    assert pruner.decide(1, None, study) == (
        "hyperband bracket 0 of 3: dev_accuracy is not a number at rung 0 (step 1)"
    )


def test_make_pruner_defaults_max_resource_to_the_epochs() -> None:
    spec = parse_spec(digits_spec(pruner={"kind": "hyperband", "reduction_factor": 2}))
    made = make_pruner(spec.pruner, spec.objective, study_name=spec.name, epochs=16)
    assert made == HyperbandPruner("dev_accuracy", "maximize", "digits-mlp", 1, 16, 2)
    assert isinstance(made, HyperbandPruner) and made.n_brackets == 5


@pytest.mark.parametrize(
    ("pruner", "field", "reason"),
    [
        ({"kind": "hyperband", "reduction_factor": 1}, "pruner.reduction_factor", ">= 2"),
        ({"kind": "hyperband", "min_resource": 4, "max_resource": 2}, "pruner.max_resource", ">="),
        ({"kind": "hyperband", "max_resources": 9}, "pruner.max_resources", "max_resource"),
    ],
)
def test_hyperband_spec_errors_name_the_field(
    pruner: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(digits_spec(pruner=pruner))
    errors = {e.field: e.message for e in info.value.errors}
    assert field in errors, errors
    assert reason in errors[field].replace("greater than or equal to", ">=")


def test_store_decides_within_the_trials_bracket(store: Store) -> None:
    """The server judges each report against the trials of the reporter's own bracket."""
    spec = digits_spec(
        name="hb-store",
        budget={"max_trials": 12, "parallelism": 12},
        pruner={"kind": "hyperband", "min_resource": 1, "max_resource": 4, "reduction_factor": 2},
        task={"trainer": "mlp_classifier", "epochs": 4},
    )
    study = store.create_study(spec)
    pruner = HyperbandPruner("dev_accuracy", "maximize", "hb-store", 1, 4, 2)
    claims = [store.claim(f"w{i}", study_id=study.id) for i in range(12)]
    worker = {c.trial_id: f"w{i}" for i, c in enumerate(claims) if c is not None}
    in_zero = [c for c in claims if c is not None and pruner.bracket(c.number) == 0]
    elsewhere = [c for c in claims if c is not None and pruner.bracket(c.number) != 0]
    assert len(in_zero) >= 2 and elsewhere
    # A strong trial of bracket 0 reports step 1; a strong trial of another bracket too.
    best, weak = in_zero[0], in_zero[1]
    other = elsewhere[0]
    for claim, value in ((best, 0.9), (other, 0.95)):
        ack = store.report(claim.holder(worker[claim.trial_id]), 1, {"dev_accuracy": value})
        assert not ack.should_stop
    # The weak trial of bracket 0 competes with 0.9 (its bracket), not with 0.95: pruned.
    ack = store.report(weak.holder(worker[weak.trial_id]), 1, {"dev_accuracy": 0.5})
    assert ack.should_stop and ack.reason is not None
    assert ack.reason.startswith("hyperband bracket 0 of 3: dev_accuracy 0.5 at rung 0")
    assert "top 1 of 2" in ack.reason
