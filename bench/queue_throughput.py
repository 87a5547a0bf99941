"""Trial-queue throughput: hpsearch's claim path over HTTP vs Optuna's RDBStorage ask+tell.

Simulated workers are HTTP clients that claim a trial, report 10 epochs and complete it at once,
against a real ``hpsearch server`` (uvicorn) process, on SQLite and on PostgreSQL 15, with 1, 8
and 32 concurrent workers, speaking either protocol a worker may (``--protocols``): ``batched``,
what ``hpsearch worker`` sends when epochs come quicker than the claim's report interval (the
10 reports ride on the completion, which also claims the next trial: one request per trial),
and ``per-epoch``, what it sends for a study with a pruner (claim, 10 reports, complete), in
studies that already hold 0, 10 000 and 100 000 finished trials (seeded by bulk SQL inserts).
Printed: completed trials per second, p50/p99 claim latency, the claim cost at N finished
trials relative to 0, and the CPU time the server processes and PostgreSQL spent per completed
trial while measuring (read from /proc; steadier than trials/s on a shared machine). In the
same run, Optuna's ``RDBStorage`` ask+tell (one process, the way an Optuna worker uses it) on
the same engines at the same trial counts, with ``RandomSampler`` and ``TPESampler``, is the
baseline ratio.

The simulated workers run as coroutines in this process over keep-alive connections with a
minimal HTTP/1.1 client: the load generator must steal as little as possible of the CPU the
server and the database share. PostgreSQL is a throwaway cluster started here (Debian's
``postgresql-15``), with its default durability unless ``--pg-fast``.

    .venv/bin/python bench/queue_throughput.py                   # the whole matrix
    .venv/bin/python bench/queue_throughput.py --engines postgres --workers 32 --finished 0
    .venv/bin/python bench/queue_throughput.py --duration 3 --optuna-samplers random
    .venv/bin/python bench/queue_throughput.py --server-workers 2     # two server processes
    .venv/bin/python bench/queue_throughput.py --parallelism 0   # parallelism = workers

The study's ``parallelism`` is 10 000 unless ``--parallelism`` says otherwise: a random
sampler then samples ahead (``claims.AHEAD``) and most claims take a queued trial. With
``--parallelism 0`` it equals the number of workers, as a team would set it, and every claim
samples its own trial with the study row locked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import create_engine, insert, select, text, update  # noqa: E402

from hpsearch.client import wait_until_healthy  # noqa: E402
from hpsearch.store.clock import utcnow  # noqa: E402
from hpsearch.store.db import upgrade  # noqa: E402
from hpsearch.store.models import Study, Trial  # noqa: E402
from tests.conftest import digits_spec, free_port  # noqa: E402
from tests.pg import PostgresCluster  # noqa: E402

EPOCHS: int = digits_spec()["task"]["epochs"]


def study_spec(name: str, parallelism: int) -> dict[str, Any]:
    return digits_spec(name=name, budget={"max_trials": 10_000_000, "parallelism": parallelism})


def random_params(rng: random.Random) -> dict[str, Any]:
    return {
        "lr": 10 ** rng.uniform(-4, 0),
        "beta": 1 - 10 ** rng.uniform(-3, -1),
        "hidden_units": round(2 ** rng.uniform(4, 8)),
        "layers": rng.randint(1, 3),
        "batch_size": rng.choice([32, 64, 128]),
    }


# -- databases ----------------------------------------------------------------------------


class Engines:
    """Fresh databases by name: SQLite files in a temp dir, or databases in a PG cluster."""

    def __init__(self, pg_fast: bool) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="hpsearch-bench-"))
        self.pg_fast = pg_fast
        self._cluster: PostgresCluster | None = None

    def fresh(self, engine: str, name: str) -> str:
        if engine == "sqlite":
            return f"sqlite:///{self.dir / name}.db"
        if self._cluster is None:
            self._cluster = PostgresCluster(durable=not self.pg_fast).start()
        return self._cluster.create_database(name)

    def database_pid(self, engine: str) -> int | None:
        """PostgreSQL's postmaster (its backends are its children); None for SQLite."""
        if engine != "postgres" or self._cluster is None:
            return None
        return int((self._cluster.data / "postmaster.pid").read_text().split()[0])

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def seed_hpsearch(url: str, study_id: int, n: int) -> None:
    """``n`` completed trials in ``study_id``, inserted in bulk, counters to match."""
    if n == 0:
        return
    engine = create_engine(url)
    rng = random.Random(study_id)
    now = utcnow() - timedelta(hours=1)
    with engine.begin() as conn:
        for start in range(0, n, 10_000):
            rows = []
            for number in range(start, min(n, start + 10_000)):
                value = rng.random()
                rows.append(
                    {
                        "study_id": study_id,
                        "number": number,
                        "params": random_params(rng),
                        "state": "completed",
                        "source": "sampler",
                        "attempt": 1,
                        "worker_id": "seed",
                        "stop_requested": False,
                        "value": value,
                        "feasible": True,
                        "violation": 0.0,
                        "metrics": {"dev_accuracy": value, "latency_ms": 1.0},
                        "last_step": EPOCHS,
                        "created_at": now,
                        "started_at": now,
                        "finished_at": now,
                    }
                )
            conn.execute(insert(Trial), rows)
        best = conn.scalar(
            select(Trial.id).where(Trial.study_id == study_id).order_by(Trial.value.desc()).limit(1)
        )
        conn.execute(
            update(Study)
            .where(Study.id == study_id)
            .values(next_number=n, n_completed=n, best_trial_id=best)
        )
    analyze(engine)
    engine.dispose()


