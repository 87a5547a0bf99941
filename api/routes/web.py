"""The web results view: server-rendered pages, and the JSON they poll and plot, over the same
store the REST API reads. Shaping lives in ``api.views``; these handlers load and render."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from api.deps import ArtifactsDep, SettingsDep, StoreDep
from api.schemas import MAX_ID, StudyId, TrialId, TrialNumber
from api.views import bias_variance
from api.views.curves import CurveTrial, curves_figure, default_family, families
from api.views.figures import compare_figures, contour_figure, timeline_figure
from api.views.pages import (
    PER_PAGE,
    Pagination,
    age,
    enqueue_fields,
    last_contact,
    metric_columns,
    paginate,
    worker_status,
)
from api.views.point_cache import PointCache
from api.views.sampling import FIRST_PAINT, PLOT_LIMIT
from api.views.study import CONTEXT_CURVES, curve_ids, study_plots
from api.views.study_posters import parse_sizes, study_posters
from api.web_assets import partial_plotly, templates
from hpsearch.errors import InvalidInput
from hpsearch.settings import Settings
from hpsearch.spec import StudySpec, parse_spec
from hpsearch.store import Store
from hpsearch.store.bounded import Bounded
from hpsearch.store.clock import utcnow
from hpsearch.store.repository import StudyView
from hpsearch.store.timeline import trial_spans
from hpsearch.trial_query import TableColumns, TrialQuery, parse_query

router = APIRouter(include_in_schema=False)

# A partial Plotly bundle with only the trace types the pages draw (scripts/web-assets.sh
# installs it), a third of the full one to parse; else the full bundle inside the installed
# `plotly` package. Either way the page works offline.
PLOTLY_JS = str(partial_plotly() or files("plotly") / "package_data" / "plotly.min.js")
TrialOrder = Literal["rank", "number"]
TrialState = Literal["", "queued", "running", "completed", "pruned", "failed"]


@dataclass(frozen=True)
class TrialsTable:
    """The query of a study page's trials table: which page, how long, in which order, of
    which state; the page and its live updates read it alike."""

    page: int
    per: int
    order: str
    state: str
    sort: str = ""  # a column, "-" in front for descending (hpsearch.trial_query)
    filter: str = ""  # conditions on columns: "lr < 0.01, state = completed"


async def _trials_table(
    page: Annotated[int, Query(ge=1, le=MAX_ID)] = 1,
    per: Annotated[int, Query(ge=1, le=500)] = PER_PAGE,
    order: TrialOrder = "rank",
    state: TrialState = "",
    sort: Annotated[str, Query(max_length=200)] = "",
    filter: Annotated[str, Query(max_length=1000)] = "",
) -> TrialsTable:
    return TrialsTable(page, per, order, state, sort, filter)


TrialsTableDep = Annotated[TrialsTable, Depends(_trials_table)]
MAX_SELECTED = 8


# Pages ask for the bundle under its digest (``?v=``), so a browser keeps it for good and
# never asks again, not even on a reload; a new bundle is a new address.
PLOTLY_DIGEST = hashlib.sha256(Path(PLOTLY_JS).read_bytes()).hexdigest()[:16]
templates.env.globals["plotly_src"] = f"/static/plotly.min.js?v={PLOTLY_DIGEST}"


@router.get("/static/plotly.min.js")
def plotly_js(v: str = "") -> FileResponse:
    forever = "public, max-age=31536000, immutable"
    return FileResponse(
        PLOTLY_JS,
        media_type="text/javascript",
        headers={"Cache-Control": forever if v == PLOTLY_DIGEST else "public, max-age=86400"},
    )


# -- studies ---------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def studies_page(request: Request, store: StoreDep, state: str | None = None) -> HTMLResponse:
    return templates.TemplateResponse(request, "studies.html", _studies_context(store, state))


@router.get("/studies.live")
def studies_live(store: StoreDep, state: str | None = None) -> JSONResponse:
    context = _studies_context(store, state)
    html = templates.get_template("_studies_rows.html").render(context)
    active = any(v.study.state in ("running", "paused") for v in context["views"])
    return JSONResponse({"html": html, "active": active})


def _studies_context(store: Store, state: str | None) -> dict[str, Any]:
    views = store.list_studies(state or None)
    objectives = {v.study.id: parse_spec(v.study.spec).build_objective().describe() for v in views}
    return {
        "views": views,
        "objectives": objectives,
        "state": state or "",
        "now": utcnow(),
        "age": age,
    }


@router.get("/compare", response_class=HTMLResponse)
def compare_page(
    request: Request,
    store: StoreDep,
    studies: Annotated[list[Annotated[int, Query(ge=1, le=MAX_ID)]], Query(max_length=8)] = [],  # noqa: B006
) -> HTMLResponse:
    """Two or more studies on one page (``/compare?studies=3&studies=5``): their best-so-far
    lines and objective distributions together, and each one's best trial."""
    views = [store.get_study(i) for i in dict.fromkeys(studies)]
    rows = []
    for view in views:
        spec = parse_spec(view.study.spec)
        rows.append(
            (view.study.name, spec.build_objective(), _ended_points(request.app, store, view, spec))
        )
    history, distribution = compare_figures(rows) if len(views) >= 2 else (None, None)
    return templates.TemplateResponse(
        request,
        "compare.html",
        {
            "views": views,
            "objectives": {
                v.study.id: o.describe() for v, (_, o, _) in zip(views, rows, strict=True)
            },
            "figures": {"history": history, "edf": distribution},
        },
    )


