"""Caviar on one device: K trials of one architecture trained at once, as one packed model.

Small models leave a GPU (or the cores of a CPU) mostly idle: a step of a 784-64-64-10 MLP is a
few tiny kernels whose launch and Python overhead cost more than their arithmetic, and a
64×784×64 matmul runs at a third of the speed of sixteen of them batched. Stacking K trials'
parameters along a leading trial dimension turns each layer's K small matmuls into one batched
matmul, so one step does K trials' work for little more than one trial's overhead.

Each trial keeps everything that makes it its own: its initialization (each model is built by
:func:`~workers.training.models.build_model` under the trial's seed, exactly as
:func:`~workers.training.run.train_trial` builds it), its optimizer and settings (lr and its
decay schedule, β, ε, weight decay), dropout rate and masks, its data order (shuffled by its
own seed), its metrics and its reports. Results equal training the trials one at a time up to
floating-point rounding (on CPU, dropout masks are the very same; on a GPU all trials' masks
come from one draw per layer, so only their distribution is the same).

One trial leaving the pack (its ``report`` asks to stop or raises, its loss diverges) is taken
out of the pack at the end of that epoch; the others go on, unaffected, since no computation
mixes trials.

What must be equal across a pack: the task, and the hyperparameters that shape the network or
its steps (:data:`hpsearch.packing.PACK_KEYS`). The train_seconds metric of a packed trial is
the pack's wall time.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional

from hpsearch.packing import PACK_KEYS
from hpsearch.space import ParamValue
from hpsearch.spec import TaskSpec
from workers.training.checkpoint import Checkpoints, CheckpointWriter
from workers.training.hyperparameters import Hyperparameters, resolve
from workers.training.metrics import Evaluation
from workers.training.models import build_model
from workers.training.optimizers import build_optimizer, learning_rate
from workers.training.packed_layers import ArchitectureMismatch, PackedNetwork
from workers.training.packed_optimizers import KINDS, PackedOptimizer, settings
from workers.training.run import (
    Progress,
    Report,
    TrainingResult,
    TrainingStopped,
    _check_finite,
    _epoch_metrics,
    _final_metrics,
    _never_stop,
    _rng_devices,
    _splits,
)
from workers.training.splits import Split, Splits

_EVAL_BLOCK = 4096
"""evaluate's default batch size, which is how it blocks its float32 loss sums."""


class PackMismatch(ArchitectureMismatch):
    """Trials that cannot be trained as one pack; the message names the hyperparameter."""


@dataclass
class PackedTrialSpec:
    params: Mapping[str, ParamValue]
    seed: int | None = None
    """As for train_trial: None draws one at random (returned in the result)."""
    report: Report = field(default=_never_stop)
    """Called after each epoch with (epoch, metrics); True or TrainingStopped ends this trial
    only; any other exception fails this trial only (it becomes the trial's outcome)."""
    checkpoints: Checkpoints | None = None
    """Where to save the trial's checkpoints, as train_trial saves them (every
    ``task.checkpoint_every`` epochs and at the end): train_trial can resume from them. A pack
    never resumes (its trials step together from epoch 1): train a trial that has a
    checkpoint with train_trial."""


Outcome = TrainingResult | Exception
"""A trial's result, or the exception that ended it (TrainingDiverged, a hyperparameter it
cannot run, whatever its report raised)."""


def train_packed(
    trials: Sequence[PackedTrialSpec], task: Mapping[str, object], device: str = "cpu"
) -> list[Outcome]:
    """Trains ``trials`` (all of ``task``) as one packed model; one outcome per trial, in
    order. Never evaluates the test set.

    Raises PackMismatch when the trials differ in a :data:`PACK_KEYS` hyperparameter, and,
    like train_trial, ValueError / FileNotFoundError for a task it cannot run (these concern
    every trial). A trial's own bad hyperparameter is that trial's outcome.
    """
    spec = TaskSpec.model_validate(dict(task))
    if spec.trainer not in PACK_KEYS:
        raise PackMismatch(
            f"trainer {spec.trainer!r} cannot be packed; packable: {sorted(PACK_KEYS)}"
        )
    outcomes: list[Outcome | None] = [None] * len(trials)
    seeds = [secrets.randbelow(2**31) if t.seed is None else t.seed for t in trials]
    hps: dict[int, Hyperparameters] = {}
    for i, trial in enumerate(trials):
        try:
            hps[i] = resolve(spec.trainer, spec.fixed, trial.params)
            learning_rate(hps[i], 1)  # the decay settings, checked before any data is read
        except ValueError as e:
            outcomes[i] = e
    _check_same_shape(spec.trainer, hps)
    if hps:
        target = torch.device(device)
        splits = _splits(spec, with_test=False).to(target)
        members = [_Member(i, trials[i], hps[i], seeds[i]) for i in hps]
        for member in _Pack(spec, members, splits, target).train(spec.epochs):
            outcomes[member.index] = member.outcome
    assert all(o is not None for o in outcomes)
    return [o for o in outcomes if o is not None]


