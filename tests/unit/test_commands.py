"""The command trainer's argv: placeholders, one item per value, prefixes a worker allows."""

from __future__ import annotations

import pytest

from hpsearch import commands, tasks
from hpsearch.spec import SpecError, parse_spec
from tests.conftest import digits_spec


def command_task(*argv: str, **extra: object) -> dict[str, object]:
    return {"trainer": "command", "command": list(argv), **extra}


def test_each_item_is_filled_on_its_own_and_stays_one_item() -> None:
    argv = ["python", "t.py", "--lr={lr}", "{choice}", '{"json": {lr}}', "{lr}{lr}"]
    filled = commands.substitute(argv, {"lr": 0.1 + 0.2, "choice": "; rm -rf ~ $(id)"})
    assert filled == [
        "python",
        "t.py",
        "--lr=0.30000000000000004",  # every digit the sampler drew
        "; rm -rf ~ $(id)",
        '{"json": 0.30000000000000004}',
        "0.300000000000000040.30000000000000004",
    ]
    assert commands.substitute(["{b}", "{n}"], {"b": True, "n": 7}) == ["true", "7"]
    assert commands.placeholders(argv) == ["lr", "choice"]


def test_a_worker_runs_only_commands_that_start_with_a_prefix_it_allows() -> None:
    prefix = commands.parse_prefix("python 'my train.py'")
    assert prefix == ("python", "my train.py")
    assert commands.allowed(["python", "my train.py", "--lr", "1"], [prefix])
    assert not commands.allowed(["python", "my train.py.evil"], [prefix])
    assert not commands.allowed(["python"], [prefix])
    assert not commands.allowed(["python3", "my train.py"], [prefix])
    assert not commands.allowed(["python", "my train.py"], [])
    task = command_task("python", "my train.py", "{lr}")
    assert tasks.runnable(task, (), [prefix]) and not tasks.runnable(task, ("a:b",), [])
    for bad in ("", "python 'unclosed", "python {lr}"):
        with pytest.raises(commands.CommandError):
            commands.parse_prefix(bad)


def test_a_command_spec_names_every_mistake() -> None:
    spec = parse_spec(digits_spec(task=command_task("python", "t.py", "{lr}", "{epochs}")))
    assert spec.task.grace_seconds == 30 and spec.task.metrics_format == "json"
    cases = [
        (command_task("p", "{lr}", "{nope}", "{seed}"), "task.command.2", "placeholder {nope}"),
        ({"trainer": "command"}, "task.command", "trainer command needs an argv"),
        (command_task(), "task.command", "at least 1 item"),
        (
            command_task("p", workdir="x", grace_seconds=-1),
            "task.grace_seconds",
            "greater than or equal to 0",
        ),
        (command_task("p", metrics_format="xml"), "task.metrics_format", "'json' or 'key_value'"),
        ({"trainer": "mlp_classifier", "command": ["p"]}, "task.command", "only trainer command"),
        ({"trainer": "mlp_classifier", "workdir": "."}, "task.workdir", "only trainer command"),
    ]
    for task, field, reason in cases:
        with pytest.raises(SpecError) as info:
            parse_spec(digits_spec(task=task))
        assert reason in {e.field: e.message for e in info.value.errors}[field], task
    packed = digits_spec(task=command_task("p"), sampler={"kind": "random", "pack": 2})
    with pytest.raises(SpecError, match="packing needs a built-in trainer"):
        parse_spec(packed)
