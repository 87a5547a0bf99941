"""The web view's data over a real server: exports, plot and curve JSON, live fragments,
the workers page. The study is built by speaking the worker protocol over HTTP."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable

import httpx
import pytest

from hpsearch.client import ApiError, Client
from tests.conftest import ServerProcess, digits_spec, wait_for
from tests.http_worker import WorkerOverHttp, build_study


def test_csv_and_json_exports_hold_every_trial(server: ServerProcess) -> None:
    built = build_study(server)
    api = f"{server.url}/api/v1/studies/{built.id}"
    r = httpx.get(f"{api}/export", params={"format": "csv"}, timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    assert r.headers["content-disposition"].endswith('-trials.csv"')
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [int(row["number"]) for row in rows] == list(range(13))
    assert {"param.lr", "param.batch_size", "metric.dev_accuracy", "metric.latency_ms"} <= set(
        rows[0]
    )
    by_number = {int(row["number"]): row for row in rows}
    for n in built.infeasible_numbers:
        assert by_number[n]["feasible"] == "false"
        assert by_number[n]["broken"] == "latency_ms ≤ 100"
    assert by_number[built.best_number]["feasible"] == "true"
    assert by_number[built.failed_number]["state"] == "failed"
    assert by_number[built.failed_number]["error"].startswith("RuntimeError: training diverged")
    assert by_number[built.running_number]["state"] == "running"
    assert float(by_number[0]["metric.dev_accuracy"]) == float(by_number[0]["value"])

    j = httpx.get(f"{api}/export", params={"format": "json"}, timeout=30)
    assert j.status_code == 200 and j.headers["content-type"].startswith("application/json")
    trials = j.json()
    listed = httpx.get(f"{api}/trials", params={"limit": 100}, timeout=30).json()
    assert trials == listed
    assert httpx.get(f"{server.url}/api/v1/studies/999/export").status_code == 404
    assert httpx.get(f"{api}/export", params={"format": "xml"}).status_code == 422


def test_plot_and_curve_data_show_the_feasible_best_and_where_trials_stopped(
    server: ServerProcess,
) -> None:
    built = build_study(server)
    base = f"{server.url}/studies/{built.id}"
    plots = httpx.get(f"{base}/plots.json", timeout=30).json()
    assert (plots["ended"], plots["valued"], plots["failed"]) == (12, 11, 1)
    names = [t["name"] for t in plots["history"]["data"]]
    assert "broke latency_ms ≤ 100 (2)" in names and "pruned (1)" in names
    star = next(t for t in plots["history"]["data"] if t["name"] == "best feasible")
    assert star["x"] == [built.best_number]
    assert len(plots["params"]) == 5 and plots["parallel"] is not None
    # 10 completed trials: too few to rank parameters on, and the page says so.
    assert plots["importance"] is None
    assert plots["importance_note"] == "too few completed trials to tell: 10 of the 30 needed"

    # The same figures as posters (static SVG), at the sizes asked for, each point of the
    # history with its trial's id; a plot not asked for, or with nothing to show, has none.
    sizes = "history:800x400,param:400x250,curves:600x300,importance:500x300"
    posters = httpx.get(f"{base}/posters", params={"sizes": sizes}, timeout=30).json()
    assert posters["history"].startswith('<svg class="poster"')
    assert 'width="800" height="400"' in posters["history"]
    assert sorted(posters["params"]) == sorted(
        f["layout"]["meta"]["param"] for f in plots["params"]
    )
    assert all('width="400" height="250"' in svg for svg in posters["params"].values())
    ids = {
        int(i)
        for said in re.findall(r'data-ids="([\d ]+)"', posters["history"])
        for i in said.split()
    }
    drawn = {i for t in plots["history"]["data"] for i in t.get("customdata") or []}
    assert ids == drawn and built.trial_ids[built.best_number] in ids
    assert posters["curves"] is not None and posters["parallel"] is None  # not asked for
    assert posters["importance"] is None  # too few trials: the page says so instead
    bad = httpx.get(f"{base}/posters", params={"sizes": "history:800"}, timeout=30)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "sizes"

    curves = httpx.get(f"{base}/curves.json", timeout=30).json()
    assert curves["family"] == "accuracy" and curves["families"] == ["accuracy", "loss"]
    labelled = {t["number"]: t["label"] for t in curves["trials"]}
    assert labelled == {built.best_number: "best"}
    stops = [t for t in curves["figure"]["data"] if t["name"] in ("pruned here", "failed here")]
    assert {t["text"][0] for t in stops} == {"pruned at step 2", "failed at step 2"}

    pick = built.trial_ids[built.infeasible_numbers[0]]
    other_study = httpx.post(
        f"{server.url}/api/v1/studies", json={**_spec_of(server, built.id), "name": "other"}
    ).json()["id"]
    foreign = WorkerOverHttp(server, "w2").claim(other_study)["id"]
    chosen = httpx.get(
        f"{base}/curves.json", params={"selected": f"{pick},{foreign},999999", "family": "loss"}
    ).json()
    assert chosen["family"] == "loss"
    # A trial of another study (or none) is not drawn among this study's curves.
    assert [(t["id"], t["label"]) for t in chosen["trials"]] == [
        (built.trial_ids[built.best_number], "best"),
        (pick, "selected"),
    ]
    assert "trial 1 · dev" in [t["name"] for t in chosen["figure"]["data"]]


def _spec_of(server: ServerProcess, study_id: int) -> dict[str, object]:
    spec: dict[str, object] = httpx.get(f"{server.url}/api/v1/studies/{study_id}").json()["spec"]
    return spec


def test_live_fragment_follows_the_study(server: ServerProcess) -> None:
    built = build_study(server)
    live = f"{server.url}/studies/{built.id}/live"
    before = httpx.get(live).json()
    assert (before["state"], before["ended"], before["running"]) == ("running", 12, 1)
    assert f'class="best" data-trial="{built.best_number}"' in before["html"]["trials"]
    built.worker.run(built.running, 4, 0.99, metrics={"latency_ms": 10})
    after = httpx.get(live, params={"order": "number", "state": "completed"}).json()
    assert (after["ended"], after["running"]) == (13, 0)
    assert after["best_id"] == built.trial_ids[built.running_number]
    rows = re.findall(r'data-trial="(\d+)"', after["html"]["trials"])
    assert rows == [str(n) for n in range(13) if n not in (3, 5)]  # completed, by number
    httpx.post(f"{server.url}/api/v1/studies/{built.id}/pause").raise_for_status()
    assert httpx.get(live).json()["state"] == "paused"


def test_workers_page_tells_alive_from_lost_and_exited(
    make_server: Callable[..., ServerProcess],
) -> None:
    server = make_server(HPSEARCH_LEASE_SECONDS="1")
    spec = digits_spec()
    study_id = httpx.post(f"{server.url}/api/v1/studies", json=spec).json()["id"]
    worker = WorkerOverHttp(server)
    trial = worker.claim(study_id)
    page = httpx.get(f"{server.url}/workers").text
    assert 'data-worker="e2e-worker" data-status="alive"' in page
    assert f"study {study_id} · trial {trial['number']}</a>" in page
    assert "e2e-host" in page and "cpu" in page
    worker.post("/claims", {"worker_id": "quiet-worker", "study_id": 999})
    # Two lease periods (2 s) without a word: lost.
    wait_for(
        lambda: (
            'data-worker="quiet-worker" data-status="lost"'
            in httpx.get(f"{server.url}/workers").text
        ),
        timeout=30,
        what="the silent worker to be shown lost",
    )
    # A worker that says it leaves is shown exited, not lost; one never seen is a 404.
    Client(server.url).worker_exited("quiet-worker")
    assert (
        'data-worker="quiet-worker" data-status="exited"' in httpx.get(f"{server.url}/workers").text
    )
    listed = {w["id"]: w for w in httpx.get(f"{server.url}/api/v1/workers").json()}
    assert listed["quiet-worker"]["exited_at"] is not None
    assert listed["e2e-worker"]["exited_at"] is None
    with pytest.raises(ApiError) as info:
        Client(server.url).worker_exited("never-seen")
    assert info.value.status == 404
    # Back under the same id: working again.
    worker.post("/claims", {"worker_id": "quiet-worker", "study_id": 999})
    assert (
        'data-worker="quiet-worker" data-status="alive"' in httpx.get(f"{server.url}/workers").text
    )