def _check_same_shape(trainer: str, hps: Mapping[int, Hyperparameters]) -> None:
    if not hps:
        return
    first, *others = hps
    for name in PACK_KEYS[trainer]:
        for i in others:
            if hps[i][name] != hps[first][name]:
                raise PackMismatch(
                    f"trials of one pack must share {name} (it shapes the network or its "
                    f"steps): trial {first} has {name}={hps[first][name]!r}, "
                    f"trial {i} has {name}={hps[i][name]!r}"
                )


@dataclass
class _Member:
    """One trial inside a pack."""

    index: int
    trial: PackedTrialSpec
    hp: Hyperparameters
    seed: int
    outcome: Outcome | None = None
    seconds: float = 0.0
    """Training and evaluation time of the epochs this trial took part in."""


@dataclass
class _Built:
    """A member's own model and generators, made exactly as train_trial makes them."""

    member: _Member
    model: nn.Sequential
    optimizer: torch.optim.Optimizer
    """Its own torch optimizer: where its settings are read from, and its checkpoints' state."""
    order: torch.Generator
    """Shuffles its data, seeded like train_trial's."""
    dropout: torch.Generator
    """Draws its dropout masks (on CPU) where train_trial would use the global generator."""
    writer: CheckpointWriter | None = None


@dataclass(frozen=True)
class _Epoch:
    train: list[Evaluation]
    dev: list[Evaluation]
    train_dev: list[Evaluation] | None


