"""Population-based training: quantiles, perturbation in each parameter's scale (statistical
tests with fixed seeds), schedules, the spec's keys, and the store's exploit at a report."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import stats

from hpsearch.errors import InvalidState
from hpsearch.pbt import (
    Link,
    Pbt,
    donors,
    perturb,
    perturb_value,
    quantiles,
    replay,
    schedule,
    stored,
    stretches,
)
from hpsearch.space import CategoricalParam, FloatParam, IntParam, Space
from hpsearch.spec import SpecError, parse_spec
from hpsearch.store import Store
from tests.conftest import digits_spec

SPACE = Space(
    [
        FloatParam("lr", 1e-4, 1.0, "log"),
        FloatParam("beta", 0.9, 0.999, "reverse_log"),
        FloatParam("dropout", 0.0, 0.5),
        IntParam("hidden_units", 16, 256, "log"),
        IntParam("layers", 1, 3),
        CategoricalParam("optimizer", ("sgd", "momentum", "adam")),
    ]
)
PARAMS: dict[str, Any] = {
    "lr": 0.01,
    "beta": 0.99,
    "dropout": 0.25,
    "hidden_units": 64,
    "layers": 2,
    "optimizer": "adam",
}


@pytest.mark.parametrize(("n", "k"), [(1, 0), (2, 1), (3, 1), (4, 1), (5, 2), (8, 2), (9, 3)])
def test_quantiles_hold_ceil_n_q_trials_at_most_half(n: int, k: int) -> None:
    """Ray Tune's rule: ceil(n * quantile), at most n // 2, worst first in each."""
    values: dict[int, float | None] = {i: float(i) for i in range(n)}
    bottom, top = quantiles(values, 0.25, "maximize")
    assert bottom == list(range(k)) and top == list(range(n - k, n))
    bottom, top = quantiles(values, 0.25, "minimize")
    assert bottom == list(range(n - 1, n - 1 - k, -1)) and top == list(range(k - 1, -1, -1))


def test_a_diverged_trial_ranks_last_and_only_the_bottom_copy() -> None:
    values = {0: 0.9, 1: None, 2: 0.5, 3: 0.7, 4: 0.95, 5: 0.6, 6: 0.8, 7: 0.85}
    config = Pbt(population=8, quantile=0.25)
    assert quantiles(values, 0.25, "maximize") == ([1, 2], [0, 4])
    assert donors(config, 1, values, "maximize") == [0, 4]
    assert donors(config, 2, values, "maximize") == [0, 4]
    assert donors(config, 5, values, "maximize") == []
    # Fewer than 1 / quantile trials at the epoch: nobody is judged yet.
    assert donors(config, 1, {1: 0.1, 2: 0.9, 3: 0.8}, "maximize") == []
    assert donors(config, 1, {1: 0.1, 2: 0.9, 3: 0.8, 4: 0.7}, "maximize") == [2]
    assert config.judges(4) and not config.judges(3)


def test_perturbation_moves_each_parameter_in_its_own_scale() -> None:
    """No resampling: lr is multiplied, 1 - beta is multiplied, ints are rounded in bounds,
    categoricals and frozen (shape) parameters stay; each factor about half the time."""
    config = Pbt(perturb=(0.8, 1.2), resample_probability=0.0)
    rng = np.random.default_rng(0)
    draws = [perturb(SPACE, PARAMS, config, rng, frozen={"layers"}) for _ in range(2000)]
    lrs = sorted({round(d["lr"], 12) for d in draws})
    assert lrs == pytest.approx([0.008, 0.012])
    betas = sorted({round(1 - d["beta"], 12) for d in draws})
    assert betas == pytest.approx([0.008, 0.012])  # 1 - 0.99 = 0.01, scaled
    assert sorted({round(d["dropout"], 12) for d in draws}) == pytest.approx([0.2, 0.3])
    assert {d["hidden_units"] for d in draws} == {51, 77}
    assert {d["layers"] for d in draws} == {2} and {d["optimizer"] for d in draws} == {"adam"}
    # Each factor is drawn per parameter, independently and evenly: a binomial test.
    ups = sum(d["lr"] > 0.01 for d in draws)
    assert stats.binomtest(ups, len(draws), 0.5).pvalue > 0.01
    both = sum((d["lr"] > 0.01) == (d["beta"] < 0.99) for d in draws)
    assert stats.binomtest(both, len(draws), 0.5).pvalue > 0.01