def _ended_points(app: FastAPI, store: Store, view: StudyView, spec: StudySpec) -> list[Any]:
    """A study's ended trials, from the cache the study page fills and tops up."""
    metrics = tuple(dict.fromkeys(c.metric for c in spec.constraints))
    study_id = view.study.id
    return _caches(app).points.points(
        study_id,
        view.counts.ended,
        metrics,
        lambda since: store.trial_points(study_id, metrics, since),
    )


# -- one study -------------------------------------------------------------------------------


@router.get("/studies/{study_id}", response_class=HTMLResponse)
def study_page(
    request: Request, study_id: StudyId, store: StoreDep, table: TrialsTableDep
) -> HTMLResponse:
    view = store.get_study(study_id)
    context = _study_context(request.app, store, view, table)
    context["regions_url"] = f"/api/v1/studies/{study_id}/regions"
    return templates.TemplateResponse(request, "study.html", context)


@router.get("/studies/{study_id}/live")
def study_live(
    request: Request, study_id: StudyId, store: StoreDep, table: TrialsTableDep
) -> JSONResponse:
    """The parts of the study page that change while trials run, rendered again."""
    view = store.get_study(study_id)
    context = _study_context(request.app, store, view, table)
    parts = {
        name: templates.get_template(f"_study_{name}.html").render(context)
        for name in ("progress", "best", "diagnosis", "trials")
    }
    c = view.counts
    return JSONResponse(
        {
            "state": view.study.state,
            "reason": view.study.reason,
            "ended": c.ended,
            "running": c.running,
            "queued": c.queued,
            "best_id": view.best.id if view.best else None,
            # A test evaluation in progress keeps an ended study's page polling.
            "evaluating": context["final_evaluation"] is not None
            and context["final_evaluation"].state in ("queued", "running"),
            "html": parts,
            "table_error": context["query_error"],
        }
    )


