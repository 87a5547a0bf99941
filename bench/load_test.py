"""A bounded load test on loopback: simulated workers and readers against a real server.

A real ``hpsearch server`` (uvicorn, one process unless ``--server-workers``) on 127.0.0.1,
on a fresh SQLite file (or ``--postgres``: a throwaway PostgreSQL 15 cluster started here).
64 simulated workers claim trials, report ``--epochs`` steps ``--epoch-seconds`` apart (their
"training"), heartbeat, and complete, over and over; 8 readers poll what a team's browsers
poll: the study page and its live part, the study and trials API, one trial, and the plot
data (plots.json, curves.json), one request every ``--read-seconds``. For ``--seconds``
(default 60) then everything stops by itself: every loop checks the deadline, and every
request has a timeout.

Printed per endpoint class: requests, p50 and p99 latency under load, and the same for the
baseline named "idle": one client, one request at a time, on the same server and data just
before the load starts; the ratio is p99 under load / p99 idle. Then the error rate: any
answer >= 400 or a failed request is an error, listed by class and status.

    .venv/bin/python bench/load_test.py                  # 60 s, SQLite
    .venv/bin/python bench/load_test.py --seconds 20 --postgres

The load generator is coroutines over keep-alive connections with a minimal HTTP/1.1 client,
so that it takes little of the CPU the server needs. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hpsearch.client import wait_until_healthy  # noqa: E402
from tests.conftest import digits_spec  # noqa: E402

HOST = "127.0.0.1"  # the only address this script talks to
REQUEST_TIMEOUT = 30.0


# -- a minimal keep-alive HTTP/1.1 client ----------------------------------------------------


class Connection:
    """One keep-alive connection to the server: JSON in, status and body out."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        try:
            return await asyncio.wait_for(self._exchange(method, path, body), REQUEST_TIMEOUT)
        except BaseException:
            await self.close()  # a half-read answer must not be read as the next one's
            raise

    async def _exchange(self, method: str, path: str, body: Any) -> tuple[int, bytes]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(HOST, self.port)
        reader, writer = self._streams
        payload = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        )
        writer.write(head.encode() + payload)
        await writer.drain()
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionError("the server closed the connection")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            data = await _read_chunked(reader)
        else:
            data = await reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, data

    async def close(self) -> None:
        if self._streams is not None:
            _, writer = self._streams
            self._streams = None
            writer.close()
            with suppress(OSError):
                await writer.wait_closed()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readline()).split(b";")[0], 16)
        if size == 0:
            await reader.readline()
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readline()


# -- what is measured ------------------------------------------------------------------------