class _Pack:
    def __init__(
        self, spec: TaskSpec, members: list[_Member], splits: Splits, device: torch.device
    ) -> None:
        self.splits, self.device = splits, device
        built = [_build(spec, m, splits, device) for m in members]
        trials = {id(b): settings(b.optimizer) for b in built}
        # Trials of one optimizer kind side by side: the packed optimizer updates views.
        built.sort(key=lambda b: KINDS.index(trials[id(b)].kind))
        self.members = built
        dropout: list[torch.Generator] | torch.Generator = [b.dropout for b in built]
        if device.type != "cpu":  # one draw for the pack: see packed_layers._Dropout
            mixed = sum(b.member.seed * (i + 1) for i, b in enumerate(built)) % 2**63
            dropout = torch.Generator(device=device).manual_seed(mixed)
        self.network = PackedNetwork([b.model for b in built], dropout)
        self.optimizer = PackedOptimizer(
            self.network.store,
            [trials[id(b)] for b in built],
            [b.member.hp.number("lr") for b in built],
        )
        self.batch_size = built[0].member.hp.integer("batch_size")

    def train(self, epochs: int) -> list[_Member]:
        """Trains until every member has an outcome; returns the members."""
        done: list[_Member] = []
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            lrs = [learning_rate(b.member.hp, epoch) for b in self.members]
            self.optimizer.set_learning_rates(lrs)
            self._train_epoch()
            evaluations = self._evaluations()
            elapsed = time.perf_counter() - started  # reports (HTTP calls) are not training
            staying: list[int] = []
            for position, (built, lr) in enumerate(zip(self.members, lrs, strict=True)):
                built.member.seconds += elapsed
                stop = self._report(built.member, epoch, evaluations, position, lr)
                if built.member.outcome is None and built.writer is not None:
                    self._save(position, built, epoch, last=stop or epoch == epochs)
                if built.member.outcome is None and (stop or epoch == epochs):
                    self._finish(position, built, epoch, stop and epoch < epochs, evaluations)
                if built.member.outcome is None:
                    staying.append(position)
                else:
                    done.append(built.member)
            if not staying:
                break
            if len(staying) < len(self.members):
                self._keep(staying)
        return done

    def _train_epoch(self) -> None:
        train = self.splits.train
        n, k = len(train), len(self.members)
        orders = torch.stack([torch.randperm(n, generator=b.order) for b in self.members])
        orders = orders.to(self.device)
        for start in range(0, n, self.batch_size):
            batch = orders[:, start : start + self.batch_size]
            if batch.shape[1] == 1 and n > 1:
                continue  # as train_trial: batch norm cannot normalize one example
            rows = batch.reshape(-1)  # index_select: twice as fast as x[batch] on CPU
            x = train.x.index_select(0, rows).view(k, -1, *train.x.shape[1:])
            logits = self.network.forward(x, shared=False, training=True)
            losses = functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]),
                train.y.index_select(0, rows),
                reduction="none",
            )
            self.optimizer.zero_grad()
            # Summing the trials' mean losses gives each trial exactly its own gradient.
            torch.autograd.backward(losses.view(k, -1).mean(1).sum())
            self.optimizer.step()

    def _evaluations(self) -> _Epoch:
        s = self.splits
        train_dev = self._evaluate(s.train_dev) if s.train_dev is not None else None
        return _Epoch(self._evaluate(s.train), self._evaluate(s.dev), train_dev)

    def _evaluate(self, split: Split) -> list[Evaluation]:
        """Each trial's :func:`~workers.training.metrics.evaluate` of ``split``, all at once.

        The loss is summed as evaluate sums it (float32 per block of 4096 examples, the
        blocks in float64), whatever the pack's size: a trial's numbers do not depend on
        which other trials share its pack.
        """
        k, n = len(self.members), len(split)
        # Chunks shrink with K so a pack's activations take what one trial's 4096 would.
        chunk = max(256, 4096 // k)
        per_example = torch.empty(k, n, device=split.y.device)
        predicted = torch.empty(k, n, dtype=torch.long, device=split.y.device)
        with torch.inference_mode():
            for start in range(0, n, chunk):
                end = min(n, start + chunk)
                logits = self.network.forward(split.x[start:end], shared=True, training=False)
                per_example[:, start:end] = functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]),
                    split.y[start:end].repeat(k),
                    reduction="none",
                ).view(k, -1)
                predicted[:, start:end] = logits.argmax(dim=2)
            blocks = torch.split(per_example, _EVAL_BLOCK, dim=1)
            loss = sum(block.sum(dim=1).double() for block in blocks)
            correct = (predicted == split.y).sum(dim=1)
            # One transfer for all the numbers: each .item() on a GPU waits for the device.
            losses, corrects = torch.stack([torch.as_tensor(loss), correct.double()]).tolist()
        return [Evaluation(losses[i] / n, corrects[i] / n, predicted[i].clone()) for i in range(k)]

    def _report(
        self, member: _Member, epoch: int, evaluations: _Epoch, position: int, lr: float
    ) -> bool:
        """True when the trial asks to stop; sets its outcome when it fails."""
        td = evaluations.train_dev[position] if evaluations.train_dev is not None else None
        metrics = _epoch_metrics(evaluations.train[position], evaluations.dev[position], td, lr)
        try:
            _check_finite(metrics, epoch, lr)
            return bool(member.trial.report(epoch, metrics))
        except TrainingStopped:
            return True
        except Exception as e:  # one trial's failure (its report, its divergence) is its own
            member.outcome = e
            return True

    def _save(self, position: int, built: _Built, epoch: int, last: bool) -> None:
        """The checkpoint train_trial would save after this epoch (its writer decides
        whether one is due); a failure to save fails this trial only, as a report would."""
        assert built.writer is not None
        self.network.unpack(position, built.model)
        self.optimizer.export(position, self.network.parameters_of(built.model), built.optimizer)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.set_rng_state(built.dropout.get_state())  # what its dropout draws next
                built.writer(epoch, built.member.seconds, built.order, last)
        except Exception as e:
            built.member.outcome = e

    def _finish(
        self, position: int, built: _Built, epoch: int, stopped: bool, evaluations: _Epoch
    ) -> None:
        self.network.unpack(position, built.model)
        td = evaluations.train_dev[position] if evaluations.train_dev is not None else None
        progress = Progress(
            epoch,
            stopped,
            built.member.seconds,
            evaluations.train[position],
            evaluations.dev[position],
            td,
        )
        built.member.outcome = TrainingResult(
            metrics=_final_metrics(built.model, self.splits, progress),
            stopped_early=stopped,
            epochs_run=epoch,
            seed=built.member.seed,
            model=built.model,
        )

    def _keep(self, positions: list[int]) -> None:
        self.network.keep(positions)
        self.optimizer.keep(positions)
        self.members = [self.members[i] for i in positions]


def _build(spec: TaskSpec, member: _Member, splits: Splits, device: torch.device) -> _Built:
    # fork_rng: seeding must make each trial reproducible without reseeding the caller's RNG.
    with torch.random.fork_rng(devices=_rng_devices(device)):
        torch.manual_seed(member.seed)
        model = build_model(spec.trainer, member.hp, splits.input_shape, splits.n_classes)
        dropout = torch.Generator()
        dropout.set_state(torch.get_rng_state())  # where train_trial's dropout starts
    assert isinstance(model, nn.Sequential)
    model = model.to(device)
    optimizer = build_optimizer(model, member.hp)
    order = torch.Generator().manual_seed(member.seed)
    built = _Built(member, model, optimizer, order, dropout)
    if member.trial.checkpoints is not None:
        built.writer = CheckpointWriter(
            member.trial.checkpoints,
            spec.checkpoint_every,
            trainer=spec.trainer,
            params=member.trial.params,
            model=model,
            optimizer=optimizer,
            optimizer_name=member.hp.choice("optimizer"),
            device=device,
        )
    return built
