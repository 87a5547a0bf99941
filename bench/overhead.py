"""Scheduling overhead: trials that only sleep, run by 16 worker slots, against the ideal.

    .venv/bin/python bench/overhead.py                      # 1,000 × 1 s and 1,000 × 0.1 s,
                                                            # SQLite and PostgreSQL
    .venv/bin/python bench/overhead.py --trials 200 --sleep 1 --engines sqlite

The anchor is Ray Tune's release test ``tune_scalability_bookkeeping_overhead``: 10,000 trials
of 1 s on 16 CPUs take 715 s against the ideal 625 s, 14 % overhead. Here each trial is an
entry point that sleeps ``--sleep`` seconds and returns; ``--slots`` trials run at once (one
worker process with ``--concurrency``, or ``--processes`` workers sharing the slots), a real
server in between, and the ideal is trials × sleep / slots. Two walls are printed: *span*,
from the first trial's start to the last one's end (the server's clock: scheduling alone),
and *end to end*, from starting the workers to their exit (their start-up included, as in
Ray's figure). Overhead = wall / ideal − 1.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hpsearch.client import Client, wait_until_healthy

REPO = Path(__file__).resolve().parent.parent
ENTRY_POINT = "bench.overhead:sleep"
RAY = (10_000, 1.0, 16, 715.0)  # trials, seconds each, CPUs, measured wall (s)


def sleep(trial: Any) -> dict[str, float]:
    """The trial: sleeps as long as its study says, and reports nothing but its result, with
    when it ran and in which slot (process), for :func:`breakdown`."""
    began = time.time()
    time.sleep(float(trial.params["seconds"]))
    ended = time.time()
    return {"score": float(trial.params["x"]), "began": began, "ended": ended, "pid": os.getpid()}


def breakdown(rows: list[dict[str, Any]], launched: float, exited: float) -> str:
    """Where the end-to-end time beyond the sleeps went, from when each trial really ran
    (the worker's clock; a trial held ahead is recorded as started at its claim): start-up to
    the first sleep, the slots' starts spread out, the mean gap between one trial's end and
    the next one's start in a slot, the time slots sat idle at the end (uneven shares), and
    from the last sleep's end to the end (``exited``: the workers' exit, or with a pool the
    last completion)."""
    runs: dict[float, list[tuple[float, float]]] = {}
    for t in rows:
        m = t["metrics"]
        runs.setdefault(m["pid"], []).append((m["began"], m["ended"]))
    first = min(b for r in runs.values() for b, _ in r)
    last = max(e for r in runs.values() for _, e in r)
    gaps = [b2 - e1 for r in runs.values() for (_, e1), (b2, _) in pairwise(sorted(r))]
    spread = max(min(r)[0] for r in runs.values()) - first
    idle = sum(last - max(r)[1] for r in runs.values()) / len(runs)
    return (
        f"  where: {first - launched:.2f} s to the first sleep, slots' starts spread over "
        f"{spread:.2f} s, {1000 * sum(gaps) / max(1, len(gaps)):.1f} ms between trials in a "
        f"slot (mean of {len(gaps)}), {idle:.2f} s idle at the end per slot, "
        f"{exited - last:.2f} s from the last sleep to the end"
    )


def spec(trials: int, seconds: float, parallelism: int) -> dict[str, Any]:
    return {
        "name": f"overhead-{trials}x{seconds}s",
        "objective": {"metric": "score", "direction": "maximize"},
        "space": {
            "x": {"type": "float", "low": 0.0, "high": 1.0},
            "seconds": {"type": "categorical", "choices": [seconds]},
        },
        "budget": {"max_trials": trials, "parallelism": parallelism},
        "task": {"trainer": "custom", "entry_point": ENTRY_POINT, "epochs": 1},
    }


def all_trials(client: Client, study_id: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while page := client.trials(study_id, limit=1000, offset=len(found)):
        found += page
    return found


def run(
    url: str, env: dict[str, str], trials: int, seconds: float, args: argparse.Namespace
) -> tuple[float, float, float, str]:
    """(span, end to end, start-up, :func:`breakdown`) in seconds for one study; start-up runs
    from starting the workers to the first trial's start."""
    parallelism = args.parallelism or (2 * args.slots + 1 if args.prefetch else args.slots)
    with Client(url) as client:
        study = client.create_study(spec(trials, seconds, parallelism))
        started, started_at, launched = time.perf_counter(), datetime.now(UTC), time.time()
        procs = start_workers(url, env, args, "--study", str(study["id"]))
        for proc in procs:
            assert proc.wait() == 0
        end_to_end = time.perf_counter() - started
        exited = time.time()
        rows = all_trials(client, study["id"])
    assert len(rows) == trials and all(t["state"] == "completed" for t in rows), {
        t["state"] for t in rows
    }
    first = min(_utc(t["started_at"]) for t in rows)
    last = max(_utc(t["finished_at"]) for t in rows)
    return (
        (last - first).total_seconds(),
        end_to_end,
        (first - started_at).total_seconds(),
        breakdown(rows, launched, exited),
    )


