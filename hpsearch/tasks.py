"""The catalogue of built-in trainers and the hyperparameters each one reads.

It lives in the core, without torch, so the server can reject a study that names a parameter
its trainer would silently ignore. ``workers.training`` implements exactly these names; a test
keeps the two in step.
"""

from __future__ import annotations

import difflib
import math
import shlex
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from hpsearch.commands import allowed
from hpsearch.space import ParamValue

Kind = Literal["float", "int", "bool", "str"]


@dataclass(frozen=True)
class Range:
    """The values a numeric knob can run with: ``low``/``high`` (None: unbounded), each end
    included unless it is ``open``."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, v: object) -> bool:
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
            return False
        above = self.low is None or (v > self.low if self.low_open else v >= self.low)
        below = self.high is None or (v < self.high if self.high_open else v <= self.high)
        return above and below

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"


_POSITIVE = Range(0, low_open=True)
_NON_NEGATIVE = Range(0)
_BELOW_ONE = Range(0, 1, high_open=True)
_AT_LEAST_ONE = Range(1)


@dataclass(frozen=True)
class Hyperparameter:
    """One knob of a trainer: its JSON type, and for a ``str`` knob the values it accepts
    (for a number, the values it can run with are in ``RANGES``)."""

    name: str
    default: ParamValue | None
    doc: str
    kind: Kind = "float"
    choices: tuple[str, ...] = ()


_OPTIMIZATION = (
    Hyperparameter("lr", 0.01, "learning rate α"),
    Hyperparameter(
        "optimizer",
        "momentum",
        "sgd | momentum | rmsprop | adam",
        kind="str",
        choices=("sgd", "momentum", "rmsprop", "adam"),
    ),
    Hyperparameter(
        "beta",
        0.9,
        "momentum β, as an average v = βv + (1-β)g so lr keeps its meaning across β; "
        "or the squared-gradient decay (rmsprop)",
    ),
    Hyperparameter("beta1", 0.9, "adam's first-moment decay β1"),
    Hyperparameter(
        "beta2", 0.999, "adam's second-moment decay β2 (rmsprop's decay if set, instead of beta)"
    ),
    Hyperparameter("eps", 1e-8, "adam / rmsprop ε"),
    Hyperparameter("batch_size", 64, "mini-batch size", kind="int"),
    Hyperparameter("weight_decay", 0.0, "L2 regularization λ, on weights (not biases)"),
    Hyperparameter(
        "lr_decay",
        "none",
        "none | inverse (α/(1+k·epoch)) | exponential | step",
        kind="str",
        choices=("none", "inverse", "exponential", "step"),
    ),
    Hyperparameter(
        "lr_decay_rate",
        0.0,
        "k for inverse (>= 0); the factor in (0, 1] for exponential (per epoch) and step",
    ),
    Hyperparameter("lr_decay_every", 1, "epochs between steps for lr_decay=step", kind="int"),
)

_MLP = (
    Hyperparameter("layers", 2, "number of hidden layers", kind="int"),
    Hyperparameter("hidden_units", 64, "units per hidden layer", kind="int"),
    Hyperparameter(
        "activation",
        "relu",
        "relu | tanh | sigmoid | leaky_relu",
        kind="str",
        choices=("relu", "tanh", "sigmoid", "leaky_relu"),
    ),
    Hyperparameter("batch_norm", False, "batch normalization after each hidden layer", kind="bool"),
    Hyperparameter("dropout", 0.0, "drop probability (1 - keep_prob) after each hidden layer"),
    Hyperparameter("keep_prob", None, "keep probability; overrides dropout when given"),
    Hyperparameter(
        "init",
        "he",
        "he | xavier | normal (scaled by weight_scale)",
        kind="str",
        choices=("he", "xavier", "normal"),
    ),
    Hyperparameter("weight_scale", 0.01, "standard deviation for init=normal"),
)

_CNN = (
    Hyperparameter(
        "channels", 16, "channels of the first conv block (doubled in the second)", kind="int"
    ),
    Hyperparameter("hidden_units", 64, "units of the fully connected layer", kind="int"),
    Hyperparameter("dropout", 0.0, "drop probability after the fully connected layer"),
    Hyperparameter("batch_norm", False, "batch normalization after each conv", kind="bool"),
)

RANGES: dict[str, Range] = {
    "lr": _POSITIVE,
    "beta": _BELOW_ONE,
    "beta1": _BELOW_ONE,
    "beta2": _BELOW_ONE,
    "eps": _POSITIVE,
    "batch_size": _AT_LEAST_ONE,
    "weight_decay": _NON_NEGATIVE,
    "lr_decay_rate": _NON_NEGATIVE,
    "lr_decay_every": _AT_LEAST_ONE,
    "layers": _NON_NEGATIVE,
    "hidden_units": _AT_LEAST_ONE,
    "channels": _AT_LEAST_ONE,
    "dropout": _BELOW_ONE,
    "keep_prob": Range(0, 1, low_open=True),
    "weight_scale": _POSITIVE,
}
"""The values each numeric hyperparameter can run with, checked when a study is submitted
(every bound of its space) and again by the worker (every value it is given)."""

TRAINERS: dict[str, tuple[Hyperparameter, ...]] = {
    "mlp_classifier": _OPTIMIZATION + _MLP,
    "softmax_regression": _OPTIMIZATION,
    "cnn_classifier": _OPTIMIZATION + _CNN,
}

CUSTOM = "custom"
"""The trainer that runs a user's ``task.entry_point`` (see ``workers/custom.py``); it has no
catalogue: its hyperparameter names are the user's own."""

