"""Checkpoints of a training run: everything resuming needs to go on where training stopped.

A checkpoint holds the model's state (weights, batch-norm statistics), the optimizer's state
(momentum, RMSprop and Adam moments), the learning-rate schedule's position (the epoch: every
schedule here is a function of the epoch, see ``optimizers.learning_rate``), the random state
(the data-order generator, torch's global generator that dropout draws from, and CUDA's where
training ran on a GPU) and the training seconds so far. Resuming from the checkpoint of epoch
k therefore trains epochs k+1... as the uninterrupted run would have.

Where the bytes are kept is the caller's business (:class:`Checkpoints`): the worker uploads
them to the server's artifact store, tests keep them in memory.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from hpsearch.space import ParamValue

FORMAT = 1


class Checkpoints(Protocol):
    """Where one trial's checkpoints are kept."""

    def load(self) -> bytes | None:
        """The trial's latest checkpoint, or None when it has none (a fresh start)."""

    def save(self, step: int, data: bytes) -> None:
        """Keeps ``data``, the checkpoint after epoch ``step``, as the trial's latest."""


class CheckpointError(ValueError):
    """A checkpoint this trial cannot continue from (another network shape, a newer format)."""


@dataclass(frozen=True)
class Resume:
    """Where a checkpoint left training: the next epoch to run is ``epoch + 1``."""

    epoch: int
    seconds: float
    data_order: torch.Tensor
    """The state of the generator that shuffles the training set each epoch."""


def pack(
    *,
    trainer: str,
    params: Mapping[str, ParamValue],
    epoch: int,
    seconds: float,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    optimizer_name: str,
    data_order: torch.Generator,
    device: torch.device,
) -> bytes:
    rng: dict[str, torch.Tensor] = {
        "torch": torch.get_rng_state(),
        "data_order": data_order.get_state(),
    }
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    state = {
        "format": FORMAT,
        "trainer": trainer,
        "params": dict(params),
        "epoch": epoch,
        "seconds": seconds,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "optimizer_name": optimizer_name,
        # The schedule is lr(epoch) from the hyperparameters; its state is the epoch.
        "lr_schedule": {"epoch": epoch},
        "rng": rng,
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def unpack(data: bytes) -> dict[str, Any]:
    """Reads a checkpoint made by :func:`pack`; tensors land on the CPU (the caller moves them).

    ``weights_only``: a checkpoint is data from the network, it must not be able to run code.
    """
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"the checkpoint cannot be read: {e}") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"checkpoint format {found!r} is not {FORMAT}")
    return state


def load_model(state: Mapping[str, Any], model: nn.Module) -> None:
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise CheckpointError(
            f"the checkpoint does not fit the network built from this trial's hyperparameters "
            f"({first}); a checkpoint continues only a network of the same shape"
        ) from None


def restore(
    state: Mapping[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    optimizer_name: str,
    device: torch.device,
) -> Resume:
    """Loads ``state`` into ``model``, ``optimizer`` and the random generators.

    The optimizer keeps its own hyperparameters (lr, betas, weight decay): a fork changes them
    on purpose, and only the accumulated state (moments) comes from the checkpoint. A fork to
    another optimizer starts that optimizer's state afresh, since one's moments mean nothing to
    another.
    """
    load_model(state, model)
    if state["optimizer_name"] == optimizer_name:
        settings = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
        optimizer.load_state_dict(state["optimizer"])
        for group, own in zip(optimizer.param_groups, settings, strict=True):
            group.update(own)
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    if device.type == "cuda" and "cuda" in rng:
        torch.cuda.set_rng_state(rng["cuda"], device)
    return Resume(int(state["epoch"]), float(state["seconds"]), rng["data_order"])


class CheckpointWriter:
    """Saves a checkpoint after every ``every``-th epoch and after the last one (the end of
    training, or a stop: a fork continues from exactly where its parent stopped)."""

    def __init__(
        self,
        checkpoints: Checkpoints,
        every: int,
        *,
        trainer: str,
        params: Mapping[str, ParamValue],
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        optimizer_name: str,
        device: torch.device,
    ) -> None:
        self.checkpoints = checkpoints
        self.every = every
        self._fixed: dict[str, Any] = {
            "trainer": trainer,
            "params": params,
            "model": model,
            "optimizer": optimizer,
            "optimizer_name": optimizer_name,
            "device": device,
        }
        self.saved: list[int] = []

    def __call__(self, epoch: int, seconds: float, data_order: torch.Generator, last: bool) -> None:
        if self.every <= 0 or not (last or epoch % self.every == 0):
            return
        data = pack(epoch=epoch, seconds=seconds, data_order=data_order, **self._fixed)
        self.checkpoints.save(epoch, data)
        self.saved.append(epoch)
