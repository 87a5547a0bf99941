"""K networks of one architecture as one network: every parameter gains a leading trial
dimension, and each layer runs all K trials in one batched kernel (``bmm`` for linear layers,
a grouped convolution for conv layers, batch norm over K·C channels).

The packed network is built from the K trials' own ``nn.Sequential`` models (as
:func:`workers.training.models.build_model` made and initialized them), so initialization is
exactly the unpacked one, and :meth:`PackedNetwork.unpack` writes a trial's trained values back
into its model for the final metrics, the test evaluation and checkpoints.

Activations flow in one of three layouts:

- ``shared``: (N, ...) one input for every trial (evaluation, where all trials see the same
  examples: the first layer then runs as one wide matmul/convolution for all trials);
- ``trials``: (K, N, features...) each trial its own batch (training: own data order);
- ``channels``: (N, K·C, H, W) the trials' feature maps side by side, for grouped convolutions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional

Layout = Literal["shared", "trials", "channels"]


class ArchitectureMismatch(ValueError):
    """Trials whose networks differ in shape or kind cannot share one packed model."""


@dataclass
class Activations:
    x: Tensor
    layout: Layout


@dataclass
class Store:
    """The pack's tensors, each with the trial dimension first.

    All parameters live in one (K, P) tensor, ``flat``, and ``params`` are views into it: the
    optimizer then updates every parameter of a trial with a handful of operations on rows of
    ``flat`` instead of a handful per parameter (on a GPU, each operation is a kernel launch).
    The weights that take L2 decay come first, in columns [0, ``decay_columns``).
    """

    params: dict[str, Tensor] = field(default_factory=dict)
    buffers: dict[str, Tensor] = field(default_factory=dict)
    sources: dict[str, tuple[int, str]] = field(default_factory=dict)
    """(skeleton index, attribute) of each tensor in the trials' own models."""
    transposed: set[str] = field(default_factory=set)
    """Tensors stored as the transpose of the models' own (linear weights)."""
    flat: Tensor = field(default_factory=lambda: torch.empty(0, 0))
    decay_columns: int = 0
    _shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    _gradient: Tensor | None = None

    def assemble(self, stacked: Mapping[str, Tensor], decays: Mapping[str, bool]) -> None:
        """Lays ``stacked`` (K, ...) parameters out in ``flat``: weights (decaying) first."""
        order = sorted(stacked, key=lambda key: not decays[key])  # stable: weights first
        self._shapes = {key: tuple(stacked[key].shape[1:]) for key in order}
        self.decay_columns = sum(stacked[k][0].numel() for k in order if decays[k])
        rows = [stacked[key].reshape(len(stacked[key]), -1) for key in order]
        self._views(torch.cat(rows, dim=1))

    def _views(self, flat: Tensor) -> None:
        self.flat, self._gradient, self.params = flat, None, {}
        start, k = 0, len(flat)
        for key, shape in self._shapes.items():
            end = start + math.prod(shape)
            # A view of a tensor that needs no gradient is a leaf: autograd fills its .grad.
            self.params[key] = flat[:, start:end].view(k, *shape).requires_grad_()
            start = end

    def columns(self, key: str) -> slice:
        """Where parameter ``key`` lies in a row of ``flat``."""
        start = 0
        for name, shape in self._shapes.items():
            if name == key:
                return slice(start, start + math.prod(shape))
            start += math.prod(shape)
        raise KeyError(key)

    def trial_tensor(self, values: Tensor, position: int, key: str) -> Tensor:
        """Parameter ``key`` of the trial at ``position``, read from ``values`` (``flat`` or
        a (K, P) optimizer state laid out like it), shaped as the trial's own model has it."""
        shape = self._shapes[key]
        value = values[position, self.columns(key)].view(shape)
        return value.t() if key in self.transposed else value

    def gradient(self) -> Tensor:
        """The last backward's gradients, laid out as ``flat`` (one copy)."""
        if self._gradient is None:
            self._gradient = torch.empty_like(self.flat)
        grads = [p.grad for p in self.params.values()]
        assert all(g is not None for g in grads), "every parameter takes part in the loss"
        k = len(self.flat)
        torch.cat([g.reshape(k, -1) for g in grads if g is not None], dim=1, out=self._gradient)
        return self._gradient

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None

    def keep(self, rows: Tensor) -> None:
        """Keeps the trials at ``rows`` (positions in the pack, in order)."""
        with torch.no_grad():
            self._views(self.flat.index_select(0, rows))
            for key, value in self.buffers.items():
                self.buffers[key] = value.index_select(0, rows)

    def size(self) -> int:
        return len(self.flat)


