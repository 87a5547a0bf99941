"""Authentication on a real server: tokens hashed at rest, roles, browser log-in, bind rules."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from hpsearch.auth import create_token
from hpsearch.store import Database
from hpsearch.store.db import upgrade
from tests.conftest import ServerProcess, digits_spec, free_port, wait_for

CLI = [sys.executable, "-m", "hpsearch.cli"]


def cli(server: ServerProcess, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "hpsearch.cli", *args],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def make_tokens(server: ServerProcess, roles: list[str]) -> dict[str, str]:
    """Tokens created the way `hpsearch token create` does, on the server's database."""
    db = Database(server.database_url)
    with db.write() as session:
        tokens = {role: create_token(session, f"{role}-token", role)[1] for role in roles}
    db.dispose()
    return tokens


def api(
    server: ServerProcess, method: str, path: str, token: str | None = None, **kwargs: object
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(
        method, f"{server.url}/api/v1{path}", headers=headers, timeout=10, **kwargs
    )  # type: ignore[arg-type]


@pytest.fixture
def secured(make_server: Callable[..., ServerProcess]) -> tuple[ServerProcess, dict[str, str]]:
    server = make_server(HPSEARCH_AUTH_CACHE_SECONDS="0.2")
    assert api(server, "GET", "/studies").status_code == 200  # open before any token
    tokens = make_tokens(server, ["admin", "user", "worker", "viewer"])
    wait_for(
        lambda: api(server, "GET", "/studies").status_code == 401, 15, "authentication to turn on"
    )
    return server, tokens


def test_roles(secured: tuple[ServerProcess, dict[str, str]]) -> None:
    server, t = secured
    r = api(server, "GET", "/studies")
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    assert api(server, "GET", "/studies", "hps_not-a-real-token").status_code == 401
    spec = digits_spec(budget={"max_trials": 1, "parallelism": 1})
    assert api(server, "POST", "/studies", t["viewer"], json=spec).status_code == 403
    assert api(server, "POST", "/studies", t["worker"], json=spec).status_code == 403
    assert api(server, "POST", "/studies", t["user"], json=spec).status_code == 201
    assert api(server, "GET", "/studies", t["viewer"]).status_code == 200
    assert api(server, "GET", "/studies", t["worker"]).status_code == 403
    claim = {"worker_id": "w"}
    assert api(server, "POST", "/claims", t["user"], json=claim).status_code == 403
    assert api(server, "POST", "/claims", t["viewer"], json=claim).status_code == 403
    got = api(server, "POST", "/claims", t["worker"], json=claim)
    assert got.status_code == 200 and got.json()["trial"] is not None
    assert api(server, "POST", "/studies/1/stop", t["admin"]).status_code == 200
    assert api(server, "GET", "/health").status_code == 200  # health stays public


def test_tokens_are_hashed_at_rest(secured: tuple[ServerProcess, dict[str, str]]) -> None:
    server, tokens = secured
    db_file = server.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(db_file) as conn:
        rows = conn.execute("SELECT token_hash FROM api_tokens").fetchall()
        dump = "\n".join(conn.iterdump())
    assert len(rows) == 4
    for token in tokens.values():
        assert token not in dump


def test_cli_tokens_and_revocation(secured: tuple[ServerProcess, dict[str, str]]) -> None:
    server, tokens = secured
    created = cli(server, "token", "create", "--name", "ci", "--role", "viewer")
    fresh = created.strip().splitlines()[-1]
    assert fresh.startswith("hps_") and "shown once" in created
    assert api(server, "GET", "/studies", fresh).status_code == 200
    listing = cli(server, "token", "list")
    viewer_id = next(line.split()[0] for line in listing.splitlines() if "viewer" in line)
    cli(server, "token", "revoke", viewer_id)
    wait_for(
        lambda: api(server, "GET", "/studies", tokens["viewer"]).status_code == 401,
        15,
        "the revoked token to be refused",
    )


def test_browser_login_sets_a_strict_httponly_cookie(
    secured: tuple[ServerProcess, dict[str, str]],
) -> None:
    server, tokens = secured
    page = httpx.get(f"{server.url}/", headers={"accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/login"
    bad = httpx.post(f"{server.url}/login", data={"token": "hps_wrong"})
    assert bad.status_code == 401 and "unknown or revoked" in bad.text
    with httpx.Client(base_url=server.url) as browser:
        r = browser.post("/login", data={"token": tokens["viewer"]})
        assert r.status_code == 303
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert browser.get("/").status_code == 200
        assert browser.get("/api/v1/studies").status_code == 200


def test_worker_with_a_worker_token_runs_a_trial(
    secured: tuple[ServerProcess, dict[str, str]],
) -> None:
    server, t = secured
    spec = digits_spec(
        budget={"max_trials": 1, "parallelism": 1},
        task={"trainer": "mlp_classifier", "dataset": "digits", "epochs": 1},
    )
    study = api(server, "POST", "/studies", t["user"], json=spec).json()
    # A token bound to the box's ids, as SECURITY.md advises.
    db = Database(server.database_url)
    with db.write() as session:
        bound = create_token(session, "box1", "worker", workers="box1-*")[1]
    db.dispose()
    server.env["HPSEARCH_TOKEN"] = bound
    worker = server.start_worker("--study", str(study["id"]), "--worker-id", "box1-a")
    assert worker.wait(timeout=120) == 0
    done = api(server, "GET", f"/studies/{study['id']}", t["viewer"]).json()
    assert done["counts"]["completed"] == 1


def test_oversized_request_is_refused(server: ServerProcess) -> None:
    r = httpx.post(
        f"{server.url}/api/v1/studies",
        content=b"x" * (2 * 1024**2),
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 413 and r.json()["code"] == "request_too_large"


def test_no_token_means_loopback_only(make_server: Callable[..., ServerProcess]) -> None:
    server = make_server()
    port = str(free_port())
    refused = subprocess.run(
        [sys.executable, "-m", "hpsearch.cli", "server", "--host", "0.0.0.0", "--port", port],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "refusing to serve 0.0.0.0 with no API token" in refused.stderr
    assert "--insecure-no-auth" in refused.stderr


def test_revoking_every_token_locks_the_server_rather_than_opening_it(
    secured: tuple[ServerProcess, dict[str, str]],
) -> None:
    server, tokens = secured
    for line in cli(server, "token", "list").splitlines():
        if line.split() and line.split()[0].isdigit():
            cli(server, "token", "revoke", line.split()[0])
    wait_for(
        lambda: api(server, "GET", "/studies", tokens["admin"]).status_code == 401,
        15,
        "the revoked admin token to be refused",
    )
    # No valid token left, yet authentication stays on: nobody gets in without a new one.
    assert api(server, "GET", "/studies").status_code == 401


def _claim_one(server: ServerProcess, t: dict[str, str], token: str, worker_id: str) -> int:
    spec = digits_spec(budget={"max_trials": 2, "parallelism": 2})
    api(server, "POST", "/studies", t["user"], json=spec).raise_for_status()
    got = api(server, "POST", "/claims", token, json={"worker_id": worker_id})
    assert got.status_code == 200, got.text
    trial_id: int = got.json()["trial"]["id"]
    return trial_id


def test_a_bound_worker_token_acts_only_as_its_workers(
    secured: tuple[ServerProcess, dict[str, str]],
) -> None:
    server, t = secured
    created = cli(
        server, "token", "create", "--name", "box1", "--role", "worker", "--workers", "box1-*"
    )
    box1 = created.strip().splitlines()[-1]
    assert "box1-*" in cli(server, "token", "list")
    other = api(server, "POST", "/claims", box1, json={"worker_id": "box2-0"})
    assert other.status_code == 403 and "box1-*" in other.json()["message"]
    trial = _claim_one(server, t, box1, "box1-0")
    lease = {"worker_id": "box2-0", "attempt": 1}
    refused = [
        ("POST", f"/trials/{trial}/heartbeat", {"json": lease}),
        ("POST", f"/trials/{trial}/intermediate", {"json": {**lease, "step": 1, "metrics": {}}}),
        ("POST", f"/trials/{trial}/complete", {"json": {**lease, "metrics": {}}}),
        ("POST", f"/trials/{trial}/fail", {"json": {**lease, "error": "x"}}),
        ("POST", f"/trials/{trial}/release", {"json": lease}),
        ("PUT", f"/trials/{trial}/checkpoint", {"params": {**lease, "step": 1}, "content": b"x"}),
        ("GET", f"/trials/{trial}/checkpoint", {"params": lease}),
        ("POST", f"/trials/{trial}/test-evaluation/heartbeat", {"json": lease}),
        ("POST", f"/trials/{trial}/test-evaluation/fail", {"json": {**lease, "error": "x"}}),
        (
            "POST",
            f"/trials/{trial}/test-evaluation/complete",
            {"json": {**lease, "metrics": {}}},
        ),
    ]
    for method, path, kwargs in refused:
        r = api(server, method, path, box1, **kwargs)
        assert r.status_code == 403, (method, path, r.text)
    # Under its own id the same token works, and the trial was never disturbed.
    held = {"worker_id": "box1-0", "attempt": 1}
    assert api(server, "POST", f"/trials/{trial}/heartbeat", box1, json=held).status_code == 200
    # A token made without --workers keeps acting under any id (see SECURITY.md).
    assert (
        api(server, "POST", "/claims", t["worker"], json={"worker_id": "anything"}).status_code
        == 200
    )
    # --workers binds worker tokens only, and is an id or a prefix ending in *.
    for role, pattern in (("viewer", "box1-*"), ("worker", "box*1"), ("worker", "a b")):
        out = subprocess.run(
            [*CLI, "token", "create", "--name", "x", "--role", role, "--workers", pattern],
            env=server.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 1 and out.stderr.startswith("error:"), out.stderr
        assert "Traceback" not in out.stderr


def test_a_checkpoint_goes_only_to_its_lease_holder_or_a_reader(
    secured: tuple[ServerProcess, dict[str, str]],
) -> None:
    server, t = secured
    tokens = {}
    db = Database(server.database_url)
    with db.write() as session:
        for box in ("box1", "box2"):
            tokens[box] = create_token(session, box, "worker", workers=f"{box}-*")[1]
    db.dispose()
    trial = _claim_one(server, t, tokens["box1"], "box1-0")
    holder = {"worker_id": "box1-0", "attempt": 1}
    path = f"/trials/{trial}/checkpoint"
    put = api(server, "PUT", path, tokens["box1"], params={**holder, "step": 1}, content=b"w1")
    assert put.status_code == 200, put.text
    got = api(server, "GET", path, tokens["box1"], params=holder)
    assert got.status_code == 200 and got.content == b"w1"
    # Another box's token, which never held the trial: refused, however it asks.
    for params in ({}, {"worker_id": "box2-0", "attempt": 1}, holder):
        r = api(server, "GET", path, tokens["box2"], params=params)
        assert r.status_code == 403 and r.json()["code"] == "forbidden", (params, r.text)
        assert b"w1" not in r.content
        info = api(server, "GET", f"{path}/info", tokens["box2"], params=params)
        assert info.status_code == 403
    # So is an unbound worker token that does not name the holder, and a wrong attempt.
    assert api(server, "GET", path, t["worker"]).status_code == 403
    wrong_attempt = {"worker_id": "box1-0", "attempt": 2}
    assert api(server, "GET", path, tokens["box1"], params=wrong_attempt).status_code == 403
    # Readers may; the holder, once the trial is over, may not.
    for role in ("viewer", "user", "admin"):
        r = api(server, "GET", path, t[role])
        assert r.status_code == 200 and r.content == b"w1", role
    # Handed back and claimed again (as a re-queued trial is): the new holder may read it, to
    # resume from it; the old one no longer may.
    released = api(server, "POST", f"/trials/{trial}/release", tokens["box1"], json=holder)
    assert released.status_code == 200, released.text
    claim = {"worker_id": "box1-1", "study_id": released.json()["study_id"]}
    again = api(server, "POST", "/claims", tokens["box1"], json=claim).json()["trial"]
    assert again["id"] == trial and again["attempt"] == 2
    resumer = {"worker_id": "box1-1", "attempt": again["attempt"]}
    got = api(server, "GET", path, tokens["box1"], params=resumer)
    assert got.status_code == 200 and got.content == b"w1"
    assert api(server, "GET", path, tokens["box1"], params=holder).status_code == 403
    done = api(
        server, "POST", f"/trials/{trial}/complete", tokens["box1"], json={**resumer, "metrics": {}}
    )
    assert done.status_code == 200, done.text
    assert api(server, "GET", path, tokens["box1"], params=resumer).status_code == 403


def test_an_unknown_token_is_not_remembered(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'tokens.db'}"
    upgrade(url)
    db = Database(url)
    with db.write() as session:
        create_token(session, "admin", "admin")
    # A long cache: a refusal, if it were cached, would outlive the test.
    server = make_server(url, HPSEARCH_AUTH_CACHE_SECONDS="600")
    fresh = "hps_" + "f" * 43
    assert api(server, "GET", "/studies", fresh).status_code == 401
    with db.write() as session:
        create_token(session, "late", "viewer", token=fresh)
    db.dispose()
    assert api(server, "GET", "/studies", fresh).status_code == 200


def test_every_artifact_route_checks_the_lease_holder() -> None:
    """The ``artifacts`` tag lets worker tokens in; only holder_or_reader keeps them to the
    trials they hold, so a route must have both or neither."""
    import importlib
    import pkgutil

    from fastapi.routing import APIRoute

    import api.routes
    from api.auth import ARTIFACTS, holder_or_reader

    routes = [
        route
        for module in pkgutil.iter_modules(api.routes.__path__)
        for route in importlib.import_module(f"api.routes.{module.name}").router.routes
        if isinstance(route, APIRoute)
    ]
    tagged = {r.path for r in routes if ARTIFACTS in (r.tags or [])}
    guarded = {
        r.path for r in routes if any(d.call is holder_or_reader for d in r.dependant.dependencies)
    }
    assert tagged == guarded and "/trials/{trial_id}/checkpoint" in tagged
