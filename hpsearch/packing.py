"""Which trials can be trained together as one packed model, and sampling that finds a trial
partners to be packed with. No torch here: the server's samplers use it as well as workers.

A worker started with ``--pack K`` trains up to K trials of one study at once, as one model
whose parameters carry a trial dimension (``workers.training.packed``). Trials can share a
pack when they agree on :data:`PACK_KEYS`, the hyperparameters that shape the network or its
steps; everything else (lr and its decay, the optimizer and its β/ε, weight decay, dropout,
init and weight_scale) may differ between them.

Trade-off of :class:`GroupedSampler` (``sampler: {..., pack: K}``): a random search draws new
values of every parameter for every trial, so two trials almost never agree on, say,
``hidden_units`` and no pack forms. Grouping draws the pack-defining parameters once per group
of K consecutive trials instead. Each trial's values keep their distribution (the same random
draw on each parameter's own scale) and every other parameter comes from the study's sampler
exactly as without grouping, so nothing is biased; but N trials then test only N/K distinct
architectures. Worth it when the architecture matters less than the optimizer settings, or
when K trials cost little more than one (a GPU). A model-based sampler (tpe, cmaes, gp,
coarse_to_fine) keeps choosing the other parameters, while the grouped ones are drawn at random:
it no longer narrows them down. A grid needs no grouping: list the architecture parameters
first in the space, and consecutive grid points share them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from hpsearch import tasks
from hpsearch.samplers.base import History, Params, Running, Sampler
from hpsearch.space import ParamValue

PACK_KEYS: dict[str, tuple[str, ...]] = {
    "mlp_classifier": ("layers", "hidden_units", "activation", "batch_norm", "batch_size"),
    "softmax_regression": ("batch_size",),
    "cnn_classifier": ("channels", "hidden_units", "batch_norm", "batch_size"),
}
"""Per built-in trainer, the hyperparameters trials of one pack must share: those that shape
the network, and batch_size, since the trials of a pack take their steps together."""

PackKey = tuple[ParamValue | None, ...]


def pack_key(
    trainer: str, fixed: Mapping[str, ParamValue], params: Mapping[str, ParamValue]
) -> PackKey | None:
    """Trials of one task with equal keys can share a pack; None: the trainer cannot be
    packed (a custom one). Values resolve as the trainer resolves them (params over fixed
    over the catalogue's defaults), and 64.0 is 64: JSON does not keep the difference."""
    if trainer not in PACK_KEYS:
        return None
    values: dict[str, ParamValue | None] = {**tasks.defaults(trainer), **fixed, **params}
    return tuple(_canonical(values.get(name)) for name in PACK_KEYS[trainer])


def _canonical(value: ParamValue | None) -> ParamValue | None:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class GroupedSampler(Sampler):
    """Trials ``g·size`` … ``g·size + size - 1`` (group g) share the values of ``keys``: one
    random draw per group, on each parameter's own scale, seeded by (``seed``, g). The other
    parameters are the wrapped sampler's proposal, unchanged. Keys not in the space (fixed by
    the task, or not searched) are left alone: they are equal across trials anyway.

    ``seed`` must be the same for every sampler of one study (the server may build its sampler
    again), so the members of a group agree whichever worker claims them."""

    def __init__(self, inner: Sampler, keys: Sequence[str], size: int, seed: int) -> None:
        super().__init__(inner.space, inner.objective)
        if size < 1:
            raise ValueError(f"sampler.pack must be >= 1, got {size}")
        self.inner, self.size, self.seed = inner, size, seed
        self.keys = [name for name in inner.space if name in keys]  # in the space's order
        self.needs_history = inner.needs_history

    def propose(self, number: int, history: History, running: Running) -> Params | None:
        params = self.inner.propose(number, history, running)
        if params is None or self.size == 1 or not self.keys:
            return params
        return {**params, **self.shared(number // self.size)}

    def shared(self, group: int) -> dict[str, ParamValue]:
        """The pack-defining values of group ``group``."""
        rng = np.random.default_rng([self.seed, group])
        return {name: self.space[name].from_unit(float(rng.random())) for name in self.keys}

    def capacity(self) -> int | None:
        return self.inner.capacity()
