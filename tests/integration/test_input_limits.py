"""Bad input over real HTTP: sizes, counts, non-finite numbers and names each get a JSON error
with a stable ``code`` and the field it is about; NaN and infinite metrics are stored as
missing and break nothing that reads them (ranking, pages, plot data, exports, Optuna)."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hpsearch.client import Client
from tests.conftest import ServerProcess, digits_spec, free_port
from tests.integration.test_worker_custom import custom_spec

MiB = 1024**2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the module: every test here makes its own study."""
    tmp = tmp_path_factory.mktemp("limits")
    port = free_port()
    env = {
        **os.environ,
        "HPSEARCH_DATABASE_URL": f"sqlite:///{tmp / 'limits.db'}",
        "HPSEARCH_PORT": str(port),
        "HPSEARCH_HOST": "127.0.0.1",
        "HPSEARCH_ARTIFACT_DIR": str(tmp / "artifacts"),
    }
    proc = ServerProcess(
        f"http://127.0.0.1:{port}", env["HPSEARCH_DATABASE_URL"], env, tmp / "server.log"
    )
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url}/api/v1", timeout=30) as c:
        yield c


def strict_json(text: str | bytes) -> Any:
    """JSON as a browser parses it: NaN and Infinity are not JSON."""

    def refuse(token: str) -> None:
        raise AssertionError(f"{token} in a JSON response")

    return json.loads(text, parse_constant=refuse)


