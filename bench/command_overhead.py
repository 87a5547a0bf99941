"""What running a trial as a program costs: a ``command`` trial whose program does nothing
against an entry-point trial doing nothing (the baseline), through a real server and worker.

    .venv/bin/python bench/command_overhead.py              # 40 trials of each, 3 rounds
    .venv/bin/python bench/command_overhead.py --trials 100

Both studies run one after the other on one worker with one slot, SQLite, rounds alternating
so the machine's swings hit both. A trial's cost is the time from the first trial's start to
the last one's end, over the number of trials: claiming, starting, reporting, checkpoint and
log handling and completing included. The program is ``python -c`` printing its one report
(the interpreter's start is part of what a command trial costs); the entry point returns the
same metrics. Each configuration keeps its fastest round (others' load only slows a run).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.overhead import serve
from hpsearch.client import Client

REPO = Path(__file__).resolve().parent.parent
PROGRAM = 'import json; print(json.dumps({"step": 1, "dev_accuracy": 1.0}))'
ENTRY_POINT = "bench.command_overhead:nothing"


def nothing(trial: Any) -> dict[str, float]:
    """The baseline: an entry point that reports its one step and returns."""
    trial.report(1, {"dev_accuracy": 1.0})
    return {"dev_accuracy": 1.0}


def spec(trainer: str, trials: int) -> dict[str, Any]:
    task: dict[str, Any] = {"trainer": trainer, "epochs": 1}
    if trainer == "command":
        task["command"] = [sys.executable, "-c", PROGRAM, "{x}"]
    else:
        task["entry_point"] = ENTRY_POINT
    return {
        "name": f"overhead-{trainer}",
        "objective": {"metric": "dev_accuracy", "direction": "maximize"},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "budget": {"max_trials": trials, "parallelism": 1},
        "task": task,
    }


def seconds_per_trial(client: Client, url: str, env: dict[str, str], trainer: str, n: int) -> float:
    study = client.create_study(spec(trainer, n))
    worker = [sys.executable, "-m", "hpsearch.cli", "worker", "--server", url, "--quiet"]
    allow = ["--allow", ENTRY_POINT, "--allow-command", f"{sys.executable} -c"]
    subprocess.run(
        [*worker, *allow, "--study", str(study["id"])],
        env=env,
        check=True,
        cwd=REPO,
    )
    trials = client.trials(study["id"])
    assert all(t["state"] == "completed" for t in trials), [t["error"] for t in trials]
    start = min(datetime.fromisoformat(t["started_at"]) for t in trials)
    end = max(datetime.fromisoformat(t["finished_at"]) for t in trials)
    return (end - start).total_seconds() / len(trials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hpsearch-bench-") as tmp:
        url, server, env = serve(f"sqlite:///{tmp}/bench.db", tmp)
        try:
            best = {"entry_point": float("inf"), "command": float("inf")}
            with Client(url) as client:
                for r in range(args.rounds):
                    for kind in ("entry_point", "command"):
                        trainer = "custom" if kind == "entry_point" else "command"
                        took = seconds_per_trial(client, url, env, trainer, args.trials)
                        best[kind] = min(best[kind], took)
                        print(f"round {r + 1} {kind:12s} {took * 1000:7.1f} ms/trial", flush=True)
        finally:
            server.terminate()
            server.wait(timeout=20)
    base, command = best["entry_point"], best["command"]
    print(f"\nentry point doing nothing: {base * 1000:.1f} ms/trial (baseline)")
    print(f"command doing nothing:     {command * 1000:.1f} ms/trial")
    print(f"command overhead: {(command - base) * 1000:+.1f} ms/trial ({command / base:.2f}x)")
    # ms of the interpreter's own start, for scale: what any `python train.py` pays.
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    bare = (time.perf_counter() - started) * 1000
    print(f"(a bare `{Path(sys.executable).name} -c pass` here: {bare:.1f} ms)")


if __name__ == "__main__":
    main()
