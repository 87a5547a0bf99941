"""The CLI's commands on studies that exist: list, control, enqueue, extend, trials, export and
the best trial's model. Each read command takes ``--json`` for scripts.

Trials are named as users see them everywhere: "study 3 trial 18", the web page
``/studies/3/trials/18``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from hpsearch.client import Client
from hpsearch.errors import NotFound
from hpsearch.spec import parse_spec
from hpsearch.states import StudyState, TrialState
from hpsearch.study_frame import error_line

Run = Callable[[argparse.Namespace], int]


class UsageError(ValueError):
    """A command line that names things the command cannot read (exit code 2)."""


def add_commands(sub: Any, server_url: str) -> None:
    """Adds the study commands to the ``hpsearch`` parser's subcommands."""

    def command(name: str, help: str, run: Run, reads: bool = False) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help)
        p.add_argument("--server", default=server_url, help="default: $HPSEARCH_SERVER")
        if reads:
            p.add_argument("--json", action="store_true", help="print JSON, for scripts")
        p.set_defaults(run=_guarded(run))
        return p

    ls = command("studies", "list the studies", _studies, reads=True)
    ls.add_argument("--state", choices=[s.value for s in StudyState if s != StudyState.FAILED])

    for action, words in (
        ("pause", "no new trials start; running ones finish"),
        ("resume", "a paused study starts trials again"),
        ("stop", "end a study; running trials stop at their next report"),
    ):
        c = command(action, f"{action} a study: {words}", _control)
        c.add_argument("study", type=int)
        c.set_defaults(action=action)

    d = command("delete", "delete a study, its trials and their results", _delete)
    d.add_argument("study", type=int)
    d.add_argument("--yes", action="store_true", help="do not ask (needed without a terminal)")

    e = command("enqueue", "queue a configuration to run next; the rest is sampled", _enqueue)
    e.add_argument("study", type=int)
    e.add_argument("params", nargs="+", metavar="NAME=VALUE", help="e.g. lr=0.01 act=relu")
    e.add_argument(
        "--within-budget",
        action="store_true",
        help="take one of the trials the budget has left (default: add one to the budget)",
    )

    r = command(
        "replay",
        "queue a new trial that trains a PBT trial's schedule (its hyperparameters over time) "
        "from scratch",
        _replay,
    )
    r.add_argument("trial", help="STUDY/NUMBER as in /studies/3/trials/18 (3/18), or its id")

    x = command("extend", "give a study N more trials; a completed one runs again", _extend)
    x.add_argument("study", type=int)
    x.add_argument("n_trials", type=int, metavar="N")

    t = command("trials", "a study's trials, best first", _trials, reads=True)
    t.add_argument("study", type=int)
    t.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")

    ex = command("export", "a study's trials as CSV or JSON", _export)
    ex.add_argument("study", type=int)
    ex.add_argument("--format", choices=["csv", "json"], default="csv")
    ex.add_argument("--output", "-o", default=None, help="a file (default: standard output)")

    b = command("best", "the best feasible trial; --download its model", _best, reads=True)
    b.add_argument("study", type=int)
    b.add_argument("--download", metavar="FILE", default=None, help="write its checkpoint here")