def _study_context(
    app: FastAPI, store: Store, view: StudyView, table: TrialsTable
) -> dict[str, Any]:
    state = table.state
    spec = parse_spec(view.study.spec)
    objective = spec.build_objective()
    c = view.counts
    by_state = {
        "queued": c.queued,
        "running": c.running,
        "completed": c.completed,
        "pruned": c.pruned,
        "failed": c.failed,
    }
    query, query_error = _table_query(spec, view, table)
    if query.empty:
        total = by_state[state] if state else sum(by_state.values())
        pages = paginate(table.page, table.per, total)
        trials = store.trials(
            view.study.id,
            order=table.order,
            offset=pages.offset,
            limit=pages.per_page,
            states=(state,) if state else (),
        )
    else:
        trials, pages = _sorted_page(app, store, view, query, table)
    broken = {t.id: objective.evaluate(t.metrics).broken for t in trials if t.feasible is False}
    best_metrics = _all_metrics(view.best) if view.best else {}
    return {
        "view": view,
        "spec": spec,
        "objective": objective,
        "trials": trials,
        "broken": broken,
        "pages": pages,
        "order": "sorted" if query.sort else table.order,
        "trial_state": state,
        "table": table,
        "sort_column": query.sort.name if query.sort else "",
        "sort_descending": query.descending,
        "query_error": query_error,
        "param_names": list(spec.space),
        "metric_names": metric_columns(objective, [t.metrics for t in trials]),
        "best_metrics": best_metrics,
        "diagnosis": bias_variance.panel(best_metrics, spec.reference_error) if view.best else None,
        "fields": enqueue_fields(spec.build_space(), view.best.params if view.best else None),
        "final_evaluation": store.final_evaluation(view.study.id),
        "now": utcnow(),
        "age": age,
    }


def _table_query(
    spec: StudySpec, view: StudyView, table: TrialsTable
) -> tuple[TrialQuery, str | None]:
    """The table's sort and filter, checked against the study's columns; a bad one is shown
    beside the filter box, and the table drops it rather than the page failing."""
    if not (table.sort or table.filter.strip()):
        # A state alone is the plain query: it keeps the ranked order and the study's counts.
        return TrialQuery(), None
    objective = spec.build_objective()
    reported = set(view.best.metrics) if view.best else set()
    columns = TableColumns(
        params=spec.build_space(),
        objective=objective.metric,
        metrics=reported | {c.metric for c in spec.constraints},
        any_metric=view.best is None,
    )
    state = (f"state = {table.state}",) if table.state else ()
    try:
        query = parse_query(table.sort, ", ".join((*state, table.filter)), columns)
    except InvalidInput as error:
        return TrialQuery(), str(error)
    return query, None


def _sorted_page(
    app: FastAPI, store: Store, view: StudyView, query: TrialQuery, table: TrialsTable
) -> tuple[list[Any], Pagination]:
    """A page of the table sorted or filtered by a column. Which ids it holds is remembered
    until a trial changes state (a pass over a 100 000-trial study's JSON takes a few tenths
    of a second, and the page polls every 2 s); the rows themselves are read fresh."""
    c = view.counts
    key = (view.study.id, view.study.updated_at, c.queued, c.running, c.ended, query, table)
    cached = _caches(app).table_pages.get(key)
    if cached is None:
        offset = (table.page - 1) * table.per
        ids, total = store.trial_page_ids(view.study.id, query, offset=offset, limit=table.per)
        pages = paginate(table.page, table.per, total)
        if pages.offset != offset or pages.per_page != table.per:  # past the last page
            ids, total = store.trial_page_ids(
                view.study.id, query, offset=pages.offset, limit=pages.per_page
            )
        cached = _caches(app).table_pages.setdefault(key, (ids, pages))
    ids, pages = cached
    return store.trials_by_id(ids), pages


def _all_metrics(trial: Any) -> dict[str, float | None]:
    """A trial's metrics with its test_* metrics when it is the study's final evaluation."""
    return {**trial.metrics, **(getattr(trial, "test_metrics", None) or {})}


@router.get("/studies/{study_id}/plots.json")
def study_plots_json(
    request: Request,
    study_id: StudyId,
    store: StoreDep,
    points: Annotated[int, Query(ge=100, le=PLOT_LIMIT)] = FIRST_PAINT,
) -> Response:
    """The study page's figures from at most about ``points`` trials (the best and a spread
    of the rest): few enough to draw at once by default, more when the reader asks."""
    view = store.get_study(study_id)
    key = _plots_key(view, points)
    caches = _caches(request.app)
    body = caches.figures.get(key)
    if body is None:
        payload = {**_plots(request.app, store, view, points), "more": PLOT_LIMIT}
        body = json.dumps(payload, separators=(",", ":")).encode()
        caches.figures.put(key, body)
    return Response(body, media_type="application/json")