def analyze(engine: Any) -> None:
    """Planner statistics, as autovacuum would gather them after a bulk load."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE"))


# -- the hpsearch server and its simulated workers -----------------------------------------


def tree_cpu_seconds(root: int | None) -> float:
    """User + system CPU seconds of a process and its living descendants (Linux /proc);
    NaN where that cannot be read."""
    if root is None or not Path("/proc/self/stat").exists():
        return math.nan
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # Fields after the command name, which may itself hold spaces and parentheses.
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # it ended meanwhile
        pid = int(entry.name)
        parent[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo.extend(child for child, up in parent.items() if up == pid)
    return total


class Http:
    """A minimal keep-alive HTTP/1.1 JSON client: just what the simulated workers send."""

    def __init__(self, host: str, port: int, token: str | None) -> None:
        self.host, self.port = host, port
        self.auth = f"Authorization: Bearer {token}\r\n" if token else ""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        data = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"{self.auth}Content-Length: {len(data)}\r\n\r\n"
        )
        self.writer.write(head.encode() + data)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        payload = await self.reader.readexactly(length)
        return int(status_line.split()[1]), json.loads(payload) if payload else None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass
class Tally:
    started: float = 0.0
    stopped: float = 0.0
    measuring: bool = False
    completed: int = 0
    claim_seconds: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # CPU seconds spent while measuring by the server's processes and by the database's.
    server_cpu: float = math.nan
    db_cpu: float = math.nan


async def simulated_worker(
    http: Http,
    worker_id: str,
    study_id: int,
    tally: Tally,
    stop: asyncio.Event,
    protocol: str,
) -> None:
    """One worker's requests, trials taking no time.

    ``batched`` is what ``hpsearch worker`` sends when epochs are quicker than the claim's
    ``report_interval_s``: the 10 held-back reports ride on the completion, which also claims
    the next trial (one request per trial). ``per-epoch`` is a worker whose study has a pruner
    (interval 0) or a client that sends each report on its own: claim, 10 reports, complete.
    """
    metrics = {"dev_accuracy": 0.5, "train_accuracy": 0.6, "latency_ms": 1.0}
    claim_body = {"worker_id": worker_id, "host": "bench", "study_id": study_id}
    t0 = time.perf_counter()
    status, reply = await http.post("/api/v1/claims", claim_body)
    while not stop.is_set():
        took = time.perf_counter() - t0
        if status != 200 or reply["trial"] is None:
            tally.errors.append(f"claim: {status} {reply}")
            return
        if tally.measuring:
            tally.claim_seconds.append(took)
        trial = reply["trial"]
        lease = {"worker_id": worker_id, "attempt": trial["attempt"]}
        tid = trial["id"]
        steps = [
            {"step": step, "metrics": {"dev_accuracy": step / EPOCHS, "train_accuracy": 0.5}}
            for step in range(1, EPOCHS + 1)
        ]
        done: dict[str, Any] = {**lease, "metrics": metrics}
        if protocol == "batched":
            done["steps"] = steps
            done["claim_next"] = {"host": "bench", "study_id": study_id}
        else:
            for step in steps:
                status, reply = await http.post(
                    f"/api/v1/trials/{tid}/intermediate", {**lease, **step}
                )
                if status != 200:
                    tally.errors.append(f"report: {status} {reply}")
                    return
        # In the batched protocol the claim is part of this request, and so is timed with it.
        t0 = time.perf_counter()
        status, reply = await http.post(f"/api/v1/trials/{tid}/complete", done)
        if status != 200:
            tally.errors.append(f"complete: {status} {reply}")
            return
        if tally.measuring:
            tally.completed += 1
        if protocol == "batched":
            status, reply = 200, reply["next"]
        else:
            t0 = time.perf_counter()
            status, reply = await http.post("/api/v1/claims", claim_body)


async def drive(
    port: int,
    study_id: int,
    workers: int,
    warmup: float,
    duration: float,
    token: str | None,
    protocol: str = "batched",
    pids: tuple[int | None, int | None] = (None, None),
) -> Tally:
    """``pids``: the server's and the database's root processes, whose CPU time is counted."""
    tally = Tally()
    stop = asyncio.Event()
    clients = [Http("127.0.0.1", port, token) for _ in range(workers)]
    tasks = [
        asyncio.create_task(
            simulated_worker(c, f"bench-{study_id}-{i}", study_id, tally, stop, protocol)
        )
        for i, c in enumerate(clients)
    ]
    await asyncio.sleep(warmup)
    cpu = [tree_cpu_seconds(pid) for pid in pids]
    tally.measuring, tally.started = True, time.perf_counter()
    await asyncio.sleep(duration)
    tally.measuring, tally.stopped = False, time.perf_counter()
    spent = [tree_cpu_seconds(pid) - before for pid, before in zip(pids, cpu, strict=True)]
    tally.server_cpu, tally.db_cpu = spent
    stop.set()
    await asyncio.gather(*tasks)
    for c in clients:
        await c.close()
    return tally


@contextmanager
def hpsearch_server(url: str, processes: int, log: Path) -> Iterator[tuple[int, int]]:
    """The server's port and process id."""

    port = free_port()
    env = {**os.environ, "HPSEARCH_DATABASE_URL": url, "HPSEARCH_PORT": str(port)}
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hpsearch.cli", "server", "--workers", str(processes)],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", proc, 60, log)
        yield port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass(frozen=True)
