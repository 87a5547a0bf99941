"""Every trial's own optimizer, applied to the packed parameters at once.

Each trial's settings are read from the ``torch.optim`` optimizer that
:func:`workers.training.optimizers.build_optimizer` builds for its own model, so the rules
(momentum as an average, rmsprop's decay, L2 on weights only) have one owner; the update of a
trial's slice is the one that optimizer's ``step`` would make, written with per-trial
hyperparameters broadcast over the trial dimension. Trials of one kind of optimizer sit in one
contiguous run of the pack, so each kind updates a view and nothing is copied.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from workers.training.packed_layers import Store

KINDS = ("sgd", "momentum", "rmsprop", "adam")

_TORCH_STATE: dict[str, dict[str, str]] = {
    "sgd": {},
    "momentum": {"momentum_buffer": "momentum"},
    "rmsprop": {"square_avg": "square_avg"},
    "adam": {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"},
}
"""The state each torch optimizer keeps per parameter, and the packed state it comes from."""


@dataclass(frozen=True)
class TrialOptimizer:
    """One trial's optimizer settings, as its torch optimizer holds them."""

    kind: str
    weight_decay: float
    beta: float = 0.0
    """momentum's β (= its dampening), rmsprop's α, adam's β1."""
    beta2: float = 0.0
    eps: float = 0.0


def settings(optimizer: torch.optim.Optimizer) -> TrialOptimizer:
    """Reads what a packed optimizer needs from a trial's torch optimizer; refuses options
    the packed update does not implement (none of them is set by build_optimizer)."""
    groups = optimizer.param_groups
    decay = float(groups[0]["weight_decay"])
    if any(float(g["weight_decay"]) not in (0.0, decay) for g in groups):
        raise ValueError("a packed optimizer takes one weight decay (on weights) per trial")
    first = groups[0]
    if isinstance(optimizer, torch.optim.SGD):
        beta = float(first["momentum"])
        if first["nesterov"] or (beta and float(first["dampening"]) != beta):
            raise ValueError("packed momentum is the averaging form: dampening = momentum")
        return TrialOptimizer("momentum" if beta else "sgd", decay, beta)
    if isinstance(optimizer, torch.optim.RMSprop):
        if first["centered"] or first["momentum"]:
            raise ValueError("packed rmsprop is neither centered nor with momentum")
        return TrialOptimizer("rmsprop", decay, float(first["alpha"]), eps=float(first["eps"]))
    if isinstance(optimizer, torch.optim.Adam):
        if first["amsgrad"] or first.get("decoupled_weight_decay"):
            raise ValueError("packed adam has neither amsgrad nor decoupled weight decay")
        beta1, beta2 = (float(b) for b in first["betas"])
        return TrialOptimizer("adam", decay, beta1, beta2, float(first["eps"]))
    raise ValueError(f"cannot pack a {type(optimizer).__name__} optimizer")


@dataclass
class _Group:
    """A contiguous run of trials with one kind of optimizer, and their settings as (n, 1)
    columns: what the update broadcasts over the rows of the packed parameters."""

    kind: str
    rows: slice
    values: dict[str, Tensor]
    decays: bool

    def __getitem__(self, name: str) -> Tensor:
        return self.values[name]