Layer = Callable[[Activations, bool], Activations]


def _trials(a: Activations) -> Tensor:
    """(K, N, ...) view of per-trial activations."""
    if a.layout == "trials":
        return a.x
    raise ArchitectureMismatch(f"a dense layer got {a.layout} activations; flatten first")


class _Linear:
    """Weights kept as (K, in, out), the transpose of nn.Linear's: ``x @ w`` then reads them
    as stored, and their gradient comes out in that layout (with (K, out, in), autograd
    transposes an (in, out) gradient into place on every step, which costs as much as the
    matmul)."""

    def __init__(self, store: Store, key: str, has_bias: bool) -> None:
        self.store, self.key, self.has_bias = store, key, has_bias

    def __call__(self, a: Activations, training: bool) -> Activations:
        w = self.store.params[f"{self.key}.weight"]  # (K, in, out)
        b = self.store.params.get(f"{self.key}.bias") if self.has_bias else None  # (K, out)
        k, inp, out = w.shape
        if a.layout == "shared":
            # Same input for all trials: one (N, in) × (in, K·out) matmul instead of K.
            flat_w = w.transpose(0, 1).reshape(inp, k * out)
            y = a.x @ flat_w if b is None else torch.addmm(b.reshape(k * out), a.x, flat_w)
            return Activations(y.view(-1, k, out).transpose(0, 1), "trials")
        x = _trials(a)
        if b is None:
            return Activations(torch.bmm(x, w), "trials")
        return Activations(torch.baddbmm(b.unsqueeze(1), x, w), "trials")


class _Conv2d:
    def __init__(self, store: Store, key: str, module: nn.Conv2d) -> None:
        if module.groups != 1 or module.padding_mode != "zeros":
            raise ArchitectureMismatch("only plain zero-padded convolutions can be packed")
        self.store, self.key = store, key
        self.has_bias = module.bias is not None
        self.stride, self.padding, self.dilation = module.stride, module.padding, module.dilation

    def __call__(self, a: Activations, training: bool) -> Activations:
        w = self.store.params[f"{self.key}.weight"]  # (K, Cout, Cin, kh, kw)
        b = self.store.params.get(f"{self.key}.bias") if self.has_bias else None
        k, c_out, c_in = w.shape[:3]
        flat_w = w.reshape(k * c_out, c_in, *w.shape[3:])
        flat_b = None if b is None else b.reshape(k * c_out)
        x, groups = a.x, k
        if a.layout == "shared":
            groups = 1  # one input, all trials' filters as output channels of one convolution
        elif a.layout == "trials":
            n = x.shape[1]
            x = x.transpose(0, 1).reshape(n, k * c_in, *x.shape[3:])
        y = functional.conv2d(x, flat_w, flat_b, self.stride, self.padding, self.dilation, groups)
        return Activations(y, "channels")


class _BatchNorm:
    """Batch norm of K trials × C features as batch norm of K·C channels: the statistics of a
    channel are over the batch only, so the trials stay independent."""

    def __init__(self, store: Store, key: str, module: nn.modules.batchnorm._BatchNorm) -> None:
        if module.momentum is None or not module.affine or not module.track_running_stats:
            raise ArchitectureMismatch("only affine batch norm with a momentum can be packed")
        self.store, self.key = store, key
        self.momentum, self.eps = float(module.momentum), float(module.eps)
        self.batches = 0

    def __call__(self, a: Activations, training: bool) -> Activations:
        p, buffers = self.store.params, self.store.buffers
        w, b = p[f"{self.key}.weight"], p[f"{self.key}.bias"]
        mean, var = buffers[f"{self.key}.running_mean"], buffers[f"{self.key}.running_var"]
        args = (mean.view(-1), var.view(-1), w.reshape(-1), b.reshape(-1), training)
        if training:
            self.batches += 1
        if a.layout == "channels":
            y = functional.batch_norm(a.x, *args, self.momentum, self.eps)
            return Activations(y, "channels")
        x = _trials(a)
        k, n, c = x.shape
        y = functional.batch_norm(
            x.transpose(0, 1).reshape(n, k * c), *args, self.momentum, self.eps
        )
        return Activations(y.view(n, k, c).transpose(0, 1), "trials")