def _plots_key(view: StudyView, points: int) -> tuple[Any, ...]:
    # Plots depend only on ended trials; the study row changes whenever one ends.
    return (view.study.id, view.study.updated_at, view.counts.ended, points)


def _plots(app: FastAPI, store: Store, view: StudyView, points: int) -> dict[str, Any]:
    """``study_plots`` of a study, kept while no trial ends: the page's figures and its
    posters are drawn from one computation."""
    key = _plots_key(view, points)
    caches = _caches(app)
    plots = caches.plots.get(key)
    if plots is None:
        spec = parse_spec(view.study.spec)
        # Points carry only the satisficing metrics: the objective is the trial's value.
        ended = _ended_points(app, store, view, spec)
        plots = study_plots(spec, ended, view.study.best_trial_id, limit=points)
        caches.plots.put(key, plots)
    return plots


@dataclass
class _Caches:
    points: PointCache = field(default_factory=PointCache)
    figures: Bounded[tuple[Any, ...], bytes] = field(default_factory=lambda: Bounded(16))
    plots: Bounded[tuple[Any, ...], dict[str, Any]] = field(default_factory=lambda: Bounded(4))
    poster_figures: Bounded[tuple[Any, ...], dict[str, Any]] = field(
        default_factory=lambda: Bounded(4)
    )
    posters: Bounded[tuple[Any, ...], bytes] = field(default_factory=lambda: Bounded(16))
    table_pages: Bounded[tuple[Any, ...], tuple[list[int], Pagination]] = field(
        default_factory=lambda: Bounded(64)
    )


def _caches(app: FastAPI) -> _Caches:
    if not hasattr(app.state, "web_caches"):
        app.state.web_caches = _Caches()
    caches: _Caches = app.state.web_caches
    return caches


@router.get("/studies/{study_id}/posters")
def study_posters_json(
    request: Request,
    study_id: StudyId,
    store: StoreDep,
    sizes: Annotated[str, Query(max_length=400)] = "",
) -> Response:
    """Every plot of the study page as static SVG at the sizes the page measured
    (``?sizes=history:1330x400,param:430x250,…``): what the page shows while Plotly loads."""
    wanted = parse_sizes(sizes)
    view = store.get_study(study_id)
    c = view.counts
    # Learning curves grow while trials run: a running trial's report changes them too.
    key = (study_id, view.study.updated_at, c.ended, c.running)
    caches = _caches(request.app)
    at_sizes = (*key, tuple(sorted(wanted.items())))
    drawn = caches.posters.get(at_sizes)
    if drawn is None:
        figures = caches.poster_figures.get(key)
        if figures is None:
            figures = _poster_figures(request.app, store, view)
            caches.poster_figures.put(key, figures)
        plots = _plots(request.app, store, view, FIRST_PAINT)
        posters = study_posters(plots, figures, wanted)
        drawn = json.dumps(posters, separators=(",", ":")).encode()
        caches.posters.put(at_sizes, drawn)
    return Response(drawn, media_type="application/json")


def _poster_figures(app: FastAPI, store: Store, view: StudyView) -> dict[str, Any]:
    """The figures the page asks for apart from ``plots.json``, as it first asks for them:
    the learning curves of no selection, the contour of the first two parameters, the
    timeline."""
    spec = parse_spec(view.study.spec)
    space = spec.build_space()
    names = list(space)
    points = _ended_points(app, store, view, spec)
    with store.db.read() as session:
        spans = trial_spans(session, view.study.id, TIMELINE_LIMIT)
    curves = _curves_payload(store, spec, view.study.id, _default_curves(store, view), "")
    return {
        "curves": curves["figure"] if curves["figure"]["data"] else None,
        "contour": contour_figure(
            space[names[0]], space[names[min(1, len(names) - 1)]], points, spec.build_objective()
        ),
        "timeline": timeline_figure(spans, utcnow()),
    }


