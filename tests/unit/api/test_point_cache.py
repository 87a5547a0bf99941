"""The in-memory cache of ended trials: topped up incrementally, read whole when unsure."""

from __future__ import annotations

from datetime import datetime, timedelta

from api.views.point_cache import PointCache
from hpsearch.store.results import TrialPoint

T0 = datetime(2025, 1, 1)


def ended(n: int, at: int) -> TrialPoint:
    return TrialPoint(
        id=n,
        number=n,
        state="completed",
        value=0.5,
        feasible=True,
        violation=0.0,
        params={},
        metrics={},
        finished_at=T0 + timedelta(seconds=at),
    )


class Study:
    """A study's ended trials and the reads the cache makes of them."""

    def __init__(self, points: list[TrialPoint]) -> None:
        self.points = points
        self.reads: list[datetime | None] = []

    def load(self, since: datetime | None) -> list[TrialPoint]:
        self.reads.append(since)
        return [p for p in self.points if since is None or p.finished_at >= since]


def test_trials_that_end_later_are_read_alone() -> None:
    study = Study([ended(0, 0), ended(1, 5)])
    cache = PointCache()
    assert [p.number for p in cache.points(1, 2, (), study.load)] == [0, 1]
    assert cache.points(1, 2, (), study.load) is not None and study.reads == [None]  # cached
    study.points += [ended(3, 9), ended(2, 9)]
    assert [p.number for p in cache.points(1, 4, (), study.load)] == [0, 1, 2, 3]
    assert study.reads == [None, T0 + timedelta(seconds=5)]
    assert cache.full_loads == 1


def test_a_count_that_does_not_add_up_reads_the_study_again() -> None:
    study = Study([ended(0, 0), ended(1, 5)])
    cache = PointCache()
    cache.points(1, 2, (), study.load)
    # A trial that ended "before" the watermark (another server's clock): the top-up misses
    # it, the count says so, and the study is read whole.
    study.points.append(ended(2, 1))
    assert [p.number for p in cache.points(1, 3, (), study.load)] == [0, 1, 2]
    assert study.reads == [None, T0 + timedelta(seconds=5), None]
    assert cache.full_loads == 2


def test_other_metrics_mean_another_read_and_big_studies_evict_old_ones() -> None:
    a, b = Study([ended(i, i) for i in range(6)]), Study([ended(i, i) for i in range(6)])
    cache = PointCache(max_points=10)
    cache.points(1, 6, ("latency_ms",), a.load)
    cache.points(1, 6, ("n_params",), a.load)
    assert a.reads == [None, None]
    cache.points(2, 6, (), b.load)  # 12 points > 10: study 1 goes
    cache.points(1, 6, ("n_params",), a.load)
    assert a.reads == [None, None, None]