COMMAND = "command"
"""The trainer that runs a user's program, ``task.command``, as a process (see
``workers/command.py``); like ``custom``, its hyperparameter names are the user's own."""

USER_CODE = frozenset({CUSTOM, COMMAND})
"""Trainers that run the user's code: only workers whose command line allows it run them."""

MODEL_SHAPE: frozenset[str] = frozenset({"layers", "hidden_units", "channels", "batch_norm"})
"""Hyperparameters that change the network's tensors: a fork, which continues its parent's
weights, may not change them."""

DATASETS: tuple[str, ...] = ("digits", "mnist", "fashion_mnist", "cifar10", "file")


METRICS: tuple[str, ...] = (
    "train_loss",
    "train_accuracy",
    "train_error",
    "dev_loss",
    "dev_accuracy",
    "dev_error",
    "dev_precision",
    "dev_recall",
    "dev_f1",
    "latency_ms",
    "n_params",
    "model_bytes",
    "train_seconds",
    "epochs",
)
"""The final metrics every built-in trainer reports (``workers.training``; a test keeps the
two in step). Each epoch's report has ``lr`` and the ``*_loss``/``*_accuracy`` ones."""

TRAIN_DEV_METRICS: tuple[str, ...] = ("train_dev_loss", "train_dev_accuracy", "train_dev_error")
"""Reported besides, when the task carves a train-dev set (``split.train_dev`` > 0)."""

STEP_METRICS: tuple[str, ...] = ("lr",)
"""Reported with each epoch only (a pruner may judge them)."""


