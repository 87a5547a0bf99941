"""The ``hpsearch`` command: the one place that composes the layers.

The server (FastAPI) and the worker (torch) are imported only by the subcommands that need them,
so each installs and starts without the other.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from hpsearch.client import DEFAULT_SERVER, ApiError, Client, ServerUnreachable
from hpsearch.settings import Settings
from hpsearch.spec import SpecError, load_spec_file


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        code: int = args.run(args)
    except SpecError as e:
        for err in e.errors:
            print(f"{args.spec}: {err}", file=sys.stderr)
        return 2
    except ApiError as e:
        print(f"error: {e.message}", file=sys.stderr)
        for problem in (e.body or {}).get("errors", []):
            print(f"  {problem['field']}: {problem['message']}", file=sys.stderr)
        return 1
    except ServerUnreachable as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return code


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hpsearch", description=__doc__)
    sub = p.add_subparsers(title="commands")
    server_url = os.environ.get("HPSEARCH_SERVER", DEFAULT_SERVER)

    s = sub.add_parser("server", help="run the API server and web view (uvicorn)")
    s.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=None, help="port (default 8765)")
    s.add_argument("--database-url", default=None, help="SQLAlchemy URL (default SQLite file)")
    s.set_defaults(run=_server)

    d = sub.add_parser("db", help="database schema")
    dsub = d.add_subparsers(title="db commands")
    up = dsub.add_parser("upgrade", help="apply the Alembic migrations")
    up.add_argument("--database-url", default=None)
    up.set_defaults(run=_db_upgrade)

    w = sub.add_parser("worker", help="claim and train trials from a server")
    w.add_argument("--server", default=server_url)
    w.add_argument("--study", type=int, default=None, help="only this study; exit when done")
    w.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    w.add_argument("--worker-id", default=None)
    w.add_argument(
        "--keep-alive",
        action="store_true",
        help="wait for new studies instead of exiting when none has work",
    )
    w.add_argument("--max-trials", type=int, default=None, help="exit after this many trials")
    w.add_argument("--heartbeat", type=float, default=10.0, help="seconds between heartbeats")
    w.add_argument("--quiet", action="store_true")
    w.set_defaults(run=_worker)

    sb = sub.add_parser("submit", help="submit a study spec (YAML or JSON)")
    sb.add_argument("spec")
    sb.add_argument("--server", default=server_url)
    sb.set_defaults(run=_submit)

    v = sub.add_parser("validate", help="check a study spec without submitting it")
    v.add_argument("spec")
    v.set_defaults(run=_validate)

    st = sub.add_parser("status", help="a study's state, counts and best trials")
    st.add_argument("study", type=int)
    st.add_argument("--server", default=server_url)
    st.add_argument("--top", type=int, default=5)
    st.add_argument("--json", action="store_true")
    st.set_defaults(run=_status)

    dm = sub.add_parser("demo", help="server + worker + an example study, on SQLite")
    dm.add_argument("--port", type=int, default=8765)
    dm.add_argument("--workers", type=int, default=2)
    dm.add_argument("--trials", type=int, default=None, help="override the study's max_trials")
    dm.add_argument("--epochs", type=int, default=None, help="override the task's epochs")
    dm.add_argument("--dir", default="hpsearch-demo", help="where the demo's database lives")
    dm.add_argument(
        "--no-serve",
        action="store_true",
        help="exit when the study ends instead of serving the results page",
    )
    dm.set_defaults(run=_demo)
    return p


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for key in ("host", "port", "database_url"):
        value = getattr(args, key, None)
        if value is not None:
            overrides[key] = value
    return Settings(**overrides)


def _server(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from hpsearch.store.db import Database, initialize_if_empty

    settings = _settings(args)
    db = Database(settings.database_url)
    if initialize_if_empty(db):
        print(f"created a new database schema at {settings.database_url}", flush=True)
    db.dispose()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    from hpsearch.store.db import upgrade

    url = _settings(args).database_url
    upgrade(url)
    print(f"schema of {url} is at head")
    return 0


def _worker(args: argparse.Namespace) -> int:
    from workers.loop import WorkerOptions
    from workers.loop import main as worker_main

    opts = WorkerOptions(
        server=args.server,
        study_id=args.study,
        device=args.device,
        keep_alive=args.keep_alive,
        max_trials=args.max_trials,
        heartbeat_seconds=args.heartbeat,
        quiet=args.quiet,
        token=os.environ.get("HPSEARCH_TOKEN"),
    )
    if args.worker_id:
        opts.worker_id = args.worker_id
    return worker_main(opts)


def _submit(args: argparse.Namespace) -> int:
    spec = load_spec_file(args.spec)
    with Client(args.server, token=os.environ.get("HPSEARCH_TOKEN"), retry_for=5) as client:
        created = client.create_study(spec.model_dump(mode="json"))
    print(f"study {created['id']} submitted: {args.server.rstrip('/')}{created['url']}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    spec = load_spec_file(args.spec)
    print(f"{args.spec}: ok ({spec.build_objective().describe()})")
    return 0


def _status(args: argparse.Namespace) -> int:
    with Client(args.server, token=os.environ.get("HPSEARCH_TOKEN"), retry_for=5) as client:
        study = client.study(args.study)
        top = client.trials(args.study, order="rank", limit=args.top)
    if args.json:
        print(json.dumps({"study": study, "top": top}, indent=2, default=str))
        return 0
    print(format_status(study, top))
    return 0


def format_status(study: dict[str, Any], top: list[dict[str, Any]]) -> str:
    c = study["counts"]
    ended = c["completed"] + c["pruned"] + c["failed"]
    lines = [
        f"study {study['id']} {study['name']}: {study['state']}"
        + (f" ({study['reason']})" if study.get("reason") else ""),
        f"  {study['objective']}",
        f"  trials: {ended}/{c['max_trials']} ended ({c['completed']} completed, "
        f"{c['pruned']} pruned, {c['failed']} failed), {c['running']} running, "
        f"{c['queued']} queued",
    ]
    best = study.get("best")
    if best:
        lines.append(
            f"  best feasible: trial {best['number']} value={best['value']:.4g} "
            f"{_params(best['params'])}"
        )
    else:
        lines.append("  best feasible: none yet")
    for t in top:
        mark = {True: "feasible", False: "INFEASIBLE", None: ""}[t["feasible"]]
        value = "—" if t["value"] is None else f"{t['value']:.4g}"
        lines.append(f"    #{t['number']:<4} {t['state']:<9} {value:>8} {mark}")
    return "\n".join(lines)


def _params(params: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


def _demo(args: argparse.Namespace) -> int:
    from hpsearch.demo import run_demo

    return run_demo(
        port=args.port,
        workers=args.workers,
        trials=args.trials,
        epochs=args.epochs,
        directory=args.dir,
        serve=not args.no_serve,
    )


if __name__ == "__main__":
    sys.exit(main())
