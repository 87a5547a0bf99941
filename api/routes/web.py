"""The web results view: server-rendered pages over the same store the REST API reads."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from api.deps import StoreDep
from api.web_assets import templates
from hpsearch.spec import parse_spec

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def studies_page(request: Request, store: StoreDep, state: str | None = None) -> HTMLResponse:
    views = store.list_studies(state or None)
    return templates.TemplateResponse(
        request, "studies.html", {"views": views, "state": state or ""}
    )


@router.get("/studies/{study_id}", response_class=HTMLResponse)
def study_page(request: Request, study_id: int, store: StoreDep) -> HTMLResponse:
    view = store.get_study(study_id)
    spec = parse_spec(view.study.spec)
    objective = spec.build_objective()
    ranked = store.trials(study_id, order="rank", limit=500)
    broken = {t.id: objective.evaluate(t.metrics).broken for t in ranked if t.feasible is False}
    return templates.TemplateResponse(
        request,
        "study.html",
        {
            "view": view,
            "spec": spec,
            "objective": objective,
            "trials": ranked,
            "broken": broken,
            "param_names": list(spec.space),
            "metric_names": _metric_columns(objective.metric, [t.metrics for t in ranked]),
        },
    )


@router.get("/trials/{trial_id}", response_class=HTMLResponse)
def trial_page(request: Request, trial_id: int, store: StoreDep) -> HTMLResponse:
    view = store.trial(trial_id)
    return templates.TemplateResponse(request, "trial.html", {"view": view})


def _metric_columns(objective_metric: str, metrics: list[dict[str, float | None]]) -> list[str]:
    preferred = [
        objective_metric,
        "train_accuracy",
        "dev_error",
        "train_error",
        "latency_ms",
        "n_params",
    ]
    seen = {name for m in metrics for name in m}
    return [m for m in dict.fromkeys(preferred) if m in seen]
