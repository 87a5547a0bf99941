"""Pack keys and the grouped sampler: trials of a group share their architecture, and grouping
biases nothing (statistical tests with fixed seeds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from hpsearch import tasks
from hpsearch.objective import Objective
from hpsearch.packing import PACK_KEYS, GroupedSampler, pack_key
from hpsearch.samplers import GridSampler, RandomSampler
from hpsearch.space import CategoricalParam, FloatParam, IntParam, Space

OBJ = Objective("dev_accuracy", "maximize")
SPACE = Space(
    [
        FloatParam("lr", 1e-4, 1.0, "log"),
        IntParam("hidden_units", 16, 256, "log"),
        IntParam("layers", 1, 4),
        FloatParam("beta", 0.9, 0.999, "reverse_log"),
        CategoricalParam("optimizer", ("sgd", "adam")),
    ]
)
ARCHITECTURE = ("hidden_units", "layers")


def test_every_built_in_trainer_has_pack_keys_it_knows() -> None:
    assert set(PACK_KEYS) == set(tasks.TRAINERS)
    for trainer, keys in PACK_KEYS.items():
        assert set(keys) <= set(tasks.known_hyperparameters(trainer)), trainer


def test_pack_key_resolves_like_the_trainer() -> None:
    mlp = "mlp_classifier"
    assert pack_key(mlp, {}, {}) == (2, 64, "relu", False, 64)  # the catalogue's defaults
    assert pack_key(mlp, {"layers": 3}, {"hidden_units": 128.0}) == (3, 128, "relu", False, 64)
    assert pack_key(mlp, {}, {"lr": 0.1}) == pack_key(mlp, {}, {"lr": 0.5, "dropout": 0.3})
    assert pack_key(mlp, {}, {"batch_size": 32}) != pack_key(mlp, {}, {})
    assert pack_key("custom", {}, {}) is None


def grouped(size: int, seed: int = 7) -> tuple[GroupedSampler, RandomSampler]:
    inner = RandomSampler(SPACE, OBJ, seed=3)
    return GroupedSampler(inner, PACK_KEYS["mlp_classifier"], size, seed), inner


def test_a_group_shares_its_architecture_and_nothing_else() -> None:
    sampler, inner = grouped(4)
    proposals = [sampler.propose(n, [], []) for n in range(40)]
    for group in range(10):
        members = proposals[4 * group : 4 * group + 4]
        assert all(m is not None for m in members)
        keys = {tuple(m[k] for k in ARCHITECTURE) for m in members if m is not None}
        assert len(keys) == 1
        assert len({m["lr"] for m in members if m is not None}) == 4
    # The other parameters are exactly what the wrapped sampler proposes.
    for n, proposal in enumerate(proposals):
        assert proposal is not None
        plain = inner.propose(n, [], [])
        assert {k: v for k, v in proposal.items() if k not in ARCHITECTURE} == {
            k: v for k, v in plain.items() if k not in ARCHITECTURE
        }


def test_groups_are_reproducible_from_the_seed() -> None:
    a, _ = grouped(4, seed=1)
    b, _ = grouped(4, seed=1)
    c, _ = grouped(4, seed=2)
    assert [a.propose(n, [], []) for n in range(12)] == [b.propose(n, [], []) for n in range(12)]
    assert [a.shared(g) for g in range(5)] != [c.shared(g) for g in range(5)]


def test_grouped_architecture_keeps_its_distribution() -> None:
    """Over many groups, hidden_units is log-uniform on [16, 256] and layers uniform on 1..4,
    as without grouping: one draw per group, from the same distribution."""
    sampler, _ = grouped(8)
    shared = [sampler.shared(g) for g in range(3000)]
    layers = np.array([s["layers"] for s in shared])
    counts = np.bincount(layers, minlength=5)[1:]
    assert stats.chisquare(counts).pvalue > 0.001
    # Log-scaled integers: value v owns [v - 0.5, v + 0.5) of a log-uniform draw on
    # [15.5, 256.5], so a bin of values [a, b) has probability log((b - .5) / (a - .5)) / log(...).
    hidden = np.array([s["hidden_units"] for s in shared])
    edges = np.array([16, 24, 32, 48, 64, 96, 128, 192, 257])
    observed = np.histogram(hidden, bins=edges)[0]
    expected = np.diff(np.log(edges - 0.5)) / math.log(256.5 / 15.5) * len(hidden)
    assert stats.chisquare(observed, expected).pvalue > 0.001


def test_group_of_one_and_a_space_without_architecture_change_nothing() -> None:
    inner = RandomSampler(SPACE, OBJ, seed=3)
    one = GroupedSampler(inner, PACK_KEYS["mlp_classifier"], 1, seed=0)
    assert [one.propose(n, [], []) for n in range(5)] == [
        inner.propose(n, [], []) for n in range(5)
    ]
    space = Space([FloatParam("lr", 1e-4, 1.0, "log")])
    plain = RandomSampler(space, OBJ, seed=3)
    assert GroupedSampler(plain, ("layers",), 4, 0).propose(2, [], []) == plain.propose(2, [], [])


def test_a_grid_keeps_its_capacity_and_its_end() -> None:
    inner = GridSampler(Space([IntParam("layers", 1, 2)]), OBJ, {"layers": [1, 2]}, False, None)
    sampler = GroupedSampler(inner, ("layers",), 2, seed=0)
    assert sampler.capacity() == 2
    assert sampler.propose(2, [], []) is None


def test_a_pack_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match=r"sampler\.pack must be >= 1"):
        GroupedSampler(RandomSampler(SPACE, OBJ), ("layers",), 0, seed=0)
