"""Where a batched trial's server CPU goes, inside one process and without sockets.

The ASGI app is called directly, as uvicorn would call it, with what ``hpsearch worker``
sends for a trial whose epochs are quick: its completion, carrying 10 epochs and claiming the
next trial (request parsing, authorization, validation, the store, the response). The
baseline is the store's calls alone for the same trials (the completion, then the claim, in
``Store.together`` as the route makes them), on the same database in the same process. Rounds
alternate between the two, so that a machine whose speed drifts weighs on both alike.

Prints, per engine: CPU per trial through the app and through the store alone, their ratio,
and the SQL statements per trial. PostgreSQL's own CPU is not counted (another process: see
``queue_throughput.py``, which measures it over HTTP).

    .venv/bin/python bench/queue_cpu.py --engines sqlite,postgres --trials 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


from api.app import create_app  # noqa: E402
from hpsearch.settings import Settings  # noqa: E402
from hpsearch.store import Database, Store, upgrade  # noqa: E402
from tests.conftest import digits_spec  # noqa: E402
from tests.pg import PostgresCluster  # noqa: E402
from tests.unit.conftest import statements_run  # noqa: E402

EPOCHS = 10
METRICS = {"dev_accuracy": 0.5, "train_accuracy": 0.6, "latency_ms": 1.0}
STEPS = [
    {"step": s, "metrics": {"dev_accuracy": s / EPOCHS, "train_accuracy": 0.5}}
    for s in range(1, EPOCHS + 1)
]
# A study that never runs out: the random sampler samples ahead, as in queue_throughput.py.
SPEC = digits_spec(name="cpu", budget={"max_trials": 10_000_000, "parallelism": 10_000})


class Asgi:
    """Requests straight into the app, as uvicorn would send them."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        raw = json.dumps(body).encode()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"bench"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(raw)).encode()),
            ],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
        }
        sent = False
        status = 0
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:  # the app waits for a disconnect that never comes
                await asyncio.Event().wait()
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            else:
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        reply = json.loads(b"".join(chunks))
        if not 200 <= status < 300:
            raise RuntimeError(f"POST {path}: {status} {reply}")
        return reply


class ThroughApp:
    """Batched trials through the app, one after another, as one worker sends them."""

    def __init__(self, app: Any) -> None:
        self.http = Asgi(app)
        self.trial: dict[str, Any] = {}
        self.where: dict[str, Any] = {}

    async def start(self) -> None:
        study = await self.http.post("/api/v1/studies", SPEC)
        self.where = {"host": "bench", "study_id": study["id"]}
        claimed = await self.http.post("/api/v1/claims", {"worker_id": "app", **self.where})
        self.trial = claimed["trial"]

    async def run(self, trials: int) -> None:
        for _ in range(trials):
            done = {
                "worker_id": "app",
                "attempt": self.trial["attempt"],
                "metrics": METRICS,
                "steps": STEPS,
                "claim_next": self.where,
            }
            path = f"/api/v1/trials/{self.trial['id']}/complete"
            self.trial = (await self.http.post(path, done))["next"]["trial"]


class ThroughStore:
    """The same trials as the store's calls alone: the baseline."""

    def __init__(self, store: Store) -> None:
        self.store = store
        study = store.create_study(SPEC)
        self.study_id = study.id
        self.claim = store.claim("store", "bench", (), study.id)
        self.steps = [(s["step"], s["metrics"]) for s in STEPS]

    def run(self, trials: int) -> None:
        store = self.store
        for _ in range(trials):
            c = self.claim
            assert c is not None
            with store.together():
                store.complete(c.holder("store"), METRICS, False, self.steps)
                self.claim = store.claim("store", "bench", (), self.study_id, after=c.trial_id)


async def measure(url: str, args: argparse.Namespace) -> dict[str, float]:
    settings = Settings(database_url=url)
    app = create_app(settings)
    store = Store(
        Database(url), lease_seconds=settings.lease_seconds, probe_seconds=settings.probe_seconds
    )
    cpu: dict[str, list[float]] = {"app": [], "store": []}
    statements: dict[str, int] = {}
    async with app.router.lifespan_context(app):
        through_app, through_store = ThroughApp(app), ThroughStore(store)
        await through_app.start()
        await through_app.run(args.warmup)
        through_store.run(args.warmup)
        with statements_run(app.state.store) as app_sql, statements_run(store) as store_sql:
            for _ in range(args.rounds):  # alternating, a round of each at a time
                start = time.process_time()
                await through_app.run(args.trials)
                cpu["app"].append(time.process_time() - start)
                start = time.process_time()
                through_store.run(args.trials)
                cpu["store"].append(time.process_time() - start)
            statements = {"app": len(app_sql), "store": len(store_sql)}
    store.db.dispose()
    done = args.trials * args.rounds
    return {
        "app_ms": 1000 * statistics.median(cpu["app"]) / args.trials,
        "store_ms": 1000 * statistics.median(cpu["store"]) / args.trials,
        "app_statements": statements["app"] / done,
        "store_statements": statements["store"] / done,
    }


def database(engine: str, cluster: Callable[[], PostgresCluster], scratch: Path) -> str:
    if engine == "postgres":
        url = cluster().create_database("hpsearch_cpu")
    else:
        url = f"sqlite:///{scratch / 'cpu.db'}"
    upgrade(url)
    return url


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engines", default="sqlite,postgres")
    p.add_argument("--trials", type=int, default=1000, help="trials per round")
    p.add_argument("--rounds", type=int, default=3, help="rounds of each, alternating")
    p.add_argument("--warmup", type=int, default=200)
    args = p.parse_args(argv)

    started: list[PostgresCluster] = []

    def cluster() -> PostgresCluster:
        if not started:
            started.append(PostgresCluster().start())
        return started[0]

    results = {}
    with tempfile.TemporaryDirectory(prefix="hpsearch-cpu-") as scratch:
        try:
            for engine in [e for e in args.engines.split(",") if e]:
                url = database(engine, cluster, Path(scratch))
                results[engine] = asyncio.run(measure(url, args))
        finally:
            for c in started:
                c.stop()
    print(
        f"\nCPU per batched trial in this process (medians of {args.rounds} rounds of "
        f"{args.trials}); baseline: the store's calls alone"
    )
    print(f"{'engine':<9}{'app':>10}{'store':>10}{'app/store':>11}{'statements':>18}")
    for engine, r in results.items():
        print(
            f"{engine:<9}{r['app_ms']:>8.2f}ms{r['store_ms']:>8.2f}ms"
            f"{r['app_ms'] / r['store_ms']:>10.2f}x"
            f"{r['app_statements']:>9.2f} / {r['store_statements']:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
