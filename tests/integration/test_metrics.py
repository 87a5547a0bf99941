"""``GET /metrics`` on a real server: counters move with claims, reports and completions,
gauges show the queue, the read rule holds, and with ``hpsearch server --workers 2`` every
scrape, whichever process answers, counts what both processes did."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ServerProcess, digits_spec, free_port, wait_for
from tests.http_worker import WorkerOverHttp
from tests.integration.test_auth import make_tokens

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str, token: str | None = None) -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # A new connection each time: with several server processes, any one may answer.
    r = httpx.get(f"{url}/metrics", headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def start_study(url: str, max_trials: int, parallelism: int) -> int:
    spec = digits_spec(budget={"max_trials": max_trials, "parallelism": parallelism})
    r = httpx.post(f"{url}/api/v1/studies", json=spec, timeout=10)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def test_counters_move_and_gauges_show_the_queue(server: ServerProcess) -> None:
    sid = start_study(server.url, max_trials=3, parallelism=2)
    study = {"study_id": str(sid), "study": "digits-mlp"}
    before = scrape(server.url)
    assert value(before, "hpsearch_trials_startable", **study) == 2  # parallelism-bound
    assert value(before, "hpsearch_trials_running", **study) == 0
    assert value(before, "hpsearch_workers_live") == 0
    assert value(before, "hpsearch_claims_total", outcome="trial") is None

    worker = WorkerOverHttp(server, "metrics-worker")
    trial = worker.claim(sid)
    held = scrape(server.url)
    assert value(held, "hpsearch_claims_total", outcome="trial") == 1
    assert value(held, "hpsearch_trials_running", **study) == 1
    assert value(held, "hpsearch_trials_startable", **study) == 1
    assert value(held, "hpsearch_workers_live") == 1

    worker.run(trial, steps=2, top=0.9)  # two intermediate reports, then the completion
    done = scrape(server.url)
    assert value(done, "hpsearch_reports_total") == 2
    assert value(done, "hpsearch_completions_total", state="completed") == 1
    assert value(done, "hpsearch_trials_running", **study) == 0
    count = "hpsearch_http_request_duration_seconds_count"
    assert value(done, count, method="POST", handler="claim", status="200") == 1
    assert value(done, count, method="POST", handler="report_intermediate", status="200") == 2


def test_a_viewer_token_reads_metrics_a_worker_token_may_not(
    make_server: Callable[..., ServerProcess],
) -> None:
    server = make_server(HPSEARCH_AUTH_CACHE_SECONDS="0.2")
    tokens = make_tokens(server, ["viewer", "worker"])
    wait_for(lambda: httpx.get(f"{server.url}/metrics").status_code == 401, 15, "authentication on")
    assert httpx.get(f"{server.url}/metrics", headers=_bearer(tokens["worker"])).status_code == 403
    assert value(scrape(server.url, tokens["viewer"]), "hpsearch_workers_live") == 0


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def two_processes(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "HPSEARCH_DATABASE_URL": f"sqlite:///{tmp_path / 'hpsearch.db'}",
        "HPSEARCH_HOST": "127.0.0.1",
        "HPSEARCH_PORT": str(port),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [sys.executable, "-m", "hpsearch.cli", "server", "--workers", "2"]
    with open(tmp_path / "server.log", "wb") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)

    def healthy() -> bool:
        assert proc.poll() is None, (tmp_path / "server.log").read_text()
        try:
            return httpx.get(f"{url}/api/v1/health").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(healthy, 60, "the server to answer")
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.slow
def test_every_process_answers_with_the_counts_of_all(two_processes: str) -> None:
    url = two_processes
    sid = start_study(url, max_trials=20, parallelism=20)
    claims = 12
    for i in range(claims):
        # Each on a new connection, from its own worker: spread over both processes.
        r = httpx.post(
            f"{url}/api/v1/claims",
            json={"worker_id": f"w{i}", "host": "h", "devices": [], "study_id": sid},
            timeout=10,
        )
        assert r.status_code == 200 and r.json()["trial"] is not None, r.text
    for _ in range(8):
        samples = scrape(url)
        assert value(samples, "hpsearch_claims_total", outcome="trial") == claims
        assert value(samples, "hpsearch_trials_running", study_id=str(sid), study="digits-mlp") == (
            claims
        )
        assert value(samples, "hpsearch_workers_live") == claims