class _Dropout:
    """Each trial's own drop probability.

    With one generator per trial (on CPU), each trial's masks are drawn from its own
    generator in the order its unpacked run draws them, so they are the very same masks; that
    costs one small draw per trial. With one generator for the pack (on a GPU, where K draws
    would be K kernel launches per layer and step, and where nn.Dropout's fused kernel draws
    differently anyway), all trials' masks come from one draw: same distribution, other masks.
    """

    def __init__(
        self, probabilities: list[float], generators: list[torch.Generator] | torch.Generator
    ) -> None:
        self.probabilities, self.generators = probabilities, generators
        self._keep: Tensor | None = None

    def __call__(self, a: Activations, training: bool) -> Activations:
        if not training:
            return a
        x = _trials(a)
        if isinstance(self.generators, torch.Generator):
            if self._keep is None:
                keep = [1 - p for p in self.probabilities]
                self._keep = torch.tensor(keep, dtype=x.dtype, device=x.device).view(-1, 1, 1)
            draw = torch.rand(x.shape, generator=self.generators, dtype=x.dtype, device=x.device)
            return Activations(torch.where(draw < self._keep, x / self._keep, 0.0), "trials")
        # Contiguous, like the unpacked layer's input, so each trial's bernoulli_ consumes
        # its generator exactly as nn.Dropout would.
        noise = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        for k, (p, generator) in enumerate(zip(self.probabilities, self.generators, strict=True)):
            if p == 0:
                noise[k].fill_(1.0)
            else:
                noise[k].bernoulli_(1 - p, generator=generator).div_(1 - p)
        return Activations(x * noise, "trials")

    def keep(self, indices: list[int]) -> None:
        self.probabilities = [self.probabilities[i] for i in indices]
        self._keep = None
        if not isinstance(self.generators, torch.Generator):
            self.generators = [self.generators[i] for i in indices]