@dataclass
class Tally:
    """Latencies (seconds) per endpoint class, and errors by class and status."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    requests: int = 0

    async def call(
        self, conn: Connection, kind: str, method: str, path: str, body: Any = None
    ) -> tuple[int, Any]:
        self.requests += 1
        start = time.perf_counter()
        try:
            status, data = await conn.request(method, path, body)
        except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError) as e:
            self.errors[(kind, type(e).__name__)] += 1
            return 0, None
        self.latencies[kind].append(time.perf_counter() - start)
        if status >= 400:
            self.errors[(kind, f"{status} {data[:120].decode(errors='replace')}")] += 1
        parsed = json.loads(data) if data and data[:1] in (b"{", b"[") else None
        return status, parsed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the simulated clients ---------------------------------------------------------------------


async def simulated_worker(
    port: int, study_id: int, n: int, tally: Tally, deadline: float, args: argparse.Namespace
) -> None:
    conn = Connection(port)
    rng = random.Random(n)
    worker = f"load-worker-{n}"
    claim_body = {"worker_id": worker, "host": "loopback", "devices": ["cpu"], "study_id": study_id}
    # Workers do not start in step, and their epochs vary: no synchronized bursts.
    await asyncio.sleep(rng.uniform(0, args.epoch_seconds))
    # Bounded in count as well as in time.
    for _ in range(100_000):
        if time.monotonic() >= deadline:
            break
        status, reply = await tally.call(conn, "claim", "POST", "/api/v1/claims", claim_body)
        trial = reply.get("trial") if status == 200 and reply else None
        if trial is None:
            await asyncio.sleep(0.5)
            continue
        tid, lease = trial["id"], {"worker_id": worker, "attempt": trial["attempt"]}
        top, rate = rng.uniform(0.5, 0.99), rng.uniform(0.2, 1.5)
        metrics: dict[str, float] = {}
        for step in range(1, args.epochs + 1):
            await asyncio.sleep(args.epoch_seconds * rng.uniform(0.8, 1.2))  # the epoch
            dev = top * (1 - 2.718 ** (-rate * step))
            metrics = {"dev_accuracy": dev, "train_accuracy": min(1.0, dev + 0.02 * step)}
            body = {**lease, "step": step, "metrics": metrics}
            await tally.call(conn, "report", "POST", f"/api/v1/trials/{tid}/intermediate", body)
            if step == args.epochs // 2:
                await tally.call(
                    conn, "heartbeat", "POST", f"/api/v1/trials/{tid}/heartbeat", lease
                )
        final = {**metrics, "latency_ms": rng.uniform(10, 200), "train_error": 0.05}
        await tally.call(
            conn,
            "complete",
            "POST",
            f"/api/v1/trials/{tid}/complete",
            {**lease, "metrics": final, "pruned": False},
        )
    await conn.close()


async def reader(
    port: int, study_id: int, n: int, tally: Tally, deadline: float, args: argparse.Namespace
) -> None:
    """What a browser on the study page polls, and a script reading the API."""
    conn = Connection(port)
    rng = random.Random(1000 + n)
    # A trial the reader has seen listed (the study's first trial until it lists some).
    seen = [1]
    gets: list[tuple[str, Callable[[], str]]] = [
        ("page", lambda: f"/studies/{study_id}"),
        ("page live", lambda: f"/studies/{study_id}/live"),
        ("study api", lambda: f"/api/v1/studies/{study_id}"),
        ("trials api", lambda: f"/api/v1/studies/{study_id}/trials?order=rank&limit=100"),
        ("trial api", lambda: f"/api/v1/trials/{rng.choice(seen)}"),
        ("plots.json", lambda: f"/studies/{study_id}/plots.json"),
        ("curves.json", lambda: f"/studies/{study_id}/curves.json"),
    ]
    await asyncio.sleep(rng.uniform(0, args.read_seconds))
    for i in range(100_000):
        if time.monotonic() >= deadline:
            break
        kind, path = gets[(i + n) % len(gets)]
        status, reply = await tally.call(conn, kind, "GET", path())
        if kind == "trials api" and status == 200 and reply:
            seen = [t["id"] for t in reply]
        await asyncio.sleep(args.read_seconds)
    await conn.close()


async def idle_baseline(port: int, study_id: int, tally: Tally, rounds: int) -> None:
    """Every endpoint class, one request at a time: the latency with nothing else running."""
    conn = Connection(port)
    worker = "baseline-worker"
    for _ in range(rounds):
        body = {"worker_id": worker, "host": "loopback", "devices": [], "study_id": study_id}
        _, reply = await tally.call(conn, "claim", "POST", "/api/v1/claims", body)
        trial = reply["trial"]
        tid, lease = trial["id"], {"worker_id": worker, "attempt": trial["attempt"]}
        for step in (1, 2):
            body = {**lease, "step": step, "metrics": {"dev_accuracy": 0.5 + 0.1 * step}}
            await tally.call(conn, "report", "POST", f"/api/v1/trials/{tid}/intermediate", body)
        await tally.call(conn, "heartbeat", "POST", f"/api/v1/trials/{tid}/heartbeat", lease)
        final = {"dev_accuracy": 0.7, "latency_ms": 50.0}
        body = {**lease, "metrics": final, "pruned": False}
        await tally.call(conn, "complete", "POST", f"/api/v1/trials/{tid}/complete", body)
        for kind, path in (
            ("page", f"/studies/{study_id}"),
            ("page live", f"/studies/{study_id}/live"),
            ("study api", f"/api/v1/studies/{study_id}"),
            ("trials api", f"/api/v1/studies/{study_id}/trials?order=rank&limit=100"),
            ("trial api", f"/api/v1/trials/{tid}"),
            ("plots.json", f"/studies/{study_id}/plots.json"),
            ("curves.json", f"/studies/{study_id}/curves.json"),
        ):
            await tally.call(conn, kind, "GET", path)
    await conn.close()


# -- the server --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def running_server(database_url: str, workdir: Path, processes: int) -> Iterator[int]:
    port = free_port()
    env = {
        **os.environ,
        "HPSEARCH_DATABASE_URL": database_url,
        "HPSEARCH_HOST": HOST,
        "HPSEARCH_PORT": str(port),
        "HPSEARCH_ARTIFACT_DIR": str(workdir / "artifacts"),
        # Simulated epochs are short; a lease well past them keeps expiry out of the figures.
        "HPSEARCH_LEASE_SECONDS": "120",
        "PYTHONPATH": str(REPO),
    }
    log = open(workdir / "server.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hpsearch.cli", "server", "--workers", str(processes)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_healthy(f"http://{HOST}:{port}", proc, 60, workdir / "server.log")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def study_spec() -> dict[str, Any]:
    return digits_spec(name="load-test", budget={"max_trials": 10_000_000, "parallelism": 10_000})


# -- the run -------------------------------------------------------------------------------------


async def load(port: int, args: argparse.Namespace) -> tuple[Tally, Tally, float]:
    setup = Connection(port)
    status, created = await setup.request("POST", "/api/v1/studies", study_spec())
    if status != 201:
        raise RuntimeError(f"could not create the study: {status} {created!r}")
    study_id = json.loads(created)["id"]
    await setup.close()

    await idle_baseline(port, study_id, Tally(), 2)  # warm-up: templates, caches, pool
    idle = Tally()
    await idle_baseline(port, study_id, idle, args.baseline_rounds)

    tally = Tally()
    start = time.monotonic()
    deadline = start + args.seconds
    clients: list[Awaitable[None]] = [
        simulated_worker(port, study_id, n, tally, deadline, args) for n in range(args.workers)
    ]
    clients += [reader(port, study_id, n, tally, deadline, args) for n in range(args.readers)]
    # Every loop ends at the deadline; the margin covers the requests in flight then.
    await asyncio.wait_for(asyncio.gather(*clients), args.seconds + REQUEST_TIMEOUT + 30)
    return idle, tally, time.monotonic() - start


def report(idle: Tally, tally: Tally, elapsed: float, args: argparse.Namespace) -> int:
    print(
        f"\n{args.workers} workers ({args.epochs} reports {args.epoch_seconds:g} s apart per "
        f"trial), {args.readers} readers (one GET every {args.read_seconds:g} s), "
        f"{elapsed:.0f} s, {args.engine}, {args.server_workers} server process(es)"
    )
    header = f"{'endpoint':<12} {'requests':>9} {'p50 ms':>8} {'p99 ms':>8}"
    print(f"{header} {'idle p50':>9} {'idle p99':>9} {'p99 / idle p99':>15}")
    total = 0
    for kind in sorted(tally.latencies, key=lambda k: -len(tally.latencies[k])):
        values, base = tally.latencies[kind], idle.latencies.get(kind, [])
        total += len(values)
        p50, p99 = percentile(values, 0.5) * 1e3, percentile(values, 0.99) * 1e3
        line = f"{kind:<12} {len(values):>9} {p50:>8.1f} {p99:>8.1f}"
        if base:
            b50, b99 = percentile(base, 0.5) * 1e3, percentile(base, 0.99) * 1e3
            line += f" {b50:>9.1f} {b99:>9.1f} {p99 / b99:>14.1f}x"
        print(line)
    errors = sum(tally.errors.values())
    print(f"\nthroughput: {total / elapsed:.0f} requests/s")
    print(f"errors: {errors} of {tally.requests} requests ({errors / max(1, tally.requests):.3%})")
    for (kind, what), count in tally.errors.most_common(20):
        print(f"  {count:>6}  {kind}: {what}")
    idle_errors = sum(idle.errors.values())
    if idle_errors:
        print(f"baseline errors: {idle_errors}: {dict(idle.errors)}")
    return 1 if errors or idle_errors else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0, help="how long the load runs")
    p.add_argument("--workers", type=int, default=64, help="simulated workers")
    p.add_argument("--readers", type=int, default=8, help="simulated readers")
    p.add_argument("--epochs", type=int, default=5, help="reports per trial")
    p.add_argument("--epoch-seconds", type=float, default=1.0, help="time between reports")
    p.add_argument("--read-seconds", type=float, default=0.5, help="time between a reader's GETs")
    p.add_argument("--baseline-rounds", type=int, default=20, help="idle requests per class")
    p.add_argument("--server-workers", type=int, default=1, help="uvicorn processes")
    p.add_argument("--postgres", dest="engine", action="store_const", const="postgres")
    p.set_defaults(engine="sqlite")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="hpsearch-load-") as tmp:
        workdir = Path(tmp)
        with (
            database(args.engine, workdir) as url,
            running_server(url, workdir, args.server_workers) as port,
        ):
            idle, tally, elapsed = asyncio.run(load(port, args))
        return report(idle, tally, elapsed, args)


@contextmanager
def database(engine: str, workdir: Path) -> Iterator[str]:
    if engine == "sqlite":
        yield f"sqlite:///{workdir / 'load.db'}"
        return
    from hpsearch.store.db import upgrade
    from tests.pg import PostgresCluster

    cluster = PostgresCluster().start()
    try:
        url = cluster.create_database("hpsearch_load")
        upgrade(url)
        yield url
    finally:
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