def reported_metrics(task: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The metrics a study's trainer reports, or None when it cannot be known: a custom
    trainer reports what the user's code returns, unless the spec declares it in
    ``task.metrics``."""
    declared = task.get("metrics")
    if declared is not None:
        return tuple(declared)
    if task.get("trainer") not in TRAINERS:
        return None
    split = task.get("split") or {}
    return METRICS + (TRAIN_DEV_METRICS if split.get("train_dev", 0) > 0 else ())


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name ``name`` was most likely meant to be (a typo), if any is close."""
    found = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return found[0] if found else None


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a known name is close to ``name``, else ``""``."""
    guess = closest(name, known)
    return f" (did you mean {guess!r}?)" if guess is not None else ""


@dataclass(frozen=True)
class Capabilities:
    """What a worker can run, as its claim says: its devices (``cpu``, ``cuda:0``, …), its
    ``--label key=value`` pairs and the user code its command line allows."""

    devices: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    entry_points: frozenset[str] = frozenset()
    commands: tuple[tuple[str, ...], ...] = ()
    """``--allow-command`` argv prefixes."""
    refused_studies: frozenset[int] = frozenset()
    """Studies the worker found it cannot set up (a missing dataset, an import error)."""

    @property
    def gpus(self) -> int:
        return sum(1 for d in self.devices if d.startswith("cuda"))


BARE_WORKER = Capabilities()
"""A worker that says nothing of itself: it runs the trials of studies that require nothing."""


def capabilities(
    devices: Iterable[str],
    labels: Mapping[str, str] | None = None,
    entry_points: Iterable[str] = (),
    refused_studies: Iterable[int] = (),
    commands: Iterable[Sequence[str]] = (),
) -> Capabilities:
    return Capabilities(
        tuple(devices),
        dict(labels or {}),
        frozenset(entry_points),
        tuple(tuple(c) for c in commands),
        frozenset(refused_studies),
    )


def unmet(
    requires: Mapping[str, Any] | None, task: Mapping[str, Any], worker: Capabilities
) -> str | None:
    """Why ``worker`` may not run the trials of a study (its spec's ``requires`` and
    ``task``), in words that finish "waiting for a worker with …"; None when it may.

    The one rule of the claim: a worker is only given trials it satisfies."""
    if not runnable(task, worker.entry_points, worker.commands):
        entry_point, command = needed_code(task)
        if entry_point is not None:
            return f"--allow {entry_point}"
        return f"--allow-command for {shlex.join(command or [])}"
    requires = requires or {}
    device, gpus = requires.get("device"), int(requires.get("gpus") or 0)
    if device == "cuda" or gpus:
        if worker.gpus < max(gpus, 1):
            return f"{max(gpus, 1)} GPU{'s' if gpus > 1 else ''} (device cuda)"
    elif device == "cpu" and "cpu" not in worker.devices:
        return "device cpu"
    labels = requires.get("labels") or {}
    missing = [f"{k}={v}" for k, v in sorted(labels.items()) if worker.labels.get(k) != v]
    if missing:
        return "label " + ", ".join(missing)
    return None


def describe_requires(requires: Mapping[str, Any] | None) -> str | None:
    """A study's ``requires`` in words that finish "a worker with …"; None if it has none."""
    requires = requires or {}
    parts = []
    gpus = int(requires.get("gpus") or 0)
    if gpus:
        parts.append(f"{gpus} GPU{'s' if gpus > 1 else ''} (device cuda)")
    elif requires.get("device"):
        parts.append(f"device {requires['device']}")
    labels = requires.get("labels") or {}
    if labels:
        parts.append("label " + ", ".join(f"{k}={v}" for k, v in sorted(labels.items())))
    return ", ".join(parts) or None


def runnable(
    task: Mapping[str, Any],
    entry_points: Collection[str],
    commands: Collection[Sequence[str]] = (),
) -> bool:
    """Whether a worker whose command line allows ``entry_points`` (``--allow``) and
    ``commands`` (``--allow-command`` argv prefixes) can run ``task``: every worker runs the
    built-in trainers; a custom one only the entry points it allows; a command one only a
    command that starts with a prefix it allows."""
    trainer = task.get("trainer")
    if trainer == CUSTOM:
        return task.get("entry_point") in entry_points
    if trainer == COMMAND:
        return allowed(task.get("command") or (), commands)
    return True


def needed_code(task: Mapping[str, Any]) -> tuple[str | None, list[str] | None]:
    """What a worker must allow to run ``task``: (entry point, command), at most one given."""
    trainer = task.get("trainer")
    if trainer == CUSTOM:
        return str(task.get("entry_point")), None
    if trainer == COMMAND:
        return None, list(task.get("command") or ())
    return None, None


def value_problem(h: Hyperparameter, v: ParamValue) -> str | None:
    """What is wrong with ``v`` as a value of ``h`` (its type, choices, range), or None.

    As strict as the worker (``workers.training.hyperparameters``): an int may come as 64.0,
    a flag as 0 or 1, nothing looser."""
    if h.kind == "str":
        if not isinstance(v, str):
            return f"must be one of {list(h.choices)}" if h.choices else "must be a string"
        if h.choices and v not in h.choices:
            return f"{v!r} is not one of {list(h.choices)}{did_you_mean(v, h.choices)}"
        return None
    if h.kind == "bool":
        ok = isinstance(v, bool) or (isinstance(v, int) and v in (0, 1))
        return None if ok else "must be true or false"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return "must be an integer" if h.kind == "int" else "must be a number"
    if h.kind == "int" and not float(v).is_integer():
        return f"must be an integer, got {v!r}"
    valid = RANGES.get(h.name)
    if valid is not None and v not in valid:
        return f"must be {valid}, got {v!r}"
    return None


def hyperparameter(trainer: str, name: str) -> Hyperparameter | None:
    return next((h for h in TRAINERS[trainer] if h.name == name), None)


def known_hyperparameters(trainer: str) -> list[str]:
    return [h.name for h in TRAINERS[trainer]]


def defaults(trainer: str) -> dict[str, ParamValue | None]:
    return {h.name: h.default for h in TRAINERS[trainer]}


def metrics_line(trainer: str) -> str:
    """The metrics a built-in trainer reports, as ``hpsearch trainers`` and the docs list them."""
    extra = ", ".join(TRAIN_DEV_METRICS)
    return (
        f"Reports: {', '.join(METRICS)} (and {extra} with a train-dev split); "
        f"each epoch: {', '.join(STEP_METRICS)} and the loss and accuracy ones."
    )


def markdown_table(trainer: str) -> str:
    """The trainer's hyperparameters as a Markdown table (docs/workers.md embeds these)."""
    rows = ["| hyperparameter | default | meaning |", "|---|---|---|"]
    for h in TRAINERS[trainer]:
        default = "—" if h.default is None else f"`{h.default}`"
        meaning = h.doc.replace("|", "\\|")
        rows.append(f"| `{h.name}` | {default} | {meaning} |")
    return "\n".join(rows)
