"""Small pure pieces of the HTML pages: pagination, ages, table columns, the enqueue form,
whether a worker is alive."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from hpsearch.objective import Objective
from hpsearch.space import CategoricalParam, FloatParam, IntParam, Param, ParamValue, Space

PER_PAGE = 50


@dataclass(frozen=True)
class Pagination:
    page: int  # 1-based
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    @property
    def first_row(self) -> int:
        return min(self.offset + 1, self.total)

    @property
    def last_row(self) -> int:
        return min(self.offset + self.per_page, self.total)


def paginate(page: int, per_page: int, total: int) -> Pagination:
    """Clamps a requested page into range (page 9 of 3 shows page 3)."""
    per_page = min(max(per_page, 10), 500)
    pages = max(1, math.ceil(total / per_page))
    return Pagination(min(max(page, 1), pages), per_page, total)


def age(then: datetime | None, now: datetime) -> str:
    """``then`` as a person says it: "just now", "5 min ago", "3 h ago", "2 days ago"."""
    if then is None:
        return "—"
    seconds = max(0.0, (now - then).total_seconds())
    if seconds < 45:
        return "just now"
    if seconds < 3600:
        return f"{round(seconds / 60)} min ago"
    if seconds < 86400 * 1.5:
        return f"{round(seconds / 3600)} h ago"
    return f"{round(seconds / 86400)} days ago"


def metric_columns(objective: Objective, metrics: Iterable[Mapping[str, Any]]) -> list[str]:
    """The metrics a table shows: the optimizing one, the satisficing ones, then the usual
    diagnosis metrics, each only if some trial reports it."""
    preferred = [
        objective.metric,
        *(c.metric for c in objective.constraints),
        "train_error",
        "dev_error",
        "train_dev_error",
        "test_error",
        "n_params",
    ]
    seen = {name for m in metrics for name in m}
    return [m for m in dict.fromkeys(preferred) if m in seen]


@dataclass(frozen=True)
class FormField:
    """One input of the enqueue form."""

    name: str
    kind: str  # "float" | "int" | "categorical"
    hint: str
    value: str
    low: float | None = None
    high: float | None = None
    step: str = "any"
    options: tuple[tuple[str, str], ...] = ()  # (JSON value, label)


def enqueue_fields(space: Space, defaults: Mapping[str, ParamValue] | None) -> list[FormField]:
    """Inputs for every parameter, pre-filled with ``defaults`` (the best trial's values)."""
    defaults = defaults or {}
    return [_field(p, defaults.get(p.name)) for p in space.params()]


def _field(p: Param, default: ParamValue | None) -> FormField:
    if isinstance(p, CategoricalParam):
        chosen = default if default is not None and p.contains(default) else p.choices[0]
        options = tuple((json.dumps(c), str(c)) for c in p.choices)
        return FormField(
            p.name, "categorical", "one of the choices", json.dumps(chosen), options=options
        )
    scale = "" if p.scale == "linear" else f", {p.scale.replace('_', '-')} scale"
    hint = f"{p.low:g} … {p.high:g}{scale}"
    if default is None or not p.contains(default):
        default = p.from_unit(0.5)
    if isinstance(p, IntParam):
        return FormField(
            p.name,
            "int",
            hint + (f", step {p.step}" if p.step != 1 else ""),
            str(default),
            float(p.low),
            float(p.high),
            str(p.step),
        )
    assert isinstance(p, FloatParam)
    step = f"{p.step:g}" if p.step is not None else "any"
    return FormField(p.name, "float", hint, f"{float(default):.6g}", p.low, p.high, step)


def worker_status(
    last_contact: datetime, exited_at: datetime | None, now: datetime, lease_seconds: float
) -> str:
    """``exited`` once a worker said it left (and was not heard from after); else ``alive``
    while it was heard from within two lease periods (one lease may pass between heartbeats
    by design, the second is the grace), then ``lost``."""
    if exited_at is not None and exited_at >= last_contact:
        return "exited"
    return "alive" if now - last_contact <= timedelta(seconds=2 * lease_seconds) else "lost"


def last_contact(
    last_seen_at: datetime, leases: Sequence[datetime | None], lease_seconds: float
) -> datetime:
    """When a worker was last heard from: its last claim, or the last heartbeat or report on
    a trial it holds (each one renews that trial's lease to now + lease)."""
    renewed = [t - timedelta(seconds=lease_seconds) for t in leases if t is not None]
    return max([last_seen_at, *renewed])
