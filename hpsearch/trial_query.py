"""What a trials table is sorted and filtered by, parsed from what a user types.

A column is a trial field (``number``, ``state``), one of the study's parameters or one of its
metrics. ``sort`` names one column, ``-`` in front for descending (``-accuracy``); a filter is
a list of conditions joined by commas or ``and`` (``lr < 0.01, state = completed``). The store
turns a :class:`TrialQuery` into SQL (``store/trial_table.py``); this module only checks the
names and values against the study, so a typo is an error naming the column, not an empty page.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal

from hpsearch.errors import InvalidInput
from hpsearch.space import CategoricalParam, Param
from hpsearch.states import TrialState

ColumnKind = Literal["field", "param", "metric", "objective"]
Operator = Literal["<", "<=", ">", ">=", "=", "!="]
Scalar = float | str

FIELDS = ("number", "state")
STATES = tuple(s.value for s in TrialState)
_CONDITION = re.compile(r"^\s*([A-Za-z_][\w.\-/]*)\s*(<=|>=|!=|==|=|<|>)\s*(.+?)\s*$")
_JOINERS = re.compile(r"\s*,\s*|\s+and\s+", re.IGNORECASE)


@dataclass(frozen=True)
class Column:
    """One column of the table: where its value lives and whether it compares as text."""

    kind: ColumnKind
    name: str
    text: bool = False  # a trial state, or a categorical parameter with non-number choices
    booleans: bool = False  # a categorical parameter with true or false among its choices


@dataclass(frozen=True)
class Condition:
    column: Column
    op: Operator
    value: Scalar


@dataclass(frozen=True)
class TrialQuery:
    sort: Column | None = None
    descending: bool = False
    conditions: tuple[Condition, ...] = ()

    @property
    def empty(self) -> bool:
        return self.sort is None and not self.conditions


@dataclass(frozen=True)
class TableColumns:
    """The columns a study's table can be sorted and filtered by."""

    params: Mapping[str, Param]
    objective: str
    metrics: Collection[str]  # every metric name the study is known to report
    any_metric: bool = False  # no trial has reported yet: any other name is taken as a metric

    def column(self, name: str, field: str) -> Column:
        if name in FIELDS:
            return Column("field", name, text=name == "state")
        if name in self.params:
            p = self.params[name]
            # Choices that are not all numbers compare as text (``act = relu``).
            choices = p.choices if isinstance(p, CategoricalParam) else ()
            text = bool(choices) and not all(_is_number(c) for c in choices)
            booleans = any(isinstance(c, bool) for c in choices)
            return Column("param", name, text=text, booleans=booleans)
        if name == self.objective:
            return Column("objective", name)
        if name in self.metrics or self.any_metric:
            return Column("metric", name)
        known = [*FIELDS, *self.params, self.objective, *sorted(set(self.metrics))]
        raise InvalidInput(field, f"no column {name!r}; columns: {', '.join(dict.fromkeys(known))}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_sort(text: str, columns: TableColumns) -> tuple[Column | None, bool]:
    """``lr`` sorts ascending, ``-lr`` descending; empty text keeps the table's own order."""
    text = text.strip()
    if not text:
        return None, False
    descending = text.startswith("-")
    return columns.column(text.lstrip("-").strip(), "sort"), descending


def parse_filter(text: str, columns: TableColumns) -> tuple[Condition, ...]:
    """``lr < 0.01, state = completed`` into conditions, all of which a row must meet."""
    conditions = []
    for part in _JOINERS.split(text.strip()):
        if not part:
            continue
        match = _CONDITION.match(part)
        if match is None:
            raise InvalidInput("filter", f"{part!r} is not 'column op value' (op: < <= > >= = !=)")
        name, op, raw = match.groups()
        column = columns.column(name, "filter")
        conditions.append(_condition(column, "=" if op == "==" else op, raw.strip("'\"")))
    return tuple(conditions)


def _condition(column: Column, op: str, raw: str) -> Condition:
    if column.text:
        if op not in ("=", "!="):
            raise InvalidInput("filter", f"{column.name} compares only with = or !=")
        if column.name == "state" and raw not in STATES:
            raise InvalidInput("filter", f"state {raw!r} is not one of {', '.join(STATES)}")
        if column.booleans and raw.lower() in ("true", "false"):
            # The choice true or false, however the database spells a JSON boolean as text.
            return Condition(column, op, raw.lower() == "true")  # type: ignore[arg-type]
        return Condition(column, op, raw)  # type: ignore[arg-type]
    try:
        number = float(raw)
    except ValueError:
        raise InvalidInput("filter", f"{column.name} compares with a number, not {raw!r}") from None
    return Condition(column, op, number)  # type: ignore[arg-type]


def parse_query(sort: str, filter_text: str, columns: TableColumns) -> TrialQuery:
    column, descending = parse_sort(sort, columns)
    return TrialQuery(column, descending, parse_filter(filter_text, columns))
