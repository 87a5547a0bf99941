"""A population-based-training study with a real server and two real workers running user
code that uses the checkpoint API: the worst trial is replaced by a perturbed copy of the best
one's checkpoint, the lineage is stored, every trial's last checkpoint holds its own lineage's
history, a worker killed in the middle of the copy loses nothing, and the copy's schedule
replayed from scratch (``hpsearch replay``) trains with the recorded hyperparameters.

The trainer (``custom_trainers.paced``) adds its ``quality`` to its score each epoch and
trains an epoch only when the test lets it, so the order in which trials report is the
test's: the three best report epoch 2 before the worst, which is then judged among all four
(none is judged before ``1 / quantile`` trials have reported an epoch). Every wait is on
state the server shows, never on time.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess, wait_for
from tests.integration.test_worker_custom import MODULE, custom_spec, worker_env
from workers.checkpoint_state import decode

EPOCHS = 4
QUALITY = [0.1, 0.4, 0.8, 0.6]  # trial #0 is the worst, #2 the best
ENTRY_POINT = f"{MODULE}:paced"


class Gates:
    """The epochs each trial may train up to (``custom_trainers.paced`` reads them)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def allow(self, number: int, epoch: int) -> None:
        part = self.folder / f"{number}.part"
        part.write_text(str(epoch))
        part.replace(self.folder / str(number))  # atomic: never read half written


def pbt_spec(gates: Path) -> dict[str, Any]:
    return custom_spec(
        "paced",
        epochs=EPOCHS,
        fixed={"gates": str(gates)},
        name="pbt-paced",
        scheduler={
            "kind": "pbt",
            "population": len(QUALITY),
            "interval": 2,
            "quantile": 0.25,
            "perturb": [0.8, 1.2],
            "resample_probability": 0.0,
        },
    ) | {"budget": {"max_trials": len(QUALITY), "parallelism": len(QUALITY)}}


