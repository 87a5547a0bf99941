"""Trials and budget added by hand: a partial enqueue is completed by the study's own sampler,
whatever its kind; extend reopens a completed study but not one its time limit ended."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from hpsearch.errors import InvalidState
from hpsearch.store import Store
from hpsearch.store.clock import utcnow
from hpsearch.store.models import Study
from tests.conftest import digits_spec

SAMPLERS = [
    {"kind": "random", "seed": 1},
    {"kind": "grid", "n": 2},
    {"kind": "coarse_to_fine", "rounds": 2, "trials_per_round": 2, "top_k": 1, "seed": 1},
    {"kind": "tpe", "n_startup_trials": 1, "seed": 1},
    {"kind": "qmc", "seed": 1},
    {"kind": "cmaes", "n_startup_trials": 1, "seed": 1},
]


@pytest.mark.parametrize("sampler", SAMPLERS, ids=lambda s: str(s["kind"]))
def test_a_partial_enqueue_is_completed_by_the_studys_sampler(
    store: Store, sampler: dict[str, Any]
) -> None:
    study = store.create_study(
        digits_spec(sampler=sampler, budget={"max_trials": 4, "parallelism": 1})
    )
    for value in (0.9, 0.8):  # some history, for the samplers that learn from it
        c = store.claim("w")
        assert c is not None
        store.complete(c.holder("w"), {"dev_accuracy": value, "latency_ms": 1.0})
    trial = store.enqueue(study.id, {"lr": 0.01, "batch_size": 128})
    assert trial.params["lr"] == 0.01 and trial.params["batch_size"] == 128
    assert set(trial.params) == set(digits_spec()["space"])
    assert store.get_study(study.id).study.max_trials == 5


def test_extend_refuses_a_study_its_time_limit_ended(store: Store) -> None:
    spec = digits_spec(budget={"max_trials": 1, "parallelism": 1, "time_limit_s": 60})
    study = store.create_study(spec)
    c = store.claim("w")
    assert c is not None
    store.complete(c.holder("w"), {"dev_accuracy": 0.5, "latency_ms": 1.0})
    assert store.get_study(study.id).study.state == "completed"
    with store.db.write() as s:  # the study began 61 s ago
        s.execute(
            update(Study)
            .where(Study.id == study.id)
            .values(created_at=utcnow() - timedelta(seconds=61))
        )
    with pytest.raises(InvalidState, match="time limit"):
        store.extend_study(study.id, 2)
    view = store.get_study(study.id)
    assert (view.study.state, view.study.max_trials) == ("completed", 1)


def test_an_enqueue_within_the_budget_is_refused_when_none_is_left(store: Store) -> None:
    study = store.create_study(digits_spec(budget={"max_trials": 2, "parallelism": 1}))
    assert store.claim("w") is not None  # trial 0; trial 1 is sampled ahead, not run
    taken = store.enqueue(study.id, {"lr": 0.01}, add_to_budget=False)
    assert taken.number == 1  # it took the sampled trial's place
    with pytest.raises(InvalidState, match="no trial left in its budget"):
        store.enqueue(study.id, {"lr": 0.02}, add_to_budget=False)
    assert store.get_study(study.id).study.max_trials == 2
