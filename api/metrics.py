"""Prometheus metrics: what the server counts, and what a scrape of ``GET /metrics`` reads.

Two kinds, kept apart on purpose (docs/architecture.md, "Metrics"):

- Counters and the request-latency histogram count what this server process did. With
  several processes (``hpsearch server --workers N``) each writes its own values to files in
  ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode, set up by
  :func:`shared_between_processes`) and a scrape, answered by any one process, sums every
  process's files, those of processes since replaced included: a counter never goes back.
- Gauges (queued, running and startable trials per study; live workers) are read from the
  database at scrape time: only the database knows the whole queue, whichever process and
  host answers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.routing import BaseRoute
from starlette.types import Scope

from api.access_log import AfterResponse
from hpsearch.store.gauges import QueueGauges
from hpsearch.store.worker_requests import Claimed, Ended

# prometheus_client's own switch: set before the first metric is made (in a server process:
# before this module is imported), it makes every process keep its values in files there.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Not registered anywhere global: each scrape builds the registry it reads (see exposition).
CLAIMS = Counter(
    "hpsearch_claims",
    "Claims answered, by what they handed out: a trial to train, a final test evaluation, "
    "or nothing.",
    ["outcome"],
    registry=None,
)


def count_claims(*answers: Claimed | None) -> None:
    """Counts claims answered (a resend's lease, given again, is not a new claim)."""
    for c in answers:
        if c is not None and c.how != "resent":
            CLAIMS.labels(c.how).inc()


def count_ended(ended: Ended) -> None:
    """Counts a trial ended by its worker, unless the request was a resend."""
    if ended.newly:
        COMPLETIONS.labels(ended.trial.state).inc()
    count_claims(ended.next)


REPORTS = Counter(
    "hpsearch_reports",
    "Intermediate reports accepted (one request may carry several steps).",
    registry=None,
)
COMPLETIONS = Counter(
    "hpsearch_completions",
    "Trials ended by their worker, by how they ended.",
    ["state"],
    registry=None,
)
REQUEST_SECONDS = Histogram(
    "hpsearch_http_request_duration_seconds",
    "Time from a request's arrival to its response's last byte.",
    ["method", "handler", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=None,
)
PROCESS_METRICS = (CLAIMS, REPORTS, COMPLETIONS, REQUEST_SECONDS)


class QueueCollector:
    """The gauges of one scrape, from a reading of the database."""

    def __init__(self, gauges: QueueGauges) -> None:
        self.gauges = gauges

    def collect(self) -> Iterable[Metric]:
        labels = ["study_id", "study"]
        families = {
            "queued": GaugeMetricFamily(
                "hpsearch_trials_queued", "Trials waiting for a worker.", labels=labels
            ),
            "running": GaugeMetricFamily(
                "hpsearch_trials_running", "Trials a worker holds the lease of.", labels=labels
            ),
            "startable": GaugeMetricFamily(
                "hpsearch_trials_startable",
                "Trials a free worker could start now: queued ones and those the budget has "
                "yet to sample, within the study's parallelism (0 unless running). Scale "
                "workers on this.",
                labels=labels,
            ),
        }
        for study in self.gauges.studies:
            values = [str(study.study_id), study.name]
            families["queued"].add_metric(values, study.queued)
            families["running"].add_metric(values, study.running)
            families["startable"].add_metric(values, study.startable)
        yield from families.values()
        yield GaugeMetricFamily(
            "hpsearch_workers_live",
            "Workers seen claiming within a lease's length, or holding an unexpired lease.",
            value=self.gauges.live_workers,
        )


def exposition(gauges: QueueGauges) -> bytes:
    """The text a scrape answers: every process's counters, and the queue's gauges."""
    registry = CollectorRegistry(auto_describe=False)
    if MULTIPROC_ENV in os.environ:
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        for metric in PROCESS_METRICS:
            registry.register(metric)
    registry.register(QueueCollector(gauges))
    return generate_latest(registry)


@contextmanager
def shared_between_processes() -> Iterator[None]:
    """Makes the server processes started inside count into files that a scrape of any of
    them sums. A directory of the operator's own (``PROMETHEUS_MULTIPROC_DIR`` already set)
    is emptied first, as prometheus_client requires; else one is made here and removed."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        yield
        return
    made = tempfile.mkdtemp(prefix="hpsearch-metrics-")
    os.environ[MULTIPROC_ENV] = made
    try:
        yield
    finally:
        del os.environ[MULTIPROC_ENV]
        shutil.rmtree(made, ignore_errors=True)


class RequestTimer(AfterResponse):
    """ASGI middleware: each request's duration into :data:`REQUEST_SECONDS`, labelled by
    the name of the route's handler (``report_intermediate``), not the path: one series per
    route, however many trials. (The route the router writes into the scope knows its path
    without the prefix it was included under, so its name is the clearer label.)"""

    def done(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        # The router writes the matched route into the scope; nothing matched: one series.
        name = getattr(route, "name", None) if isinstance(route, BaseRoute) else None
        REQUEST_SECONDS.labels(scope["method"], name or "unmatched", str(status)).observe(seconds)
