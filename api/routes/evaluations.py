"""The final test evaluation: the user picks the study's final trial, a worker evaluates its
model on the test set, and the test_* metrics land on that trial (and nowhere in selection).

Workers receive the job from ``POST /claims`` as a claim of ``kind: evaluate_test`` and
answer on the ``/trials/{id}/test-evaluation/...`` endpoints with that claim's attempt.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from api.auth import act_as
from api.deps import StoreDep
from api.schemas import (
    AckOut,
    ErrorBody,
    EvaluateTestIn,
    FailIn,
    FinalEvaluationOut,
    FinalMetricsIn,
    LeaseIn,
    StudyId,
    TrialId,
)

router = APIRouter()

_ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorBody},
    409: {"model": ErrorBody},
    422: {"model": ErrorBody},
}


@router.post(
    "/studies/{study_id}/evaluate-test",
    status_code=status.HTTP_202_ACCEPTED,
    responses=_ERRORS,
    tags=["studies"],
)
def evaluate_test(
    study_id: StudyId, store: StoreDep, response: Response, body: EvaluateTestIn | None = None
) -> FinalEvaluationOut:
    """Queues the test-set evaluation of the study's final trial: ``trial_id``, by default the
    best feasible trial. Once per study: asking again for the same trial returns the same
    evaluation (retrying it if it failed); asking for another trial is refused (409)."""
    trial_id = body.trial_id if body is not None else None
    evaluation = store.request_final_evaluation(study_id, trial_id)
    response.headers["Location"] = f"/api/v1/studies/{study_id}/evaluate-test"
    return FinalEvaluationOut.of(evaluation)


@router.get("/studies/{study_id}/evaluate-test", responses=_ERRORS, tags=["studies"])
def get_final_evaluation(study_id: StudyId, store: StoreDep) -> FinalEvaluationOut | None:
    """The study's final test evaluation; ``null`` when none was requested."""
    evaluation = store.final_evaluation(study_id)
    return FinalEvaluationOut.of(evaluation) if evaluation else None


@router.post("/trials/{trial_id}/test-evaluation/heartbeat", responses=_ERRORS, tags=["workers"])
def heartbeat(trial_id: TrialId, body: LeaseIn, request: Request, store: StoreDep) -> AckOut:
    act_as(request, body.worker_id)
    expires = store.final_evaluation_heartbeat(body.holder(trial_id))
    return AckOut(should_stop=False, reason=None, lease_expires_at=expires)


@router.post("/trials/{trial_id}/test-evaluation/complete", responses=_ERRORS, tags=["workers"])
def complete(
    trial_id: TrialId, body: FinalMetricsIn, request: Request, store: StoreDep
) -> FinalEvaluationOut:
    """The test_* metrics of the trial's model; 409 when the worker lost the job's lease."""
    act_as(request, body.worker_id)
    return FinalEvaluationOut.of(
        store.complete_final_evaluation(body.holder(trial_id), body.metrics)
    )


@router.post("/trials/{trial_id}/test-evaluation/fail", responses=_ERRORS, tags=["workers"])
def fail(trial_id: TrialId, body: FailIn, request: Request, store: StoreDep) -> FinalEvaluationOut:
    act_as(request, body.worker_id)
    return FinalEvaluationOut.of(store.fail_final_evaluation(body.holder(trial_id), body.error))
