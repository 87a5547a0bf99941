"""The pure shaping functions behind the web view: downsampling, figures, curves, the
bias/variance panel and the page pieces."""

from __future__ import annotations

import itertools
import math
import random
from datetime import datetime, timedelta
from typing import Any

import pytest

from api.views import bias_variance
from api.views.curves import CurveTrial, curves_figure, default_family, families
from api.views.figures import (
    history_figure,
    nice_ticks,
    parallel_figure,
    param_figure,
)
from api.views.pages import (
    age,
    enqueue_fields,
    last_contact,
    metric_columns,
    paginate,
    worker_status,
)
from api.views.parallel_lines import parallel_lines
from api.views.sampling import best_so_far, plot_sample, top_trials
from api.views.study import curve_ids, study_plots
from api.views.study_posters import parse_sizes
from hpsearch.errors import InvalidInput
from hpsearch.objective import Constraint, Objective, rank
from hpsearch.spec import parse_spec
from hpsearch.store.results import CurvePoint, TrialPoint
from tests.conftest import digits_spec

OBJECTIVE = Objective("dev_accuracy", "maximize", (Constraint("latency_ms", "<=", 100.0),))
SPEC = parse_spec(digits_spec())
SPACE = SPEC.build_space()


def point(
    number: int,
    value: float | None,
    latency: float = 50.0,
    state: str = "completed",
    params: dict[str, Any] | None = None,
    last_step: int | None = None,
) -> TrialPoint:
    metrics = {"dev_accuracy": value, "latency_ms": latency}
    e = OBJECTIVE.evaluate(metrics)
    return TrialPoint(
        id=1000 + number,
        number=number,
        state=state,
        value=value,
        feasible=e.feasible if state in ("completed", "pruned") else None,
        violation=e.violation,
        params=params
        or {"lr": 0.01, "beta": 0.99, "hidden_units": 64, "layers": 2, "batch_size": 64},
        metrics=metrics,
        last_step=last_step,
    )


def random_points(n: int, seed: int = 0) -> list[TrialPoint]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        u = [rng.random() for _ in SPACE]
        params = SPACE.from_unit(dict(zip(SPACE, u, strict=True)))
        state = rng.choices(["completed", "pruned", "failed"], [0.85, 0.1, 0.05])[0]
        value = None if state == "failed" else rng.random()
        out.append(point(i, value, rng.uniform(0, 150), state, params, last_step=3))
    return out


# -- downsampling ------------------------------------------------------------------------------


def test_best_so_far_ignores_infeasible_pruned_and_failed_trials() -> None:
    points = [
        point(0, 0.5),
        point(1, 0.9, latency=400),  # infeasible: better, but never best
        point(2, 0.7),
        point(3, 0.95, state="pruned"),
        point(4, None, state="failed"),
        point(5, 0.6),
        point(6, 0.8),
        point(7, 0.1),
    ]
    assert best_so_far(points, "maximize") == [(0, 0.5), (2, 0.7), (6, 0.8), (7, 0.8)]
    assert best_so_far(points, "minimize") == [(0, 0.5), (7, 0.1)]
    assert best_so_far([], "maximize") == []


def test_small_studies_are_drawn_whole() -> None:
    points = random_points(300)
    shown = plot_sample(points, "maximize", limit=500)
    assert [p.number for p in shown] == [p.number for p in points if p.value is not None]


