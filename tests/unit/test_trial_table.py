"""The trials table sorted and filtered by any column, in SQL, on both databases: the rows and
counts the store returns equal the same sort and filter done in Python."""

from __future__ import annotations

import operator
import random
from typing import Any

import pytest

from hpsearch.errors import InvalidInput
from hpsearch.spec import parse_spec
from hpsearch.store import Store
from hpsearch.trial_query import TableColumns, TrialQuery, parse_query
from tests.conftest import digits_spec

SPACE = {
    **digits_spec()["space"],
    "activation": {"type": "categorical", "choices": ["relu", "tanh", "sigmoid"]},
    "batch_norm": {"type": "categorical", "choices": [True, False]},
}
OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _columns(spec: dict[str, Any]) -> TableColumns:
    parsed = parse_spec(spec)
    metrics = {"dev_accuracy", "latency_ms", "train_accuracy"}
    return TableColumns(parsed.build_space(), "dev_accuracy", metrics)


@pytest.fixture
def study(store: Store) -> tuple[int, dict[str, Any]]:
    """60 imported trials (some pruned, some without train_accuracy) and 3 queued ones."""
    spec = digits_spec(space=SPACE, budget={"max_trials": 3, "parallelism": 3})
    study = store.create_study(spec)
    space = parse_spec(spec).build_space()
    rng = random.Random(11)
    records = []
    for i in range(60):
        metrics: dict[str, float] = {
            "dev_accuracy": round(rng.random(), 3),
            "latency_ms": float(rng.choice([40, 90, 150])),
        }
        if i % 4:
            metrics["train_accuracy"] = round(rng.random(), 3)
        params = space.from_unit({name: rng.random() for name in space})
        records.append({"params": params, "metrics": metrics, "state": "completed"})
        if i % 10 == 7:
            records[-1]["state"] = "pruned"
    store.import_history(study.id, records)
    return study.id, spec


def _python(store: Store, study_id: int, key: str, descending: bool, keep: Any) -> list[int]:
    trials = [t for t in store.trials(study_id, limit=1000) if keep(t)]
    have = [t for t in trials if _value(t, key) is not None]
    have.sort(key=lambda t: (_value(t, key), t.number if not descending else -t.number))
    if descending:
        have.reverse()
    missing = sorted((t for t in trials if _value(t, key) is None), key=lambda t: t.number)
    return [t.number for t in have + missing]


def _value(trial: Any, key: str) -> Any:
    if key == "dev_accuracy":
        return trial.value
    return trial.params[key] if key in trial.params else trial.metrics.get(key)


@pytest.mark.parametrize(
    ("sort", "text", "keep"),
    [
        ("lr", "", lambda t: True),
        ("-train_accuracy", "state = completed", lambda t: t.state == "completed"),
        (
            "-dev_accuracy",
            "hidden_units >= 64, latency_ms < 100",
            lambda t: t.params["hidden_units"] >= 64 and (t.metrics.get("latency_ms") or 1e9) < 100,
        ),
        (
            "activation",
            "activation != relu and beta <= 0.99",
            lambda t: t.params["activation"] != "relu" and t.params["beta"] <= 0.99,
        ),
        ("-state", "", lambda t: True),
        # A JSON boolean reads out as 1 on SQLite and as 'true' on PostgreSQL.
        ("hidden_units", "batch_norm = true", lambda t: t.params["batch_norm"] is True),
        ("-lr", "batch_norm != False", lambda t: t.params["batch_norm"] is not False),
    ],
)
def test_pages_sort_and_filter_like_python(
    store: Store, study: tuple[int, dict[str, Any]], sort: str, text: str, keep: Any
) -> None:
    study_id, spec = study
    query = parse_query(sort, text, _columns(spec))
    name, descending = sort.lstrip("-"), sort.startswith("-")
    expected = _python(store, study_id, name, descending, keep)
    if name == "state":  # states are text: sort them as the database does
        expected = [
            t.number
            for t in sorted(
                store.trials(study_id, limit=1000),
                key=lambda t: (t.state, -t.number),
                reverse=True,
            )
        ]
    pages: list[int] = []
    for offset in range(0, 70, 16):
        ids, total = store.trial_page_ids(study_id, query, offset=offset, limit=16)
        assert total == len(expected)
        pages += [t.number for t in store.trials_by_id(ids)]
    assert pages == expected
    assert len(expected) > 5  # every case keeps enough rows to mean something


def test_no_sort_is_by_number_and_a_page_past_the_end_still_counts(
    store: Store, study: tuple[int, dict[str, Any]]
) -> None:
    study_id, spec = study
    query = parse_query("-latency_ms", "state = queued", _columns(spec))
    assert store.trial_page_ids(study_id, query, offset=0, limit=10) == ([], 0)
    ids, total = store.trial_page_ids(study_id, TrialQuery(), offset=55, limit=10)
    assert [t.number for t in store.trials_by_id(ids)] == list(range(55, 60)) and total == 60
    # Past the last page: no rows, and still the count.
    assert store.trial_page_ids(study_id, TrialQuery(), offset=80, limit=10) == ([], 60)


@pytest.mark.parametrize(
    ("sort", "text", "field", "says"),
    [
        ("lrr", "", "sort", "no column 'lrr'"),
        ("", "acc > 0.5", "filter", "no column 'acc'; columns: number, state, lr"),
        ("", "lr ~ 3", "filter", "is not 'column op value'"),
        ("", "lr < small", "filter", "lr compares with a number, not 'small'"),
        ("", "activation < relu", "filter", "activation compares only with = or !="),
        ("", "state = done", "filter", "state 'done' is not one of queued"),
    ],
)
def test_a_bad_sort_or_filter_names_the_field(sort: str, text: str, field: str, says: str) -> None:
    with pytest.raises(InvalidInput) as error:
        parse_query(sort, text, _columns(digits_spec(space=SPACE)))
    assert error.value.field == field and says in error.value.message