class QueueResult:
    engine: str
    protocol: str
    finished: int
    workers: int
    trials_per_s: float
    claim_p50_ms: float
    claim_p99_ms: float
    claims: int
    server_ms_per_trial: float
    db_ms_per_trial: float


def run_hpsearch(
    engine: str,
    url: str,
    finished: int,
    workers: int,
    protocol: str,
    args: argparse.Namespace,
    port: int,
    pids: tuple[int | None, int | None],
) -> QueueResult:
    import httpx

    token = os.environ.get("HPSEARCH_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    api = f"http://127.0.0.1:{port}/api/v1"
    created = httpx.post(
        f"{api}/studies",
        json=study_spec(f"bench-{protocol}-{finished}-{workers}", args.parallelism or workers),
        headers=headers,
    )
    created.raise_for_status()
    study_id = created.json()["id"]
    seed_hpsearch(url, study_id, finished)
    tally = asyncio.run(
        drive(port, study_id, workers, args.warmup, args.duration, token, protocol, pids)
    )
    httpx.post(f"{api}/studies/{study_id}/stop", headers=headers).raise_for_status()
    if tally.errors:
        raise RuntimeError(f"simulated workers failed: {tally.errors[:3]}")
    claims = sorted(tally.claim_seconds)
    return QueueResult(
        engine,
        protocol,
        finished,
        workers,
        tally.completed / (tally.stopped - tally.started),
        1000 * statistics.median(claims),
        1000 * claims[min(len(claims) - 1, int(0.99 * len(claims)))],
        len(claims),
        1000 * tally.server_cpu / max(tally.completed, 1),
        1000 * tally.db_cpu / max(tally.completed, 1),
    )


# -- the baseline: Optuna's RDBStorage ask+tell ----------------------------------------------


def optuna_distributions() -> dict[str, Any]:
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    return {
        "lr": FloatDistribution(1e-4, 1.0, log=True),
        # Optuna has no reverse-log scale; a uniform float is the nearest it offers.
        "beta": FloatDistribution(0.9, 0.999),
        "hidden_units": IntDistribution(16, 256, log=True),
        "layers": IntDistribution(1, 3),
        "batch_size": CategoricalDistribution([32, 64, 128]),
    }


def seed_optuna(storage: Any, study_id: int, n: int) -> None:
    """``n`` COMPLETE trials with params and values, in bulk, in Optuna's own tables."""
    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models as om
    from optuna.trial import TrialState

    if n == 0:
        return
    dists = optuna_distributions()
    dist_json = {name: distribution_to_json(d) for name, d in dists.items()}
    rng = random.Random(study_id)
    now = utcnow() - timedelta(hours=1)
    with storage.engine.begin() as conn:
        for start in range(0, n, 10_000):
            numbers = range(start, min(n, start + 10_000))
            conn.execute(
                insert(om.TrialModel.__table__),
                [
                    {
                        "number": i,
                        "study_id": study_id,
                        "state": TrialState.COMPLETE,
                        "datetime_start": now,
                        "datetime_complete": now,
                    }
                    for i in numbers
                ],
            )
        ids = conn.execute(
            select(om.TrialModel.trial_id).where(om.TrialModel.study_id == study_id)
        ).scalars()
        params, values = [], []
        for trial_id in ids:
            p = random_params(rng)
            for name, dist in dists.items():
                params.append(
                    {
                        "trial_id": trial_id,
                        "param_name": name,
                        "param_value": dist.to_internal_repr(p[name]),
                        "distribution_json": dist_json[name],
                    }
                )
            values.append(
                {
                    "trial_id": trial_id,
                    "objective": 0,
                    "value": rng.random(),
                    "value_type": om.TrialValueModel.TrialValueType.FINITE,
                }
            )
        for start in range(0, len(params), 50_000):
            conn.execute(insert(om.TrialParamModel.__table__), params[start : start + 50_000])
        for start in range(0, len(values), 50_000):
            conn.execute(insert(om.TrialValueModel.__table__), values[start : start + 50_000])
    analyze(storage.engine)


@dataclass(frozen=True)
class OptunaResult:
    engine: str
    finished: int
    sampler: str
    trials_per_s: float
    trials: int


def run_optuna(
    engine: str, url: str, finished: int, sampler_name: str, args: argparse.Namespace
) -> OptunaResult:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = (
        optuna.samplers.TPESampler(seed=0)
        if sampler_name == "tpe"
        else optuna.samplers.RandomSampler(seed=0)
    )
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(
        storage=storage, sampler=sampler, study_name="bench", direction="maximize"
    )
    seed_optuna(storage, study._study_id, finished)
    dists = optuna_distributions()
    rng = random.Random(0)

    def ask_tell() -> None:
        trial = study.ask(dists)
        study.tell(trial, rng.random())

    # The first ask reads the seeded trials into Optuna's cache; a long-lived worker pays that
    # once, so it is not timed.
    ask_tell()
    done, t0 = 0, time.perf_counter()
    while done < args.optuna_max_trials and time.perf_counter() - t0 < args.duration:
        ask_tell()
        done += 1
    rate = done / (time.perf_counter() - t0)
    storage.engine.dispose()
    return OptunaResult(engine, finished, sampler_name, rate, done)


# -- the report ---------------------------------------------------------------------------


def print_report(queue: list[QueueResult], baseline: list[OptunaResult]) -> None:
    print(
        "\nhpsearch queue over HTTP, 10 epochs per trial. batched: 1 request per trial (the"
        "\nepochs ride on the completion, which claims the next); per-epoch: claim + 10 reports"
        "\n+ complete. The claim latency of `batched` is that of the completion that claims."
        "\nCPU: milliseconds of CPU time per completed trial, the server's processes and"
        "\nPostgreSQL's (SQLite works inside the server)."
    )
    print(
        f"{'engine':<9}{'protocol':>10}{'finished':>9}{'workers':>8}{'trials/s':>10}"
        f"{'claim p50':>11}{'claim p99':>11}{'p50 vs 0':>10}{'claims':>8}"
        f"{'server CPU':>12}{'db CPU':>9}"
    )
    zero = {(r.engine, r.protocol, r.workers): r for r in queue if r.finished == 0}
    for r in queue:
        ref = zero.get((r.engine, r.protocol, r.workers))
        flat = f"{r.claim_p50_ms / ref.claim_p50_ms:.2f}x" if ref else "-"
        print(
            f"{r.engine:<9}{r.protocol:>10}{r.finished:>9}{r.workers:>8}{r.trials_per_s:>10.1f}"
            f"{r.claim_p50_ms:>9.2f}ms{r.claim_p99_ms:>9.2f}ms{flat:>10}{r.claims:>8}"
            f"{_ms(r.server_ms_per_trial):>12}{_ms(r.db_ms_per_trial):>9}"
        )
    if not baseline:
        return
    print("\nOptuna RDBStorage ask+tell, one process (the baseline)")
    print(f"{'engine':<9}{'finished':>9}{'sampler':>8}{'trials/s':>10}{'trials':>8}")
    for b in baseline:
        print(f"{b.engine:<9}{b.finished:>9}{b.sampler:>8}{b.trials_per_s:>10.1f}{b.trials:>8}")
    print("\nratio: hpsearch trials/s over Optuna ask+tell trials/s (same engine, same finished)")
    print(
        f"{'engine':<9}{'protocol':>10}{'finished':>9}{'workers':>8}{'vs random':>11}{'vs tpe':>10}"
    )
    for r in queue:
        ratios = []
        for name in ("random", "tpe"):
            same = [
                b.trials_per_s
                for b in baseline
                if (b.engine, b.finished, b.sampler) == (r.engine, r.finished, name)
            ]
            ratios.append(f"{r.trials_per_s / same[0]:.1f}x" if same else "-")
        print(
            f"{r.engine:<9}{r.protocol:>10}{r.finished:>9}{r.workers:>8}{ratios[0]:>11}"
            f"{ratios[1]:>10}"
        )


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f} ms"


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _names(text: str) -> list[str]:
    return [x for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--engines", type=_names, default=["sqlite", "postgres"])
    p.add_argument("--workers", type=_ints, default=[1, 8, 32], help="simulated workers")
    p.add_argument("--finished", type=_ints, default=[0, 10_000, 100_000])
    p.add_argument("--duration", type=float, default=5.0, help="seconds measured per cell")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring")
    p.add_argument("--server-workers", type=int, default=1, help="uvicorn processes")
    p.add_argument(
        "--protocols",
        type=_names,
        default=["batched", "per-epoch"],
        help="batched (what `hpsearch worker` sends for quick epochs), per-epoch",
    )
    p.add_argument("--optuna-samplers", type=_names, default=["random", "tpe"])
    p.add_argument("--optuna-max-trials", type=int, default=2000)
    p.add_argument("--pg-fast", action="store_true", help="fsync and synchronous_commit off")
    p.add_argument(
        "--parallelism",
        type=int,
        default=10_000,
        help="the study's budget.parallelism; 0: the number of workers (each claim then samples "
        "its trial, none ahead)",
    )
    args = p.parse_args(argv)

    engines = Engines(args.pg_fast)
    queue: list[QueueResult] = []
    baseline: list[OptunaResult] = []
    try:
        for engine in args.engines:
            url = engines.fresh(engine, "hpsearch_bench")
            upgrade(url)
            log = engines.dir / f"server-{engine}.log"
            with hpsearch_server(url, args.server_workers, log) as (port, server_pid):
                pids = (server_pid, engines.database_pid(engine))
                for finished in args.finished:
                    for protocol in args.protocols:
                        for workers in args.workers:
                            r = run_hpsearch(
                                engine, url, finished, workers, protocol, args, port, pids
                            )
                            print(
                                f"hpsearch {engine} {protocol} finished={finished} "
                                f"workers={workers}: {r.trials_per_s:.1f} trials/s, claim p50 "
                                f"{r.claim_p50_ms:.2f} ms p99 {r.claim_p99_ms:.2f} ms; CPU per "
                                f"trial: server {_ms(r.server_ms_per_trial)}, database "
                                f"{_ms(r.db_ms_per_trial)}",
                                flush=True,
                            )
                            queue.append(r)
            for finished in args.finished:
                for name in args.optuna_samplers:
                    o_url = engines.fresh(engine, f"optuna_{name}_{finished}")
                    b = run_optuna(engine, o_url, finished, name, args)
                    print(
                        f"optuna {engine} finished={finished} {name}: "
                        f"{b.trials_per_s:.1f} trials/s ({b.trials} trials)",
                        flush=True,
                    )
                    baseline.append(b)
    finally:
        engines.close()
    print_report(queue, baseline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