def test_a_large_study_is_downsampled_keeping_what_a_reader_looks_for() -> None:
    points = random_points(30_000, seed=1)
    shown = plot_sample(points, "maximize", limit=2000, top=100)
    valued = [p for p in points if p.value is not None]
    assert 1000 <= len(shown) <= 2000 + 100 + 20
    numbers = [p.number for p in shown]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    kept = set(numbers)
    feasible = [p for p in valued if p.state == "completed" and p.feasible]
    best = max(feasible, key=lambda p: (p.value, -p.number))
    assert best.number in kept
    assert {n for n, _ in best_so_far(points, "maximize")} <= kept
    top100 = sorted(feasible, key=lambda p: (-p.value, p.number))[:100]
    assert {p.number for p in top100} <= kept
    # The envelope of the cloud survives.
    assert min(p.value for p in valued) == min(p.value for p in shown)
    assert max(p.value for p in valued) == max(p.value for p in shown)
    # Every stretch of trial numbers keeps some points: no hole in the history.
    stretch = len(points) // 20
    for k in range(20):
        assert any(k * stretch <= n < (k + 1) * stretch for n in numbers)
    assert plot_sample(points, "maximize", limit=2000, top=100) == shown  # deterministic


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_top_trials_follow_the_one_ranking_rule(direction: Any) -> None:
    points = random_points(500, seed=5)
    completed = [p for p in points if p.state == "completed"]

    class Ranked:
        def __init__(self, p: TrialPoint) -> None:
            self.p, self.number, self.value = p, p.number, p.value
            self.feasible, self.violation = bool(p.feasible), p.violation or 0.0

    expected = [r.p.number for r in rank([Ranked(p) for p in completed], direction)]
    for k in (1, 10, 300, 500):
        assert [p.number for p in top_trials(points, direction, k)] == expected[:k]


# -- figures -----------------------------------------------------------------------------------


def _names(figure: dict[str, Any]) -> list[str]:
    return [t["name"] for t in figure["data"]]


def test_history_draws_infeasible_trials_apart_labelled_with_the_broken_constraint() -> None:
    points = [
        point(0, 0.8),
        point(1, 0.97, latency=400),
        point(2, 0.9),
        point(3, 0.5, state="pruned", last_step=2),
    ]
    fig = history_figure(points, OBJECTIVE, best_id=1002)
    names = _names(fig)
    # The line is drawn over the cloud, under the best trial's star.
    assert names[-2:] == ["best feasible so far", "best feasible"]
    assert "broke latency_ms ≤ 100 (1)" in names
    assert "feasible (2)" in names and "pruned (1)" in names
    star = next(t for t in fig["data"] if t["name"] == "best feasible")
    assert star["x"] == [2] and star["y"] == [0.9] and star["marker"]["symbol"] == "star"
    infeasible = next(t for t in fig["data"] if t["name"].startswith("broke"))
    assert infeasible["marker"]["symbol"] != "circle"  # shape as well as colour
    assert infeasible["text"] == ["trial 1 · broke latency_ms ≤ 100"]
    pruned = next(t for t in fig["data"] if t["name"].startswith("pruned"))
    assert pruned["text"] == ["trial 3 · pruned at step 2"]


def test_history_line_comes_from_all_trials_when_points_are_a_subset() -> None:
    everything = [point(0, 0.5), point(1, 0.9), point(2, 0.7)]
    fig = history_figure([everything[0]], OBJECTIVE, None, line_from=everything)
    line = next(t for t in fig["data"] if t["name"] == "best feasible so far")
    assert line["x"] == [0, 1, 2] and line["y"] == [0.5, 0.9, 0.9]


def test_each_parameter_is_plotted_on_its_own_scale() -> None:
    points = random_points(50)
    lr = param_figure(SPACE["lr"], points, OBJECTIVE, None)
    assert lr["layout"]["xaxis"]["type"] == "log"
    assert (
        lr["layout"]["xaxis"]["range"][0]
        < math.log10(1e-4)
        < math.log10(1.0)
        < (lr["layout"]["xaxis"]["range"][1])
    )
    beta = param_figure(SPACE["beta"], points, OBJECTIVE, None)
    assert beta["layout"]["xaxis"]["type"] == "log"
    assert beta["layout"]["xaxis"]["title"]["text"] == "beta (log scale of 1 − beta)"
    # Labelled in β itself, at 1 − β on the axis.
    assert beta["layout"]["xaxis"]["ticktext"] == ["0.9", "0.99", "0.999"]
    assert beta["layout"]["xaxis"]["tickvals"] == pytest.approx([0.1, 0.01, 0.001])
    xs = [x for t in beta["data"] for x in t["x"]]
    assert all(0.001 - 1e-12 <= x <= 0.1 + 1e-12 for x in xs)  # 1 - β for β in [0.9, 0.999]
    # Few discrete values: evenly spaced levels, each trial spread sideways by its number.
    layers = param_figure(SPACE["layers"], points, OBJECTIVE, None)
    assert layers["layout"]["xaxis"]["ticktext"] == ["1", "2", "3"]
    batch = param_figure(SPACE["batch_size"], points, OBJECTIVE, None)
    axis = batch["layout"]["xaxis"]
    assert (axis["tickvals"], axis["ticktext"]) == ([0, 1, 2], ["32", "64", "128"])
    assert batch["layout"]["meta"] == {
        "param": "batch_size",
        "scale": "linear",
        "kind": "categorical",
        "choices": ["32", "64", "128"],
    }
    by_number = {p.number: p for p in points}
    for trace in batch["data"]:
        for x, text in zip(trace["x"], trace["text"], strict=True):
            trial = by_number[int(text.split()[1])]
            level = [32, 64, 128].index(trial.params["batch_size"])
            assert abs(x - level) <= 0.3 + 1e-9
            assert text.endswith(f"batch_size = {trial.params['batch_size']}")
    assert param_figure(SPACE["layers"], points, OBJECTIVE, None) == layers  # repeatable


