"""What a study handle reads back: trials as :class:`TrialResult`, and the progress bar of
``Study.wait``."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrialResult:
    """A trial as read from the server (``best_trial``, ``trials()``)."""

    id: int
    study_id: int
    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    metrics: dict[str, float | None]
    """A metric sent as NaN or infinity was recorded as not measured: it is left out."""
    feasible: bool | None
    error: str | None
    url: str
    """Its web page (``/studies/{study_id}/trials/{number}``), relative to the server."""

    @classmethod
    def of(cls, t: Mapping[str, Any]) -> TrialResult:
        return cls(
            id=t["id"],
            study_id=t["study_id"],
            number=t["number"],
            state=t["state"],
            value=t["value"],
            params=dict(t["params"]),
            metrics=dict(t["metrics"]),
            feasible=t["feasible"],
            error=t["error"],
            url=t.get("url") or f"/studies/{t['study_id']}/trials/{t['number']}",
        )


class Progress:
    """Ended trials over the budget: a tqdm bar when tqdm is installed, else a line."""

    def __init__(self, study_id: int) -> None:
        self.study_id = study_id
        self._bar: Any = None
        try:
            from tqdm.auto import tqdm

            self._bar = tqdm(desc=f"study {study_id}", unit="trial")
        except ImportError:
            pass

    def show(self, info: Mapping[str, Any]) -> None:
        c = info["counts"]
        ended = c["completed"] + c["pruned"] + c["failed"]
        best = info.get("best")
        best_text = f"best {best['value']:.4g} (trial {best['number']})" if best else "no best"
        if self._bar is not None:
            self._bar.total = c["max_trials"]
            self._bar.n = ended
            self._bar.set_postfix_str(f"{c['running']} running, {best_text}")
            self._bar.refresh()
        else:
            sys.stderr.write(
                f"\rstudy {self.study_id}: {ended}/{c['max_trials']} trials ended, "
                f"{c['running']} running, {best_text}   "
            )
            sys.stderr.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        else:
            sys.stderr.write("\n")
