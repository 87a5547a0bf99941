"""A spec as text: YAML or JSON in (errors then name the line), JSON out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from hpsearch.spec.errors import FieldError, SpecError
from hpsearch.spec.study import StudySpec, parse_spec


def load_spec_text(text: str, source: str = "<spec>") -> StudySpec:
    """Parses YAML or JSON text; errors carry the line of the offending key where known."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise SpecError([FieldError((), f"{source} is not valid YAML/JSON: {e}", line)]) from None
    if not isinstance(data, dict):
        raise SpecError([FieldError((), f"{source} must be a mapping of keys to values", 1)])
    try:
        return parse_spec(data)
    except SpecError as e:
        lines = _key_lines(text)
        for err in e.errors:
            err.line = _line_for(lines, err.loc)
        raise


def load_spec_file(path: str | Path) -> StudySpec:
    p = Path(path)
    return load_spec_text(p.read_text(encoding="utf-8"), source=str(p))


def spec_to_json(spec: StudySpec) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(spec.model_dump_json())
    return data


def _key_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """Maps each key path of a YAML/JSON document to the 1-based line it starts on."""
    lines: dict[tuple[str | int, ...], int] = {}
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines

    def walk(node: yaml.Node, path: tuple[str | int, ...]) -> None:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = (*path, str(key.value))
                lines[sub] = key.start_mark.line + 1
                walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    if root is not None:
        walk(root, ())
    return lines


def _line_for(lines: dict[tuple[str | int, ...], int], loc: tuple[str | int, ...]) -> int | None:
    path = tuple(loc)
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())