def test_nice_ticks_on_log_and_reverse_log_scales() -> None:
    assert nice_ticks(SPACE["beta"]) == pytest.approx([0.9, 0.99, 0.999])
    assert nice_ticks(SPACE["lr"]) == pytest.approx([1e-4, 1e-3, 1e-2, 0.1, 1.0])
    assert nice_ticks(SPACE["hidden_units"]) == pytest.approx([16, 100, 256])


def test_parallel_coordinates_cover_params_constraints_feasibility_and_objective() -> None:
    assert parallel_figure(SPACE.params(), [point(0, 0.5)], OBJECTIVE) is None
    fig = parallel_figure(SPACE.params(), random_points(40), OBJECTIVE)
    assert fig is not None
    dims = fig["data"][0]["dimensions"]
    labels = [d["label"] for d in dims]
    assert labels == [
        "lr (log)",
        "beta (1−β log)",
        "hidden_units (log)",
        "layers",
        "batch_size",
        "latency_ms (≤ 100)",  # the threshold where feasible ends
        "feasible",
        "dev_accuracy",
    ]
    for d in dims[:3]:
        assert all(0.0 <= v <= 1.0 for v in d["values"])
    assert dims[4]["ticktext"] == ["32", "64", "128"]
    # Integers have whole-number ticks (no 1.5 or 2.5); β is labelled in β.
    assert (dims[3]["tickvals"], dims[3]["ticktext"]) == ([1, 2, 3], ["1", "2", "3"])
    assert dims[2]["ticktext"] == ["16", "32", "64", "128", "256"]
    assert dims[1]["ticktext"] == ["0.9", "0.99", "0.999"]


def test_parallel_lines_draw_every_trial_on_the_parcoords_axes_best_on_top() -> None:
    fig = parallel_figure(SPACE.params(), random_points(40), OBJECTIVE)
    assert fig is not None
    dims = fig["data"][0]["dimensions"]
    lines = parallel_lines(fig, maximize=True)
    assert lines is not None and lines["layout"]["meta"]["lines"] == len(dims[0]["values"])
    bands = [t for t in lines["data"] if t.get("mode") == "lines"]
    # One polyline per trial: an axis's value each, then a break.
    assert sum(t["x"].count(None) for t in bands) == len(dims[0]["values"])
    ys = [y for t in bands for y in t["y"] if y is not None]
    assert min(ys) >= 0 and max(ys) <= 1
    # Each band holds trials whose objective (the last axis) is at least the previous band's:
    # the best are drawn last, on top.
    objective_y = [
        [t["y"][k] for k in range(len(dims) - 1, len(t["y"]), len(dims) + 1)] for t in bands
    ]
    assert all(max(a) <= min(b) for a, b in itertools.pairwise(objective_y))
    # The axes read as parcoords' do: labels on top, β in β, layers in whole numbers.
    assert lines["layout"]["xaxis"]["ticktext"] == [d["label"] for d in dims]
    texts = next(t for t in lines["data"] if t.get("mode") == "text")["text"]
    assert {"0.9 –", "0.99 –", "0.999 –", "1 –", "2 –", "3 –", "yes –", "no –"} <= set(texts)
    # Minimizing turns the bands around: the best (lowest) value is on top.
    low_first = parallel_lines(fig, maximize=False)
    assert low_first is not None
    bands = [t for t in low_first["data"] if t.get("mode") == "lines"]
    last = bands[-1]["y"][len(dims) - 1 :: len(dims) + 1]
    assert max(last) <= min(bands[0]["y"][len(dims) - 1 :: len(dims) + 1])
    assert parallel_lines(None, maximize=True) is None


