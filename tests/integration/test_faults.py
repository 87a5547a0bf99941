"""Fault injection with real processes: workers SIGKILLed at random moments, the server
SIGKILLed and restarted, PostgreSQL restarted under load, a worker frozen past its lease.

After each, the study must add up: every trial completed exactly once or failed with a
reason, the study's counts equal its trials' states, and every report the server
acknowledged to a worker is in the database. Workers run :func:`acknowledged` (below), which
appends each report the server answered 200 to a file, so the test knows exactly what was
promised.

The kill moments are drawn from a seeded generator: the sleeps between kills choose *when* a
fault happens, they never wait for something to be done (that is ``wait_for``'s job).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from hpsearch.client import ApiError, Client
from tests.conftest import ServerProcess, wait_for
from tests.integration.test_worker_custom import worker_env
from tests.pg import PG_BIN, PostgresCluster

ENTRY_POINT = f"{__name__}:acknowledged"
LEASE_SECONDS = "2"
HEARTBEAT_SECONDS = "0.3"
KILLS = 6


# -- the trainer the workers run -------------------------------------------------------------


def curve_value(quality: float, step: int, epochs: int) -> float:
    """Fixed by the trial's parameters: a re-run of a step reports the same value."""
    return quality * step / epochs


def acknowledged(trial: Any) -> dict[str, float]:
    """Reports ``epochs`` steps, ``step_seconds`` apart (the "epoch"); logs every report the
    server acknowledged, and every one it refused, to the file ``params.ack_log``."""
    log = Path(trial.params["ack_log"])
    pause = float(trial.params["step_seconds"])
    quality = float(trial.params["quality"])
    value = 0.0
    for step in range(1, trial.epochs + 1):
        time.sleep(pause)  # the work of one epoch
        value = curve_value(quality, step, trial.epochs)
        try:
            stop = trial.report(step, {"dev_accuracy": value})
        except ApiError as e:
            _append(log, f"refused {os.getpid()} {trial.number} {step} {e.status}")
            raise
        _append(log, f"acked {os.getpid()} {trial.number} {step} {value!r}")
        if stop:
            break
    return {"dev_accuracy": value, "latency_ms": 1.0}


def _append(log: Path, line: str) -> None:
    # One short write in append mode: lines from concurrent workers never interleave.
    with open(log, "a", encoding="utf-8") as f:
        f.write(line + "\n")


# -- building and checking a study ---------------------------------------------------------


def fault_spec(trials: int, parallelism: int, ack_log: Path, **task: Any) -> dict[str, Any]:
    fixed = {"ack_log": str(ack_log), "step_seconds": task.pop("step_seconds", 0.05)}
    return {
        "name": "faults",
        "objective": {"metric": "dev_accuracy", "direction": "maximize"},
        "space": {"quality": {"type": "float", "low": 0.1, "high": 1.0}},
        "sampler": {"kind": "random", "seed": 0},
        "budget": {"max_trials": trials, "parallelism": parallelism},
        "task": {
            "trainer": "custom",
            "entry_point": ENTRY_POINT,
            "epochs": task.pop("epochs", 4),
            "fixed": fixed,
        },
    }


def start_worker(server: ServerProcess, study_id: int, name: str) -> subprocess.Popen[bytes]:
    return server.start_worker(
        "--study",
        str(study_id),
        "--worker-id",
        name,
        "--allow",
        ENTRY_POINT,
        "--heartbeat",
        HEARTBEAT_SECONDS,
        log_name=name,
    )


def acks(ack_log: Path) -> list[tuple[str, int, int, int, str]]:
    """(kind, pid, trial number, step, value or status) for each line of the log."""
    if not ack_log.exists():
        return []
    out = []
    for line in ack_log.read_text(encoding="utf-8").splitlines():
        kind, pid, number, step, rest = line.split()
        out.append((kind, int(pid), int(number), int(step), rest))
    return out


def at_least(client: Client, study_id: int, trials: int) -> bool:
    """Whether ``trials`` trials of the study have completed."""
    done: int = client.study(study_id)["counts"]["completed"]
    return done >= trials


