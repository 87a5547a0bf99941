"""A study's ended trials as its sampler sees them, read once and then only what is new.

An ended trial never changes again (completed, pruned and failed are final), so a cache that
holds what it has read stays right; each claim asks the database only which trials have ended
(an index-only scan of numbers) and reads the rows of the new ones. A study of 10 000 finished
trials is not re-read per suggestion.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from hpsearch.samplers import FinishedTrial
from hpsearch.store.models import ENDED_STATES, Trial
from hpsearch.store.queue import STORED_INFINITY

_CHUNK = 500


def read_history(
    session: Session,
    study_id: int,
    numbers: list[int] | None = None,
) -> list[FinishedTrial]:
    """Ended trials of a study (only ``numbers`` when given), by number."""
    query = select(
        Trial.number, Trial.params, Trial.state, Trial.value, Trial.feasible, Trial.violation
    ).where(Trial.study_id == study_id, Trial.state.in_(ENDED_STATES))
    rows = []
    if numbers is None:
        rows = list(session.execute(query.order_by(Trial.number)).all())
    else:
        for i in range(0, len(numbers), _CHUNK):
            chunk = numbers[i : i + _CHUNK]
            rows.extend(session.execute(query.where(Trial.number.in_(chunk))).all())
    return [
        FinishedTrial(
            number=n,
            params=p,
            state=s,
            value=v,
            feasible=bool(f),
            violation=math.inf if viol is None or viol >= STORED_INFINITY else viol,
        )
        for n, p, s, v, f, viol in rows
    ]


class HistoryCache:
    """Per-study ended trials; safe to share between the threads of one server process."""

    def __init__(self, max_studies: int = 64) -> None:
        self._studies: OrderedDict[tuple[int, datetime], dict[int, FinishedTrial]] = OrderedDict()
        self.max_studies = max_studies
        self.rows_read = 0  # for tests and benchmarks: how much the database was asked

    def history(self, session: Session, key: tuple[int, datetime]) -> list[FinishedTrial]:
        """``key`` is (study id, creation time): SQLite may give a deleted study's id anew."""
        study_id = key[0]
        known = self._studies.get(key)
        ended = list(
            session.scalars(
                select(Trial.number).where(
                    Trial.study_id == study_id, Trial.state.in_(ENDED_STATES)
                )
            )
        )
        if known is None or len(known) > len(ended):
            known = {}
        new = [n for n in ended if n not in known]
        if new:
            fresh = read_history(session, study_id, new)
            self.rows_read += len(fresh)
            known = {**known, **{t.number: t for t in fresh}}
        self._studies[key] = known
        self._studies.move_to_end(key)
        while len(self._studies) > self.max_studies:
            self._studies.popitem(last=False)
        return [known[n] for n in sorted(known)]
