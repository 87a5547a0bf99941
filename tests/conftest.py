"""Fixtures that build real things: a real uvicorn server process on a real database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hpsearch.client import Client, ServerUnreachable
from tests.pg import (  # noqa: F401  (fixtures, registered by import)
    _migrated_template,
    make_postgres_database,
    postgres_cluster,
    postgres_url,
)

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    """Polls ``condition`` until it returns something truthy; fails after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@dataclass
class ServerProcess:
    url: str
    database_url: str
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hpsearch.cli", "server"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        with Client(self.url, retry_for=0) as client:

            def healthy() -> bool:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"server exited: {self.log.read_text()}")
                try:
                    client.health()
                    return True
                except ServerUnreachable:
                    return False

            wait_for(healthy, 60, "the server to answer /health")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def client(self, **kwargs: Any) -> Client:
        return Client(self.url, **kwargs)

    def start_worker(self, *args: str, log_name: str = "worker") -> subprocess.Popen[bytes]:
        log = self.log.parent / f"{log_name}-{len(self.workers)}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "hpsearch.cli",
                    "worker",
                    "--server",
                    self.url,
                    "--quiet",
                    *args,
                ],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.workers.append(proc)
        return proc


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    servers: list[ServerProcess] = []

    def make(database_url: str | None = None, **env: str) -> ServerProcess:
        port = free_port()
        url = database_url or f"sqlite:///{tmp_path / f'hpsearch-{port}.db'}"
        full_env = {
            **os.environ,
            "HPSEARCH_DATABASE_URL": url,
            "HPSEARCH_PORT": str(port),
            "HPSEARCH_HOST": "127.0.0.1",
            # Checkpoints that workers upload stay in the test's directory.
            "HPSEARCH_ARTIFACT_DIR": str(tmp_path / f"artifacts-{port}"),
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        server = ServerProcess(
            f"http://127.0.0.1:{port}", url, full_env, tmp_path / f"server-{port}.log"
        )
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        for w in server.workers:
            if w.poll() is None:
                w.kill()
                w.wait()
        server.stop()


@pytest.fixture
def server(make_server: Callable[..., ServerProcess]) -> ServerProcess:
    return make_server()


def digits_spec(**overrides: Any) -> dict[str, Any]:
    """The issue's contract example, small enough for tests."""
    spec: dict[str, Any] = {
        "name": "digits-mlp",
        "objective": {"metric": "dev_accuracy", "direction": "maximize"},
        "constraints": [{"metric": "latency_ms", "op": "<=", "threshold": 100}],
        "space": {
            "lr": {"type": "float", "low": 0.0001, "high": 1.0, "scale": "log"},
            "beta": {"type": "float", "low": 0.9, "high": 0.999, "scale": "reverse_log"},
            "hidden_units": {"type": "int", "low": 16, "high": 256, "scale": "log"},
            "layers": {"type": "int", "low": 1, "high": 3},
            "batch_size": {"type": "categorical", "choices": [32, 64, 128]},
        },
        "sampler": {"kind": "random", "seed": 0},
        "budget": {"max_trials": 20, "parallelism": 2},
        "task": {"trainer": "mlp_classifier", "dataset": "digits", "epochs": 10},
    }
    for key, value in overrides.items():
        spec[key] = value
    return spec