def test_perturbed_values_stay_inside_the_bounds() -> None:
    lr, beta = SPACE["lr"], SPACE["beta"]
    assert isinstance(lr, FloatParam) and isinstance(beta, FloatParam)
    assert perturb_value(lr, 0.9, 1.2) == 1.0
    assert perturb_value(beta, 0.9, 1.2) == 0.9  # 1 - beta would leave [0.001, 0.1]
    assert perturb_value(beta, 0.999, 0.8) == 0.999
    units = SPACE["hidden_units"]
    assert isinstance(units, IntParam)
    assert perturb_value(units, 250, 1.2) == 256 and perturb_value(units, 17, 0.8) == 16
    signed = FloatParam("shift", -1.0, 1.0)
    assert perturb_value(signed, -0.5, 1.2) == pytest.approx(-0.3)  # + 0.2 of half the width
    stepped = FloatParam("wd", 0.0, 1.0, "linear", 0.05)
    assert perturb_value(stepped, 0.5, 1.2) == pytest.approx(0.6)


def test_resampling_happens_with_its_probability_and_draws_from_the_space() -> None:
    """With probability 0.25 a parameter is drawn afresh, in its own scale: the optimizer
    changes in 0.25 * 2/3 of the draws; with probability 1, lr is log-uniform."""
    rng = np.random.default_rng(1)
    config = Pbt(resample_probability=0.25)
    draws = [perturb(SPACE, PARAMS, config, rng) for _ in range(3000)]
    changed = sum(d["optimizer"] != "adam" for d in draws)
    assert stats.binomtest(changed, len(draws), 0.25 * 2 / 3).pvalue > 0.01
    always = Pbt(resample_probability=1.0)
    lrs = [perturb(SPACE, PARAMS, always, rng)["lr"] for _ in range(1000)]
    exponents = [(math.log10(x) + 4) / 4 for x in lrs]
    assert stats.kstest(exponents, "uniform").pvalue > 0.01


def test_perturbation_is_reproducible_under_a_seed() -> None:
    config = Pbt()
    a = [perturb(SPACE, PARAMS, config, np.random.default_rng([7, n])) for n in range(20)]
    b = [perturb(SPACE, PARAMS, config, np.random.default_rng([7, n])) for n in range(20)]
    assert a == b and len({tuple(sorted(d.items())) for d in a}) > 5


def test_a_schedule_follows_the_lineage_and_replays_by_epoch() -> None:
    """Trial 3 copied trial 2 at epoch 4, which had copied trial 0 at epoch 2."""
    links = {
        10: Link(10, 0, {"lr": 0.1}, None, None),
        11: Link(11, 1, {"lr": 0.5}, None, None),
        12: Link(12, 2, {"lr": 0.08}, 10, 2),
        13: Link(13, 3, {"lr": 0.096}, 12, 4),
    }
    segments = schedule(13, links, last=8)
    assert [(s.first, s.last, s.number) for s in segments] == [(1, 2, 0), (3, 4, 2), (5, 8, 3)]
    assert [replay(segments, e)["lr"] for e in (1, 2, 3, 4, 5, 8)] == [
        0.1,
        0.1,
        0.08,
        0.08,
        0.096,
        0.096,
    ]
    assert [(s.first, s.last) for s in schedule(11, links, last=None)] == [(1, None)]
    # As a replay keeps it and its worker trains it: stretch by stretch, the last to the end.
    assert stretches(stored(segments), 8) == [
        (1, 2, {"lr": 0.1}),
        (3, 4, {"lr": 0.08}),
        (5, 8, {"lr": 0.096}),
    ]


PBT = {
    "kind": "pbt",
    "population": 4,
    "interval": 2,
    "quantile": 0.25,
    "perturb": [0.8, 1.2],
    "resample_probability": 0.25,
}