def assert_study_adds_up(client: Client, study_id: int, trials: int, ack_log: Path) -> None:
    study = client.study(study_id)
    rows = client.trials(study_id, limit=1000)
    assert study["state"] == "completed", study
    assert len(rows) == trials
    assert sorted(t["number"] for t in rows) == list(range(trials))

    # The counts the study reports are its trials' states.
    states = Counter(t["state"] for t in rows)
    for state in ("queued", "running", "completed", "pruned", "failed"):
        assert study["counts"][state] == states.get(state, 0), (state, study["counts"], states)
    assert states["queued"] == states["running"] == 0

    details = {t["number"]: client.trial(t["id"]) for t in rows}
    for number, t in details.items():
        kinds = [e["kind"] for e in t["events"]]
        if t["state"] == "completed":
            # Completed exactly once, with the metrics its function returned.
            assert kinds.count("completed") == 1, (number, kinds)
            quality = t["params"]["quality"]
            assert t["value"] == pytest.approx(quality), (number, t["metrics"])
        else:
            assert t["state"] == "failed", (number, t["state"])
            assert t["error"], f"trial {number} failed without a reason"

    # Every acknowledged report is in the database, with the value that was acknowledged.
    promised = [a for a in acks(ack_log) if a[0] == "acked"]
    assert promised, "no report was acknowledged: the study did not run"
    for _, pid, number, step, value in promised:
        stored = {p["step"]: p["metrics"] for p in details[number]["intermediates"]}
        assert step in stored, f"trial {number} step {step} acknowledged to pid {pid}, lost"
        assert stored[step]["dev_accuracy"] == float(value), (number, step, stored[step])


@pytest.fixture
def ack_log(tmp_path: Path) -> Path:
    return tmp_path / "acks.log"


# -- the faults ------------------------------------------------------------------------------


@pytest.mark.slow
def test_workers_killed_at_random_moments_lose_nothing(
    make_server: Callable[..., ServerProcess], tmp_path: Path, ack_log: Path
) -> None:
    server = make_server(HPSEARCH_LEASE_SECONDS=LEASE_SECONDS, **worker_env(tmp_path))
    rng = random.Random(8)
    with server.client() as client:
        # About 0.8 s a trial, 8 s of work for four workers: the kills land mid-study.
        spec = fault_spec(40, 4, ack_log, step_seconds=0.2)
        study_id = client.create_study(spec)["id"]
        live = {f"w{i}": start_worker(server, study_id, f"w{i}") for i in range(4)}
        wait_for(lambda: acks(ack_log), 60, "the first acknowledged report")
        killed = []
        deadline = time.monotonic() + 120
        while len(killed) < KILLS and time.monotonic() < deadline:
            time.sleep(rng.uniform(0.2, 0.8))  # a random moment, not a wait
            trials = client.trials(study_id, limit=1000)
            if client.study(study_id)["state"] == "completed":
                break
            # A worker in the middle of a trial, where there is one.
            holders = {t["worker_id"] for t in trials if t["state"] == "running"}
            names = sorted(n for n in live if n in holders) or sorted(live)
            victim = live.pop(rng.choice(names))
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=30)
            killed.append(victim)
            name = f"w{len(killed) + 3}"
            live[name] = start_worker(server, study_id, name)
        wait_for(
            lambda: client.study(study_id)["state"] == "completed", 150, "the study to complete"
        )
        for w in live.values():
            assert w.wait(timeout=60) == 0
        assert len(killed) == KILLS, "the study ended before every kill"
        assert_study_adds_up(client, study_id, 40, ack_log)
        # The kills hit running trials: some were leased again, by another worker.
        assert any(t["attempt"] > 1 for t in client.trials(study_id, limit=1000))


@pytest.mark.slow
def test_the_server_killed_and_restarted_mid_study_loses_nothing(
    make_server: Callable[..., ServerProcess], tmp_path: Path, ack_log: Path
) -> None:
    # A lease that outlasts the restart: the fault here is the server's, not the workers'.
    server = make_server(HPSEARCH_LEASE_SECONDS="6", **worker_env(tmp_path))
    rng = random.Random(9)
    with server.client() as client:
        study_id = client.create_study(fault_spec(40, 4, ack_log))["id"]
    workers = [start_worker(server, study_id, f"w{i}") for i in range(4)]
    for threshold in (8, 20):
        with server.client() as client:
            wait_for(partial(at_least, client, study_id, threshold), 90, f"{threshold} trials")
        time.sleep(rng.uniform(0.0, 0.5))  # a random moment, not a wait
        server.stop(signal.SIGKILL)
        # The workers keep reporting into a dead server: their clients retry with backoff.
        server.start()
    for w in workers:
        assert w.wait(timeout=150) == 0
    with server.client() as client:
        assert_study_adds_up(client, study_id, 40, ack_log)


