"""What a worker checks before it claims anything: its devices and its allowed entry points."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest

from hpsearch.spec import SpecError, parse_spec
from tests.conftest import digits_spec
from workers.custom import (
    EntryPointError,
    EntryPointNotAllowed,
    check_allowed,
    check_importable,
    run_custom,
)
from workers.devices import DeviceError, slots, worker_devices
from workers.progress import Progress, epoch_line

torch = pytest.importorskip("torch")
HAS_CUDA = torch.cuda.is_available()


def test_cpu_is_the_default_device() -> None:
    assert worker_devices(None, None) == ["cpu"]
    assert worker_devices("cpu", None) == ["cpu"]


@pytest.mark.parametrize(
    ("device", "gpus", "message"),
    [
        ("gpu", None, "--device 'gpu': expected cpu, cuda or cuda:N"),
        ("cuda:x", None, "--device 'cuda:x': expected cpu, cuda or cuda:N"),
        ("cpu", "0", "give either --device or --gpus, not both"),
        (None, "0,a", "--gpus '0,a': expected GPU indexes such as 0,1 (or all)"),
        (None, "1,1", "GPU 1 is listed twice"),
    ],
)
def test_malformed_devices_are_refused(device: str | None, gpus: str | None, message: str) -> None:
    with pytest.raises(DeviceError, match=re.escape(message)):
        worker_devices(device, gpus)


@pytest.mark.skipif(HAS_CUDA, reason="this machine has CUDA")
@pytest.mark.parametrize(("device", "gpus"), [("cuda", None), ("cuda:1", None), (None, "0,1")])
def test_cuda_without_a_gpu_is_a_clear_error_at_start(device: str | None, gpus: str | None) -> None:
    with pytest.raises(DeviceError, match="CUDA is not available on this machine") as info:
        worker_devices(device, gpus)
    assert str(info.value).endswith("use --device cpu")


@pytest.mark.skipif(not HAS_CUDA, reason="needs an NVIDIA GPU")
def test_cuda_devices_are_checked_against_the_gpus_present() -> None:
    count = torch.cuda.device_count()
    assert worker_devices("cuda", None) == ["cuda"]
    assert worker_devices(None, "all") == [f"cuda:{i}" for i in range(count)]
    assert worker_devices(None, "0") == ["cuda:0"]
    with pytest.raises(DeviceError, match=f"GPU {count} does not exist"):
        worker_devices(f"cuda:{count}", None)


def test_slots_run_concurrency_trials_per_device() -> None:
    assert slots(["cuda:0", "cuda:1"], 2) == ["cuda:0", "cuda:0", "cuda:1", "cuda:1"]
    with pytest.raises(DeviceError, match="--concurrency must be at least 1"):
        slots(["cpu"], 0)


def test_allow_values_are_checked_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_train.py").write_text("raise SystemExit('imported at start')\n")
    monkeypatch.setattr(sys, "path", list(sys.path))
    # The working directory is searched, and the module is found without being run.
    check_importable(["my_train:train"])
    with pytest.raises(EntryPointError, match="expected module:function"):
        check_importable(["my_train"])
    with pytest.raises(EntryPointError, match="no module named 'not_here'"):
        check_importable(["not_here:train"])


def test_only_exactly_allowed_entry_points_run() -> None:
    check_allowed("a.b:train", ["a.b:train", "c:d"])
    for other in ("a.b:other", "a.b", "a:train", "a.b:train "):
        with pytest.raises(EntryPointNotAllowed, match="start it with --allow"):
            check_allowed(other, ["a.b:train"])


def test_run_custom_refuses_before_importing() -> None:
    with pytest.raises(EntryPointNotAllowed):
        run_custom(
            {},
            {"trainer": "custom", "entry_point": "module_that_does_not_exist:train"},
            lambda step, metrics: False,
            allowed=[],
        )


def test_a_custom_trainer_names_its_entry_point_and_any_hyperparameters() -> None:
    task = {"trainer": "custom", "entry_point": "mypkg.train:train", "epochs": 5}
    spec = parse_spec(
        digits_spec(space={"anything": {"type": "int", "low": 1, "high": 3}}, task=task)
    )
    assert spec.task.entry_point == "mypkg.train:train"
    for bad, field, reason in [
        ({"trainer": "custom"}, "task.entry_point", "trainer custom needs 'module:function'"),
        ({**task, "entry_point": "mypkg.train"}, "task.entry_point", "is not 'module:function'"),
        ({**task, "trainer": "mlp_classifier"}, "task.entry_point", "only trainer custom"),
        ({**task, "trainer": "my_net"}, "task.trainer", "'custom' with an entry_point"),
    ]:
        with pytest.raises(SpecError) as info:
            parse_spec(digits_spec(task=bad))
        assert reason in {e.field: e.message for e in info.value.errors}[field]


def test_epoch_line_shows_trial_epoch_bar_and_dev_metrics() -> None:
    line = epoch_line(7, 3, 12, {"train_loss": 0.5, "dev_loss": 0.41234, "dev_accuracy": 0.9})
    assert line == "trial 7 epoch  3/12 [#####...............] dev_loss=0.4123 dev_accuracy=0.9000"
    assert epoch_line(1, 1, 1, {"score": float("nan")}).endswith("[####################] score=nan")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_redraws_in_place_on_a_terminal_only() -> None:
    terminal = _Terminal()
    progress = Progress(terminal)
    progress.epoch(1, 1, 2, {"dev_accuracy": 0.5})
    progress.epoch(1, 2, 2, {"dev_accuracy": 0.6})
    progress.say("trial 1 completed")
    assert terminal.getvalue().count("\r") == 2
    assert terminal.getvalue().endswith("\x1b[K\ntrial 1 completed\n")

    log = io.StringIO()
    progress = Progress(log)
    progress.epoch(1, 1, 2, {"dev_accuracy": 0.5})
    progress.epoch(1, 2, 2, {"dev_accuracy": 0.6})
    assert "\r" not in log.getvalue() and log.getvalue().count("\n") == 2

    slot = _Terminal()  # several trials at once share the screen: lines, each with its slot
    Progress(slot, label="cuda:1").epoch(4, 1, 2, {"dev_accuracy": 0.5})
    assert slot.getvalue().startswith("[cuda:1] trial 4 epoch 1/2") and "\r" not in slot.getvalue()
