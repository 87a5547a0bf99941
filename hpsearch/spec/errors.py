"""A spec's errors: each names the field as the user wrote it (and, from a file, the line).

Pydantic's own errors are translated here, once, for the CLI and the REST API alike.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ValidationError

from hpsearch import tasks


class SpecError(ValueError):
    """A spec that does not validate; ``errors`` name each field (a path) and the reason."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(str(e) for e in self.errors))


class FieldError:
    def __init__(self, loc: tuple[str | int, ...], message: str, line: int | None = None):
        self.loc = loc
        self.message = message
        self.line = line

    @property
    def field(self) -> str:
        # ``loc`` is already in the user's terms (see user_loc).
        return ".".join(str(p) for p in self.loc) or "(spec)"

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.field}: {self.message}"


def field_errors(e: ValidationError, root: type[BaseModel]) -> list[FieldError]:
    """``e``, raised validating the model ``root``, as errors in the user's terms."""
    return [
        FieldError(user_loc(loc), message)
        for loc, message in plain_errors([_with_suggestion(err, root) for err in e.errors()])
    ]


def _with_suggestion(err: Any, root: type[BaseModel]) -> Any:
    """An unknown key's error, with the known key it was most likely meant to be."""
    if err["type"] != "extra_forbidden":
        return err
    model = _model_at(root, tuple(err["loc"][:-1]))
    if model is None:
        return err
    key = str(err["loc"][-1])
    hint = tasks.did_you_mean(key, model.model_fields)
    return {**err, "msg": f"unknown key{hint}; known: {', '.join(model.model_fields)}"}


def _model_at(root: type[BaseModel], loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The spec model that pydantic's raw location ``loc`` in ``root`` points into, if any."""
    kind: Any = root
    for part in loc:
        kind = _inside(kind, part)
        if kind is None:
            return None
    return kind if isinstance(kind, type) and issubclass(kind, BaseModel) else None


def _inside(kind: Any, part: str | int) -> Any:
    """The type at ``part`` of a value of type ``kind``: a model's field, a dict's or list's
    item, or the member of a tagged union that the tag ``part`` names."""
    while typing.get_origin(kind) is Annotated:
        kind = typing.get_args(kind)[0]
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        info = kind.model_fields.get(str(part))
        return None if info is None else info.annotation
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is dict:
        return args[1]
    if origin is list:
        return args[0]
    for member in args:  # a union: the member whose tag (type or kind) is ``part``
        if isinstance(member, type) and issubclass(member, BaseModel):
            for tag in ("type", "kind"):
                info = member.model_fields.get(tag)
                if info is not None and typing.get_args(info.annotation) == (part,):
                    return member
    return None


_SCALAR_MEMBERS = frozenset({"bool", "int", "float", "str"})


def plain_errors(
    errors: Sequence[Mapping[str, Any]],
) -> list[tuple[tuple[str | int, ...], str]]:
    """Pydantic's errors as (location, message), one per value or key the user got wrong.

    A value of a ``bool | int | float | str`` field that fits none of them gets one error per
    member (``choices.1.bool``, ``choices.1.int``, ...). They are merged into one error for the
    value, keeping the telling message: "a finite number" when the value was NaN or infinite.
    """
    located = []
    for err in errors:
        loc, message = tuple(err["loc"]), str(err["msg"]).removeprefix("Value error, ")
        if loc and loc[-1] == "[key]":  # the key itself is wrong (a metric's name): name it
            loc, message = loc[:-1], f"invalid name: {message}"
        located.append((loc, message))
    members: dict[tuple[str | int, ...], list[str]] = {}
    for loc, message in located:
        if len(loc) > 1 and loc[-1] in _SCALAR_MEMBERS:
            members.setdefault(loc[:-1], []).append(message)
    out: list[tuple[tuple[str | int, ...], str]] = []
    for loc, message in located:
        holder = loc[:-1]
        if len(members.get(holder, ())) < 2:
            out.append((loc, message))
        elif holder in members:
            said = members.pop(holder)
            finite = [m for m in said if "finite" in m]
            out.append((holder, finite[0] if finite else "must be a boolean, number or string"))
    return out


def field_path(loc: Sequence[str | int]) -> str:
    """A pydantic error location as the user wrote the key: ``space.lr.low``."""
    return ".".join(str(p) for p in user_loc(loc)) or "(spec)"


def user_loc(loc: Sequence[str | int]) -> tuple[str | int, ...]:
    """Drops what pydantic inserts into the location of a tagged-union member.

    Pydantic reports ``space.lr.float.low`` for the user's ``space.lr.low``: the tag follows
    the key that holds the union. Only there is it dropped, so a parameter that happens to be
    named ``gp`` or ``int`` keeps its name in the path.
    """
    out: list[str | int] = []
    for i, p in enumerate(loc):
        holder = tuple(loc[:i])
        tagged = (len(holder) == 2 and holder[0] == "space") or holder in (
            ("sampler",),
            ("pruner",),
            ("scheduler",),
        )
        if (tagged and isinstance(p, str)) or (isinstance(p, str) and p.startswith("function-")):
            continue
        out.append(p)
    return tuple(out)
