"""The study page's trials table sorted and filtered by a parameter or metric, at 100 000 trials.

A study of ``--trials`` ended trials is seeded (bench/web_render.py's ``seed_study``) into a
SQLite file and into a throwaway PostgreSQL 15 database; each query is the store call the page
makes (a page of 50 and the count of matching rows), median of ``--repeat``. The named baseline
is the page's default table, the first page of ranked trials read through its index
(``Store.trials(order="rank")``), timed in the same run.

    .venv/bin/python bench/trial_table.py
    .venv/bin/python bench/trial_table.py --trials 10000 100000 --engines sqlite
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.web_render import SPEC, seed_study, timed  # noqa: E402
from hpsearch.spec import parse_spec  # noqa: E402
from hpsearch.store import Database, Store  # noqa: E402
from hpsearch.store.db import upgrade  # noqa: E402
from hpsearch.trial_query import TableColumns, TrialQuery, parse_query  # noqa: E402
from tests.pg import PostgresCluster  # noqa: E402

QUERIES = [
    ("sort by a parameter (lr, descending)", "-lr", ""),
    ("sort by a metric (latency_ms)", "latency_ms", ""),
    ("filter on a parameter and a metric, sorted", "-dev_accuracy", "lr < 0.01, latency_ms <= 60"),
    ("filter on state, sorted by a parameter", "hidden_units", "state = pruned"),
]


def _median(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # warm the connection pool and the database's page cache
    return timed(fn, repeat)


def _page(store: Store, study_id: int, query: TrialQuery, offset: int) -> list[Any]:
    """What the page reads: the ids of a page of 50 with the count, then those rows."""
    ids, _ = store.trial_page_ids(study_id, query, offset=offset, limit=50)
    return store.trials_by_id(ids)


def run(engine: str, url: str, n: int, repeat: int) -> None:
    upgrade(url)
    study_id = seed_study(url, n, seed=1)
    store = Store(Database(url))
    spec = parse_spec(SPEC)
    columns = TableColumns(
        spec.build_space(),
        "dev_accuracy",
        {"dev_accuracy", "train_accuracy", "latency_ms", "n_params", "dev_error"},
    )
    base = _median(lambda: store.trials(study_id, order="rank", limit=50), repeat)
    print(f"{engine} {n:,} trials: baseline ranked first page {base * 1000:.1f} ms")
    for label, sort, text in QUERIES:
        query = parse_query(sort, text, columns)
        first = _median(lambda q=query: _page(store, study_id, q, 0), repeat)
        deep = _median(lambda q=query: _page(store, study_id, q, n // 4), repeat)
        print(
            f"  {label}: first page {first * 1000:.1f} ms ({first / base:.1f}x baseline),"
            f" page at row {n // 4:,} {deep * 1000:.1f} ms"
        )
    store.db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[100_000])
    parser.add_argument("--engines", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    cluster = PostgresCluster().start() if "postgres" in args.engines else None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n in args.trials:
                for engine in args.engines:
                    if engine == "sqlite":
                        url = f"sqlite:///{tmp}/table-{n}.db"
                    else:
                        assert cluster is not None
                        url = cluster.create_database(f"table_{n}")
                    run(engine, url, n, args.repeat)
    finally:
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    main()