# -- learning curves ---------------------------------------------------------------------------


def _steps(n: int, top: float) -> list[CurvePoint]:
    return [
        CurvePoint(
            s,
            {
                "dev_accuracy": top * s / n,
                "train_accuracy": top * s / n + 0.05,
                "dev_loss": 1 - top * s / n,
                "train_loss": 0.9 - top * s / n,
            },
        )
        for s in range(1, n + 1)
    ]


def test_learning_curves_mark_where_pruned_and_failed_trials_stopped() -> None:
    trials = [
        CurveTrial(1, 0, "completed", "best"),
        CurveTrial(2, 1, "pruned", "selected"),
        CurveTrial(3, 2, "failed", ""),
        CurveTrial(4, 3, "completed", ""),
    ]
    curves = {1: _steps(6, 0.9), 2: _steps(2, 0.5), 3: _steps(3, 0.1), 4: _steps(6, 0.8)}
    assert families(curves.values()) == ["accuracy", "loss"]
    assert default_family("dev_accuracy", ["accuracy", "loss"]) == "accuracy"
    assert default_family("latency_ms", ["loss"]) == "loss"
    assert default_family("dev_accuracy", []) is None
    fig = curves_figure(trials, curves, "accuracy")
    names = _names(fig)
    assert "trial 0 (best) · dev" in names and "trial 0 (best) · train" in names
    assert "trial 1 · dev" in names
    stops = [t for t in fig["data"] if t["name"] in ("pruned here", "failed here")]
    assert [(t["x"], t["text"]) for t in stops] == [
        ([3], ["failed at step 3"]),
        ([2], ["pruned at step 2"]),
    ]
    context = [t for t in fig["data"] if t["name"] == "other trials (dev)"]
    assert len(context) == 2 and [t["showlegend"] for t in context] == [True, False]
    assert fig["layout"]["xaxis"]["dtick"] == 1


def test_curve_ids_put_best_and_selection_first_then_context() -> None:
    ids = curve_ids(5, [7, 5, 9], top=[5, 1, 2, 3, 7], stopped=[9, 8, 6], context=4)
    assert ids == [
        (5, "best"),
        (7, "selected"),
        (9, "selected"),
        (1, ""),
        (2, ""),
        (8, ""),
        (6, ""),
    ]
    assert curve_ids(None, [], [], []) == []


# -- bias / variance ---------------------------------------------------------------------------


def test_bias_variance_panel_from_errors_or_accuracies() -> None:
    panel = bias_variance.panel({"train_accuracy": 0.92, "dev_accuracy": 0.90}, 0.01)
    assert panel is not None and panel.reference_given
    assert [r.label for r in panel.rungs] == ["Human-level", "Train", "Dev"]
    gaps = {g.key: g for g in panel.gaps}
    assert gaps["avoidable_bias"].value == pytest.approx(0.07)
    assert gaps["variance"].value == pytest.approx(0.02)
    assert panel.largest == "avoidable_bias" and gaps["avoidable_bias"].largest
    assert gaps["avoidable_bias"].width == 100.0
    assert gaps["variance"].width == pytest.approx(100 * 0.02 / 0.07)
    assert "bigger network" in panel.advice


def test_bias_variance_panel_with_train_dev_and_test_sets() -> None:
    metrics = {"train_error": 0.02, "train_dev_error": 0.03, "dev_error": 0.10, "test_error": 0.11}
    panel = bias_variance.panel(metrics, None)
    assert panel is not None and not panel.reference_given
    assert [r.label for r in panel.rungs][1:] == ["Train", "Train-dev", "Dev", "Test"]
    assert panel.largest == "data_mismatch"
    assert {g.key: g.between for g in panel.gaps}["variance"] == "train-dev − train"
    assert "more like dev" in panel.advice
    assert bias_variance.panel({"dev_error": 0.1}, 0.0) is None


