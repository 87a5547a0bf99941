"""``GET /metrics``: Prometheus's text format, for dashboards and for autoscaling workers on
the queue (docs/deploy.md). Read access, as any other read: a ``viewer`` token serves as a
scrape token (SECURITY.md)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from api.deps import StoreDep
from api.metrics import exposition

router = APIRouter(tags=["metrics"])


# Not in the OpenAPI document: a Prometheus endpoint, not part of the REST API.
@router.get("/metrics", response_class=Response, include_in_schema=False)
def metrics(store: StoreDep) -> Response:
    return Response(exposition(store.queue_gauges()), media_type=CONTENT_TYPE_LATEST)