class _Flatten:
    """nn.Flatten per trial; (N, K·C, H, W) becomes (K, N, C·H·W), in the order nn.Flatten
    lays out one trial's feature maps."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __call__(self, a: Activations, training: bool) -> Activations:
        if a.layout == "shared":
            return Activations(a.x.flatten(1), "shared")
        if a.layout == "trials":
            return Activations(a.x.flatten(2), "trials")
        n = a.x.shape[0]
        return Activations(a.x.reshape(n, self.store.size(), -1).transpose(0, 1), "trials")


def _elementwise(module: nn.Module) -> Layer:
    def apply(a: Activations, training: bool) -> Activations:
        return Activations(module(a.x), a.layout)

    return apply


_ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.MaxPool2d)


@dataclass(frozen=True)
class _Skeleton:
    """A model without its Dropout layers (their rates may differ between trials of a pack),
    and the drop probability that follows each remaining layer (0: none)."""

    modules: list[nn.Module]
    dropout_after: list[float]

    def signature(self) -> list[str]:
        return [f"{type(m).__name__}({m.extra_repr()})" for m in self.modules]


def _skeleton(model: nn.Sequential) -> _Skeleton:
    modules: list[nn.Module] = []
    dropout_after: list[float] = []
    for module in model:
        if isinstance(module, nn.Dropout):
            if not modules:
                raise ArchitectureMismatch("a packed network cannot start with dropout")
            dropout_after[-1] = float(module.p)
            continue
        modules.append(module)
        dropout_after.append(0.0)
    return _Skeleton(modules, dropout_after)


class PackedNetwork:
    """The trials' models stacked; ``forward`` returns (K, N, classes) logits."""

    def __init__(
        self,
        models: Sequence[nn.Sequential],
        generators: list[torch.Generator] | torch.Generator,
    ) -> None:
        """``generators``: dropout's, one per trial or one for the pack (see _Dropout)."""
        skeletons = [_skeleton(m) for m in models]
        first = skeletons[0].signature()
        for i, s in enumerate(skeletons[1:], start=1):
            if s.signature() != first:
                raise ArchitectureMismatch(
                    "the trials of a pack must build the same network: trial 0 has "
                    f"{first}, trial {i} has {s.signature()}"
                )
        self.store = Store()
        self.layers: list[Layer] = []
        self._dropouts: list[_Dropout] = []
        self._stacked: dict[str, Tensor] = {}
        self._decays: dict[str, bool] = {}
        for index, module in enumerate(skeletons[0].modules):
            self.layers.append(self._layer(index, module, [s.modules[index] for s in skeletons]))
            rates = [s.dropout_after[index] for s in skeletons]
            if any(rates):
                dropout = _Dropout(rates, generators)
                self._dropouts.append(dropout)
                self.layers.append(dropout)
        self.store.assemble(self._stacked, self._decays)
        del self._stacked, self._decays

    def _layer(self, index: int, module: nn.Module, same: list[nn.Module]) -> Layer:
        key = str(index)
        if isinstance(module, nn.Flatten):
            if (module.start_dim, module.end_dim) != (1, -1):
                raise ArchitectureMismatch("only nn.Flatten() of all but the batch dim packs")
            return _Flatten(self.store)
        if isinstance(module, _ELEMENTWISE):
            return _elementwise(module)
        if isinstance(module, nn.Linear):
            self._stack(index, same, ["weight", "bias"], [])
            return _Linear(self.store, key, module.bias is not None)
        if isinstance(module, nn.Conv2d):
            self._stack(index, same, ["weight", "bias"], [])
            return _Conv2d(self.store, key, module)
        if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            self._stack(index, same, ["weight", "bias"], ["running_mean", "running_var"])
            return _BatchNorm(self.store, key, module)
        raise ArchitectureMismatch(f"cannot pack a {type(module).__name__} layer")

    def _stack(
        self, index: int, same: list[nn.Module], params: list[str], buffers: list[str]
    ) -> None:
        with torch.no_grad():
            for name in params:
                values = [getattr(m, name) for m in same]
                if values[0] is None:
                    continue
                key = f"{index}.{name}"
                stacked = torch.stack([v.detach() for v in values])
                if isinstance(same[0], nn.Linear) and name == "weight":
                    stacked = stacked.transpose(1, 2)  # see _Linear
                    self.store.transposed.add(key)
                self._stacked[key] = stacked
                # L2 on weights only: biases and batch-norm γ/β shift and scale (optimizers.py)
                self._decays[key] = values[0].ndim > 1
                self.store.sources[key] = (index, name)
            for name in buffers:
                key = f"{index}.{name}"
                self.store.buffers[key] = torch.stack([getattr(m, name) for m in same]).clone()
                self.store.sources[key] = (index, name)

    def __len__(self) -> int:
        return self.store.size()

    def forward(self, x: Tensor, *, shared: bool, training: bool) -> Tensor:
        """``x``: (N, ...) one batch for all trials if ``shared``, else (K, N, ...)."""
        a = Activations(x, "shared" if shared else "trials")
        for layer in self.layers:
            a = layer(a, training)
        return _trials(a)

    def keep(self, indices: list[int]) -> None:
        """Drops every trial not in ``indices`` (positions in the current pack, in order)."""
        self.store.keep(torch.tensor(indices, dtype=torch.long, device=self.store.flat.device))
        for dropout in self._dropouts:
            dropout.keep(indices)

    def parameters_of(self, model: nn.Sequential) -> dict[str, nn.Parameter]:
        """The parameters of ``model`` (one the pack was built from), by packed key."""
        modules = _skeleton(model).modules
        found: dict[str, nn.Parameter] = {}
        for key in self.store.params:
            index, name = self.store.sources[key]
            found[key] = getattr(modules[index], name)
        return found

    def unpack(self, position: int, model: nn.Sequential) -> None:
        """Copies the trial at ``position`` of the pack into ``model`` (one of the models the
        pack was built from), batch-norm statistics and batch counts included."""
        modules = _skeleton(model).modules
        with torch.no_grad():
            for key, param in self.parameters_of(model).items():
                param.copy_(self.store.trial_tensor(self.store.flat, position, key))
            for key, value in self.store.buffers.items():
                index, name = self.store.sources[key]
                getattr(modules[index], name).copy_(value[position])
        counts = iter(layer.batches for layer in self.layers if isinstance(layer, _BatchNorm))
        for module in modules:
            if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
                assert module.num_batches_tracked is not None
                module.num_batches_tracked.fill_(next(counts))