def pbt_spec(**overrides: Any) -> dict[str, Any]:
    spec = digits_spec(
        scheduler=PBT,
        budget={"max_trials": 4, "parallelism": 4},
        task={"trainer": "mlp_classifier", "dataset": "digits", "epochs": 6},
    )
    spec.update(overrides)
    return spec


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"budget": {"max_trials": 3}}, "scheduler.population", "<= budget.max_trials"),
        ({"scheduler": {**PBT, "interval": 6}}, "scheduler.interval", "below task.epochs"),
        ({"scheduler": {**PBT, "quantile": 0.2}}, "scheduler.quantile", "is no trial"),
        ({"scheduler": {**PBT, "quantile": 0.75}}, "scheduler.quantile", "less than or equal"),
        ({"scheduler": {**PBT, "perturb": [0]}}, "scheduler.perturb.0", "greater than 0"),
        ({"scheduler": {**PBT, "kind": "pb"}}, "scheduler", "'none', 'pbt'"),
        ({"pruner": {"kind": "asha"}}, "pruner.kind", "use pruner none"),
        (
            {"task": {"trainer": "mlp_classifier", "epochs": 6, "checkpoint_every": 0}},
            "task.checkpoint_every",
            "copies checkpoints",
        ),
    ],
)
def test_pbt_spec_errors_name_the_field(change: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(pbt_spec(**change))
    errors = {e.field: e.message for e in info.value.errors}
    assert field in errors, errors
    assert reason in errors[field]


def test_store_replaces_the_bottom_trial_by_a_perturbed_copy_of_a_top_one(store: Store) -> None:
    """Four trials report epochs 1 and 2 with checkpoints; at epoch 2 the worst is told to
    stop, and a new trial goes on from a top trial's checkpoint with perturbed params."""
    copies: list[tuple[int, int]] = []

    def copy(donor: int, target: int) -> int:
        copies.append((donor, target))
        return 2

    store.copy_checkpoint = copy
    study = store.create_study(pbt_spec())
    claims = [store.claim(f"w{i}", study_id=study.id) for i in range(4)]
    held = [c for c in claims if c is not None]
    assert len(held) == 4 and held[0].judges_each_step
    values = {0: 0.9, 1: 0.5, 2: 0.8, 3: 0.7}  # by claim order
    for step in (1, 2):
        for i, c in enumerate(held):
            if step == 2 and i == 1:
                continue  # the worst reports last
            ack = store.report(c.holder(f"w{i}"), step, {"dev_accuracy": values[i]})
            assert not ack.should_stop, ack.reason
            store.record_checkpoint(c.holder(f"w{i}"), step, lambda fresh: None)
    worst = held[1]
    ack = store.report(worst.holder("w1"), 2, {"dev_accuracy": 0.5})
    assert ack.should_stop and ack.reason is not None
    assert ack.reason.startswith(
        "pbt: dev_accuracy 0.5 at epoch 2 is among the worst 1 of the 4 trials there; "
        "replaced by a copy of trial #0"
    )
    best = held[0]
    assert copies and copies[0][0] == best.trial_id  # the top quantile is trial 0 alone
    new_id = copies[0][1]
    new = store.trial(new_id)
    assert new.trial.source == "pbt" and new.trial.state == "queued"
    assert new.trial.parent_trial_id == best.trial_id and new.trial.checkpoint_step == 2
    assert new.trial.params["layers"] == best.params["layers"]  # the shape is the donor's
    assert new.trial.params["hidden_units"] == best.params["hidden_units"]
    assert new.trial.params != best.params
    assert [e.kind for e in new.events] == ["explore"]
    assert [e.kind for e in store.trial(worst.trial_id).events if e.kind == "exploit"] == [
        "exploit"
    ]
    assert store.get_study(study.id).study.max_trials == 5
    # Its schedule: the donor's params for epochs 1-2, its own from 3.
    segments = store.schedule(new_id)
    assert [(s.first, s.last, s.trial_id) for s in segments] == [
        (1, 2, best.trial_id),
        (3, None, new_id),
    ]
    assert segments[0].params == best.params and segments[1].params == new.trial.params
    lineage = store.lineage(study.id)
    assert lineage[new_id].parent_id == best.trial_id and lineage[new_id].step == 2
    assert lineage[best.trial_id].parent_id is None
    # The new trial is claimed next (its worker resumes from the copied checkpoint).
    nxt = store.claim("w1", study_id=study.id)
    assert nxt is not None and nxt.trial_id == new_id and nxt.params == new.trial.params
    # A trial still training has no final schedule to replay; an ended one is replayed as a
    # new trial that carries the schedule to its worker's claim.
    with pytest.raises(InvalidState, match="only an ended trial's schedule is final"):
        store.replay_trial(new_id)
    for step in range(3, 7):
        store.report(nxt.holder("w1"), step, {"dev_accuracy": 0.9})
    store.complete(nxt.holder("w1"), {"dev_accuracy": 0.9, "latency_ms": 1.0})
    replayed = store.replay_trial(new_id)
    assert (replayed.source, replayed.parent_trial_id) == ("replay", new_id)
    assert replayed.params == new.trial.params and replayed.checkpoint_step is None
    assert [e.kind for e in store.trial(replayed.id).events] == ["replay"]
    claim = store.claim("w9", study_id=study.id)
    assert claim is not None and claim.trial_id == replayed.id
    assert claim.schedule == [
        {"first_epoch": 1, "params": best.params},
        {"first_epoch": 3, "params": new.trial.params},
    ]
    assert [(s.first, s.last, s.trial_id, s.params) for s in store.schedule(replayed.id)] == [
        (1, 2, replayed.id, best.params),
        (3, None, replayed.id, new.trial.params),
    ]