@router.get("/studies/{study_id}/contour.json")
def study_contour_json(
    request: Request,
    study_id: StudyId,
    store: StoreDep,
    x: Annotated[str, Query(max_length=200)],
    y: Annotated[str, Query(max_length=200)],
) -> JSONResponse:
    """The objective over two chosen parameters (``?x=lr&y=beta``), each on its own scale."""
    view = store.get_study(study_id)
    spec = parse_spec(view.study.spec)
    space = spec.build_space()
    for field_name, name in (("x", x), ("y", y)):
        if name not in space:
            raise RequestValidationError(
                [
                    {
                        "loc": ("query", field_name),
                        "msg": f"{name!r} is not a parameter of this study ({', '.join(space)})",
                        "type": "value_error",
                    }
                ]
            )
    points = _ended_points(request.app, store, view, spec)
    figure = contour_figure(space[x], space[y], points, spec.build_objective())
    return JSONResponse({"figure": figure})


TIMELINE_LIMIT = 2000
"""The timeline draws the trials that started last, at most this many."""


@router.get("/studies/{study_id}/timeline.json")
def study_timeline_json(study_id: StudyId, store: StoreDep) -> JSONResponse:
    """Trials per worker over time; asked for when the timeline is scrolled into view."""
    view = store.get_study(study_id)
    with store.db.read() as session:
        spans = trial_spans(session, study_id, TIMELINE_LIMIT)
    started = view.counts.ended + view.counts.running
    return JSONResponse(
        {"figure": timeline_figure(spans, utcnow()), "shown": len(spans), "started": started}
    )


@router.get("/studies/{study_id}/curves.json")
def study_curves_json(
    study_id: StudyId,
    store: StoreDep,
    selected: str = "",
    family: str = "",
) -> JSONResponse:
    """Learning curves of the best trial, the selected ones (``selected=3,17``) and context."""
    view = store.get_study(study_id)
    spec = parse_spec(view.study.spec)
    # Ids are at most MAX_ID (10 digits): a longer number names no trial.
    digits = [s.strip() for s in selected.split(",") if s.strip().isdigit()]
    picked = [int(s) for s in digits if len(s) <= 10 and int(s) <= MAX_ID][:MAX_SELECTED]
    ids = _default_curves(store, view, picked)
    return JSONResponse(_curves_payload(store, spec, study_id, ids, family))


def _default_curves(
    store: Store, view: StudyView, picked: list[int] | None = None
) -> list[tuple[int, str]]:
    """The trials whose curves the plot draws: the best, the ``picked`` ones, and context."""
    study_id = view.study.id
    half = CONTEXT_CURVES // 2
    # Imported trials ran elsewhere and carry no steps: when the best ones are imported,
    # the context lines come from the best trials that ran here, then the latest ones.
    ranked = store.trials(study_id, order="rank", limit=4 * CONTEXT_CURVES, states=("completed",))
    recent = store.trials(
        study_id, offset=max(0, view.counts.completed - half), limit=half, states=("completed",)
    )
    ran_here = [t for t in [*ranked, *reversed(recent)] if t.source != "import"]
    top = ran_here + [t for t in ranked if t.source == "import"]
    n_stopped = view.counts.pruned + view.counts.failed
    stopped = store.trials(
        study_id, offset=max(0, n_stopped - half), limit=half, states=("pruned", "failed")
    )
    return curve_ids(
        view.best.id if view.best else None,
        picked or [],
        list(dict.fromkeys(t.id for t in top)),
        [t.id for t in reversed(stopped)],
    )


def _curves_payload(
    store: Store, spec: StudySpec, study_id: int, ids: list[tuple[int, str]], family: str
) -> dict[str, Any]:
    labels = dict(ids)
    found = [c for c in store.curves([i for i, _ in ids]) if c.study_id == study_id]
    chosen = [CurveTrial(c.id, c.number, c.state, labels[c.id]) for c in found]
    curves = {c.id: c.points for c in found}
    available = families(curves.values())
    use = family if family in available else default_family(spec.objective.metric, available)
    return {
        "families": available,
        "family": use,
        "figure": curves_figure(chosen, curves, use),
        "trials": [t.__dict__ for t in chosen if t.label],
    }


