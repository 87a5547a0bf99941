"""A study's trials as a pandas DataFrame, with the columns Optuna's ``trials_dataframe``
uses where they mean the same (``number``, ``state``, ``value``, ``params_*``,
``datetime_start``, ``datetime_complete``, ``duration``) and ours beside them: each metric
under its own name, ``feasible``, ``broken`` (the satisficing constraints a trial misses) and
``error`` (the line of a failed trial's error that says what went wrong).

pandas is imported here only, and only when a frame is asked for: the core does not need it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hpsearch.spec import parse_spec
from hpsearch.states import TrialState

if TYPE_CHECKING:
    import pandas

FIXED_COLUMNS = ("number", "state", "value")
"""The first columns; then ``params_*``, the metrics, ``feasible``, ``broken``, the times."""


def trials_frame(spec: Mapping[str, Any], trials: Sequence[Mapping[str, Any]]) -> pandas.DataFrame:
    """One row per trial. Metrics and ``value`` are float64 (not measured: NaN), ``number``
    int64, ``feasible`` the nullable ``boolean`` (NA until a trial ends), ``state``, ``broken``
    (empty when none is, NA until a trial ends) and ``error`` pandas' ``string``, times
    datetime64 in UTC. Parameters keep their own types (float64, int64, a string)."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError(
            "trials_dataframe needs pandas: pip install pandas (or 'hpsearch[notebook]')"
        ) from None
    parsed = parse_spec(dict(spec))
    objective = parsed.build_objective()
    params = list(parsed.space)
    metrics = list(dict.fromkeys(name for t in trials for name in t["metrics"]))
    # A metric named like one of the other columns keeps its value under metrics_<name>.
    taken = {*FIXED_COLUMNS, *(f"params_{p}" for p in params), *_LATER_COLUMNS}
    column = {name: f"metrics_{name}" if name in taken else name for name in metrics}
    rows = []
    for t in trials:
        ended = t["state"] in (TrialState.COMPLETED, TrialState.PRUNED)
        broken = ", ".join(objective.evaluate(t["metrics"]).broken) if ended else None
        row: dict[str, Any] = {"number": t["number"], "state": t["state"], "value": t["value"]}
        row.update({f"params_{name}": t["params"].get(name) for name in params})
        row.update({column[name]: t["metrics"].get(name) for name in metrics})
        row.update(
            feasible=t["feasible"],
            broken=broken,
            datetime_start=t["started_at"],
            datetime_complete=t["finished_at"],
            error=error_line(t["error"]),
        )
        rows.append(row)
    frame = pd.DataFrame(rows, columns=_columns(params, list(column.values())))
    frame["number"] = frame["number"].astype("int64")
    for name in ["value", *column.values()]:
        frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
    frame["feasible"] = frame["feasible"].astype("boolean")
    for name in ("state", "broken", "error"):
        frame[name] = frame[name].astype("string")
    for name in ("datetime_start", "datetime_complete"):
        frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601")
    frame["duration"] = frame["datetime_complete"] - frame["datetime_start"]
    return frame


_LATER_COLUMNS = ("feasible", "broken", "datetime_start", "datetime_complete", "error")


def _columns(params: list[str], metrics: list[str]) -> list[str]:
    return [*FIXED_COLUMNS, *(f"params_{name}" for name in params), *metrics, *_LATER_COLUMNS]


def error_line(error: str | None) -> str | None:
    """The line of a trial's error that says what went wrong: a Python traceback's last line
    (the exception), else the first line."""
    lines = [line.strip() for line in (error or "").strip().splitlines() if line.strip()]
    if not lines:
        return None
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]
