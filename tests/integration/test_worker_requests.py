"""How many requests a worker makes per trial, seen from outside it: a real worker process talks
to a real server through a pass-through proxy that counts what it forwards.

Quick epochs are held back and sent together (the claim's ``report_interval_s``), with the
completion when the trial ends first; a study with a pruner gets every report at once; and a
completion claims the worker's next trial in the same request.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from hpsearch.client import Client
from tests.conftest import ServerProcess, digits_spec, wait_for
from tests.integration.test_worker_custom import MODULE, custom_spec, worker_env

# Longer than any test here: a step is held back until the trial's completion (or a
# checkpoint, or a hand-back) carries it.
HOLD = {"HPSEARCH_REPORT_INTERVAL_S": "60"}


class CountingProxy:
    """Forwards every request to ``upstream`` unchanged and counts them by (method, path)."""

    def __init__(self, upstream: str) -> None:
        self.requests: Counter[tuple[str, str]] = Counter()
        self._upstream = httpx.Client(base_url=upstream, timeout=60)
        proxy = self

        class Forward(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the worker's client expects

            def forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                # A trial's id is part of the path: counted by what the request does.
                path = re.sub(r"/\d+(?=/|$)", "/{id}", urlsplit(self.path).path)
                proxy.requests[(self.command, path)] += 1
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() in ("content-type", "authorization")
                }
                reply = proxy._upstream.request(
                    self.command, self.path, content=body, headers=headers
                )
                self.send_response(reply.status_code)
                self.send_header("Content-Type", reply.headers.get("content-type", "text/plain"))
                self.send_header("Content-Length", str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)

            do_GET = do_POST = do_PUT = forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
        self._http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._thread.start()

    def count(self, method: str, path: str) -> int:
        return self.requests[(method, "/api/v1" + path)]

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._upstream.close()


@pytest.fixture
def proxied(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> Iterator[Callable[..., tuple[ServerProcess, CountingProxy]]]:
    proxies: list[CountingProxy] = []

    def make(**env: str) -> tuple[ServerProcess, CountingProxy]:
        server = make_server(**worker_env(tmp_path), **env)
        proxies.append(CountingProxy(server.url))
        return server, proxies[-1]

    yield make
    for proxy in proxies:
        proxy.close()


def run_worker(server: ServerProcess, proxy: CountingProxy, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "hpsearch.cli", "worker", "--server", proxy.url, "--quiet", *args],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@contextmanager
def worker_process(
    server: ServerProcess, proxy: CountingProxy, *args: str
) -> Iterator[subprocess.Popen[str]]:
    """A worker process whose progress lines can be read from its stdout; killed on the way
    out if a test left it running."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "hpsearch.cli", "worker", "--server", proxy.url, *args],
        env=server.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield worker
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.communicate()


def stop(worker: subprocess.Popen[str]) -> None:
    """A SIGTERM, as a scheduler sends it; the worker hands back what it holds and exits 0."""
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0


def details(client: Client, study_id: int) -> list[dict[str, Any]]:
    return [client.trial(t["id"]) for t in client.trials(study_id)]


def test_quick_epochs_reach_the_server_with_the_completion(
    proxied: Callable[..., tuple[ServerProcess, CountingProxy]],
) -> None:
    server, proxy = proxied(**HOLD)
    with server.client() as client:
        study_id = client.create_study(custom_spec("curve", trials=3, epochs=5))["id"]
        run_worker(server, proxy, "--study", str(study_id), "--allow", f"{MODULE}:curve")
        trials = details(client, study_id)
        study = client.study(study_id)
    assert study["state"] == "completed"
    assert [t["state"] for t in trials] == ["completed"] * 3
    for trial in trials:
        quality = trial["params"]["quality"]
        points = trial["intermediates"]
        assert [p["step"] for p in points] == [1, 2, 3, 4, 5]
        for p in points:
            assert p["metrics"]["dev_accuracy"] == pytest.approx(quality * (1 - 0.6 ** p["step"]))
        assert trial["last_step"] == 5
    # Fifteen epochs and three trials: no report of its own, and one claim; each completion
    # carried its trial's steps and claimed the next trial (the last found none: exit).
    assert proxy.count("POST", "/trials/{id}/intermediate") == 0
    assert proxy.count("POST", "/trials/{id}/complete") == 3
    assert proxy.count("POST", "/claims") == 1


def test_a_study_with_a_pruner_gets_every_report_at_once_and_still_prunes(
    proxied: Callable[..., tuple[ServerProcess, CountingProxy]],
) -> None:
    server, proxy = proxied(**HOLD)  # the pruner overrides the server's interval
    spec = custom_spec("curve", trials=12, epochs=9)
    spec["pruner"] = {"kind": "asha", "min_resource": 1, "reduction_factor": 3}
    with server.client() as client:
        study_id = client.create_study(spec)["id"]
        run_worker(server, proxy, "--study", str(study_id), "--allow", f"{MODULE}:curve")
        trials = details(client, study_id)
    assert any(t["state"] == "pruned" for t in trials)
    stored = sum(len(t["intermediates"]) for t in trials)
    assert stored < 12 * 9
    assert proxy.count("POST", "/trials/{id}/intermediate") == stored


