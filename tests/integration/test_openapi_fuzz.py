"""The OpenAPI document is the contract: Schemathesis generates requests from it, valid and
invalid, sends them to a real uvicorn server and checks every answer against it. No 500s, no
undocumented status, content type or header, no response that breaks its schema, and invalid
input refused.

The server holds a study in every trial state (``tests.http_worker.build_study``), and small
generated ids are mapped onto its studies and trials, so that requests reach the handlers'
logic rather than stopping at 404. Generation is derandomized: CI runs the same examples
every time, a bounded number per operation.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.conftest import ServerProcess, free_port
from tests.http_worker import BuiltStudy, build_study

pytestmark = pytest.mark.slow

# Examples per operation and generation mode (valid, invalid); about 30 operations.
EXAMPLES = 60

CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {"mode": "all"},
        # Examples from the document, the boundary and type-mutation cases of every input
        # ("coverage"), then random ones ("fuzzing").
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": True},
            "fuzzing": {"enabled": True},
        },
        "checks": {
            # "Valid" input a handler refuses for a reason the schema cannot say (a trainer's
            # hyperparameter names, a trial of another study) is not a bug.
            "positive_data_acceptance": {"enabled": False},
        },
    }
)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, BuiltStudy]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    env = {
        **os.environ,
        "HPSEARCH_DATABASE_URL": f"sqlite:///{tmp / 'fuzz.db'}",
        "HPSEARCH_PORT": str(port),
        "HPSEARCH_HOST": "127.0.0.1",
        "HPSEARCH_ARTIFACT_DIR": str(tmp / "artifacts"),
    }
    server = ServerProcess(
        f"http://127.0.0.1:{port}", env["HPSEARCH_DATABASE_URL"], env, tmp / "server.log"
    )
    server.start()
    yield server, build_study(server)
    server.stop()


def _document() -> dict[str, Any]:
    # The document the server serves, built in-process so that pytest can name one test per
    # operation before any server runs (the test checks that the server serves this one).
    from api.app import create_app

    document: dict[str, Any] = create_app().openapi()
    return document


schema = schemathesis.openapi.from_dict(_document(), config=CONFIG)


def _onto_the_study(case: Any, study: BuiltStudy) -> None:
    """Small ids land on the real study and its trials; other values (zero, large, negative,
    not numbers) are kept, to meet the 404s and 422s as well. Zero stays zero: the document's
    minimum is 1, so a case that sends 0 expects a refusal, and mapping it onto a real trial
    would make the server's right answer look like an accepted invalid request."""
    params = case.path_parameters or {}
    trial_ids = sorted(study.trial_ids.values())
    trial_id = params.get("trial_id")
    if isinstance(trial_id, int) and not isinstance(trial_id, bool) and 1 <= trial_id < 1000:
        params["trial_id"] = trial_ids[trial_id % len(trial_ids)]
    study_id = params.get("study_id")
    if isinstance(study_id, int) and not isinstance(study_id, bool) and 1 <= study_id < 1000:
        params["study_id"] = study.id


FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)


@schema.exclude(method="DELETE").parametrize()
@FUZZ
def test_the_operation_keeps_to_the_openapi_document(
    case: Any, fuzzed: tuple[ServerProcess, BuiltStudy]
) -> None:
    server, study = fuzzed
    _onto_the_study(case, study)
    case.call_and_validate(base_url=server.url)


# Deleting the study under test comes last, once everything else has been fuzzed.
@schema.include(method="DELETE").parametrize()
@FUZZ
def test_deleting_keeps_to_the_openapi_document(
    case: Any, fuzzed: tuple[ServerProcess, BuiltStudy]
) -> None:
    server, study = fuzzed
    _onto_the_study(case, study)
    case.call_and_validate(base_url=server.url)


def test_the_document_describes_every_route_and_its_errors(
    fuzzed: tuple[ServerProcess, BuiltStudy],
) -> None:
    import httpx

    server, _ = fuzzed
    document = httpx.get(f"{server.url}/openapi.json").json()
    assert document == _document(), "the server serves the document the fuzzing was built from"
    paths = document["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            responses = operation["responses"]
            # Every error a route can give is documented with the one error body.
            for status in ("401", "403", "413", "422"):
                schema_ref = responses[status]["content"]["application/json"]["schema"]
                assert schema_ref == {"$ref": "#/components/schemas/ErrorBody"}, where
            if "{" in path:
                assert "404" in responses, where
    assert {
        "/api/v1/studies",
        "/api/v1/studies/{study_id}",
        "/api/v1/trials/{trial_id}",
        "/api/v1/claims",
        "/api/v1/workers",
        "/api/v1/health",
    } <= set(paths)


def test_with_authentication_on_every_operation_answers_a_documented_401(
    make_server: Any,
) -> None:
    import httpx

    from tests.integration.test_auth import make_tokens

    server = make_server(HPSEARCH_AUTH_CACHE_SECONDS="0")
    token = make_tokens(server, ["admin"])["admin"]
    document = _document()
    for path, operations in document["paths"].items():
        url = server.url + path.replace("{study_id}", "1").replace("{trial_id}", "1")
        for method in operations:
            if path == "/api/v1/health":
                continue  # public: load balancers probe it
            r = httpx.request(method.upper(), url, timeout=10)
            where = f"{method.upper()} {path}"
            assert r.status_code == 401, (where, r.status_code, r.text)
            assert r.json()["code"] == "unauthorized", where
            assert r.headers["www-authenticate"] == "Bearer", where
            assert "401" in operations[method]["responses"], where
    # The token opens them (a GET of each collection).
    headers = {"Authorization": f"Bearer {token}"}
    for path in ("/api/v1/studies", "/api/v1/workers"):
        assert httpx.get(server.url + path, headers=headers, timeout=10).status_code == 200