@pytest.mark.slow
@pytest.mark.postgres
def test_postgres_restarted_under_load_loses_nothing(
    make_server: Callable[..., ServerProcess],
    postgres_cluster: PostgresCluster,
    postgres_url: str,
    tmp_path: Path,
    ack_log: Path,
) -> None:
    server = make_server(postgres_url, HPSEARCH_LEASE_SECONDS="6", **worker_env(tmp_path))
    with server.client() as client:
        study_id = client.create_study(fault_spec(40, 4, ack_log))["id"]
        workers = [start_worker(server, study_id, f"w{i}") for i in range(4)]
        for threshold in (8, 20):
            wait_for(partial(at_least, client, study_id, threshold), 90, f"{threshold} trials")
            # A fast restart: sessions are cut, the server's pooled connections go stale, and
            # requests in the gap are answered 503 (retried by the workers' clients).
            restart_postgres(postgres_cluster)
        for w in workers:
            assert w.wait(timeout=150) == 0
        assert_study_adds_up(client, study_id, 40, ack_log)


def restart_postgres(cluster: PostgresCluster) -> None:
    """``pg_ctl restart -m fast``: open sessions are cut, the server comes back on its port
    (with its log file, so that it holds no pipe of ours open)."""
    log = str(cluster.root / "server.log")
    pg_ctl = str(PG_BIN / "pg_ctl")
    cluster._run(pg_ctl, "-D", str(cluster.data), "-l", log, "-m", "fast", "-w", "restart")


@pytest.mark.slow
def test_a_worker_frozen_past_its_lease_changes_nothing_when_it_wakes(
    make_server: Callable[..., ServerProcess], tmp_path: Path, ack_log: Path
) -> None:
    server = make_server(HPSEARCH_LEASE_SECONDS=LEASE_SECONDS, **worker_env(tmp_path))
    with server.client() as client:
        spec = fault_spec(1, 1, ack_log, epochs=6, step_seconds=0.3)
        study_id = client.create_study(spec)["id"]
        frozen = start_worker(server, study_id, "frozen")
        wait_for(lambda: acks(ack_log), 60, "the worker's first acknowledged report")
        # Its network (and everything else) stalls: no heartbeat, no report.
        frozen.send_signal(signal.SIGSTOP)
        try:
            # Once the lease has run out the trial goes to the next claimer.
            claim = wait_for(
                lambda: client.claim("rescuer", "test", [], study_id, [ENTRY_POINT])["trial"],
                30,
                "the frozen worker's trial to be leased again",
            )
        finally:
            frozen.send_signal(signal.SIGCONT)
        assert claim["attempt"] == 2
        tid = claim["id"]
        before = client.trial(tid)
        # Woken, the frozen worker reports again: refused (409), it drops the trial.
        wait_for(
            lambda: [a for a in acks(ack_log) if a[0] == "refused"],
            30,
            "the woken worker's late report to be refused",
        )
        after = client.trial(tid)
        assert after["intermediates"] == before["intermediates"], "a late report changed data"
        assert (after["worker_id"], after["attempt"]) == ("rescuer", 2)

        quality = claim["params"]["quality"]
        for step in range(1, 7):
            value = curve_value(quality, step, 6)
            client.report(tid, "rescuer", 2, step, {"dev_accuracy": value})
            _append(ack_log, f"acked {os.getpid()} {claim['number']} {step} {value!r}")
        client.complete(tid, "rescuer", 2, {"dev_accuracy": quality, "latency_ms": 1.0})
        assert frozen.wait(timeout=60) == 0

        refused = [a for a in acks(ack_log) if a[0] == "refused"]
        assert [(a[2], a[4]) for a in refused] == [(claim["number"], "409")]
        assert_study_adds_up(client, study_id, 1, ack_log)
        done = client.trial(tid)
        assert {p["attempt"] for p in done["intermediates"]} == {2}
        kinds = [e["kind"] for e in done["events"]]
        assert kinds.count("completed") == 1
