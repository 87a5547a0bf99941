"""Export: a study's trials as a CSV or JSON download (one row per trial, by number)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from api.deps import StoreDep
from api.schemas import ErrorBody, StudyId, TrialOut
from hpsearch.spec import parse_spec
from hpsearch.store import Store
from hpsearch.store.models import Trial
from hpsearch.store.results import TrialRecord

router = APIRouter(prefix="/studies", tags=["studies"])

_BATCH = 2000
_FIXED = ["number", "state", "value", "feasible", "broken", "source", "attempt", "worker_id"]
_TIMES = ["created_at", "started_at", "finished_at"]


@router.get(
    "/{study_id}/export",
    responses={
        200: {"content": {"text/csv": {}, "application/json": {}}},
        404: {"model": ErrorBody},
    },
)
def export_trials(
    study_id: StudyId, store: StoreDep, format: Literal["csv", "json"] = "csv"
) -> StreamingResponse:
    """Every trial of the study. CSV: one column per parameter (``param.lr``) and metric
    (``metric.dev_accuracy``; the final test evaluation's ``metric.test_*`` on its trial), plus
    ``broken`` (the satisficing constraints a trial missed) and ``error`` (the last line of a
    failure). JSON: the trial objects of ``GET /trials``."""
    view = store.get_study(study_id)
    name = f"{view.study.name}-study{study_id}-trials.{format}"
    if format == "json":
        body, media = _json_rows(store, study_id), "application/json"
    else:
        body, media = _csv_rows(store, study_id), "text/csv; charset=utf-8"
    return StreamingResponse(
        body, media_type=media, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


def _pages(store: Store, study_id: int) -> Iterator[list[Trial]]:
    offset = 0
    while True:
        rows = store.trials(study_id, order="number", offset=offset, limit=_BATCH)
        if not rows:
            return
        yield rows
        offset += len(rows)


def _json_rows(store: Store, study_id: int) -> Iterator[str]:
    yield "["
    first = True
    for rows in _pages(store, study_id):
        for t in rows:
            yield ("" if first else ",\n") + TrialOut.of(t).model_dump_json()
            first = False
    yield "]\n"


def _csv_rows(store: Store, study_id: int) -> Iterator[str]:
    spec = parse_spec(store.get_study(study_id).study.spec)
    objective = spec.build_objective()
    records = store.trial_records(study_id)
    # The header names every metric any trial reported.
    metric_names = sorted({m for r in records for m in _metrics(r)})
    params = list(spec.space)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        _FIXED
        + [f"param.{p}" for p in params]
        + [f"metric.{m}" for m in metric_names]
        + _TIMES
        + ["error"]
    )
    for start in range(0, len(records), _BATCH):
        for r in records[start : start + _BATCH]:
            broken = objective.evaluate(r.metrics).broken if r.feasible is False else ()
            writer.writerow(
                [r.number, r.state, _cell(r.value), _cell(r.feasible), "; ".join(broken)]
                + [r.source, r.attempt, r.worker_id or ""]
                + [_cell(r.params.get(p)) for p in params]
                + [_cell(_metrics(r).get(m)) for m in metric_names]
                + [x.isoformat() if x else "" for x in (r.created_at, r.started_at, r.finished_at)]
                + [_last_line(r.error)]
            )
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def _metrics(r: TrialRecord) -> dict[str, float | None]:
    """Dev and train metrics, and the test_* metrics of the one trial evaluated on test."""
    return {**r.metrics, **(r.test_metrics or {})}


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return value
    return json.dumps(value) if isinstance(value, list | dict) else value


def _last_line(error: str | None) -> str:
    lines = (error or "").strip().splitlines()
    return lines[-1] if lines else ""
