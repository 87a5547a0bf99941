"""What one server process remembers between requests: hints, never the truth.

Nothing here is authoritative. Each value may be stale, evicted at any time, or different in
another server process; the database stays the one source of truth, and every statement that
acts on a hint checks it there (a claim takes nothing from a study that no longer runs, a
completion checks the lease whatever study it was told). Losing all of it costs reads, never
correctness. Every cache here is a :class:`~hpsearch.store.bounded.Bounded`, keyed by
(study id, creation time) where a study is the key, since SQLite may give a deleted study's
id to a new one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from sqlalchemy import Connection, select
from sqlalchemy.orm import Session

from hpsearch.errors import NotFound
from hpsearch.samplers import FinishedTrial
from hpsearch.states import ENDED
from hpsearch.store.bounded import Bounded
from hpsearch.store.history import read_history
from hpsearch.store.models import Study, Trial
from hpsearch.store.rules import StudyKey, StudyRules, rules_of

V = TypeVar("V")


class Throttle:
    """At most once per ``seconds`` per key: for probes that almost always find nothing."""

    def __init__(self, seconds: float, max_keys: int = 4096) -> None:
        self.seconds = seconds
        self._last: Bounded[Hashable, float] = Bounded(max_keys)

    def due(self, key: Hashable) -> bool:
        """True when ``key`` was not due in the last ``seconds`` (and records this time)."""
        if self.seconds <= 0:
            return True
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.seconds:
            return False
        self._last.put(key, now)
        return True

    def reset(self) -> None:
        """Every key due again (something the probe looks for has just been made here)."""
        self._last.clear()


class Recent(Generic[V]):
    """A value per key, read again once it is ``seconds`` old or cleared (0: every time)."""

    def __init__(self, seconds: float, max_keys: int = 4096) -> None:
        self.seconds = seconds
        self._values: Bounded[Hashable, tuple[float, V]] = Bounded(max_keys)

    def get(self, key: Hashable, read: Callable[[], V]) -> V:
        kept = self.kept(key)
        if kept is not None:
            return kept
        value = read()
        self.put(key, value)
        return value

    def kept(self, key: Hashable) -> V | None:
        """The value for ``key`` if it is less than ``seconds`` old, else None."""
        if self.seconds <= 0:
            return None
        kept = self._values.get(key)
        return kept[1] if kept is not None and time.monotonic() - kept[0] < self.seconds else None

    def put(self, key: Hashable, value: V) -> None:
        """``value``, just read elsewhere, as the one to give for the next ``seconds``."""
        if self.seconds > 0:
            self._values.put(key, (time.monotonic(), value))

    def clear(self) -> None:
        self._values.clear()


class RulesCache:
    """Each study's parsed spec and sampler (:class:`StudyRules`), parsed once per process.

    A spec is fixed when its study is created, except ``budget``, which the hot paths read
    from the study row and never from here."""

    def __init__(self, max_studies: int = 256) -> None:
        self._rules: Bounded[StudyKey, StudyRules] = Bounded(max_studies)

    def get(self, session: Session | Connection, key: StudyKey) -> StudyRules:
        rules = self._rules.get(key)
        if rules is None:
            spec_json = session.scalar(select(Study.spec).where(Study.id == key[0]))
            if spec_json is None:
                raise NotFound(f"study {key[0]} does not exist")
            # Two threads may both have parsed it; the first one's sampler wins.
            rules = self._rules.setdefault(key, rules_of(key, spec_json))
        return rules


class HistoryCache:
    """Per-study ended trials as the sampler sees them, read once and then only what is new.

    An ended trial never changes again, so what was read stays right; each claim asks the
    database only which trials have ended (an index-only scan of numbers) and reads the rows
    of the new ones: a study of 10 000 finished trials is not re-read per suggestion."""

    def __init__(self, max_studies: int = 64) -> None:
        self._studies: Bounded[StudyKey, dict[int, FinishedTrial]] = Bounded(max_studies)
        self.rows_read = 0  # for tests and benchmarks: how much the database was asked

    def history(self, session: Session, key: StudyKey, metric: str) -> list[FinishedTrial]:
        """The ended trials of study ``key``; ``metric``: its objective."""
        study_id = key[0]
        known = self._studies.get(key)
        ended = list(
            session.scalars(
                select(Trial.number).where(Trial.study_id == study_id, Trial.state.in_(ENDED))
            )
        )
        if known is None or len(known) > len(ended):
            known = {}
        new = [n for n in ended if n not in known]
        if new:
            fresh = read_history(session, study_id, metric, new)
            self.rows_read += len(fresh)
            known = {**known, **{t.number: t for t in fresh}}
        self._studies.put(key, known)
        return [known[n] for n in sorted(known)]


class Hints:
    """A store's process-local hints (see the module's docstring)."""

    def __init__(self, probe_seconds: float) -> None:
        self.rules = RulesCache()
        self.history = HistoryCache()
        # Probes that almost always find nothing, made at most once per ``probe_seconds`` per
        # process rather than on every claim (a server sets it; 0: every claim): an expired
        # lease is then re-queued up to that much later, a test evaluation queued through
        # another server process claimed up to that much later. A worker's row (host,
        # devices, last seen) is refreshed on the same terms, at most every 10 probes.
        self.expired_probe = Throttle(probe_seconds)
        self.evaluation_probe = Throttle(probe_seconds)
        self.worker_touch = Throttle(10 * probe_seconds)
        # The running studies (per study id, or None: any study), as a claim through this
        # process last read them, for up to ``probe_seconds``: claims go by them (on
        # PostgreSQL the one-statement claim, on SQLite the claim's transaction). A claim
        # takes nothing from a study no longer running, and one that finds nothing reads them
        # again in its transaction; a study started or resumed through another server
        # process may wait that long for workers that are busy with an older one.
        self.running: Recent[list[StudyKey]] = Recent(probe_seconds)
        # Each study's objective in words, for its views.
        self.objectives: Bounded[StudyKey, str] = Bounded(10_000)
        # The study of each trial claimed through this process, until it is completed: its
        # completion, likely through this process, then need not read it.
        self.claimed_studies: Bounded[int, StudyKey] = Bounded(100_000)
        # Where (a study id, or None: any study) the last claim through this process found no
        # queued trial and sampled one: the next claim there goes straight to sampling.
        self.queue_found_empty: Bounded[int | None, bool] = Bounded(4096)
