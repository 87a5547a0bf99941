"""The sampler interface: a pure policy over (space, history, seed). No I/O.

The store hands history in, the sampler hands parameter sets out. A sampler that needs no
history says so (``needs_history = False``) and the store skips loading it, which keeps the
claim path flat however long the study grows.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field

from hpsearch.objective import Objective
from hpsearch.space import ParamValue, Space
from hpsearch.states import TrialState


@dataclass(frozen=True)
class FinishedTrial:
    """What a sampler may know of a trial that has ended."""

    number: int
    params: dict[str, ParamValue]
    state: TrialState  # one of ENDED
    value: float | None = None
    feasible: bool = False
    violation: float = float("inf")
    # A pruned trial's objective by step (the steps it reported before it was stopped), so
    # a model-based sampler knows how far it got; empty for other states.
    intermediate: dict[int, float] = field(default_factory=dict)


# The sampler contract's types: the study's ended trials, the params of running ones, and a
# proposal.
History = Sequence[FinishedTrial]
Running = Sequence[dict[str, ParamValue]]
Params = dict[str, ParamValue]


class Sampler(abc.ABC):
    """Proposes parameter sets. Implementations must be deterministic given their seed."""

    needs_history: bool = True

    def __init__(self, space: Space, objective: Objective) -> None:
        self.space = space
        self.objective = objective

    @abc.abstractmethod
    def propose(self, number: int, history: History, running: Running) -> Params | None:
        """The params of trial ``number``, or ``None`` when the sampler has nothing left.

        ``history`` holds the study's ended trials; ``running`` the params of trials claimed
        but not finished, so model-based samplers can avoid proposing them again.
        """

    def capacity(self) -> int | None:
        """How many distinct trials this sampler can propose, when finite (grids)."""
        return None
