"""workers.command.run_command with real programs: what is parsed, refused, kept, restored."""

from __future__ import annotations

import io
import os
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from workers.command import CommandFailed, CommandNotAllowed, run_command

PY = sys.executable


class MemoryCheckpoints:
    def __init__(self, data: bytes | None = None) -> None:
        self.data = data
        self.saved: list[tuple[int, bytes]] = []

    def load(self) -> bytes | None:
        return self.data

    def save(self, step: int, data: bytes) -> None:
        self.saved.append((step, data))


def run(
    code: str, allow: bool = True, **task: Any
) -> tuple[Any, list[tuple[int, dict[str, float]]], str]:
    reports: list[tuple[int, dict[str, float]]] = []
    out: list[str] = []
    argv = [PY, "-c", code, "{x}"]
    result = run_command(
        {"x": "a b"},
        {"command": argv, "epochs": 2, **task},
        lambda step, metrics: reports.append((step, metrics)) or False,
        allowed=[(PY, "-c")] if allow else [("other",)],
        log=out.append,
        checkpoints=task.pop("checkpoints", None),
    )
    return result, reports, "".join(out)


def test_key_value_lines_are_reports_and_everything_is_log() -> None:
    code = (
        "import sys; print('epoch=1 dev_accuracy=0.5 loss=nan'); print('hello', sys.argv[1]);"
        "print('step=2 dev_accuracy=0.75 note=x'); print('dev_latency=3e-2')"
    )
    result, reports, log = run(code, metrics_format="key_value")
    assert [r[0] for r in reports] == [1, 2]
    assert reports[1][1] == {"dev_accuracy": 0.75}
    assert reports[0][1]["loss"] != reports[0][1]["loss"]  # NaN kept, for the server to judge
    assert result.metrics == {"dev_accuracy": 0.75, "dev_latency": 0.03}
    assert not result.stopped_early and result.epochs_run == 2
    assert "hello a b\n" in log


def test_json_lines_that_are_not_reports_are_only_log() -> None:
    code = (
        "import json; print('{not json}'); print(json.dumps([1, 2]));"
        'print(json.dumps({"step": "one", "a": 1}));'
        'print(json.dumps({"step": 1, "dev_accuracy": 0.5, "tag": "x", "ok": True}));'
        'print(json.dumps({"final": True, "latency_ms": 4}))'
    )
    result, reports, _ = run(code)
    assert reports == [(1, {"dev_accuracy": 0.5})]
    assert result.metrics == {"dev_accuracy": 0.5, "a": 1.0, "latency_ms": 4.0}


def test_refused_commands_and_workdirs_never_start(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    code = f"open({str(marker)!r}, 'w')"
    with pytest.raises(CommandNotAllowed, match="--allow-command"):
        run(code, allow=False)
    with pytest.raises(CommandNotAllowed, match="outside the worker's working directory"):
        run(code, workdir="..")
    assert not marker.exists()


def test_a_failure_says_how_it_ended_with_the_end_of_stderr() -> None:
    with pytest.raises(CommandFailed, match=r"exited with code 3; the end of its stderr:\nboom"):
        run("import sys; print('boom', file=sys.stderr); sys.exit(3)")
    with pytest.raises(CommandFailed, match="killed by signal SIGKILL"):
        run("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    with pytest.raises(CommandFailed, match="could not start"):
        run_command(
            {},
            {"command": ["no-such-program-here"]},
            lambda s, m: False,
            allowed=[("no-such-program-here",)],
        )


def test_the_checkpoint_folder_is_restored_and_uploaded_when_it_changes() -> None:
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        info = tarfile.TarInfo("state.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"1"))
    read_state = (
        "import os, json, pathlib; d = pathlib.Path(os.environ['HPSEARCH_CHECKPOINT_DIR']);"
        "n = int((d / 'state.txt').read_text());"
    )
    # As documented: the checkpoint is written before its step's line.
    changes = "(d / 'state.txt').write_text(str(n + 1)); print(json.dumps({'step': n + 1}))"
    checkpoints = MemoryCheckpoints(archive.getvalue())
    run(read_state + changes, checkpoints=checkpoints)
    assert [step for step, _ in checkpoints.saved] == [2]  # once: unchanged when it ended
    with tarfile.open(fileobj=io.BytesIO(checkpoints.saved[0][1])) as tar:
        member = tar.extractfile("state.txt")
        assert member is not None and member.read() == b"2"
    unchanged = MemoryCheckpoints(archive.getvalue())
    run(read_state + "print(json.dumps({'step': n + 1}))", checkpoints=unchanged)
    assert unchanged.saved == []  # the folder is as it was restored


def test_the_program_gets_its_trial_in_its_environment_but_not_the_token() -> None:
    os.environ["HPSEARCH_TOKEN"] = "secret"
    try:
        code = (
            "import os, json; e = os.environ; p = json.loads(e['HPSEARCH_PARAMS']);"
            "print(json.dumps({'step': 1, 'seen': float(p['x'] == 'a b'),"
            "'token': float('HPSEARCH_TOKEN' in e), 'epochs': float(e['HPSEARCH_EPOCHS'])}))"
        )
        result, _, _ = run(code)
    finally:
        del os.environ["HPSEARCH_TOKEN"]
    assert result.metrics == {"seen": 1.0, "token": 0.0, "epochs": 2.0}
