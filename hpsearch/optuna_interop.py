"""Optuna interop: export a study to an Optuna storage; import an Optuna study as history.

Export goes through the REST API (any running server), so `optuna-dashboard` and
`optuna.visualization` work on an hpsearch study. Satisficing constraints become Optuna
constraint values (``<= 0`` is feasible), written in both of Optuna's forms: the list
``system_attrs["constraints"]`` that a sampler's ``constraints_func`` writes (what
optuna-dashboard reads, to grey infeasible trials), and Optuna 5's named values (one per
constraint, ``trial.constraints``).
Optuna has no reverse-log scale: such a parameter is exported as a linear float, with its scale
kept in the study's user attributes.

Optuna is imported only here, and only when used.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from hpsearch.client import Client
from hpsearch.errors import InvalidState, NotFound
from hpsearch.objective import Constraint, finite
from hpsearch.spec import StudySpec, parse_spec

_STATES = {"completed": "COMPLETE", "pruned": "PRUNED", "failed": "FAIL"}
# The violation of a constraint whose metric is missing: unbounded, but finite, so that it
# survives every JSON reader (a browser's JSON.parse refuses Infinity), the dashboard's too.
MISSING_VIOLATION = 1.7976931348623157e308
# Where Optuna's constraints_func keeps a trial's constraint values, as a list.
CONSTRAINTS_KEY = "constraints"


def distributions(spec: StudySpec) -> dict[str, Any]:
    """Each parameter as the nearest Optuna distribution."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    out: dict[str, Any] = {}
    for name, p in spec.space.items():
        if p.type == "categorical":
            out[name] = CategoricalDistribution(p.choices)
        elif p.type == "int":
            log = p.scale == "log"
            out[name] = IntDistribution(p.low, p.high, log=log, step=1 if log else p.step)
        else:
            log = p.scale == "log"
            out[name] = FloatDistribution(p.low, p.high, log=log, step=None if log else p.step)
    return out


def constraint_values(
    constraints: list[Constraint], metrics: Mapping[str, Any]
) -> dict[str, float]:
    """Optuna's convention: one named value per constraint, feasible when ``<= 0``."""
    values: dict[str, float] = {}
    for c in constraints:
        v = metrics.get(c.metric)
        if v is None or not math.isfinite(v):
            value = MISSING_VIOLATION
        elif c.op in ("<=", "<"):
            value = v - c.threshold
        elif c.op in (">=", ">"):
            value = c.threshold - v
        else:
            value = abs(v - c.threshold)
        values[c.describe()] = value
    return values


def export_study(client: Client, study_id: int, storage: str, study_name: str | None = None) -> str:
    """Copies study ``study_id`` (with its ended trials) into an Optuna storage URL."""
    import optuna
    from optuna.trial import TrialState, create_trial

    study = client.study(study_id)
    spec = parse_spec(study["spec"])
    objective = spec.build_objective()
    name = study_name or f"hpsearch-{study_id}-{spec.name}"
    try:
        target = optuna.create_study(
            storage=storage, study_name=name, direction=objective.direction, load_if_exists=False
        )
    except optuna.exceptions.DuplicatedStudyError:
        raise InvalidState(
            f"{storage} already has an Optuna study named {name!r}: export under another "
            "name (--name), or delete that one first (optuna delete-study)"
        ) from None
    target.set_user_attr("hpsearch_objective", objective.describe())
    target.set_user_attr("hpsearch_scales", {n: p.scale for n, p in spec.build_space().items()})
    dists = distributions(spec)
    trials: list[Any] = []
    offset = 0
    while page := client.trials(study_id, limit=1000, offset=offset):
        offset += len(page)
        for t in page:
            state = _STATES.get(t["state"])
            if state is None:
                continue
            detail = client.trial(t["id"])
            intermediate = {
                p["step"]: p["metrics"][objective.metric]
                for p in detail["intermediates"]
                if p["metrics"].get(objective.metric) is not None
            }
            value = t["value"] if state == "COMPLETE" else None
            if state == "COMPLETE" and value is None:
                state = "FAIL"
            named = constraint_values(list(objective.constraints), t["metrics"])
            trials.append(
                create_trial(
                    state=TrialState[state],
                    value=value,
                    params=t["params"],
                    distributions=dists,
                    user_attrs={"hpsearch_trial": t["number"], **_finite(t["metrics"])},
                    # The list form, in the constraints' order, as constraints_func writes it.
                    system_attrs={CONSTRAINTS_KEY: list(named.values())} if named else None,
                    intermediate_values=intermediate,
                    constraints=named or None,
                )
            )
    target.add_trials(trials)
    return name


def read_optuna_trials(storage: str, study_name: str, metric: str) -> list[dict[str, Any]]:
    """An Optuna study's completed and pruned trials as ``{params, metrics, state}`` records;
    the trial's value becomes ``metric``, its numeric user attributes the other metrics."""
    import optuna
    from optuna.trial import TrialState

    states = {TrialState.COMPLETE: "completed", TrialState.PRUNED: "pruned"}
    try:
        source = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        names = sorted(optuna.get_all_study_names(storage))
        raise NotFound(
            f"{storage} has no Optuna study named {study_name!r} "
            f"(it has: {', '.join(names) if names else 'none'})"
        ) from None
    out: list[dict[str, Any]] = []
    for t in source.get_trials(deepcopy=False, states=tuple(states)):
        metrics = _finite(t.user_attrs)
        if t.value is not None:
            metrics[metric] = t.value
        elif t.intermediate_values:
            metrics[metric] = t.intermediate_values[max(t.intermediate_values)]
        out.append({"params": dict(t.params), "metrics": metrics, "state": states[t.state]})
    return out


def import_study(client: Client, storage: str, study_name: str, study_id: int) -> int:
    """Adds an Optuna study's trials to hpsearch study ``study_id`` as history."""
    spec = parse_spec(client.study(study_id)["spec"])
    records = read_optuna_trials(storage, study_name, spec.objective.metric)
    return client.import_history(study_id, records) if records else 0


def _finite(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: f for k, v in metrics.items() if (f := finite(v)) is not None}
