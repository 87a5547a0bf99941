"""The catalogue of built-in trainers and the hyperparameters each one reads.

It lives in the core, without torch, so the server can reject a study that names a parameter
its trainer would silently ignore. ``workers.training`` implements exactly these names; a test
keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from hpsearch.commands import allowed
from hpsearch.space import ParamValue

Kind = Literal["float", "int", "bool", "str"]


@dataclass(frozen=True)
class Hyperparameter:
    """One knob of a trainer: its JSON type, and for a ``str`` knob the values it accepts."""

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


def known_hyperparameters(trainer: str) -> list[str]:
    return [h.name for h in TRAINERS[trainer]]


def defaults(trainer: str) -> dict[str, ParamValue | None]:
    return {h.name: h.default for h in TRAINERS[trainer]}


def markdown_table(trainer: str) -> str:
    """The trainer's hyperparameters as a Markdown table (docs/workers.md embeds these)."""
    rows = ["| hyperparameter | default | meaning |", "|---|---|---|"]
    for h in TRAINERS[trainer]:
        default = "—" if h.default is None else f"`{h.default}`"
        meaning = h.doc.replace("|", "\\|")
        rows.append(f"| `{h.name}` | {default} | {meaning} |")
    return "\n".join(rows)
