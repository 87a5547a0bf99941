"""A page of a study's trials sorted and filtered by any column: the study page's table.

Parameters and metrics live in JSON columns, so a sort or a condition on one reads it out of
the JSON in the database (``json_extract`` on SQLite, ``->>`` on PostgreSQL): one pass over
the study's rows, found through the ``study_id`` index, then a top-N sort for the page. No
per-name index exists (names differ by study); docs/performance.md has what one pass costs at
100 000 trials. Runs inside a caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, SQLColumnExpression, String, cast, func, select
from sqlalchemy.orm import Session

from hpsearch.store.models import Trial
from hpsearch.trial_query import Column, Condition, TrialQuery


def _expression(column: Column) -> SQLColumnExpression[Any]:
    if column.kind == "field":
        return Trial.state if column.name == "state" else Trial.number
    if column.kind == "objective":
        return Trial.value
    source = Trial.params if column.kind == "param" else Trial.metrics
    item = source[column.name]
    if not column.text:
        number: SQLColumnExpression[Any] = item.as_float()
        return number
    # As text on both databases: SQLite reads a JSON true out as the number 1, which is never
    # equal to text, PostgreSQL as 'true'.
    return cast(item.as_string(), String)


def _spellings(value: bool) -> tuple[str, ...]:
    """A JSON boolean read out as text: 'true' on PostgreSQL, '1' on SQLite."""
    return ("true", "1") if value else ("false", "0")


def _where(condition: Condition) -> ColumnElement[bool]:
    left = _expression(condition.column)
    value = condition.value
    if isinstance(value, bool):
        spelt = _spellings(value)
        return left.in_(spelt) if condition.op == "=" else left.not_in(spelt)
    match condition.op:
        case "<":
            return left < value
        case "<=":
            return left <= value
        case ">":
            return left > value
        case ">=":
            return left >= value
        case "=":
            return left == value
        case "!=":
            return left != value


def page_ids(
    session: Session, study_id: int, query: TrialQuery, *, offset: int, limit: int
) -> tuple[list[int], int]:
    """The ids of the page of trials meeting every condition, in the query's order (by
    number when it names none), and how many trials meet them. Rows without the sorted value
    come last either way; ties go by number."""
    order: list[Any] = []
    if query.sort is not None:
        key = _expression(query.sort)
        order.append((key.desc() if query.descending else key.asc()).nulls_last())
    order.append(Trial.number)
    where = [Trial.study_id == study_id, *(_where(c) for c in query.conditions)]
    # One pass: the count rides along as a window, and the sort holds ids, not whole rows
    # (their JSON is most of what a deep page would otherwise carry through the sort).
    rows = session.execute(
        select(Trial.id, func.count().over().label("total"))
        .where(*where)
        .order_by(*order)
        .offset(offset)
        .limit(limit)
    ).all()
    if rows:
        return [r.id for r in rows], rows[0].total
    if offset == 0:
        return [], 0
    # A page past the last one: count on its own.
    return [], session.scalar(select(func.count()).select_from(Trial).where(*where)) or 0


def trials_by_id(session: Session, ids: Sequence[int]) -> list[Trial]:
    """The trials of ``ids``, in that order (a page read by :func:`page_ids`)."""
    rows = {t.id: t for t in session.scalars(select(Trial).where(Trial.id.in_(ids)))}
    return [rows[i] for i in ids if i in rows]
