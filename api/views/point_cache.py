"""The ended trials of recently viewed studies, kept in memory and topped up with the trials
that ended since, so a study with 100 000 trials is decoded once rather than on every refresh
of a page that follows it live.

Ended trials do not change, which is what makes topping up sound; the count of ended trials
the study row keeps is the check: when the cache and the study disagree (clocks of several
servers, a trial that ended out of order), the study is read again whole.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from hpsearch.store.results import TrialPoint

Loader = Callable[[datetime | None], list[TrialPoint]]


@dataclass
class _Entry:
    key: tuple[str, ...]
    points: list[TrialPoint]
    watermark: datetime | None


class PointCache:
    def __init__(self, max_points: int = 400_000) -> None:
        self.max_points = max_points
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        # One loader at a time: two page refreshes of a big study share one read.
        self._lock = threading.Lock()
        self.full_loads = 0

    def points(
        self, study_id: int, ended: int, key: tuple[str, ...], load: Loader
    ) -> list[TrialPoint]:
        """The study's ``ended`` trials; ``load(since)`` reads those that ended at or after
        ``since`` (all of them for ``None``); ``key`` names what a point holds (its metrics)."""
        with self._lock:
            entry = self._entries.get(study_id)
            if entry is not None and entry.key == key:
                self._entries.move_to_end(study_id)
                if len(entry.points) == ended:
                    return entry.points
                fresh = load(entry.watermark)
                merged = {p.id: p for p in entry.points}
                merged.update((p.id, p) for p in fresh)
                if len(merged) == ended:
                    entry.points = sorted(merged.values(), key=lambda p: p.number)
                    entry.watermark = _latest(fresh, entry.watermark)
                    return entry.points
            points = load(None)
            self.full_loads += 1
            self._entries[study_id] = _Entry(key, points, _latest(points, None))
            self._entries.move_to_end(study_id)
            self._evict()
            return points

    def _evict(self) -> None:
        while len(self._entries) > 1 and (
            sum(len(e.points) for e in self._entries.values()) > self.max_points
        ):
            self._entries.popitem(last=False)


def _latest(points: list[TrialPoint], since: datetime | None) -> datetime | None:
    times = [p.finished_at for p in points if p.finished_at is not None]
    if since is not None:
        times.append(since)
    return max(times, default=None)