def start_workers(
    url: str, env: dict[str, str], args: argparse.Namespace, *flags: str
) -> list[subprocess.Popen[bytes]]:
    worker = [sys.executable, "-m", "hpsearch.cli", "worker", "--server", url, "--quiet"]
    worker += ["--allow", ENTRY_POINT, "--concurrency", str(args.slots // args.processes)]
    worker += ["--prefetch"] if args.prefetch else []
    return [subprocess.Popen([*worker, *flags], env=env, cwd=REPO) for _ in range(args.processes)]


def finish(client: Client, study_id: int) -> list[dict[str, Any]]:
    """The study's trials once it has completed (polled: the workers of a pool do not exit)."""
    while client.study(study_id)["state"] != "completed":
        time.sleep(0.05)
    rows = all_trials(client, study_id)
    assert all(t["state"] == "completed" for t in rows), {t["state"] for t in rows}
    return rows


def run_warm(
    client: Client, trials: int, seconds: float, args: argparse.Namespace
) -> tuple[float, str]:
    """With a pool of workers already waiting (``--keep-alive``, as Ray's figure has its
    cluster up): seconds from the study's creation to its last trial's end, and the
    :func:`breakdown` (its start-up: from the creation to the first sleep)."""
    parallelism = args.parallelism or (2 * args.slots + 1 if args.prefetch else args.slots)
    created = time.time()
    study = client.create_study(spec(trials, seconds, parallelism))
    rows = finish(client, study["id"])
    last = max(_utc(t["finished_at"]) for t in rows).timestamp()
    return last - created, breakdown(rows, created, last)


def warm_pool(
    url: str, env: dict[str, str], args: argparse.Namespace
) -> tuple[Client, list[subprocess.Popen[bytes]]]:
    """Workers that wait for studies, each slot past its start-up (a first study of one short
    trial per slot, run to its end)."""
    client = Client(url)
    procs = start_workers(url, env, args, "--keep-alive")
    warm = spec(args.slots, 1.0, args.slots)
    finish(client, client.create_study({**warm, "name": "warm-up"})["id"])
    return client, procs


def _utc(stamp: str) -> datetime:
    when = datetime.fromisoformat(stamp)
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def percent(wall: float, ideal: float) -> str:
    return f"{100 * (wall / ideal - 1):+5.1f} % overhead"


def serve(database_url: str, tmp: str) -> tuple[str, subprocess.Popen[bytes], dict[str, str]]:
    port = 8700 + os.getpid() % 1000
    env = {
        **os.environ,
        "HPSEARCH_DATABASE_URL": database_url,
        "HPSEARCH_PORT": str(port),
        "HPSEARCH_ARTIFACT_DIR": f"{tmp}/artifacts",
        "HPSEARCH_ACCESS_LOG": "0",
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
    }
    url = f"http://127.0.0.1:{port}"
    log = Path(tmp, "server.log")
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "hpsearch.cli", "server"], env=env, stdout=out, stderr=out
        )
    wait_until_healthy(url, server, 60, log)
    return url, server, env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument(
        "--sleep", type=float, action="append", help="seconds per trial (default: 1 and 0.1)"
    )
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--processes", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--prefetch",
        action="store_true",
        help="workers hold each slot's next trial ahead (hpsearch worker --prefetch)",
    )
    parser.add_argument(
        "--parallelism",
        type=int,
        default=None,
        help="the study's parallelism (default: the slots; with --prefetch, 2 × slots + 1, "
        "room for a trial held ahead by each slot)",
    )
    parser.add_argument(
        "--warm",
        action="store_true",
        help="time each study from its creation, with the workers already up and waiting "
        "(--keep-alive), instead of starting them for it",
    )
    parser.add_argument(
        "--engines", nargs="+", choices=["sqlite", "postgres"], default=["sqlite", "postgres"]
    )
    args = parser.parse_args()
    sleeps = args.sleep or [1.0, 0.1]
    ray_ideal = RAY[0] * RAY[1] / RAY[2]
    print(
        f"anchor: Ray Tune, {RAY[0]} × {RAY[1]:g} s on {RAY[2]} CPUs: {RAY[3]:.0f} s against "
        f"{ray_ideal:.0f} s ideal, {100 * (RAY[3] / ray_ideal - 1):.0f} % overhead"
    )
    print(
        f"here: {args.slots} slots ({args.processes} worker process(es)), {os.cpu_count()} "
        f"CPUs, {'--prefetch' if args.prefetch else 'no prefetch'}, load {os.getloadavg()[0]:.2f}"
    )
    for engine in args.engines:
        with tempfile.TemporaryDirectory(prefix="hpsearch-bench-") as tmp:
            cluster = None
            if engine == "sqlite":
                database_url = f"sqlite:///{tmp}/bench.db"
            else:
                from tests.pg import PostgresCluster

                cluster = PostgresCluster(durable=True).start()
                database_url = cluster.create_database("overhead")
            url, server, env = serve(database_url, tmp)
            pool: list[subprocess.Popen[bytes]] = []
            try:
                if args.warm:
                    client, pool = warm_pool(url, env, args)
                for seconds in sleeps:
                    ideal = args.trials * seconds / args.slots
                    if args.warm:
                        wall, where = run_warm(client, args.trials, seconds, args)
                        print(
                            f"{engine:8s} {args.trials} × {seconds:g} s: ideal {ideal:6.1f} s, "
                            f"workers waiting: {wall:6.1f} s from the study's creation to its "
                            f"last trial's end ({percent(wall, ideal)})\n{where}",
                            flush=True,
                        )
                        continue
                    span, end_to_end, start_up, where = run(url, env, args.trials, seconds, args)
                    print(
                        f"{engine:8s} {args.trials} × {seconds:g} s: ideal {ideal:6.1f} s, "
                        f"span {span:6.1f} s ({percent(span, ideal)}), "
                        f"end to end {end_to_end:6.1f} s ({percent(end_to_end, ideal)}; "
                        f"{start_up:.1f} s to the first trial)\n{where}",
                        flush=True,
                    )
            finally:
                for proc in pool:
                    proc.terminate()  # idle: it exits at once
                    proc.wait(timeout=60)
                server.terminate()
                server.wait(timeout=20)
                if cluster is not None:
                    cluster.stop()


if __name__ == "__main__":
    main()