def test_max_trials_is_honoured_when_completions_claim_the_next_trial(
    proxied: Callable[..., tuple[ServerProcess, CountingProxy]],
) -> None:
    server, proxy = proxied(**HOLD)
    with server.client() as client:
        study_id = client.create_study(custom_spec("curve", trials=5, epochs=2))["id"]
        run_worker(
            server,
            proxy,
            "--study",
            str(study_id),
            "--allow",
            f"{MODULE}:curve",
            "--max-trials",
            "2",
        )
        states = [t["state"] for t in client.trials(study_id)]
        study = client.study(study_id)
    # Two trials and no more (a trial is sampled when it is claimed): the second completion
    # did not claim a third, to be left leased to a worker that is gone, and the worker did
    # not claim one either.
    assert states == ["completed", "completed"]
    assert study["state"] == "running"
    assert proxy.count("POST", "/claims") == 1
    assert proxy.count("POST", "/trials/{id}/complete") == 2


def test_a_checkpoint_goes_to_the_server_after_the_steps_it_covers(
    proxied: Callable[..., tuple[ServerProcess, CountingProxy]],
) -> None:
    server, proxy = proxied(**HOLD)
    spec = digits_spec(
        budget={"max_trials": 1, "parallelism": 1},
        task={"trainer": "mlp_classifier", "dataset": "digits", "epochs": 4, "checkpoint_every": 2},
    )
    with server.client() as client:
        study_id = client.create_study(spec)["id"]
        run_worker(server, proxy, "--study", str(study_id))
        (trial,) = details(client, study_id)
    assert trial["state"] == "completed"
    assert [p["step"] for p in trial["intermediates"]] == [1, 2, 3, 4]
    assert trial["checkpoint_step"] == 4
    # Steps 1-2 went before the checkpoint of epoch 2, steps 3-4 before that of epoch 4: a
    # trial resumed from a checkpoint never lacks the steps before it.
    assert proxy.count("PUT", "/trials/{id}/checkpoint") == 2
    assert proxy.count("POST", "/trials/{id}/intermediate") == 2


def test_held_back_steps_are_sent_before_the_trial_is_handed_back(
    proxied: Callable[..., tuple[ServerProcess, CountingProxy]], tmp_path: Path
) -> None:
    server, proxy = proxied(**HOLD)
    gate = tmp_path / "gate"  # never opened: the trial waits at step 1 until the signal
    spec = custom_spec("gated", epochs=3, fixed={"gate": str(gate)})
    with server.client() as client:
        study_id = client.create_study(spec)["id"]
        args = ("--study", str(study_id), "--allow", f"{MODULE}:gated")
        with worker_process(server, proxy, *args) as worker:
            assert worker.stdout is not None
            # The worker's own progress line: step 1 is done, and held back.
            for line in worker.stdout:
                if "epoch 1/3" in line:
                    break
            (running,) = client.trials(study_id)
            assert running["state"] == "running" and not running["last_step"]
            stop(worker)
        back = client.trial(running["id"])
    assert back["state"] == "queued"
    assert back["events"][-1]["kind"] == "released"
    # Step 1, and step 2 that the gated trainer reported on its way out, were kept.
    assert [p["step"] for p in back["intermediates"]] == [1, 2]
    assert proxy.count("POST", "/trials/{id}/intermediate") == 1


def test_prefetch_holds_each_next_trial_ahead_within_max_trials(
    proxied: Callable[..., tuple[ServerProcess, CountingProxy]],
) -> None:
    server, proxy = proxied(**HOLD)
    spec = custom_spec("curve", trials=5, epochs=2, parallelism=3)
    with server.client() as client:
        study_id = client.create_study(spec)["id"]
        run_worker(
            server,
            proxy,
            *("--study", str(study_id), "--allow", f"{MODULE}:curve"),
            *("--prefetch", "--max-trials", "3"),
        )
        trials = details(client, study_id)
    # Three trials and no more: the held ones counted against --max-trials when claimed.
    assert [(t["state"], t["attempt"]) for t in trials] == [("completed", 1)] * 3
    # One claim to start, one claim ahead while the first ran; then the first completion
    # claimed the third trial ahead and the others claimed nothing.
    assert proxy.count("POST", "/claims") == 2
    assert proxy.count("POST", "/trials/{id}/complete") == 3
    claimed = [[e for e in t["events"] if e["kind"] == "claimed"] for t in trials]
    assert claimed[2][0]["detail"] == f"after trial {trials[0]['id']}"
    # A held trial's start is when the completion before it said it started, not its claim.
    assert trials[0]["started_at"] == claimed[0][0]["created_at"]
    for t, (c,) in zip(trials[1:], claimed[1:], strict=True):
        assert datetime.fromisoformat(t["started_at"]) > datetime.fromisoformat(c["created_at"])


def test_prefetch_hands_a_held_trial_back_when_the_worker_stops(
    proxied: Callable[..., tuple[ServerProcess, CountingProxy]], tmp_path: Path
) -> None:
    server, proxy = proxied(**HOLD)
    gate = tmp_path / "gate"  # never opened: the first trial waits at step 1
    spec = custom_spec("gated", trials=3, epochs=3, parallelism=3, fixed={"gate": str(gate)})
    with server.client() as client:
        study_id = client.create_study(spec)["id"]
        args = ("--study", str(study_id), "--allow", f"{MODULE}:gated", "--prefetch")
        with worker_process(server, proxy, *args) as worker:
            wait_for(
                lambda: [t["state"] for t in client.trials(study_id)].count("running") == 2,
                30,
                "a trial running and one held ahead",
            )
            stop(worker)
        trials = details(client, study_id)
    # Both went back to the queue (the third was sampled into it with the first claim): the
    # running one after its epoch, the held one at once.
    assert [t["state"] for t in trials] == ["queued"] * 3
    held = [t for t in trials if t["number"] != 0]
    assert sorted(len(t["events"]) for t in held) == [0, 2]
    assert [e["kind"] for e in max(held, key=lambda t: len(t["events"]))["events"]] == [
        "claimed",
        "released",
    ]
