"""What the queue's hot paths need of a study's spec, parsed once per study and process
(kept by :class:`hpsearch.store.hints.RulesCache`).

A spec is fixed when its study is created, except ``budget`` (an enqueued guess raises
``max_trials``), which is therefore read from the study row on every claim and completion and
never from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from hpsearch.objective import Objective
from hpsearch.samplers import Sampler, make_sampler
from hpsearch.spec import StudySpec, parse_spec
from hpsearch.store.bounded import Bounded
from hpsearch.store.studies import Ranked

StudyKey = tuple[int, datetime]


@dataclass(frozen=True)
class StudyRules:
    key: StudyKey
    spec: StudySpec
    objective: Objective
    # Stateful (samplers that learn from history ingest only new trials), so one per study.
    sampler: Sampler
    task: dict[str, Any]
    # A pruner judges each step as it is reported: a worker must not hold reports back.
    judges_each_step: bool
    # What a worker needs to be given the study's trials (the spec's ``requires``).
    requires: dict[str, Any] = field(default_factory=dict)
    # The ranking columns of trials that have been the study's best, by trial id: ended
    # trials never change, so a completion compares with the best without reading it.
    best_ranks: Bounded[int, Ranked] = field(default_factory=lambda: Bounded(64))


def rules_of(key: StudyKey, spec_json: dict[str, Any]) -> StudyRules:
    spec = parse_spec(spec_json)
    return StudyRules(
        key=key,
        spec=spec,
        objective=spec.build_objective(),
        sampler=make_sampler(spec),
        task=dict(spec_json["task"]),
        judges_each_step=spec.pruner.kind != "none" or spec.scheduler.kind != "none",
        requires=dict(spec_json.get("requires") or {}),
    )


RulesFor = Callable[[Session | Connection, StudyKey], StudyRules]
