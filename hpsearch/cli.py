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

from hpsearch.cli_studies import UsageError, add_commands, trial_id_of
from hpsearch.client import DEFAULT_SERVER, ApiError, BadServerUrl, Client, ServerUnreachable
from hpsearch.errors import HpsearchError
from hpsearch.settings import Settings
from hpsearch.spec import SpecError, load_spec_file
from hpsearch.states import TrialState
from hpsearch.study_status import format_status


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
    except (ServerUnreachable, HpsearchError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except BadServerUrl as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file the user named: missing, a folder, not readable
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except UsageError as e:
        print(f"hpsearch: error: {e}", file=sys.stderr)
        return 2
    return code


_DESCRIPTION = """\
Hyperparameter search for PyTorch as a service: submit a study, let workers train its
trials, read the results on the web page, from a notebook (hpsearch.connect()) or here."""

_EPILOG = """\
a first run:
  hpsearch demo                          a server, two workers and an example study
  hpsearch server &                      then: hpsearch submit study.yaml
  hpsearch worker                        trains the trials of every study
  hpsearch trials 3                      study 3's trials, best first (--json for scripts)

environment: HPSEARCH_SERVER (default http://127.0.0.1:8765), HPSEARCH_TOKEN.
exit codes: 0 ok, 1 error (the server refused, or is unreachable), 2 usage (a command line
or spec file that cannot be used)."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hpsearch",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(title="commands", metavar="COMMAND")
    server_url = os.environ.get("HPSEARCH_SERVER", DEFAULT_SERVER)

    s = sub.add_parser("server", help="run the API server and web view (uvicorn)")
    s.add_argument("--host", default=None, help="bind address (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=None, help="port (default 8765)")
    s.add_argument("--database-url", default=None, help="SQLAlchemy URL (default SQLite file)")
    s.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes sharing the port (the API is stateless; default 1)",
    )
    s.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        default=None,
        help="no line per request on stderr (HPSEARCH_ACCESS_LOG=0)",
    )
    s.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="allow binding a non-loopback address with no token configured",
    )
    s.set_defaults(run=_server)

    tk = sub.add_parser("token", help="API tokens (run on the server's database)")
    tsub = tk.add_subparsers(title="token commands")
    tc = tsub.add_parser("create", help="create a token; it is printed once")
    tc.add_argument("--name", required=True)
    tc.add_argument("--role", required=True, choices=["admin", "user", "worker", "viewer"])
    tc.add_argument(
        "--workers",
        default=None,
        metavar="PATTERN",
        help="worker tokens: the worker ids the token may use, one id or a prefix ending in * "
        "(e.g. 'box1-*'); without it, any worker id",
    )
    tc.add_argument(
        "--from-env",
        default=None,
        metavar="VAR",
        help="register the token in environment variable VAR (e.g. from a deployment's env "
        "file) instead of generating one; idempotent",
    )
    tc.add_argument("--database-url", default=None)
    tc.set_defaults(run=_token_create)
    tl = tsub.add_parser("list", help="list tokens (never their values)")
    tl.add_argument("--database-url", default=None)
    tl.set_defaults(run=_token_list)
    tr = tsub.add_parser("revoke", help="revoke a token by id")
    tr.add_argument("id", type=int)
    tr.add_argument("--database-url", default=None)
    tr.set_defaults(run=_token_revoke)

    d = sub.add_parser("db", help="database schema")
    dsub = d.add_subparsers(title="db commands")
    up = dsub.add_parser("upgrade", help="apply the Alembic migrations")
    up.add_argument("--database-url", default=None)
    up.set_defaults(run=_db_upgrade)

    w = sub.add_parser("worker", help="claim and train trials from a server")
    w.add_argument("--server", default=server_url)
    w.add_argument("--study", type=int, default=None, help="only this study; exit when done")
    w.add_argument("--device", default=None, help="cpu (default) | cuda | cuda:N")
    w.add_argument("--gpus", default=None, help="one trial per GPU: indexes such as 0,1, or all")
    w.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="trials run at once on each device (default 1)",
    )
    w.add_argument(
        "--pack",
        type=int,
        default=1,
        metavar="K",
        help="train up to K trials of one study at once as one packed model (default 1)",
    )
    w.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="MODULE:FUNCTION",
        help="custom training code this worker may run (repeatable); studies name it as "
        "task.entry_point with trainer: custom",
    )
    w.add_argument(
        "--allow-command",
        action="append",
        default=[],
        metavar="PREFIX",
        help="programs this worker may run (repeatable): a study's task.command (trainer: "
        "command) must start with one of these argv prefixes, e.g. 'python train.py'",
    )
    w.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per trial (default: OMP_NUM_THREADS, else 1)",
    )
    w.add_argument("--worker-id", default=None)
    w.add_argument(
        "--keep-alive",
        action="store_true",
        help="wait for new studies instead of exiting when none has work",
    )
    w.add_argument(
        "--idle-exit",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="without --keep-alive: exit once nothing was claimable for this worker for this "
        "long, saying what it waited for (default 60)",
    )
    w.add_argument(
        "--label",
        action="append",
        default=[],
        type=_label,
        metavar="KEY=VALUE",
        help="a label of this worker (repeatable); it is given the trials of studies whose "
        "requires.labels it has",
    )
    w.add_argument("--max-trials", type=int, default=None, help="exit after this many trials")
    w.add_argument(
        "--prefetch",
        action="store_true",
        help="each slot claims its next trial while the current one runs and starts it the "
        "moment that one ends (studies whose sampler ignores results, with parallelism room "
        "for it: see docs/performance.md)",
    )
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

    add_commands(sub, server_url)  # studies, pause | resume | stop | delete, enqueue, ...

    lg = sub.add_parser("logs", help="what a trial printed (stdout and stderr)")
    lg.add_argument(
        "trial", help="STUDY/NUMBER as in /studies/3/trials/18 (3/18), or the trial's id"
    )
    lg.add_argument("--attempt", type=int, default=None, help="default: the latest attempt")
    lg.add_argument(
        "--follow", "-f", action="store_true", help="keep printing until the trial ends"
    )
    lg.add_argument("--server", default=server_url)
    lg.add_argument("--json", action="store_true", help="the log as the API returns it")
    lg.set_defaults(run=_logs)

    st = sub.add_parser("status", help="a study's state, counts and best trials")
    st.add_argument("study", type=int)
    st.add_argument("--server", default=server_url)
    st.add_argument("--top", type=int, default=5)
    st.add_argument("--json", action="store_true")
    st.set_defaults(run=_status)

    im = sub.add_parser("import-optuna", help="add an Optuna study's trials to a study")
    im.add_argument("--storage", required=True, help="Optuna storage URL")
    im.add_argument("--optuna-study", required=True, help="the Optuna study's name")
    im.add_argument("--into", type=int, required=True, help="the hpsearch study id")
    im.add_argument("--server", default=server_url)
    im.set_defaults(run=_import_optuna)

    tr = sub.add_parser("trainers", help="the built-in trainers and their hyperparameters")
    tr.set_defaults(run=_trainers)

    ex = sub.add_parser("export-optuna", help="copy a study into an Optuna storage")
    ex.add_argument("study", type=int)
    ex.add_argument("--storage", required=True, help="Optuna storage URL, e.g. sqlite:///o.db")
    ex.add_argument("--name", default=None, help="Optuna study name")
    ex.add_argument("--server", default=server_url)
    ex.set_defaults(run=_export_optuna)

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


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE, e.g. site=lab2")
    return key.strip(), value.strip()


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for key in ("host", "port", "database_url", "access_log"):
        value = getattr(args, key, None)
        if value is not None:
            overrides[key] = value
    return Settings(**overrides)


def _server(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from hpsearch.store.db import Database, SchemaOutOfDate, check_schema, initialize_if_empty

    settings = _settings(args)
    db = Database(settings.database_url)
    try:
        if initialize_if_empty(db):
            print(f"created a new database schema at {settings.database_url}", flush=True)
        check_schema(db)  # the app checks again at startup; this says it without a traceback
        refusal = _bind_refusal(db, settings.host, args.insecure_no_auth)
    except SchemaOutOfDate as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    if refusal:
        print(refusal, file=sys.stderr)
        return 2
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    url = f"http://{shown}:{settings.port}"
    print(f"hpsearch server: {url}/ (API {url}/api/v1, workers: hpsearch worker --server {url})")
    if args.workers > 1:
        return _serve_processes(settings, args.workers)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
    )
    return 0


def _bind_refusal(db: Any, host: str, insecure: bool) -> str | None:
    """Why the server must not start on ``host`` (no auth beyond loopback), or ``None``."""
    import ipaddress

    from hpsearch.auth import any_tokens

    with db.read() as session:
        has_tokens = any_tokens(session)
    if has_tokens:
        return None
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        print(
            f"authentication is off (no token configured): serving on {host} only; "
            "`hpsearch token create` turns it on",
            flush=True,
        )
        return None
    if insecure:
        print(
            f"WARNING: serving {host} with authentication off (--insecure-no-auth)",
            file=sys.stderr,
            flush=True,
        )
        return None
    return (
        f"error: refusing to serve {host} with no API token configured: anyone who can "
        "reach it could submit work and read results. Create a token first "
        "(hpsearch token create --name admin --role admin), or bind 127.0.0.1, or pass "
        "--insecure-no-auth knowingly."
    )


def _token_db(args: argparse.Namespace) -> Any:
    from hpsearch.store.db import Database, check_schema, initialize_if_empty

    db = Database(_settings(args).database_url)
    initialize_if_empty(db)
    check_schema(db)
    return db


def _token_create(args: argparse.Namespace) -> int:
    from hpsearch.auth import create_token

    given = None
    if args.from_env:
        given = os.environ.get(args.from_env)
        if not given:
            print(f"error: environment variable {args.from_env} is empty", file=sys.stderr)
            return 2
    db = _token_db(args)
    with db.write() as session:
        row, token = create_token(session, args.name, args.role, given, args.workers)
        if given is not None:
            print(f"token {row.id} ({row.role}) for {row.name} registered from ${args.from_env}")
            return 0
        bound = f" for workers {args.workers!r}" if args.workers else ""
        print(f"token {row.id} ({args.role}{bound}) for {args.name}; shown once, keep it secret:")
    print(token)
    return 0


def _token_list(args: argparse.Namespace) -> int:
    from hpsearch.auth import list_tokens

    with _token_db(args).read() as session:
        for row in list_tokens(session):
            state = f"revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else "active"
            workers = f"  workers {row.workers}" if row.workers else ""
            print(f"{row.id:>4}  {row.role:<7} {row.name:<30} {state}{workers}")
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    from hpsearch.auth import revoke

    with _token_db(args).write() as session:
        revoke(session, args.id)
    print(f"token {args.id} revoked (servers notice within a few seconds)")
    return 0


def _serve_processes(settings: Settings, processes: int) -> int:
    """Several uvicorn processes on one port; each builds its app from the environment."""
    import uvicorn

    from api.processes import serve

    for key in ("host", "port", "database_url", "access_log"):
        os.environ[f"HPSEARCH_{key.upper()}"] = str(getattr(settings, key))
    config = uvicorn.Config(
        "api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
    )
    return serve(config, processes)


def _db_upgrade(args: argparse.Namespace) -> int:
    from hpsearch.store.db import upgrade

    url = _settings(args).database_url
    upgrade(url)
    print(f"schema of {url} is at head")
    return 0


def _worker(args: argparse.Namespace) -> int:
    from workers.loop import WorkerOptions
    from workers.main import main as worker_main

    opts = WorkerOptions(
        server=args.server,
        study_id=args.study,
        device=args.device,
        gpus=args.gpus,
        concurrency=args.concurrency,
        pack=args.pack,
        allow=tuple(args.allow),
        allow_commands=tuple(args.allow_command),
        threads=args.threads,
        keep_alive=args.keep_alive,
        idle_exit=args.idle_exit,
        labels=dict(args.label),
        max_trials=args.max_trials,
        prefetch=args.prefetch,
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
    print(f"study {created['id']} submitted: {client.server}{created['url']}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    spec = load_spec_file(args.spec)
    print(f"{args.spec}: ok ({spec.build_objective().describe()})")
    return 0


def _logs(args: argparse.Namespace) -> int:
    with Client(args.server, token=os.environ.get("HPSEARCH_TOKEN"), retry_for=5) as client:
        trial_id = trial_id_of(client, args.trial)
        if args.json:
            print(json.dumps(client.logs(trial_id, args.attempt), indent=2))
            return 0
        for text in client.follow_logs(trial_id, args.attempt, follow=args.follow):
            sys.stdout.write(text)
            sys.stdout.flush()
    return 0


def _status(args: argparse.Namespace) -> int:
    with Client(args.server, token=os.environ.get("HPSEARCH_TOKEN"), retry_for=5) as client:
        study = client.study(args.study)
        top = client.trials(args.study, order="rank", limit=args.top)
        tested = _test_metrics(client, study)
    if args.json:
        shown = {"study": study, "top": top, "test_metrics": tested}
        print(json.dumps(shown, indent=2, default=str))
        return 0
    print(format_status(study, top, server=args.server, test_metrics=tested))
    return 0


def _test_metrics(client: Client, study: dict[str, Any]) -> dict[str, Any] | None:
    """The final test evaluation's metrics, once it has run."""
    evaluation = study.get("final_evaluation")
    if not evaluation or evaluation["state"] != TrialState.COMPLETED:
        return None
    metrics: dict[str, Any] | None = client.trial(evaluation["trial_id"]).get("test_metrics")
    return metrics


def _trainers(args: argparse.Namespace) -> int:
    from hpsearch import tasks

    for trainer in tasks.TRAINERS:
        table = tasks.markdown_table(trainer)
        print(f"### `{trainer}`\n\n{table}\n\n{tasks.metrics_line(trainer)}\n")
    return 0


def _export_optuna(args: argparse.Namespace) -> int:
    from hpsearch.optuna_interop import export_study

    with Client(args.server, token=os.environ.get("HPSEARCH_TOKEN"), retry_for=5) as client:
        name = export_study(client, args.study, args.storage, args.name)
    print(
        f"exported study {args.study} to {args.storage} as '{name}' "
        f"(optuna-dashboard {args.storage})"
    )
    return 0


def _import_optuna(args: argparse.Namespace) -> int:
    from hpsearch.optuna_interop import import_study

    with Client(args.server, token=os.environ.get("HPSEARCH_TOKEN"), retry_for=5) as client:
        n = import_study(client, args.storage, args.optuna_study, args.into)
    print(f"imported {n} trials of '{args.optuna_study}' into study {args.into}")
    return 0


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
