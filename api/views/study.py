"""Everything the study page plots, composed from the study's trial rows."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from api.views.figures import (
    edf_figure,
    history_figure,
    importance_figure,
    parallel_figure,
    param_figures,
)
from api.views.parallel_lines import parallel_lines
from api.views.sampling import PLOT_LIMIT, has_value, plot_sample
from hpsearch.importance import TRUSTED_TRIALS, Importance, importance
from hpsearch.spec import StudySpec
from hpsearch.store.results import TrialPoint

CONTEXT_CURVES = 24
PARALLEL_LIMIT = 400


def study_plots(
    spec: StudySpec, points: Sequence[TrialPoint], best_id: int | None, limit: int = PLOT_LIMIT
) -> dict[str, Any]:
    """The figures of the study page, drawn from at most about ``limit`` trials."""
    objective = spec.build_objective()
    space = spec.build_space()
    shown = plot_sample(points, objective.direction, limit)
    # Past a few hundred lines parallel coordinates turn into a solid band (and cost seconds
    # of WebGL): they draw the best trials and a spread of the rest.
    lines = plot_sample(shown, objective.direction, PARALLEL_LIMIT)
    parallel = parallel_figure(space.params(), lines, objective)
    valued = sum(1 for p in points if has_value(p))
    failed = sum(1 for p in points if p.state == "failed")
    completed = [p for p in points if p.state == "completed" and p.value is not None]
    result = importance(space, [p.params for p in completed], [_f(p.value) for p in completed])
    return {
        "ended": len(points),
        "valued": valued,
        "shown": len(shown),
        "failed": failed,
        "completed": len(completed),
        "history": history_figure(shown, objective, best_id, line_from=points),
        "params": param_figures(space.params(), shown, objective, best_id),
        "parallel": parallel,
        "parallel_lines": parallel_lines(parallel, objective.direction == "maximize"),
        "edf": edf_figure(points, objective),
        "importance": importance_figure(result, objective.metric)
        if result is not None and _trusted(result)
        else None,
        "importance_note": _importance_note(result, len(completed)),
    }


def _trusted(result: Importance | None) -> bool:
    return result is not None and result.n_trials >= TRUSTED_TRIALS


def _importance_note(result: Importance | None, completed: int) -> str:
    """What the importance chart rests on: the true count of completed trials, the sample
    when one was taken, or why there is no chart yet."""
    if result is None or not _trusted(result):
        usable = result.n_trials if result is not None else 0
        return f"too few completed trials to tell: {usable:,} of the {TRUSTED_TRIALS} needed"
    base = f"from {result.n_given:,} completed trials"
    if result.n_trials < result.n_given:
        base += f" (estimated on a sample of {result.n_trials:,})"
    if not any(result.scores.values()):
        return f"{base}: none stands out from noise yet"
    return f"{base}; ± one bootstrap standard error"


def _f(value: float | None) -> float:
    return math.nan if value is None else value


def curve_ids(
    best_id: int | None,
    selected: Sequence[int],
    top: Sequence[int],
    stopped: Sequence[int],
    context: int = CONTEXT_CURVES,
) -> list[tuple[int, str]]:
    """Which trials the learning-curve plot draws, with their labels: the best trial and the
    user's selection highlighted, over context lines of the next best completed trials
    (``top``, best first) and the most recently pruned or failed ones (``stopped``), which
    show where pruning cut."""
    out: list[tuple[int, str]] = []
    if best_id is not None:
        out.append((best_id, "best"))
    out += [(i, "selected") for i in selected if i != best_id]
    taken = {i for i, _ in out}
    stops = [i for i in stopped if i not in taken][: context // 2]
    tops = [i for i in top if i not in taken and i not in stops][: context - len(stops)]
    return out + [(i, "") for i in tops + stops]
