"""Trials and budget a user adds by hand: a partial enqueued guess, more trials for a study.

The budget rule, in one place: a trial a user enqueues adds one to ``max_trials`` unless
asked to take one of the budget's own (``add_to_budget=False``, as an enqueued trial counts
toward ``n_trials`` in Optuna); :func:`extend` adds ``n`` and reopens a completed study.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from hpsearch.errors import InvalidInput, InvalidState
from hpsearch.samplers import make_sampler
from hpsearch.samplers.random import trial_rng
from hpsearch.space import ParamValue, SpaceError
from hpsearch.spec import BudgetSpec
from hpsearch.states import StudyState
from hpsearch.store.claims import running_params
from hpsearch.store.history import read_history
from hpsearch.store.models import Study
from hpsearch.store.studies import add_to_budget, finish_if_done, spec_of

# The spec's ceiling on max_trials, which a study's budget keeps when trials are added.
MAX_TRIALS: int = next(
    m.le for m in BudgetSpec.model_fields["max_trials"].metadata if getattr(m, "le", None)
)


def complete_params(
    session: Session, study: Study, number: int, given: Mapping[str, Any]
) -> dict[str, ParamValue]:
    """``given`` (some or all of the space's parameters) with the rest proposed by the study's
    sampler for trial ``number``, over the study's history, as for its own trials; a sampler
    that has nothing left to propose leaves them to a uniform draw."""
    spec = spec_of(study)
    space = spec.build_space()
    unknown = [name for name in given if name not in space]
    if unknown:
        raise InvalidInput("params", f"unknown parameters {unknown}; the space has {list(space)}")
    proposal: Mapping[str, ParamValue] | None = None
    if any(name not in given for name in space):
        sampler = make_sampler(spec)
        past = (
            read_history(session, study.id, spec.objective.metric) if sampler.needs_history else []
        )
        proposal = sampler.propose(number, past, running_params(session, study.id))
        if proposal is None:
            rng = trial_rng(getattr(spec.sampler, "seed", None), number)
            proposal = space.from_unit({name: float(rng.random()) for name in space})
    full = {**(proposal or {}), **given}
    try:
        return space.validate(full)
    except SpaceError as e:
        raise InvalidInput("params", str(e)) from None


def take_budget(study: Study, number: int, add: bool) -> None:
    """Makes room for trial ``number``, which a user adds: one more in the budget, or (``add``
    False) one of the trials the budget still has, refused when none is left."""
    if add:
        if study.max_trials >= MAX_TRIALS:
            raise InvalidState(f"study {study.id} has the most trials a study may ({MAX_TRIALS})")
        add_to_budget(study, 1)
        return
    if number >= study.max_trials:
        raise InvalidState(
            f"study {study.id} has no trial left in its budget ({study.max_trials}); "
            "enqueue adding to it, or extend the study first"
        )


def extend(session: Session, study: Study, n_trials: int) -> None:
    """Gives a study ``n_trials`` more: a completed one runs again, unless its budget is
    spent otherwise (time, target value), which is said. The study must be locked."""
    if study.state == StudyState.STOPPED:
        raise InvalidState(f"study {study.id} was stopped; a stopped study cannot be extended")
    if study.max_trials + n_trials > MAX_TRIALS:
        raise InvalidInput(
            "n_trials", f"a study has at most {MAX_TRIALS} trials; it has {study.max_trials}"
        )
    add_to_budget(study, n_trials)
    if study.state != StudyState.COMPLETED:
        return
    study.state, study.reason, study.finished_at = StudyState.RUNNING, None, None
    if finish_if_done(session, study):
        raise InvalidState(f"study {study.id} cannot run more trials: {study.reason}")