def _guarded(run: Run) -> Run:
    """Runs a command; a command line it cannot use is a usage error (exit 2)."""

    def guarded(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except UsageError as e:
            print(f"hpsearch: error: {e}", file=sys.stderr)
            return 2

    return guarded


def _client(args: argparse.Namespace) -> Client:
    return Client(args.server, token=os.environ.get("HPSEARCH_TOKEN"), retry_for=5)


def _print_json(data: Any) -> int:
    print(json.dumps(data, indent=2, default=str))
    return 0


def web_url(server: str, path: str) -> str:
    return server.rstrip("/") + path


# -- commands ---------------------------------------------------------------------------------


def _studies(args: argparse.Namespace) -> int:
    with _client(args) as client:
        studies = client.studies(args.state)
    if args.json:
        return _print_json(studies)
    if not studies:
        print("no studies")
        return 0
    print(f"{'id':>4}  {'name':<28} {'state':<10} {'trials':>9}  best")
    for s in studies:
        c = s["counts"]
        ended = c["completed"] + c["pruned"] + c["failed"]
        best = s["best"]
        shown = f"{best['value']:.4g} (trial {best['number']})" if best else "—"
        counted = f"{ended}/{c['max_trials']}"
        print(f"{s['id']:>4}  {s['name'][:28]:<28} {s['state']:<10} {counted:>9}  {shown}")
    return 0


def _control(args: argparse.Namespace) -> int:
    with _client(args) as client:
        study = client.control(args.study, args.action)
    print(f"study {study['id']} {study['name']}: {study['state']}")
    return 0


def _delete(args: argparse.Namespace) -> int:
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError(f"delete {args.study}: add --yes to delete without a terminal")
        answer = input(f"delete study {args.study} and all its results? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("not deleted")
            return 1
    with _client(args) as client:
        client.delete_study(args.study)
    print(f"study {args.study} deleted")
    return 0


def parse_assignments(items: Sequence[str]) -> dict[str, Any]:
    """``lr=0.01 act=relu flag=true`` as typed values: a JSON number, boolean or string; any
    other text is a string."""
    params: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise UsageError(f"{item!r}: expected NAME=VALUE, e.g. lr=0.01")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        params[name] = value if isinstance(value, bool | int | float | str) else text
    return params


def _enqueue(args: argparse.Namespace) -> int:
    params = parse_assignments(args.params)
    with _client(args) as client:
        trial = client.enqueue(args.study, params, add_to_budget=not args.within_budget)
        budget = client.study(args.study)["counts"]["max_trials"]
    how = "within the budget" if args.within_budget else "added to the budget"
    print(
        f"study {args.study} trial {trial['number']} queued ({how}, now {budget} trials): "
        f"{_params(trial['params'])}"
    )
    return 0


def _replay(args: argparse.Namespace) -> int:
    with _client(args) as client:
        trial = client.replay(trial_id_of(client, args.trial))
        schedule = client.schedule(trial["id"])
    print(f"study {trial['study_id']} trial {trial['number']} queued: it replays {args.trial}")
    for s in schedule["segments"]:
        last = "end" if s["last_epoch"] is None else s["last_epoch"]
        print(f"  epochs {s['first_epoch']}-{last}: {_params(s['params'])}")
    return 0


def _extend(args: argparse.Namespace) -> int:
    if args.n_trials < 1:
        raise UsageError("N must be at least 1")
    with _client(args) as client:
        study = client.extend(args.study, args.n_trials)
    print(
        f"study {study['id']} {study['name']}: {study['counts']['max_trials']} trials, "
        f"{study['state']}"
    )
    return 0


def _trials(args: argparse.Namespace) -> int:
    with _client(args) as client:
        study = client.study(args.study)
        trials = client.trials(args.study, order="rank", limit=args.limit)
    rows = [trial_row(study, t, client.server) for t in trials]
    if args.json:
        return _print_json(rows)
    print(format_trials(study, rows))
    return 0


def _export(args: argparse.Namespace) -> int:
    with _client(args) as client:
        study = client.study(args.study)
        trials: list[dict[str, Any]] = []
        while True:
            page = client.trials(args.study, limit=10_000, offset=len(trials))
            trials.extend(page)
            if len(page) < 10_000:
                break
    rows = [trial_row(study, t, client.server) for t in trials]
    out: TextIO = open(args.output, "w", newline="") if args.output else sys.stdout  # noqa: SIM115
    try:
        if args.format == "json":
            json.dump(rows, out, indent=2, default=str)
            out.write("\n")
        else:
            write_csv(out, study, rows)
    finally:
        if args.output:
            out.close()
    if args.output:
        print(f"study {args.study}: {len(rows)} trials written to {args.output}")
    return 0


def _best(args: argparse.Namespace) -> int:
    with _client(args) as client:
        study = client.study(args.study)
        best = client.best(args.study)
        if best is None:
            raise NotFound(f"study {args.study} has no feasible trial yet")
        row = trial_row(study, best, client.server)
        if args.download:
            data = client.download_checkpoint(best["id"])
            if data is None:
                raise NotFound(f"study {args.study} trial {best['number']} has no checkpoint")
            with open(args.download, "wb") as f:
                f.write(data)
    if args.json:
        return _print_json(row)
    print(
        f"study {args.study} trial {row['number']}: {study['spec']['objective']['metric']} = "
        f"{row['value']:.6g}  {_params(row['params'])}\n  {row['web_url']}"
    )
    if args.download:
        print(
            f"  checkpoint written to {args.download}; for a built-in trainer, "
            "hpsearch.connect().load_study(...).load_model() rebuilds the torch model "
            "(see docs/python.md)"
        )
    return 0


# -- shaping ----------------------------------------------------------------------------------


def trial_row(study: Mapping[str, Any], t: Mapping[str, Any], server: str) -> dict[str, Any]:
    """A trial as the CLI shows it: the API's fields plus ``broken`` (the constraints it
    misses), its error's telling line and its web address."""
    objective = parse_spec(study["spec"]).build_objective()
    ended = t["state"] in (TrialState.COMPLETED, TrialState.PRUNED)
    broken = list(objective.evaluate(t["metrics"]).broken) if ended else []
    path = t.get("url") or f"/studies/{t['study_id']}/trials/{t['number']}"
    return {
        **t,
        "broken": broken,
        "error_line": error_line(t.get("error")),
        "web_url": web_url(server, path),
    }


def format_trials(study: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        f"study {study['id']} {study['name']}: {study['objective']}",
        f"{'rank':>4} {'trial':>6}  {'state':<9} {'value':>10}  {'constraints':<24} params",
    ]
    for rank, r in enumerate(rows, 1):
        value = "—" if r["value"] is None else f"{r['value']:.4g}"
        if r["state"] not in (TrialState.COMPLETED, TrialState.PRUNED):
            verdict = ""
        elif r["broken"]:
            verdict = "broke " + ", ".join(r["broken"])
        else:
            verdict = "met"
        lines.append(
            f"{rank:>4} {r['number']:>6}  {r['state']:<9} {value:>10}  {verdict:<24} "
            f"{_params(r['params'])}"
        )
        if r["error_line"]:
            lines.append(f"{'':>13}error: {r['error_line']}")
    if not rows:
        lines.append("  no trials yet")
    return "\n".join(lines)


def write_csv(out: TextIO, study: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> None:
    """The columns of ``Study.trials_dataframe()``, without pandas."""
    params = list(study["spec"]["space"])
    metrics = list(dict.fromkeys(name for r in rows for name in r["metrics"]))
    writer = csv.writer(out)
    writer.writerow(
        [
            "number",
            "state",
            "value",
            *(f"params_{p}" for p in params),
            *metrics,
            "feasible",
            "broken",
            "datetime_start",
            "datetime_complete",
            "error",
            "url",
        ]
    )
    for r in sorted(rows, key=lambda r: r["number"]):
        writer.writerow(
            [
                r["number"],
                r["state"],
                r["value"],
                *(r["params"].get(p) for p in params),
                *(r["metrics"].get(m) for m in metrics),
                r["feasible"],
                "; ".join(r["broken"]),
                r["started_at"],
                r["finished_at"],
                r["error_line"],
                r["web_url"],
            ]
        )


def _params(params: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


def trial_id_of(client: Client, text: str) -> int:
    """A trial named on the command line: ``STUDY/NUMBER`` (as users see it), or its id."""
    study, sep, number = text.partition("/")
    if not sep:
        if not text.isdigit():
            raise UsageError(f"{text!r}: expected STUDY/NUMBER (e.g. 3/18) or a trial id")
        return int(text)
    if not (study.isdigit() and number.isdigit()):
        raise UsageError(f"{text!r}: expected STUDY/NUMBER, e.g. 3/18")
    return int(client.trial_by_number(int(study), int(number))["id"])