class PackedOptimizer:
    """Steps the (K, P) parameters of a :class:`Store`: per kind of optimizer in the pack,
    a handful of operations on its rows, however many layers the network has."""

    def __init__(
        self, store: Store, trials: Sequence[TrialOptimizer], lrs: Sequence[float]
    ) -> None:
        self.store = store
        self.trials = list(trials)
        self.lrs = [float(lr) for lr in lrs]
        self.steps = 0
        self.state: dict[str, Tensor] = {}
        self._device = store.flat.device
        self._groups = self._grouped()

    def _grouped(self) -> list[_Group]:
        groups: list[_Group] = []
        start = 0
        for end in range(1, len(self.trials) + 1):
            if end < len(self.trials) and self.trials[end].kind == self.trials[start].kind:
                continue
            if any(g.kind == self.trials[start].kind for g in groups):
                raise ValueError("a pack must hold each optimizer's trials contiguously")
            groups.append(self._group(start, end))
            start = end
        return groups

    def _group(self, start: int, end: int) -> _Group:
        trials, lrs = self.trials[start:end], self.lrs[start:end]

        def column(values: list[float], dtype: torch.dtype = torch.float32) -> Tensor:
            # Computed in double, rounded once: how torch turns its Python-float settings
            # into the float32 factors of its kernels.
            exact = torch.tensor(values, dtype=torch.float64).view(-1, 1)
            return exact.to(self._device, dtype)

        values = {
            "neg_lr": column([-lr for lr in lrs]),
            "weight_decay": column([t.weight_decay for t in trials]),
            "beta": column([t.beta for t in trials]),
            "one_minus_beta": column([1 - t.beta for t in trials]),
            "one_minus_beta2": column([1 - t.beta2 for t in trials]),
            "beta2": column([t.beta2 for t in trials]),
            "eps": column([t.eps for t in trials]),
            # Adam's bias corrections need the settings in double, per step.
            "lr64": column(lrs, torch.float64),
            "beta64": column([t.beta for t in trials], torch.float64),
            "beta2_64": column([t.beta2 for t in trials], torch.float64),
        }
        decays = any(t.weight_decay != 0 for t in trials)
        return _Group(trials[0].kind, slice(start, end), values, decays)

    def set_learning_rates(self, lrs: Sequence[float]) -> None:
        """This epoch's α of each trial (its decay schedule already applied)."""
        self.lrs = [float(lr) for lr in lrs]
        self._groups = self._grouped()

    def keep(self, indices: list[int]) -> None:
        """Drops the trials not at ``indices``; call after the network's ``keep``."""
        rows = torch.tensor(indices, dtype=torch.long, device=self._device)
        for name, value in self.state.items():
            self.state[name] = value.index_select(0, rows)
        self.trials = [self.trials[i] for i in indices]
        self.lrs = [self.lrs[i] for i in indices]
        self._groups = self._grouped()

    def zero_grad(self) -> None:
        self.store.zero_grad()

    def export(
        self, position: int, parameters: Mapping[str, nn.Parameter], into: torch.optim.Optimizer
    ) -> None:
        """Writes the state of the trial at ``position`` into ``into``, its own torch optimizer
        over ``parameters`` (its model's, by packed key), as that optimizer's ``step`` would
        have left it: a checkpoint of a packed trial then resumes in train_trial."""
        kind = self.trials[position].kind
        names = _TORCH_STATE[kind]
        for key, param in parameters.items():
            state: dict[str, Tensor] = {}
            for torch_name, mine in names.items():
                value = self.state.get(mine)
                if value is None:  # not stepped yet: torch has no state either
                    continue
                mine_value = self.store.trial_tensor(value, position, key)
                state[torch_name] = mine_value.clone(memory_format=torch.contiguous_format)
            if state and kind in ("rmsprop", "adam"):
                state["step"] = torch.tensor(float(self.steps))
            into.state[param] = state

    @torch.no_grad()
    def step(self) -> None:
        """One step of every trial. Works in place, in the gathered gradient and one scratch
        tensor: on a CPU, a fresh tensor the size of a pack's first layer costs more to
        allocate than the arithmetic done in it."""
        self.steps += 1
        gradient = self.store.gradient()
        for group in self._groups:
            p, g = self.store.flat[group.rows], gradient[group.rows]
            if group.decays:  # L2 into the gradient, of the weights only
                w = self.store.decay_columns
                g[:, :w].addcmul_(p[:, :w], group["weight_decay"])
            if group.kind == "sgd":
                p.addcmul_(g, group["neg_lr"])
            elif group.kind == "momentum":
                self._momentum(group, p, g)
            elif group.kind == "rmsprop":
                self._rmsprop(group, p, g)
            else:
                self._adam(group, p, g)

    def _buffer(self, name: str, group: _Group) -> Tensor:
        """The ``group``'s rows of a state tensor, zeros at first."""
        if name not in self.state:
            self.state[name] = torch.zeros_like(self.store.flat)
        return self.state[name][group.rows]

    def _momentum(self, group: _Group, p: Tensor, g: Tensor) -> None:
        buf = self._buffer("momentum", group)
        if self.steps == 1:
            buf.copy_(g)  # torch's SGD starts its buffer at the first gradient, undamped
        else:
            buf.mul_(group["beta"]).addcmul_(g, group["one_minus_beta"])
        p.addcmul_(buf, group["neg_lr"])

    def _rmsprop(self, group: _Group, p: Tensor, g: Tensor) -> None:
        square, scratch = self._buffer("square_avg", group), self._buffer("scratch", group)
        # (1-α)·g·g as torch's addcmul_(g, g, value=1-α) rounds it: ((1-α)·g)·g.
        torch.mul(g, group["one_minus_beta"], out=scratch)
        square.mul_(group["beta"]).addcmul_(g, scratch)
        torch.sqrt(square, out=scratch).add_(group["eps"])
        torch.div(g, scratch, out=scratch)
        p.addcmul_(scratch, group["neg_lr"])

    def _adam(self, group: _Group, p: Tensor, g: Tensor) -> None:
        m, v = self._buffer("exp_avg", group), self._buffer("exp_avg_sq", group)
        scratch = self._buffer("scratch", group)
        neg_step, bias2_sqrt = _adam_factors(group, self.steps)
        m.lerp_(g, group["one_minus_beta"])
        torch.mul(g, group["one_minus_beta2"], out=scratch)
        v.mul_(group["beta2"]).addcmul_(g, scratch)
        torch.sqrt(v, out=scratch).div_(bias2_sqrt).add_(group["eps"])
        torch.div(m, scratch, out=scratch)
        p.addcmul_(scratch, neg_step)


def _adam_factors(group: _Group, step: int) -> tuple[Tensor, Tensor]:
    """-lr / (1 - β1^t) and sqrt(1 - β2^t) per trial, computed in double as torch does."""
    neg_step = -group["lr64"] / (1 - group["beta64"] ** step)
    bias2_sqrt = (1 - group["beta2_64"] ** step) ** 0.5
    return neg_step.float(), bias2_sqrt.float()