def assert_error(
    r: httpx.Response, status: int, code: str, field: str | None = None
) -> dict[str, Any]:
    """The error body every failure has: ``{code, message, errors[{field, message}]}``."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = strict_json(r.text)
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["errors"], list)
    if field is not None:
        fields = [e["field"] for e in body["errors"]]
        assert field in fields, body
        assert field in body["message"], "the message must name the field"
    return body


def post_raw(http: httpx.Client, path: str, document: Any) -> httpx.Response:
    """Posts JSON the way a sloppy client might: NaN and Infinity written as bare tokens."""
    text = json.dumps(document, allow_nan=True)
    return http.post(path, content=text, headers={"content-type": "application/json"})


def create(http: httpx.Client, spec: dict[str, Any]) -> int:
    r = http.post("/studies", json=spec)
    assert r.status_code == 201, r.text
    study_id: int = r.json()["id"]
    return study_id


# -- size ----------------------------------------------------------------------------------


def _chunks(total: int, size: int = 256 * 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        yield b" " * n
        sent += n


def test_a_chunked_body_over_the_limit_is_refused(http: httpx.Client) -> None:
    # No Content-Length: the limit must be enforced while the body arrives.
    r = http.post(
        "/studies", content=_chunks(MiB + 1), headers={"content-type": "application/json"}
    )
    assert "content-length" not in r.request.headers
    assert_error(r, 413, "request_too_large")


def test_a_chunked_body_under_the_limit_is_served(http: httpx.Client) -> None:
    body = json.dumps(digits_spec(budget={"max_trials": 1})).encode()

    def chunked() -> Iterator[bytes]:
        yield body[:10]
        yield body[10:]

    r = http.post("/studies", content=chunked(), headers={"content-type": "application/json"})
    assert r.status_code == 201, r.text


def test_a_checkpoint_upload_has_its_own_larger_limit(http: httpx.Client) -> None:
    study_id = create(http, digits_spec(budget={"max_trials": 1}))
    claim = http.post("/claims", json={"worker_id": "w-ckpt", "study_id": study_id}).json()
    trial = claim["trial"]
    data = os.urandom(2 * MiB)  # twice the request limit
    r = http.put(
        f"/trials/{trial['id']}/checkpoint",
        params={"worker_id": "w-ckpt", "attempt": trial["attempt"], "step": 1},
        content=data,
        headers={"content-type": "application/octet-stream"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["bytes"] == len(data)
    assert http.get(f"/trials/{trial['id']}/checkpoint").content == data


# -- counts --------------------------------------------------------------------------------


def many_params(n: int) -> dict[str, Any]:
    # A custom trainer: its hyperparameter names are the user's own.
    spec = custom_spec("curve")
    spec["space"] = {f"p{i}": {"type": "float", "low": 0.0, "high": 1.0} for i in range(n)}
    return spec


def test_a_space_holds_at_most_200_parameters(http: httpx.Client) -> None:
    create(http, many_params(200))
    assert_error(http.post("/studies", json=many_params(201)), 422, "validation_error", "space")


def test_a_categorical_holds_at_most_1000_choices(http: httpx.Client) -> None:
    spec = custom_spec("curve")
    spec["space"]["kind"] = {"type": "categorical", "choices": list(range(1000))}
    create(http, spec)
    spec["space"]["kind"]["choices"].append(1000)
    r = http.post("/studies", json=spec)
    assert_error(r, 422, "validation_error", "space.kind.choices")


def test_a_shuffled_grid_is_bounded(http: httpx.Client) -> None:
    # Its visiting order is held in memory: 1000 points on each of five parameters would be
    # 16 GiB, asked for by one request.
    spec = digits_spec(sampler={"kind": "grid", "n": 1000, "shuffle": True})
    body = assert_error(http.post("/studies", json=spec), 422, "invalid_spec", "sampler.shuffle")
    assert "at most 1,000,000 combinations" in body["message"]
    create(http, digits_spec(sampler={"kind": "grid", "n": 4, "shuffle": True}))


def test_a_report_holds_at_most_1000_metrics(http: httpx.Client) -> None:
    study_id = create(http, digits_spec(budget={"max_trials": 1}))
    trial = http.post("/claims", json={"worker_id": "w-many", "study_id": study_id}).json()
    lease = {"worker_id": "w-many", "attempt": trial["trial"]["attempt"]}
    metrics = {f"m{i}": 0.5 for i in range(1001)}
    r = http.post(
        f"/trials/{trial['trial']['id']}/intermediate",
        json={**lease, "step": 1, "metrics": metrics},
    )
    assert_error(r, 422, "validation_error", "metrics")


# -- finite numbers ------------------------------------------------------------------------

NAN, INF = float("nan"), float("inf")


def _set(spec: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node: Any = spec
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("budget.target_value", INF),
        ("budget.time_limit_s", INF),
        ("space.lr.low", NAN),
        ("space.lr.step", NAN),
        ("space.batch_size.choices.1", NAN),
        ("constraints.0.threshold", -INF),
        ("task.fixed.weight_decay", INF),
        ("sampler.values.lr.1", NAN),
    ],
)
def test_a_non_finite_number_in_a_spec_is_refused_naming_it(
    http: httpx.Client, field: str, value: float
) -> None:
    spec = digits_spec(budget={"max_trials": 2})
    if field.startswith("sampler."):
        spec["sampler"] = {"kind": "grid", "values": {"lr": [0.01, 0.1]}}
    if field.startswith("task.fixed"):
        spec["task"]["fixed"] = {}
    before = http.get("/studies").json()
    _set(spec, field, value)
    body = assert_error(post_raw(http, "/studies", spec), 422, "validation_error", field)
    assert "finite" in body["message"]
    # Nothing half-stored: the list still reads (a spec stored with a null would break it).
    assert len(http.get("/studies").json()) == len(before)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("space.hidden_units.high", 2**64),
        ("space.hidden_units.low", -(2**31) - 1),
        ("space.layers.step", 2**31),
        ("space.lr.high", 1e16),
        ("space.batch_size.choices.1", 2**60),
        ("task.fixed.weight_decay", -1e300),
        ("sampler.seed", 2**32),
        ("budget.max_failures", 2**63),
    ],
)
def test_a_number_past_its_ceiling_is_refused_naming_it(
    http: httpx.Client, field: str, value: float
) -> None:
    spec = digits_spec(budget={"max_trials": 2})
    spec["task"]["fixed"] = {}
    _set(spec, field, value)
    assert_error(http.post("/studies", json=spec), 422, "validation_error", field)


def test_the_issues_huge_log_int_is_refused(http: httpx.Client) -> None:
    spec = digits_spec(budget={"max_trials": 2})
    spec["space"]["hidden_units"] = {
        "type": "int",
        "low": 16,
        "high": 18446744073709551616,
        "scale": "log",
    }
    body = assert_error(
        http.post("/studies", json=spec), 422, "validation_error", "space.hidden_units.high"
    )
    assert "2147483647" in body["message"]


def test_an_enqueued_non_finite_value_is_refused(http: httpx.Client) -> None:
    study_id = create(http, digits_spec(budget={"max_trials": 1}))
    params = {"lr": NAN, "beta": 0.95, "hidden_units": 32, "layers": 1, "batch_size": 32}
    r = post_raw(http, f"/studies/{study_id}/trials", {"params": params})
    assert r.status_code == 422, r.text
    assert strict_json(r.text)["code"] in ("invalid_input", "validation_error")
    assert "params" in r.json()["message"]


# -- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "has space", "1starts-with-a-digit", "x" * 101, "é"])
def test_a_study_name_is_validated(http: httpx.Client, name: str) -> None:
    r = http.post("/studies", json=digits_spec(name=name))
    assert_error(r, 422, "validation_error", "name")


def test_metric_names_in_a_spec_are_validated(http: httpx.Client) -> None:
    spec = digits_spec(objective={"metric": "dev accuracy", "direction": "maximize"})
    assert_error(http.post("/studies", json=spec), 422, "validation_error", "objective.metric")
    spec = digits_spec(constraints=[{"metric": "", "op": "<=", "threshold": 1}])
    r = http.post("/studies", json=spec)
    assert_error(r, 422, "validation_error", "constraints.0.metric")


@pytest.mark.parametrize("bad", ["bad name", "x" * 101, "", "<script>"])
def test_reported_metric_names_are_validated(http: httpx.Client, bad: str) -> None:
    study_id = create(http, digits_spec(budget={"max_trials": 1}))
    trial = http.post("/claims", json={"worker_id": "w-names", "study_id": study_id}).json()
    tid, lease = trial["trial"]["id"], {"worker_id": "w-names", "attempt": 1}
    metrics = {"dev_accuracy": 0.5, bad: 1.0}
    r = http.post(f"/trials/{tid}/intermediate", json={**lease, "step": 1, "metrics": metrics})
    body = assert_error(r, 422, "validation_error", f"metrics.{bad}")
    assert "invalid name" in body["message"]
    r = http.post(f"/trials/{tid}/complete", json={**lease, "metrics": metrics})
    assert_error(r, 422, "validation_error", f"metrics.{bad}")
    # Refused reports change nothing.
    assert http.get(f"/trials/{tid}").json()["intermediates"] == []


# -- every error has the same shape ---------------------------------------------------------


def test_every_kind_of_error_is_a_json_body_with_a_code(http: httpx.Client) -> None:
    assert_error(http.get("/studies/999999"), 404, "not_found")
    assert_error(http.get("/no-such-endpoint"), 404, "not_found")
    assert_error(http.delete("/health"), 405, "method_not_allowed")
    assert_error(http.get("/studies/abc"), 422, "validation_error", "study_id")
    assert_error(
        http.get("/studies/1/trials", params={"limit": 0}), 422, "validation_error", "limit"
    )
    r = http.post("/studies", content=b"{not json", headers={"content-type": "application/json"})
    body = assert_error(r, 422, "validation_error", "(body)")
    assert "not valid JSON" in body["message"]
    assert_error(http.post("/claims", json={}), 422, "validation_error", "worker_id")
    r = http.post("/claims", json={"worker_id": "w" * 201})
    assert_error(r, 422, "validation_error", "worker_id")
    r = http.post("/claims", json={"worker_id": "w", "surprise": 1})
    assert_error(r, 422, "validation_error", "surprise")

    study_id = create(http, digits_spec(budget={"max_trials": 1}))
    assert_error(http.post(f"/studies/{study_id}/resume"), 409, "invalid_state")
    trial = http.post("/claims", json={"worker_id": "holder", "study_id": study_id}).json()
    tid = trial["trial"]["id"]
    r = http.post(
        f"/trials/{tid}/intermediate",
        json={"worker_id": "intruder", "attempt": 1, "step": 1, "metrics": {}},
    )
    assert_error(r, 409, "lease_lost")
    r = http.post(
        f"/trials/{tid}/intermediate",
        json={"worker_id": "holder", "attempt": 1, "step": -1, "metrics": {}},
    )
    assert_error(r, 422, "validation_error", "step")


# -- NaN and infinite metrics ----------------------------------------------------------------


def _finish(
    http: httpx.Client, study_id: int, worker: str, curve: list[float], final: dict[str, float]
) -> int:
    trial = http.post("/claims", json={"worker_id": worker, "study_id": study_id}).json()
    tid, lease = trial["trial"]["id"], {"worker_id": worker, "attempt": 1}
    for step, value in enumerate(curve, start=1):
        metrics = {"dev_accuracy": value, "train_loss": value}
        r = post_raw(
            http, f"/trials/{tid}/intermediate", {**lease, "step": step, "metrics": metrics}
        )
        assert r.status_code == 200, r.text
    r = post_raw(http, f"/trials/{tid}/complete", {**lease, "metrics": final})
    assert r.status_code == 200, r.text
    return tid


def test_non_finite_metrics_are_stored_as_missing_and_break_nothing(
    server: ServerProcess, http: httpx.Client, tmp_path: Path
) -> None:
    study_id = create(http, digits_spec(budget={"max_trials": 6, "parallelism": 6}))
    ok = _finish(http, study_id, "w0", [0.5, 0.8], {"dev_accuracy": 0.8, "latency_ms": 10})
    nan = _finish(http, study_id, "w1", [0.5, NAN], {"dev_accuracy": NAN, "latency_ms": 10})
    inf = _finish(http, study_id, "w2", [INF, 0.1], {"dev_accuracy": INF, "latency_ms": 10})
    neg = _finish(http, study_id, "w3", [-INF], {"dev_accuracy": -INF, "latency_ms": 10})
    # A satisficing metric that is not a number: unmeasured, so the trial is infeasible.
    unmet = _finish(http, study_id, "w4", [0.9], {"dev_accuracy": 0.99, "latency_ms": NAN})
    low = _finish(http, study_id, "w5", [0.3], {"dev_accuracy": 0.3, "latency_ms": 10})

    for tid in (nan, inf, neg):
        t = strict_json(http.get(f"/trials/{tid}").text)
        assert t["state"] == "completed"
        assert t["metrics"]["dev_accuracy"] is None and t["value"] is None
        assert t["metrics"]["latency_ms"] == 10
    steps = strict_json(http.get(f"/trials/{nan}").text)["intermediates"]
    assert [p["metrics"]["dev_accuracy"] for p in steps] == [0.5, None]
    assert strict_json(http.get(f"/trials/{inf}").text)["intermediates"][0]["metrics"] == {
        "dev_accuracy": None,
        "train_loss": None,
    }
    assert strict_json(http.get(f"/trials/{unmet}").text)["feasible"] is False

    # Ranking: the measured, feasible trials first, in order; the rest never best.
    study = strict_json(http.get(f"/studies/{study_id}").text)
    assert study["best"]["id"] == ok
    assert study["counts"]["completed"] == 6
    ranked = strict_json(http.get(f"/studies/{study_id}/trials", params={"order": "rank"}).text)
    assert [t["id"] for t in ranked[:2]] == [ok, low]
    assert {t["id"] for t in ranked[2:]} == {nan, inf, neg, unmet}
    assert strict_json(http.get(f"/studies/{study_id}/best").text)["id"] == ok

    # Everything that reads the trials: pages, plot data, exports.
    web = httpx.Client(base_url=server.url, timeout=30)
    for page in (f"/studies/{study_id}", f"/trials/{nan}", "/", "/workers"):
        assert web.get(page).status_code == 200, page
    for data in (
        f"/studies/{study_id}/live",
        f"/studies/{study_id}/plots.json",
        f"/studies/{study_id}/curves.json",
        f"/studies/{study_id}/curves.json?selected={nan},{inf}&family=dev",
        f"/trials/{inf}/curves.json",
    ):
        r = web.get(data)
        assert r.status_code == 200, (data, r.text[:500])
        strict_json(r.text)
    web.close()
    exported = strict_json(http.get(f"/studies/{study_id}/export", params={"format": "json"}).text)
    assert len(exported) == 6
    rows = list(csv.DictReader(io.StringIO(http.get(f"/studies/{study_id}/export").text)))
    by_number = {int(r["number"]): r for r in rows}
    nan_number = next(t["number"] for t in exported if t["id"] == nan)
    assert by_number[nan_number]["metric.dev_accuracy"] == ""
    assert by_number[nan_number]["value"] == ""

    # The Optuna export: the unmeasured trials become failed ones, the rest keep their values.
    from hpsearch.optuna_interop import export_study

    optuna = pytest.importorskip("optuna")
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    with Client(server.url) as client:
        name = export_study(client, study_id, storage)
    states = sorted(
        t.state.name for t in optuna.load_study(study_name=name, storage=storage).trials
    )
    assert states == ["COMPLETE"] * 3 + ["FAIL"] * 3
