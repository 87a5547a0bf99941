"""The REST API of a real uvicorn server process on a temp SQLite file."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from hpsearch.client import wait_until_healthy
from tests.conftest import ServerProcess, digits_spec, free_port, wait_for

CLI = [sys.executable, "-m", "hpsearch.cli"]


def post(server: ServerProcess, path: str, body: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/api/v1{path}", json=body, timeout=10)


def _broken(change: Any) -> dict[str, Any]:
    spec = copy.deepcopy(digits_spec())
    change(spec)
    return spec


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda s: s["space"]["lr"].update(scale="cubic"), "space.lr.scale"),
        (lambda s: s["space"]["layers"].update(low=5), "space.layers"),
        (lambda s: s["space"]["lr"].update(low=0.0), "space.lr"),
        (lambda s: s.pop("objective"), "objective"),
        (lambda s: s["constraints"][0].update(op="=<"), "constraints.0.op"),
    ],
    ids=["unknown-scale", "low-above-high", "log-low-zero", "no-objective", "bad-op"],
)
def test_malformed_spec_gets_422_naming_the_field(
    server: ServerProcess, change: Any, field: str
) -> None:
    r = post(server, "/studies", _broken(change))
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] in ("validation_error", "invalid_spec")
    assert field in [e["field"] for e in body["errors"]], body
    assert field in body["message"]
    # Nothing was stored.
    assert httpx.get(f"{server.url}/api/v1/studies").json() == []


def test_study_lifecycle_over_http(server: ServerProcess) -> None:
    r = post(server, "/studies", digits_spec(budget={"max_trials": 2, "parallelism": 1}))
    assert r.status_code == 201
    study_id = r.json()["id"]
    assert r.headers["location"] == f"/api/v1/studies/{study_id}"
    claim = post(server, "/claims", {"worker_id": "w1"}).json()["trial"]
    assert claim["params"].keys() == digits_spec()["space"].keys()
    lease = {"worker_id": "w1", "attempt": claim["attempt"]}
    ack = post(
        server,
        f"/trials/{claim['id']}/intermediate",
        {**lease, "step": 1, "metrics": {"dev_accuracy": 0.5}},
    )
    assert ack.status_code == 200 and ack.json()["should_stop"] is False
    stranger = post(
        server,
        f"/trials/{claim['id']}/intermediate",
        {"worker_id": "w2", "attempt": 1, "step": 2, "metrics": {}},
    )
    assert stranger.status_code == 409 and stranger.json()["code"] == "lease_lost"
    done = post(
        server,
        f"/trials/{claim['id']}/complete",
        {**lease, "metrics": {"dev_accuracy": 0.9, "latency_ms": 500}},
    )
    assert done.json()["feasible"] is False
    study = httpx.get(f"{server.url}/api/v1/studies/{study_id}").json()
    assert study["counts"]["completed"] == 1 and study["best"] is None
    assert httpx.get(f"{server.url}/api/v1/studies/{study_id}/best").json() is None
    trial = httpx.get(f"{server.url}/api/v1/trials/{claim['id']}").json()
    assert [p["step"] for p in trial["intermediates"]] == [1]


def test_unknown_ids_are_404(server: ServerProcess) -> None:
    r = httpx.get(f"{server.url}/api/v1/studies/999")
    assert r.status_code == 404 and r.json()["code"] == "not_found"


def test_openapi_documents_the_routes(server: ServerProcess) -> None:
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    for path in (
        "/api/v1/studies",
        "/api/v1/studies/{study_id}",
        "/api/v1/claims",
        "/api/v1/studies/{study_id}/best",
        "/api/v1/trials/{trial_id}/complete",
    ):
        assert path in paths


def _logged(log: Path, what: str) -> str | None:
    return next((line for line in log.read_text().splitlines() if what in line), None)


def test_each_request_writes_an_access_log_line(server: ServerProcess, tmp_path: Path) -> None:
    assert httpx.get(f"{server.url}/api/v1/studies/424242", timeout=10).status_code == 404
    line = wait_for(
        lambda: _logged(server.log, "GET /api/v1/studies/424242"), 10, "the access log line"
    )
    assert re.search(r"127\.0\.0\.1 GET /api/v1/studies/424242 404 \d+\.\dms$", line), line
    # --no-access-log: the same request writes nothing.
    port = free_port()
    log = tmp_path / "quiet.log"
    with open(log, "wb") as out:
        quiet = subprocess.Popen(
            [*CLI, "server", "--no-access-log", "--port", str(port)],
            env=server.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(url, quiet, timeout=60, log=log)
        assert httpx.get(f"{url}/api/v1/studies/424242", timeout=10).status_code == 404
    finally:
        quiet.terminate()
        quiet.wait(timeout=30)
    assert _logged(log, "/api/v1/") is None, log.read_text()