# -- one trial -------------------------------------------------------------------------------


_PAGE_LOG_CHARS = 64 * 1024
"""The end of a trial's output shown on its page (the rest: ``hpsearch logs``, the API)."""


@router.get("/studies/{study_id}/trials/{number}", response_class=HTMLResponse)
def study_trial_page(
    request: Request,
    study_id: StudyId,
    number: TrialNumber,
    store: StoreDep,
    artifacts: ArtifactsDep,
    attempt: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> HTMLResponse:
    """The trial page at the address users see (study 3 trial 18); /trials/{id} shows it too."""
    trial_id = store.trial_of_study(study_id, number).trial.id
    return trial_page(request, trial_id, store, artifacts, attempt)


@router.get("/trials/{trial_id}", response_class=HTMLResponse)
def trial_page(
    request: Request,
    trial_id: TrialId,
    store: StoreDep,
    artifacts: ArtifactsDep,
    attempt: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> HTMLResponse:
    view = store.trial(trial_id)
    study = store.get_study(view.trial.study_id)
    spec = parse_spec(study.study.spec)
    objective = spec.build_objective()
    t = view.trial
    evaluation = objective.evaluate(t.metrics) if t.state in ("completed", "pruned") else None
    fork_url = f"/api/v1/trials/{t.id}/fork"
    return templates.TemplateResponse(
        request,
        "trial.html",
        {
            "view": view,
            "study": study,
            "objective": objective,
            "evaluation": evaluation,
            "is_best": study.best is not None and study.best.id == t.id,
            "diagnosis": bias_variance.panel(_all_metrics(t), spec.reference_error),
            "test_metrics": getattr(t, "test_metrics", None) or {},
            "metric_keys": _intermediate_keys(view.intermediates),
            "fork_url": fork_url,
            "checkpoint_step": store.checkpoint_step(t.id) if fork_url else None,
            "fork_fields": enqueue_fields(spec.build_space(), t.params),
            "log": artifacts.read_log(t.id, attempt),
            "log_chars": _PAGE_LOG_CHARS,
        },
    )


def _intermediate_keys(points: list[Any]) -> list[str]:
    return list(dict.fromkeys(k for p in points for k in p.metrics))


@router.get("/trials/{trial_id}/curves.json")
def trial_curves_json(trial_id: TrialId, store: StoreDep, family: str = "") -> JSONResponse:
    view = store.trial(trial_id)
    t = view.trial
    spec = store.spec(t.study_id)
    payload = _curves_payload(store, spec, t.study_id, [(t.id, "this trial")], family)
    payload.update(state=t.state, last_step=t.last_step, stop_requested=t.stop_requested)
    return JSONResponse(payload)


# -- workers ---------------------------------------------------------------------------------


@router.get("/workers", response_class=HTMLResponse)
def workers_page(request: Request, store: StoreDep, settings: SettingsDep) -> HTMLResponse:
    return templates.TemplateResponse(request, "workers.html", _workers_context(store, settings))


@router.get("/workers.live")
def workers_live(store: StoreDep, settings: SettingsDep) -> JSONResponse:
    html = templates.get_template("_workers_rows.html").render(_workers_context(store, settings))
    return JSONResponse({"html": html, "active": True})


def _workers_context(store: Store, settings: Settings) -> dict[str, Any]:
    now = utcnow()
    rows = []
    for w in store.worker_activity():
        contact = last_contact(
            w.last_seen_at, [t.lease_expires_at for t in w.running], settings.lease_seconds
        )
        rows.append(
            {
                "worker": w,
                "contact": contact,
                "status": worker_status(contact, w.exited_at, now, settings.lease_seconds),
            }
        )
    return {"rows": rows, "now": now, "age": age, "lease_seconds": settings.lease_seconds}