# -- page pieces -------------------------------------------------------------------------------


def test_pagination_clamps_the_page() -> None:
    p = paginate(9, 50, 120)
    assert (p.page, p.pages, p.offset, p.first_row, p.last_row) == (3, 3, 100, 101, 120)
    assert paginate(0, 50, 0).page == 1 and paginate(1, 5, 100).per_page == 10


def test_age_reads_like_a_person() -> None:
    now = datetime(2025, 1, 2, 12, 0, 0)
    assert age(now - timedelta(seconds=10), now) == "just now"
    assert age(now - timedelta(minutes=5), now) == "5 min ago"
    assert age(now - timedelta(hours=3), now) == "3 h ago"
    assert age(now - timedelta(days=3), now) == "3 days ago"
    assert age(None, now) == "—"


def test_metric_columns_lead_with_objective_and_constraints() -> None:
    metrics = [{"n_params": 1.0, "latency_ms": 3.0, "dev_accuracy": 0.9, "other": 1.0}]
    assert metric_columns(OBJECTIVE, metrics) == ["dev_accuracy", "latency_ms", "n_params"]


def test_enqueue_fields_prefill_typed_inputs() -> None:
    fields = {f.name: f for f in enqueue_fields(SPACE, {"lr": 0.003, "batch_size": 128})}
    assert fields["lr"].kind == "float" and fields["lr"].value == "0.003"
    assert "log scale" in fields["lr"].hint
    assert fields["layers"].kind == "int" and fields["layers"].step == "1"
    assert fields["batch_size"].value == "128"
    assert [v for v, _ in fields["batch_size"].options] == ["32", "64", "128"]
    assert fields["beta"].low == 0.9 and "reverse-log" in fields["beta"].hint


def test_a_worker_is_alive_within_two_lease_periods_and_exited_once_it_said_so() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0)
    seen = now - timedelta(seconds=500)
    lease_end = now + timedelta(seconds=50)  # renewed 10 s ago with a 60 s lease
    contact = last_contact(seen, [None, lease_end], 60)
    assert contact == now - timedelta(seconds=10)
    assert worker_status(contact, None, now, 60) == "alive"
    assert worker_status(now - timedelta(seconds=120), None, now, 60) == "alive"
    assert worker_status(now - timedelta(seconds=121), None, now, 60) == "lost"
    # Said it left: exited at once, and still exited long after (never "lost").
    left = now - timedelta(seconds=1)
    assert worker_status(left - timedelta(seconds=1), left, now, 60) == "exited"
    assert worker_status(left, left, now + timedelta(hours=1), 60) == "exited"
    # Heard from again after it left (a claim under the same id): its contact decides.
    assert worker_status(now, left, now, 60) == "alive"


def test_study_plots_compose_every_figure() -> None:
    points = random_points(60, seed=3)
    best = max(
        (p for p in points if p.state == "completed" and p.feasible), key=lambda p: p.value or 0
    )
    plots = study_plots(SPEC, points, best.id, limit=40)
    assert plots["ended"] == 60 and plots["shown"] <= plots["valued"]
    assert plots["failed"] == sum(p.state == "failed" for p in points)
    assert len(plots["params"]) == len(SPACE)
    assert plots["parallel"] is not None and plots["importance"] is not None
    assert plots["importance_note"].startswith("from ")
    few = study_plots(SPEC, points[:3], None)
    assert few["importance"] is None and "too few completed trials" in few["importance_note"]


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("histogram:800x400", "no plot 'histogram'; plots: history, param"),
        ("history:800", "'history:800' is not name:WIDTHxHEIGHT"),
        ("history:800x-4", "is not name:WIDTHxHEIGHT"),
        ("history:90000x400", "a plot is 80 to 4000 pixels each way"),
    ],
)
def test_poster_sizes_name_what_is_wrong(raw: str, says: str) -> None:
    with pytest.raises(InvalidInput) as error:
        parse_sizes(raw)
    assert error.value.field == "sizes" and says in error.value.message


def test_poster_sizes_are_read_per_plot() -> None:
    assert parse_sizes(" history:800x400, param:412x250 ,") == {
        "history": (800, 400),
        "param": (412, 250),
    }
    assert parse_sizes("") == {}