@pytest.mark.slow
def test_pbt_exploits_keep_lineages_and_survive_a_killed_worker(
    make_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = make_server(HPSEARCH_LEASE_SECONDS="3", **worker_env(tmp_path))
    gates = Gates(tmp_path)
    client = server.client()
    study = client.create_study(pbt_spec(tmp_path))["id"]
    for quality in QUALITY:  # the population, in this order: trial #n has QUALITY[n]
        client.enqueue(study, {"quality": quality}, add_to_budget=False)
    worker = ("--study", str(study), "--allow", ENTRY_POINT, "--heartbeat", "0.3")

    def trial(number: int) -> dict[str, Any]:
        return client.trial_by_number(study, number)

    def running(number: int, worker_id: str) -> bool:
        t = trial(number)
        return bool(t["state"] == "running" and t["worker_id"] == worker_id)

    # One slot (the trial runs in the worker's own process, which SIGKILL ends at once) takes
    # the worst trial, the first queued; the other worker's three slots take the rest.
    doomed = server.start_worker(*worker, "--worker-id", "doomed")
    wait_for(lambda: running(0, "doomed"), 30, "trial #0 on the doomed worker")
    survivor = server.start_worker(*worker, "--worker-id", "survivor", "--concurrency", "3")
    for number in (1, 2, 3):
        gates.allow(number, 2)
    wait_for(
        lambda: all(trial(n)["checkpoint_step"] == 2 for n in (1, 2, 3)),
        60,
        "trials #1-#3 at epoch 2 with their checkpoints",
    )
    # Now the worst reports epoch 2, fourth of four: it is judged, and replaced by a copy of
    # the best (#2, the top quantile's one trial) at its checkpoint of epoch 2: trial #4,
    # claimed by the doomed worker's free slot (the others are held).
    gates.allow(0, 2)
    gates.allow(4, 3)
    wait_for(lambda: trial(0)["state"] == "pruned", 30, "trial #0 replaced")
    wait_for(
        lambda: running(4, "doomed") and trial(4)["checkpoint_step"] == 3,
        30,
        "the copy #4 at epoch 3 on the doomed worker",
    )
    doomed.send_signal(signal.SIGKILL)  # no hand-back, no goodbye: the lease must run out
    doomed.wait(timeout=10)
    for number in (1, 2, 3, 4):
        gates.allow(number, EPOCHS)
    assert survivor.wait(timeout=60) == 0  # it leaves once the study is done

    # Nothing lost: every trial is accounted for, and the killed one resumed on the survivor.
    assert client.study(study)["state"] == "completed"
    trials = {t["number"]: t for t in client.trials(study)}
    assert sorted(trials) == [0, 1, 2, 3, 4]
    assert {n: t["state"] for n, t in trials.items()} == {
        0: "pruned",
        1: "completed",
        2: "completed",
        3: "completed",
        4: "completed",
    }
    copy = client.trial(trials[4]["id"])
    assert (copy["attempt"], copy["worker_id"]) == (2, "survivor")
    assert "lease_expired" in [e["kind"] for e in copy["events"]]
    # Its first attempt trained epoch 3 from the copied checkpoint, its second epoch 4 from
    # its own checkpoint of epoch 3.
    assert [(p["step"], p["attempt"]) for p in copy["intermediates"]] == [(3, 1), (4, 2)]

    # The exploit, as decided and as stored.
    replaced = client.trial(trials[0]["id"])
    assert [e["kind"] for e in replaced["events"]].count("exploit") == 1
    assert copy["source"] == "pbt" and copy["parent_trial_id"] == trials[2]["id"]
    # #2's quality, moved by one of the factors (linear scale, range >= 0: multiplied).
    assert copy["params"]["quality"] in (pytest.approx(0.8 * 0.8), pytest.approx(0.8 * 1.2))
    assert "explore" in [e["kind"] for e in copy["events"]]
    api = f"{server.url}/api/v1"
    links = httpx.get(f"{api}/studies/{study}/lineage").json()["trials"]
    parents = {link["number"]: (link["parent_trial_id"], link["step"]) for link in links}
    assert parents == {0: (None, None), 1: (None, None), 2: (None, None), 3: (None, None)} | {
        4: (trials[2]["id"], 2)
    }

    # Every trial's last checkpoint holds its own lineage's history: the epochs its schedule
    # says, each trained by the trial and with the quality the schedule names.
    for number, t in trials.items():
        segments = httpx.get(f"{api}/trials/{t['id']}/schedule").json()["segments"]
        saved = decode(client.download_checkpoint(t["id"]) or b"")
        assert saved["step"] == t["last_step"] == (2 if number == 0 else EPOCHS)
        expected = [
            (s["number"], s["params"]["quality"])
            for s in segments
            for _ in range(s["first_epoch"], s["last_epoch"] + 1)
        ]
        assert list(zip(saved["by"], saved["quality"], strict=True)) == expected
        assert t["metrics"]["dev_accuracy"] == saved["score"]
        if number == 4:
            assert [s["number"] for s in segments] == [2, 4]

    # Replayed from scratch (the CLI's command), the copy's schedule trains as one new trial
    # whose hyperparameters change at the recorded epoch: #2's quality for epochs 1-2, then
    # #4's, as the stored schedule says, to the same score.
    schedule = httpx.get(f"{api}/trials/{copy['id']}/schedule").json()["segments"]
    replayed = subprocess.run(
        [sys.executable, "-m", "hpsearch.cli", "replay", f"{study}/4", "--server", server.url],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert replayed.returncode == 0, replayed.stderr
    assert f"study {study} trial 5 queued: it replays {study}/4" in replayed.stdout
    gates.allow(5, EPOCHS)
    again = server.start_worker(*worker, "--worker-id", "replayer")
    assert again.wait(timeout=60) == 0
    replay = client.trial_by_number(study, 5)
    assert replay["state"] == "completed" and replay["source"] == "replay"
    assert replay["parent_trial_id"] == copy["id"] and replay["attempt"] == 1
    assert [p["step"] for p in replay["intermediates"]] == [1, 2, 3, 4]
    saved = decode(client.download_checkpoint(replay["id"]) or b"")
    assert saved["by"] == [5] * EPOCHS
    assert saved["quality"] == [
        s["params"]["quality"]
        for s in schedule
        for _ in range(s["first_epoch"], s["last_epoch"] + 1)
    ]
    assert replay["metrics"]["dev_accuracy"] == copy["metrics"]["dev_accuracy"]
    own = httpx.get(f"{api}/trials/{replay['id']}/schedule").json()["segments"]
    assert [(s["first_epoch"], s["last_epoch"], s["params"]) for s in own] == [
        (s["first_epoch"], s["last_epoch"], s["params"]) for s in schedule
    ]
