"""Learning curves: the per-step train and dev metrics of chosen trials, with pruned (and
failed) trials marked at the step where they stopped."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from api.views import style
from hpsearch.store.results import CurvePoint

Figure = style.Figure

# Which split each line shows, and how it is drawn: dev solid (what selection uses), train
# dashed, train-dev dotted.
SPLITS = (("dev", "solid"), ("train", "dash"), ("train_dev", "dot"))


@dataclass(frozen=True)
class CurveTrial:
    id: int
    number: int
    state: str
    label: str = ""  # "best", "selected", or "" for context lines


def families(curves: Iterable[Sequence[CurvePoint]]) -> list[str]:
    """Metric families reported per step for the dev split (``dev_accuracy`` → accuracy)."""
    names: set[str] = set()
    for points in curves:
        for p in points:
            names.update(k.removeprefix("dev_") for k in p.metrics if k.startswith("dev_"))
    return sorted(names)


def default_family(objective_metric: str, available: Sequence[str]) -> str | None:
    """The family of the optimizing metric when it is reported per step, else loss, else any."""
    wanted = objective_metric.removeprefix("dev_")
    for name in (wanted, "accuracy", "loss"):
        if name in available:
            return name
    return available[0] if available else None


def curves_figure(
    trials: Sequence[CurveTrial],
    curves: Mapping[int, Sequence[CurvePoint]],
    family: str | None,
) -> Figure:
    """One colour per highlighted trial (dev solid, train dashed), thin grey dev lines for
    context trials, and a marker where a pruned or failed trial stopped."""
    data: list[dict[str, Any]] = []
    if family is None:
        return {"data": data, "layout": _layout("metric", 1)}
    context = [t for t in trials if not t.label]
    highlighted = [t for t in trials if t.label]
    first_context = True
    for t in context:
        xs, ys = _series(curves.get(t.id, ()), f"dev_{family}")
        if not xs:
            continue
        data.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": "other trials (dev)",
                "legendgroup": "context",
                "showlegend": first_context,
                "x": xs,
                "y": ys,
                "line": {"color": style.MUTED, "width": 1},
                "opacity": 0.8,
                "customdata": [t.id] * len(xs),
                "hovertemplate": f"trial {t.number} ({t.state}) · step %{{x}}:"
                f" %{{y:{style.NUMBER}}}<extra></extra>",
            }
        )
        first_context = False
        data.extend(_stop_marker(t, xs, ys, style.MUTED, show=False))
    for i, t in enumerate(highlighted):
        color = style.SERIES[i % len(style.SERIES)]
        name = f"trial {t.number}" + (f" ({t.label})" if t.label != "selected" else "")
        for split, dash in SPLITS:
            xs, ys = _series(curves.get(t.id, ()), f"{split}_{family}")
            if not xs:
                continue
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines+markers",
                    "name": f"{name} · {split.replace('_', '-')}",
                    "legendgroup": str(t.id),
                    "x": xs,
                    "y": ys,
                    "line": {"color": color, "width": 2.2 if split == "dev" else 1.6, "dash": dash},
                    "marker": {"size": 5, "color": color},
                    "customdata": [t.id] * len(xs),
                    "hovertemplate": f"trial {t.number} {split.replace('_', '-')} {family}"
                    f" · step %{{x}}: %{{y:{style.NUMBER}}}<extra></extra>",
                }
            )
            if split == "dev":
                data.extend(_stop_marker(t, xs, ys, color, show=True))
    last = max((p.step for points in curves.values() for p in points), default=1)
    return {"data": data, "layout": _layout(family, last)}


def _series(points: Sequence[CurvePoint], key: str) -> tuple[list[int], list[float]]:
    xs: list[int] = []
    ys: list[float] = []
    for p in points:
        v = p.metrics.get(key)
        if v is not None:
            xs.append(p.step)
            ys.append(v)
    return xs, ys


def _stop_marker(
    t: CurveTrial, xs: Sequence[int], ys: Sequence[float], color: str, show: bool
) -> list[dict[str, Any]]:
    if t.state not in ("pruned", "failed") or not xs:
        return []
    word = "pruned" if t.state == "pruned" else "failed"
    return [
        {
            "type": "scatter",
            "mode": "markers+text" if show else "markers",
            "name": f"{word} here",
            "legendgroup": "stops",
            "showlegend": False,
            "x": [xs[-1]],
            "y": [ys[-1]],
            "text": [f"{word} at step {xs[-1]}"],
            "textposition": "top center",
            "textfont": {"size": 11, "color": style.INFEASIBLE if word == "failed" else "#8a5a00"},
            "marker": {
                "symbol": "x" if word == "pruned" else "circle-x-open",
                "size": 11 if show else 8,
                "color": style.PRUNED if word == "pruned" else style.INFEASIBLE,
                "line": {"width": 1, "color": color},
            },
            "customdata": [t.id],
            "hovertemplate": f"trial {t.number} {word} at step %{{x}}<extra></extra>",
        }
    ]


def _layout(family: str, last_step: int) -> dict[str, Any]:
    # Steps are whole epochs: ticks on integers, about ten of them.
    dtick = max(1, math.ceil(last_step / 10))
    return style.layout(
        xaxis=style.axis("step (epoch)", rangemode="tozero", dtick=dtick),
        yaxis=style.axis(family.replace("_", " ")),
        margin={"l": 60, "r": 16, "t": 36, "b": 44},
    )
