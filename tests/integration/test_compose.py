"""docker-compose.yml, without Docker: it parses, names Dockerfiles and commands that exist, and
the very commands it runs start the stack here (PostgreSQL, migrations, env-file tokens, the
server, a worker) and finish a study."""

from __future__ import annotations

import os
import secrets
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from hpsearch.cli import _parser
from tests.conftest import REPO, digits_spec, free_port, wait_for

COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


def command_of(service: str) -> str:
    """The service's command as one shell line."""
    cmd = SERVICES[service]["command"]
    if cmd[:2] == ["sh", "-c"]:
        return str(cmd[2])
    return shlex.join(cmd)


def test_compose_names_existing_dockerfiles_and_the_extras_they_need() -> None:
    assert {"postgres", "api", "worker"} <= SERVICES.keys()
    server = (REPO / SERVICES["api"]["build"]["dockerfile"]).read_text()
    worker = (REPO / SERVICES["worker"]["build"]["dockerfile"]).read_text()
    assert '".[server]"' in server and "worker" not in server.split("RUN pip")[1]  # no torch
    assert '".[worker]"' in worker
    assert "healthcheck" in SERVICES["api"] and "healthcheck" in SERVICES["postgres"]
    assert (
        SERVICES["worker"]["deploy"]["resources"]["reservations"]["devices"][0]["driver"]
        == "nvidia"
    )
    assert (REPO / "deploy" / "env.example").exists()


@pytest.mark.parametrize("service", ["api", "worker"])
def test_every_hpsearch_command_parses(service: str) -> None:
    for part in command_of(service).split("&&"):
        argv = shlex.split(part)
        if argv[0] == "exec":  # the shell's last command takes its place (and its signals)
            argv = argv[1:]
        assert argv[0] == "hpsearch", part
        args = _parser().parse_args(argv[1:])
        assert hasattr(args, "run"), part


@pytest.fixture
def env_file_tokens() -> Iterator[dict[str, str]]:
    yield {
        "HPSEARCH_ADMIN_TOKEN": "hps_" + secrets.token_hex(32),
        "HPSEARCH_TOKEN": "hps_" + secrets.token_hex(32),
    }


@pytest.mark.postgres
@pytest.mark.slow
def test_the_compose_commands_start_the_stack_without_docker(
    make_postgres_database: Callable[..., str], env_file_tokens: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        **env_file_tokens,
        **SERVICES["api"]["environment"],
        "HPSEARCH_DATABASE_URL": make_postgres_database(migrated=False),
        "HPSEARCH_PORT": str(port),
        "HPSEARCH_ARTIFACT_DIR": str(tmp_path / "artifacts"),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    procs: list[subprocess.Popen[bytes]] = []
    log = open(tmp_path / "stack.log", "wb")  # noqa: SIM115
    try:
        procs.append(
            subprocess.Popen(
                ["sh", "-c", command_of("api")], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        )
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            assert procs[0].poll() is None, (tmp_path / "stack.log").read_text()
            try:
                return httpx.get(f"{url}/api/v1/health").status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 90, "the api service to be healthy")
        admin = {"Authorization": f"Bearer {env_file_tokens['HPSEARCH_ADMIN_TOKEN']}"}
        assert httpx.get(f"{url}/api/v1/studies").status_code == 401  # tokens are on
        spec = digits_spec(
            budget={"max_trials": 2, "parallelism": 1},
            task={"trainer": "mlp_classifier", "dataset": "digits", "epochs": 1},
        )
        study = httpx.post(f"{url}/api/v1/studies", json=spec, headers=admin).json()
        # Here there is no "api" host and no GPU: those two words change, nothing else.
        worker_cmd = command_of("worker").replace("http://api:8765", url)
        worker_cmd = worker_cmd.replace("--gpus all", "--device cpu")
        procs.append(
            subprocess.Popen(
                ["sh", "-c", worker_cmd], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        )

        def done() -> bool:
            s = httpx.get(f"{url}/api/v1/studies/{study['id']}", headers=admin).json()
            return bool(s["state"] == "completed")

        wait_for(done, 180, "the study to complete", interval=0.5)
        # `docker compose stop` sends SIGTERM to the service's command, the shell: the server
        # it started must stop with it, not live on unsupervised.
        procs[0].terminate()
        procs[0].wait(timeout=30)
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{url}/api/v1/health", timeout=2)
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=30)
        log.close()
