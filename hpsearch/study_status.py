"""A study in a few lines, as ``hpsearch status`` and ``hpsearch demo`` print it."""

from __future__ import annotations

from typing import Any

from hpsearch.cli_studies import trial_row, web_url


def format_status(
    study: dict[str, Any],
    top: list[dict[str, Any]],
    server: str | None = None,
    test_metrics: dict[str, Any] | None = None,
) -> str:
    """A study in a few lines: state, counts, the best trial (its test metrics once
    evaluated), the top trials with the constraints they break, and (``server``) web URLs."""
    c = study["counts"]
    ended = c["completed"] + c["pruned"] + c["failed"]
    lines = [
        f"study {study['id']} {study['name']}: {study['state']}"
        + (f" ({study['reason']})" if study.get("reason") else ""),
        f"  {study['objective']}",
        f"  trials: {ended}/{c['max_trials']} ended ({c['completed']} completed, "
        f"{c['pruned']} pruned, {c['failed']} failed), {c['running']} running, "
        f"{c['queued']} queued",
    ]
    if study.get("waiting_for"):
        lines.insert(2, f"  waiting for a worker with {study['waiting_for']}")
    if server:
        lines.append(f"  web: {web_url(server, '/studies/' + str(study['id']))}")
    best = study.get("best")
    if best:
        lines.append(
            f"  best feasible: trial {best['number']} value={best['value']:.4g} "
            f"{_params(best['params'])}"
        )
        if server:
            lines.append(f"    {web_url(server, best.get('url') or '')}")
    else:
        lines.append("  best feasible: none yet")
    if test_metrics:
        lines.append(f"  test set (evaluated once): {_params(test_metrics)}")
    for t in top:
        row = trial_row(study, t, server or "")
        if t["feasible"] is None:
            mark = ""
        else:
            mark = "feasible" if not row["broken"] else "broke " + ", ".join(row["broken"])
        value = "—" if t["value"] is None else f"{t['value']:.4g}"
        if t.get("diverged"):
            value, mark = "diverged", mark if mark.startswith("broke") else ""
        lines.append(f"    #{t['number']:<4} {t['state']:<9} {value:>8} {mark}")
        if row["error_line"]:
            lines.append(f"          error: {row['error_line']}")
    return "\n".join(lines)


def _params(params: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )
