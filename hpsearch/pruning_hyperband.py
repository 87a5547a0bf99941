"""Hyperband (Li et al., 2018) as Optuna's ``HyperbandPruner`` runs it: asynchronous successive
halving in several brackets at once, decided server-side like ASHA.

Successive halving has to guess how early a learning curve tells good from bad: rungs that start
at step 1 stop slow starters that would have won, rungs that start late spend epochs on losers.
Hyperband hedges: bracket ``b`` is a successive halving whose first rung is at ``min_resource ·
η^b``, so bracket 0 is aggressive and the last bracket barely prunes. There are
``floor(log_η(max_resource / min_resource)) + 1`` brackets. Each trial belongs to one bracket,
chosen from its number (and the study's name) with the weights of the paper's Algorithm 1,
``ceil(n_brackets · η^s / (s + 1))`` for ``s = n_brackets - 1 - b``, and competes only with the
trials of that bracket. The assignment is Optuna's to the bit (CRC-32 of ``"{study}_{number}"``),
so a study here prunes what the same study in Optuna would, given the same reports.

Like :class:`hpsearch.pruning.AshaPruner`, a trial is judged when it reports a rung step exactly
(the worker reports every epoch), and a value that is not a number stops it.
"""

from __future__ import annotations

import binascii
import math
from dataclasses import dataclass, field

from hpsearch.objective import Direction
from hpsearch.pruning import AshaPruner, Curves


@dataclass(frozen=True)
class HyperbandPruner:
    metric: str
    direction: Direction
    study_name: str
    min_resource: int = 1
    max_resource: int = 81
    reduction_factor: int = 3
    budgets: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ratio = self.max_resource / self.min_resource
        n = math.floor(math.log(ratio, self.reduction_factor)) + 1
        weights = tuple(
            math.ceil(n * self.reduction_factor ** (n - 1 - b) / (n - b)) for b in range(n)
        )
        object.__setattr__(self, "budgets", weights)

    @property
    def n_brackets(self) -> int:
        return len(self.budgets)

    def bracket(self, number: int) -> int:
        """The bracket of trial ``number`` (Optuna's ``_get_bracket_id``)."""
        n = binascii.crc32(f"{self.study_name}_{number}".encode()) % sum(self.budgets)
        for b, weight in enumerate(self.budgets):
            n -= weight
            if n < 0:
                return b
        raise AssertionError("unreachable: the weights sum to the modulus")

    def halving(self, bracket: int) -> AshaPruner:
        """The successive halving that bracket ``bracket`` runs."""
        return AshaPruner(
            self.metric, self.direction, self.min_resource, self.reduction_factor, bracket
        )

    def judges(self, step: int) -> bool:
        # A rung of bracket 0 is a rung step of every bracket that has one there.
        return self.halving(0).judges(step)

    def decide(self, step: int, value: float | None, curves: Curves) -> str | None:
        b = self.bracket(curves.number)
        halving = self.halving(b)
        rung = halving.rung(step)
        if rung is None:
            return None
        where = f"hyperband bracket {b} of {self.n_brackets}"
        if value is None:
            return f"{where}: {self.metric} is not a number at rung {rung} (step {step})"
        others = [v for n, v in curves.numbered_others_at(step) if self.bracket(n) == b]
        reason = halving.verdict(step, value, others)
        return None if reason is None else f"{where}: {reason.removeprefix('asha: ')}"
